package httpin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// Reason codes this package adds to the payload ones (payload.Reason*).
const (
	ReasonTenantMismatch = "tenant_mismatch"  // a record names another tenant than the key's
	ReasonBadDevice      = "bad_device"       // a device name that is empty, too long or has control characters
	ReasonBadEvent       = "bad_event"        // a CloudEvent envelope that is not CloudEvents 1.0 as profiled
	ReasonUnknownType    = "unknown_type"     // a CloudEvent type other than EventType
	ReasonBadEncoding    = "bad_encoding"     // a gzip body that does not decompress
	ReasonMissingEventID = "missing_event_id" // a canonical record without event_id
	ReasonWrongTenant    = "wrong_tenant"     // the device registry lists the device only under other tenants
	// ReasonUnknownDevice: a strict device registry does not list the device.
	ReasonUnknownDevice = registry.ReasonUnknownDevice
)

// maxListed bounds the errors a 400 lists; all of them go to topic rejected.
const maxListed = 100

// Bounds of what one refused item costs downstream. A rejection is one Kafka message
// (brokers refuse messages over 1 MB by default) and one ClickHouse row: a refused
// multi-megabyte body or line carried whole could never be written, and the request
// would get 503 on every retry. So a rejection keeps the input's first maxRejectRaw
// bytes and says how long the whole was and its SHA-256; messages and ids are clipped.
const (
	maxRejectRaw    = 64 << 10
	maxRejectDevice = 256 // a valid device is at most 128 bytes: a longer one is refused
	maxMessage      = 512 // bytes of an item's message, in the 400 and in the detail
)

// maxEventID bounds an event_id in bytes.
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
	maxLines int
	adm      *admission // the device registry snapshot of this request; nil: none

	recs   []record.Usage
	rejs   []record.Rejection
	errs   []ItemError // the first maxListed errors
	nerr   int         // all errors
	seen   map[string]int
	parser payload.Parser
	prefix []byte // scratch: "http:<tenant>:"

	raw, body []byte // request body as read, and after decompression
}

func (b *batch) reset(tenant string, received int64, lim payload.Limits, maxLines int, adm *admission) {
	b.tenant, b.received, b.lim, b.maxLines, b.adm = tenant, received, lim, maxLines, adm
	b.parser.Limits = lim
	clear(b.recs)
	b.recs = b.recs[:0]
	clear(b.rejs)
	b.rejs = b.rejs[:0]
	b.errs = b.errs[:0]
	b.nerr = 0
	if b.seen == nil {
		b.seen = make(map[string]int)
	}
	clear(b.seen)
	b.prefix = append(append(append(b.prefix[:0], record.SourceHTTP...), ':'), tenant...)
	b.prefix = append(b.prefix, ':')
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
}

// ref locates an item: a JSON Lines line or a CloudEvents batch index.
type ref struct {
	line, index int
	id          string
}

var wholeBody = ref{index: -1}

// refuse records one bad item: an error for the response and a rejection for topic
// rejected carrying the item's raw bytes (copied: the body buffer is reused).
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
	if len(raw) > maxRejectRaw {
		sum := sha256.Sum256(raw)
		detail += "; raw holds the first " + strconv.Itoa(maxRejectRaw) + " of " + strconv.Itoa(len(raw)) +
			" bytes, sha256 " + hex.EncodeToString(sum[:])
		raw = raw[:maxRejectRaw]
	}
	b.rejs = append(b.rejs, record.Rejection{Source: record.SourceHTTP, Tenant: b.tenant,
		Device: clipText(device, maxRejectDevice), Reason: reason, Detail: detail, Raw: bytes.Clone(raw),
		Received: b.received})
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

func (b *batch) refuseErr(at ref, device string, err error, raw []byte) {
	reason := payload.ReasonBadJSON
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
		u, err := record.ParseJSON(line)
		if err != nil {
			b.refuse(ref{line: n, index: -1}, "", payload.ReasonBadJSON, err.Error(), line)
			continue
		}
		b.admit(&u, ref{line: n, index: -1}, line)
	}
}

