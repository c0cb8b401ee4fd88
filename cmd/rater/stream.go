package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"fleetmeter/clickhouse"
	"fleetmeter/internal/config"
	"fleetmeter/internal/lifecycle"
	"fleetmeter/internal/obs"
	"fleetmeter/period"
	"fleetmeter/pipeline"
	"fleetmeter/rating"
	"fleetmeter/rules"
)

// loadStream parses the command line of run, load and close: on help or a configuration
// error it has printed it, and ok is false with the exit status in code.
func loadStream(name string, args []string, stdout, stderr io.Writer) (cfg streamConfig, logger *slog.Logger, rest []string, code int, ok bool) {
	cfg = defaultStream()
	var period string
	spec := streamSpec(name, &cfg, &period)
	rest, err := config.Parse(spec, &cfg, args)
	if err != nil {
		return cfg, nil, nil, config.Exit(name, err, stdout, stderr), false
	}
	logger, err = obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		return cfg, nil, nil, config.Exit(name, err, stdout, stderr), false
	}
	cfg.Kafka.Instance = cfg.Instance
	if period != "" {
		rest = append([]string{period}, rest...)
	}
	return cfg, logger, rest, 0, true
}

// runStream is `rater run`: consume usage, rate, produce rated records transactionally.
func runStream(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, logger, _, code, ok := loadStream("rater run", args, stdout, stderr)
	if !ok {
		return code
	}
	obs.SetGCPercent(obs.RaterGCPercent)
	return serve(logger, func(ctx context.Context, reg *obs.Registry) ([]lifecycle.Component, error) {
		set, err := rules.Load(cfg.Rules)
		if err != nil {
			return nil, fmt.Errorf("tariffs: %w", err)
		}
		r, err := pipeline.NewRater(ctx, pipeline.RaterConfig{Kafka: cfg.Kafka, Group: cfg.Group, InstanceID: cfg.Instance},
			set, reg, logger)
		if err != nil {
			return nil, err
		}
		watch := pipeline.NewTariffWatch(cfg.Rules, cfg.Reload, r.Engine(), reg, logger)
		return []lifecycle.Component{{Name: "rater", Run: r.Run, Ready: r.Ready}, {Name: "tariffs", Run: watch.Run}}, nil
	}, cfg.Listen, cfg.Pprof)
}

// runLoad is `rater load`: move committed rated records and rejections into ClickHouse.
func runLoad(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, logger, _, code, ok := loadStream("rater load", args, stdout, stderr)
	if !ok {
		return code
	}
	return serve(logger, func(ctx context.Context, reg *obs.Registry) ([]lifecycle.Component, error) {
		store, err := clickhouse.Open(ctx, cfg.ClickHouse)
		if err != nil {
			return nil, err
		}
		l, err := pipeline.NewLoader(ctx, pipeline.LoaderConfig{Kafka: cfg.Kafka, Group: cfg.LoadGroup,
			BatchRows: cfg.LoadBatchRows, BatchWait: cfg.LoadBatchWait}, store, reg, logger)
		if err != nil {
			store.Close()
			return nil, err
		}
		components := []lifecycle.Component{{Name: "loader", Run: l.Run, Ready: l.Ready,
			Close: func(context.Context) error { return store.Close() }}}
		if cfg.CloseAfter > 0 {
			set, err := rules.Load(cfg.Rules)
			if err != nil {
				store.Close()
				return nil, fmt.Errorf("--close-after needs the tariffs: %w", err)
			}
			engine := rating.NewEngine(set, rating.Options{})
			watch := pipeline.NewTariffWatch(cfg.Rules, cfg.Reload, engine, reg, logger)
			closes := period.NewMetrics(reg)
			components = append(components, lifecycle.Component{Name: "tariffs", Run: watch.Run},
				lifecycle.Component{Name: "period close", Run: func(ctx context.Context) error {
					pipeline.AutoClose(ctx, store, engine, cfg.CloseAfter, cfg.InvoiceNotify, closes, logger)
					return nil
				}})
		}
		return components, nil
	}, cfg.Listen, cfg.Pprof)
}

// runClose is `rater close --period YYYY-MM`: write each tenant's exact device-fee
// adjustment for the period into ClickHouse, idempotently.
func runClose(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, logger, rest, code, ok := loadStream("rater close", args, stdout, stderr)
	if !ok {
		return code
	}
	if len(rest) != 1 {
		fmt.Fprintln(stderr, "usage: rater close --period YYYY-MM [--rules DIR] [--clickhouse.addr ADDR]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set, err := rules.Load(cfg.Rules)
	if err != nil {
		logger.Error("tariffs", "err", err)
		return 1
	}
	store, err := clickhouse.Open(ctx, cfg.ClickHouse)
	if err != nil {
		logger.Error("clickhouse", "err", err)
		return 1
	}
	defer store.Close()
	adj, err := pipeline.ClosePeriod(ctx, store, rating.NewEngine(set, rating.Options{}), rest[0])
	if err != nil {
		logger.Error("close", "err", err)
		return 1
	}
	for _, a := range adj {
		fmt.Fprintf(stdout, "%s\t%s\tdevices=%d\tadjustment=%s %s\n", a.RecordID, a.Tenant, a.ActiveDevices, a.Amount, a.Currency)
	}
	// The period is exact now: its invoices become final (again: nothing changes, or a
	// correction note takes late usage), and invoice.finalized goes out when configured.
	invs, err := pipeline.FinalizeInvoices(ctx, store, cfg.InvoiceNotify, rest[0], logger)
	if err != nil {
		logger.Error("finalize invoices", "err", err)
		return 1
	}
	for _, inv := range invs {
		fmt.Fprintf(stdout, "%s %s\t%s\t%s\trecords=%d\n", inv.Kind, inv.Number, inv.Tenant, inv.Status, inv.Records)
	}
	return 0
}

// serve builds a stage's components with setup and runs them until SIGTERM, with
// /metrics, /healthz and /readyz on listen (and /debug/pprof/ with pprof).
func serve(logger *slog.Logger, setup func(context.Context, *obs.Registry) ([]lifecycle.Component, error), listen string,
	pprof bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := obs.NewRegistry()
	components, err := setup(ctx, reg)
	if err != nil {
		logger.Error("start", "err", err)
		return 1
	}
	// Shutdown order, once SIGTERM came:
	stages := []lifecycle.Stage{
		// 1. The stage finishes the batch in hand (a rater ends or aborts its transaction,
		// a loader inserts and commits) and leaves its group.
		{Name: "stage", Drain: time.Minute, Components: components},
		// 2. /metrics, /healthz and /readyz, which answered until here. Then the
		// components' Close: the ClickHouse connections.
		{Name: "observability", Drain: 5 * time.Second},
	}
	srv, err := obs.Listen(listen, reg, lifecycle.Checks(stages...)...)
	if err != nil {
		logger.Error("listen", "err", err)
		_ = lifecycle.Close(stages...)
		return 1
	}
	if pprof {
		srv.Pprof()
	}
	stages[1].Components = []lifecycle.Component{{Name: "metrics", Run: srv.Run}}
	logger.Info("running", "listen", srv.Addr())
	if err := lifecycle.Run(ctx, logger, stages...); err != nil {
		logger.Error("stopped", "err", err)
		return 1
	}
	return 0
}
