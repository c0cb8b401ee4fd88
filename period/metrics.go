package period

import (
	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/rating"
)

// Metrics report the automatic close (Auto): what it closed and whether a due period
// stays open.
type Metrics struct {
	closes     *prometheus.CounterVec
	lastClosed prometheus.Gauge
	overdue    prometheus.Gauge
}

// NewMetrics registers the period metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_period_closes_total",
			Help: "Automatic period closes, by outcome (closed, failed: retried every minute)."}, []string{"outcome"}),
		lastClosed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetmeter_period_last_closed_end_timestamp_seconds",
			Help: "End of the newest period this process closed (device fees exact), Unix seconds; 0 before its first close."}),
		overdue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetmeter_period_close_overdue",
			Help: "1 while a period is due for closing and its close has not succeeded."}),
	}
	m.closes.WithLabelValues("closed")
	m.closes.WithLabelValues("failed")
	if reg != nil {
		reg.MustRegister(m.closes, m.lastClosed, m.overdue)
	}
	return m
}

func (m *Metrics) closed(name string) {
	if m == nil {
		return
	}
	m.closes.WithLabelValues("closed").Inc()
	m.overdue.Set(0)
	if _, end, err := rating.PeriodBounds(name); err == nil {
		m.lastClosed.Set(float64(end / 1000))
	}
}

func (m *Metrics) failed() {
	if m == nil {
		return
	}
	m.closes.WithLabelValues("failed").Inc()
	m.overdue.Set(1)
}
