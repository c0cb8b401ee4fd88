package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// TimeLayout is how JSON Lines write times: RFC 3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendJSON appends u as one JSON object (no newline) using the usage.v1 field names.
func AppendJSON(b []byte, u *Usage) []byte {
	b = append(b, '{')
	b = appendUsageFields(b, u)
	return append(b, '}')
}

// AppendRatedJSON appends r as one JSON object (no newline): every usage field, then the
// rating fields. amount is a six-decimal string.
func AppendRatedJSON(b []byte, r *Rated) []byte {
	b = append(b, '{')
	b = appendUsageFields(b, &r.Usage)
	b = appendStr(b, ",\"record_id\":", r.RecordID)
	b = appendStr(b, ",\"charge\":", r.Charge)
	b = appendStr(b, ",\"zone\":", r.Zone)
	b = appendStr(b, ",\"mobility\":", r.Mobility)
	b = appendStr(b, ",\"tariff\":", r.Tariff)
	b = appendStr(b, ",\"tariff_version\":", r.TariffVersion)
	b = appendStr(b, ",\"offer\":", r.Offer)
	b = append(b, ",\"active_devices\":"...)
	b = strconv.AppendUint(b, r.ActiveDevices, 10)
	b = appendStr(b, ",\"currency\":", r.Currency)
	b = append(b, ",\"amount\":\""...)
	b = r.Amount.Append(b)
	b = append(b, '"')
	b = appendTime(b, ",\"rated_time\":", r.RatedTime)
	return append(b, '}')
}

func appendUsageFields(b []byte, u *Usage) []byte {
	b = appendStr(b, "\"event_id\":", u.EventID)
	b = appendStr(b, ",\"tenant\":", u.Tenant)
	b = appendStr(b, ",\"device\":", u.Device)
	b = appendStr(b, ",\"source\":", u.Source)
	b = appendTime(b, ",\"start_time\":", u.StartTime)
	b = appendTime(b, ",\"end_time\":", u.EndTime)
	b = appendTime(b, ",\"received_time\":", u.ReceivedTime)
	b = appendUint(b, ",\"bytes_up\":", u.BytesUp)
	b = appendUint(b, ",\"bytes_down\":", u.BytesDown)
	b = appendUint(b, ",\"duration_ms\":", u.DurationMs)
	b = appendUint(b, ",\"events\":", u.Events)
	b = appendUint(b, ",\"rating_group\":", uint64(u.RatingGroup))
	b = appendStr(b, ",\"plmn\":", u.PLMN)
	b = appendStr(b, ",\"cell\":", u.Cell)
	if u.HasPos {
		b = append(b, ",\"lat\":"...)
		b = strconv.AppendFloat(b, u.Lat, 'g', -1, 64)
		b = append(b, ",\"lon\":"...)
		b = strconv.AppendFloat(b, u.Lon, 'g', -1, 64)
	} else {
		b = append(b, ",\"lat\":null,\"lon\":null"...)
	}
	b = appendStr(b, ",\"rat\":", u.RAT)
	if u.HasSlice {
		b = appendUint(b, ",\"slice_sst\":", uint64(u.SliceSST))
	} else {
		b = append(b, ",\"slice_sst\":null"...)
	}
	b = appendStr(b, ",\"slice_sd\":", u.SliceSD)
	return b
}

func appendStr(b []byte, key, s string) []byte {
	b = append(b, key...)
	return appendQuoted(b, s)
}

// appendQuoted writes s as a JSON string. strconv.AppendQuote is Go syntax, not JSON: it
// writes \x01 and \a, which JSON parsers refuse. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendQuoted(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(append(b, s[start:i]...), `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendUint(b []byte, key string, v uint64) []byte {
	b = append(b, key...)
	return strconv.AppendUint(b, v, 10)
}

func appendTime(b []byte, key string, ms int64) []byte {
	b = append(b, key...)
	b = append(b, '"')
	b = AppendTime(b, ms)
	return append(b, '"')
}

// usageJSON mirrors usage.v1 for decoding; pointers mark the nullable fields.
type usageJSON struct {
	EventID      string   `json:"event_id"`
	Tenant       string   `json:"tenant"`
	Device       string   `json:"device"`
	Source       string   `json:"source"`
	StartTime    string   `json:"start_time"`
	EndTime      string   `json:"end_time"`
	ReceivedTime string   `json:"received_time"`
	BytesUp      uint64   `json:"bytes_up"`
	BytesDown    uint64   `json:"bytes_down"`
	DurationMs   uint64   `json:"duration_ms"`
	Events       uint64   `json:"events"`
	RatingGroup  uint32   `json:"rating_group"`
	PLMN         string   `json:"plmn"`
	Cell         string   `json:"cell"`
	Lat          *float64 `json:"lat"`
	Lon          *float64 `json:"lon"`
	RAT          string   `json:"rat"`
	SliceSST     *uint8   `json:"slice_sst"`
	SliceSD      string   `json:"slice_sd"`
}

