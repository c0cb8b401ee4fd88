package pipeline

import (
	"context"
	"sync"
	"time"

	"fleetmeter/kafka"
	"fleetmeter/rating"
)

// partitionCounter is the tenant's active-device count across every partition, hence
// across rater instances: each device lives in one partition, so the counts of the
// partitions add up. Partitions this instance owns count from their live state; the
// others from the snapshot their owner last committed to topic rater-state, refreshed
// periodically. The count only picks the provisional fee's tier: closing the period
// makes the fees exact whatever the count was.
type partitionCounter struct {
	r *Rater

	mu     sync.Mutex
	remote []map[string]uint64 // per partition: "tenant\x00period" -> devices
}

func newPartitionCounter(r *Rater) *partitionCounter {
	return &partitionCounter{r: r, remote: make([]map[string]uint64, r.parts)}
}

// Add is a no-op: the states already count the device.
func (c *partitionCounter) Add(string, string, int) {}

// Count sums live states of owned partitions and snapshots of the rest. It runs on the
// rater's goroutine, the only one changing the states.
func (c *partitionCounter) Count(tenant, period string) uint64 {
	key := tenant + "\x00" + period
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	var n uint64
	for p := int32(0); p < c.r.parts; p++ {
		if st := c.r.states[p]; st != nil {
			n += st.ActiveDevices(tenant, period)
		} else if m := c.remote[p]; m != nil {
			n += m[key]
		}
	}
	return n
}

// refresh reloads the snapshots of every partition every interval until ctx ends.
func (c *partitionCounter) refresh(ctx context.Context, every time.Duration) {
	for {
		for p := int32(0); p < c.r.parts && ctx.Err() == nil; p++ {
			snap, err := kafka.LastValue(ctx, c.r.kcfg, kafka.TopicState, p)
			if err != nil || snap == nil {
				continue
			}
			st := rating.NewState()
			if st.UnmarshalBinary(snap) != nil {
				continue
			}
			tally := st.Tally()
			c.mu.Lock()
			c.remote[p] = tally
			c.mu.Unlock()
		}
		if !sleep(ctx, every) {
			return
		}
	}
}
