package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"fleetmeter/clickhouse"
	"fleetmeter/internal/config"
	"fleetmeter/internal/obs"
	"fleetmeter/kafka"
	"fleetmeter/pipeline"
	"fleetmeter/rating"
	"fleetmeter/rules"
)

type streamConfig struct {
	Kafka      kafka.Config      `yaml:"kafka"`
	ClickHouse clickhouse.Config `yaml:"clickhouse"`
	Group      string            `yaml:"group"`
	LoadGroup  string            `yaml:"load_group"`
	Instance   string            `yaml:"instance"`
	Rules      string            `yaml:"rules"`
	Reload     time.Duration     `yaml:"reload"`
	CloseAfter time.Duration     `yaml:"close_after"`
	Listen     string            `yaml:"listen"`
	LogLevel   string            `yaml:"log_level"`
}

func defaultStream() streamConfig {
	host, _ := os.Hostname()
	return streamConfig{Kafka: kafka.DefaultConfig(), ClickHouse: clickhouse.DefaultConfig(), Group: "fleetmeter-rater",
		LoadGroup: "fleetmeter-loader", Instance: host, Rules: "/etc/fleetmeter/tariffs", Reload: 5 * time.Second,
		Listen: "127.0.0.1:9465", LogLevel: "info"}
}

// loadStream parses the shared flags of run, load and close.
func loadStream(name string, args []string, stderr io.Writer) (streamConfig, *slog.Logger, []string, bool) {
	cfg := defaultStream()
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	fset.SetOutput(stderr)
	var period string
	rest, err := config.Load(fset, args, &cfg, func(fs *flag.FlagSet) {
		fs.Var(config.StringList{P: &cfg.Kafka.Brokers}, "kafka.brokers", "Kafka seed brokers, comma-separated")
		fs.Var(config.StringList{P: &cfg.ClickHouse.Addr}, "clickhouse.addr", "ClickHouse native addresses (host:9000), comma-separated")
		fs.StringVar(&cfg.ClickHouse.Database, "clickhouse.database", cfg.ClickHouse.Database, "ClickHouse database")
		fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group shared by all rater instances")
		fs.StringVar(&cfg.LoadGroup, "load-group", cfg.LoadGroup, "consumer group shared by all loader instances")
		fs.StringVar(&cfg.Instance, "instance", cfg.Instance, "this instance's id: stable across restarts, unique per group (static membership, transactional id)")
		fs.StringVar(&cfg.Rules, "rules", cfg.Rules, "tariff directory or file (reloaded on change)")
		fs.DurationVar(&cfg.Reload, "reload", cfg.Reload, "how often to look for tariff changes")
		fs.DurationVar(&cfg.CloseAfter, "close-after", cfg.CloseAfter, "rater load: close each period this long after it ends (0: only `rater close`; needs --rules)")
		fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /metrics, /healthz and /readyz (empty: off)")
		fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
		if name == "rater close" {
			fs.StringVar(&period, "period", "", "the period to close, YYYY-MM")
		}
	})
	if err != nil {
		return cfg, nil, nil, false
	}
	logger, err := obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cfg, nil, nil, false
	}
	cfg.Kafka.Instance = cfg.Instance
	if period != "" {
		rest = append([]string{period}, rest...)
	}
	return cfg, logger, rest, true
}

// runStream is `rater run`: consume usage, rate, produce rated records transactionally.
func runStream(args []string, _ io.Reader, _, stderr io.Writer) int {
	cfg, logger, _, ok := loadStream("rater run", args, stderr)
	if !ok {
		return 2
	}
	obs.SetGCPercent(obs.RaterGCPercent)
	return serve(logger, func(ctx context.Context, reg *obs.Registry) ([]obs.Check, []func(context.Context) error, error) {
		set, err := rules.Load(cfg.Rules)
		if err != nil {
			return nil, nil, fmt.Errorf("tariffs: %w", err)
		}
		r, err := pipeline.NewRater(ctx, pipeline.RaterConfig{Kafka: cfg.Kafka, Group: cfg.Group, InstanceID: cfg.Instance},
			set, reg, logger)
		if err != nil {
			return nil, nil, err
		}
		engine := r.Engine()
		watch := func(ctx context.Context) error {
			rules.Watch(ctx, cfg.Rules, cfg.Reload, engine.SetRules, func(err error) {
				logger.Error("tariff change refused; the previous tariffs stay in force", "err", err)
			})
			return nil
		}
		return []obs.Check{{Name: "rater", Fn: r.Ready}}, []func(context.Context) error{r.Run, watch}, nil
	}, cfg.Listen)
}

// runLoad is `rater load`: move committed rated records and rejections into ClickHouse.
func runLoad(args []string, _ io.Reader, _, stderr io.Writer) int {
	cfg, logger, _, ok := loadStream("rater load", args, stderr)
	if !ok {
		return 2
	}
	var store *clickhouse.Store
	defer func() {
		if store != nil {
			store.Close()
		}
	}()
	return serve(logger, func(ctx context.Context, reg *obs.Registry) ([]obs.Check, []func(context.Context) error, error) {
		var err error
		if store, err = clickhouse.Open(ctx, cfg.ClickHouse); err != nil {
			return nil, nil, err
		}
		l, err := pipeline.NewLoader(ctx, pipeline.LoaderConfig{Kafka: cfg.Kafka, Group: cfg.LoadGroup}, store, reg, logger)
		if err != nil {
			return nil, nil, err
		}
		loops := []func(context.Context) error{l.Run}
		if cfg.CloseAfter > 0 {
			set, err := rules.Load(cfg.Rules)
			if err != nil {
				return nil, nil, fmt.Errorf("--close-after needs the tariffs: %w", err)
			}
			engine := rating.NewEngine(set, rating.Options{})
			loops = append(loops, func(ctx context.Context) error {
				go rules.Watch(ctx, cfg.Rules, cfg.Reload, engine.SetRules, func(err error) {
					logger.Error("tariff change refused; the previous tariffs stay in force", "err", err)
				})
				pipeline.AutoClose(ctx, store, engine, cfg.CloseAfter, logger)
				return nil
			})
		}
		return []obs.Check{{Name: "loader", Fn: l.Ready}}, loops, nil
	}, cfg.Listen)
}

// runClose is `rater close --period YYYY-MM`: write each tenant's exact device-fee
// adjustment for the period into ClickHouse, idempotently.
func runClose(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, logger, rest, ok := loadStream("rater close", args, stderr)
	if !ok {
		return 2
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
	return 0
}

// serve builds a stage with setup, serves its checks on listen and runs its loops until
// SIGTERM. Shutdown: the loops finish the batch in hand (a rater ends or aborts its
// transaction, a loader inserts and commits) and leave their groups; then the HTTP
// server stops.
func serve(logger *slog.Logger, setup func(context.Context, *obs.Registry) ([]obs.Check, []func(context.Context) error, error),
	listen string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := obs.NewRegistry()
	checks, loops, err := setup(ctx, reg)
	if err != nil {
		logger.Error("start", "err", err)
		return 1
	}
	srv, err := obs.Listen(listen, reg, checks...)
	if err != nil {
		logger.Error("listen", "err", err)
		return 1
	}
	logger.Info("running", "listen", srv.Addr())
	g, gctx := errgroup.WithContext(ctx)
	for _, loop := range loops {
		g.Go(func() error { return loop(gctx) })
	}
	g.Go(func() error { return srv.Run(gctx) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("stopped", "err", err)
		return 1
	}
	return 0
}
