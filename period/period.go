// Package period owns the billing period's lifecycle: when a period (a UTC calendar
// month, YYYY-MM) is due for closing, and closing it, which settles every tenant's device
// fees exactly. It reads what billing reads through a small Store interface; the
// ClickHouse adapter satisfies it in the pipeline.
package period

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"fleetmeter/internal/wait"
	"fleetmeter/rating"
	"fleetmeter/record"
)

// Store is what closing a period reads and writes.
type Store interface {
	// Tally returns, per tenant, the distinct devices with usage and the provisional
	// device fees charged with start_time in [from, to) ms, each record counted once
	// (its first rating).
	Tally(ctx context.Context, from, to int64) (map[string]rating.PeriodTally, error)
	// InsertRated writes records; writing a record_id again must replace, not add.
	InsertRated(ctx context.Context, recs []record.Rated) error
}

// Close writes each tenant's device-fee adjustment for the period into the store and
// returns them: the exact fee for the devices seen minus the provisional fees charged.
// The adjustment's record_id is adj:<tenant>:<period>, so closing again (say after late
// records arrived) replaces it rather than adding to it: running it twice changes
// nothing. Run it once everything of the period has been loaded.
func Close(ctx context.Context, store Store, engine *rating.Engine, name string) ([]record.Rated, error) {
	start, end, err := rating.PeriodBounds(name)
	if err != nil {
		return nil, fmt.Errorf("close %s: %w", name, err)
	}
	tally, err := store.Tally(ctx, start, end)
	if err != nil {
		return nil, fmt.Errorf("close %s: %w", name, err)
	}
	adj, err := engine.Adjust(name, tally, nil)
	if err != nil {
		return nil, err
	}
	if err := store.InsertRated(ctx, adj); err != nil {
		return nil, fmt.Errorf("close %s: %w", name, err)
	}
	return adj, nil
}

// Due returns the period that is due for closing at now: the previous month, once after
// has passed since it ended (late records have had that long to arrive).
func Due(now time.Time, after time.Duration) (string, bool) {
	now = now.UTC()
	prev := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	name := prev.Format("2006-01")
	_, end, err := rating.PeriodBounds(name)
	return name, err == nil && now.UnixMilli() >= end+after.Milliseconds()
}

// Auto closes each period once it is Due, checking every interval until ctx ends.
// Closing is idempotent, so every instance may run it, and a restart simply closes again.
// closed, when not nil, is called after each successful close; m (may be nil) counts the
// outcomes.
func Auto(ctx context.Context, store Store, engine *rating.Engine, after, interval time.Duration, logger *slog.Logger,
	m *Metrics, now func() time.Time, closed func(name string, adj []record.Rated)) {
	if now == nil {
		now = time.Now
	}
	done := ""
	for {
		if name, due := Due(now(), after); due && name != done {
			adj, err := Close(ctx, store, engine, name)
			if err != nil {
				logger.Error("automatic period close failed, retrying", "period", name, "err", err)
				m.failed()
			} else {
				done = name
				m.closed(name)
				logger.Info("period closed", "period", name, "adjustments", len(adj))
				if closed != nil {
					closed(name, adj)
				}
			}
		}
		if !wait.Sleep(ctx, interval) {
			return
		}
	}
}
