package rating

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"fleetmeter/record"
	"fleetmeter/rules"
)

func mustSet(t testing.TB, path string) *rules.Set {
	t.Helper()
	s, err := rules.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestNoTariff(t *testing.T) {
	e := NewEngine(mustSet(t, "../deploy/tariffs"), Options{})
	st := NewState()
	u := record.Usage{EventID: "x", Tenant: "nobody", Device: "d", StartTime: ms("2026-11-01T00:00:00Z")}
	out, err := e.Rate(st, &u, nil)
	var ie *record.InvalidError
	if !errors.As(err, &ie) || ie.Reason != record.ReasonNoTariff || len(out) != 0 || st.Devices() != 0 {
		t.Fatalf("err %v out %d devices %d", err, len(out), st.Devices())
	}
	if _, err := NewEngine(nil, Options{}).Rate(st, &u, nil); !errors.As(err, &ie) {
		t.Fatalf("nil rules: %v", err)
	}
}

func TestPeriods(t *testing.T) {
	for _, c := range []struct {
		t    string
		name string
	}{{"2026-11-30T23:59:59Z", "2026-11"}, {"2026-12-01T00:00:00Z", "2026-12"}, {"1969-12-31T23:59:59Z", "1969-12"}, {"2024-02-29T12:00:00Z", "2024-02"}} {
		m := monthOf(ms(c.t))
		if m.String() != c.name {
			t.Errorf("%s: %s", c.t, m)
		}
		start, end := m.bounds()
		if ts := ms(c.t); ts < start || ts >= end {
			t.Errorf("%s outside [%d,%d)", c.t, start, end)
		}
		if p, err := parsePeriod(c.name); err != nil || p != m {
			t.Errorf("parse %s: %v %v", c.name, p, err)
		}
	}
}

// TestStateMonthOf checks the State's remembered month against the calendar arithmetic,
// across month edges, in both directions, and at the ends of int64.
func TestStateMonthOf(t *testing.T) {
	st := NewState()
	rng := rand.New(rand.NewPCG(3, 4))
	var ts []int64
	for _, c := range []string{"2026-11-30T23:59:59.999Z", "2026-12-01T00:00:00Z", "2024-02-29T23:59:59.999Z", "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z"} {
		for d := int64(-2); d <= 2; d++ {
			ts = append(ts, ms(c)+d, ms(c)-d)
		}
	}
	for range 2000 {
		ts = append(ts, ms("2026-06-15T00:00:00Z")+rng.Int64N(400*msPerDay)-200*msPerDay)
	}
	ts = append(ts, math.MinInt64, math.MinInt64+1, math.MaxInt64, math.MaxInt64-1, 0, -1)
	for _, x := range ts {
		if got, want := st.monthOf(x), monthOf(x); got != want {
			t.Fatalf("%d: %v, want %v", x, got, want)
		}
	}
}

// TestAmountBigPathAgrees checks the 64-bit fast path against math/big on random inputs.
func TestAmountBigPathAgrees(t *testing.T) {
	set := mustSet(t, "../deploy/tariffs")
	tr := set.Lookup("autoco", ms("2026-11-20T00:00:00Z"))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		u := record.Usage{BytesUp: rng.Uint64N(1 << uint(rng.IntN(64))), BytesDown: rng.Uint64N(1 << 40),
			DurationMs: rng.Uint64N(1 << uint(rng.IntN(50)+1)), Events: rng.Uint64N(1000)}
		prices := [rules.NumDims]uint64{rng.Uint64N(1 << 20), rng.Uint64N(1 << 20), rng.Uint64N(1 << 20)}
		sm, om := rng.Uint64N(400), rng.Uint64N(400)
		a, err1 := amount(tr, &u, &prices, sm, om)
		b, err2 := amountBig(tr, &u, &prices, sm, om)
		if a != b || (err1 == nil) != (err2 == nil) {
			t.Fatalf("%+v %v: fast %v %v big %v %v", u, prices, a, err1, b, err2)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	e := NewEngine(mustSet(t, "../deploy/tariffs"), Options{})
	st := NewState()
	in := genInput(rand.New(rand.NewPCG(3, 4)), 40, 400)
	var out []record.Rated
	for i := range in {
		out, _ = e.Rate(st, &in[i], out[:0])
	}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	st2 := &State{}
	if err := st2.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := st2.MarshalBinary()
	if len(b) != len(b2) || st2.Devices() != st.Devices() {
		t.Fatalf("round trip: %d vs %d bytes", len(b), len(b2))
	}
	// Both states rate the rest identically.
	more := genInput(rand.New(rand.NewPCG(5, 6)), 40, 200)
	e1 := NewEngine(e.Rules(), Options{Now: func() int64 { return 0 }})
	e2 := NewEngine(e.Rules(), Options{Now: func() int64 { return 0 }})
	for i := range more {
		o1, _ := e1.Rate(st, &more[i], nil)
		o2, _ := e2.Rate(st2, &more[i], nil)
		if len(o1) == 0 || o1[0] != o2[0] {
			t.Fatalf("record %d differs after restore", i)
		}
	}
	for _, bad := range [][]byte{nil, {9}, b[:len(b)/2], append(append([]byte{}, b...), 0)} {
		if err := (&State{}).UnmarshalBinary(bad); err == nil {
			t.Errorf("accepted %d bad bytes", len(bad))
		}
	}
}

func TestSetRulesConcurrent(t *testing.T) {
	set := mustSet(t, "../deploy/tariffs")
	e := NewEngine(set, Options{})
	in := genInput(rand.New(rand.NewPCG(7, 8)), 20, 2000)
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Go(func() {
			st := NewState()
			var out []record.Rated
			for i := p; i < len(in); i += 2 {
				out, _ = e.Rate(st, &in[i], out[:0])
			}
		})
	}
	for range 50 {
		e.SetRules(set)
	}
	wg.Wait()
}

func TestRateZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	e := NewEngine(benchSet(t), Options{})
	st := NewState()
	in := benchInput(t, rand.New(rand.NewPCG(9, 10)), 1000, 4096)
	out := make([]record.Rated, 0, 4)
	for i := range in {
		out, _ = e.Rate(st, &in[i], out[:0])
	}
	i := 0
	allocs := testing.AllocsPerRun(10000, func() {
		out, _ = e.Rate(st, &in[i%len(in)], out[:0])
		i++
	})
	if allocs != 0 {
		t.Errorf("%.2f allocs per record, want 0", allocs)
	}
}

