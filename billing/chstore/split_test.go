package chstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"fleetmeter/billing"
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
	rated := int64(1_700_000_000_000)
	var all []record.Rated
	for sec := range 3 {
		var b []record.Rated
		for i := range 40 {
			id := fmt.Sprintf("ev-%04d", sec*40+i)
			b = append(b, usage([]string{"acme", "zeta"}[i%2], "d01", id, "2026-10", 1+i%27, uint64(i), record.Micros(1000+i), rated+int64(sec*40+i)))
		}
		if sec == 2 { // copies of the first second's records, rated later: the first rating stands
			for _, r := range all[:10] {
				r.RatedTime += 1_000_000
				r.Amount += 999
				b = append(b, r)
			}
		}
		if err := st.InsertRated(ctx, b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b[:40]...)
		time.Sleep(1100 * time.Millisecond)
	}
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
