package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pair is one stage measured beside its raw ceiling: two sub-benchmarks of one Go
// benchmark, each run in a process of its own so its CPU time and peak RSS are its own.
type pair struct {
	Stage, Ceiling string // what is measured, and the raw baseline it is compared with
	Label          string // the stage in the plot
	Pkg            string // package directory, relative to the module root
	Bench          string // top-level benchmark
	Impl, Raw      string // sub-benchmark paths ("" Raw: no ceiling, an aim per core instead)
	Unit           string // the metric both report
	// RawUnit, when set, is the ceiling's metric reported by the same benchmark, which
	// runs both sides in one process in alternating rounds (Raw is then unused).
	RawUnit     string
	Full, Short string // -test.benchtime
	Aim         float64
	AimText     string
	// Profile, when set, splits a CPU profile of each side, taken in one more run of
	// each after the rounds (ProfileFull or ProfileShort requests), into these parts.
	Profile                   []profilePart
	ProfileFull, ProfileShort string
}

// pairs are the stages and their ceilings. The benchmarks live beside the code they
// measure; this table only says which to run against which.
var pairs = []pair{
	{Stage: "MQTT collector -> Kafka (QoS 1, 100 B)", Label: "MQTT->Kafka", Ceiling: "Mosquitto -> bare paho subscriber", Pkg: "e2e",
		Bench: "BenchmarkMQTTIngest", Impl: "path=collector", Raw: "path=raw", Unit: "msg/s", Full: "20000x", Short: "2000x"},
	{Stage: "CoAP collector (ack sink)", Label: "CoAP (ack sink)", Ceiling: "bare go-coap server", Pkg: "ingest/coap",
		Bench: "BenchmarkCoAP", Impl: "impl=fleetmeter", Raw: "impl=raw", Unit: "req/s", Full: "20000x", Short: "1000x", Aim: 0.6, AimText: ">= 0.6"},
	{Stage: "CoAP collector -> Kafka", Label: "CoAP->Kafka", Ceiling: "bare go-coap server", Pkg: "ingest/coap",
		Bench: "BenchmarkCoAP", Impl: "impl=kafka", Raw: "impl=raw", Unit: "req/s", Full: "20000x", Short: "1000x", Aim: 0.6, AimText: ">= 0.6"},
	{Stage: "HTTP JSON Lines ingest, 1 client", Label: "HTTP, 1 client", Ceiling: "bare net/http handler reading the body", Pkg: "ingest/httpin",
		Bench: "BenchmarkPost", Impl: "server=httpin/lines=100/conc=1", Raw: "server=bare/lines=100/conc=1", Unit: "records/s", Full: "3000x", Short: "200x"},
	{Stage: "HTTP JSON Lines ingest, 8 clients", Label: "HTTP, 8 clients", Ceiling: "bare net/http handler reading the body", Pkg: "ingest/httpin",
		Bench: "BenchmarkPost", Impl: "server=httpin/lines=100/conc=8", Raw: "server=bare/lines=100/conc=8", Unit: "records/s", Full: "5000x", Short: "200x", Aim: 0.6, AimText: ">= 0.6",
		Profile: httpParts, ProfileFull: "50000x", ProfileShort: "2000x"},
	{Stage: "HTTP JSON Lines ingest, 8 clients, alternating in one process", Label: "HTTP 8 cl. (alt.)", Ceiling: "bare net/http handler, same process", Pkg: "ingest/httpin",
		Bench: "BenchmarkPostVsBare", Impl: "lines=100/conc=8", Unit: "records/s", RawUnit: "bare-records/s", Full: "1000x", Short: "100x", Aim: 0.6, AimText: ">= 0.6"},
	{Stage: "HTTP JSON Lines ingest, 8 clients, beside a fairer baseline", Label: "HTTP vs json.Valid", Ceiling: "net/http + encoding/json.Valid per line, same process", Pkg: "ingest/httpin",
		Bench: "BenchmarkPostVsBare", Impl: "lines=100/conc=8", Unit: "records/s", RawUnit: "scan-records/s", Full: "1000x", Short: "100x", Aim: 0.6, AimText: ">= 0.6"},
	{Stage: "CoAP collector -> Kafka, 64 clients, alternating in one process", Label: "CoAP->Kafka (alt.)", Ceiling: "bare go-coap server, same process", Pkg: "ingest/coap",
		Bench: "BenchmarkCoAPKafka", Impl: "clients=64", Unit: "req/s", RawUnit: "bare-req/s", Full: "10000x", Short: "1000x", Aim: 0.6, AimText: ">= 0.6"},
	{Stage: "CoAP collector -> Kafka, 64 clients, beside a fairer baseline", Label: "CoAP vs coap+kgo",
		Ceiling: "bare go-coap producing each body to the same kfake with bare franz-go, answering after the ack, same process", Pkg: "ingest/coap",
		Bench: "BenchmarkCoAPKafka", Impl: "clients=64", Unit: "req/s", RawUnit: "kafka-req/s", Full: "10000x", Short: "1000x"},
	{Stage: "CHF CDR decode, alternating in one process", Label: "CDR (alt.)", Ceiling: "encoding/asn1 into Go structs, same process", Pkg: "cdr",
		Bench: "BenchmarkDecodeVsASN1", Unit: "records/s", RawUnit: "asn1-records/s", Full: "1s", Short: "100ms", Aim: 10, AimText: ">= 10x"},
	{Stage: "CHF CDR decode (1 core)", Label: "CDR decode", Ceiling: "encoding/asn1 into Go structs", Pkg: "cdr",
		Bench: "BenchmarkDecode", Impl: "impl=fleetmeter", Raw: "impl=encoding_asn1", Unit: "records/s", Full: "1s", Short: "200ms", Aim: 10, AimText: ">= 10x"},
	{Stage: "Kafka produce (Arrow IPC, LZ4, kfake)", Label: "Kafka produce", Ceiling: "bare franz-go producing pre-encoded messages", Pkg: "loadtest",
		Bench: "BenchmarkProduce", Impl: "impl=fleetmeter", Raw: "impl=raw", Unit: "records/s", Full: "2000x", Short: "50x"},
	{Stage: "ClickHouse insert (InsertRated, views)", Label: "ClickHouse insert", Ceiling: "clickhouse-go column-wise insert, plain MergeTree", Pkg: "clickhouse",
		Bench: "BenchmarkInsert", Impl: "impl=store", Raw: "impl=raw", Unit: "rows/s", Full: "10x", Short: "1x"},
	{Stage: "Rating, batched (1 core)", Label: "rating batched", Pkg: "rating", Bench: "BenchmarkRateBatch", Impl: "tariff=zones50/devices=1000000/batch=256",
		Unit: "records/s", Full: "1s", Short: "100ms", Aim: 2e6, AimText: ">= 2M records/s/core"},
	{Stage: "Rating, per record (1 core)", Label: "rating", Pkg: "rating", Bench: "BenchmarkRate", Impl: "tariff=zones50/devices=1000000",
		Unit: "records/s", Full: "1s", Short: "100ms"},
}

