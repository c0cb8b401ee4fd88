package loadtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"fleetmeter/sim"
)

// latencyProbeEvery: every latencyProbeEvery-th MQTT and CoAP message of a paced level is a
// latency probe (and a gateway's batch in every latencyProbeEvery records' worth). The
// probes' query reads a granule of rated_usage per probe still pending, 20 times a second:
// at every 20th message it took ClickHouse half a core, which the pipeline it measures
// then lacked; at every 100th a level still times over a thousand probes.
const latencyProbeEvery = 100

// The sustained maximum is searched for with a paced fleet: the first try offers
// pacedSearchStart of the closed-loop maximum; a try holds when the fleet sent pacedHeld
// of its offer and all of it landed (phase.held); otherwise the next offers the lesser of
// pacedSearchStep of it and pacedHeld of what it landed, up to pacedSearchTries tries.
const (
	pacedSearchStart = 0.9
	pacedSearchStep  = 0.9
	pacedHeld        = 0.97
	pacedSearchTries = 4
)

// ReportConfig shapes a benchmark report run.
type ReportConfig struct {
	Short  bool   // BENCH_SHORT: every part, tiny sizes, one round (minutes, not tens of them)
	Out    string // BENCHMARKS.md
	Plots  string // directory of the plots (docs/bench)
	Work   string // scratch directory (default: a temporary one)
	Rounds int
	// PipelineOnly runs only the whole pipeline (maximum and latency levels) and logs its
	// figures instead of writing the report: for working on the pipeline.
	PipelineOnly bool
	// Devices overrides the fleet's size (default 20,000; 400 when Short).
	Devices int
	// Self starts this program again with a subcommand ("load-rater", "kafka-broker").
	Self []string
	Log  io.Writer
}

// Report is everything a run measured.
type Report struct {
	Started, Ended time.Time
	Short          bool
	Load           string // `uptime` at the start and the end
	Pairs          []pairResult
	MaxPhases      []phase // closed-loop maximum, by round
	Paced          []phase // the search for the sustained (paced) maximum, by try
	Sustained      float64 // the sustained maximum, records/s: the last paced try's offer
	Levels         []phase // latency at 25, 50, 80 % of the sustained maximum
	Devices        []scalePoint
	Partitions     []scalePoint
	RSS            map[string]int64
	Diag           [2]diagnostics // the services' counts before and after the maximum rounds
	FleetDevices   int
	ChVersion      string
}

type scalePoint struct {
	X                 float64
	Records           int
	Pipeline, Raw     []float64
	RaterRSS, Devices []float64
}

