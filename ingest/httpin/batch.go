package httpin

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// maxListed bounds the errors a 400 lists; all of them go to topic rejected.
const maxListed = 100

// maxMessage bounds an item's message, in the 400 and in the rejection's detail. What
// one refused item costs stays small: a rejection is one Kafka message (brokers refuse
// messages over 1 MB by default), so a refused multi-megabyte body or line carried
// whole could never be written and the request would get 503 on every retry.
// Rejection.SetRaw keeps the input's first record.MaxRejectRaw bytes, its length and
// SHA-256; AppendJSON writes an invalid device quoted and clipped.
const maxMessage = 512

// maxEventID bounds an event_id in bytes, namespace included: tighter than
// record.MaxEventIDLen, since HTTP ids are the client's and travel in every record.
const maxEventID = 256

// ItemError is one refused line or event of a request, as the 400 response lists it.
// Line is the 1-based JSON Lines line; Index the 0-based CloudEvents batch position
// (-1 otherwise); both are unset for a whole-body error.
type ItemError struct {
	Line    int
	Index   int
	ID      string // CloudEvent id when known
	Reason  string
	Message string
}

// batch is the per-request state: the records and rejections one body yields. It is
// pure (no I/O) and reused through a pool; not safe for concurrent use.
type batch struct {
	tenant   string
	received int64 // ms since the epoch
	lim      payload.Limits
	rlim     record.Limits // lim, as record.ValidateWithin takes it
	// tenantOK: tenant is a valid tenant id (the configuration checked it), so a record
	// naming it passed the identity rules once check has checked its device and event id.
	tenantOK bool
	maxLines int
	adm      *registry.Admission // the device registry snapshot of this request; nil: none

	recs   []record.Usage
	rejs   []record.Rejection
	errs   []ItemError // the first maxListed errors
	nerr   int         // all errors
	seen   idSet
	parser payload.Parser
	lines  lineReader // its strings outlive the request: only the GC frees them
	prefix string     // the event id namespace: "http:<tenant>:"

	raw, body []byte // request body as read, and after decompression

	// The sink hand-off (Server.produce), made once per batch: the callback the sink
	// calls per slice, the acknowledgements it sends, how many are awaited, the deadline.
	done  func(error)
	acks  chan error
	left  atomic.Int32
	timer *time.Timer
}

func (b *batch) reset(tenant string, received int64, lim payload.Limits, maxLines int, adm *registry.Admission) {
	b.tenant, b.received, b.lim, b.maxLines, b.adm = tenant, received, lim, maxLines, adm
	b.parser.Limits = lim
	b.rlim = record.Limits{MaxFutureSkew: lim.MaxFutureSkew, MaxPastAge: lim.MaxPastAge, MaxCounter: lim.MaxCounter}
	b.tenantOK = record.ValidTenantID(tenant)
	clear(b.recs)
	b.recs = b.recs[:0]
	clear(b.rejs)
	b.rejs = b.rejs[:0]
	b.errs = b.errs[:0]
	b.nerr = 0
	b.seen.reset()
	if b.prefix == "" || b.prefix[len(record.SourceHTTP)+1:len(b.prefix)-1] != tenant {
		b.prefix = record.SourceHTTP + ":" + tenant + ":" // kept while the pool hands b to one tenant
	}
	b.lines.reset(tenant, b.prefix)
}

// trim drops buffers an unusually large request grew, so the pool keeps typical ones.
func (b *batch) trim() {
	const keepBytes, keepRecs = 1 << 20, 4096
	if cap(b.raw) > keepBytes {
		b.raw = nil
	}
	if cap(b.body) > keepBytes {
		b.body = nil
	}
	if cap(b.recs) > keepRecs {
		b.recs = nil
	}
	if cap(b.rejs) > keepRecs {
		b.rejs = nil
	}
	if len(b.seen.slots) > 2*keepRecs {
		b.seen = idSet{}
	}
}

// ref locates an item: a JSON Lines line or a CloudEvents batch index.
type ref struct {
	line, index int
	id          string
}

var wholeBody = ref{index: -1}

// refuse records one bad item: an error for the response and a rejection for topic
// rejected carrying the item's raw bytes (the first record.MaxRejectRaw of them, with
// the whole length and SHA-256; copied: the body buffer is reused).
func (b *batch) refuse(at ref, device, reason, msg string, raw []byte) {
	msg = clipText(msg, maxMessage)
	b.nerr++
	if len(b.errs) < maxListed {
		b.errs = append(b.errs, ItemError{Line: at.line, Index: at.index, ID: at.id, Reason: reason, Message: msg})
	}
	detail := msg
	switch {
	case at.line > 0:
		detail = "line " + strconv.Itoa(at.line) + ": " + msg
	case at.index >= 0:
		detail = "event " + strconv.Itoa(at.index) + ": " + msg
	}
	b.rejs = append(b.rejs, record.Rejection{Source: record.SourceHTTP, Tenant: b.tenant, Device: device,
		Reason: reason, Detail: detail, Received: b.received})
	b.rejs[len(b.rejs)-1].SetRaw(raw)
}

// clipText cuts s to at most n bytes at a rune boundary, marking the cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}

// refuseErr refuses with err's reason code (record.InvalidError), else bad_json: the
// parsers' other errors are about the JSON.
func (b *batch) refuseErr(at ref, device string, err error, raw []byte) {
	reason := record.ReasonBadJSON
	var inv *record.InvalidError
	if errors.As(err, &inv) {
		reason = inv.Reason
		err = errors.New(inv.Msg)
	}
	b.refuse(at, device, reason, err.Error(), raw)
}

