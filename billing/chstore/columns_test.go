package chstore_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/record"
)

// TestExportColumnsMatchRecords reads the same pages through ExportColumns (the driver's
// blocks gathered into columns) and through Export (a record per row, the reference)
// and wants the same records, positions, watermarks and, in every format, the same
// bytes. The data has what the gather must get right: redelivered copies rated later
// with other amounts (the first rating wins whichever block it comes in), NULL and
// present positions and slices, empty and non-ASCII strings, extremes, two tenants with
// the same record_ids (a page's record_id range then holds another tenant's rows: read
// with the set of keys), inserts a second apart with interleaved record_ids (the same),
// device fees of a closed and of an open period. Single node (the walk, after the keys
// with the set, and beside them without) and cluster (the hash table).
func TestExportColumnsMatchRecords(t *testing.T) {
	for _, final := range []bool{true, false} {
		t.Run(fmt.Sprint("final=", final), func(t *testing.T) {
			ctx := context.Background()
			st, cs := open(t)
			cs.Final(final)
			rng := rand.New(rand.NewPCG(5, 6))
			var recs []record.Rated
			rated := int64(1_700_000_000_000)
			for i := range 240 {
				ten := []string{"acme", "zeta"}[i%2]
				r := usage(ten, fmt.Sprintf("d%02d", rng.IntN(9)), fmt.Sprintf("ev-%04d", i/2), "2026-10", 1+rng.IntN(27),
					uint64(rng.IntN(1e6)), record.Micros(rng.IntN(5e6)-1e6), rated+int64(i))
				switch i % 5 {
				case 0:
					r.Lat, r.Lon, r.HasPos, r.SliceSST, r.HasSlice = -90, 180, true, 255, true
				case 1:
					r.Device, r.Offer, r.Cell = "Gerät-ü-日本-🚗", "match-day «final»", ""
					r.BytesUp, r.RatingGroup, r.Amount = math.MaxUint64/4, math.MaxUint32, 123_456_789_012_345
				case 2:
					r.Lat, r.HasPos, r.SliceSST, r.HasSlice = 52.52, true, 0, true
				}
				recs = append(recs, r)
			}
			recs = append(recs, fee("acme", "d01", "2026-10", 500_000, rated+1000), fee("zeta", "d02", "2026-11", 500_000, rated+1001),
				adj("acme", "2026-10", -123_456, rated+1002))
			// Two seconds apart, record_ids interleaved: a page of the second holds the
			// record_id range of the first (not dense: read with the set of keys).
			var early, late []record.Rated
			for i, r := range recs {
				if i/2%2 == 0 {
					early = append(early, r)
				} else {
					late = append(late, r)
				}
			}
			for _, b := range [][]record.Rated{early, late} {
				if err := st.InsertRated(ctx, b); err != nil {
					t.Fatal(err)
				}
				time.Sleep(1100 * time.Millisecond)
			}
			// Redelivered copies, some rated later with other amounts, inserted in the
			// same second and later ones.
			for round := range 3 {
				var again []record.Rated
				for range 30 {
					r := recs[rng.IntN(len(recs))]
					if rng.IntN(2) == 0 {
						r.RatedTime -= int64(round+1) * 1_000_000 * int64(1-2*(round%2)) // earlier or later
						r.Amount += 999
					}
					again = append(again, r)
				}
				if err := st.InsertRated(ctx, again); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(1100 * time.Millisecond)
			now, err := cs.Now(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, limit := range []int{7, 50, 1000} {
				after := billing.Position{}
				for {
					req := billing.ExportRequest{After: after, UpTo: now, Limit: limit}
					want, wantUpTo, err := cs.Export(ctx, req, nil)
					if err != nil {
						t.Fatal(err)
					}
					var got billing.Columns
					gotUpTo, err := cs.ExportColumns(ctx, req, &got)
					if err != nil {
						t.Fatal(err)
					}
					if gotUpTo != wantUpTo || got.N != len(want) {
						t.Fatalf("limit %d after %v: columns %d records up to %d, records %d up to %d", limit, after, got.N, gotUpTo, len(want), wantUpTo)
					}
					if len(want) == 0 {
						break
					}
					n += len(want)
					if last := want[len(want)-1].Pos; got.Last != last {
						t.Fatalf("limit %d: last position %v, want %v", limit, got.Last, last)
					}
					wantCols := billing.NewColumns(want, nil)
					for i, r := range got.Records() {
						if r != want[i].Rec {
							t.Fatalf("limit %d record %d:\n got %+v\nwant %+v", limit, i, r, want[i].Rec)
						}
					}
					if !reflect.DeepEqual(trim(&got), trim(wantCols)) {
						t.Fatalf("limit %d after %v: columns differ from the records' columns", limit, after)
					}
					for _, f := range []billing.Format{billing.ArrowStream, billing.Parquet, billing.JSONLines, billing.CSV} {
						a, b := encode(t, f, func(w billing.RecordWriter) error { return w.WriteColumns(&got) }),
							encode(t, f, func(w billing.RecordWriter) error { return w.Write(want) })
						if !bytes.Equal(a, b) {
							t.Fatalf("limit %d %s: %d bytes from the columns, %d from the records, not the same", limit, f, len(a), len(b))
						}
					}
					after = want[len(want)-1].Pos
				}
			}
			// Every record once per limit, but the open period's fee.
			if want := 3 * (len(recs) - 1); n != want {
				t.Errorf("read %d records over the three limits, want %d", n, want)
			}
		})
	}
}

// trim returns c's columns cut to its N records (Reset keeps longer arrays).
func trim(c *billing.Columns) billing.Columns {
	t := *c
	for k := range t.Str {
		t.Str[k].Offsets = t.Str[k].Offsets[:t.N+1]
	}
	return t
}

func encode(t *testing.T, f billing.Format, write func(billing.RecordWriter) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := billing.NewRecordWriter(f, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var _ billing.ColumnStore = (*chstore.Store)(nil)
