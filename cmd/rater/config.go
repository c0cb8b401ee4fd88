package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
	"fleetmeter/internal/config"
	"fleetmeter/kafka"
	"fleetmeter/loader"
)

// streamConfig is the one file rater run, load and close share; each takes the flags
// and variables of the keys it uses (streamSpec).
type streamConfig struct {
	Kafka      kafka.Config      `yaml:"kafka"`
	ClickHouse clickhouse.Config `yaml:"clickhouse"`
	Group      string            `yaml:"group"`
	LoadGroup  string            `yaml:"load_group"`
	Instance   string            `yaml:"instance"`
	Rules      string            `yaml:"rules"`
	Reload     time.Duration     `yaml:"reload"`
	CloseAfter time.Duration     `yaml:"close_after"`
	// LoadBatchRows and LoadBatchWait bound one insert of rater load.
	LoadBatchRows int           `yaml:"load_batch_rows"`
	LoadBatchWait time.Duration `yaml:"load_batch_wait"`
	// InvoiceNotify publishes invoice.finalized when closing a period finalizes invoices.
	InvoiceNotify billing.NotifyConfig `yaml:"invoice_notify"`
	Listen        string               `yaml:"listen"`
	LogLevel      string               `yaml:"log_level"`
	Pprof         bool                 `yaml:"pprof"` // /debug/pprof/ on listen
}

func defaultStream() streamConfig {
	host, _ := os.Hostname()
	return streamConfig{Kafka: kafka.DefaultConfig(), ClickHouse: clickhouse.DefaultConfig(), Group: "fleetmeter-rater",
		LoadGroup: "fleetmeter-loader", LoadBatchRows: loader.DefaultBatchRows, LoadBatchWait: loader.DefaultBatchWait, Instance: host, Rules: "/etc/fleetmeter/tariffs", Reload: 5 * time.Second,
		InvoiceNotify: billing.DefaultNotifyConfig(), Listen: "127.0.0.1:9465", LogLevel: "info"}
}

// streamHelp is what the rater's own keys do; the shared sections' text is config.SharedHelp.
var streamHelp = map[string]string{
	"group":                      "consumer group shared by all rater instances",
	"load_group":                 "consumer group shared by all loader instances",
	"instance":                   "this instance's id: stable across restarts, unique per group (static membership, transactional id); default the host name",
	"rules":                      "tariff directory or file (reloaded on change)",
	"close_after":                "rater load: close each period this long after it ends (0: only by rater close; needs rules)",
	"load_batch_rows":            "rater load: insert into ClickHouse once a batch holds this many rows (rated and rejected)",
	"load_batch_wait":            "rater load: ... or once this long has passed since the batch's first record (0: an insert per poll); the most a record waits for others",
	"invoice_notify.url":         "AMQP URL to publish invoice.finalized to when a close finalizes invoices (empty: off)",
	"invoice_notify.exchange":    "AMQP exchange of invoice.finalized (declared durable, type topic)",
	"invoice_notify.routing_key": "routing key of invoice.finalized",
	"invoice_notify.timeout":     "bound of each connect, publish and confirm attempt",
}

// streamSpec is the command line of rater run, load or close over cfg; period receives
// rater close's --period.
func streamSpec(name string, cfg *streamConfig, period *string) config.Spec {
	spec := config.Spec{Name: name, Help: streamHelp, Secrets: []string{"clickhouse.password", "invoice_notify.url"},
		// The top-level instance sets kafka.instance; the rest is the mediator's batching.
		Skip: []string{"kafka.instance", "kafka.linger", "kafka.batch_records", "kafka.batch_bytes"}}
	switch name {
	case "rater run":
		spec.Summary = "Consume topic usage, rate it with the tariffs, produce topic rated (one Kafka transaction per batch) until SIGTERM."
		spec.Keys = []string{"kafka", "group", "instance", "rules", "reload", "listen", "log_level", "pprof"}
	case "rater load":
		spec.Summary = "Load topics rated and rejected into ClickHouse until SIGTERM; with close_after, also close periods."
		spec.Keys = []string{"kafka", "clickhouse", "load_group", "load_batch_rows", "load_batch_wait", "instance", "rules", "reload",
			"close_after", "invoice_notify", "listen", "log_level", "pprof"}
	case "rater close":
		spec.Summary = "Write each tenant's device-fee adjustment of a period into ClickHouse (idempotent)."
		spec.Keys = []string{"clickhouse", "rules", "invoice_notify", "log_level"}
		spec.Extra = func(fs *flag.FlagSet) { fs.StringVar(period, "period", "", "the period to close, YYYY-MM (required)") }
	}
	spec.Validate = func() error { return cfg.validate(name, *period) }
	return spec
}

// validate checks what command name uses, naming the keys.
func (c *streamConfig) validate(name, period string) error {
	var errs []error
	if name != "rater close" {
		errs = append(errs, c.Kafka.Validate())
		if c.Instance == "" {
			errs = append(errs, errors.New("instance: required (stable per instance, unique per group)"))
		}
	}
	if name != "rater run" {
		errs = append(errs, c.ClickHouse.Validate())
	}
	switch name {
	case "rater run":
		if c.Group == "" {
			errs = append(errs, errors.New("group: required"))
		}
	case "rater load":
		if c.LoadGroup == "" {
			errs = append(errs, errors.New("load_group: required"))
		}
		if c.LoadBatchRows < 1 {
			errs = append(errs, fmt.Errorf("load_batch_rows: must be >= 1, got %d", c.LoadBatchRows))
		}
		if c.LoadBatchWait < 0 || c.LoadBatchWait > time.Minute {
			errs = append(errs, fmt.Errorf("load_batch_wait: must be within [0, 1m], got %s", c.LoadBatchWait))
		}
		if c.CloseAfter < 0 {
			errs = append(errs, fmt.Errorf("close_after: must be >= 0 (0: off), got %s", c.CloseAfter))
		}
	case "rater close":
		if _, err := time.Parse("2006-01", period); err != nil {
			errs = append(errs, fmt.Errorf("--period: want YYYY-MM, got %q", period))
		}
	}
	needRules := name != "rater load" || c.CloseAfter > 0
	if needRules && c.Rules == "" {
		errs = append(errs, errors.New("rules: required (a tariff directory or file)"))
	}
	// rules.Watch polls on a ticker, which cannot tick every 0s.
	if needRules && name != "rater close" && c.Reload <= 0 {
		errs = append(errs, fmt.Errorf("reload: must be positive (how often the tariffs are polled), got %s", c.Reload))
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log_level: must be debug, info, warn or error, got %q", c.LogLevel))
	}
	return errors.Join(errs...)
}
