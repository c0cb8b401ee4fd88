package kafka

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A broker that went down with a transaction open aborts it once it is back: at the
// transaction's timeout after a clean shutdown, or on recovery, without an abort marker,
// after a crash (its session state and partition snapshots lost). Either way a replay
// after the restart ends with exactly the committed records: the state of a rater
// SIGKILLed in mid-batch inside `fleetmeter standalone`. Before replays wrote a fence, the
// crash case never ended (the listed end offset lay in the aborted, unreadable tail).
func TestReplayAfterBrokerRestartMidTransaction(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%t", crash), func(t *testing.T) { replayAfterRestart(t, crash) })
	}
}

func replayAfterRestart(t *testing.T, crash bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	addr := kc.ListenAddrs()[0]
	cfg := DefaultConfig()
	cfg.Brokers = []string{addr}
	cfg.Partitions = 1
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("crashing"), kgo.TransactionTimeout(3*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureTopics(ctx, cl, cfg, TopicState); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, commit := range []bool{true, true, false} { // the third never ends
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			r := &kgo.Record{Topic: TopicState, Partition: 0, Key: []byte(fmt.Sprint("k", j)), Value: []byte(fmt.Sprint("v", i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if commit {
				want = append(want, fmt.Sprintf("k%d=v%d", j, i))
			}
		}
		if commit {
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
		}
	}
	kc.Close() // the broker goes down with the third transaction open
	cl.Close()
	if crash { // what a SIGKILL leaves: no session state, no partition snapshots
		snaps, _ := filepath.Glob(filepath.Join(dir, "partitions", "*", "snapshot.json"))
		for _, f := range append(snaps, filepath.Join(dir, "session_state.json")) {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}

	kc2, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.Ports(portOf(t, addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer kc2.Close()
	rd, err := NewReader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got []string
	if _, err := rd.Replay(ctx, TopicState, 0, func(k, v []byte) error {
		got = append(got, string(k)+"="+string(v))
		return nil
	}); err != nil {
		t.Fatalf("replay after the broker's restart: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %q, want the committed %q", got, want)
	}
}

func portOf(t *testing.T, addr string) int {
	var p int
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			if _, err := fmt.Sscan(addr[i+1:], &p); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("no port in %s", addr)
	return 0
}
