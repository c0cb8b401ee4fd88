// Command api serves tenants' usage analytics over HTTP: REST JSON/CSV, the OpenAPI file
// and the tenant web page, reading ClickHouse rated_usage with duplicates collapsed.
//
//	api [--config FILE] [--listen ADDR] [--clickhouse.addr A] [--rules DIR] [--keys T=SHA256,...]
//	api hash-key KEY      print the sha256 a keys entry stores for KEY
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"fleetmeter/api"
	"fleetmeter/internal/config"
	"fleetmeter/internal/obs"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 2 && args[0] == "hash-key" {
		fmt.Fprintln(stdout, api.HashKey(args[1]))
		return 0
	}
	cfg := api.DefaultConfig()
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	_, err := config.Load(fs, args, &cfg, func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of the API, the web page, /metrics, /healthz and /readyz")
		fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
		fs.Var(config.StringList{P: &cfg.ClickHouse.Addr}, "clickhouse.addr", "ClickHouse native addresses (host:9000), comma-separated")
		fs.StringVar(&cfg.ClickHouse.Database, "clickhouse.database", cfg.ClickHouse.Database, "ClickHouse database")
		fs.StringVar(&cfg.Rules, "rules", cfg.Rules, "tariff directory or file: device_fee tiers shown per period (empty: none)")
		fs.Var(keysFlag{&cfg.Keys}, "keys", "API keys as TENANT=SHA256 (operator keys: *=SHA256), comma-separated; replaces the file's keys")
		fs.IntVar(&cfg.Limit.MaxBuckets, "limits.max-buckets", cfg.Limit.MaxBuckets, "most time buckets per answer")
		fs.IntVar(&cfg.Limit.MaxRangeDays, "limits.max-range-days", cfg.Limit.MaxRangeDays, "longest from..to, days")
		fs.DurationVar(&cfg.Limit.QueryTimeout, "limits.query-timeout", cfg.Limit.QueryTimeout, "ClickHouse max_execution_time per query")
		fs.StringVar(&cfg.Billing.CursorKey, "billing.cursor-key", cfg.Billing.CursorKey, "key signing billing cursors, at least 32 bytes (empty: billing off)")
		fs.DurationVar(&cfg.Billing.Lag, "billing.lag", cfg.Billing.Lag, "billing reads this far behind ClickHouse's clock (longer than any INSERT)")
		fs.StringVar(&cfg.Billing.Notify.URL, "billing.notify.url", cfg.Billing.Notify.URL, "RabbitMQ URL for invoice.finalized events (empty: off)")
	})
	if err != nil {
		return 2
	}
	logger, err := obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "api: "+err.Error())
		return 2
	}
	if len(cfg.Keys) == 0 {
		logger.Warn("no API keys configured: every API request will be refused")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := api.Run(ctx, cfg, logger, nil); err != nil {
		logger.Error("api stopped", "err", err)
		return 1
	}
	return 0
}

// keysFlag parses TENANT=SHA256 pairs; "*" names an operator key.
type keysFlag struct{ p *[]api.KeyConfig }

func (k keysFlag) String() string {
	if k.p == nil {
		return ""
	}
	return fmt.Sprintf("%d keys", len(*k.p))
}

func (k keysFlag) Set(v string) error {
	var out []api.KeyConfig
	var names []string
	if err := (config.StringList{P: &names}).Set(v); err != nil {
		return err
	}
	for i, x := range names {
		t, h, ok := strings.Cut(x, "=")
		if !ok {
			return fmt.Errorf("keys[%d]: want TENANT=SHA256 or *=SHA256", i)
		}
		c := api.KeyConfig{Name: fmt.Sprintf("flag-%d", i), Tenant: t, SHA256: h}
		if t == "*" {
			c.Tenant, c.Operator = "", true
		}
		out = append(out, c)
	}
	*k.p = out
	return nil
}
