package chstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/record"
)

// TestExportExactlyOnce is the cursor's property: random interleavings of loader inserts
// (batches redelivered, later ratings of records already rated, device fees before and
// after their period's adjustment, a concurrent inserter) and cursor pulls of random
// limits, across "restarts" (a new Exporter with the same key continuing the cursor);
// the union of the pulled pages is the set of rated records, each exactly once, each
// with its first rating, and no device fee before its period is closed.
//
// Seeds 0-2 collapse rated_seen's copies with FINAL (a single node, as cmd/api runs on
// one), seed 3 with GROUP BY (a cluster). Pages are read as columns (ExportColumns), but
// seed 4's, read as records (Export). Seeds 5 and 6 end every page the limit would cut
// inside a second at the second before, where that gives half the limit (as pages of
// chstore.DefaultAlignMin and more do), with FINAL and with GROUP BY.
func TestExportExactlyOnce(t *testing.T) {
	for seed := range uint64(7) {
		final, columns, align := seed != 3 && seed != 6, seed != 4, seed >= 5
		t.Run(fmt.Sprint("seed=", seed, "/final=", final, "/columns=", columns, "/align=", align), func(t *testing.T) {
			exportProperty(t, seed, final, columns, align)
		})
	}
}

// recordStore is a Store that reads records only (it hides ExportColumns).
type recordStore struct{ billing.Store }

func exportProperty(t *testing.T, seed uint64, final, columns, align bool) {
	ctx := context.Background()
	st, cs := open(t)
	cs.Final(final)
	if align {
		cs.AlignMin(1)
	}
	rng := rand.New(rand.NewPCG(seed, 11))
	sig := signer(t)
	var store billing.Store = cs
	if !columns {
		store = recordStore{cs}
	}
	newExp := func() *billing.Exporter { return billing.NewExporter(store, sig, time.Second, 1000) }
	exp := newExp()

	// The records: usage of two tenants in two periods, fees, and adjustments for one of
	// the periods only (the other stays open: its fees must never come out).
	var first []record.Rated // the first rating of each record, in insertion order
	tenants, periods := []string{"acme", "zeta"}, []string{"2026-10", "2026-11"}
	rated := int64(1_700_000_000_000)
	for i := range 300 {
		ten, per := tenants[rng.IntN(2)], periods[rng.IntN(2)]
		dev := fmt.Sprintf("d%02d", rng.IntN(20))
		rated++
		first = append(first, usage(ten, dev, fmt.Sprintf("ev-%04d", i), per, 1+rng.IntN(27), uint64(rng.IntN(1e6)), record.Micros(rng.IntN(5e6)), rated))
		if rng.IntN(4) == 0 {
			rated++
			first = append(first, fee(ten, dev, per, 500_000, rated))
		}
	}
	// Fees are unique per device and period: keep the first of each.
	seen := map[string]bool{}
	var recs []record.Rated
	for _, r := range first {
		if !seen[r.RecordID] {
			seen[r.RecordID] = true
			recs = append(recs, r)
		}
	}
	// Adjustments of 2026-10 go in two thirds of the way.
	adjAt := len(recs) * 2 / 3
	var adjs []record.Rated
	for _, ten := range tenants {
		rated++
		adjs = append(adjs, adj(ten, "2026-10", -123_456, rated))
	}
	recs = append(recs[:adjAt], append(adjs, recs[adjAt:]...)...)

	// want: every record once with its first rating, except fees of the open period.
	want := map[string]record.Rated{}
	for _, r := range recs {
		if r.Charge == record.ChargeDeviceFee && r.RecordID[len(r.RecordID)-7:] == "2026-11" {
			continue
		}
		want[r.Tenant+"\x00"+r.RecordID] = r
	}

	got := map[string]record.Rated{}
	cursor := ""
	pull := func() billing.Page {
		t.Helper()
		page, err := exp.Page(ctx, "", cursor, 1+rng.IntN(60))
		if err != nil {
			t.Fatal(err)
		}
		if (page.Columns != nil) != columns {
			t.Fatalf("seed %d: page read as columns %v, want %v", seed, page.Columns != nil, columns)
		}
		for _, r := range page.Rated() {
			k := r.Tenant + "\x00" + r.RecordID
			if _, dup := got[k]; dup {
				t.Fatalf("seed %d: %s pulled twice", seed, r.RecordID)
			}
			got[k] = r
		}
		cursor = page.Next
		return page
	}

	// A concurrent inserter: redelivered copies of batches already inserted, so its
	// inserts race the pulls.
	var mu sync.Mutex
	var inserted [][]record.Rated
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	wg.Go(func() {
		r2 := rand.New(rand.NewPCG(seed, 12))
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			var b []record.Rated
			if len(inserted) > 0 {
				b = inserted[r2.IntN(len(inserted))]
			}
			mu.Unlock()
			if b != nil {
				if err := st.InsertRated(ctx, b); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(time.Duration(r2.IntN(20)) * time.Millisecond)
		}
	})

	for next := 0; next < len(recs); {
		switch rng.IntN(6) {
		case 0, 1, 2: // the loader inserts the next batch
			n := min(1+rng.IntN(40), len(recs)-next)
			b := recs[next : next+n]
			if err := st.InsertRated(ctx, b); err != nil {
				t.Fatal(err)
			}
			next += n
			mu.Lock()
			inserted = append(inserted, b)
			mu.Unlock()
		case 3: // a later rating of records already stored (a device resent them)
			if next > 0 {
				var later []record.Rated
				for range 5 {
					r := recs[rng.IntN(next)]
					r.RatedTime += 1_000_000
					r.Amount += 999
					later = append(later, r)
				}
				if err := st.InsertRated(ctx, later); err != nil {
					t.Fatal(err)
				}
			}
		case 4:
			pull()
		case 5: // the API restarts: a new exporter continues the cursor
			exp = newExp()
			pull()
		}
	}
	halt()

	// Catch up: pull until a page read at a watermark past the last insert is complete.
	end, err := cs.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		page := pull()
		if page.CaughtUp && page.UpTo > end {
			break
		}
		if page.CaughtUp {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(got) != len(want) {
		t.Errorf("seed %d: pulled %d records, want %d", seed, len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("seed %d: %s never pulled", seed, w.RecordID)
		case g.Amount != w.Amount || g.RatedTime != w.RatedTime:
			t.Errorf("seed %d: %s pulled with amount %s rated %d, want the first rating %s rated %d",
				seed, w.RecordID, g.Amount, g.RatedTime, w.Amount, w.RatedTime)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("seed %d: pulled %s (%s), which is not final", seed, g.RecordID, g.Charge)
		}
	}
}
