package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"fleetmeter/record"
)

// The documents of a tenant period form a chain. Seq 0 is the invoice, 1.. are correction
// notes; each covers the period's records whose Seen lies in (previous watermark,
// watermark], the first from the beginning of time. A document is a draft while it is the
// open end of the chain and final once stored with its watermark (Finalize); a stored
// document is served as stored, so it never changes. Late usage (a record of the period
// first stored after its invoice's watermark) therefore lands on the period's next
// correction note, exactly once: the watermarks partition Seen, and Seen is fixed per
// record (export.go). Over all documents of a period, the totals are the period's rated
// records, each once. Device fees are provisional until the period is closed, so a draft
// shows them only once the adjustment is stored (then the invoice is finalized anyway).

var (
	// ErrNotFound is an unknown invoice.
	ErrNotFound = errors.New("not found")
	// ErrBadRequest is a malformed parameter.
	ErrBadRequest = errors.New("bad request")
)

// Invoice is an invoice or a correction note, as served (JSON field names).
type Invoice struct {
	Number      string   `json:"number"`
	Kind        string   `json:"kind"`   // invoice | correction
	Status      string   `json:"status"` // draft | final
	Tenant      string   `json:"tenant"`
	Period      string   `json:"period"`
	Seq         uint32   `json:"seq"`
	Corrects    string   `json:"corrects,omitempty"` // a correction: the invoice it adds to
	Currency    string   `json:"currency"`           // of the lines ("" if none)
	SeenAfter   int64    `json:"seen_after"`         // covers records first seen after ...
	SeenUpTo    int64    `json:"seen_up_to"`         // ... and up to this (Unix seconds)
	FinalizedAt string   `json:"finalized_at,omitempty"`
	Lines       []Line   `json:"lines"`
	Records     uint64   `json:"records"`
	Totals      []Amount `json:"totals"` // one per currency
}

// Amount is money in one currency (six decimals).
type Amount struct {
	Currency string `json:"currency"`
	Amount   string `json:"amount"`
}

// Line is one invoice line.
type Line struct {
	Charge      string `json:"charge"` // usage | device_fee | adjustment
	Description string `json:"description"`
	Tariff      string `json:"tariff"`
	Zone        string `json:"zone,omitempty"`
	Mobility    string `json:"mobility,omitempty"`
	Offer       string `json:"offer,omitempty"`
	Dimension   string `json:"dimension,omitempty"` // data | duration | events | mixed | none
	Quantity    string `json:"quantity"`
	Unit        string `json:"unit"`
	UnitPrice   string `json:"unit_price"` // per unit, or "mixed"
	Records     uint64 `json:"records"`
	Currency    string `json:"currency"`
	Amount      string `json:"amount"`
}

// Invoices builds, finalizes and serves the documents.
type Invoices struct {
	store  Store
	lag    int64
	notify Notifier // nil: no notifications
	now    func() time.Time
}

// NewInvoices returns the invoice service; notify may be nil.
func NewInvoices(store Store, lag time.Duration, notify Notifier) *Invoices {
	return &Invoices{store: store, lag: int64((lag + time.Second - 1) / time.Second), notify: notify, now: time.Now}
}

// Number names a document: <tenant>-<YYYYMM>, a correction -C<seq> after it.
func Number(tenant, period string, seq uint32) string {
	n := tenant + "-" + strings.Replace(period, "-", "", 1)
	if seq > 0 {
		n += "-C" + strconv.FormatUint(uint64(seq), 10)
	}
	return n
}

// ParseNumber splits a document number.
func ParseNumber(n string) (tenant, period string, seq uint32, err error) {
	bad := fmt.Errorf("%w: invoice id %q: want <tenant>-<YYYYMM>[-C<n>]", ErrBadRequest, n)
	if i := strings.LastIndex(n, "-C"); i > 0 && !strings.Contains(n[i+2:], "-") {
		s, err := strconv.ParseUint(n[i+2:], 10, 32)
		if err != nil || s == 0 {
			return "", "", 0, bad
		}
		seq, n = uint32(s), n[:i]
	}
	i := strings.LastIndex(n, "-")
	if i <= 0 || len(n)-i != 7 {
		return "", "", 0, bad
	}
	ym := n[i+1:]
	period = ym[:4] + "-" + ym[4:]
	if _, err := time.Parse("2006-01", period); err != nil {
		return "", "", 0, bad
	}
	return n[:i], period, seq, nil
}

