// Package payload decodes what devices publish (plain JSON in fleetmeter fields, SenML
// JSON and SenML CBOR) into canonical usage records. It is pure: bytes and the transport's
// identity in, records out, no I/O. README.md defines the accepted formats.
//
// A payload is accepted or refused whole: on error Parse returns the caller's slice as it
// was and a *record.InvalidError whose Reason is a stable code (see the Reason constants).
package payload

import (
	"time"

	"fleetmeter/record"
)

// Kind names a payload encoding.
type Kind uint8

// Payload kinds. KindAuto asks Parse to Sniff the encoding.
const (
	KindAuto Kind = iota
	KindJSON
	KindSenMLJSON
	KindSenMLCBOR
)

func (k Kind) String() string {
	switch k {
	case KindAuto:
		return "auto"
	case KindJSON:
		return "json"
	case KindSenMLJSON:
		return "senml+json"
	case KindSenMLCBOR:
		return "senml+cbor"
	}
	return "unknown"
}

// Identity is who sent the payload, as the transport established it (MQTT topic, CoAP
// path or DTLS identity, HTTP key). Payload content never overrides it.
type Identity struct {
	Tenant, Device, Source string
}

// Limits bound what one payload may claim. A zero field takes its DefaultLimits value.
type Limits struct {
	// MaxRecords bounds the top-level array elements of a payload: plain JSON objects or
	// SenML records.
	MaxRecords int
	// MaxFutureSkew is how far past the received time a record may end.
	MaxFutureSkew time.Duration
	// MaxPastAge is how far before the received time a record may start.
	MaxPastAge time.Duration
	// MaxCounter bounds bytes_up, bytes_down, duration_ms and events of one record.
	MaxCounter uint64
}

// DefaultLimits returns the limits a Parser uses where its Limits are zero: 4096 records
// and record.DefaultLimits.
func DefaultLimits() Limits {
	r := record.DefaultLimits()
	return Limits{MaxRecords: 4096, MaxFutureSkew: r.MaxFutureSkew, MaxPastAge: r.MaxPastAge, MaxCounter: r.MaxCounter}
}

// record returns the limits record.ValidateWithin applies.
func (l Limits) record() record.Limits {
	return record.Limits{MaxFutureSkew: l.MaxFutureSkew, MaxPastAge: l.MaxPastAge, MaxCounter: l.MaxCounter}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxRecords <= 0 {
		l.MaxRecords = d.MaxRecords
	}
	if l.MaxFutureSkew <= 0 {
		l.MaxFutureSkew = d.MaxFutureSkew
	}
	if l.MaxPastAge <= 0 {
		l.MaxPastAge = d.MaxPastAge
	}
	if l.MaxCounter == 0 {
		l.MaxCounter = d.MaxCounter
	}
	return l
}

// Reason codes of the *record.InvalidError values Parse returns. They are the record
// package's (record.Reasons has every code with its meaning); these names stay for the
// callers that spell them payload.Reason*.
const (
	ReasonUnknownFormat   = record.ReasonUnknownFormat
	ReasonBadJSON         = record.ReasonBadJSON
	ReasonBadSenML        = record.ReasonBadSenML
	ReasonBadCBOR         = record.ReasonBadCBOR
	ReasonUnknownField    = record.ReasonUnknownField
	ReasonDuplicateField  = record.ReasonDuplicateField
	ReasonBadField        = record.ReasonBadField
	ReasonBadUnit         = record.ReasonBadUnit
	ReasonNegativeCounter = record.ReasonNegativeCounter
	ReasonBadCounter      = record.ReasonBadCounter
	ReasonCounterOverflow = record.ReasonCounterOverflow
	ReasonAbsurdCounter   = record.ReasonAbsurdCounter
	ReasonBadTime         = record.ReasonBadTime
	ReasonBadInterval     = record.ReasonBadInterval
	ReasonFutureTime      = record.ReasonFutureTime
	ReasonStaleTime       = record.ReasonStaleTime
	ReasonTooManyRecords  = record.ReasonTooManyRecords
	ReasonDeviceMismatch  = record.ReasonDeviceMismatch
	ReasonMissingIdentity = record.ReasonMissingIdentity
	ReasonBadPosition     = record.ReasonBadPosition
	ReasonBadID           = record.ReasonBadID
	ReasonDuplicateID     = record.ReasonDuplicateID
	ReasonBadTenant       = record.ReasonBadTenant
	ReasonBadDevice       = record.ReasonBadDevice
)

func invalid(reason, msg string) *record.InvalidError {
	return &record.InvalidError{Reason: reason, Msg: msg}
}

// Parser decodes payloads, reusing its scratch buffers between calls. The zero value is
// ready to use. A Parser is not safe for concurrent use; use one per goroutine.
type Parser struct {
	Limits Limits

	lim      Limits
	id       Identity
	received int64
	base     int // len(into) on entry: records at and after it belong to this payload

	meta   []recMeta // per produced record, parallel to into[base:]
	ids    []byte    // device-supplied ids, referenced by recMeta
	buf    []byte    // arena for unescaped JSON strings
	fbuf   []byte    // scratch: formatted floats
	eidBuf []byte    // scratch: event ids
	hashes []uint64
	seen   map[uint64]int // duplicate-hash counting for large payloads

	// last kept strings, so a fleet repeating its PLMN or cell costs no allocation
	lastPLMN, lastCell, lastSD string

	sm senmlState
}

// recMeta is what a record needs beyond record.Usage while it is being built.
type recMeta struct {
	fields         uint32 // fieldX bits set so far
	idStart, idEnd int    // device-supplied id in Parser.ids when fields has fieldID
	timeKey        int64  // SenML: the resolved time grouping records
}

// Parse decodes data, of the given kind (KindAuto: sniffed), sent by id and received at
// received (ms since the epoch, UTC), appends its usage records to into and returns the
// extended slice. On error it returns into unchanged (same length) and a
// *record.InvalidError.
func (p *Parser) Parse(kind Kind, data []byte, id Identity, received int64, into []record.Usage) ([]record.Usage, error) {
	if id.Tenant == "" || id.Device == "" || id.Source == "" {
		return into, invalid(ReasonMissingIdentity, "identity needs tenant, device and source")
	}
	// The transport's identity goes into every record and event id: a hostile topic or
	// path must not bill a device named by control characters or 10 KB of text.
	if err := record.CheckTenantID(id.Tenant); err != nil {
		return into, err
	}
	if err := record.CheckDeviceID(id.Device); err != nil {
		return into, err
	}
	p.lim = p.Limits.withDefaults()
	p.id = id
	p.received = received
	p.base = len(into)
	p.meta = p.meta[:0]
	p.ids = p.ids[:0]
	if kind == KindAuto {
		kind = Sniff(data)
	}
	var out []record.Usage
	var err *record.InvalidError
	switch kind {
	case KindJSON:
		out, err = p.parseJSON(data, into)
	case KindSenMLJSON:
		out, err = p.parseSenMLJSON(data, into)
	case KindSenMLCBOR:
		out, err = p.parseSenMLCBOR(data, into)
	default:
		return into, invalid(ReasonUnknownFormat, "payload is neither JSON nor SenML")
	}
	if err == nil {
		err = p.finish(out)
	}
	if err != nil {
		clear(out[p.base:])
		return into[:p.base], err
	}
	return out, nil
}

// newRecord appends a zeroed record with its metadata and returns its index.
func (p *Parser) newRecord(into []record.Usage) ([]record.Usage, int) {
	into = append(into, record.Usage{})
	p.meta = append(p.meta, recMeta{})
	return into, len(into) - 1
}
