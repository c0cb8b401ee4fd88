// Package rating prices canonical usage records with a rules.Set, exactly as docs/tariffs.md
// says: zone, mobility, per-dimension prices, slice multipliers, offers, and per-device
// fees with provisional charges that closing a period settles.
//
// The streaming rater runs one State per Kafka partition and shares one Engine between
// them; the offline `rater rate` runs one State. Rating a record appends to a caller-owned
// slice and, with a pre-grown slice, allocates nothing except at the first sight of a
// device or of a device in a period.
package rating

import (
	"fmt"
	"sync/atomic"
	"time"

	"fleetmeter/record"
	"fleetmeter/rules"
)

// DeviceCounter counts active devices per tenant and period across every partition and
// rater instance. Each device lives in one partition and is added once per period, so
// per-partition additions sum to the tenant's count.
type DeviceCounter interface {
	Add(tenant, period string, n int)
	Count(tenant, period string) uint64
}

// Options tune an Engine; zero values take defaults.
type Options struct {
	// Now returns the rated_time in ms since the epoch; default the wall clock.
	Now func() int64
	// Counter is the global active-device count; default an in-memory MemCounter.
	Counter DeviceCounter
}

// Engine rates records. It is safe for concurrent use by goroutines each holding their
// own State.
type Engine struct {
	set     atomic.Pointer[rules.Set]
	now     func() int64
	counter DeviceCounter
}

// NewEngine returns an engine pricing with set (which may be nil until SetRules).
func NewEngine(set *rules.Set, opts Options) *Engine {
	e := &Engine{now: opts.Now, counter: opts.Counter}
	if e.now == nil {
		e.now = func() int64 { return time.Now().UnixMilli() }
	}
	if e.counter == nil {
		e.counter = NewMemCounter()
	}
	e.set.Store(set)
	return e
}

// SetRules swaps the rules atomically: each Rate call prices with one set, the old or
// the new.
func (e *Engine) SetRules(set *rules.Set) { e.set.Store(set) }

// Rules returns the set in force.
func (e *Engine) Rules() *rules.Set { return e.set.Load() }

// Counter returns the engine's device counter.
func (e *Engine) Counter() DeviceCounter { return e.counter }

// Rate prices u, appending its usage record to out and, if this is the device's first
// record in u's period, a provisional device_fee record. A record no tariff prices
// returns *record.InvalidError with Reason "no_tariff" and leaves st untouched; the caller
// rejects it, never drops it. The same records in the same per-device order always give
// the same usage records (rated_time aside).
func (e *Engine) Rate(st *State, u *record.Usage, out []record.Rated) ([]record.Rated, error) {
	return e.rate(st, u, st.hash(u.Tenant, u.Device), out, e.now())
}

// RateBatch rates us in order exactly as calling Rate for each would, appending to out.
// It pays off when a State tracks many more devices than fit in cache: while it rates a
// record it has the table slot of a record prefetchAhead*2 further on fetched, and the
// device of one prefetchAhead further on, so those misses overlap the work in between
// instead of stalling each record. Each rejected record is reported to onErr (its index
// in us and the error) and leaves no output; onErr may be nil only if the caller accepts
// losing that information.
func (e *Engine) RateBatch(st *State, us []record.Usage, out []record.Rated, onErr func(i int, err error)) []record.Rated {
	var hs [hashRing]uint64
	now := e.now()
	n := len(us)
	for i := -2 * prefetchAhead; i < n; i++ {
		if j := i + 2*prefetchAhead; j < n {
			h := st.hash(us[j].Tenant, us[j].Device)
			hs[j&(hashRing-1)] = h
			st.prefetchSlot(h)
		}
		if j := i + prefetchAhead; j >= 0 && j < n {
			st.prefetchDev(hs[j&(hashRing-1)])
		}
		if i < 0 {
			continue
		}
		var err error
		if out, err = e.rate(st, &us[i], hs[i&(hashRing-1)], out, now); err != nil && onErr != nil {
			onErr(i, err)
		}
	}
	return out
}

// prefetchAhead is how many records ahead RateBatch fetches a device (and twice that its
// table slot): a few records' rating covers a miss to memory.
const (
	prefetchAhead = 8
	hashRing      = 4 * prefetchAhead // a power of two above 2*prefetchAhead
)

// rate prices u; now is the rated_time (read once per batch: the clock costs as much as
// a tenth of a record's rating).
func (e *Engine) rate(st *State, u *record.Usage, h uint64, out []record.Rated, now int64) ([]record.Rated, error) {
	set := e.set.Load()
	var t *rules.Tariff
	if set != nil {
		t = set.Lookup(u.Tenant, u.StartTime)
	}
	if t == nil {
		return out, &record.InvalidError{Reason: record.ReasonNoTariff,
			Msg: fmt.Sprintf("no tariff prices tenant %q at %s", u.Tenant, u.Start().Format(time.RFC3339))}
	}
	idx := st.lookup(u.Tenant, u.Device, h)
	d := st.dev(idx)
	st.touch(d, idx)
	zone := t.Zone(u)
	mob := st.mobility(t, d, u)

	var prices [rules.NumDims]uint64
	for dim := range rules.NumDims {
		if t.Rates[dim].Defined {
			prices[dim] = t.Rates[dim].Price(zone, mob)
		}
	}
	sliceMult, offerMult := one(t.MultScale), one(t.MultScale)
	if u.HasSlice {
		sliceMult = t.Slices[u.SliceSST]
	}
	offerID := ""
	if oi := t.Offer(u, zone); oi >= 0 {
		o := &t.Offers[oi]
		offerID, offerMult = o.ID, o.Mult
		for dim := range rules.NumDims {
			if o.HasPrice[dim] {
				prices[dim] = o.Price[dim]
			}
		}
	}
	amt, err := amount(t, u, &prices, sliceMult, offerMult)
	if err != nil {
		return out, err
	}
	out = append(out, record.Rated{Usage: *u, RecordID: u.EventID, Charge: record.ChargeUsage,
		Zone: t.Zones[zone].Name, Mobility: mob.String(), Tariff: t.ID, TariffVersion: t.Stamp,
		Offer: offerID, Currency: t.Currency, Amount: amt, RatedTime: now})
	if m := st.monthOf(u.StartTime); d.lastMonth != m && st.markSeen(d, m) {
		out = e.firstSight(set, st, u, m, now, out)
	}
	return out, nil
}

var pow10 = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// one is the multiplier 1 at scale.
func one(scale int) uint64 { return pow10[scale] }
