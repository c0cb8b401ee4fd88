package e2e

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/clickhouse"
	"fleetmeter/ingest"
	"fleetmeter/internal/chserver"
	"fleetmeter/internal/chserver/chtest"
	"fleetmeter/kafka"
	"fleetmeter/record"
)

// rssKB reads a process's resident set size.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func readyStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestClickHouseOutage stops ClickHouse for 30 seconds while usage keeps flowing: the
// loader must report not ready, stop consuming (its memory stays flat), and once
// ClickHouse is back every record must land exactly once.
func TestClickHouseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test: runs in make test, not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rulesDir := writeTariffs(t, dir)
	recs := crashInput(t, 100, 400, filepath.Join(dir, "input.jsonl"))

	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaAddr := kc.ListenAddrs()[0]
	ch, err := chserver.Start(ctx, filepath.Join(dir, "clickhouse"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ch.Stop() }()

	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{kafkaAddr}
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(context.Background())

	_, loaderReady, _, loader := ratingStages(t, kafkaAddr, ch.NativeAddr(), rulesDir, "o1")

	// Feed usage steadily through the whole outage.
	fed := feed(ctx, prod, recs, 500, 40*time.Millisecond)
	time.Sleep(3 * time.Second)
	if err := ch.Stop(); err != nil {
		t.Fatal(err)
	}
	outageStart := time.Now()
	var notReady bool
	rssFirst, rssMax := 0, 0
	for time.Since(outageStart) < 30*time.Second {
		if readyStatus(loaderReady) == http.StatusServiceUnavailable {
			notReady = true
		}
		rss := rssKB(t, loader.cmd.Process.Pid)
		if rssFirst == 0 && time.Since(outageStart) > 3*time.Second {
			rssFirst = rss
		}
		rssMax = max(rssMax, rss)
		time.Sleep(time.Second)
	}
	if !notReady {
		t.Errorf("loader /readyz never reported the ClickHouse outage")
	}
	t.Logf("loader RSS during the outage: %d kB after 3 s, at most %d kB", rssFirst, rssMax)
	if rssMax-rssFirst > 64<<10 {
		t.Errorf("loader memory grew by %d kB during the outage: it keeps consuming", rssMax-rssFirst)
	}
	if ch, err = ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, loaderReady, loader)
	if err := <-fed; err != nil {
		t.Fatal(err)
	}

	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr = []string{ch.NativeAddr()}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	waitTotals(t, ctx, store, clickhouse.Filter{Charge: record.ChargeUsage},
		offlineTotals(t, ctx, rulesDir, filepath.Join(dir, "input.jsonl"), false), 2*time.Minute)
}

// TestKafkaOutage takes the Kafka broker away for 20 seconds while raters and the loader
// run: both report not ready, and once the broker is back (same port, same log) every
// record lands in ClickHouse exactly once, as offline rating says.
func TestKafkaOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test: runs in make test, not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rulesDir := writeTariffs(t, dir)
	input := filepath.Join(dir, "input.jsonl")
	recs := crashInput(t, 100, 300, input)

	port := freePort(t)
	kdir := filepath.Join(dir, "kafka")
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(kdir))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { kc.Close() }()
	kafkaAddr := addr(port)
	ch := chtest.StartForTest(t)

	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{kafkaAddr}
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	half := len(recs) / 2
	if err := ingest.Produce(ctx, prod, recs[:half]); err != nil {
		t.Fatal(err)
	}

	raterReady, loaderReady, rater, loader := ratingStages(t, kafkaAddr, ch.NativeAddr(), rulesDir, "k1")
	time.Sleep(2 * time.Second)

	kc.Close()
	outage := time.Now()
	raterDown, loaderDown := false, false
	for time.Since(outage) < 20*time.Second {
		raterDown = raterDown || readyStatus(raterReady) == http.StatusServiceUnavailable
		loaderDown = loaderDown || readyStatus(loaderReady) == http.StatusServiceUnavailable
		time.Sleep(time.Second)
	}
	if !raterDown || !loaderDown {
		t.Errorf("during the Kafka outage /readyz said not ready: rater %v, loader %v; want both", raterDown, loaderDown)
	}
	if kc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(kdir)); err != nil {
		t.Fatal(err)
	}
	// The rest of the input arrives once the broker is back.
	if err := ingest.Produce(ctx, prod, recs[half:]); err != nil {
		t.Fatal(err)
	}
	_ = prod.Close(ctx)
	waitReady(t, raterReady, rater)
	waitReady(t, loaderReady, loader)

	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr = []string{ch.NativeAddr()}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	waitTotals(t, ctx, store, clickhouse.Filter{Charge: record.ChargeUsage},
		offlineTotals(t, ctx, rulesDir, input, false), 2*time.Minute)
}

// waitTotals polls ClickHouse's billing totals until they equal want, failing the test
// with both sides after timeout.
func waitTotals(t *testing.T, ctx context.Context, store *clickhouse.Store, f clickhouse.Filter,
	want map[string]clickhouse.Total, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := store.Totals(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		match := len(got) == len(want)
		for _, g := range got {
			match = match && want[g.Tenant] == g
		}
		if match {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickhouse holds %+v; want %+v", got, want)
		}
		time.Sleep(time.Second)
	}
}
