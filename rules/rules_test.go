package rules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fleetmeter/record"
)

func TestParseDec(t *testing.T) {
	for _, c := range []struct {
		in   string
		coef uint64
		sc   int
		err  string
	}{
		{"0.00001", 1, 5, ""},
		{"0.0100", 1, 2, ""},
		{"3", 3, 0, ""},
		{"3.0", 3, 0, ""},
		{".5", 5, 1, ""},
		{"+2.", 2, 0, ""},
		{"1e-5", 1, 5, ""},
		{"2.5E3", 2500, 0, ""},
		{"0", 0, 0, ""},
		{"0.000000000000000001", 1, 18, ""},
		{"0.0000000000000000001", 0, 0, "more than 18 decimals"},
		{"-1", 0, 0, "negative"},
		{"1.2.3", 0, 0, "not a decimal"},
		{"", 0, 0, "not a decimal"},
		{"1e", 0, 0, "not a decimal"},
		{"99999999999999999999999", 0, 0, "too many digits"},
	} {
		d, err := ParseDec(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || d.Coef != c.coef || d.Scale != c.sc {
			t.Errorf("%q: got %+v %v, want %d e-%d", c.in, d, err, c.coef, c.sc)
		}
	}
}

const minimal = `id: t
version: "v7"
currency: EUR
tenants: [a, b]
zones:
  - name: world
    default: true
rates:
  events:
    prices: {"*": {"*": 0.00001}}
`

func TestStampAndExactPrice(t *testing.T) {
	tr, err := Parse("x.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(minimal))
	if want := "v7+" + hex.EncodeToString(sum[:])[:8]; tr.Stamp != want {
		t.Errorf("stamp %q, want %q", tr.Stamp, want)
	}
	if tr.PriceScale != 5 || tr.Rates[Events].Price(0, Mobile) != 1 {
		t.Errorf("price scale %d coef %d, want 5 and 1", tr.PriceScale, tr.Rates[Events].Price(0, Mobile))
	}
}

func TestLookupByValidFrom(t *testing.T) {
	a, _ := Parse("a.yaml", []byte(minimal))
	b, err := Parse("b.yaml", []byte(strings.Replace(minimal, "id: t", "id: t2\nvalid_from: 2026-11-01T00:00:00Z", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(b, a)
	if err != nil {
		t.Fatal(err)
	}
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	if got := s.Lookup("a", nov-1); got != a {
		t.Errorf("before valid_from: %v", got)
	}
	if got := s.Lookup("b", nov); got != b {
		t.Errorf("at valid_from: %v", got)
	}
	if got := s.Lookup("c", nov); got != nil {
		t.Errorf("unknown tenant: %v", got)
	}
	if _, err := NewSet(a, a); err == nil {
		t.Error("two tariffs without valid_from for one tenant accepted")
	}
}

func TestZoneMatchOrder(t *testing.T) {
	src := `id: z
version: "1"
currency: EUR
tenants: [a]
zones:
  - name: far
    geofence: {circle: {lat: 10, lon: 10, radius_km: 1}}
  - name: c
    cells: ["12*"]
  - name: p
    plmns: ["262-01"]
  - name: ring
    geofence: {polygon: [[0, 0], [0, 2], [2, 2], [2, 0]]}
  - name: world
    default: true
rates: {events: {prices: {"*": {"*": 1}}}}
`
	tr, err := Parse("z.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		u    record.Usage
		zone string
	}{
		{record.Usage{Lat: 1, Lon: 1, HasPos: true, PLMN: "262-01"}, "p"},
		{record.Usage{Lat: 1, Lon: 1, HasPos: true}, "ring"},
		{record.Usage{Lat: 10, Lon: 10.005, HasPos: true, Cell: "123"}, "far"},
		{record.Usage{Lat: 10, Lon: 10.02, HasPos: true, Cell: "123"}, "c"},
		{record.Usage{Cell: "1", PLMN: "262-02"}, "world"},
	} {
		if got := tr.Zones[tr.Zone(&c.u)].Name; got != c.zone {
			t.Errorf("%+v: zone %s, want %s", c.u, got, c.zone)
		}
	}
}

func TestErrorsNameFileLineKey(t *testing.T) {
	_, err := Parse("f.yaml", []byte(strings.Replace(minimal, "currency: EUR", "currency: EUR\nbogus: 1", 1)))
	ps := Problems(err)
	if len(ps) != 1 || ps[0].Error() != "f.yaml:4: bogus: unknown key" {
		t.Fatalf("got %v", err)
	}
}

func TestWatchSwapsOnlyValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sets []*Set
	var errs []error
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Watch(ctx, dir, 5*time.Millisecond, func(s *Set) { mu.Lock(); sets = append(sets, s); mu.Unlock() },
			func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
		close(done)
	}()
	wait := func(cond func() bool) {
		t.Helper()
		for i := 0; i < 400; i++ {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("timeout: %d sets, errs %v", len(sets), errs)
	}
	wait(func() bool { return len(sets) == 1 })
	write := func(s string) {
		tmp := filepath.Join(dir, ".t.tmp")
		os.WriteFile(tmp, []byte(s), 0o644)
		os.Rename(tmp, path)
	}
	// An invalid change is refused and reported once.
	write(strings.Replace(minimal, "EUR", "euro", 1))
	wait(func() bool { return len(errs) == 1 })
	if !strings.Contains(errs[0].Error(), "t.yaml:3: currency") {
		t.Errorf("error %v lacks file:line: key", errs[0])
	}
	// A valid change is swapped in.
	write(strings.Replace(minimal, `"v7"`, `"v8"`, 1))
	wait(func() bool { return len(sets) == 2 })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !strings.HasPrefix(sets[1].Tariffs[0].Stamp, "v8+") {
		t.Errorf("sets %d errs %v", len(sets), errs)
	}
}

// TestCircleInnerShortcut checks that the circle test's shortcut decides exactly as the
// haversine formula alone, on points scattered over and around circles of many sizes and
// places (poles, the antimeridian), most of them near the edge.
func TestCircleInnerShortcut(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	hits := 0
	for range 2000 {
		lat, lon := rng.Float64()*180-90, rng.Float64()*360-180
		switch rng.IntN(4) {
		case 0:
			lat = math.Copysign(89.9+rng.Float64()*0.1, lat)
		case 1:
			lon = math.Copysign(179.9+rng.Float64()*0.1, lon)
		}
		r := math.Exp(rng.Float64()*math.Log(20000/0.001)) * 0.001 // 1 m to 20,000 km
		g := newCircle(0, lat, lon, r)
		exact := g
		exact.inner = -1
		span := r / EarthRadiusKm / rad * 1.2
		for range 200 {
			plat := lat + (rng.Float64()*2-1)*span
			plon := lon + (rng.Float64()*2-1)*span/math.Max(math.Cos(lat*rad), 1e-3)
			got, want := g.contains(plat, plon), exact.contains(plat, plon)
			if got != want {
				t.Fatalf("circle (%v, %v) r %v km, point (%v, %v): %v, formula says %v", lat, lon, r, plat, plon, got, want)
			}
			if got {
				hits++
			}
		}
	}
	if hits == 0 {
		t.Fatal("no point fell inside any circle")
	}
}
