package chstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

// TestExportColumnsSplitRead: a dense page (record_ids growing with time, stored over
// three seconds, some redelivered later with other ratings) is read as two halves of its
// record_id range; the page read as columns must equal the page read as records, in
// pages that start at the empty cursor and in the middle of a second, and the halves must
// meet at the split point without a gap or overlap (the record at the split point is in
// the page).
func TestExportColumnsSplitRead(t *testing.T) {
	ctx := context.Background()
	st, cs := open(t)
	cs.Final(true)
	// Copies of the first second's records, rated later, in the third: the first rating
	// stands.
	all := storeSeconds(t, st, 3, 40, []string{"acme", "zeta"}, func(sec int, all []record.Rated) []record.Rated {
		if sec == 2 {
			return all[:10]
		}
		return nil
	})
	now, err := cs.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	split, n := 0, 0
	for _, limit := range []int{1000, 50, 30} {
		after := billing.Position{}
		for {
			req := billing.ExportRequest{After: after, UpTo: now, Limit: limit}
			if lo, hi, ok, err := cs.SplitOf(ctx, req); err != nil {
				t.Fatal(err)
			} else if ok {
				split++
				if !lo.HiOpen || lo.Hi != hi.Lo {
					t.Fatalf("limit %d after %v: halves %+v and %+v do not meet", limit, after, lo, hi)
				}
			}
			want, _, err := cs.Export(ctx, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got billing.Columns
			if _, err := cs.ExportColumns(ctx, req, &got); err != nil {
				t.Fatal(err)
			}
			if got.N != len(want) {
				t.Fatalf("limit %d after %v: %d records as columns, %d as records", limit, after, got.N, len(want))
			}
			if len(want) == 0 {
				break
			}
			for i, r := range got.Records() {
				if r != want[i].Rec {
					t.Fatalf("limit %d after %v record %d:\n got %+v\nwant %+v", limit, after, i, r, want[i].Rec)
				}
			}
			n += got.N
			after = got.Last
		}
	}
	if n != 3*len(all) {
		t.Errorf("read %d records over the three limits, want %d", n, 3*len(all))
	}
	if split == 0 {
		t.Error("no page was read in two halves")
	}
}

// TestExportAlignedPages: records stored over four seconds (30 a second, and copies of
// earlier ones, rated later, redelivered in later seconds), pulled by cursor with limits
// that end inside a second: pages end at a second's end where that gives half the limit
// (and a full page's cursor is its last record, not the next second), and the union of the pages is every record once, with its first rating, read as
// columns and as records, with FINAL and with GROUP BY.
func TestExportAlignedPages(t *testing.T) {
	ctx := context.Background()
	st, cs := open(t)
	cs.AlignMin(1)
	all := storeSeconds(t, st, 4, 30, []string{"acme", "zeta", "beta"}, func(_ int, all []record.Rated) []record.Rated {
		return all[max(0, len(all)-45):][:min(len(all), 10)]
	})
	want := map[string]record.Rated{}
	for _, r := range all {
		want[r.Tenant+"\x00"+r.RecordID] = r
	}
	waitVisible(t, cs)
	sig := signer(t)
	for _, final := range []bool{true, false} {
		for _, columns := range []bool{true, false} {
			// 20: every page full, cut inside a second (a second holds more than half of
			// it); 70: a page of the first two seconds' 60 records, not full.
			for _, limit := range []int{50, 45, 70, 20} {
				cs.Final(final)
				var store billing.Store = cs
				if !columns {
					store = recordStore{cs}
				}
				exp := billing.NewExporter(store, sig, time.Second, 1000)
				got := map[string]record.Rated{}
				cursor, aligned := "", 0
				for pages := 0; ; pages++ {
					if pages > 20 {
						t.Fatalf("final=%v columns=%v limit %d: more than 20 pages", final, columns, limit)
					}
					page, err := exp.Page(ctx, "", cursor, limit)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range page.Rated() {
						k := r.Tenant + "\x00" + r.RecordID
						if _, dup := got[k]; dup {
							t.Fatalf("final=%v columns=%v limit %d: %s pulled twice", final, columns, limit, r.RecordID)
						}
						got[k] = r
					}
					if page.Len() < limit && !page.CaughtUp {
						aligned++
					}
					cursor = page.Next
					if page.CaughtUp {
						break
					}
				}
				if len(got) != len(want) {
					t.Errorf("final=%v columns=%v limit %d: pulled %d records, want %d", final, columns, limit, len(got), len(want))
				}
				for k, w := range want {
					if g, ok := got[k]; !ok || g.Amount != w.Amount || g.RatedTime != w.RatedTime {
						t.Errorf("final=%v columns=%v limit %d: %s pulled %v with amount %s, want the first rating %s", final, columns, limit, w.RecordID, ok, g.Amount, w.Amount)
					}
				}
				if aligned == 0 && limit != 20 {
					t.Errorf("final=%v columns=%v limit %d: no page ended at a second's end", final, columns, limit)
				}
			}
		}
	}
}

// storeSeconds stores perSecond usage records (record_ids growing, tenants in turn) in
// each of seconds seconds, with, in each, later ratings (other amounts) of the records
// again(second, stored so far) returns, and returns the records in their first rating.
func storeSeconds(t *testing.T, st *clickhouse.Store, seconds, perSecond int, tenants []string, again func(int, []record.Rated) []record.Rated) []record.Rated {
	t.Helper()
	rated := int64(1_700_000_000_000)
	var all []record.Rated
	for sec := range seconds {
		var b []record.Rated
		for i := range perSecond {
			n := sec*perSecond + i
			b = append(b, usage(tenants[i%len(tenants)], "d01", fmt.Sprintf("ev-%04d", n), "2026-10", 1+i%27, uint64(i), record.Micros(1000+i), rated+int64(n)))
		}
		for _, r := range again(sec, all) {
			r.RatedTime += 1_000_000
			r.Amount += 999
			b = append(b, r)
		}
		if err := st.InsertRated(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b[:perSecond]...)
		time.Sleep(1100 * time.Millisecond)
	}
	return all
}