// RunReport measures everything and writes the report and its plots.
func RunReport(ctx context.Context, cfg ReportConfig) (*Report, error) {
	progress := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s bench: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if cfg.Rounds < 1 {
		cfg.Rounds = 3
		if cfg.Short {
			cfg.Rounds = 1
		}
	}
	work := cfg.Work
	if work == "" {
		if work, err = os.MkdirTemp("", "fleetmeter-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
	}
	rep := &Report{Started: time.Now(), Short: cfg.Short, Load: uptime()}
	logger := slog.New(slog.DiscardHandler)

	if cfg.PipelineOnly {
		return rep, runPipelineOnly(ctx, root, work, cfg, rep, logger, progress)
	}
	// 1. Each stage beside its ceiling, each side in a process of its own.
	var pkgs []string
	for _, p := range pairs {
		pkgs = append(pkgs, p.Pkg)
	}
	progress("building test binaries of %v", slices.Compact(slices.Clone(pkgs)))
	bins, err := buildTestBinaries(ctx, root, filepath.Join(work, "bin"), pkgs)
	if err != nil {
		return nil, err
	}
	rep.Pairs = runPairs(ctx, root, bins, cfg.Rounds, cfg.Short, progress)

	// 2. The whole pipeline fed by the mixed fleet over MQTT, CoAP, HTTP and CDR at once.
	if err := runWholePipeline(ctx, root, work, cfg, rep, logger, progress); err != nil {
		return nil, err
	}

	// 3. Scale: `fleetmeter load` (rater state and loader at scale) by devices, by partitions.
	devs, parts, records := []int{10_000, 100_000, 1_000_000}, []int32{1, 4, 32}, 1_000_000
	scaleRounds := cfg.Rounds
	if cfg.Short {
		devs, parts, records = []int{1_000, 5_000}, []int32{1, 4}, 10_000
	}
	// One ClickHouse for every scale run (each drops and recreates its databases).
	ch, err := StartClickHouse(ctx, filepath.Join(work, "scale-clickhouse"), logger)
	if err != nil {
		return nil, err
	}
	defer ch.Stop()
	chAddr := ch.NativeAddr()
	for _, d := range devs {
		pt := scalePoint{X: float64(d)}
		for range scaleRounds {
			if err := scaleRun(ctx, cfg, filepath.Join(work, "scale"), chAddr, max(records, d), d, 4, logger, &pt, progress); err != nil {
				return nil, err
			}
		}
		rep.Devices = append(rep.Devices, pt)
	}
	for _, p := range parts {
		pt := scalePoint{X: float64(p)}
		for range scaleRounds {
			if err := scaleRun(ctx, cfg, filepath.Join(work, "scale"), chAddr, records/2, 10_000, p, logger, &pt, progress); err != nil {
				return nil, err
			}
		}
		rep.Partitions = append(rep.Partitions, pt)
	}
	rep.Ended = time.Now()
	rep.Load += " / at the end: " + uptime()
	if err := rep.write(cfg); err != nil {
		return nil, err
	}
	progress("wrote %s and the plots in %s", cfg.Out, cfg.Plots)
	return rep, nil
}

// runWholePipeline is the report's whole-pipeline part.
func runWholePipeline(ctx context.Context, root, work string, cfg ReportConfig, rep *Report, logger *slog.Logger,
	progress func(string, ...any)) error {
	devices, maxFor, levelFor := 20_000, 25*time.Second, 20*time.Second
	if cfg.Short {
		devices, maxFor, levelFor = 400, 3*time.Second, 2*time.Second
	}
	if cfg.Devices > 0 {
		devices = cfg.Devices
	}
	rep.FleetDevices = devices
	if err := runFleet(ctx, root, filepath.Join(work, "fleet"), cfg, devices, maxFor, levelFor, rep, logger, progress); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

// runPipelineOnly measures the whole pipeline alone and logs what the report would say of it.
func runPipelineOnly(ctx context.Context, root, work string, cfg ReportConfig, rep *Report, logger *slog.Logger,
	progress func(string, ...any)) error {
	if err := runWholePipeline(ctx, root, work, cfg, rep, logger, progress); err != nil {
		return err
	}
	var rs []float64
	for _, ph := range rep.MaxPhases {
		rs = append(rs, ph.Rate)
	}
	s := summarize(rs)
	progress("closed-loop maximum %.0f / %.0f / %.0f records/s (min / median / max)", s.Min, s.Med, s.Max)
	for _, ph := range rep.Paced {
		progress("paced: %s", ph.tryText())
	}
	progress("sustained (paced) maximum %.0f records/s", rep.Sustained)
	if totalCPU, landed := rep.serviceCPU(); landed > 0 {
		perM := map[string]time.Duration{}
		for _, ph := range rep.MaxPhases {
			for k, v := range ph.CPU {
				perM[k] += v
			}
		}
		var cpu []string
		for _, k := range slices.Sorted(maps.Keys(perM)) {
			cpu = append(cpu, fmt.Sprintf("%s %.1f", k, perM[k].Seconds()/float64(landed)*1e6))
		}
		progress("during the maximum: CPU seconds per million records %.1f (services); %s", totalCPU.Seconds()/float64(landed)*1e6,
			strings.Join(cpu, ", "))
	}
	a, z := rep.Diag[0], rep.Diag[1]
	if txns, ins := z.RaterTxns-a.RaterTxns, z.LoaderInserts-a.LoaderInserts; txns > 0 && ins > 0 {
		progress("during the maximum: rater %.0f records per transaction, loader %.0f rows per insert, %d active parts",
			(z.RaterRated-a.RaterRated)/txns, (z.LoaderRows-a.LoaderRows)/ins, z.Parts)
	}
	for _, ph := range rep.Levels {
		progress("%s: offered %.0f, landed %.0f records/s; probes p50 %v p99 %v max %v; mediator -> insert p50 <= %gs p99 <= %gs; rater batch p50 <= %gs p99 <= %gs",
			ph.Name, ph.Offered, ph.Rate, quantile(ph.Latencies, 0.5).Round(time.Millisecond), quantile(ph.Latencies, 0.99).Round(time.Millisecond),
			quantile(ph.Latencies, 1).Round(time.Millisecond), ph.LoaderDelay[0], ph.LoaderDelay[1], ph.RaterBatch[0], ph.RaterBatch[1])
		var cpu []string
		for _, k := range slices.Sorted(maps.Keys(ph.CPU)) {
			cpu = append(cpu, fmt.Sprintf("%s %.1f", k, ph.CPU[k].Seconds()))
		}
		progress("  CPU seconds over %.1fs: %s", ph.Seconds, strings.Join(cpu, ", "))
		progress("  loader insert p50 <= %gs p99 <= %gs", ph.LoaderInsert[0], ph.LoaderInsert[1])
		for i, name := range []string{"send -> mediator receipt", "receipt -> rated", "rated -> visible"} {
			l := ph.Stages[i]
			progress("  %s: p50 %v p99 %v", name, quantile(l, 0.5).Round(time.Millisecond), quantile(l, 0.99).Round(time.Millisecond))
		}
		for i, l := range ph.ByProto {
			progress("  %v: p50 %v p99 %v", sim.Protocol(i), quantile(l, 0.5).Round(time.Millisecond), quantile(l, 0.99).Round(time.Millisecond))
		}
	}
	return nil
}

func runFleet(ctx context.Context, root, dir string, cfg ReportConfig, devices int, maxFor, levelFor time.Duration, rep *Report,
	logger *slog.Logger, progress func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	progress("starting the pipeline (Mosquitto, Kafka, ClickHouse, mediator, rater, loader) for %d devices", devices)
	rig, err := startFleetRig(ctx, root, dir, cfg.Self, devices, 4, logger)
	if err != nil {
		return err
	}
	defer rig.close()
	rep.ChVersion = fmt.Sprint(rig.store.Version())
	// Warm-up: connections, topics, the first merges.
	if _, err := rig.runPhase(ctx, "warm-up", maxFor/5, 0, 0, progress); err != nil {
		return err
	}
	rep.Diag[0] = rig.diagnostics(ctx)
	for round := range cfg.Rounds {
		ph, err := rig.runPhase(ctx, fmt.Sprintf("max %d", round+1), maxFor, 0, 0, progress)
		if err != nil {
			return err
		}
		rep.MaxPhases = append(rep.MaxPhases, ph)
	}
	rep.Diag[1] = rig.diagnostics(ctx)
	var rs []float64
	for _, ph := range rep.MaxPhases {
		rs = append(rs, ph.Rate)
	}
	// The latency levels are fractions of what the pipeline sustains under a paced fleet,
	// which is less than the closed-loop maximum: paced, every stage sees smaller bursts
	// and does more work per record.
	sustained := pacedSearchStart * summarize(rs).Med
	for try := range pacedSearchTries {
		ph, err := rig.runPhase(ctx, fmt.Sprintf("paced %d", try+1), levelFor*3/4, sustained, 0, progress)
		if err != nil {
			return err
		}
		rep.Paced = append(rep.Paced, ph)
		if ph.held(pacedHeld) {
			break
		}
		sustained = min(pacedSearchStep*sustained, pacedHeld*ph.Rate)
	}
	rep.Sustained = sustained
	for _, frac := range []float64{0.25, 0.5, 0.8} {
		ph, err := rig.runPhase(ctx, fmt.Sprintf("%.0f%% of sustained", frac*100), levelFor, frac*sustained, latencyProbeEvery, progress)
		if err != nil {
			return err
		}
		rep.Levels = append(rep.Levels, ph)
	}
	rep.RSS = rig.peakRSS()
	return nil
}

func scaleRun(ctx context.Context, cfg ReportConfig, dir, chAddr string, records, devices int, partitions int32, logger *slog.Logger,
	pt *scalePoint, progress func(string, ...any)) error {
	_ = os.RemoveAll(dir)
	lc := DefaultLoad()
	lc.Records, lc.Devices, lc.Partitions, lc.Data, lc.Stall = records, devices, partitions, dir, 90*time.Second
	lc.ClickHouse = chAddr
	if len(cfg.Self) > 0 {
		lc.RaterCommand = append(slices.Clone(cfg.Self), "load-rater")
	}
	res, code, err := Load(ctx, lc, logger, io.Discard, io.Discard)
	if err != nil || code != 0 {
		return fmt.Errorf("load --records %d --devices %d --partitions %d: exit %d: %v", records, devices, partitions, code, err)
	}
	raw, _ := res.Stage("raw insert")
	pipe, _ := res.Stage("rater+loader")
	pt.Records = records
	pt.Pipeline = append(pt.Pipeline, pipe.Rate())
	pt.Raw = append(pt.Raw, raw.Rate())
	pt.RaterRSS = append(pt.RaterRSS, float64(res.Rater.PeakRSS))
	pt.Devices = append(pt.Devices, res.Rater.Devices)
	progress("load: %d records, %d devices, %d partitions: pipeline %.0f records/s, raw insert %.0f, rater peak RSS %.0f MB",
		records, devices, partitions, pipe.Rate(), raw.Rate(), float64(res.Rater.PeakRSS)/1e6)
	return nil
}

func uptime() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return "load average " + strings.Join(f[:3], ", ")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func toolVersion(name string, args ...string) string {
	if name == "" {
		return "not found"
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 { // mosquitto -h prints its version and exits 3
		return "not found"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func moduleVersions() map[string]string {
	m := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			m[d.Path] = d.Version
		}
	}
	return m
}
