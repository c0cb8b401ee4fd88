package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/record"
)

func testCluster(t testing.TB) Config {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Partitions = 4
	return cfg
}

// Every record reaches topic usage once, each device in one partition and in the order
// it was enqueued, and Enqueue's callback fires only after the broker acknowledged.
func TestProducerRoutesAndOrders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	p, err := NewProducer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const devices, per = 50, 40
	done := make(chan error, devices*per)
	for i := 0; i < per; i++ {
		for d := 0; d < devices; d++ {
			u := record.Usage{EventID: fmt.Sprintf("e-%d-%d", d, i), Tenant: "t", Device: fmt.Sprintf("d%d", d),
				Source: "mqtt", Events: uint64(i)}
			p.Enqueue([]record.Usage{u}, func(err error) { done <- err })
		}
	}
	for i := 0; i < devices*per; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}

	c, err := NewConsumer(ctx, cfg, "test", []string{TopicUsage}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next := map[string]uint64{}
	part := map[string]int32{}
	var msgs []Message
	var recs []record.Usage
	for n := 0; n < devices*per; {
		if msgs, err = c.Poll(ctx, msgs[:0]); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			recs, err = record.DecodeUsage(m.Value, recs[:0])
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range recs {
				n++
				if want := PartitionOf(u.Tenant, u.Device, 4); m.Partition != want {
					t.Fatalf("%s in partition %d, want %d", u.Device, m.Partition, want)
				}
				if p, ok := part[u.Device]; ok && p != m.Partition {
					t.Fatalf("%s in partitions %d and %d", u.Device, p, m.Partition)
				}
				part[u.Device] = m.Partition
				if u.Events != next[u.Device] {
					t.Fatalf("%s: record %d arrived when %d was due", u.Device, u.Events, next[u.Device])
				}
				next[u.Device]++
			}
		}
	}
	for d, n := range next {
		if n != per {
			t.Errorf("%s: %d records, want %d", d, n, per)
		}
	}
}

// Replay passes every committed record of a partition, in order, and none of an aborted
// transaction, and knows it has reached the end even when the partition ends in commit
// and abort markers.
func TestReplayCommittedOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.TransactionalID("t1"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := EnsureTopics(ctx, cl, cfg, TopicState); err != nil {
		t.Fatal(err)
	}
	rd, err := NewReader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	replay := func() []string {
		var got []string
		n, err := rd.Replay(ctx, TopicState, 1, func(k, v []byte) error {
			got = append(got, string(k)+"="+string(v))
			return nil
		})
		if err != nil || n != len(got) {
			t.Fatalf("replay: %d, %v", n, err)
		}
		return got
	}
	if got := replay(); len(got) != 0 {
		t.Fatalf("empty partition replayed %q", got)
	}
	var want []string
	for i, commit := range []bool{true, false, true, true, false} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			k, v := fmt.Sprint("k", j), fmt.Sprint("v", i)
			r := &kgo.Record{Topic: TopicState, Partition: 1, Key: []byte(k), Value: []byte(v)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if commit {
				want = append(want, k+"="+v)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	if got := replay(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %q, want %q", got, want)
	}
	// A second replay on the same long-lived client reads the same.
	if got := replay(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("second replay %q, want %q", got, want)
	}
}
