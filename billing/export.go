package billing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Exporter serves cursor pages.
//
// The guarantee, step by step. Every stored copy of a rated record leaves a rated_seen
// row stamped by the server's clock at insert (seen). A record's Seen e is the minimum
// seen of its copies (for a device fee, also of its period's adjustment): rows are only
// ever added, so e is fixed by its first copy. A page is read at watermark
// W = now - Lag: the Lag is chosen so every INSERT stamped at or before W is visible by
// now, hence every record with e <= W is visible with its final e. The page holds the
// records after the cursor's position P with e <= W, in (e, tenant, record_id) order, and
// the next cursor is the last position returned (or, when the page is not full, at least
// (W, "", "")). So:
//   - no gap: a record not yet visible has e > W >= every position handed out, so it sorts
//     after the cursor whenever it appears; a visible one with e <= W is in this page or,
//     the page being full, after its last position;
//   - no duplicate: positions only grow and a record's position never changes, so a
//     redelivered copy (a later seen, same record_id) does not move it behind a cursor;
//   - first rating: each record is read as its earliest rated copy (argMin over
//     rated_time_ms), which is stored no later than any other rating of it (ratings of a
//     record_id travel in one Kafka partition, in order, and the loader inserts a
//     partition in order), so it is visible when e is;
//   - nothing provisional: a device_fee has e = never until its period's adjustment is
//     stored, so it is exported only with the adjustment that makes the period exact.
//
// The cursor carries P only, signed: a restart of the API, or another instance with the
// same key, continues it.
type Exporter struct {
	store    Store
	signer   *Signer
	lag      int64 // seconds
	maxLimit int
	pages    sync.Pool // *[]Exported given back by Page.Release
}

// NewExporter returns an exporter over store.
func NewExporter(store Store, signer *Signer, lag time.Duration, maxLimit int) *Exporter {
	return &Exporter{store: store, signer: signer, lag: int64((lag + time.Second - 1) / time.Second), maxLimit: maxLimit}
}

// Page is one export page.
type Page struct {
	Records  []Exported
	Next     string // the cursor to ask with next
	UpTo     int64  // the watermark it was read at (Unix seconds)
	CaughtUp bool   // fewer than the limit: nothing more up to the watermark
	x        *Exporter
}

// Release gives the page's memory back for the next page (a page of a million records
// is about half a gigabyte to allocate and clear); Records must not be used after.
func (p *Page) Release() {
	if p.x != nil && cap(p.Records) > 0 {
		recs := p.Records[:0]
		p.x.pages.Put(&recs)
	}
	p.Records, p.x = nil, nil
}

// ErrLimit is a limit out of range.
var ErrLimit = errors.New("limit out of range")

// Page reads the page after cursor, of scope (a tenant, or "" for all).
func (x *Exporter) Page(ctx context.Context, scope, cursor string, limit int) (Page, error) {
	if limit < 1 || limit > x.maxLimit {
		return Page{}, fmt.Errorf("%w: limit %d: want 1..%d", ErrLimit, limit, x.maxLimit)
	}
	pos, err := x.signer.Decode(scope, cursor)
	if err != nil {
		return Page{}, err
	}
	now, err := x.store.Now(ctx)
	if err != nil {
		return Page{}, err
	}
	w := now - x.lag
	var into []Exported
	if buf, ok := x.pages.Get().(*[]Exported); ok {
		into = *buf
	}
	recs, upTo, err := x.store.Export(ctx, ExportRequest{After: pos, UpTo: w, Tenant: scope, Limit: limit}, into)
	if err != nil {
		return Page{}, err
	}
	next := pos
	if len(recs) > 0 {
		next = recs[len(recs)-1].Pos
	}
	// Not full: nothing is left up to upTo (the store may stop short of w to bound a page).
	if len(recs) < limit && next.Less(Position{Seen: upTo}) {
		next = Position{Seen: upTo}
	}
	return Page{Records: recs, Next: x.signer.Encode(scope, next), UpTo: upTo, CaughtUp: len(recs) < limit && upTo == w, x: x}, nil
}
