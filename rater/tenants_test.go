package rater

import (
	"fmt"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"fleetmeter/rating"
	"fleetmeter/record"
)

// The per-tenant counters hold exactly what the committed transactions hold: aborted
// batches (every 3rd) are not counted, their retries are, once.
func TestTenantMetricsCountCommittedOutput(t *testing.T) {
	const parts = 3
	l := newFakeLog()
	msgs, _ := genUsage(7, 40, 2000, parts)
	l.input = msgs
	l.loseEvery = 3
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	reg := prometheus.NewRegistry()
	c := NewFleetCounter()
	e := rating.NewEngine(testSet(t), rating.Options{Counter: c, Now: func() int64 { return 1 }})
	r, err := New(Config{Topics: topics}, l.open, fakeStore{l}, e, c, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, l, total)

	records := map[string]float64{}
	amount := map[[2]string]record.Micros{}
	for _, rec := range committedRated(t, l, parts) {
		records[rec.Tenant]++
		amount[[2]string{rec.Tenant, rec.Currency}] += rec.Amount
	}
	if len(records) == 0 {
		t.Fatal("nothing committed")
	}
	for ten, n := range records {
		if got := testutil.ToFloat64(r.m.tenants.records.WithLabelValues(ten)); got != n {
			t.Errorf("tenant %s: records counter %v, committed %v", ten, got, n)
		}
	}
	for k, micros := range amount {
		got := testutil.ToFloat64(r.m.tenants.amount.WithLabelValues(k[0], k[1]))
		if want := float64(micros) / 1e6; math.Abs(got-want) > 1e-6*math.Max(1, want) {
			t.Errorf("tenant %s %s: amount counter %v, committed %v", k[0], k[1], got, want)
		}
	}
}

// Past MaxTenantLabels tenants, further ones share the label "other"; known ones keep
// theirs.
func TestTenantLabelsBounded(t *testing.T) {
	m := newTenantMetrics()
	var s tenantSums
	for i := range MaxTenantLabels + 5 {
		s.add(&record.Rated{Usage: record.Usage{Tenant: fmt.Sprintf("t%03d", i)}, Currency: "EUR", Amount: 1})
	}
	s.add(&record.Rated{Usage: record.Usage{Tenant: "t000"}, Currency: "EUR", Amount: 1})
	m.add(&s)
	if n := testutil.CollectAndCount(m.records); n != MaxTenantLabels+1 {
		t.Fatalf("%d tenant series, want %d and other", n, MaxTenantLabels)
	}
	if got := testutil.ToFloat64(m.records.WithLabelValues(tenantOther)); got != 5 {
		t.Fatalf("other: %v records, want 5", got)
	}
	if got := testutil.ToFloat64(m.records.WithLabelValues("t000")); got != 2 {
		t.Fatalf("t000: %v records, want 2", got)
	}
}

// BenchmarkTenantSums is the per-record cost of the per-tenant sums, beside rating the
// same records (run together: the ratio is what to read).
func BenchmarkTenantSums(b *testing.B) {
	_, us := genUsage(3, 200, 5000, 1)
	e := rating.NewEngine(testSet(b), rating.Options{Now: func() int64 { return 1 }})
	out := e.RateBatch(rating.NewState(), us, nil, nil)
	b.Run("step=rate", func(b *testing.B) {
		var into []record.Rated
		for b.Loop() {
			st := rating.NewState()
			into = e.RateBatch(st, us, into[:0], nil)
			st.Release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(us)), "ns/record")
	})
	b.Run("step=tenant_sums", func(b *testing.B) {
		var s tenantSums
		b.ReportAllocs()
		for b.Loop() {
			s.reset()
			for i := range out {
				s.add(&out[i])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(out)), "ns/record")
	})
}
