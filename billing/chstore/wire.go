package chstore

import (
	"context"
	"fmt"
	"log/slog"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
)

// NewHandler wires billing over st for cmd/api: the export, the invoices (publishing
// invoice.finalized when cfg.Notify.URL is set) and the HTTP handler, reading the caller
// with caller.
func NewHandler(st *clickhouse.Store, cfg billing.Config, caller billing.CallerFunc, log *slog.Logger) (*billing.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	signer, err := billing.NewSigner([]byte(cfg.CursorKey))
	if err != nil {
		return nil, err
	}
	inv, err := newInvoices(st, cfg, log)
	if err != nil {
		return nil, err
	}
	cs := New(st.Conn(), st.Schema().Database).Final(st.Schema().Cluster == "")
	return billing.NewHandler(billing.NewExporter(cs, signer, cfg.Lag, cfg.MaxLimit), inv, caller, log), nil
}

func newInvoices(st *clickhouse.Store, cfg billing.Config, log *slog.Logger) (*billing.Invoices, error) {
	var notify billing.Notifier
	if cfg.Notify.URL != "" {
		n, err := billing.NewAMQPNotifier(cfg.Notify, log)
		if err != nil {
			return nil, err
		}
		notify = n
	}
	return billing.NewInvoices(New(st.Conn(), st.Schema().Database), cfg.Lag, notify), nil
}

// FinalizePeriod is what closing a period calls once its adjustments are written (rater
// close, the loader's automatic close): billing.Finalize over st. Calling it again
// changes nothing unless late records came (then a correction note).
func FinalizePeriod(ctx context.Context, st *clickhouse.Store, cfg billing.Config, period string, log *slog.Logger) ([]billing.Invoice, error) {
	if cfg.Lag <= 0 {
		cfg.Lag = billing.DefaultConfig().Lag
	}
	inv, err := newInvoices(st, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("finalize %s: %w", period, err)
	}
	return billing.Finalize(ctx, inv, period)
}
