package api

import (
	"errors"
	"fmt"
	"time"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
)

// Config is cmd/api's configuration (YAML, strict; FLEETMETER_* and flags override).
type Config struct {
	Listen     string            `yaml:"listen"` // API, web page, /metrics, /healthz, /readyz
	LogLevel   string            `yaml:"log_level"`
	ClickHouse clickhouse.Config `yaml:"clickhouse"`
	// Rules, when set, names the tariffs whose device_fee tiers the page shows.
	Rules string      `yaml:"rules"`
	Keys  []KeyConfig `yaml:"keys"`
	Limit Limits      `yaml:"limits"`
	// Billing serves /v1/billing/records and /v1/invoices once billing.cursor_key is set
	// (docs/billing.md).
	Billing billing.Config `yaml:"billing"`
}

// Limits bound what one request may ask of ClickHouse.
type Limits struct {
	MaxRangeDays int           `yaml:"max_range_days"` // from..to at most this long
	MaxBuckets   int           `yaml:"max_buckets"`    // time buckets per answer
	MaxRows      int           `yaml:"max_rows"`       // rows per usage answer
	MaxPage      int           `yaml:"max_page"`       // rows per page (devices, timeline)
	QueryTimeout time.Duration `yaml:"query_timeout"`  // ClickHouse max_execution_time
	QueryMemory  int64         `yaml:"query_memory"`   // ClickHouse max_memory_usage, bytes
	QueryThreads int           `yaml:"query_threads"`  // ClickHouse max_threads
}

// DefaultConfig is a local API over a local ClickHouse, without keys.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:8480", LogLevel: "info", ClickHouse: clickhouse.DefaultConfig(),
		Limit: Limits{MaxRangeDays: 400, MaxBuckets: 2000, MaxRows: 100_000, MaxPage: 1000,
			QueryTimeout: 10 * time.Second, QueryMemory: 2 << 30, QueryThreads: 2},
		Billing: billing.DefaultConfig()}
}

// Validate reports every bad key at once.
func (c Config) Validate() error {
	var errs []error
	if err := c.ClickHouse.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := NewKeys(c.Keys); err != nil {
		errs = append(errs, err)
	}
	l := c.Limit
	pos := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("limits.%s: must be positive, got %d", name, v))
		}
	}
	pos("max_range_days", int64(l.MaxRangeDays))
	pos("max_buckets", int64(l.MaxBuckets))
	pos("max_rows", int64(l.MaxRows))
	pos("max_page", int64(l.MaxPage))
	pos("query_memory", l.QueryMemory)
	pos("query_threads", int64(l.QueryThreads))
	if l.QueryTimeout < time.Second {
		errs = append(errs, fmt.Errorf("limits.query_timeout: at least 1s, got %s", l.QueryTimeout))
	}
	return errors.Join(errs...)
}
