package chstore

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
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
	align int // the least limit of a page ended at a second's end; 0: DefaultAlignMin
	secs  *secondCache
}

// DefaultAlignMin is the least limit of a page that plan ends at a second's end rather
// than inside it: a bulk pull, where reading a second's rows again costs; a small page
// fills up to its limit.
const DefaultAlignMin = 10_000

func (s *Store) alignMin() int {
	if s.align > 0 {
		return s.align
	}
	return DefaultAlignMin
}

var _ billing.Store = (*Store)(nil)

// New returns a store over conn (clickhouse.Store.Conn) and database db.
func New(conn driver.Conn, db string) *Store {
	return &Store{conn: conn, db: db, secs: &secondCache{}}
}

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
	p, err := s.plan(ctx, req)
	if err != nil || p.empty {
		return into, p.req.UpTo, err
	}
	recs, err := s.export(ctx, p.req, p.whole, p.keys, p.sizeHint, into)
	return recs, p.req.UpTo, err
}

// pagePlan is what a page reads: the request with its upTo bounded, whether every record
// is a candidate (whole), the range of its record_ids and whether it holds few other rows
// (dense), the record_id from which about half its copies lie (split; "" when none), and
// about how many records it has.
type pagePlan struct {
	req      billing.ExportRequest
	whole    bool
	dense    bool
	keys     KeyRange
	split    string
	sizeHint int
	empty    bool
}

// plan finds the page's seconds (Store.seconds) and its key range (keyRange).
func (s *Store) plan(ctx context.Context, req billing.ExportRequest) (pagePlan, error) {
	if req.Limit <= 0 || req.UpTo < req.After.Seen {
		return pagePlan{req: req, empty: true}, nil
	}
	// Bound the page: candidates up to the second where the copies stored reach the limit.
	seconds, err := s.seconds(ctx, req)
	if err != nil {
		return pagePlan{}, err
	}
	var total uint64
	upTo := req.UpTo
	for _, sc := range seconds {
		total += sc.n
	}
	cut := false // the limit is reached inside the span
	if k := len(seconds) - 1; k >= 0 && total >= uint64(req.Limit) && seconds[k].sec > req.After.Seen {
		upTo, cut = seconds[k].sec, true
	}
	// A page that the limit would cut inside a second ends at the second before when that
	// still gives at least half the limit: it is then not full, so the next cursor is the
	// start of the next second (Exporter.Page), and the next page does not read again the
	// rows of a second this page has partly given (a fifth of the data read of ten million
	// rows in pages of a million). Only for pages of at least alignMin records.
	if k := len(seconds) - 1; cut && k > 0 && req.Limit >= s.alignMin() {
		prev := seconds[k-1]
		atStart := req.After.Tenant == "" && req.After.RecordID == "" // nothing of After.Seen given yet
		if total-seconds[k].n >= uint64(req.Limit)/2 && (prev.sec > req.After.Seen || atStart && prev.sec == req.After.Seen) {
			upTo, total = prev.sec, total-seconds[k].n
		}
	}
	req.UpTo = upTo
	// mid: the second from which about half the page's copies were stored.
	mid := req.UpTo + 1
	var upToSec uint64
	for _, sc := range seconds {
		if upToSec += sc.n; upToSec > total/2 {
			mid = sc.sec
			break
		}
	}
	keys, inRange, split, err := s.keyRange(ctx, req, seconds, mid)
	if err != nil {
		return pagePlan{}, err
	}
	// Dense: the range holds few rows besides the copies stored in the span (record_ids
	// growing with time), so sets of keys would leave little out. The candidate filter
	// only narrows the work (e <= upTo decides): skip it there, and from the start with
	// everything in range, where every record is a candidate.
	dense := inRange <= total+total/2
	whole := req.After.Seen == 0 && total < uint64(req.Limit) || dense
	return pagePlan{req: req, whole: whole, dense: dense, keys: keys, split: split, sizeHint: int(min(total, uint64(req.Limit)))}, nil
}

