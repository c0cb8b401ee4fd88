package chstore_test

import (
	"context"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
)

// TestRatingIDsMatchKeyRanges rates usage with the rating engine, closes the period and
// stores what it wrote in two steps (usage and fees, then the adjustments): the export
// holds the fees back until their adjustment is stored and then gives every record once.
// The store finds adjustments and fees by the form of their record_ids (sql.go's
// adjustments and deviceFees): a rating that named them otherwise would leave the fees
// out for good, and this test would fail.
func TestRatingIDsMatchKeyRanges(t *testing.T) {
	ctx := context.Background()
	set, err := rules.Load("../../testdata/rating/fees-volume")
	if err != nil {
		t.Fatal(err)
	}
	eng, state := rating.NewEngine(set, rating.Options{}), rating.NewState()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var rated []record.Rated
	for i, dev := range []string{"d1", "d2", "d3", "d1"} {
		u := record.Usage{EventID: "e" + dev + string(rune('a'+i)), Tenant: "t1", Device: dev, Source: "mqtt",
			StartTime: start + int64(i)*3_600_000, Events: 1}
		if rated, err = eng.Rate(state, &u, rated); err != nil {
			t.Fatal(err)
		}
	}
	closing, err := eng.Close([]*rating.State{state}, "2026-11", nil)
	if err != nil {
		t.Fatal(err)
	}
	count := func(recs []record.Rated, charge string) (n int) {
		for _, r := range recs {
			if r.Charge == charge {
				n++
			}
		}
		return n
	}
	if count(rated, record.ChargeDeviceFee) != 3 || count(closing, record.ChargeAdjustment) != 1 {
		t.Fatalf("rating wrote %d fees and %d adjustments, want 3 and 1", count(rated, record.ChargeDeviceFee), count(closing, record.ChargeAdjustment))
	}

	st, cs := open(t)
	cs.Final(true)
	exp := billing.NewExporter(cs, signer(t), time.Second, 2)
	got := map[string]int{}
	cursor := ""
	pull := func() {
		t.Helper()
		waitVisible(t, cs)
		for {
			page, err := exp.Page(ctx, "", cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Rated() {
				got[r.RecordID]++
			}
			cursor = page.Next
			page.Release()
			if page.CaughtUp {
				return
			}
		}
	}
	if err := st.InsertRated(ctx, rated); err != nil {
		t.Fatal(err)
	}
	pull()
	for _, r := range rated {
		if want := map[bool]int{true: 0, false: 1}[r.Charge == record.ChargeDeviceFee]; got[r.RecordID] != want {
			t.Errorf("before the close: %s (%s) exported %d times, want %d", r.RecordID, r.Charge, got[r.RecordID], want)
		}
	}
	if err := st.InsertRated(ctx, closing); err != nil {
		t.Fatal(err)
	}
	pull()
	for _, r := range append(rated, closing...) {
		if got[r.RecordID] != 1 {
			t.Errorf("after the close: %s (%s) exported %d times, want once", r.RecordID, r.Charge, got[r.RecordID])
		}
	}
}