// sample is one benchmark process's result.
type sample struct {
	Rate   float64
	CPU    time.Duration // user+system of the process and the children it reaped
	PeakRS int64         // bytes
	Wall   time.Duration
}

// pairResult holds the rounds of one pair.
type pairResult struct {
	pair
	Impl, Raw []sample
	Err       string
	// ImplCPU and RawCPU are the profiles of Profile, split (nil when not taken).
	ImplCPU, RawCPU *cpuSplit
}

// buildTestBinaries compiles each package's test binary once into dir.
func buildTestBinaries(ctx context.Context, root, dir string, pkgs []string) (map[string]string, error) {
	bins := map[string]string{}
	for _, p := range pkgs {
		if _, ok := bins[p]; ok {
			continue
		}
		out := filepath.Join(dir, strings.ReplaceAll(p, "/", "_")+".test")
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", out, "./"+p)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go test -c ./%s: %v\n%s", p, err, b)
		}
		bins[p] = out
	}
	return bins, nil
}

// benchPattern anchors each level of a benchmark path: -test.bench matches per level.
func benchPattern(bench, sub string) string {
	parts := []string{"^" + regexp.QuoteMeta(bench) + "$"}
	if sub == "" {
		return parts[0]
	}
	for _, s := range strings.Split(sub, "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(s)+"$")
	}
	return strings.Join(parts, "/")
}

// runBench runs one sub-benchmark in a process of its own and reads its rate.
func runBench(ctx context.Context, bin, pkgDir, bench, sub, unit, benchtime string, args ...string) (sample, error) {
	s, _, err := runBench2(ctx, bin, pkgDir, bench, sub, unit, "", benchtime, args...)
	return s, err
}

// runBench2 is runBench also reading a second metric, rawUnit, of the same line: the
// ceiling of a benchmark that measures both sides in one process.
func runBench2(ctx context.Context, bin, pkgDir, bench, sub, unit, rawUnit, benchtime string, args ...string) (sample, float64, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"-test.run", "^$", "-test.bench", benchPattern(bench, sub),
		"-test.benchtime", benchtime, "-test.count", "1"}, args...)...)
	cmd.Dir = pkgDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	s := sample{Wall: time.Since(start)}
	if st := cmd.ProcessState; st != nil {
		s.CPU = st.UserTime() + st.SystemTime()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			s.PeakRS = ru.Maxrss << 10
		}
	}
	if err != nil {
		return s, 0, fmt.Errorf("%s/%s: %v: %s", bench, sub, err, tail(out.String(), 600))
	}
	name := bench
	if sub != "" {
		name += "/" + sub
	}
	var raw float64
	found := false
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], name) {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case unit:
				s.Rate, found = v, true
			case rawUnit:
				raw = v
			}
		}
		if found {
			break
		}
	}
	if !found || (rawUnit != "" && raw == 0) {
		return s, 0, fmt.Errorf("%s: no %q figure in: %s", name, unit, tail(out.String(), 600))
	}
	return s, raw, nil
}

