package rating

import "sync"

// MemCounter is an in-memory DeviceCounter for one process (offline rating, tests, the
// standalone mode).
type MemCounter struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

// NewMemCounter returns an empty counter.
func NewMemCounter() *MemCounter { return &MemCounter{n: map[[2]string]uint64{}} }

// Add adds n (which may be negative) to tenant's count in period.
func (c *MemCounter) Add(tenant, period string, n int) {
	c.mu.Lock()
	k := [2]string{tenant, period}
	if n < 0 && uint64(-n) > c.n[k] {
		c.n[k] = 0
	} else {
		c.n[k] = uint64(int64(c.n[k]) + int64(n))
	}
	c.mu.Unlock()
}

// Count returns tenant's count in period.
func (c *MemCounter) Count(tenant, period string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[[2]string{tenant, period}]
}
