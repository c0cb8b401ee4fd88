package chstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
	"fleetmeter/rating"
	"fleetmeter/record"
)

// Store satisfies billing.Store over one ClickHouse database whose schema
// clickhouse.Open has migrated.
type Store struct {
	conn  driver.Conn
	db    string
	final bool
}

var _ billing.Store = (*Store)(nil)

// New returns a store over conn (clickhouse.Store.Conn) and database db.
func New(conn driver.Conn, db string) *Store { return &Store{conn: conn, db: db} }

// Final makes the export collapse the copies of a key in rated_seen with FINAL rather
// than GROUP BY (the page's keys in half the time). Only on a single node: on a cluster
// the copies of a key may lie on two shards (the sharding changed between them), and
// FINAL collapses within a shard only.
func (s *Store) Final(on bool) *Store { s.final = on; return s }

// Now is the server's clock: the one rated_seen is stamped with.
func (s *Store) Now(ctx context.Context) (int64, error) {
	var now uint32
	if err := s.conn.QueryRow(ctx, "SELECT toUInt32(now())").Scan(&now); err != nil {
		return 0, fmt.Errorf("billing now: %w", err)
	}
	return int64(now), nil
}

// Export runs ExportKeysQuery, then ExportDataQuery with the page's keys as an external
// table, keeps each key's first rating and returns the records in the keys' order.
func (s *Store) Export(ctx context.Context, req billing.ExportRequest, into []billing.Exported) ([]billing.Exported, int64, error) {
	if req.Limit <= 0 || req.UpTo < req.After.Seen {
		return into, req.UpTo, nil
	}
	// Bound the page: candidates up to the second where the copies stored reach the limit.
	span, err := s.conn.Query(ctx, ExportSpanQuery(s.db, req))
	if err != nil {
		return into, 0, fmt.Errorf("billing export span: %w", err)
	}
	var total uint64
	upTo := req.UpTo
	for span.Next() {
		var sec uint32
		var n uint64
		if err := span.Scan(&sec, &n); err != nil {
			span.Close()
			return into, 0, fmt.Errorf("billing export span: %w", err)
		}
		// Never stop at After.Seen itself: its records may all be behind the cursor
		// already, and the page must move on.
		if total += n; total >= uint64(req.Limit) && int64(sec) > req.After.Seen {
			upTo = int64(sec)
			break
		}
	}
	span.Close()
	if err := span.Err(); err != nil {
		return into, 0, fmt.Errorf("billing export span: %w", err)
	}
	req.UpTo = upTo
	keys, err := s.keyRange(ctx, req)
	if err != nil {
		return into, 0, err
	}
	// From the start with everything in range, every record is a candidate: the page
	// skips the candidate filter (it only narrows the work; e <= upTo decides).
	recs, err := s.export(ctx, req, req.After.Seen == 0 && total < uint64(req.Limit), keys, int(min(total, uint64(req.Limit))), into)
	return recs, upTo, err
}

// keyRange runs ExportBoundsQuery and, when adjustments are in range, FeeBoundsQuery.
func (s *Store) keyRange(ctx context.Context, req billing.ExportRequest) (KeyRange, error) {
	var k KeyRange
	var adjustments uint64
	if err := s.conn.QueryRow(ctx, ExportBoundsQuery(s.db, req)).Scan(&k.Lo, &k.Hi, &adjustments); err != nil {
		return k, fmt.Errorf("billing export bounds: %w", err)
	}
	if adjustments > 0 {
		k.HasFees = true
		if err := s.conn.QueryRow(ctx, FeeBoundsQuery(s.db, req)).Scan(&k.FeeLo, &k.FeeHi); err != nil {
			return k, fmt.Errorf("billing export bounds: %w", err)
		}
	}
	return k, nil
}

// pageIndex finds a page's records by keyHash: by the hash alone, but for the keys that
// share one with another key of the page (kept by their strings in more).
type pageIndex struct {
	byHash map[uint64]int
	more   map[[2]string]int
}

