package loadtest

import (
	"bytes"
	"fmt"
	"runtime"
	"time"
)

// published is a figure another system's authors published, with its source.
type published struct {
	System, Figure, PerCore, Source, Differs string
	ours                                     func(r *Report) string
}

// stageRate is the median rate of the pair whose stage starts with name, or 0.
func (r *Report) stageRate(name string) (float64, bool) {
	for _, p := range r.Pairs {
		if len(p.Stage) >= len(name) && p.Stage[:len(name)] == name && len(p.Impl) > 0 {
			return summarize(rates(p.Impl)).Med, true
		}
	}
	return 0, false
}

// serviceCPU is the CPU time of all services (the fleet excluded) during the maximum
// rounds, and the records that landed meanwhile.
func (r *Report) serviceCPU() (cpu time.Duration, landed uint64) {
	for _, ph := range r.MaxPhases {
		for k, v := range ph.CPU {
			if k != fleetProcess {
				cpu += v
			}
		}
		landed += ph.Landed
	}
	return cpu, landed
}

// maxCPU is the CPU process name spent during the maximum rounds.
func (r *Report) maxCPU(name string) time.Duration {
	var c time.Duration
	for _, ph := range r.MaxPhases {
		c += ph.CPU[name]
	}
	return c
}

// pipelinePerCore is records per CPU-second of all services during the maximum rounds.
func (r *Report) pipelinePerCore() float64 {
	cpu, landed := r.serviceCPU()
	if cpu <= 0 {
		return 0
	}
	return float64(landed) / cpu.Seconds()
}

func (r *Report) perCore(stage string) string {
	v, ok := r.stageRate(stage)
	if !ok {
		return "not measured"
	}
	return fmt.Sprintf("%.0f/s on %d cores shared with the load generator and broker, ≈ %.0f/s per core", v, runtime.NumCPU(), v/float64(runtime.NumCPU()))
}

var comparisons = []published{
	{System: "ThingsBoard CE (IoT platform), MQTT", Figure: "30,000+ MQTT publish msg/s and 20,000+ devices on a single instance (~100 B JSON)",
		PerCore: "its later table: 11,111 msg/s with 1M devices on a c5.9xlarge (36 vCPU) at 55% CPU, ≈ 560 msg/s per busy vCPU; 1,111 msg/s on a c5.xlarge (4 vCPU) at 25%, ≈ 1,100",
		Source:  "https://thingsboard.io/docs/reference/performance/ and https://thingsboard.io/docs/pe/reference/architecture/performance/",
		Differs: "stores telemetry time series (Cassandra/PostgreSQL) and runs rule chains; no pricing. fleetmeter acknowledges a QoS 1 message only after Kafka has it, then rates and loads it",
		ours:    func(r *Report) string { return "MQTT collector -> Kafka: " + r.perCore("MQTT collector") }},
	{System: "Eclipse Hono, CoAP adapter", Figure: "stable below 600 telemetry + 600 event + 600 command-query CoAP req/s (1,800 req/s) from 2,500 PSK devices; telemetry round trip p99 564 ms at that load",
		PerCore: "3 × c5a.large (6 vCPU) for the whole Hono deployment (3 CoAP adapters, registry, auth, command router, data grid), Kafka on AWS MSK outside: ≈ 300 req/s per vCPU",
		Source:  "https://eclipse.dev/hono/community/blog-load-tests-coap",
		Differs: "DTLS PSK and device registry look-ups on every request, commands routed back to devices; no usage records or pricing. fleetmeter's figure here is plain-UDP dev mode",
		ours:    func(r *Report) string { return "CoAP collector: " + r.perCore("CoAP collector (ack sink)") }},
	{System: "OpenMeter (usage metering)", Figure: "\"millions of billable events per second\" on ClickHouse Cloud with Kafka",
		PerCore: "no hardware or per-core figure published",
		Source:  "https://clickhouse.com/blog/openmeter-real-time-usage-based-billing-powered-by-clickhouse-cloud",
		Differs: "CloudEvents over HTTP, deduplicated and aggregated into one-minute windows; prices in a separate billing step. fleetmeter prices every record (zones, mobility, device tiers) before it lands",
		ours: func(r *Report) string {
			return "HTTP JSON Lines ingest, 8 clients: " + r.perCore("HTTP JSON Lines ingest, 8")
		}},
	{System: "Lago (usage-based billing)", Figure: "sustained ingestion 1–3M events/s (ClickHouse Cloud + Kafka/Redpanda); 10K events/s on a single PostgreSQL; event to billable < 2 s p99",
		PerCore: "no hardware or per-core figure published",
		Source:  "https://getlago.com/docs/guide/events/usage-performances",
		Differs: "events keyed to subscriptions and aggregated at invoice time; no device protocols or CDRs. fleetmeter's end-to-end figure includes the collectors, rating and ClickHouse on the same 2 cores",
		ours: func(r *Report) string {
			v := r.pipelinePerCore()
			if v == 0 {
				return "not measured"
			}
			return fmt.Sprintf("whole pipeline (collectors, Kafka, rater, loader, ClickHouse): %.0f records per CPU-second of all services", v)
		}},
	{System: "CGRateS (real-time charging)", Figure: "13,000+ req/s \"on a rather modest machine\"",
		PerCore: "hardware not given",
		Source:  "https://cgrates.readthedocs.io/en/latest/introduction.html",
		Differs: "online charging over JSON-RPC with balances, sessions and accounts (Redis/MongoDB); a request is a network round trip. fleetmeter's rating is an in-process batch over Kafka, with no account balances",
		ours: func(r *Report) string {
			if v, ok := r.stageRate("Rating, batched"); ok {
				return fmt.Sprintf("rating, batched: %.0f records/s on one core (engine alone, no I/O)", v)
			}
			return "not measured"
		}},
}

func (r *Report) writeComparison(b *bytes.Buffer) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Beside what users would otherwise run\n\n")
	w("Published figures of other systems, each from its authors, beside fleetmeter's figure from this run. The\n")
	w("hardware, payloads and guarantees differ, so these are orders of magnitude, not a contest; the per-core\n")
	w("figures of the others are derived here from their published hardware and CPU use where they give it.\n\n")
	w("| system | published figure | per core | fleetmeter, this run | how the work differs | source |\n|---|---|---|---|---|---|\n")
	for _, c := range comparisons {
		w("| %s | %s | %s | %s | %s | %s |\n", c.System, c.Figure, c.PerCore, c.ours(r), c.Differs, c.Source)
	}
	w("\n")
}
