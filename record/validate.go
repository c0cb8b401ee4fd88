package record

import (
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// What a valid usage record is. This file is the one owner of the rules: collectors,
// the HTTP and CDR paths and the offline rater call Validate (or ValidateWithin) rather
// than keep their own copies, and call ValidTenantID/ValidDeviceID on an identity before
// they build a record from it. docs/validation.md says the same for operators.

// Bounds of a valid record.
const (
	// MaxIDLen bounds a tenant or device id, in bytes.
	MaxIDLen = 128
	// MaxEventIDLen bounds an event_id, in bytes. Collectors build ids of source, tenant,
	// device and a device's own id of at most 64 bytes, which stay below it.
	MaxEventIDLen = 512
	// DefaultMaxCounter is the bound Limits puts on bytes_up, bytes_down, duration_ms and
	// events of live input: 2^50, about 1 PB or 35,000 years in ms. Anything above is a
	// device bug. Validate itself takes any counter: the rater prices all of uint64
	// exactly (testdata/rating/units-increments), and a CDR is the network's word.
	DefaultMaxCounter = 1 << 50
	// MaxCellLen bounds cell, in bytes.
	MaxCellLen = 64
	// MinTime and MaxTime bound start_time, end_time and received_time (ms since the
	// epoch): [1970-01-01T00:00:00Z, 2100-01-01T00:00:00Z). ClickHouse keeps times as
	// DateTime (unsigned 32-bit seconds, 1970 to 2106), so a time outside would be stored
	// as another one.
	MinTime = 0
	MaxTime = 4102444800000
)

// ValidTenantID reports whether id is a valid tenant id: 1 to MaxIDLen bytes of printable
// ASCII (0x21 to 0x7e) other than '/', '+' and '#'. Ids appear in MQTT topics and CoAP
// paths (where '/' separates levels and '+' and '#' are wildcards), in Kafka keys,
// event ids, logs and ClickHouse; so no spaces, control characters, escape sequences,
// invalid UTF-8, bidirectional overrides or look-alike letters from other scripts.
func ValidTenantID[T text](id T) bool { return validID(id) }

// ValidDeviceID reports whether id is a valid device id; the alphabet is the tenant id's
// (ValidTenantID).
func ValidDeviceID[T text](id T) bool { return validID(id) }

func validID[T text](id T) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if byteClass[id[i]]&classID == 0 {
			return false
		}
	}
	return true
}

// Byte classes, one table lookup per byte on the per-record path.
const (
	classID    = 1 << iota // in a tenant or device id: 0x21-0x7e but / + #
	classCell              // in a cell: 0x21-0x7e
	classEvent             // an ASCII byte of an event_id: 0x20-0x7e
)

var byteClass = func() (t [256]uint8) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] |= classEvent
		if c != ' ' {
			t[c] |= classCell
			if c != '/' && c != '+' && c != '#' {
				t[c] |= classID
			}
		}
	}
	return t
}()

// CheckTenantID returns nil for a valid tenant id, else an *InvalidError: ReasonMissingIdentity
// for an empty id, ReasonBadTenant otherwise.
func CheckTenantID(id string) error { return checkID("tenant", ReasonBadTenant, id) }

// CheckDeviceID returns nil for a valid device id, else an *InvalidError: ReasonMissingIdentity
// for an empty id, ReasonBadDevice otherwise.
func CheckDeviceID(id string) error { return checkID("device", ReasonBadDevice, id) }

func checkID(what, reason, id string) error {
	switch {
	case id == "":
		return &InvalidError{Reason: ReasonMissingIdentity, Msg: what + " is empty"}
	case !validID(id):
		return &InvalidError{Reason: reason, Msg: what + " " + QuoteInput(id) + " is not 1 to " +
			strconv.Itoa(MaxIDLen) + " printable ASCII characters without space, '/', '+' or '#'"}
	}
	return nil
}