// tooMany reports whether body holds more than maxLines non-blank lines.
func tooManyLines(body []byte, maxLines int) bool {
	if bytes.Count(body, []byte{'\n'}) < maxLines {
		return false
	}
	n := 0
	for len(body) > 0 {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		if len(bytes.TrimSpace(line)) > 0 {
			if n++; n > maxLines {
				return true
			}
		}
	}
	return false
}

// jsonLines takes a JSON Lines body of canonical usage.v1 records, one per line; blank
// lines are skipped but counted. The caller checked tooManyLines.
func (b *batch) jsonLines(body []byte) {
	for n := 1; len(body) > 0; n++ {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		// Built in place at the end of b.recs, dropped again if refused. Not zeroed first:
		// both parsers start by zeroing the record. Namespaced in the parse, with no
		// allocation per record.
		if len(b.recs) < cap(b.recs) {
			b.recs = b.recs[:len(b.recs)+1]
		} else {
			b.recs = append(b.recs, record.Usage{})
		}
		u := &b.recs[len(b.recs)-1]
		if err := b.lines.parseInto(line, u); err != nil {
			b.recs = b.recs[:len(b.recs)-1]
			b.refuse(ref{line: n, index: -1}, "", record.ReasonBadJSON, err.Error(), line)
			continue
		}
		if !b.check(u, ref{line: n, index: -1}, line, true) {
			b.recs = b.recs[:len(b.recs)-1]
		}
	}
}

// admit checks a canonical record a client sent, completes it for the http source and
// appends it, or refuses it.
func (b *batch) admit(u *record.Usage, at ref, raw []byte) {
	if b.check(u, at, raw, false) {
		b.recs = append(b.recs, *u)
	}
}

// check checks a canonical record a client sent and completes it for the http source,
// or refuses it (false). namespaced: the parser put a non-empty event id in the
// namespace already (JSON Lines), as namespace would.
//
// Each rule runs once: the tenant is the key's (valid, tenantOK), the device and event id
// are checked here, so record.ValidateWithinIdentified checks the rest of what
// record.ValidateWithin would (TestCheckMatchesValidateWithin).
func (b *batch) check(u *record.Usage, at ref, raw []byte, namespaced bool) bool {
	if u.Tenant != b.tenant {
		b.refuse(at, u.Device, record.ReasonTenantMismatch, "tenant "+record.QuoteInput(u.Tenant)+
			" is not the API key's tenant "+record.QuoteInput(b.tenant), raw)
		return false
	}
	if err := record.CheckDeviceID(u.Device); err != nil {
		b.refuseErr(at, u.Device, err, raw)
		return false
	}
	if b.adm != nil {
		if reason, msg := admit(b.adm, b.tenant, u.Device); reason != "" {
			b.refuse(at, u.Device, reason, msg, raw)
			return false
		}
	}
	if u.EventID == "" {
		b.refuse(at, u.Device, record.ReasonMissingEventID, "event_id is required: it is the idempotency key", raw)
		return false
	}
	if !namespaced {
		u.EventID = b.namespace(u.EventID)
	}
	if len(u.EventID) > maxEventID || !record.ValidEventID(u.EventID) {
		b.refuse(at, u.Device, record.ReasonBadID, "event_id must be at most "+strconv.Itoa(maxEventID)+
			" bytes (namespace included) of UTF-8 without control or format characters", raw)
		return false
	}
	u.Source = record.SourceHTTP
	u.ReceivedTime = b.received
	u.SliceSD = strings.ToLower(u.SliceSD)
	validate := record.ValidateWithinIdentified
	if !b.tenantOK {
		validate = record.ValidateWithin
	}
	if err := validate(u, b.rlim); err != nil {
		b.refuseErr(at, u.Device, err, raw)
		return false
	}
	key := at.line // JSON Lines: the line; CloudEvents: -(index+1)
	if at.line == 0 {
		key = -(at.index + 1)
	}
	if first, added := b.seen.add(u.EventID, key); !added {
		b.refuse(at, u.Device, record.ReasonDuplicateID, "event_id "+record.QuoteInput(u.EventID)+" repeats "+describe(first), raw)
		return false
	}
	return true
}

func describe(key int) string {
	if key < 0 {
		return "event " + strconv.Itoa(-key-1)
	}
	return "line " + strconv.Itoa(key)
}

// namespace confines client-chosen event ids to "http:<tenant>:": record_id is the
// event_id, and dedup is per tenant and record_id, so an id copied from another source
// (mqtt:..., cdr:...) or from the rater's own charges (fee:..., adj:...) could otherwise
// replace those rows. An id already in the namespace (a retry of a record this
// collector produced) is kept as is.
func (b *batch) namespace(id string) string {
	if strings.HasPrefix(id, b.prefix) {
		return id
	}
	return b.prefix + id
}

// device takes a plain JSON or SenML body for one device through the payload parser: it
// is accepted or refused whole.
func (b *batch) device(kind payload.Kind, device string, body []byte) {
	if err := record.CheckDeviceID(device); err != nil {
		b.refuse(wholeBody, device, record.ReasonOf(err), "query parameter device: "+err.(*record.InvalidError).Msg, body)
		return
	}
	if b.adm != nil {
		if reason, msg := admit(b.adm, b.tenant, device); reason != "" {
			b.refuse(wholeBody, device, reason, msg, body)
			return
		}
	}
	var err error
	id := payload.Identity{Tenant: b.tenant, Device: device, Source: record.SourceHTTP}
	b.recs, err = b.parser.Parse(kind, body, id, b.received, b.recs)
	if err != nil {
		b.refuseErr(wholeBody, device, err, body)
	}
}
