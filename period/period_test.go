package period

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
)

const feeTariff = `id: fees
version: "1"
currency: EUR
tenants: [t]
zones:
  - name: all
    default: true
rates:
  events:
    prices: {"*": {"*": 0}}
device_fee:
  mode: volume
  tiers:
    - {upto: 2, price: 1.00}
    - {price: 0.50}
`

// fakeStore keeps rows by record_id (a later write of one replaces it, as billing reads
// see after collapsing) and tallies them.
type fakeStore struct {
	mu   sync.Mutex
	rows map[string]record.Rated
}

func (s *fakeStore) Tally(_ context.Context, from, to int64) (map[string]rating.PeriodTally, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	devs := map[string]map[string]bool{}
	out := map[string]rating.PeriodTally{}
	for _, r := range s.rows {
		if r.StartTime < from || r.StartTime >= to {
			continue
		}
		x := out[r.Tenant]
		switch r.Charge {
		case record.ChargeUsage:
			if devs[r.Tenant] == nil {
				devs[r.Tenant] = map[string]bool{}
			}
			devs[r.Tenant][r.Device] = true
			x.Devices = uint64(len(devs[r.Tenant]))
		case record.ChargeDeviceFee:
			x.Provisional += r.Amount
		}
		out[r.Tenant] = x
	}
	return out, nil
}

func (s *fakeStore) InsertRated(_ context.Context, recs []record.Rated) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		s.rows[r.RecordID] = r
	}
	return nil
}

func (s *fakeStore) total(tenant string) (sum record.Micros) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		if r.Tenant == tenant && r.Charge != record.ChargeUsage {
			sum += r.Amount
		}
	}
	return sum
}

func engine(t *testing.T) *rating.Engine {
	tar, err := rules.Parse("fees.yaml", []byte(feeTariff))
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.NewSet(tar)
	if err != nil {
		t.Fatal(err)
	}
	return rating.NewEngine(set, rating.Options{})
}

// Three devices rated one by one get provisional fees at the tier their count reached
// (1.00, 1.00, 0.50); closing makes the period's fees exact (volume: 3 x 0.50 = 1.50),
// and closing again, after a late device, adjusts to the new exact total without adding.
func TestCloseIsExactAndIdempotent(t *testing.T) {
	e := engine(t)
	st := rating.NewState()
	store := &fakeStore{rows: map[string]record.Rated{}}
	ts := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	rate := func(dev string) {
		u := record.Usage{EventID: dev, Tenant: "t", Device: dev, Source: "mqtt", StartTime: ts, EndTime: ts, Events: 1}
		out, err := e.Rate(st, &u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.InsertRated(context.Background(), out); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"a", "b", "c"} {
		rate(d)
	}
	if got := store.total("t"); got != 2_500_000 {
		t.Fatalf("provisional fees %s, want 2.500000 (1 + 1 + 0.5)", got)
	}
	for range 2 {
		if _, err := Close(context.Background(), store, e, "2026-10"); err != nil {
			t.Fatal(err)
		}
		if got := store.total("t"); got != 1_500_000 {
			t.Fatalf("fees after closing %s, want 1.500000 (volume: 3 x 0.50)", got)
		}
	}
	rate("d") // late usage of a fourth device
	if _, err := Close(context.Background(), store, e, "2026-10"); err != nil {
		t.Fatal(err)
	}
	if got := store.total("t"); got != 2_000_000 {
		t.Fatalf("fees after a late device and closing again %s, want 2.000000 (4 x 0.50)", got)
	}
	if _, err := Close(context.Background(), store, e, "2026-13"); err == nil {
		t.Fatal("closed a malformed period")
	}
}

func TestDue(t *testing.T) {
	for _, c := range []struct {
		now   string
		after time.Duration
		name  string
		due   bool
	}{
		{"2026-11-01T00:00:00Z", 0, "2026-10", true},
		{"2026-11-01T00:00:00Z", time.Hour, "2026-10", false},
		{"2026-11-01T01:00:00Z", time.Hour, "2026-10", true},
		{"2026-11-30T23:59:59Z", 48 * time.Hour, "2026-10", true},
		{"2026-01-01T12:00:00Z", 24 * time.Hour, "2025-12", false},
		{"2026-01-02T00:00:00Z", 24 * time.Hour, "2025-12", true},
		{"2026-03-01T05:00:00+09:00", 0, "2026-01", true}, // 2026-02-28T20:00Z: still February
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		name, due := Due(now, c.after)
		if name != c.name || due != c.due {
			t.Errorf("Due(%s, %s) = %s %t, want %s %t", c.now, c.after, name, due, c.name, c.due)
		}
	}
}

// Auto closes the due period once, and tells the caller.
func TestAutoClosesOnce(t *testing.T) {
	e := engine(t)
	store := &fakeStore{rows: map[string]record.Rated{}}
	ts := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	_ = store.InsertRated(context.Background(), []record.Rated{{Usage: record.Usage{Tenant: "t", Device: "a", StartTime: ts},
		RecordID: "u1", Charge: record.ChargeUsage}})
	var mu sync.Mutex
	var closed []string
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	Auto(ctx, store, e, time.Hour, 5*time.Millisecond, slog.New(slog.DiscardHandler), nil,
		func() time.Time { return time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) },
		func(name string, adj []record.Rated) {
			mu.Lock()
			closed = append(closed, name)
			mu.Unlock()
		})
	if len(closed) != 1 || closed[0] != "2026-10" {
		t.Fatalf("closed %v, want [2026-10] once", closed)
	}
	if _, ok := store.rows["adj:t:2026-10"]; !ok {
		t.Fatal("no adjustment written")
	}
}
