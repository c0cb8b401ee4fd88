package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/clickhouse"
	"fleetmeter/period"
	"fleetmeter/rating"
	"fleetmeter/record"
)

// ClosePeriod closes a period (period.Close) on the ClickHouse store.
func ClosePeriod(ctx context.Context, store *clickhouse.Store, engine *rating.Engine, name string) ([]record.Rated, error) {
	return period.Close(ctx, tallyStore{store}, engine, name)
}

// AutoClose closes each period once `after` has passed since it ended (period.Auto),
// checking every minute until ctx ends, and finalizes its invoices; m (may be nil)
// reports the closes.
func AutoClose(ctx context.Context, store *clickhouse.Store, engine *rating.Engine, after time.Duration,
	notify billing.NotifyConfig, m *period.Metrics, logger *slog.Logger) {
	period.Auto(ctx, tallyStore{store}, engine, after, time.Minute, logger, m, nil, func(name string, _ []record.Rated) {
		if _, err := FinalizeInvoices(ctx, store, notify, name, logger); err != nil {
			logger.Error("finalizing the invoices of a closed period failed; the next close retries", "period", name, "err", err)
		}
	})
}

// FinalizeInvoices makes the invoices of a closed period final (billing.Finalize over the
// ClickHouse store), publishing invoice.finalized when notify names a broker.
func FinalizeInvoices(ctx context.Context, store *clickhouse.Store, notify billing.NotifyConfig, name string,
	logger *slog.Logger) ([]billing.Invoice, error) {
	cfg := billing.DefaultConfig()
	cfg.Notify = notify
	return chstore.FinalizePeriod(ctx, store, cfg, name, logger)
}

// tallyStore reads a period's tally from ClickHouse as billing reads it, duplicates
// collapsed: the distinct devices with usage and the provisional fees charged.
type tallyStore struct{ *clickhouse.Store }

func (s tallyStore) Tally(ctx context.Context, from, to int64) (map[string]rating.PeriodTally, error) {
	devs, err := s.ActiveDevices(ctx, clickhouse.Filter{Charge: record.ChargeUsage, From: from, To: to})
	if err != nil {
		return nil, fmt.Errorf("tally: %w", err)
	}
	fees, err := s.Totals(ctx, clickhouse.Filter{Charge: record.ChargeDeviceFee, From: from, To: to})
	if err != nil {
		return nil, fmt.Errorf("tally: %w", err)
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
	return tally, nil
}