type ratedJSON struct {
	usageJSON
	RecordID      string `json:"record_id"`
	Charge        string `json:"charge"`
	Zone          string `json:"zone"`
	Mobility      string `json:"mobility"`
	Tariff        string `json:"tariff"`
	TariffVersion string `json:"tariff_version"`
	Offer         string `json:"offer"`
	ActiveDevices uint64 `json:"active_devices"`
	Currency      string `json:"currency"`
	Amount        string `json:"amount"`
	RatedTime     string `json:"rated_time"`
}

// ParseJSON decodes one usage.v1 JSON object. Unknown fields are errors, so a typo in a
// field name is not silently read as zero usage.
//
// It reads the line with a hand-written parser (jsonparse.go) that accepts, rejects and
// decodes exactly as encoding/json into usageJSON would, at a fraction of the cost.
func ParseJSON(line []byte) (Usage, error) {
	return parseJSONUsage(line, "", nil, nil)
}

// JSONLineReader is ParseJSON for a collector reading many lines, with two savings. NS,
// when set, confines event ids to a namespace: a non-empty event_id that does not start
// with NS gets NS in front (one that does is kept as is), in the parse. And the string
// fields of many records share one allocation (a chunk of a few KiB, never written again
// once a record holds part of it) instead of one per record. It also expects each line
// to name its fields in the order the previous one did, and checks that guess first.
// Not safe for concurrent use.
type JSONLineReader struct {
	NS    string
	chunk []byte
	order keyOrder
}

// Parse decodes one usage.v1 JSON object, as ParseJSON.
func (r *JSONLineReader) Parse(line []byte) (Usage, error) {
	return parseJSONUsage(line, r.NS, &r.chunk, &r.order)
}

// ParseInto is Parse decoding into *u (zeroed first), for a caller that builds records in
// place in its own slice. On an error *u holds no meaningful record.
func (r *JSONLineReader) ParseInto(line []byte, u *Usage) error {
	return parseJSONInto(line, r.NS, &r.chunk, &r.order, u)
}

// ParseRatedJSON decodes one rated JSON object.
func ParseRatedJSON(line []byte) (Rated, error) {
	var j ratedJSON
	if err := strictUnmarshal(line, &j); err != nil {
		return Rated{}, err
	}
	u, err := j.usage()
	if err != nil {
		return Rated{}, err
	}
	r := Rated{Usage: u, RecordID: j.RecordID, Charge: j.Charge, Zone: j.Zone, Mobility: j.Mobility,
		Tariff: j.Tariff, TariffVersion: j.TariffVersion, Offer: j.Offer, ActiveDevices: j.ActiveDevices,
		Currency: j.Currency}
	if r.Amount, err = ParseMicros(j.Amount); err != nil {
		return Rated{}, fmt.Errorf("field amount: %w", err)
	}
	if r.RatedTime, err = parseTime("rated_time", j.RatedTime); err != nil {
		return Rated{}, err
	}
	return r, nil
}

func strictUnmarshal(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode json: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("decode json: trailing data after object")
	}
	return nil
}

func (j *usageJSON) usage() (Usage, error) {
	u := Usage{EventID: j.EventID, Tenant: j.Tenant, Device: j.Device, Source: j.Source,
		BytesUp: j.BytesUp, BytesDown: j.BytesDown, DurationMs: j.DurationMs, Events: j.Events,
		RatingGroup: j.RatingGroup, PLMN: j.PLMN, Cell: j.Cell, RAT: j.RAT, SliceSD: j.SliceSD}
	var err error
	if u.StartTime, err = parseTime("start_time", j.StartTime); err != nil {
		return Usage{}, err
	}
	u.EndTime = u.StartTime
	if j.EndTime != "" {
		if u.EndTime, err = parseTime("end_time", j.EndTime); err != nil {
			return Usage{}, err
		}
	}
	if j.ReceivedTime != "" {
		if u.ReceivedTime, err = parseTime("received_time", j.ReceivedTime); err != nil {
			return Usage{}, err
		}
	}
	if (j.Lat == nil) != (j.Lon == nil) {
		return Usage{}, fmt.Errorf("decode json: lat and lon must both be set or both be null")
	}
	if j.Lat != nil {
		if math.IsNaN(*j.Lat) || math.IsNaN(*j.Lon) {
			return Usage{}, fmt.Errorf("decode json: position is NaN")
		}
		u.Lat, u.Lon, u.HasPos = *j.Lat, *j.Lon, true
	}
	if j.SliceSST != nil {
		u.SliceSST, u.HasSlice = *j.SliceSST, true
	}
	return u, nil
}

func parseTime(field, s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("field %s: missing", field)
	}
	ms, ok := ParseRFC3339(s)
	if !ok {
		return 0, timeFieldError(field, s)
	}
	return ms, nil
}

// timeFieldError says that field holds s, which is not an RFC 3339 time.
func timeFieldError(field, s string) error {
	return fmt.Errorf("field %s: %s is not an RFC 3339 time (YYYY-MM-DDThh:mm:ss[.fff] and Z or +hh:mm)", field, QuoteInput(s))
}