// Documents returns the tenant period's documents: the final ones as stored, then the
// draft at the open end (the invoice while none is final; a correction note only when
// late records are waiting for one).
func (v *Invoices) Documents(ctx context.Context, tenant, period string) ([]Invoice, error) {
	if _, err := time.Parse("2006-01", period); err != nil {
		return nil, fmt.Errorf("%w: period %q: want YYYY-MM", ErrBadRequest, period)
	}
	docs, err := v.store.Documents(ctx, tenant, period)
	if err != nil {
		return nil, err
	}
	var out []Invoice
	after := int64(-1)
	for _, d := range docs {
		var inv Invoice
		if err := json.Unmarshal(d.Body, &inv); err != nil {
			return nil, fmt.Errorf("invoice %s: stored body: %w", d.Number, err)
		}
		out = append(out, inv)
		after = d.Watermark
	}
	now, err := v.store.Now(ctx)
	if err != nil {
		return nil, err
	}
	draft, err := v.build(ctx, tenant, period, uint32(len(docs)), after, now-v.lag)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 || len(draft.Lines) > 0 {
		out = append(out, draft)
	}
	return out, nil
}

// Document returns one document by number.
func (v *Invoices) Document(ctx context.Context, number string) (Invoice, error) {
	tenant, period, seq, err := ParseNumber(number)
	if err != nil {
		return Invoice{}, err
	}
	docs, err := v.Documents(ctx, tenant, period)
	if err != nil {
		return Invoice{}, err
	}
	for _, d := range docs {
		if d.Seq == seq {
			return d, nil
		}
	}
	return Invoice{}, fmt.Errorf("%w: invoice %s", ErrNotFound, number)
}

// Finalize makes final, for every tenant whose period is closed (its adjustment stored),
// the open document if it has anything to say: the invoice the first time, a correction
// note when late records came since; it does the same for the CorrectionMonths periods
// before (their late usage). A second call with nothing new changes nothing.
// Each new document is published as invoice.finalized (when a Notifier is set) after it
// is stored; the error of a failed publication is returned, the document stays final.
// rater close and the loader's automatic close call it for their period.
func (v *Invoices) Finalize(ctx context.Context, period string) ([]Invoice, error) {
	p, err := time.Parse("2006-01", period)
	if err != nil {
		return nil, fmt.Errorf("%w: period %q: want YYYY-MM", ErrBadRequest, period)
	}
	now, err := v.store.Now(ctx)
	if err != nil {
		return nil, err
	}
	w := now - v.lag
	// The closed periods of the last year too: late usage for them goes on a correction
	// note with this close, so it waits at most one close.
	var made []Invoice
	for k := CorrectionMonths; k >= 0; k-- {
		if made, err = v.finalize(ctx, p.AddDate(0, -k, 0).Format("2006-01"), w, made); err != nil {
			return made, err
		}
	}
	return made, nil
}

// CorrectionMonths is how many periods before the one closed Finalize also looks at for
// late usage.
const CorrectionMonths = 12

func (v *Invoices) finalize(ctx context.Context, period string, w int64, made []Invoice) ([]Invoice, error) {
	tenants, err := v.store.Closed(ctx, period, w)
	if err != nil {
		return made, err
	}
	for _, t := range tenants {
		docs, err := v.store.Documents(ctx, t, period)
		if err != nil {
			return made, err
		}
		after := int64(-1)
		if len(docs) > 0 {
			after = docs[len(docs)-1].Watermark
		}
		if after >= w {
			continue
		}
		inv, err := v.build(ctx, t, period, uint32(len(docs)), after, w)
		if err != nil {
			return made, err
		}
		if len(docs) > 0 && len(inv.Lines) == 0 {
			continue // no late records: no correction note
		}
		fin := v.now().UTC()
		inv.Status, inv.FinalizedAt = "final", fin.Format(time.RFC3339)
		body, err := json.Marshal(inv)
		if err != nil {
			return made, err
		}
		d := Document{Tenant: t, Period: period, Seq: inv.Seq, Number: inv.Number, Watermark: w, FinalizedMs: fin.UnixMilli(), Body: body}
		if err := v.store.SaveDocument(ctx, d); err != nil {
			return made, err
		}
		made = append(made, inv)
		if v.notify != nil {
			if err := v.notify.Publish(ctx, FinalizedEvent(inv)); err != nil {
				return made, fmt.Errorf("invoice %s is final; publishing invoice.finalized: %w", inv.Number, err)
			}
		}
	}
	return made, nil
}

