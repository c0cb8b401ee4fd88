package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"fleetmeter/deploy"
	"fleetmeter/rating"
	"fleetmeter/rules"
)

// The watch reports the tariffs in force by id and stamp, counts a refused change and
// flags it until a valid change is applied.
func TestTariffWatchMetrics(t *testing.T) {
	dir := t.TempDir()
	src, err := deploy.Tariffs.ReadFile("tariffs/agrico.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "agrico.yaml")
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(src)
	set, err := rules.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	engine := rating.NewEngine(set, rating.Options{})
	reg := prometheus.NewRegistry()
	w := NewTariffWatch(dir, 20*time.Millisecond, engine, reg, nil)
	stamp := set.Tariffs[0].Stamp
	if got := testutil.ToFloat64(w.info.WithLabelValues("agri-eu", stamp)); got != 1 {
		t.Fatalf("tariff agri-eu %s in force: %v, want 1", stamp, got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("timed out waiting for " + what)
			}
		}
	}
	refused := func() float64 { return testutil.ToFloat64(w.reloads.WithLabelValues("refused")) }

	write(append(append([]byte{}, src...), "\nnot_a_key: 1\n"...))
	waitFor("the refusal", func() bool { return refused() == 1 })
	if testutil.ToFloat64(w.refused) != 1 {
		t.Fatal("refused gauge not set while the files are refused")
	}
	if engine.Rules() == nil || engine.Rules().Tariffs[0].Stamp != stamp {
		t.Fatal("the refused change replaced the tariffs in force")
	}

	write([]byte(strings.Replace(string(src), `version: "2026-11"`, `version: "2026-12"`, 1)))
	waitFor("the new version", func() bool { return testutil.ToFloat64(w.refused) == 0 })
	newStamp := engine.Rules().Tariffs[0].Stamp
	if !strings.HasPrefix(newStamp, "2026-12+") {
		t.Fatalf("engine runs %s, want version 2026-12", newStamp)
	}
	if n := testutil.CollectAndCount(w.info); n != 1 {
		t.Fatalf("%d tariff_info series, want only the tariff in force", n)
	}
	if got := testutil.ToFloat64(w.info.WithLabelValues("agri-eu", newStamp)); got != 1 {
		t.Fatalf("tariff_info of %s: %v", newStamp, got)
	}
	if refused() != 1 {
		t.Fatalf("refused changes: %v, want 1", refused())
	}
}
