package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"fleetmeter/clickhouse"
	"fleetmeter/internal/wait"
	"fleetmeter/rating"
	"fleetmeter/record"
)

// ClosePeriod writes each tenant's device-fee adjustment for period into the store and
// returns them. It reads what billing reads, with duplicates collapsed: the tenant's
// distinct devices with usage in the period and the provisional fees charged. The
// adjustment's record_id is adj:<tenant>:<period>, so closing again (say after late
// records arrived) replaces it rather than adding to it: running it twice changes
// nothing. Run it once everything of the period has been loaded.
func ClosePeriod(ctx context.Context, store *clickhouse.Store, engine *rating.Engine, period string) ([]record.Rated, error) {
	start, end, err := rating.PeriodBounds(period)
	if err != nil {
		return nil, fmt.Errorf("close %s: %w", period, err)
	}
	devs, err := store.ActiveDevices(ctx, clickhouse.Filter{Charge: record.ChargeUsage, From: start, To: end})
	if err != nil {
		return nil, fmt.Errorf("close %s: %w", period, err)
	}
	fees, err := store.Totals(ctx, clickhouse.Filter{Charge: record.ChargeDeviceFee, From: start, To: end})
	if err != nil {
		return nil, fmt.Errorf("close %s: %w", period, err)
	}
	tally := make(map[string]rating.PeriodTally, len(devs))
	for t, n := range devs {
		tally[t] = rating.PeriodTally{Devices: n}
	}
	for _, f := range fees {
		x := tally[f.Tenant]
		x.Provisional += f.Amount
		tally[f.Tenant] = x
	}
	adj, err := engine.Adjust(period, tally, nil)
	if err != nil {
		return nil, err
	}
	if err := store.InsertRated(ctx, adj); err != nil {
		return nil, fmt.Errorf("close %s: %w", period, err)
	}
	return adj, nil
}

// AutoClose closes each period once `after` has passed since it ended (late records
// have had that long to arrive), checking every minute until ctx ends. Closing is
// idempotent, so every loader instance may run it, and a restart simply closes again.
func AutoClose(ctx context.Context, store *clickhouse.Store, engine *rating.Engine, after time.Duration, logger *slog.Logger) {
	done := ""
	for {
		now := time.Now().UTC()
		prev := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
		period := prev.Format("2006-01")
		if _, end, err := rating.PeriodBounds(period); err == nil && period != done && now.UnixMilli() >= end+after.Milliseconds() {
			adj, err := ClosePeriod(ctx, store, engine, period)
			if err != nil {
				logger.Error("automatic period close failed, retrying", "period", period, "err", err)
			} else {
				done = period
				logger.Info("period closed", "period", period, "adjustments", len(adj))
			}
		}
		if !wait.Sleep(ctx, time.Minute) {
			return
		}
	}
}