func (x *pageIndex) add(h uint64, p billing.Position, i int) {
	if _, ok := x.byHash[h]; !ok {
		x.byHash[h] = i
		return
	}
	if x.more == nil {
		x.more = map[[2]string]int{}
	}
	x.more[[2]string{p.Tenant, p.RecordID}] = i
}

// find returns the index of the record (tenant, recordID) of hash h, if in the page.
func (x *pageIndex) find(h uint64, page []billing.Exported, tenant, recordID string) (int, bool) {
	if i, ok := x.byHash[h]; ok && page[i].Pos.Tenant == tenant && page[i].Pos.RecordID == recordID {
		return i, true
	}
	i, ok := x.more[[2]string{tenant, recordID}]
	return i, ok
}

func (s *Store) export(ctx context.Context, req billing.ExportRequest, whole bool, keyRange KeyRange, sizeHint int, into []billing.Exported) ([]billing.Exported, error) {
	rows, err := s.conn.Query(ctx, ExportKeysQuery(s.db, req, whole, keyRange, s.final))
	if err != nil {
		return into, fmt.Errorf("billing export keys: %w", err)
	}
	keys, err := ext.NewTable("page_keys", ext.Column("h", "UInt64"))
	if err != nil {
		rows.Close()
		return into, err
	}
	base := len(into)
	into = slices.Grow(into, sizeHint)
	index := pageIndex{byHash: make(map[uint64]int, sizeHint)}
	kc := clickhouse.NewCursor(rows)
	tenant, recordID, seen, hash := kc.Str(0), kc.Str(1), clickhouse.Num[uint32](kc, 2), clickhouse.Num[uint64](kc, 3)
	for kc.Next() {
		var p billing.Position
		var e uint32
		var h uint64
		var err error
		if kc.Fast() {
			p.Tenant, err = tenant.Get()
			if err == nil {
				p.RecordID, err = recordID.Get()
			}
			if err == nil {
				e, _, err = seen.Get()
			}
			if err == nil {
				h, _, err = hash.Get()
			}
		} else {
			err = rows.Scan(&p.Tenant, &p.RecordID, &e, &h)
		}
		if err != nil {
			rows.Close()
			return into[:base], fmt.Errorf("billing export keys: %w", err)
		}
		p.Seen = int64(e)
		index.add(h, p, len(into))
		into = append(into, billing.Exported{Pos: p})
		if err := keys.Append(h); err != nil {
			rows.Close()
			return into[:base], err
		}
	}
	rows.Close()
	if err := kc.Err(); err != nil {
		return into[:base], fmt.Errorf("billing export keys: %w", err)
	}
	if len(into) == base {
		return into, nil
	}
	drows, err := s.conn.Query(ch.Context(ctx, ch.WithExternalTable(keys)), ExportDataQuery(s.db, req.Tenant, keyRange, "page_keys"))
	if err != nil {
		return into[:base], fmt.Errorf("billing export: %w", err)
	}
	defer drows.Close()
	found := 0
	dc := clickhouse.NewRatedCursor(drows)
	dhash := clickhouse.Num[uint64](dc.Cursor, len(clickhouse.RecordColumns))
	var r record.Rated
	var h uint64
	dc.Extra = []any{&h}
	for dc.Next() {
		err := dc.Rated(&r)
		if err == nil && dc.Fast() {
			h, _, err = dhash.Get()
		}
		if err != nil {
			return into[:base], fmt.Errorf("billing export: %w", err)
		}
		i, ok := index.find(h, into, r.Tenant, r.RecordID)
		if !ok {
			continue // another key of a page key's hash
		}
		// The first rating: the least rated_time_ms (copies rated at the same instant come
		// from the same state and are identical).
		if into[i].Rec.RecordID == "" {
			found++
		} else if into[i].Rec.RatedTime <= r.RatedTime {
			continue
		}
		into[i].Rec = r
	}
	if err := dc.Err(); err != nil {
		return into[:base], fmt.Errorf("billing export: %w", err)
	}
	// A key without its record would be a hole in the stream: refuse rather than skip
	// (rated_seen is written after rated_usage in the same INSERT, so only a partition
	// dropped by hand gets here).
	if found != len(into)-base {
		return into[:base], fmt.Errorf("billing export: %d of %d records of the page missing from rated_usage", len(into)-base-found, len(into)-base)
	}
	return into, nil
}

