package main

import (
	"context"
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
	Rules      string            `yaml:"rules"`
	Reload     time.Duration     `yaml:"reload"`
	Listen     string            `yaml:"listen"`
	LogLevel   string            `yaml:"log_level"`
}

// runStream is `rater run`: consume usage, rate, load into ClickHouse until SIGTERM.
func runStream(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg := streamConfig{Kafka: kafka.DefaultConfig(), ClickHouse: clickhouse.DefaultConfig(), Group: "fleetmeter-rater",
		Rules: "/etc/fleetmeter/tariffs", Reload: 5 * time.Second, Listen: "127.0.0.1:9465", LogLevel: "info"}
	fset := flag.NewFlagSet("rater run", flag.ContinueOnError)
	fset.SetOutput(stderr)
	if _, err := config.Load(fset, args, &cfg, func(fs *flag.FlagSet) {
		fs.Var(config.StringList{P: &cfg.Kafka.Brokers}, "kafka.brokers", "Kafka seed brokers, comma-separated")
		fs.Var(config.StringList{P: &cfg.ClickHouse.Addr}, "clickhouse.addr", "ClickHouse native addresses (host:9000), comma-separated")
		fs.StringVar(&cfg.ClickHouse.Database, "clickhouse.database", cfg.ClickHouse.Database, "ClickHouse database")
		fs.StringVar(&cfg.Group, "group", cfg.Group, "Kafka consumer group shared by all rater instances")
		fs.StringVar(&cfg.Rules, "rules", cfg.Rules, "tariff directory or file (reloaded on change)")
		fs.DurationVar(&cfg.Reload, "reload", cfg.Reload, "how often to look for tariff changes")
		fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /metrics, /healthz and /readyz (empty: off)")
		fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	}); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintf(stderr, "--log-level: %v\n", err)
		return 2
	}
	logger := obs.NewLogger(level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := stream(ctx, cfg, logger); err != nil {
		logger.Error("rater stopped", "err", err)
		return 1
	}
	return 0
}

// stream wires the stage. Shutdown order on SIGTERM: the rater finishes the batch in hand
// (store, rejects, commit) and leaves the group; then the rejects producer flushes; then
// the ClickHouse connection closes.
func stream(ctx context.Context, cfg streamConfig, logger *slog.Logger) error {
	set, err := rules.Load(cfg.Rules)
	if err != nil {
		return fmt.Errorf("tariffs: %w", err)
	}
	store, err := clickhouse.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer store.Close()
	prod, err := kafka.NewProducer(ctx, cfg.Kafka, logger)
	if err != nil {
		return err
	}
	defer prod.Close(context.WithoutCancel(ctx))
	reg := obs.NewRegistry()
	engine := rating.NewEngine(set, rating.Options{})
	r, err := pipeline.NewRater(ctx, pipeline.RaterConfig{Kafka: cfg.Kafka, Group: cfg.Group}, engine, store, prod, reg, logger)
	if err != nil {
		return err
	}
	srv, err := obs.Listen(cfg.Listen, reg, obs.Check{Name: "rater", Fn: r.Ready})
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	logger.Info("rater running", "listen", srv.Addr(), "kafka", cfg.Kafka.Brokers, "clickhouse", cfg.ClickHouse.Addr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error {
		rules.Watch(gctx, cfg.Rules, cfg.Reload, engine.SetRules, func(err error) {
			logger.Error("tariff change refused; the previous tariffs stay in force", "err", err)
		})
		return nil
	})
	return g.Wait()
}

func runClose(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "rater close: not available yet: period close runs offline with `rater rate --close`")
	return 2
}