// Finalize is what closing a period calls once its adjustments are written: it waits
// until the watermark (the store's clock minus the lag) has passed the moment of the
// call, so what was written before is covered, then runs Invoices.Finalize.
func Finalize(ctx context.Context, v *Invoices, period string) ([]Invoice, error) {
	start, err := v.store.Now(ctx)
	if err != nil {
		return nil, err
	}
	for {
		now, err := v.store.Now(ctx)
		if err != nil {
			return nil, err
		}
		if now-v.lag > start {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return v.Finalize(ctx, period)
}

func (v *Invoices) build(ctx context.Context, tenant, period string, seq uint32, after, upTo int64) (Invoice, error) {
	sums, err := v.store.Lines(ctx, tenant, period, after, upTo)
	if err != nil {
		return Invoice{}, err
	}
	inv := Invoice{Number: Number(tenant, period, seq), Kind: "invoice", Status: "draft", Tenant: tenant, Period: period,
		Seq: seq, SeenAfter: max(after, 0), SeenUpTo: upTo, Lines: []Line{}}
	if seq > 0 {
		inv.Kind, inv.Corrects = "correction", Number(tenant, period, 0)
	}
	totals := map[string]record.Micros{}
	for _, s := range sums {
		inv.Lines = append(inv.Lines, lineOf(s))
		totals[s.Key.Currency] += s.Amount
		inv.Records += s.Records
	}
	curs := make([]string, 0, len(totals))
	for c := range totals {
		curs = append(curs, c)
	}
	slices.Sort(curs)
	inv.Totals = []Amount{}
	for _, c := range curs {
		inv.Totals = append(inv.Totals, Amount{Currency: c, Amount: totals[c].String()})
	}
	if len(curs) > 0 {
		inv.Currency = curs[0]
	}
	return inv, nil
}

func lineOf(s LineSum) Line {
	k := s.Key
	l := Line{Charge: k.Charge, Tariff: k.Tariff, Zone: k.Zone, Mobility: k.Mobility, Offer: k.Offer,
		Records: s.Records, Currency: k.Currency, Amount: s.Amount.String(), UnitPrice: "mixed"}
	switch k.Charge {
	case record.ChargeDeviceFee:
		l.Quantity, l.Unit, l.UnitPrice = strconv.FormatUint(s.Devices, 10), "device", k.UnitFee.String()
		l.Description = fmt.Sprintf("Device fee: %d devices x %s", s.Devices, k.UnitFee)
		return l
	case record.ChargeAdjustment:
		l.Quantity, l.Unit, l.UnitPrice = "1", "period", s.Amount.String()
		l.Description = "Device fee adjustment to the exact tiers"
		return l
	}
	l.Dimension = k.Dimension
	var q, den *big.Rat // quantity in its unit; amount per unit = micros / den
	switch k.Dimension {
	case "data":
		q, den = new(big.Rat).SetFrac64(int64(s.Bytes), 1_000_000), big.NewRat(int64(s.Bytes), 1)
		l.Quantity, l.Unit = record.Micros(s.Bytes).String(), "MB"
	case "duration":
		q, den = new(big.Rat).SetFrac64(int64(s.DurationMs), 1000), big.NewRat(int64(s.DurationMs)*1000, 1)
		l.Quantity, l.Unit = q.FloatString(3), "s"
	case "events":
		q, den = big.NewRat(int64(s.Events), 1), big.NewRat(int64(s.Events)*1_000_000, 1)
		l.Quantity, l.Unit = strconv.FormatUint(s.Events, 10), "event"
	case "none":
		l.Quantity, l.Unit = "0", "-"
	default:
		l.Quantity = fmt.Sprintf("%s MB, %s s, %d events", record.Micros(s.Bytes), new(big.Rat).SetFrac64(int64(s.DurationMs), 1000).FloatString(3), s.Events)
		l.Unit = "mixed"
	}
	// A unit price only when every record of the line paid the same per unit.
	if q != nil && q.Sign() > 0 && s.MinRatio == s.MaxRatio {
		p := new(big.Rat).Quo(big.NewRat(int64(s.Amount), 1), den)
		l.UnitPrice = strings.TrimRight(strings.TrimRight(p.FloatString(9), "0"), ".")
	}
	desc := []string{"Usage", k.Dimension, k.Zone, k.Mobility}
	if k.Offer != "" {
		desc = append(desc, "offer "+k.Offer)
	}
	l.Description = strings.Join(slices.DeleteFunc(desc, func(s string) bool { return s == "" }), ", ")
	return l
}
