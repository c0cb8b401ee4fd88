package clickhouse

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config says where the store lives and how it writes.
type Config struct {
	// Addr lists native-protocol endpoints (host:port); the driver fails over between them.
	Addr     []string `yaml:"addr"`
	Database string   `yaml:"database"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	// DialTimeout bounds each connection attempt.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// MaxBatch is the most rows one INSERT carries; InsertRated splits larger calls.
	MaxBatch int `yaml:"max_batch"`
	// Cluster names the cluster (remote_servers) for the clustered schema: tables are
	// created ON CLUSTER as Replicated*MergeTree behind Distributed tables. Empty means a
	// single node.
	Cluster string `yaml:"cluster"`
	// QueryThreads sets max_threads for read queries (Totals, Records, rollups); 0 leaves
	// the server default, which is a single thread on small boxes.
	QueryThreads int `yaml:"query_threads"`
	// Compression is the native protocol's block compression both ways: "lz4" or "none".
	// On one host (loopback) none spares the server's compression and the client's
	// decompression of every block read (a large export's); across a network lz4 sends
	// about a third of the bytes.
	Compression string `yaml:"compression"`
}

// DefaultConfig is a single local node.
func DefaultConfig() Config {
	return Config{
		Addr:        []string{"127.0.0.1:9000"},
		Database:    "default", // where clients look first: `SELECT ... FROM rated_usage` just works
		Username:    "default",
		DialTimeout: 5 * time.Second,
		MaxBatch:    100_000,
		Compression: "lz4",
	}
}

// Names are spliced into DDL unquoted, so they are held to plain identifiers.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every bad key at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, errors.New("clickhouse.addr: at least one host:port is required"))
	}
	for _, a := range c.Addr {
		if a == "" {
			errs = append(errs, errors.New("clickhouse.addr: empty address"))
		}
	}
	if !identRE.MatchString(c.Database) {
		errs = append(errs, fmt.Errorf("clickhouse.database: %q must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", c.Database))
	}
	if c.Cluster != "" && !identRE.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("clickhouse.cluster: %q must be a plain identifier or empty", c.Cluster))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("clickhouse.dial_timeout: must be positive, got %s", c.DialTimeout))
	}
	if c.MaxBatch <= 0 {
		errs = append(errs, fmt.Errorf("clickhouse.max_batch: must be positive, got %d", c.MaxBatch))
	}
	if c.QueryThreads < 0 {
		errs = append(errs, fmt.Errorf("clickhouse.query_threads: must be 0 (server default) or positive, got %d", c.QueryThreads))
	}
	if _, ok := compressions[c.Compression]; !ok {
		errs = append(errs, fmt.Errorf("clickhouse.compression: must be lz4 or none, got %q", c.Compression))
	}
	return errors.Join(errs...)
}
