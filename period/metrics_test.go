package period

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"fleetmeter/rating"
	"fleetmeter/record"
)

// flakyStore fails its first tallies, as ClickHouse does while it is down.
type flakyStore struct {
	*fakeStore
	failures atomic.Int32
}

func (s *flakyStore) Tally(ctx context.Context, from, to int64) (map[string]rating.PeriodTally, error) {
	if s.failures.Add(-1) >= 0 {
		return nil, errors.New("clickhouse down")
	}
	return s.fakeStore.Tally(ctx, from, to)
}

// A due period whose close fails is overdue until a retry closes it; then the last
// closed period's end is reported.
func TestAutoCloseMetrics(t *testing.T) {
	store := &flakyStore{fakeStore: &fakeStore{rows: map[string]record.Rated{}}}
	store.failures.Store(3)
	m := NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	overdueSeen := make(chan struct{})
	var once atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		Auto(ctx, store, engine(t), time.Hour, 5*time.Millisecond, slog.New(slog.DiscardHandler), m,
			func() time.Time {
				if testutil.ToFloat64(m.overdue) == 1 && once.CompareAndSwap(false, true) {
					close(overdueSeen)
				}
				return time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
			}, func(string, []record.Rated) { cancel() })
	}()
	select {
	case <-overdueSeen:
	case <-time.After(5 * time.Second):
		t.Fatal("a failing close never reported the period overdue")
	}
	<-done
	if got := testutil.ToFloat64(m.closes.WithLabelValues("failed")); got != 3 {
		t.Errorf("failed closes: %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.closes.WithLabelValues("closed")); got != 1 {
		t.Errorf("closes: %v, want 1", got)
	}
	if testutil.ToFloat64(m.overdue) != 0 {
		t.Error("still overdue after the close")
	}
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Unix()
	if got := testutil.ToFloat64(m.lastClosed); got != float64(end) {
		t.Errorf("last closed end %v, want %d (2026-10 ends 2026-11-01)", got, end)
	}
}
