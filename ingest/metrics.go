package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the collectors' shared counters; the source label is the collector name and
// reason a code of record.Reasons (record.ReasonOf maps any error to one), so label sets
// stay bounded.
type Metrics struct {
	Received   *prometheus.CounterVec   // messages received, by source
	Accepted   *prometheus.CounterVec   // usage records acknowledged by the sink, by source
	Rejected   *prometheus.CounterVec   // rejected inputs, by source and reason
	AckLatency *prometheus.HistogramVec // receive to sink acknowledgement, by source
	InFlight   *prometheus.GaugeVec     // messages awaiting the sink's acknowledgement
}

// NewMetrics registers the collector metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmeter_mediator_received_total", Help: "Messages received from devices and networks."}, []string{"source"}),
		Accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmeter_mediator_accepted_total", Help: "Usage records acknowledged by Kafka."}, []string{"source"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmeter_mediator_rejected_total", Help: "Inputs rejected, by reason."}, []string{"source", "reason"}),
		AckLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fleetmeter_mediator_ack_latency_seconds", Help: "From receipt to Kafka acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"source"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetmeter_mediator_in_flight", Help: "Messages awaiting Kafka acknowledgement."}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.Accepted, m.Rejected, m.AckLatency, m.InFlight)
	}
	return m
}

// SourceMetrics are one collector's metric children, resolved once so the per-message
// path does no label lookups.
type SourceMetrics struct {
	Received   prometheus.Counter
	Accepted   prometheus.Counter
	InFlight   prometheus.Gauge
	AckLatency prometheus.Observer
}

// For resolves the children of source.
func (m *Metrics) For(source string) SourceMetrics {
	return SourceMetrics{Received: m.Received.WithLabelValues(source), Accepted: m.Accepted.WithLabelValues(source),
		InFlight: m.InFlight.WithLabelValues(source), AckLatency: m.AckLatency.WithLabelValues(source)}
}
