package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/kafka"
	"fleetmeter/record"
)

// TestRaterRestartServesQuickly: a rater owning one partition with many devices of state
// is SIGKILLed and started again; it must rate a new record within 15 s of its start,
// replaying the partition's changelog first (about 0.7 s for 250,000 devices here). The
// fleet's size is FLEETMETER_RESTART_DEVICES (default 250,000).
func TestRaterRestartServesQuickly(t *testing.T) {
	if testing.Short() {
		t.Skip("restart test: runs in make test, not with -short")
	}
	devices := envInt(t, "FLEETMETER_RESTART_DEVICES", 250_000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rulesDir := writeTariffs(t, dir)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaAddr := kc.ListenAddrs()[0]
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{kafkaAddr}
	kcfg.Partitions = 1
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(context.Background())

	ts := time.Date(2026, 10, 7, 12, 0, 0, 0, time.UTC).UnixMilli()
	usage := func(dev string, i int) record.Usage {
		return record.Usage{EventID: fmt.Sprintf("%s-%d", dev, i), Tenant: "agrico", Device: dev, Source: record.SourceMQTT,
			StartTime: ts + int64(i), EndTime: ts + int64(i), ReceivedTime: ts + int64(i), BytesUp: 100, Events: 1,
			Cell: fmt.Sprintf("2620100%05d", i%997), PLMN: "262-01"}
	}
	recs := make([]record.Usage, devices)
	for i := range recs {
		recs[i] = usage(fmt.Sprintf("sensor-%07d", i), i)
	}
	if err := <-feed(ctx, prod, recs, 20_000, 0); err != nil {
		t.Fatal(err)
	}

	rater := filepath.Join(binDir, "rater")
	args := []string{"run", "--instance", "r1", "--rules", rulesDir, "--kafka.brokers", kafkaAddr, "--listen", "",
		"--log-level", "info"}
	p := start(t, rater, args...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics(kafka.TopicRated), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// waitRated reads topic rated until it has seen want usage records or the canary.
	seen := 0
	waitRated := func(want int, canary string, deadline time.Time) bool {
		for time.Now().Before(deadline) {
			pctx, pcancel := context.WithDeadline(ctx, deadline)
			fs := cl.PollFetches(pctx)
			pcancel()
			found := false
			fs.EachRecord(func(r *kgo.Record) {
				rs, err := record.DecodeRated(r.Value, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range rs {
					if x.Charge == record.ChargeUsage {
						seen++
					}
					if x.RecordID == canary {
						found = true
					}
				}
			})
			if found || (canary == "" && seen >= want) {
				return true
			}
		}
		return false
	}
	if !waitRated(devices, "", time.Now().Add(5*time.Minute)) {
		t.Fatalf("the rater rated %d of %d records:\n%s", seen, devices, p.output())
	}

	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	canary := usage("sensor-0000001", devices+1) // a device the state knows
	if err := <-feed(ctx, prod, []record.Usage{canary}, 1, 0); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	p = start(t, rater, args...)
	if !waitRated(0, canary.EventID, restart.Add(15*time.Second)) {
		t.Fatalf("a rater owning %d devices did not rate a new record within 15 s of its restart:\n%s", devices, p.output())
	}
	t.Logf("a rater owning %d devices rated a new record %.2fs after its restart", devices, time.Since(restart).Seconds())
}
