package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// write renders BENCHMARKS.md and the plots.
func (r *Report) write(cfg ReportConfig) error {
	if err := os.MkdirAll(cfg.Plots, 0o755); err != nil {
		return err
	}
	rel := func(name string) string {
		p, err := filepath.Rel(filepath.Dir(cfg.Out), filepath.Join(cfg.Plots, name))
		if err != nil {
			return filepath.Join(cfg.Plots, name)
		}
		return p
	}
	// Plots.
	if err := ratioPlot(filepath.Join(cfg.Plots, "stages.svg"), r.Pairs); err != nil {
		return fmt.Errorf("stages plot: %w", err)
	}
	if err := latencyPlot(filepath.Join(cfg.Plots, "latency.svg"), r.Levels); err != nil {
		return fmt.Errorf("latency plot: %w", err)
	}
	scale := func(pts []scalePoint) []series {
		a, b := series{Name: "pipeline: usage -> rater -> loader -> ClickHouse"}, series{Name: "raw clickhouse-go insert (ceiling)"}
		for _, p := range pts {
			a.X, b.X = append(a.X, p.X), append(b.X, p.X)
			a.Y, b.Y = append(a.Y, summarize(p.Pipeline)), append(b.Y, summarize(p.Raw))
		}
		return []series{a, b}
	}
	if err := linePlot(filepath.Join(cfg.Plots, "devices.svg"), "Throughput vs devices (4 partitions)", "devices", "records/s", true, scale(r.Devices)); err != nil {
		return fmt.Errorf("devices plot: %w", err)
	}
	if err := linePlot(filepath.Join(cfg.Plots, "partitions.svg"), "Throughput vs partitions (10k devices)", "partitions", "records/s", true, scale(r.Partitions)); err != nil {
		return fmt.Errorf("partitions plot: %w", err)
	}

	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	kind := "full"
	if r.Short {
		kind = "short (BENCH_SHORT=1: tiny sizes, one round; the figures only show the harness works)"
	}
	w("# fleetmeter benchmarks\n\n")
	w("Written by `make bench-report` (`scripts/bench-report.sh`, the program in `loadtest/cmd/benchreport`); do not edit by hand.\n")
	w("Every figure below comes from one run on one machine; a stage and its ceiling ran in the same run, alternating\n")
	w("round by round, so their **ratio** holds even when the absolute rates suffer from other load on the machine.\n\n")
	w("## Run\n\n")
	w("| | |\n|---|---|\n")
	w("| kind | %s |\n", kind)
	w("| date | %s, %s |\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Ended.Sub(r.Started).Round(time.Second))
	w("| machine | %s, %d cores, %s RAM, %s/%s |\n", cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS, runtime.GOARCH)
	w("| load on the machine | at the start: %s |\n", r.Load)
	if root, err := moduleRoot(); err == nil {
		w("| fleetmeter revision | %s |\n", toolVersion("git", "-C", root, "log", "-1", "--format=%h %s"))
	}
	w("| Go | %s |\n", runtime.Version())
	w("| ClickHouse | %s |\n", r.ChVersion)
	w("| Mosquitto | %s |\n", toolVersion(mosquittoPath(), "-h"))
	mv := moduleVersions()
	for _, m := range []string{"github.com/eclipse/paho.mqtt.golang", "github.com/plgd-dev/go-coap/v3", "github.com/twmb/franz-go",
		"github.com/twmb/franz-go/pkg/kfake", "github.com/ClickHouse/clickhouse-go/v2", "github.com/apache/arrow-go/v18", "gonum.org/v1/plot"} {
		if v := mv[m]; v != "" {
			w("| %s | %s |\n", m, v)
		}
	}
	w("\n")

	// Stages.
	w("## Each stage beside its raw ceiling\n\n")
	w("Each side of a pair is a Go benchmark run in a process of its own (`go test -c` binaries), %d round(s), raw and\n", max(1, len(r.Pairs[0].Impl)))
	w("stage alternating. Rates are min / **median** / max over the rounds; the ratio is the median of the per-round\n")
	w("ratios. CPU seconds and peak RSS are the whole benchmark process's (its set-up included; children it reaped\n")
	w("included: the ClickHouse server of the insert benchmark; for MQTT, the e2e package builds the binaries and\n")
	w("runs Mosquitto in the same process tree, so its CPU and RSS are mostly not the collector's).\n\n")
	w("![stage ratios](%s)\n\n", rel("stages.svg"))
	w("| stage | rate (min / median / max) | ceiling | ceiling rate | ratio | aim | CPU s | peak RSS |\n|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Pairs {
		if p.Err != "" && len(p.Impl) == 0 {
			w("| %s | not measured: %s | %s | | | %s | | |\n", p.Stage, mdEscape(firstLine(p.Err)), orDash(p.Ceiling), p.AimText)
			continue
		}
		rate := fmtStats(summarize(rates(p.Impl)), p.Unit)
		ceil, ratio := "-", "-"
		if len(p.Raw) > 0 {
			ceil = fmtStats(summarize(rates(p.Raw)), p.Unit)
			rs := summarize(p.ratios())
			ratio = fmt.Sprintf("**%.2f** (%.2f–%.2f)", rs.Med, rs.Min, rs.Max)
		}
		aim := p.AimText
		if aim != "" {
			met := false
			if p.pair.Raw != "" || p.RawUnit != "" {
				met = summarize(p.ratios()).Med >= p.Aim
			} else {
				met = summarize(rates(p.Impl)).Med >= p.Aim
			}
			aim += map[bool]string{true: " met", false: " **not met**"}[met]
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", p.Stage, rate, orDash(p.Ceiling), ceil, ratio, aim,
			cpuText(p.Impl, p.Raw), rssText(p.Impl, p.Raw))
	}
	w("\nCPU s and peak RSS: stage / ceiling, medians (one figure for both where they ran in one process). Benchmarks: ")
	var seen []string
	for _, p := range r.Pairs {
		s := fmt.Sprintf("`%s` in `%s`", p.Bench, p.Pkg)
		if !slices.Contains(seen, s) {
			seen = append(seen, s)
		}
	}
	w("%s.\n\n", strings.Join(seen, ", "))
	for _, p := range r.Pairs {
		if p.ImplCPU != nil && p.RawCPU != nil {
			writeProfileSplit(w, p, r.Short)
		}
	}

	// Pipeline.
	w("## The whole pipeline, fed by a mixed fleet\n\n")
	w("%d simulated devices (`sim.NewMixedFleet`): 40%% smart meters posting CoAP every 4 ticks, 30%% trackers roaming\n", r.FleetDevices)
	w("4 countries over MQTT QoS 1 every tick, 20%% GPS trucks whose gateways post HTTP JSON Lines every 2 ticks, 10%% 5G\n")
	w("slice sessions written as CHF CDR files into the drop directory every 2 ticks, all at once, into the services as\n")
	w("deployed, each its own process: Mosquitto, the Kafka broker (kfake), `mediator run` (all four collectors),\n")
	w("`rater run`, `rater load` and `clickhouse-server`. A tick is sent when the previous one is acknowledged\n")
	w("(PUBACK, 2.04, 202, file handed over), so the first maximum below is closed-loop: the most the pipeline\n")
	w("took with every record landed in ClickHouse (rows counted there), the fleet slowing down as acknowledgements\n")
	w("slowed. A real fleet does not wait: the sustained maximum is then searched for with the fleet paced (as in the\n")
	w("latency levels below), starting at %.0f%% of the closed-loop maximum; a try holds when the fleet sent %.0f%% of\n",
		100*pacedSearchStart, 100*pacedHeld)
	w("what it offered (the acknowledgements kept up) and every record landed within %v of the end, and the next try\n", maxTail)
	w("offers %.0f%% of the last, or less when the last landed less.\n\n", 100*pacedSearchStep)
	var mx []float64
	for _, ph := range r.MaxPhases {
		mx = append(mx, ph.Rate)
	}
	closed := summarize(mx)
	rawCH := 0.0
	for _, p := range r.Pairs {
		if p.Bench == "BenchmarkInsert" && len(p.Raw) > 0 {
			rawCH = summarize(rates(p.Raw)).Med
		}
	}
	w("| measure | value |\n|---|---|\n")
	w("| closed-loop maximum, records/s in ClickHouse (min / median / max of %d rounds) | %s |\n", len(mx), fmtStats(closed, "records/s"))
	if rawCH > 0 {
		w("| ratio to the raw ClickHouse insert above (%.0f rows/s; aim >= 0.5) | **%.2f** |\n", rawCH, closed.Med/rawCH)
	}
	var tries []string
	for _, ph := range r.Paced {
		tries = append(tries, ph.tryText())
	}
	w("| sustained maximum, paced fleet, records/s (by try: %s) | %s |\n", strings.Join(tries, "; "), sustainedCell(r))
	totalCPU, landed := r.serviceCPU()
	if landed > 0 {
		w("| cost per million records, CPU seconds of all services (at the maximum) | **%.1f** |\n", totalCPU.Seconds()/float64(landed)*1e6)
		w("| records/s per core of service CPU | %.0f |\n", float64(landed)/totalCPU.Seconds())
	}
	w("\nCPU seconds per service during the maximum rounds, per million records, and peak RSS:\n\n")
	w("| service | CPU s per million records | share | peak RSS |\n|---|---|---|---|\n")
	names := []string{}
	for _, ph := range r.MaxPhases {
		for k := range ph.CPU {
			if !slices.Contains(names, k) {
				names = append(names, k)
			}
		}
	}
	slices.Sort(names)
	for _, n := range names {
		c := r.maxCPU(n)
		share := "-"
		if n != fleetProcess && totalCPU > 0 {
			share = fmt.Sprintf("%.0f%%", 100*c.Seconds()/totalCPU.Seconds())
		}
		rss := "-"
		if v := r.RSS[n]; v > 0 {
			rss = fmt.Sprintf("%.0f MB", float64(v)/1e6)
		}
		if landed > 0 {
			w("| %s | %.1f | %s | %s |\n", n, c.Seconds()/float64(landed)*1e6, share, rss)
		}
	}
	w("\nThe fleet itself (this process: generating, MQTT/CoAP/HTTP clients, probe queries) shares the same %d cores.\n\n", runtime.NumCPU())
	if landed > 0 && rawCH > 0 {
		perM := func(d time.Duration) float64 { return d.Seconds() / float64(landed) * 1e6 }
		all := perM(totalCPU + r.maxCPU(fleetProcess))
		bound := float64(runtime.NumCPU()) / all * 1e6
		need := float64(runtime.NumCPU()) / (0.5 * rawCH) * 1e6
		w("Why the ratio to the raw insert is what it is: a record crosses a broker or collector, Kafka twice (`usage`, then\n")
		w("`rated` in a transaction with the offsets), the rater, the loader and ClickHouse's insert with its views, each in\n")
		w("a process of its own, while the raw ceiling is one process inserting ready-made batches of 100,000 rows. At\n")
		w("the maximum the services and the fleet spent %.1f CPU seconds per million records, which on %d cores bounds\n", all, runtime.NumCPU())
		w("the pipeline at %.0f records/s (%.2f of the raw insert) even with every core busy; 0.5 of the raw insert\n", bound, bound/rawCH)
		w("(%.0f records/s) would need %.1f CPU seconds per million records for everything; ClickHouse alone spent %.1f.\n",
			0.5*rawCH, need, perM(r.maxCPU("clickhouse")))
		w("The figure to compare across machines is the cost per million records above.\n\n")
	}
	a, z := r.Diag[0], r.Diag[1]
	if ins := z.LoaderInserts - a.LoaderInserts; ins > 0 {
		w("How the work was batched during the maximum rounds (the services' own metrics): the rater committed %.0f\n", z.RaterTxns-a.RaterTxns)
		w("transactions of %.0f records on average; the loader made %.0f inserts into `rated_usage` of %.0f rows on\n",
			(z.RaterRated-a.RaterRated)/max(z.RaterTxns-a.RaterTxns, 1), ins, (z.LoaderRows-a.LoaderRows)/ins)
		w("average (the raw ceiling inserts 100,000 rows at a time); `rated_usage` had %d active parts at the end.\n\n", z.Parts)
	}

	w("### Event-to-queryable latency\n\n")
	w("Probes (every %dth MQTT and CoAP message, a truck of one gateway batch in each %d records, the first session of each CDR file) are\n",
		latencyProbeEvery, latencyProbeEvery)
	w("timed from the moment the device sends to the moment a ClickHouse query (polled every 50 ms) returns their row.\n")
	w("Each poll reads only the parts of `rated_usage` written since the last one (`_part IN (...)`, from `system.parts`):\n")
	w("a pending probe's row can only be in a part made after it was sent, and reading every part for every pending probe\n")
	w("cost ClickHouse a third of a core at the 25%% level, taken from the pipeline it measures.\n")
	w("Paced at a fraction of the sustained maximum (paced, above): each tick's messages are spread over 80%% of its\n")
	w("interval and a tick starts on time while up to 3 earlier ones still wait for acknowledgements, so a level that\n")
	w("lands less than it offers is the pipeline's (or a collector's) limit. The CDR probes include the drop directory's settle\n")
	w("time (100 ms here) and poll (50 ms).\n\n")
	w("![latency](%s)\n\n", rel("latency.svg"))
	w("| load | offered records/s | landed records/s | probes | p50 | p99 | max | not seen | mediator -> insert p50 / p99 | rater batch p50 / p99 |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, ph := range r.Levels {
		w("| %s | %.0f | %.0f | %d | %s | %s | %s | %d | ≤ %s / ≤ %s | ≤ %s / ≤ %s |\n", ph.Name, ph.Offered, ph.Rate, len(ph.Latencies),
			ms(quantile(ph.Latencies, 0.5)), ms(quantile(ph.Latencies, 0.99)), ms(quantile(ph.Latencies, 1)), ph.Lost,
			secs(ph.LoaderDelay[0]), secs(ph.LoaderDelay[1]), secs(ph.RaterBatch[0]), secs(ph.RaterBatch[1]))
	}
	w("\nThe last two columns are the services' own histograms (bucket bounds): the loader's delay from the mediator's\n")
	w("receipt of a record to its insert, and the rater's batch from poll to committed transaction. By protocol\n")
	w("(p50 / p99; the fleet's devices share 32 MQTT connections, 128 CoAP sockets at a time (new ones every 5 s) and 16 HTTP connections, so a\n")
	w("tick's messages also queue in the load generator):\n\n")
	w("| load | MQTT | CoAP | HTTP | CDR |\n|---|---|---|---|---|\n")
	// quantiles writes a level's row of p50 / p99 cells, one per latency list.
	quantiles := func(name string, lists ...[]time.Duration) {
		w("| %s |", name)
		for _, l := range lists {
			w(" %s / %s |", ms(quantile(l, 0.5)), ms(quantile(l, 0.99)))
		}
		w("\n")
	}
	for _, ph := range r.Levels {
		quantiles(ph.Name, ph.ByProto[:]...)
	}
	w("\nWhere the time goes (p50 / p99), split by the probes' rows' own times: `received_time_ms` (the mediator's\n")
	w("receipt; for a CDR, the file's pick-up) and `rated_time_ms` (the rater's rating); rated -> visible holds the\n")
	w("rater's commit, the loader's batch (up to `load_batch_wait`) and insert, and this harness's 50 ms poll:\n\n")
	w("| load | send -> mediator receipt | receipt -> rated | rated -> visible |\n|---|---|---|---|\n")
	for _, ph := range r.Levels {
		quantiles(ph.Name, ph.Stages[:]...)
	}
	w("\nClickHouse's own counts during each level (`system.events`): the loader's inserts, the harness's probe polls,\n")
	w("and the rows its background merges rewrote (rated_usage, its two roll-ups and rated_seen):\n\n")
	w("| load | inserts | rows inserted | selects | rows merged |\n|---|---|---|---|---|\n")
	for _, ph := range r.Levels {
		w("| %s | %d | %d | %d | %d |\n", ph.Name, ph.CH["InsertQuery"], ph.CH["InsertedRows"], ph.CH["SelectQuery"], ph.CH["MergedRows"])
	}
	if n := len(r.Levels); n > 0 {
		top := r.Levels[n-1]
		w("\np99 at 80%% of the sustained maximum: **%s** (aim < 1 s: %s).\n\n", ms(quantile(top.Latencies, 0.99)), latencyVerdict(top))
	}

	// Scale.
	w("## Rater and loader at scale (`fleetmeter load`)\n\n")
	w("`fleetmeter load` pushes canonical records (generated by the simulator, produced to topic `usage` first) through the\n")
	w("rater (a process of its own) and the loader into ClickHouse, beside a raw clickhouse-go insert of the same rows\n")
	w("rated offline, in the same run. Median of the rounds; bars are min–max.\n\n")
	w("![throughput vs devices](%s)\n\n", rel("devices.svg"))
	w("| devices | records | pipeline records/s | raw insert records/s | ratio | rater peak RSS |\n|---|---|---|---|---|---|\n")
	for _, p := range r.Devices {
		pp, rr := summarize(p.Pipeline), summarize(p.Raw)
		w("| %.0f | %d | %s | %s | %.2f | %.0f MB |\n", p.X, p.Records, fmtStats(pp, ""), fmtStats(rr, ""), pp.Med/rr.Med, summarize(p.RaterRSS).Med/1e6)
	}
	w("\n![throughput vs partitions](%s)\n\n", rel("partitions.svg"))
	w("| partitions | records | pipeline records/s | raw insert records/s | ratio |\n|---|---|---|---|---|\n")
	for _, p := range r.Partitions {
		pp, rr := summarize(p.Pipeline), summarize(p.Raw)
		w("| %.0f | %d | %s | %s | %.2f |\n", p.X, p.Records, fmtStats(pp, ""), fmtStats(rr, ""), pp.Med/rr.Med)
	}
	w("\n")
	r.writeComparison(&b)
	return os.WriteFile(cfg.Out, b.Bytes(), 0o644)
}

func fmtStats(s stats, unit string) string {
	f := func(v float64) string {
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fM", v/1e6)
		case v >= 1e4:
			return fmt.Sprintf("%.0fk", v/1e3)
		default:
			return fmt.Sprintf("%.0f", v)
		}
	}
	out := fmt.Sprintf("%s / **%s** / %s", f(s.Min), f(s.Med), f(s.Max))
	if unit != "" {
		out += " " + unit
	}
	return out
}

