package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Migrate applies, in order, the migrations not yet recorded in schema_migrations and
// returns the versions it applied. Re-running is harmless: applied versions are skipped,
// and every statement is IF NOT EXISTS, so a migration cut short by a crash (or run by two
// loaders starting at once) completes on the next run; schema_migrations may then hold a
// version twice, which reads ignore.
func (s *Store) Migrate(ctx context.Context) ([]uint32, error) {
	db := s.schema.Database
	for _, st := range s.schema.Bootstrap() {
		if err := s.conn.Exec(ctx, st); err != nil {
			return nil, fmt.Errorf("bootstrap schema: %w", err)
		}
	}

	applied := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT version FROM %s.schema_migrations", db))
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}

	ms, err := s.schema.Migrations()
	if err != nil {
		return nil, err
	}
	var done []uint32
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for i, st := range m.Statements {
			if err := s.conn.Exec(ctx, st); err != nil && !columnExists(st, err) {
				return done, fmt.Errorf("migration %s statement %d: %w", m.Name, i+1, err)
			}
		}
		// Recorded only after every statement succeeded. INSERT SELECT, because an INSERT
		// with VALUES over the native protocol makes 18.16 wait for a data block.
		rec := fmt.Sprintf("INSERT INTO %s.schema_migrations (version, applied) SELECT %d, now()", db, m.Version)
		if err := s.conn.Exec(ctx, rec); err != nil {
			return done, fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}

// columnExists reports an ADD COLUMN that failed because the column is there: a migration
// cut short after this statement is completing on a server without ADD COLUMN IF NOT
// EXISTS (18.16).
func columnExists(stmt string, err error) bool {
	var ex *clickhouse.Exception
	// 18.16 answers 44 (ILLEGAL_COLUMN, "column with this name already exists"); later
	// servers 15 (DUPLICATE_COLUMN).
	return strings.Contains(stmt, " ADD COLUMN ") && errors.As(err, &ex) &&
		(ex.Code == 15 || ex.Code == 44 && strings.Contains(ex.Message, "already exists"))
}