// Lines runs LinesQuery.
func (s *Store) Lines(ctx context.Context, tenant, period string, after, upTo int64) ([]billing.LineSum, error) {
	start, end, err := rating.PeriodBounds(period)
	if err != nil {
		return nil, fmt.Errorf("billing lines: %w", err)
	}
	rows, err := s.conn.Query(ctx, LinesQuery(s.db, tenant, period, start, end, after, upTo))
	if err != nil {
		return nil, fmt.Errorf("billing lines: %w", err)
	}
	defer rows.Close()
	var out []billing.LineSum
	for rows.Next() {
		var l billing.LineSum
		var unitFee, amount int64
		k := &l.Key
		if err := rows.Scan(&k.Charge, &k.Tariff, &k.Zone, &k.Mobility, &k.Offer, &k.Currency, &k.Dimension, &unitFee,
			&l.Records, &l.Bytes, &l.DurationMs, &l.Events, &amount, &l.MinRatio, &l.MaxRatio, &l.Devices); err != nil {
			return nil, fmt.Errorf("billing lines: %w", err)
		}
		if math.IsNaN(l.MinRatio) || math.IsNaN(l.MaxRatio) {
			l.MinRatio, l.MaxRatio = 0, 1
		}
		k.UnitFee, l.Amount = record.Micros(unitFee), record.Micros(amount)
		out = append(out, l)
	}
	return out, rows.Err()
}

// Closed runs ClosedQuery.
func (s *Store) Closed(ctx context.Context, period string, upTo int64) ([]string, error) {
	rows, err := s.conn.Query(ctx, ClosedQuery(s.db, period, upTo))
	if err != nil {
		return nil, fmt.Errorf("billing closed periods: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("billing closed periods: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Documents runs DocumentsQuery.
func (s *Store) Documents(ctx context.Context, tenant, period string) ([]billing.Document, error) {
	rows, err := s.conn.Query(ctx, DocumentsQuery(s.db, tenant, period))
	if err != nil {
		return nil, fmt.Errorf("billing documents: %w", err)
	}
	defer rows.Close()
	var out []billing.Document
	for rows.Next() {
		d := billing.Document{Tenant: tenant, Period: period}
		var wm uint32
		var fin uint64
		var body string
		if err := rows.Scan(&d.Seq, &d.Number, &wm, &fin, &body); err != nil {
			return nil, fmt.Errorf("billing documents: %w", err)
		}
		d.Watermark, d.FinalizedMs, d.Body = int64(wm), int64(fin), []byte(body)
		out = append(out, d)
	}
	return out, rows.Err()
}

// SaveDocument inserts d. The INSERT is acknowledged once stored; a retried one stores a
// copy that reads collapse (DocumentsQuery keeps the first finalized).
func (s *Store) SaveDocument(ctx context.Context, d billing.Document) error {
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".billing_documents (tenant, period, seq, number, watermark, finalized_ms, body)")
	if err != nil {
		return fmt.Errorf("billing save document: %w", err)
	}
	if err := batch.Append(d.Tenant, d.Period, d.Seq, d.Number, time.Unix(d.Watermark, 0), uint64(d.FinalizedMs), string(d.Body)); err != nil {
		_ = batch.Abort()
		return fmt.Errorf("billing save document: %w", err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("billing save document: %w", err)
	}
	return nil
}
