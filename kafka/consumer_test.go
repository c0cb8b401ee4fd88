package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A poll whose context ends as the records arrive (a loader batch's deadline) still
// returns them: the client counts them as polled, so the next commit passes them, and a
// dropped record would be lost. With deadlines of a few hundred microseconds against a
// steady stream, every produced record comes back, each partition's offsets without a gap.
func TestPollDeadlineKeepsRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cfg.Partitions = 1
	const topic, total = "deadline", 3000
	cons, err := NewConsumer(ctx, cfg, "g", []string{topic}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	go func() {
		for i := range total {
			prod.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i))}, nil)
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var next int64
	var msgs []Message
	for next < total && ctx.Err() == nil {
		d := time.Duration(100+next%400) * time.Microsecond
		pctx, pcancel := context.WithTimeout(ctx, d)
		msgs, err = cons.Poll(pctx, msgs[:0])
		pcancel()
		for _, m := range msgs {
			if m.Offset != next {
				t.Fatalf("offset %d after %d: the records between were polled and dropped", m.Offset, next-1)
			}
			next++
		}
		if err != nil && pctx.Err() == nil {
			t.Fatal(err)
		}
		if err := cons.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		cons.Done()
	}
	if next != total {
		t.Fatalf("%d records polled, want %d", next, total)
	}
}