func TestForget(t *testing.T) {
	e := NewEngine(mustSet(t, "../testdata/rating/fees-volume"), Options{})
	st := NewState()
	u := record.Usage{EventID: "a", Tenant: "t1", Device: "d1", StartTime: ms("2026-11-05T00:00:00Z"), Events: 1}
	out, _ := e.Rate(st, &u, nil)
	if len(out) != 2 {
		t.Fatalf("want usage + fee, got %d", len(out))
	}
	if err := st.Forget("2026-11"); err != nil {
		t.Fatal(err)
	}
	if out, _ := e.Close([]*State{st}, "2026-11", nil); len(out) != 0 {
		t.Errorf("forgotten period still closes: %d", len(out))
	}
}

func TestRateBatchEqualsRate(t *testing.T) {
	set := mustSet(t, "../deploy/tariffs")
	in := genInput(rand.New(rand.NewPCG(13, 14)), 50, 1000)
	in[17].Tenant = "nobody"
	e1 := NewEngine(set, Options{Now: func() int64 { return 0 }})
	e2 := NewEngine(set, Options{Now: func() int64 { return 0 }})
	st1, st2 := NewState(), NewState()
	var want []record.Rated
	for i := range in {
		want, _ = e1.Rate(st1, &in[i], want)
	}
	var bad []int
	got := e2.RateBatch(st2, in, nil, func(i int, err error) { bad = append(bad, i) })
	if len(bad) != 1 || bad[0] != 17 || len(got) != len(want) {
		t.Fatalf("rejected %v, %d records, want [17] and %d", bad, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d differs", i)
		}
	}
}
