package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"fleetmeter/record"
)

// Total is what billing checks against its inputs: rated records and their amount for one
// tenant and currency, each record counted once.
type Total struct {
	Tenant   string
	Currency string
	Records  uint64
	Amount   record.Micros
}

// Totals returns per-tenant, per-currency totals of rated_usage with duplicates collapsed.
func (s *Store) Totals(ctx context.Context, f Filter) ([]Total, error) {
	q, args := TotalsQuery(s.cfg.Database, f)
	rows, err := s.conn.Query(s.readContext(ctx), q, args...)
	if err != nil {
		return nil, fmt.Errorf("totals: %w", err)
	}
	defer rows.Close()
	var out []Total
	for rows.Next() {
		var t Total
		var sum decimal.Decimal
		if err := rows.Scan(&t.Tenant, &t.Currency, &t.Records, &sum); err != nil {
			return nil, fmt.Errorf("totals: %w", err)
		}
		if t.Amount, err = microsOf(sum); err != nil {
			return nil, fmt.Errorf("totals %s: %w", t.Tenant, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("totals: %w", err)
	}
	return out, nil
}

// microsOf converts a six-decimal sum (Decimal(38,6), exact) to Micros, refusing what
// does not fit rather than wrapping.
func microsOf(d decimal.Decimal) (record.Micros, error) {
	m := d.Shift(6)
	if !m.IsInteger() {
		return 0, fmt.Errorf("amount %s has more than six decimals", d)
	}
	bi := m.BigInt()
	if !bi.IsInt64() {
		return 0, fmt.Errorf("amount %s does not fit in int64 micro-units", d)
	}
	return record.Micros(bi.Int64()), nil
}

// Records appends the rated records matching f to into, one per (tenant, record_id),
// ordered by tenant and record_id.
func (s *Store) Records(ctx context.Context, f Filter, into []record.Rated) ([]record.Rated, error) {
	q, args := RecordsQuery(s.cfg.Database, f)
	rows, err := s.conn.Query(s.readContext(ctx), q, args...)
	if err != nil {
		return into, fmt.Errorf("records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := ScanRated(rows)
		if err != nil {
			return into, fmt.Errorf("records: %w", err)
		}
		into = append(into, r)
	}
	if err := rows.Err(); err != nil {
		return into, fmt.Errorf("records: %w", err)
	}
	return into, nil
}

// ScanRated reads the current row, of RecordColumns, into a rated record; the columns
// after them, if any, into extra.
func ScanRated(rows driver.Rows, extra ...any) (record.Rated, error) {
	var r record.Rated
	var startMs, endMs, recvMs, ratedMs uint64
	var lat, lon *float64
	var sst *uint8
	var amount int64
	err := rows.Scan(append([]any{&r.EventID, &r.Tenant, &r.Device, &r.Source,
		&startMs, &endMs, &recvMs,
		&r.BytesUp, &r.BytesDown, &r.DurationMs, &r.Events, &r.RatingGroup,
		&r.PLMN, &r.Cell, &lat, &lon, &r.RAT, &sst, &r.SliceSD,
		&r.RecordID, &r.Charge, &r.Zone, &r.Mobility, &r.Tariff, &r.TariffVersion, &r.Offer,
		&r.ActiveDevices, &r.Currency, &amount, &ratedMs}, extra...)...)
	if err != nil {
		return r, err
	}
	r.StartTime, r.EndTime, r.ReceivedTime, r.RatedTime = int64(startMs), int64(endMs), int64(recvMs), int64(ratedMs)
	if lat != nil && lon != nil {
		r.Lat, r.Lon, r.HasPos = *lat, *lon, true
	}
	if sst != nil {
		r.SliceSST, r.HasSlice = *sst, true
	}
	r.Amount = record.Micros(amount)
	return r, nil
}

// RollupRow is one key of a daily rollup; Device is empty in the per-tenant rollup.
type RollupRow struct {
	Tenant     string
	Day        time.Time
	Zone       string
	Mobility   string
	Device     string
	Charge     string
	Currency   string
	Records    uint64
	BytesUp    uint64
	BytesDown  uint64
	DurationMs uint64
	Events     uint64
	Amount     record.Micros
}

// Rollup reads a daily rollup (analytics figures: redelivered duplicates included).
func (s *Store) Rollup(ctx context.Context, f RollupFilter) ([]RollupRow, error) {
	q, args := RollupQuery(s.cfg.Database, f)
	rows, err := s.conn.Query(s.readContext(ctx), q, args...)
	if err != nil {
		return nil, fmt.Errorf("rollup: %w", err)
	}
	defer rows.Close()
	var out []RollupRow
	for rows.Next() {
		var r RollupRow
		var sum decimal.Decimal
		dest := []any{&r.Tenant, &r.Day, &r.Zone, &r.Mobility}
		if f.ByDevice {
			dest = append(dest, &r.Device)
		}
		dest = append(dest, &r.Charge, &r.Currency, &r.Records, &r.BytesUp, &r.BytesDown, &r.DurationMs, &r.Events, &sum)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("rollup: %w", err)
		}
		if r.Amount, err = microsOf(sum); err != nil {
			return nil, fmt.Errorf("rollup: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rollup: %w", err)
	}
	return out, nil
}

// ActiveDevices returns the distinct devices per tenant among the selected records.
func (s *Store) ActiveDevices(ctx context.Context, f Filter) (map[string]uint64, error) {
	q, args := ActiveDevicesQuery(s.cfg.Database, f)
	rows, err := s.conn.Query(s.readContext(ctx), q, args...)
	if err != nil {
		return nil, fmt.Errorf("active devices: %w", err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var tenant string
		var n uint64
		if err := rows.Scan(&tenant, &n); err != nil {
			return nil, fmt.Errorf("active devices: %w", err)
		}
		out[tenant] = n
	}
	return out, rows.Err()
}
