package chstore

import (
	"context"
	"fmt"
	"sync"

	"fleetmeter/billing"
)

// second is what rated_seen holds of the copies stored in one second of seen (in one
// scope: a tenant or all): how many, how many of them adjustments, and their least and
// greatest record_id. A page's span and key range are sums of these over its seconds.
type second struct {
	sec    int64
	n, adj uint64
	lo, hi string
}

// secondRun is every second of [from, to] that holds copies, ascending. Once to is at or
// before a page's watermark (now less the lag: every copy stored by then is visible) rows
// are only ever added to rated_seen with a later seen, so a run never misses a copy. A
// merge may since have collapsed copies it counts (rated_seen keeps a key's least seen):
// its counts and ranges then exceed the table's, which only widens a page's key range
// and ends a page a little early; both are what a page read just before the merge saw.
type secondRun struct {
	from, to int64
	secs     []second
}

// Bounds on the seconds kept: a run is read on until it holds runRows copies (and at
// least the page asking for it) or runSecs seconds, one run per scope, at most runScopes
// scopes (about 100 bytes a second: under 30 MB in all).
const (
	runPages  = 64 // runRows: this many pages of the limit that asked
	runSecs   = 1 << 16
	runScopes = 4
)

// secondCache keeps a secondRun per scope (tenant, "" for all), so that a bulk pull
// scans rated_seen's seen column once per runPages pages rather than twice a page: seen
// is not in the sort key, so every scan reads the whole column (at ten million rows the
// two scans were a tenth of the server's CPU per page, and they grow with the table).
type secondCache struct {
	mu     sync.Mutex
	runs   map[string]*secondRun
	order  []string // scopes, least recently used first
	reads  int      // seconds queries run (tests)
	maxSec int      // runSecs unless set (tests)
}

func (c *secondCache) get(scope string) *secondRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.runs[scope]
	if r != nil {
		c.touch(scope)
	}
	return r
}

func (c *secondCache) put(scope string, r *secondRun) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runs == nil {
		c.runs = map[string]*secondRun{}
	}
	c.runs[scope] = r
	c.reads++
	c.touch(scope)
	if len(c.order) > runScopes {
		delete(c.runs, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *secondCache) touch(scope string) {
	for i, s := range c.order {
		if s == scope {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	c.order = append(c.order, scope)
}

// spanOf returns the seconds of run from req.After.Seen on, up to the first where the
// copies reach req.Limit (past After.Seen) or to req.UpTo; ok is false when the run
// cannot tell (it starts later, or ends before either is reached).
func (r *secondRun) spanOf(req billing.ExportRequest) (secs []second, ok bool) {
	if r == nil || req.After.Seen < r.from || req.After.Seen > r.to {
		return nil, false
	}
	i := 0
	for i < len(r.secs) && r.secs[i].sec < req.After.Seen {
		i++
	}
	var total uint64
	j := i
	for ; j < len(r.secs) && r.secs[j].sec <= req.UpTo; j++ {
		total += r.secs[j].n
		// Never stop at After.Seen itself: its records may all be behind the cursor
		// already, and the page must move on.
		if total >= uint64(req.Limit) && r.secs[j].sec > req.After.Seen {
			return r.secs[i : j+1], true
		}
	}
	return r.secs[i:j], r.to >= req.UpTo
}

// seconds returns the seconds of req's span (see secondRun.spanOf) from the cache, or
// reads a new run from req.After.Seen with ExportSecondsQuery.
func (s *Store) seconds(ctx context.Context, req billing.ExportRequest) ([]second, error) {
	if secs, ok := s.secs.get(req.Tenant).spanOf(req); ok {
		return secs, nil
	}
	rows, err := s.conn.Query(ctx, ExportSecondsQuery(s.db, req))
	if err != nil {
		return nil, fmt.Errorf("billing export span: %w", err)
	}
	defer rows.Close()
	maxSecs := s.secs.maxSec
	if maxSecs <= 0 {
		maxSecs = runSecs
	}
	run := &secondRun{from: req.After.Seen, to: req.UpTo}
	var total uint64
	for rows.Next() {
		var sec uint32
		var x second
		if err := rows.Scan(&sec, &x.n, &x.adj, &x.lo, &x.hi); err != nil {
			return nil, fmt.Errorf("billing export span: %w", err)
		}
		x.sec = int64(sec)
		total += x.n
		run.secs = append(run.secs, x)
		// Stop reading once the page is answered and the run holds enough: the seconds
		// read so far are whole.
		if x.sec > req.After.Seen && total >= uint64(req.Limit) &&
			(total >= uint64(req.Limit)*runPages || len(run.secs) >= maxSecs) {
			run.to = x.sec
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("billing export span: %w", err)
	}
	s.secs.put(req.Tenant, run)
	secs, _ := run.spanOf(req)
	return secs, nil
}

// rangeOf returns the least and greatest record_id of the copies stored in secs up to
// second upTo, how many of them are adjustments, and the least record_id of those stored
// from second mid on ("" when none).
func rangeOf(secs []second, upTo, mid int64) (lo, hi string, adj uint64, split string) {
	first, firstSplit := true, true
	for _, x := range secs {
		if x.sec > upTo {
			break
		}
		adj += x.adj
		if first || x.lo < lo {
			lo = x.lo
		}
		if first || x.hi > hi {
			hi = x.hi
		}
		first = false
		if x.sec >= mid && (firstSplit || x.lo < split) {
			split, firstSplit = x.lo, false
		}
	}
	return lo, hi, adj, split
}
