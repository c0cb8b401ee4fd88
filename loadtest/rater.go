package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"fleetmeter/internal/obs"
	"fleetmeter/kafka"
	"fleetmeter/pipeline"
	"fleetmeter/rules"
)

// RaterReport is what the load test's rater process reports when it stops.
type RaterReport struct {
	Rated          float64 `json:"rated"`
	Committed      float64 `json:"transactions_committed"`
	Aborted        float64 `json:"transactions_aborted"`
	TxnSeconds     float64 `json:"transaction_seconds"`
	ChangelogBytes float64 `json:"changelog_bytes"`
	Devices        float64 `json:"devices"`
	PeakRSS        int64   `json:"peak_rss_bytes"`
	HeapSys        uint64  `json:"heap_sys_bytes"` // what the Go heap holds from the system at the end
	HeapInuse      uint64  `json:"heap_inuse_bytes"`
	GCs            uint32  `json:"gc_cycles"`
}

// RunRater is the load test's rater, in a process of its own so that its memory is
// measured apart from the embedded broker's (which holds every topic in memory). It
// rates until SIGTERM, then prints a RaterReport as JSON on stdout. Not for operators:
// `rater run` is the product's command.
func RunRater(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleetmeter load-rater", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("kafka", "", "Kafka bootstrap address")
	rulesDir := fs.String("rules", "", "tariff directory")
	group := fs.String("group", "fleetmeter-load-rater", "consumer group")
	level := fs.String("log-level", "warn", "log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger, err := obs.ParseLogger(*level)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	obs.SetGCPercent(obs.RaterGCPercent)
	set, err := rules.Load(*rulesDir)
	if err != nil {
		fmt.Fprintln(stderr, "load-rater: tariffs:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{*brokers}
	reg := obs.NewRegistry()
	r, err := pipeline.NewRater(ctx, pipeline.RaterConfig{Kafka: kcfg, Group: *group, InstanceID: "load"}, set, reg,
		logger.With("component", "rater"))
	if err != nil {
		fmt.Fprintln(stderr, "load-rater:", err)
		return 1
	}
	if p := os.Getenv("FLEETMETER_LOAD_HEAPPROFILE"); p != "" { // the heap at its largest, for pprof
		go peakHeapProfile(ctx, p)
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "load-rater:", err)
		return 1
	}
	rep := RaterReport{
		Rated:          metricSum(reg, "fleetmeter_rater_rated_total", ""),
		Committed:      metricSum(reg, "fleetmeter_rater_transactions_total", "committed"),
		Aborted:        metricSum(reg, "fleetmeter_rater_transactions_total", "aborted"),
		ChangelogBytes: metricSum(reg, "fleetmeter_rater_changelog_bytes_total", ""),
		Devices:        metricSum(reg, "fleetmeter_rater_devices", ""),
		PeakRSS:        PeakRSS(os.Getpid()),
	}
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "fleetmeter_rater_batch_seconds" && len(mf.GetMetric()) == 1 {
				rep.TxnSeconds = mf.GetMetric()[0].GetHistogram().GetSampleSum()
			}
		}
	}
	if p := os.Getenv("FLEETMETER_LOAD_MEMPROFILE"); p != "" { // allocations of the whole run, for pprof
		if f, err := os.Create(p); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.HeapSys, rep.HeapInuse, rep.GCs = ms.HeapSys, ms.HeapInuse, ms.NumGC
	b, _ := json.Marshal(rep)
	fmt.Fprintln(stdout, string(b))
	return 0
}

// PeakRSS reads a process's peak resident set (VmHWM) from /proc; 0 where there is none.
func PeakRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// peakHeapProfile writes a heap profile to path each time the heap in use reaches a new
// high, until ctx ends: what the rater holds when it holds the most.
func peakHeapProfile(ctx context.Context, path string) {
	var high uint64
	for ctx.Err() == nil {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > high+high/10 {
			high = ms.HeapInuse
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}