// ValidEventID reports whether id is a valid event_id: 1 to MaxEventIDLen bytes of UTF-8
// without control characters (C0, DEL, C1) and without format characters (Unicode Cf:
// bidirectional overrides such as U+202E, zero-width characters, BOM).
func ValidEventID(id string) bool {
	if len(id) == 0 || len(id) > MaxEventIDLen {
		return false
	}
	i := 0
	// Eight ASCII bytes at a time while all are in 0x20-0x7e (classEvent); the byte loop
	// takes the rest from the first word that is not.
	for ; i+8 <= len(id); i += 8 {
		w := uint64(id[i]) | uint64(id[i+1])<<8 | uint64(id[i+2])<<16 | uint64(id[i+3])<<24 |
			uint64(id[i+4])<<32 | uint64(id[i+5])<<40 | uint64(id[i+6])<<48 | uint64(id[i+7])<<56
		del := w ^ (0x7f * 0x0101010101010101)
		const ones, highs = 0x0101010101010101, 0x8080808080808080
		if (w|(w-0x20*ones)|(del-ones)&^del)&highs != 0 {
			break
		}
	}
	for i < len(id) {
		c := id[i]
		if c < utf8.RuneSelf {
			if byteClass[c]&classEvent == 0 {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(id[i:])
		// U+FFFD too: a JSON decoder puts it where the input had invalid UTF-8, so ids that
		// differed only in their invalid bytes would become one id and one would go unbilled.
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
		i += n
	}
	return true
}

// ValidPLMN reports whether v is a PLMN id as usage.v1 writes it: MCC-MNC, three digits,
// '-', two or three digits ("262-01", "310-260").
func ValidPLMN[T text](v T) bool {
	if len(v) != 6 && len(v) != 7 || v[3] != '-' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; i != 3 && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// ValidCell reports whether v is a valid cell: at most MaxCellLen bytes of printable
// ASCII without space (0x21 to 0x7e). Empty is valid (no cell).
func ValidCell[T text](v T) bool {
	if len(v) > MaxCellLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if byteClass[v[i]]&classCell == 0 {
			return false
		}
	}
	return true
}

// ValidRAT reports whether v is a radio access type as usage.v1 spells it: NR, EUTRA,
// NB-IoT, LTE-M, WLAN, or empty.
func ValidRAT(v string) bool {
	switch v {
	case "", "NR", "EUTRA", "NB-IoT", "LTE-M", "WLAN":
		return true
	}
	return false
}

// ValidSliceSD reports whether v is an S-NSSAI slice differentiator as usage.v1 writes
// it: six lowercase hex digits (three octets).
func ValidSliceSD[T text](v T) bool {
	if len(v) != 6 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Validate checks the invariants every accepted usage record keeps, wherever it came
// from: nil, or an *InvalidError whose Reason is a reason code. It does not allocate
// when u is valid. The rules, in the order they are checked:
//
//   - event_id present (ReasonMissingEventID); tenant and device present
//     (ReasonMissingIdentity), ValidTenantID (ReasonBadTenant), ValidDeviceID
//     (ReasonBadDevice); event_id ValidEventID (ReasonBadID);
//   - times: end_time not before start_time (ReasonBadInterval); start_time, end_time and
//     received_time within [MinTime, MaxTime) (ReasonBadTime);
//   - plmn, cell, rat: empty or ValidPLMN, ValidCell, ValidRAT (ReasonBadField);
//   - slices: slice_sd empty or ValidSliceSD, and only with slice_sst, since an S-NSSAI
//     without its SST is no slice (TS 23.003 28.4.2) (ReasonBadField);
//   - position: lat in [-90, 90] and lon in [-180, 180], not NaN (ReasonBadPosition).
//
// source is the collector's to set and is not checked.
func Validate(u *Usage) error {
	if err := checkHead(u); err != nil {
		return err
	}
	return checkBody(u)
}

// Limits are what a collector adds for live input, relative to each record's
// received_time. A zero field takes its DefaultLimits value.
type Limits struct {
	// MaxFutureSkew is how far past received_time a record may end (device clocks run fast).
	MaxFutureSkew time.Duration
	// MaxPastAge is how far before received_time a record may start.
	MaxPastAge time.Duration
	// MaxCounter bounds bytes_up, bytes_down, duration_ms and events.
	MaxCounter uint64
}

// DefaultLimits are the limits of the device collectors (MQTT, CoAP, HTTP): 5 minutes of
// clock skew, 35 days of age, DefaultMaxCounter.
func DefaultLimits() Limits {
	return Limits{MaxFutureSkew: 5 * time.Minute, MaxPastAge: 35 * 24 * time.Hour, MaxCounter: DefaultMaxCounter}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
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

// ValidateWithin is Validate for a record just received: it also refuses a record that
// ends more than lim.MaxFutureSkew after its received_time (ReasonFutureTime) or starts
// more than lim.MaxPastAge before it (ReasonStaleTime), checked right after the interval,
// and a counter above lim.MaxCounter (ReasonAbsurdCounter), checked before the fields.
// CDR files, back-fills and offline rating are history, and take Validate alone.
func ValidateWithin(u *Usage, lim Limits) error {
	if err := checkIdentity(u); err != nil {
		return err
	}
	return ValidateWithinIdentified(u, lim)
}

// ValidateWithinIdentified is ValidateWithin without its first rules, the identity:
// event_id, tenant and device present, ValidTenantID, ValidDeviceID, ValidEventID. It is
// for a collector that has applied those to the record itself (with CheckTenantID or
// ValidTenantID, CheckDeviceID, ValidEventID), refusing what they refuse, and would
// otherwise run them twice per record. For such a record it returns what ValidateWithin
// returns; it never passes a record ValidateWithin refuses for another reason.
func ValidateWithinIdentified(u *Usage, lim Limits) error {
	if u.EndTime < u.StartTime {
		return intervalError(u)
	}
	lim = lim.withDefaults()
	if u.ReceivedTime < MinTime || u.ReceivedTime >= MaxTime {
		return timeRangeError("received_time", u.ReceivedTime)
	}
	switch {
	case u.EndTime > u.ReceivedTime+lim.MaxFutureSkew.Milliseconds():
		return &InvalidError{Reason: ReasonFutureTime, Msg: "ends at " + FormatTime(u.EndTime) + ", after received " +
			FormatTime(u.ReceivedTime) + " + " + lim.MaxFutureSkew.String()}
	case u.StartTime < u.ReceivedTime-lim.MaxPastAge.Milliseconds():
		return &InvalidError{Reason: ReasonStaleTime, Msg: "starts at " + FormatTime(u.StartTime) + ", before received " +
			FormatTime(u.ReceivedTime) + " - " + lim.MaxPastAge.String()}
	}
	if max(u.BytesUp, u.BytesDown, u.DurationMs, u.Events) > lim.MaxCounter { // which one, in this order
		for _, c := range [...]struct {
			name string
			v    uint64
		}{{"bytes_up", u.BytesUp}, {"bytes_down", u.BytesDown}, {"duration_ms", u.DurationMs}, {"events", u.Events}} {
			if c.v > lim.MaxCounter {
				return &InvalidError{Reason: ReasonAbsurdCounter, Msg: c.name + " " + strconv.FormatUint(c.v, 10) +
					" exceeds " + strconv.FormatUint(lim.MaxCounter, 10)}
			}
		}
	}
	return checkBody(u)
}

// checkHead checks the identity, the event id and the interval.
func checkHead(u *Usage) error {
	if err := checkIdentity(u); err != nil {
		return err
	}
	if u.EndTime < u.StartTime {
		return intervalError(u)
	}
	return nil
}

// checkIdentity checks the event id, tenant and device.
func checkIdentity(u *Usage) error {
	switch {
	case u.EventID == "":
		return &InvalidError{Reason: ReasonMissingEventID, Msg: "event_id is empty"}
	case u.Tenant == "":
		return &InvalidError{Reason: ReasonMissingIdentity, Msg: "tenant is empty"}
	case u.Device == "":
		return &InvalidError{Reason: ReasonMissingIdentity, Msg: "device is empty"}
	case !validID(u.Tenant):
		return CheckTenantID(u.Tenant)
	case !validID(u.Device):
		return CheckDeviceID(u.Device)
	case !ValidEventID(u.EventID):
		return &InvalidError{Reason: ReasonBadID, Msg: "event_id " + QuoteInput(u.EventID) + " is not 1 to " +
			strconv.Itoa(MaxEventIDLen) + " bytes of UTF-8 without control or format characters"}
	}
	return nil
}

func intervalError(u *Usage) error {
	return &InvalidError{Reason: ReasonBadInterval, Msg: "end " + FormatTime(u.EndTime) + " before start " + FormatTime(u.StartTime)}
}

// checkBody checks the time range and the fields.
func checkBody(u *Usage) error {
	if min(u.StartTime, u.EndTime, u.ReceivedTime) < MinTime || max(u.StartTime, u.EndTime, u.ReceivedTime) >= MaxTime {
		for _, t := range [...]struct { // which one, in this order
			name string
			ms   int64
		}{{"start_time", u.StartTime}, {"end_time", u.EndTime}, {"received_time", u.ReceivedTime}} {
			if t.ms < MinTime || t.ms >= MaxTime {
				return timeRangeError(t.name, t.ms)
			}
		}
	}
	switch {
	case u.PLMN != "" && !ValidPLMN(u.PLMN):
		return &InvalidError{Reason: ReasonBadField, Msg: "plmn " + QuoteInput(u.PLMN) + " is not MCC-MNC (262-01)"}
	case !ValidCell(u.Cell):
		return &InvalidError{Reason: ReasonBadField, Msg: "cell must be at most " + strconv.Itoa(MaxCellLen) +
			" printable ASCII characters"}
	case !ValidRAT(u.RAT):
		return &InvalidError{Reason: ReasonBadField, Msg: "rat " + QuoteInput(u.RAT) + " is not NR, EUTRA, NB-IoT, LTE-M, WLAN or empty"}
	case u.SliceSD != "" && !u.HasSlice:
		return &InvalidError{Reason: ReasonBadField, Msg: "slice_sd needs slice_sst"}
	case u.SliceSD != "" && !ValidSliceSD(u.SliceSD):
		return &InvalidError{Reason: ReasonBadField, Msg: "slice_sd " + QuoteInput(u.SliceSD) + " is not 6 lowercase hex digits"}
	case u.HasPos && !(u.Lat >= -90 && u.Lat <= 90 && u.Lon >= -180 && u.Lon <= 180):
		return &InvalidError{Reason: ReasonBadPosition, Msg: "position " + strconv.FormatFloat(u.Lat, 'g', -1, 64) + "," +
			strconv.FormatFloat(u.Lon, 'g', -1, 64) + " out of range"}
	}
	return nil
}

func timeRangeError(name string, ms int64) error {
	return &InvalidError{Reason: ReasonBadTime, Msg: name + " " + FormatTime(ms) + " is outside " +
		FormatTime(MinTime) + " to " + FormatTime(MaxTime)}
}

// FormatTime writes ms since the epoch as JSON Lines do (TimeLayout), for messages.
func FormatTime(ms int64) string { return string(AppendTime(make([]byte, 0, 24), ms)) }

// maxQuoted bounds how much of an input QuoteInput shows.
const maxQuoted = 64

// QuoteInput quotes an untrusted input for an error message or a log: Go syntax with
// everything outside printable ASCII escaped (so control characters, terminal escape
// sequences, invalid UTF-8 and bidirectional overrides show as escapes, not act), and at
// most its first 64 bytes, followed by its length when it is longer.
func QuoteInput(s string) string {
	if len(s) <= maxQuoted {
		return strconv.QuoteToASCII(s)
	}
	cut := maxQuoted
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return strconv.QuoteToASCII(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