// profileTime is the -test.benchtime of the profiled runs.
func (p pair) profileTime(short bool) string {
	if short {
		return p.ProfileShort
	}
	return p.ProfileFull
}

// profileBench runs one sub-benchmark once more with a CPU profile and splits it into parts.
func profileBench(ctx context.Context, bin, pkgDir, bench, sub, unit, benchtime string, parts []profilePart) (*cpuSplit, error) {
	f, err := os.CreateTemp("", "fleetmeter-bench-*.pprof")
	if err != nil {
		return nil, err
	}
	f.Close()
	defer os.Remove(f.Name())
	if _, err := runBench(ctx, bin, pkgDir, bench, sub, unit, benchtime, "-test.cpuprofile", f.Name()); err != nil {
		return nil, err
	}
	split, err := splitProfile(f.Name(), parts)
	if err != nil {
		return nil, err
	}
	return &split, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// runPairs runs every pair for rounds rounds, raw and impl alternating, so drift on a
// shared machine touches both sides alike.
func runPairs(ctx context.Context, root string, bins map[string]string, rounds int, short bool, progress func(string, ...any)) []pairResult {
	var res []pairResult
	for _, p := range pairs {
		r := pairResult{pair: p}
		bt := p.Full
		if short {
			bt = p.Short
		}
		for round := range rounds {
			if p.RawUnit != "" {
				s, raw, err := runBench2(ctx, bins[p.Pkg], filepath.Join(root, p.Pkg), p.Bench, p.Impl, p.Unit, p.RawUnit, bt)
				if err != nil {
					r.Err = err.Error()
					break
				}
				r.Impl = append(r.Impl, s)
				r.Raw = append(r.Raw, sample{Rate: raw, CPU: s.CPU, PeakRS: s.PeakRS, Wall: s.Wall})
				progress("stage %s, round %d: %.0f %s (ceiling %.0f, same process)", p.Stage, round+1, s.Rate, p.Unit, raw)
				continue
			}
			if p.Raw != "" {
				s, err := runBench(ctx, bins[p.Pkg], filepath.Join(root, p.Pkg), p.Bench, p.Raw, p.Unit, bt)
				if err != nil {
					r.Err = err.Error()
					break
				}
				r.Raw = append(r.Raw, s)
			}
			s, err := runBench(ctx, bins[p.Pkg], filepath.Join(root, p.Pkg), p.Bench, p.Impl, p.Unit, bt)
			if err != nil {
				r.Err = err.Error()
				break
			}
			r.Impl = append(r.Impl, s)
			progress("stage %s, round %d: %.0f %s (ceiling %s)", p.Stage, round+1, s.Rate, p.Unit, rawText(r))
		}
		if p.Profile != nil && r.Err == "" {
			bt := p.profileTime(short)
			var err error
			if r.RawCPU, err = profileBench(ctx, bins[p.Pkg], filepath.Join(root, p.Pkg), p.Bench, p.Raw, p.Unit, bt, p.Profile); err == nil {
				r.ImplCPU, err = profileBench(ctx, bins[p.Pkg], filepath.Join(root, p.Pkg), p.Bench, p.Impl, p.Unit, bt, p.Profile)
			}
			if err != nil {
				r.RawCPU, r.ImplCPU = nil, nil
				progress("stage %s: no profile: %v", p.Stage, err)
			}
		}
		res = append(res, r)
	}
	return res
}

func rawText(r pairResult) string {
	if len(r.Raw) == 0 {
		return "-"
	}
	return strconv.FormatFloat(r.Raw[len(r.Raw)-1].Rate, 'f', 0, 64)
}

// stats is min, median and max.
type stats struct{ Min, Med, Max float64 }

func summarize(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return stats{Min: s[0], Med: s[len(s)/2], Max: s[len(s)-1]}
}

func rates(s []sample) []float64 {
	var v []float64
	for _, x := range s {
		v = append(v, x.Rate)
	}
	return v
}

// ratios pairs round k's impl with round k's raw.
func (r pairResult) ratios() []float64 {
	var v []float64
	for k := range min(len(r.Impl), len(r.Raw)) {
		if r.Raw[k].Rate > 0 {
			v = append(v, r.Impl[k].Rate/r.Raw[k].Rate)
		}
	}
	return v
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = up
	}
}
