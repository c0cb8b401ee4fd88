// Command api serves tenants' usage analytics over HTTP: REST JSON/CSV, the OpenAPI file
// and the tenant web page, reading ClickHouse rated_usage with duplicates collapsed.
//
//	api [--config FILE] [--listen ADDR] [--clickhouse.addr A] [--rules DIR] [--keys T=SHA256,...]
//	api hash-key KEY      print the sha256 a keys entry stores for KEY
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"fleetmeter/api"
	"fleetmeter/internal/config"
	"fleetmeter/internal/lifecycle"
	"fleetmeter/internal/obs"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// apiSpec is api's command line: every key of api.Config is a flag and a FLEETMETER_*
// variable, but keys, whose flag takes the shorter TENANT=SHA256 list.
func apiSpec(cfg *api.Config) config.Spec {
	return config.Spec{
		Name:    "api",
		Summary: "Serve tenants' usage (REST JSON/CSV, the OpenAPI file, the web page) and, with billing.cursor_key, the billing export and invoices, until SIGTERM.",
		Skip:    []string{"keys"},
		Secrets: []string{"clickhouse.password", "billing.cursor_key", "billing.notify.url"},
		Help:    apiHelp,
		Extra: func(fs *flag.FlagSet) {
			fs.Var(keysFlag{&cfg.Keys}, "keys", "API keys as TENANT=SHA256 (operator keys: *=SHA256), comma-separated; replaces the file's keys")
		},
		Validate: func() error {
			var errs []error
			if _, err := obs.ParseLogger(cfg.LogLevel); err != nil {
				errs = append(errs, fmt.Errorf("log_level: must be debug, info, warn or error, got %q", cfg.LogLevel))
			}
			return errors.Join(append(errs, cfg.Validate())...)
		},
	}
}

var apiHelp = map[string]string{
	"listen":                     "address of the API, the web page, /metrics, /healthz and /readyz",
	"clickhouse.addr":            "ClickHouse native addresses (host:9000), comma-separated",
	"rules":                      "tariff directory or file: device_fee tiers shown per period (empty: none)",
	"limits.max_range_days":      "longest from..to, days",
	"limits.max_buckets":         "most time buckets per answer",
	"limits.max_rows":            "most rows per usage answer",
	"limits.max_page":            "most rows per page (devices, timeline)",
	"limits.query_timeout":       "ClickHouse max_execution_time per query",
	"limits.query_memory":        "ClickHouse max_memory_usage per query, bytes",
	"limits.query_threads":       "ClickHouse max_threads per query",
	"billing.cursor_key":         "key signing billing cursors, at least 32 bytes (empty: billing off; prefer billing.cursor_key_file)",
	"billing.lag":                "billing reads this far behind ClickHouse's clock (longer than any INSERT)",
	"billing.max_limit":          "most records per billing export page",
	"billing.notify.url":         "AMQP URL to publish invoice.finalized to (empty: off)",
	"billing.notify.exchange":    "AMQP exchange of invoice.finalized (declared durable, type topic)",
	"billing.notify.routing_key": "routing key of invoice.finalized",
	"billing.notify.timeout":     "bound of each connect, publish and confirm attempt",
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 2 && args[0] == "hash-key" {
		fmt.Fprintln(stdout, api.HashKey(args[1]))
		return 0
	}
	if len(args) > 0 && config.IsVersion(args[0]) {
		fmt.Fprint(stdout, config.Version("api"))
		return 0
	}
	cfg := api.DefaultConfig()
	spec := apiSpec(&cfg)
	if _, err := config.Parse(spec, &cfg, args); err != nil {
		return config.Exit(spec.Name, err, stdout, stderr)
	}
	logger, err := obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		return config.Exit(spec.Name, err, stdout, stderr)
	}
	if len(cfg.Keys) == 0 {
		logger.Warn("no API keys configured: every API request will be refused")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// One stage: the server answers the requests in hand, then its ClickHouse
	// connection closes (api.Run does both).
	err = lifecycle.Run(ctx, logger, lifecycle.Stage{Name: "api", Drain: 30 * time.Second, Components: []lifecycle.Component{
		{Name: "api", Run: func(ctx context.Context) error { return api.Run(ctx, cfg, logger, nil) }}}})
	if err != nil {
		logger.Error("api stopped", "err", err)
		return 1
	}
	return 0
}

// keysFlag parses TENANT=SHA256 pairs; "*" names an operator key.
type keysFlag struct{ p *[]api.KeyConfig }

func (k keysFlag) String() string {
	if k.p == nil || len(*k.p) == 0 {
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
