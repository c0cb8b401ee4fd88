package kafka

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A transaction takes everything already fetched (within its bounds), grouped by
// partition; after the brokers refused a batch's output for good, the next batch is a
// single message, so what the rater may end up quarantining is that message alone.
func TestTxPollTakesFetchedAndShrinksAfterRefusal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cfg.Partitions = 2
	const in, out = "tx-in", "tx-out"
	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	s, err := NewTxSession(ctx, cfg, "g", "tx", in, []string{out}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 10 {
		r := &kgo.Record{Topic: in, Partition: int32(i % 2), Value: []byte(fmt.Sprint(i))}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Everything is fetched by now or soon: poll until all 10 came, in few batches.
	var msgs []Message
	polls := 0
	for len(msgs) < 10 && ctx.Err() == nil {
		k := len(msgs)
		if msgs, err = s.Poll(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		polls++
		for i := k + 1; i < len(msgs); i++ {
			if a, b := msgs[i-1], msgs[i]; a.Partition > b.Partition || a.Partition == b.Partition && a.Offset >= b.Offset {
				t.Fatalf("poll %d not grouped by partition in offset order: %d/%d before %d/%d", polls, a.Partition, a.Offset,
					b.Partition, b.Offset)
			}
		}
	}
	if polls > 3 {
		t.Errorf("10 fetched messages took %d polls: a transaction should take what is fetched", polls)
	}
	// A value over the broker's message bound is refused for good.
	if err := s.Begin(); err != nil {
		t.Fatal(err)
	}
	s.Produce(out, 0, nil, bytes.Repeat([]byte("x"), 2<<20), "")
	if committed, err := s.End(ctx, true); err != nil || committed {
		t.Fatalf("oversized output: committed %v, err %v; want an abort", committed, err)
	}
	if s.Refused() == nil {
		t.Fatal("the brokers' refusal is not reported")
	}
	// The session rewound to the committed offsets (none): all 10 are fetched again, one a batch.
	got, err := s.Poll(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("after a refusal a batch holds %d messages, want 1", len(got))
	}
}

// A transaction gathers: a poll that finds a message already fetched still waits
// txnGather for more before the transaction starts.
func TestTxPollGathers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cfg.Partitions = 1
	const in = "gather-in"
	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	s, err := NewTxSession(ctx, cfg, "g", "tx-gather", in, []string{"gather-out"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var msgs []Message
	for i, v := range []string{"first", "second"} {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: in, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			time.Sleep(300 * time.Millisecond) // fetched by now: the poll need not wait for it
		}
		start := time.Now()
		if msgs, err = s.Poll(ctx, msgs); err != nil || len(msgs) != i+1 {
			t.Fatalf("poll %d: %d messages, %v", i, len(msgs), err)
		}
		if took := time.Since(start); i == 1 && took < txnGather {
			t.Errorf("a poll that found a message fetched returned after %v, before the gather (%v) ended", took, txnGather)
		}
	}
}
