package coap

import "github.com/prometheus/client_golang/prometheus"

// The collector's own metrics, read from its session tables at scrape time (nothing on
// the request path). Register the Collector with the process's registry:
// reg.MustRegister(col).
var (
	sessionsDesc = prometheus.NewDesc("fleetmeter_coap_sessions",
		"Per-peer sessions held, by listener (udp, dtls) and state (unverified: no request with an admitted identity, or a DTLS handshake, yet).",
		[]string{"transport", "state"}, nil)
	sessionsUnverifiedBytesDesc = prometheus.NewDesc("fleetmeter_coap_sessions_unverified_bytes",
		"Bytes charged to unverified sessions against max_unverified_bytes.", []string{"transport"}, nil)
	sessionsEvictedDesc = prometheus.NewDesc("fleetmeter_coap_sessions_evicted_total",
		"Unverified sessions closed early: over a bound (reason=bound) or at unverified_idle_timeout / handshake_timeout (reason=idle).",
		[]string{"transport", "reason"}, nil)
	sessionsRefusedDesc = prometheus.NewDesc("fleetmeter_coap_sessions_refused_total",
		"New peers dropped because max_sessions verified sessions were held.", []string{"transport"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionsDesc
	ch <- sessionsUnverifiedBytesDesc
	ch <- sessionsEvictedDesc
	ch <- sessionsRefusedDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	udp, dtls := c.Sessions()
	for _, l := range []struct {
		transport string
		st        SessionStats
	}{{"udp", udp}, {"dtls", dtls}} {
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(l.st.Verified), l.transport, "verified")
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(l.st.Unverified), l.transport, "unverified")
		ch <- prometheus.MustNewConstMetric(sessionsUnverifiedBytesDesc, prometheus.GaugeValue, float64(l.st.UnverifiedBytes), l.transport)
		ch <- prometheus.MustNewConstMetric(sessionsEvictedDesc, prometheus.CounterValue, float64(l.st.Evicted), l.transport, "bound")
		ch <- prometheus.MustNewConstMetric(sessionsEvictedDesc, prometheus.CounterValue, float64(l.st.Expired), l.transport, "idle")
		ch <- prometheus.MustNewConstMetric(sessionsRefusedDesc, prometheus.CounterValue, float64(l.st.Refused), l.transport)
	}
}
