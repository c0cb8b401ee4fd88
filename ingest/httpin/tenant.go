package httpin

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// tenantGate is one tenant's share of the collector, shared by all its API keys: how
// many of its requests are being served, and a token bucket of request starts. Gates are
// built once from the configured keys, so a request finds its gate through its key
// without a map lookup, and the set of gates never grows.
type tenantGate struct {
	tenant   string
	inFlight atomic.Int32

	mu     sync.Mutex
	tokens float64
	last   time.Time // of the last refill; zero: the bucket starts full
}

// enter takes one of the tenant's max concurrent slots; false when all are taken.
func (g *tenantGate) enter(max int) bool {
	for {
		n := g.inFlight.Load()
		if int(n) >= max {
			return false
		}
		if g.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (g *tenantGate) leave() { g.inFlight.Add(-1) }

// take takes a token from the tenant's bucket (rate per second, burst at most) at now.
// It returns 0 when it did, else how long until a token is free.
func (g *tenantGate) take(now time.Time, rate float64, burst int) time.Duration {
	if rate <= 0 {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last.IsZero() {
		g.tokens = float64(burst)
	} else if dt := now.Sub(g.last).Seconds(); dt > 0 {
		g.tokens = math.Min(float64(burst), g.tokens+dt*rate)
	}
	if now.After(g.last) || g.last.IsZero() {
		g.last = now
	}
	if g.tokens >= 1 {
		g.tokens--
		return 0
	}
	return time.Duration((1 - g.tokens) / rate * float64(time.Second))
}

// gates builds one gate per tenant of keys and points each key at its tenant's.
func gates(keys []tenantKey) {
	byTenant := make(map[string]*tenantGate)
	for i := range keys {
		g := byTenant[keys[i].tenant]
		if g == nil {
			g = &tenantGate{tenant: keys[i].tenant}
			byTenant[keys[i].tenant] = g
		}
		keys[i].gate = g
	}
}