// keyRange takes the page's record_id range from its seconds and, when adjustments are in
// range, runs FeeBoundsQuery, then RangeCountQuery over rated_usage: how many copies the
// range holds. split is the least record_id of the copies stored from second mid on.
func (s *Store) keyRange(ctx context.Context, req billing.ExportRequest, seconds []second, mid int64) (k KeyRange, n uint64, split string, err error) {
	var adjustments uint64
	k.Lo, k.Hi, adjustments, split = rangeOf(seconds, req.UpTo, mid)
	if adjustments > 0 {
		k.HasFees = true
		if err := s.conn.QueryRow(ctx, FeeBoundsQuery(s.db, req)).Scan(&k.FeeLo, &k.FeeHi); err != nil {
			return k, 0, "", fmt.Errorf("billing export bounds: %w", err)
		}
	}
	if err := s.conn.QueryRow(ctx, RangeCountQuery(s.db, "rated_usage", req.Tenant, k)).Scan(&n); err != nil {
		return k, 0, "", fmt.Errorf("billing export bounds: %w", err)
	}
	return k, n, split, nil
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
func (x *pageIndex) find(h uint64, page []keyRow, tenant, recordID string) (int, bool) {
	if i, ok := x.byHash[h]; ok && page[i].pos.Tenant == tenant && page[i].pos.RecordID == recordID {
		return i, true
	}
	i, ok := x.more[[2]string{tenant, recordID}]
	return i, ok
}

func (s *Store) export(ctx context.Context, req billing.ExportRequest, whole bool, keyRange KeyRange, sizeHint int, into []billing.Exported) ([]billing.Exported, error) {
	pk, err := s.pageKeys(ctx, req, whole, keyRange, sizeHint, true)
	if err != nil || len(pk.page) == 0 {
		return into, err
	}
	keys, err := ext.NewTable("page_keys", ext.Column("h", "UInt64"))
	if err != nil {
		return into, err
	}
	base := len(into)
	into = slices.Grow(into, len(pk.page))
	// Rows are matched to their keys by walking the keys in (tenant, record_id) order
	// when pageKeys has them so (the rows come so too, block by block), else by hash.
	var walk *keyWalker
	var index pageIndex
	if pk.byKey != nil {
		walk = &keyWalker{keys: pk.byKey, slot: pk.slot}
	} else {
		index.byHash = make(map[uint64]int, len(pk.page))
	}
	for j, k := range pk.page {
		if walk == nil {
			index.add(k.h, k.pos, j)
		}
		into = append(into, billing.Exported{Pos: k.pos})
		if err := keys.Append(k.h); err != nil {
			return into[:base], err
		}
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
		var i int
		var ok bool
		if walk != nil {
			i, ok = walk.find(r.Tenant, r.RecordID)
		} else {
			i, ok = index.find(h, pk.page, r.Tenant, r.RecordID)
		}
		if !ok {
			continue // another key of a page key's hash
		}
		i += base
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

// keyRow is a page key as ExportKeysQuery returns it.
type keyRow struct {
	pos billing.Position
	h   uint64
}

// pageKeys returns the page's keys in position order. On a single node (final) it asks
// for the keys unordered, up to twice the limit, and orders them here: the FINAL read
// returns them by (tenant, record_id), so a stable bucketing by e is the whole sort (a
// sort of a million rows by e, tenant, record_id was a third of the keys query on the
// server). Past twice the limit (a second holding many records: fees of a close, a
// back-fill at Seen 0) the server sorts and cuts, as on a cluster.
//
// With !hash the keys may come without their hashes (h 0) where they are in (tenant,
// record_id) order (byKey): for a caller that then walks them and needs no hash.
func (s *Store) pageKeys(ctx context.Context, req billing.ExportRequest, whole bool, keyRange KeyRange, sizeHint int, hash bool) (pageKeys, error) {
	if s.final {
		bound := 2 * req.Limit
		q := req
		q.Limit = bound + 1
		keys, err := s.readKeys(ctx, ExportKeysQuery(s.db, q, whole, keyRange, true, false, hash), sizeHint)
		if err != nil {
			return pageKeys{}, err
		}
		if len(keys) <= bound {
			if pk := orderKeys(keys, req.Limit); hash || pk.byKey != nil {
				return pk, nil
			}
		}
	}
	page, err := s.readKeys(ctx, ExportKeysQuery(s.db, req, whole, keyRange, s.final, true, true), sizeHint)
	return pageKeys{page: page}, err
}

// pageKeys are a page's keys in position order (page) and, when known, in (tenant,
// record_id) order (byKey) with each one's index in page (slot; -1: not in the page).
type pageKeys struct {
	page, byKey []keyRow
	slot        []int32
}

func (s *Store) readKeys(ctx context.Context, query string, sizeHint int) ([]keyRow, error) {
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("billing export keys: %w", err)
	}
	defer rows.Close()
	page := make([]keyRow, 0, sizeHint)
	kc := clickhouse.NewCursor(rows)
	key, tenantLen, seen, hash := kc.Str(0), clickhouse.Num[uint32](kc, 1), clickhouse.Num[uint32](kc, 2), clickhouse.Num[uint64](kc, 3)
	for kc.Next() {
		var k keyRow
		var str string
		var tl, e uint32
		var err error
		if kc.Fast() {
			str, err = key.Get()
			if err == nil {
				tl, _, err = tenantLen.Get()
			}
			if err == nil {
				e, _, err = seen.Get()
			}
			if err == nil {
				k.h, _, err = hash.Get()
			}
		} else {
			str, tl, e, k.h, err = scanKey(rows)
		}
		if err == nil && int(tl) > len(str) {
			err = fmt.Errorf("key %q: tenant of %d bytes", str, tl)
		}
		if err != nil {
			return nil, fmt.Errorf("billing export keys: %w", err)
		}
		k.pos.Tenant, k.pos.RecordID, k.pos.Seen = str[:tl], str[tl:], int64(e)
		page = append(page, k)
	}
	if err := kc.Err(); err != nil {
		return nil, fmt.Errorf("billing export keys: %w", err)
	}
	return page, nil
}

// scanKey reads a key row through Scan. Apart from readKeys' loop, so that the loop's
// variables do not escape to the heap (three allocations a key).
func scanKey(rows driver.Rows) (str string, tl, e uint32, h uint64, err error) {
	err = rows.Scan(&str, &tl, &e, &h)
	return str, tl, e, h, err
}

// orderKeys sorts keys by position and keeps the first limit. Keys in (tenant, record_id)
// order are bucketed by Seen, keeping that order within a second (and are kept as byKey);
// any other order is sorted whole.
func orderKeys(keys []keyRow, limit int) pageKeys {
	byKey := true
	// The seconds, each with its keys' count: neighbours in key order mostly share one
	// (a batch's records were stored together), so a key looks up its second only when
	// it differs from the previous key's.
	var secs secondIndex
	for i := range keys {
		secs.of(keys[i].pos.Seen).n++
		if i > 0 && byKey {
			byKey = keyLess(&keys[i-1].pos, keys[i].pos.Tenant, keys[i].pos.RecordID)
		}
	}
	if !byKey {
		slices.SortFunc(keys, func(a, b keyRow) int {
			if a.pos.Less(b.pos) {
				return -1
			}
			if b.pos.Less(a.pos) {
				return 1
			}
			return 0
		})
		return pageKeys{page: keys[:min(len(keys), limit)]}
	}
	slot := make([]int32, len(keys))
	page := keys
	if len(secs.list) > 1 {
		// Each second's keys go after those of the seconds before it, in key order.
		order := make([]*secondCount, len(secs.list))
		for i := range secs.list {
			order[i] = &secs.list[i]
		}
		slices.SortFunc(order, func(a, b *secondCount) int { return cmp.Compare(a.sec, b.sec) })
		n := 0
		for _, sc := range order {
			sc.at, n = n, n+sc.n
		}
		page = make([]keyRow, len(keys))
		for j, k := range keys {
			sc := secs.of(k.pos.Seen)
			page[sc.at], slot[j] = k, int32(sc.at)
			sc.at++
		}
	} else {
		for j := range slot {
			slot[j] = int32(j)
		}
	}
	for j, p := range slot {
		if int(p) >= limit {
			slot[j] = -1
		}
	}
	return pageKeys{page: page[:min(len(page), limit)], byKey: keys, slot: slot}
}

// secondCount is a second of a page's keys: how many, and where the next of them goes.
type secondCount struct {
	sec   int64
	n, at int
}

// secondIndex finds a second's count, remembering the last one asked for.
type secondIndex struct {
	list []secondCount
	at   map[int64]int
	last int // index in list of the last second asked for; valid when list is not empty
}

func (x *secondIndex) of(sec int64) *secondCount {
	if len(x.list) > 0 && x.list[x.last].sec == sec {
		return &x.list[x.last]
	}
	i, ok := x.at[sec]
	if !ok {
		if x.at == nil {
			x.at = map[int64]int{}
		}
		i = len(x.list)
		x.at[sec] = i
		x.list = append(x.list, secondCount{sec: sec})
	}
	x.last = i
	return &x.list[i]
}

// keyLess says whether p's key sorts before (tenant, recordID).
func keyLess(p *billing.Position, tenant, recordID string) bool {
	return p.Tenant < tenant || p.Tenant == tenant && p.RecordID < recordID
}

// keyWalker finds rows among keys in (tenant, record_id) order. Rows mostly come in that
// order too (a block is a run of one part), so each search gallops on from the last
// match: the keys are read in sequence, not probed at random as a hash table is.
type keyWalker struct {
	keys []keyRow
	slot []int32
	j    int // the last search's answer
}

// find returns the page slot of the key (tenant, recordID), if it is one of the page's.
func (w *keyWalker) find(tenant, recordID string) (int, bool) {
	n := len(w.keys)
	// Most rows are the previous row's key (another copy) or the next key: an equality
	// settles those without the ordered comparisons of the search. Keys are unique, so
	// an equal key is the answer wherever it lies.
	for i := w.j; i < min(w.j+2, n); i++ {
		if k := &w.keys[i].pos; k.RecordID == recordID && k.Tenant == tenant {
			w.j = i
			if w.slot[i] >= 0 {
				return int(w.slot[i]), true
			}
			return 0, false
		}
	}
	less := func(i int) bool { return keyLess(&w.keys[i].pos, tenant, recordID) }
	// The answer is the first key not less than the row, in [lo, hi].
	lo, hi := 0, n
	if w.j > 0 && !less(w.j-1) {
		hi = w.j - 1 // the row is at or before the previous key: search before it
	} else {
		lo, hi = w.j, w.j
		for step := 1; hi < n && less(hi); step *= 2 {
			lo, hi = hi+1, hi+step
		}
		hi = min(hi, n)
	}
	i := lo + sort.Search(hi-lo, func(k int) bool { return !less(lo + k) })
	w.j = i
	if i < n && w.keys[i].pos.Tenant == tenant && w.keys[i].pos.RecordID == recordID && w.slot[i] >= 0 {
		return int(w.slot[i]), true
	}
	return 0, false
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