// admit checks a canonical record a client sent, completes it for the http source and
// appends it, or refuses it.
func (b *batch) admit(u *record.Usage, at ref, raw []byte) {
	if u.Tenant != b.tenant {
		b.refuse(at, u.Device, ReasonTenantMismatch, "tenant "+quote(u.Tenant)+" is not the API key's tenant "+quote(b.tenant), raw)
		return
	}
	if err := checkName(u.Device); err != nil {
		b.refuse(at, u.Device, ReasonBadDevice, "device: "+err.Error(), raw)
		return
	}
	if b.adm != nil {
		if reason, msg := b.adm.check(b.tenant, u.Device); reason != "" {
			b.refuse(at, u.Device, reason, msg, raw)
			return
		}
	}
	if u.EventID == "" {
		b.refuse(at, u.Device, ReasonMissingEventID, "event_id is required: it is the idempotency key", raw)
		return
	}
	u.EventID = b.namespace(u.EventID)
	if len(u.EventID) > maxEventID || !utf8.ValidString(u.EventID) || strings.ContainsFunc(u.EventID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		b.refuse(at, u.Device, payload.ReasonBadID, "event_id must be at most "+strconv.Itoa(maxEventID)+" bytes of UTF-8 without control characters", raw)
		return
	}
	u.Source = record.SourceHTTP
	u.ReceivedTime = b.received
	u.SliceSD = strings.ToLower(u.SliceSD)
	if reason, msg := b.check(u); reason != "" {
		b.refuse(at, u.Device, reason, msg, raw)
		return
	}
	if first, dup := b.seen[u.EventID]; dup {
		b.refuse(at, u.Device, payload.ReasonDuplicateID, "event_id "+strconv.Quote(u.EventID)+" repeats "+describe(first), raw)
		return
	}
	key := at.line // JSON Lines: the line; CloudEvents: -(index+1)
	if at.line == 0 {
		key = -(at.index + 1)
	}
	b.seen[u.EventID] = key
	b.recs = append(b.recs, *u)
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
	if strings.HasPrefix(id, string(b.prefix)) {
		return id
	}
	return string(b.prefix) + id
}

// check applies the invariants and the limits the payload parsers apply to devices.
func (b *batch) check(u *record.Usage) (reason, msg string) {
	if err := u.Validate(); err != nil {
		var inv *record.InvalidError
		if errors.As(err, &inv) {
			return inv.Reason, inv.Msg
		}
		return payload.ReasonBadField, err.Error()
	}
	switch {
	case u.EndTime > b.received+b.lim.MaxFutureSkew.Milliseconds():
		return payload.ReasonFutureTime, "ends at " + fmtMs(u.EndTime) + ", after received " + fmtMs(b.received) + " + " + b.lim.MaxFutureSkew.String()
	case u.StartTime < b.received-b.lim.MaxPastAge.Milliseconds():
		return payload.ReasonStaleTime, "starts at " + fmtMs(u.StartTime) + ", before received " + fmtMs(b.received) + " - " + b.lim.MaxPastAge.String()
	}
	for _, c := range [...]struct {
		name string
		v    uint64
	}{{"bytes_up", u.BytesUp}, {"bytes_down", u.BytesDown}, {"duration_ms", u.DurationMs}, {"events", u.Events}} {
		if c.v > b.lim.MaxCounter {
			return payload.ReasonAbsurdCounter, c.name + " " + strconv.FormatUint(c.v, 10) + " exceeds " + strconv.FormatUint(b.lim.MaxCounter, 10)
		}
	}
	switch u.RAT {
	case "", "NR", "EUTRA", "NB-IoT", "LTE-M", "WLAN":
	default:
		return payload.ReasonBadField, "rat " + quote(u.RAT) + " is not one of NR, EUTRA, NB-IoT, LTE-M, WLAN or empty"
	}
	if u.PLMN != "" && !validPLMN(u.PLMN) {
		return payload.ReasonBadField, "plmn " + quote(u.PLMN) + " is not MCC-MNC (262-01)"
	}
	if len(u.Cell) > 64 || strings.ContainsFunc(u.Cell, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
		return payload.ReasonBadField, "cell must be at most 64 printable ASCII characters"
	}
	if u.SliceSD != "" {
		if !u.HasSlice {
			return payload.ReasonBadField, "slice_sd needs slice_sst"
		}
		if !validSD(u.SliceSD) {
			return payload.ReasonBadField, "slice_sd " + quote(u.SliceSD) + " is not 6 hex digits"
		}
	}
	return "", ""
}

func fmtMs(ms int64) string { return time.UnixMilli(ms).UTC().Format(record.TimeLayout) }

func validPLMN(s string) bool {
	mcc, mnc, ok := strings.Cut(s, "-")
	return ok && len(mcc) == 3 && (len(mnc) == 2 || len(mnc) == 3) && digits(mcc) && digits(mnc)
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validSD(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// device takes a plain JSON or SenML body for one device through the payload parser: it
// is accepted or refused whole.
func (b *batch) device(kind payload.Kind, device string, body []byte) {
	if err := checkName(device); err != nil {
		b.refuse(wholeBody, device, ReasonBadDevice, "query parameter device: "+err.Error(), body)
		return
	}
	if b.adm != nil {
		if reason, msg := b.adm.check(b.tenant, device); reason != "" {
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
