package billing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"fleetmeter/record"
)

// Exporter serves cursor pages.
//
// The guarantee, step by step. Every stored copy of a rated record leaves a rated_seen
// row stamped by the server's clock at insert (seen). A record's Seen e is the minimum
// seen of its copies (for a device fee, also of its period's adjustment): rows are only
// ever added, so e is fixed by its first copy. A page is read at watermark
// W = now - Lag: the Lag is chosen so every INSERT stamped at or before W is visible by
// now, hence every record with e <= W is visible with its final e. The page holds the
// records after the cursor's position P with e <= U, for a U <= W the store chooses to
// bound the page, in (e, tenant, record_id) order, and the next cursor is the last
// position returned or, when the page is not full (so it holds every record after P with
// e <= U), (U+1, "", ""). So:
//   - no gap: a record not yet visible has e > W, so it sorts after every position handed
//     out (at most (W+1, "", ""), and tenants are not empty) whenever it appears; a visible
//     one after P with e <= U is in this page or, the page being full, after its last
//     position; one with e > U is after (U+1, "", "") too;
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
	columns  sync.Pool // *Columns given back by Page.Release
}

// ColumnStore is a Store that also reads a page as columns: ExportColumns fills into
// with the records Export would return, in the same order, and returns the same upTo.
// The Exporter prefers it.
type ColumnStore interface {
	ExportColumns(ctx context.Context, req ExportRequest, into *Columns) (upTo int64, err error)
}

// NewExporter returns an exporter over store.
func NewExporter(store Store, signer *Signer, lag time.Duration, maxLimit int) *Exporter {
	return &Exporter{store: store, signer: signer, lag: int64((lag + time.Second - 1) / time.Second), maxLimit: maxLimit}
}

// Page is one export page: its records as Records, or as Columns when the store is a
// ColumnStore.
type Page struct {
	Records  []Exported
	Columns  *Columns
	Next     string // the cursor to ask with next
	UpTo     int64  // the watermark it was read at (Unix seconds)
	CaughtUp bool   // fewer than the limit: nothing more up to the watermark
	x        *Exporter
}

// Len is the number of records in the page.
func (p *Page) Len() int {
	if p.Columns != nil {
		return p.Columns.N
	}
	return len(p.Records)
}

// Write writes the page's records to w.
func (p *Page) Write(w RecordWriter) error {
	if p.Columns != nil {
		return w.WriteColumns(p.Columns)
	}
	return w.Write(p.Records)
}

// Rated returns a copy of the page's records, their strings their own.
func (p *Page) Rated() []record.Rated {
	var out []record.Rated
	if p.Columns != nil {
		out = p.Columns.Records()
	} else {
		out = make([]record.Rated, len(p.Records))
		for i := range p.Records {
			out[i] = p.Records[i].Rec
		}
	}
	for i := range out {
		r := &out[i]
		for _, s := range [...]*string{&r.EventID, &r.Tenant, &r.Device, &r.Source, &r.PLMN, &r.Cell, &r.RAT, &r.SliceSD,
			&r.RecordID, &r.Charge, &r.Zone, &r.Mobility, &r.Tariff, &r.TariffVersion, &r.Offer, &r.Currency} {
			*s = strings.Clone(*s)
		}
	}
	return out
}

// Release gives the page's memory back for the next page (a page of a million records
// is hundreds of megabytes to allocate and clear); the page must not be used after.
func (p *Page) Release() {
	if p.x != nil && cap(p.Records) > 0 {
		recs := p.Records[:0]
		p.x.pages.Put(&recs)
	}
	if p.x != nil && p.Columns != nil {
		p.x.columns.Put(p.Columns)
	}
	p.Records, p.Columns, p.x = nil, nil, nil
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
	req := ExportRequest{After: pos, UpTo: w, Tenant: scope, Limit: limit}
	page := Page{x: x}
	next := pos
	var upTo int64
	if cs, ok := x.store.(ColumnStore); ok {
		page.Columns, _ = x.columns.Get().(*Columns)
		if page.Columns == nil {
			page.Columns = new(Columns)
		}
		if upTo, err = cs.ExportColumns(ctx, req, page.Columns); err != nil {
			return Page{}, err
		}
		if page.Columns.N > 0 {
			next = page.Columns.Last
		}
	} else {
		var into []Exported
		if buf, ok := x.pages.Get().(*[]Exported); ok {
			into = *buf
		}
		if page.Records, upTo, err = x.store.Export(ctx, req, into); err != nil {
			return Page{}, err
		}
		if len(page.Records) > 0 {
			next = page.Records[len(page.Records)-1].Pos
		}
	}
	n := page.Len()
	// Not full: nothing is left up to upTo (the store may stop short of w to bound a
	// page), so the next page starts at the next second.
	if n < limit && next.Less(Position{Seen: upTo + 1}) {
		next = Position{Seen: upTo + 1}
	}
	page.Next, page.UpTo, page.CaughtUp = x.signer.Encode(scope, next), upTo, n < limit && upTo == w
	return page, nil
}