func cpuText(impl, raw []sample) string {
	med := func(s []sample) float64 {
		var v []float64
		for _, x := range s {
			v = append(v, x.CPU.Seconds())
		}
		return summarize(v).Med
	}
	if len(raw) == 0 {
		return fmt.Sprintf("%.1f", med(impl))
	}
	return fmt.Sprintf("%.1f / %.1f", med(impl), med(raw))
}

func rssText(impl, raw []sample) string {
	med := func(s []sample) float64 {
		var v []float64
		for _, x := range s {
			v = append(v, float64(x.PeakRS))
		}
		return summarize(v).Med / 1e6
	}
	if len(raw) == 0 {
		return fmt.Sprintf("%.0f MB", med(impl))
	}
	return fmt.Sprintf("%.0f / %.0f MB", med(impl), med(raw))
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

func secs(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", v*1000)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// writeProfileSplit writes where a stage's CPU goes beside its ceiling's: both sides
// profiled over the same requests, each sample in the first part its stack matches.
func writeProfileSplit(w func(string, ...any), p pairResult, short bool) {
	bt := p.profileTime(short)
	w("### Where the CPU goes: %s, beside %s\n\n", p.Stage, p.Ceiling)
	w("Both sides once more, each with a CPU profile (`-test.cpuprofile`, %s requests each, the same bodies); every\n", strings.TrimSuffix(bt, "x"))
	w("sample counted in the first of these parts its stack reaches (clients and server share the process):\n\n")
	w("| part | fleetmeter | ceiling | difference |\n|---|---|---|---|\n")
	names := make([]string, 0, len(p.Profile)+1)
	for _, part := range p.Profile {
		names = append(names, part.Name)
	}
	names = append(names, otherPart)
	diff := func(n string) time.Duration { return p.ImplCPU.Parts[n] - p.RawCPU.Parts[n] }
	for _, n := range names {
		w("| %s | %d ms | %d ms | %+d ms |\n", n, p.ImplCPU.Parts[n].Milliseconds(), p.RawCPU.Parts[n].Milliseconds(), diff(n).Milliseconds())
	}
	a, b := p.ImplCPU.Total, p.RawCPU.Total
	w("| **all** | **%d ms** | **%d ms** | **%+d ms** |\n\n", a.Milliseconds(), b.Milliseconds(), (a - b).Milliseconds())
	if gap := a - b; gap > 0 {
		w("Of the %d ms the collector spends beyond the bare handler, parsing and checking every line is %.0f%% and the\n",
			gap.Milliseconds(), 100*(diff(partParse)+diff(partAdmission)).Seconds()/gap.Seconds())
		w("garbage collector's extra work %.0f%%: work that a handler which never looks at the bytes does not do, and that any\n",
			100*diff(partGC).Seconds()/gap.Seconds())
		w("ingest which must refuse a bad line has to. The fairer ceiling is the handler that at least validates each line\n")
		w("as JSON (`encoding/json.Valid`, decoding nothing): the row \"beside a fairer baseline\" above.\n\n")
	}
}

// sustainedCell is the sustained maximum, marked when no try held it.
func sustainedCell(r *Report) string {
	if n := len(r.Paced); n > 0 && r.Paced[n-1].held(pacedHeld) {
		return fmt.Sprintf("**%.0f** records/s", r.Sustained)
	}
	return fmt.Sprintf("%.0f records/s (**not held**: no try sent %.0f%% of its offer and landed it all within %v)", r.Sustained, 100*pacedHeld, maxTail)
}

// latencyVerdict says whether the top level's p99 meets the aim of under a second. A level
// the fleet offered but the pipeline did not land is not that load, so its latency says
// nothing about the aim.
func latencyVerdict(top phase) string {
	if !top.held(0.95) {
		return fmt.Sprintf("**not shown**: this level sent %.0f of the %.0f records/s offered and landed %d of its %d records, the last %.1f s "+
			"after the fleet stopped, so the pipeline did not sustain 80%% of the sustained maximum", top.sentRate(), top.Offered, top.Landed, top.Sent, top.Tail)
	}
	if p99 := quantile(top.Latencies, 0.99); p99 > 0 && p99 < time.Second {
		return "met"
	}
	return "**not met**"
}
