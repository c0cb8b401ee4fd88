package chstore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"fleetmeter/billing"
)

// TestSecondRunAnswers: a run's span and key range for random requests equal those
// summed over the copies themselves, and a run that cannot tell (it starts after the
// cursor's second, or ends before both the limit and the watermark) says so.
func TestSecondRunAnswers(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 2000 {
		// copies: second and record_id, over seconds 100..119, some seconds empty.
		type cp struct {
			sec int64
			id  string
			adj bool
		}
		var copies []cp
		for range rng.IntN(60) {
			copies = append(copies, cp{100 + rng.Int64N(20), fmt.Sprintf("r%03d", rng.IntN(500)), rng.IntN(10) == 0})
		}
		from, to := int64(100+rng.IntN(10)), int64(105+rng.IntN(15))
		run := &secondRun{from: from, to: to}
		for s := from; s <= to; s++ {
			var x second
			for _, c := range copies {
				if c.sec != s {
					continue
				}
				if x.n == 0 || c.id < x.lo {
					x.lo = c.id
				}
				if x.n == 0 || c.id > x.hi {
					x.hi = c.id
				}
				x.n++
				if c.adj {
					x.adj++
				}
			}
			if x.n > 0 {
				x.sec = s
				run.secs = append(run.secs, x)
			}
		}
		// Store.plan asks only for UpTo >= After.Seen.
		after := int64(98 + rng.IntN(22))
		req := billing.ExportRequest{After: billing.Position{Seen: after}, UpTo: after + rng.Int64N(10), Limit: 1 + rng.IntN(30)}
		secs, ok := run.spanOf(req)

		// The span by its definition: from After.Seen, the first second past it with
		// copies where they reach the limit, else the watermark.
		end, total := req.UpTo, 0
		for s := req.After.Seen; s <= req.UpTo; s++ {
			here := 0
			for _, c := range copies {
				if c.sec == s {
					here++
				}
			}
			total += here
			if total >= req.Limit && s > req.After.Seen && here > 0 {
				end = s
				break
			}
		}
		canTell := req.After.Seen >= from && req.After.Seen <= to && end <= to
		if ok != canTell {
			t.Fatalf("iter %d: run [%d,%d] %+v: ok %v, want %v (end %d, secs %+v)", iter, from, to, req, ok, canTell, end, run.secs)
		}
		if !ok {
			continue
		}
		n := 0
		for _, x := range secs {
			if x.sec < req.After.Seen || x.sec > end {
				t.Fatalf("iter %d: second %d outside [%d,%d]", iter, x.sec, req.After.Seen, end)
			}
			n += int(x.n)
		}
		inSpan := 0
		for _, c := range copies {
			if c.sec >= req.After.Seen && c.sec <= end {
				inSpan++
			}
		}
		if n != inSpan {
			t.Fatalf("iter %d: %d copies in the span, want %d", iter, n, inSpan)
		}

		// The key range up to a second of the span, and its split at mid.
		upTo, mid := req.After.Seen+rng.Int64N(end-req.After.Seen+1), req.After.Seen+rng.Int64N(end-req.After.Seen+2)
		lo, hi, adj, split := rangeOf(secs, upTo, mid)
		var wlo, whi, wsplit string
		var wadj uint64
		for _, c := range copies {
			if c.sec < req.After.Seen || c.sec > upTo {
				continue
			}
			if wlo == "" || c.id < wlo {
				wlo = c.id
			}
			whi = max(whi, c.id)
			if c.adj {
				wadj++
			}
			if c.sec >= mid && (wsplit == "" || c.id < wsplit) {
				wsplit = c.id
			}
		}
		if lo != wlo || hi != whi || adj != wadj || split != wsplit {
			t.Fatalf("iter %d: range [%s,%s] adj %d split %q, want [%s,%s] adj %d split %q", iter, lo, hi, adj, split, wlo, whi, wadj, wsplit)
		}
	}
}

// TestSecondCacheKeepsFewScopes: the cache keeps a run for the runScopes scopes used
// last, and a scope read again counts as used.
func TestSecondCacheKeepsFewScopes(t *testing.T) {
	var c secondCache
	run := func(i int) *secondRun { return &secondRun{from: int64(i), to: int64(i)} }
	for i := range runScopes {
		c.put(fmt.Sprint("t", i), run(i))
	}
	if c.get("t0") == nil { // t0 is now the last used
		t.Fatal("t0 not kept")
	}
	c.put("new", run(99))
	if c.get("t1") != nil {
		t.Error("t1, the least recently used, still kept past the bound")
	}
	for _, s := range []string{"t0", "t2", "t3", "new"} {
		if c.get(s) == nil {
			t.Errorf("%s dropped", s)
		}
	}
	if len(c.runs) != runScopes || len(c.order) != runScopes {
		t.Errorf("%d runs, %d in order, want %d", len(c.runs), len(c.order), runScopes)
	}
	if c.reads != runScopes+1 {
		t.Errorf("%d reads counted, want %d", c.reads, runScopes+1)
	}
}
