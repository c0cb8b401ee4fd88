// Package clickhouse is the ClickHouse adapter: it keeps the schema (versioned migrations
// rendered for the server it finds), loads rated records and rejections, and answers the
// reads billing relies on with duplicates collapsed.
package clickhouse

import (
	"context"
	"fmt"
	"sync"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Store is a connection pool to one ClickHouse database (or cluster) with the schema in
// place. It is safe for concurrent use.
type Store struct {
	cfg     Config
	conn    driver.Conn
	version Version
	schema  Schema

	ratedBufs sync.Pool // *ratedColumns, reused across InsertRated calls
}

// Open connects, detects the server version, creates the database and applies pending
// migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	// No default database: every statement names its database, and it may not exist yet.
	conn, err := ch.Open(&ch.Options{
		Addr:        cfg.Addr,
		Auth:        ch.Auth{Username: cfg.Username, Password: cfg.Password},
		DialTimeout: cfg.DialTimeout,
		Compression: &ch.Compression{Method: compressions[cfg.Compression]},
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	s := &Store{cfg: cfg, conn: conn}
	if err := s.init(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("open clickhouse %v: %w", cfg.Addr, err)
	}
	return s, nil
}

// compressions maps clickhouse.compression to the driver's method.
var compressions = map[string]ch.CompressionMethod{"lz4": ch.CompressionLZ4, "none": ch.CompressionNone}

func (s *Store) init(ctx context.Context) error {
	var raw string
	if err := s.conn.QueryRow(ctx, "SELECT version()").Scan(&raw); err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	v, err := ParseVersion(raw)
	if err != nil {
		return err
	}
	s.version = v
	s.schema = Schema{Database: s.cfg.Database, Cluster: s.cfg.Cluster, Features: FeaturesFor(v)}
	_, err = s.Migrate(ctx)
	return err
}

// Version is the server version found at Open.
func (s *Store) Version() Version { return s.version }

// Schema is what the store rendered its migrations for.
func (s *Store) Schema() Schema { return s.schema }

// Conn exposes the driver connection for ad-hoc queries (tests, tools).
func (s *Store) Conn() driver.Conn { return s.conn }

// Ping checks the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping clickhouse: %w", err)
	}
	return nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.conn.Close() }

func (s *Store) readContext(ctx context.Context) context.Context {
	if s.cfg.QueryThreads == 0 {
		return ctx
	}
	return ch.Context(ctx, ch.WithSettings(ch.Settings{"max_threads": s.cfg.QueryThreads}))
}
