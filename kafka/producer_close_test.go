package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/record"
)

// Kafka goes away with more records in hand than kgo buffers, so flushes block in
// Produce holding the producer's lock. Close must still return soon after its deadline,
// and every record must complete with an error: none was acknowledged by Kafka, so no
// caller may acknowledge its source.
func TestCloseDuringOutageHonoursDeadline(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Partitions = 4
	cfg.BatchRecords = 1 // one message per record: kgo's buffer of 1024 fills fast
	p, err := NewProducer(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // the outage: nothing enqueued from here on can be acknowledged

	const n = 3000
	rnd := rand.New(rand.NewPCG(2, 2))
	var (
		mu        sync.Mutex
		completed int
		acked     []string
	)
	var calls sync.WaitGroup
	enqueued := make(chan struct{})
	go func() {
		defer close(enqueued)
		for i := range n {
			u := testUsage(rnd, "acme", fmt.Sprint("d-", i%50), fmt.Sprint("mqtt:acme:", i))
			calls.Add(1)
			p.Enqueue([]record.Usage{u}, func(err error) {
				mu.Lock()
				completed++
				if err == nil {
					acked = append(acked, u.EventID)
				}
				mu.Unlock()
				calls.Done()
			})
		}
	}()
	// Let the enqueuer fill kgo's buffer and block in Produce (no timing is asserted:
	// the test holds however far it got).
	time.Sleep(500 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- p.Close(ctx) }()
	select {
	case err := <-closed:
		if err == nil {
			t.Error("Close during an outage returned nil; want the deadline's error")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Close ignored its 2s deadline for 2 minutes")
	}
	select {
	case <-enqueued:
	case <-time.After(2 * time.Minute):
		t.Fatal("Enqueue still blocked 2 minutes after Close returned")
	}
	waited := make(chan struct{})
	go func() { calls.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		t.Fatalf("%d of %d Enqueue calls never completed", n-completed, n)
	}
	if len(acked) > 0 {
		t.Fatalf("%d records acknowledged although Kafka was down, e.g. %s", len(acked), acked[0])
	}
}
