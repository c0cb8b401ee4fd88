package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/clickhouse"
	"fleetmeter/deploy"
	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/internal/chserver/chtest"
	"fleetmeter/kafka"
	"fleetmeter/record"
	"fleetmeter/sim"
)

// crashInput builds n canonical usage records from the simulated fleet, all in period
// 2026-10, and writes them as JSON Lines too.
func crashInput(t *testing.T, devices, perDevice int, jsonl string) []record.Usage {
	t.Helper()
	fleet := sim.NewFleet(devices, 7)
	p := payload.Parser{Limits: payload.DefaultLimits()}
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var recs []record.Usage
	for k := 0; k < perDevice; k++ {
		for i := range fleet.Devices {
			d := &fleet.Devices[i]
			ts := base + int64(k)*60_000 + int64(i)
			var err error
			recs, err = p.Parse(payload.KindJSON, fleet.Message(nil, i, uint64(k+1), ts),
				payload.Identity{Tenant: d.Tenant, Device: d.ID, Source: record.SourceMQTT}, ts, recs)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	var b []byte
	for i := range recs {
		b = record.AppendJSON(b, &recs[i])
		b = append(b, '\n')
	}
	if err := os.WriteFile(jsonl, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return recs
}

// writeTariffs copies the example tariffs into dir/rules.
func writeTariffs(t *testing.T, dir string) string {
	t.Helper()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := fs.WalkDir(deploy.Tariffs, "tariffs", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := deploy.Tariffs.ReadFile(p)
			err = os.WriteFile(filepath.Join(rulesDir, d.Name()), b, 0o600)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rulesDir
}

// offlineTotals rates input with `rater rate` and sums per tenant: every charge after
// closing the periods when closing, else the usage charges only.
func offlineTotals(t *testing.T, ctx context.Context, rulesDir, input string, closing bool) map[string]clickhouse.Total {
	t.Helper()
	args := []string{"rate", "--rules", rulesDir, "--in", input}
	if closing {
		args = append(args, "--close")
	}
	out := run(t, ctx, filepath.Join(binDir, "rater"), "", args...)
	want := map[string]clickhouse.Total{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, err := record.ParseRatedJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("offline output: %v", err)
		}
		if !closing && r.Charge != record.ChargeUsage {
			continue
		}
		w := want[r.Tenant]
		w.Tenant, w.Currency = r.Tenant, r.Currency
		w.Records++
		w.Amount += r.Amount
		want[r.Tenant] = w
	}
	return want
}

// feed produces recs to topic usage in chunks with a pause between them; the channel
// reports the end.
func feed(ctx context.Context, prod *kafka.Producer, recs []record.Usage, chunk int, pause time.Duration) <-chan error {
	fed := make(chan error, 1)
	go func() {
		for i := 0; i < len(recs); i += chunk {
			if err := ingest.Produce(ctx, prod, recs[i:min(i+chunk, len(recs))]); err != nil {
				fed <- err
				return
			}
			time.Sleep(pause)
		}
		fed <- nil
	}()
	return fed
}

// ratingStages starts `rater run` and `rater load` as instance id and waits until both
// are ready; it returns their /readyz URLs and processes.
func ratingStages(t *testing.T, kafkaAddr, chAddr, rulesDir, id string) (raterReady, loaderReady string, rater, loader *proc) {
	t.Helper()
	raterListen, loadListen := addr(freePort(t)), addr(freePort(t))
	rater = start(t, filepath.Join(binDir, "rater"), "run", "--kafka.brokers", kafkaAddr, "--instance", id,
		"--rules", rulesDir, "--listen", raterListen, "--log-level", "error")
	loader = start(t, filepath.Join(binDir, "rater"), "load", "--kafka.brokers", kafkaAddr, "--instance", id,
		"--clickhouse.addr", chAddr, "--listen", loadListen, "--log-level", "error")
	raterReady, loaderReady = "http://"+raterListen+"/readyz", "http://"+loadListen+"/readyz"
	waitReady(t, raterReady, rater)
	waitReady(t, loaderReady, loader)
	return raterReady, loaderReady, rater, loader
}

// envInt reads a positive integer from the environment, def when unset.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// restartable is a stage the harness kills and starts again with the same arguments.
type restartable struct {
	name string
	bin  string
	args []string
	p    *proc
}

func (r *restartable) kill9(t *testing.T) {
	_ = syscall.Kill(-r.p.cmd.Process.Pid, syscall.SIGKILL)
	<-r.p.done
	r.p = start(t, r.bin, r.args...)
}

// TestCrashEffectivelyOnce pushes 200,000 usage records of 500 devices through two raters
// and a loader while SIGKILLing a random stage at random moments (12 kills), then closes
// the period and checks that ClickHouse, as billing reads it, holds per tenant exactly the
// count and amount that `rater rate --close` computes offline from the same input.
//
// The fleet's size is set by FLEETMETER_CRASH_DEVICES and FLEETMETER_CRASH_PER_DEVICE; at
// fleet scale (1,000,000 devices of rater state, about 20 minutes here):
//
//	FLEETMETER_CRASH_DEVICES=1000000 FLEETMETER_CRASH_PER_DEVICE=3 \
//	  go test -count=1 -timeout 90m -run TestCrashEffectivelyOnce -v ./e2e/
func TestCrashEffectivelyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: runs in make test, not with -short")
	}
	devices, perDevice := envInt(t, "FLEETMETER_CRASH_DEVICES", 500), envInt(t, "FLEETMETER_CRASH_PER_DEVICE", 400)
	scale := time.Duration(max(1, devices*perDevice/200_000))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute*scale)
	defer cancel()
	dir := t.TempDir()
	rulesDir := writeTariffs(t, dir)
	input := filepath.Join(dir, "input.jsonl")
	recs := crashInput(t, devices, perDevice, input)

	// What billing must see, computed offline by the same engine.
	want := offlineTotals(t, ctx, rulesDir, input, true)

	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(filepath.Join(dir, "kafka")))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaAddr := kc.ListenAddrs()[0]
	ch := chtest.StartForTest(t)

	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{kafkaAddr}
	kcfg.Partitions = 6
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(context.Background())

	rater := filepath.Join(binDir, "rater")
	common := []string{"--kafka.brokers", kafkaAddr, "--listen", "", "--log-level", "warn"}
	stages := []*restartable{
		{name: "rater-1", bin: rater, args: append([]string{"run", "--instance", "r1", "--rules", rulesDir}, common...)},
		{name: "rater-2", bin: rater, args: append([]string{"run", "--instance", "r2", "--rules", rulesDir}, common...)},
		{name: "loader", bin: rater, args: append([]string{"load", "--instance", "l1", "--clickhouse.addr", ch.NativeAddr()}, common...)},
	}
	for _, s := range stages {
		s.p = start(t, s.bin, s.args...)
	}

	// Feed the input over a few seconds while the harness kills stages.
	fed := feed(ctx, prod, recs, 2000*int(scale), 60*time.Millisecond)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := map[string]int{}
	for n := 0; n < 12; n++ {
		time.Sleep(time.Duration(800+rng.IntN(1700)) * time.Millisecond * scale)
		s := stages[rng.IntN(len(stages))]
		s.kill9(t)
		kills[s.name]++
	}
	if err := <-fed; err != nil {
		t.Fatalf("feeding usage: %v", err)
	}
	t.Logf("SIGKILLs: %v", kills)

	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr = []string{ch.NativeAddr()}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	waitTotals(t, ctx, store, clickhouse.Filter{Charge: record.ChargeUsage},
		offlineTotals(t, ctx, rulesDir, input, false), 4*time.Minute*scale)
	// Device fees: every device's provisional fee must be in before closing.
	for deadline := time.Now().Add(time.Minute * scale); time.Now().Before(deadline); {
		devs, err := store.ActiveDevices(ctx, clickhouse.Filter{Charge: record.ChargeDeviceFee})
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, d := range devs {
			n += d
		}
		if n == uint64(devices) {
			break
		}
		time.Sleep(time.Second)
	}
	var closed [2]string
	for i := range closed { // closing twice must change nothing
		closed[i] = run(t, ctx, rater, "", "close", "--period", "2026-10", "--rules", rulesDir, "--clickhouse.addr", ch.NativeAddr())
	}
	// The first close makes each tenant's invoice of the period final; the second finds
	// nothing new to finalize.
	for tenant := range want {
		if !strings.Contains(closed[0], "\t"+tenant+"\tfinal\t") {
			t.Errorf("rater close did not report a final invoice of %s:\n%s", tenant, closed[0])
		}
		if strings.Contains(closed[1], "\t"+tenant+"\tfinal\t") {
			t.Errorf("closing again finalized another document of %s:\n%s", tenant, closed[1])
		}
	}
	got, err := store.Totals(ctx, clickhouse.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	gotBy := map[string]clickhouse.Total{}
	for _, g := range got {
		gotBy[g.Tenant] = g
	}
	var names []string
	for k := range want {
		names = append(names, k)
	}
	sort.Strings(names)
	var report bytes.Buffer
	bad := len(gotBy) != len(want)
	for _, k := range names {
		fmt.Fprintf(&report, "%s: offline %d records %s %s, clickhouse %d records %s %s\n", k,
			want[k].Records, want[k].Amount, want[k].Currency, gotBy[k].Records, gotBy[k].Amount, gotBy[k].Currency)
		if want[k] != gotBy[k] {
			bad = true
		}
	}
	if bad {
		t.Fatalf("billing totals differ after %v kills:\n%s", kills, report.String())
	}
	t.Logf("billing totals match after kills %v:\n%s", kills, report.String())
}
