package record

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Bounds of a rejection as it is written, so that refusing a 1.5 MB input costs a small
// Kafka message and a small ClickHouse row, never a message the broker refuses.
const (
	// MaxRejectRaw bounds Raw: a rejection keeps at most the first 64 KiB of the input,
	// with the input's length and SHA-256 beside it.
	MaxRejectRaw = 64 << 10
	// MaxRejectDetail bounds Detail, in bytes.
	MaxRejectDetail = 4 << 10
)

// Rejection is one refused input as it lands on topic rejected: nothing is dropped
// silently. Raw is the input as received, or its first MaxRejectRaw bytes: RawLen and
// RawSHA256 describe the whole input, so a replay can tell whether it has the same one.
// Fill Raw with SetRaw, which copies and bounds; AppendJSON bounds what it writes in any
// case. Tenant and Device are what the transport named, valid or not: an invalid one is
// written escaped (QuoteInput), never as raw bytes.
type Rejection struct {
	Source    string
	Tenant    string
	Device    string
	Reason    string // one of the reason codes (Reasons)
	Detail    string // human-readable message
	Raw       []byte // the input, or its first MaxRejectRaw bytes (base64 in JSON)
	RawLen    int64  // length of the whole input
	RawSHA256 string // SHA-256 of the whole input, lowercase hex; empty: both of Raw
	Received  int64  // ms since epoch
}

// SetRaw stores input in r: a copy of at most its first MaxRejectRaw bytes, its length
// and its SHA-256. The copy leaves input free for reuse (collectors reuse their buffers).
func (r *Rejection) SetRaw(input []byte) {
	r.Raw = append([]byte(nil), input[:min(len(input), MaxRejectRaw)]...)
	r.RawLen = int64(len(input))
	r.RawSHA256 = sha256Hex(input)
}

// RawInfo returns the length and SHA-256 (lowercase hex, empty for an empty input) of
// the whole input, as AppendJSON writes them: those SetRaw or ParseRejection recorded,
// else those of Raw. A store that keeps rejections (ClickHouse) writes these beside
// RawPrefix.
func (r *Rejection) RawInfo() (length int64, sum string) {
	if r.RawSHA256 != "" && r.RawLen >= int64(len(r.Raw)) {
		return r.RawLen, r.RawSHA256
	}
	return int64(len(r.Raw)), sha256Hex(r.Raw)
}

// RawPrefix returns Raw cut to MaxRejectRaw bytes, as AppendJSON writes it.
func (r *Rejection) RawPrefix() []byte { return r.Raw[:min(len(r.Raw), MaxRejectRaw)] }

func sha256Hex(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// AppendJSON appends the rejection as one JSON object:
//
//	{"source":..,"tenant":..,"device":..,"reason":..,"detail":..,"raw":"<base64>",
//	 "raw_len":N,"raw_sha256":"<hex>","received_time":".."}
//
// Whatever r holds, what it writes is bounded and inert: raw holds at most MaxRejectRaw
// bytes; detail at most MaxRejectDetail (cut at a character boundary, "..." appended),
// with control and format characters and invalid UTF-8 escaped; a tenant or device that
// is not a valid id is written as QuoteInput writes it (quoted, escaped, at most 64
// bytes of it); source and reason, set by code, at most MaxIDLen. raw_len and raw_sha256
// describe the whole input (raw_sha256 is empty for an empty input).
func (r *Rejection) AppendJSON(b []byte) []byte {
	rawLen, sum := r.RawInfo()
	b = appendStr(b, "{\"source\":", bounded(r.Source, MaxIDLen))
	b = appendStr(b, ",\"tenant\":", inertID(r.Tenant))
	b = appendStr(b, ",\"device\":", inertID(r.Device))
	b = appendStr(b, ",\"reason\":", bounded(r.Reason, MaxIDLen))
	b = appendStr(b, ",\"detail\":", escapeControls(bounded(r.Detail, MaxRejectDetail)))
	b = append(b, ",\"raw\":\""...)
	b = base64.StdEncoding.AppendEncode(b, r.RawPrefix())
	b = append(b, "\",\"raw_len\":"...)
	b = strconv.AppendInt(b, rawLen, 10)
	b = appendStr(b, ",\"raw_sha256\":", sum)
	b = appendTime(b, ",\"received_time\":", r.Received)
	return append(b, '}')
}

// inertID is a tenant or device id as a rejection writes it: as it is when valid or
// empty, else quoted and escaped, so no terminal or log viewer acts on it.
func inertID(s string) string {
	if s == "" || validID(s) {
		return s
	}
	return QuoteInput(s)
}

// escapeControls returns s with control characters other than newline and tab, format
// characters (bidirectional overrides, zero-width characters) and invalid UTF-8 written
// as Go escapes; s itself when it has none.
func escapeControls(s string) string {
	clean := true
	for _, r := range s {
		if r != '\n' && r != '\t' && (r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b []byte
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\x`...)
			b = append(b, hexDigit[s[i]>>4], hexDigit[s[i]&0xf])
		case r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)):
			q := strconv.QuoteRuneToASCII(r)
			b = append(b, q[1:len(q)-1]...)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

const hexDigit = "0123456789abcdef"

// bounded cuts s to at most max bytes, at a character boundary, marking the cut with "...".
func bounded(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("...")
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return s[:cut] + "..."
}

// ParseRejection decodes what AppendJSON wrote. A rejection written before raw_len and
// raw_sha256 existed decodes with the length and SHA-256 of its raw, which was the whole
// input then.
func ParseRejection(b []byte) (Rejection, error) {
	var j struct {
		Source    string  `json:"source"`
		Tenant    string  `json:"tenant"`
		Device    string  `json:"device"`
		Reason    string  `json:"reason"`
		Detail    string  `json:"detail"`
		Raw       []byte  `json:"raw"`
		RawLen    *int64  `json:"raw_len"`
		RawSHA256 *string `json:"raw_sha256"`
		Received  string  `json:"received_time"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return Rejection{}, fmt.Errorf("decode rejection: %w", err)
	}
	r := Rejection{Source: j.Source, Tenant: j.Tenant, Device: j.Device, Reason: j.Reason, Detail: j.Detail, Raw: j.Raw}
	switch {
	case j.RawLen == nil && j.RawSHA256 == nil:
		r.RawLen, r.RawSHA256 = int64(len(r.Raw)), sha256Hex(r.Raw)
	case j.RawLen == nil || j.RawSHA256 == nil:
		return Rejection{}, errors.New("decode rejection: raw_len and raw_sha256 go together")
	case *j.RawLen < int64(len(r.Raw)):
		return Rejection{}, fmt.Errorf("decode rejection: raw_len %d is below the %d bytes of raw", *j.RawLen, len(r.Raw))
	default:
		r.RawLen, r.RawSHA256 = *j.RawLen, *j.RawSHA256
	}
	if j.Received != "" {
		ms, ok := ParseRFC3339(j.Received)
		if !ok {
			return Rejection{}, fmt.Errorf("decode rejection: received_time %s is not an RFC 3339 time", QuoteInput(j.Received))
		}
		r.Received = ms
	}
	return r, nil
}

// Truncated reports whether Raw holds less than the whole input.
func (r *Rejection) Truncated() bool { return r.RawLen > int64(len(r.Raw)) }
