// Package billing is what a billing system reads: rated records pulled by cursor exactly
// once (export.go), invoices and correction notes per tenant and period (invoice.go), as
// JSON, CSV and PDF, and the invoice.finalized notification (notify.go). It declares the
// Store it needs; billing/chstore is the ClickHouse adapter. docs/billing.md is the
// contract.
package billing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"fleetmeter/record"
)

// Position orders the export: records go out by (Seen, Tenant, RecordID). Seen is the
// second (Unix) a record became exportable: when ClickHouse first stored it, and for a
// device_fee record not before its period's adjustment was stored (the fee is
// provisional until then). A record's Seen never changes once every copy of what it
// depends on is stored (see docs/billing.md).
type Position struct {
	Seen     int64
	Tenant   string
	RecordID string
}

// Less orders positions.
func (p Position) Less(q Position) bool {
	if p.Seen != q.Seen {
		return p.Seen < q.Seen
	}
	if p.Tenant != q.Tenant {
		return p.Tenant < q.Tenant
	}
	return p.RecordID < q.RecordID
}

// Exported is one record of an export page with its position.
type Exported struct {
	Pos Position
	Rec record.Rated
}

// ExportRequest asks for the records after After up to the watermark UpTo (Unix seconds,
// inclusive), at most Limit of them, of one tenant or (Tenant empty) of all.
type ExportRequest struct {
	After  Position
	UpTo   int64
	Tenant string
	Limit  int
}

// LineKey groups a period's records into invoice lines.
type LineKey struct {
	Charge    string // usage, device_fee, adjustment
	Tariff    string
	Zone      string
	Mobility  string
	Offer     string
	Currency  string
	Dimension string        // usage: data, duration, events, mixed or none; else empty
	UnitFee   record.Micros // device_fee: the tier price each of these devices was charged
}

// LineSum is what the store sums per LineKey: records each counted once, with the first
// rating of each.
type LineSum struct {
	Key        LineKey
	Records    uint64
	Bytes      uint64 // bytes_up + bytes_down
	DurationMs uint64
	Events     uint64
	Amount     record.Micros
	// MinRatio and MaxRatio are the least and greatest amount per base unit (micros per
	// byte, ms or event) of the line's records: equal when every record was priced alike.
	MinRatio, MaxRatio float64
	Devices            uint64 // device_fee: distinct devices
}

// Document is a final invoice (Seq 0) or correction note (Seq 1..) as stored: Body is
// the rendered JSON, which never changes once stored.
type Document struct {
	Tenant      string
	Period      string
	Seq         uint32
	Number      string
	Watermark   int64 // Unix seconds: it covers records first seen up to this
	FinalizedMs int64
	Body        []byte
}

// Store is what billing reads from (and the final documents it writes to). Every read
// counts a record once, with its first rating, however often it was inserted.
type Store interface {
	// Now is the store's clock in Unix seconds (the clock that stamps Seen).
	Now(ctx context.Context) (int64, error)
	// Export appends the records after req.After with Seen <= upTo, in position order,
	// at most req.Limit, and returns upTo: req.UpTo, or less when the store bounds the
	// work of one page (then every record after req.After with Seen <= upTo is in this
	// page or, the page being full, after its last position).
	Export(ctx context.Context, req ExportRequest, into []Exported) (recs []Exported, upTo int64, err error)
	// Lines sums the tenant's records of period (start_time in it; fees and adjustments
	// of it) first seen in (after, upTo], as Seen defines it.
	Lines(ctx context.Context, tenant, period string, after, upTo int64) ([]LineSum, error)
	// Closed lists the tenants whose adjustment for period was first seen at or before upTo.
	Closed(ctx context.Context, period string, upTo int64) ([]string, error)
	// Documents returns the tenant's stored documents for period, by Seq.
	Documents(ctx context.Context, tenant, period string) ([]Document, error)
	// SaveDocument stores a final document. Of two saves of one (tenant, period, seq),
	// reads return the one finalized first.
	SaveDocument(ctx context.Context, d Document) error
}

// Config is the billing section of cmd/api's configuration.
type Config struct {
	// CursorKey signs cursors (HMAC-SHA256); at least 32 bytes. Keep it across restarts
	// and instances: a cursor signed with another key is refused. Env:
	// FLEETMETER_BILLING_CURSOR_KEY.
	CursorKey string `yaml:"cursor_key"`
	// Lag is how far behind the store's clock the export and invoices read, so every
	// INSERT stamped at or before the watermark is visible: longer than any INSERT takes
	// plus the clock skew between ClickHouse nodes.
	Lag time.Duration `yaml:"lag"`
	// MaxLimit bounds limit= of an export page.
	MaxLimit int `yaml:"max_limit"`
	// Notify publishes invoice.finalized; off when URL is empty.
	Notify NotifyConfig `yaml:"notify"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Lag: 10 * time.Second, MaxLimit: 1_000_000, Notify: DefaultNotifyConfig()}
}

// Validate reports every bad key at once (names as in the YAML under billing:).
func (c Config) Validate() error {
	var errs []error
	if len(c.CursorKey) < 32 {
		errs = append(errs, fmt.Errorf("billing.cursor_key: %d bytes, want at least 32 (e.g. openssl rand -hex 32)", len(c.CursorKey)))
	}
	if c.Lag < time.Second {
		errs = append(errs, fmt.Errorf("billing.lag: at least 1s, got %s", c.Lag))
	}
	if c.MaxLimit < 1 {
		errs = append(errs, fmt.Errorf("billing.max_limit: must be positive, got %d", c.MaxLimit))
	}
	return errors.Join(errs...)
}
