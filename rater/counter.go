package rater

import (
	"encoding/binary"
	"sync"

	"fleetmeter/rating"
)

// FleetCounter is a tenant's active-device count in a period across every partition,
// hence across rater instances. A device belongs to one partition, so the partitions'
// counts add up exactly. Partitions this instance owns count from their live State;
// the others from the count their owner last committed (Set, fed by following the counts
// topic). The count only picks the tier of a provisional fee: closing a period makes the
// fees exact whatever the count was.
//
// It is built before the engine and the rater and handed to both; the rater tells it
// which States it owns. Count runs on the rating goroutine; Set on the follower's.
type FleetCounter struct {
	mu     sync.Mutex
	owned  map[int32]*rating.State
	remote map[int32]map[tenantPeriod]uint64
}

type tenantPeriod struct{ tenant, period string }

// NewFleetCounter returns an empty counter.
func NewFleetCounter() *FleetCounter {
	return &FleetCounter{owned: map[int32]*rating.State{}, remote: map[int32]map[tenantPeriod]uint64{}}
}

var _ rating.DeviceCounter = (*FleetCounter)(nil)

// Add is a no-op: the States count their own devices.
func (c *FleetCounter) Add(string, string, int) {}

// Count sums the live count of owned partitions and the committed count of the others.
func (c *FleetCounter) Count(tenant, period string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n uint64
	k := tenantPeriod{tenant, period}
	for p, m := range c.remote {
		if _, mine := c.owned[p]; !mine {
			n += m[k]
		}
	}
	for _, st := range c.owned {
		n += st.ActiveDevices(tenant, period)
	}
	return n
}

// Own makes partition p count from st; nil stops owning it.
func (c *FleetCounter) Own(p int32, st *rating.State) {
	c.mu.Lock()
	if st == nil {
		delete(c.owned, p)
	} else {
		c.owned[p] = st
	}
	c.mu.Unlock()
}

// Set records partition p's committed count of a tenant period.
func (c *FleetCounter) Set(p int32, tenant, period string, devices uint64) {
	c.mu.Lock()
	m := c.remote[p]
	if m == nil {
		m = map[tenantPeriod]uint64{}
		c.remote[p] = m
	}
	m[tenantPeriod{tenant, period}] = devices
	c.mu.Unlock()
}

// CountKey and CountValue encode a count entry of the counts topic.
func CountKey(tenant, period string) []byte { return []byte(tenant + "\x00" + period) }

// CountValue encodes the device count.
func CountValue(devices uint64) []byte { return binary.AppendUvarint(nil, devices) }

// SetEncoded records a count entry read from the counts topic; malformed ones are
// ignored (they only tune a provisional tier).
func (c *FleetCounter) SetEncoded(p int32, key, value []byte) {
	for i, b := range key {
		if b == 0 {
			n, k := binary.Uvarint(value)
			if k > 0 {
				c.Set(p, string(key[:i]), string(key[i+1:]), n)
			}
			return
		}
	}
}
