package loadtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBenchReport runs the benchmark report in its short form (every part at tiny sizes,
// one round) so the harness never rots: it asserts nothing about speed, only that the
// report and every plot are written and well formed and that each part measured something.
func TestBenchReport(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var log bytes.Buffer
	cfg := ReportConfig{Short: true, Out: filepath.Join(dir, "BENCHMARKS.md"), Plots: filepath.Join(dir, "bench"),
		Work: filepath.Join(dir, "work"), Self: []string{exe}, Log: &log}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := RunReport(ctx, cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	md, err := os.ReadFile(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^## Each stage beside its raw ceiling$`,
		`(?m)^\| CHF CDR decode \(1 core\) \| [\d.]+[kM]? / \*\*[\d.]+[kM]?\*\* / [\d.]+[kM]? records/s \| encoding/asn1`,
		`(?m)^\| closed-loop maximum, records/s in ClickHouse .*\| \d+ / \*\*\d+\*\* / \d+ records/s \|$`,
		`(?m)^\| sustained maximum, paced fleet, records/s \(by try: offered \d+, sent \d+, last rows [\d.]+ s after[^;|]*(; offered \d+, sent \d+, last rows [\d.]+ s after[^;|]*)*\) \| \**\d+\** records/s`,
		`(?m)^\| cost per million records, CPU seconds of all services \(at the maximum\) \| \*\*[\d.]+\*\* \|$`,
		`(?m)^\| 80% of sustained \| \d+ \| \d+ \| [1-9]\d* \| \d+ ms \| \d+ ms \| \d+ ms \| \d+ \| ≤ \d+ ms / ≤ \d+ ms \| ≤ \d+ ms / ≤ \d+ ms \|$`,
		`(?m)^\| 80% of sustained \| \d+ ms / \d+ ms \| \d+ ms / \d+ ms \| \d+ ms / \d+ ms \|$`, // where the time goes
		`(?m)^\| 80% of sustained \| [1-9]\d* \| [1-9]\d* \| [1-9]\d* \| \d+ \|$`,               // ClickHouse's counts
		`(?m)^\| 5000 \| 10000 \| [\d.]+k? / `,
		`(?m)^\| 4 \| 5000 \| [\d.]+k? / `,
		`(?m)^## Beside what users would otherwise run$`,
		`(?m)^\| parsing the JSON lines \| \d+ ms \| \d+ ms \| [+-]\d+ ms \|$`, // the HTTP profiles, split
	} {
		if !regexp.MustCompile(re).Match(md) {
			t.Errorf("report lacks %s", re)
		}
	}
	for _, p := range rep.Pairs {
		if len(p.Impl) == 0 && p.Bench != "BenchmarkCoAP" { // the CoAP-through-Kafka variant may not exist
			t.Errorf("stage %q not measured: %s", p.Stage, p.Err)
		}
	}
	for _, name := range []string{"stages.svg", "latency.svg", "devices.svg", "partitions.svg"} {
		b, err := os.ReadFile(filepath.Join(cfg.Plots, name))
		if err != nil {
			t.Fatal(err)
		}
		var root struct {
			XMLName xml.Name
			Width   string `xml:"width,attr"`
		}
		if err := xml.Unmarshal(b, &root); err != nil || root.XMLName.Local != "svg" || len(b) < 2000 {
			t.Errorf("%s: not a plot (%d bytes, root %q): %v", name, len(b), root.XMLName.Local, err)
		}
		if !regexp.MustCompile(`<path|<line|<polyline`).Match(b) {
			t.Errorf("%s draws nothing", name)
		}
	}
	t.Logf("short report:\n%s", md)
}

// The latency aim is met only by a level that landed what it offered, with a p99 under a
// second.
func TestLatencyVerdict(t *testing.T) {
	fast := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 900 * time.Millisecond}
	slow := []time.Duration{100 * time.Millisecond, 1500 * time.Millisecond}
	for _, c := range []struct {
		name string
		ph   phase
		want string
	}{
		{"landed, fast", phase{Offered: 1000, Sent: 19900, Sending: 20, Landed: 19900, Tail: 0.4, Latencies: fast}, "met"},
		{"landed, slow", phase{Offered: 1000, Sent: 20000, Sending: 20, Landed: 20000, Tail: 0.4, Latencies: slow}, "**not met**"},
		{"no probes", phase{Offered: 1000, Sent: 20000, Sending: 20, Landed: 20000, Tail: 0.4}, "**not met**"},
		{"not sent, fast", phase{Offered: 1000, Sent: 12000, Sending: 20, Landed: 12000, Tail: 0.4, Latencies: fast},
			"**not shown**: this level sent 600 of the 1000"},
		{"not all landed, fast", phase{Offered: 1000, Sent: 20000, Sending: 20, Landed: 19000, Tail: 0.4, Latencies: fast},
			"**not shown**: this level sent 1000 of the 1000 records/s offered and landed 19000 of its 20000 records"},
		{"landed late, fast", phase{Offered: 1000, Sent: 20000, Sending: 20, Landed: 20000, Tail: 3, Latencies: fast},
			"**not shown**: this level sent 1000 of the 1000 records/s offered and landed 20000 of its 20000 records, the last 3.0 s"},
		{"nothing sent", phase{Offered: 1000}, "**not shown**: this level sent 0 of the 1000"},
	} {
		if got := latencyVerdict(c.ph); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %q...", c.name, got, c.want)
		}
	}
}
