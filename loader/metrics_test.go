package loader

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"fleetmeter/record"
)

// Every insert attempt is timed, failed ones included, and every rated record's delay
// from its receipt is observed once its insert succeeded.
func TestInsertLatencyAndRecordDelay(t *testing.T) {
	msgs, _ := ratedLog(t, 4, 10)
	received := time.Now().Add(-3 * time.Second).UnixMilli()
	enc := record.NewRatedEncoder()
	for i := range msgs {
		recs, err := record.DecodeRated(msgs[i].Value, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := range recs {
			recs[j].ReceivedTime = received
		}
		if msgs[i].Value, err = enc.Encode(nil, recs); err != nil {
			t.Fatal(err)
		}
	}
	src := &fakeSource{log: msgs}
	st := &fakeStore{failures: 2}
	l := New(src, st, prometheus.NewRegistry(), nil)
	l.MaxBackoff = time.Millisecond
	l.BatchWait = 0 // a batch per poll
	runUntil(t, l, src, src.done)

	rows := testutil.ToFloat64(l.loaded.WithLabelValues(tableRated))
	if rows != 40 {
		t.Fatalf("rated rows %v, want 40", rows)
	}
	count := func(table string) uint64 {
		m := &dtoMetric{}
		return m.histCount(t, l.insert.WithLabelValues(table).(prometheus.Metric))
	}
	// 4 messages in polls of at most 3: 2 batches, each one insert per table, plus the 2
	// failed attempts of the rated table.
	if got := count(tableRated); got != 4 {
		t.Errorf("rated inserts timed: %d, want 4 (2 batches + 2 failed attempts)", got)
	}
	if got := count(tableRejected); got != 2 {
		t.Errorf("rejected inserts timed: %d, want 2", got)
	}
	m := &dtoMetric{}
	if got := m.histCount(t, l.delay.(prometheus.Metric)); got != 40 {
		t.Errorf("record delays observed: %d, want 40", got)
	}
	if sum := m.sum; sum < 40*3 || sum > 40*60 {
		t.Errorf("record delays sum to %v s, want about 40 x 3 s", sum)
	}
}

type dtoMetric struct{ sum float64 }

func (d *dtoMetric) histCount(t *testing.T, m prometheus.Metric) uint64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	d.sum = pb.GetHistogram().GetSampleSum()
	return pb.GetHistogram().GetSampleCount()
}

// BenchmarkPerRecord compares what the delay histogram adds per loaded record with the
// decoding every record already costs (run together: the ratio is what to read).
func BenchmarkPerRecord(b *testing.B) {
	const n = 5000
	var recs []record.Rated
	now := time.Now().UnixMilli()
	for i := range n {
		recs = append(recs, record.Rated{Usage: record.Usage{EventID: fmt.Sprintf("e%d", i), Tenant: "t", Device: "d",
			Source: "mqtt", ReceivedTime: now - int64(i)}, RecordID: fmt.Sprintf("e%d", i), Charge: record.ChargeUsage,
			Currency: "EUR", Amount: 1, RatedTime: 1})
	}
	buf, err := record.NewRatedEncoder().Encode(nil, recs)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("step=decode", func(b *testing.B) {
		var into []record.Rated
		for b.Loop() {
			if into, err = record.DecodeRated(buf, into[:0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run("step=observe_delay", func(b *testing.B) {
		l := New(nil, nil, nil, nil)
		b.ReportAllocs()
		for b.Loop() {
			l.observeDelay(recs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
}
