package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// bigInput is 1.5 MB that differs after the first MaxRejectRaw bytes from its prefix
// repeated, so a hash of the prefix alone would not match.
func bigInput() []byte {
	b := bytes.Repeat([]byte("0123456789abcdef"), 1536<<10/16)
	b[len(b)-1] = 'X'
	return b
}

func TestRejectionSetRawBounds(t *testing.T) {
	in := bigInput()
	want := sumHex(in)
	var r Rejection
	r.Source, r.Tenant, r.Device, r.Reason, r.Detail, r.Received = SourceMQTT, "acme", "meter-1", ReasonBadJSON, "x", 1764064800000
	r.SetRaw(in)
	if len(r.Raw) != MaxRejectRaw || r.RawLen != int64(len(in)) || r.RawSHA256 != want || !r.Truncated() {
		t.Fatalf("SetRaw: raw %d bytes, raw_len %d, sha %s, truncated %v; want %d, %d, %s, true",
			len(r.Raw), r.RawLen, r.RawSHA256, r.Truncated(), MaxRejectRaw, len(in), want)
	}
	in[0] = 'Z' // the caller reuses its buffer
	if r.Raw[0] != '0' {
		t.Fatal("SetRaw kept the caller's buffer instead of a copy")
	}
	line := r.AppendJSON(nil)
	if len(line) > 100<<10 || !json.Valid(line) {
		t.Fatalf("rejection of a 1.5 MB input is %d bytes (valid JSON: %v), want under 100 KiB", len(line), json.Valid(line))
	}
	got, err := ParseRejection(line)
	if err != nil {
		t.Fatal(err)
	}
	if got.RawLen != r.RawLen || got.RawSHA256 != want || !bytes.Equal(got.Raw, r.Raw) || got.Reason != r.Reason ||
		got.Device != r.Device || got.Received != r.Received {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
}

// TestRejectionAppendJSONBoundsLiterals: a producer that fills Raw, Detail or Device
// itself still writes a small message; raw_len and raw_sha256 describe its whole Raw.
func TestRejectionAppendJSONBoundsLiterals(t *testing.T) {
	in := bigInput()
	r := Rejection{Source: "kafka", Device: strings.Repeat("d", 10<<10), Reason: ReasonBadBatch,
		Detail: strings.Repeat("é", 1<<20), Raw: in}
	line := r.AppendJSON(nil)
	if len(line) > 100<<10 || !json.Valid(line) {
		t.Fatalf("rejection is %d bytes (valid JSON: %v), want under 100 KiB", len(line), json.Valid(line))
	}
	got, err := ParseRejection(line)
	if err != nil {
		t.Fatal(err)
	}
	if n, sum := r.RawInfo(); n != int64(len(in)) || sum != sumHex(in) || !bytes.Equal(r.RawPrefix(), in[:MaxRejectRaw]) {
		t.Errorf("RawInfo %d, %s; RawPrefix %d bytes: want what AppendJSON writes", n, sum, len(r.RawPrefix()))
	}
	if got.RawLen != int64(len(in)) || got.RawSHA256 != sumHex(in) || !bytes.Equal(got.Raw, in[:MaxRejectRaw]) {
		t.Errorf("raw %d bytes, raw_len %d, sha %s; want the prefix, %d, %s", len(got.Raw), got.RawLen, got.RawSHA256, len(in), sumHex(in))
	}
	if len(got.Detail) > MaxRejectDetail || !strings.HasSuffix(got.Detail, "é...") {
		t.Errorf("detail of %d bytes ends %q, want at most %d ending with a whole character and ...",
			len(got.Detail), got.Detail[max(0, len(got.Detail)-8):], MaxRejectDetail)
	}
	if want := QuoteInput(r.Device); got.Device != want {
		t.Errorf("device %q, want %q", got.Device, want)
	}
}

// TestRejectionJSONInert: whatever a producer puts in tenant, device and detail, the
// decoded rejection holds no control or format characters (which a terminal or log viewer
// would act on) and no invalid UTF-8; valid ids, newlines and tabs stay as they were.
func TestRejectionJSONInert(t *testing.T) {
	hostile := []string{"dev\x00ice", "dev\x1b[31mice", "dev\u202eecived", "dev\xffice", "dev\x01ice", "dev\u0085ice",
		"dev\u200bice", strings.Repeat("d", 10<<10)}
	for _, h := range hostile {
		r := Rejection{Source: SourceMQTT, Tenant: h, Device: h, Reason: ReasonBadDevice, Detail: "device " + h + " refused\n\tsee above"}
		got, err := ParseRejection(r.AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{got.Tenant, got.Device, got.Detail} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(c rune) bool {
				return c != '\n' && c != '\t' && (unicode.IsControl(c) || unicode.Is(unicode.Cf, c))
			}) {
				t.Errorf("%s: decoded %s", QuoteInput(h), QuoteInput(s))
			}
		}
		if got.Device != QuoteInput(h) || len(h) < 1<<10 && !strings.HasSuffix(got.Detail, " refused\n\tsee above") {
			t.Errorf("%s: device %s, detail %s", QuoteInput(h), QuoteInput(got.Device), QuoteInput(got.Detail))
		}
	}
	r := Rejection{Tenant: "acme", Device: "nai-x@iot.example", Detail: "plain détail"}
	got, err := ParseRejection(r.AppendJSON(nil))
	if err != nil || got.Tenant != r.Tenant || got.Device != r.Device || got.Detail != r.Detail {
		t.Errorf("valid ids and detail changed: %+v, %v", got, err)
	}
}

func TestRejectionRoundTrip(t *testing.T) {
	for _, raw := range [][]byte{nil, []byte(`{"bytes_up":"lots"}`), {0, 0xff, 0x1b}} {
		r := Rejection{Source: SourceCoAP, Tenant: "acme", Device: "d1", Reason: ReasonBadField, Detail: "bytes_up must be a number",
			Received: 1764064800123}
		r.SetRaw(raw)
		got, err := ParseRejection(r.AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Raw, raw) || got.RawLen != int64(len(raw)) || got.Truncated() {
			t.Errorf("raw %q: got raw %q, raw_len %d", raw, got.Raw, got.RawLen)
		}
		if len(raw) > 0 && got.RawSHA256 != sumHex(raw) || len(raw) == 0 && got.RawSHA256 != "" {
			t.Errorf("raw %q: sha %q", raw, got.RawSHA256)
		}
		if got.Source != r.Source || got.Tenant != r.Tenant || got.Device != r.Device || got.Reason != r.Reason ||
			got.Detail != r.Detail || got.Received != r.Received {
			t.Errorf("got  %+v\nwant %+v", got, r)
		}
	}
}

// TestParseRejectionCompat: messages written before raw_len and raw_sha256 still decode,
// with their raw as the whole input; inconsistent ones do not.
func TestParseRejectionCompat(t *testing.T) {
	old := `{"source":"mqtt","tenant":"acme","device":"d1","reason":"bad_json","detail":"x","raw":"eyJh","received_time":"2025-11-25T10:00:00.000Z"}`
	got, err := ParseRejection([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Raw) != `{"a` || got.RawLen != 3 || got.RawSHA256 != sumHex([]byte(`{"a`)) || got.Received != 1764064800000 {
		t.Errorf("old message: %+v", got)
	}
	for _, bad := range []string{
		`{"raw":"eyJh","raw_len":2,"raw_sha256":"00"}`,
		`{"raw":"eyJh","raw_len":3}`,
		`{"raw":"eyJh","raw_sha256":"00"}`,
		`{"received_time":"2025-11-25 10:00:00Z"}`,
	} {
		if _, err := ParseRejection([]byte(bad)); err == nil {
			t.Errorf("ParseRejection(%s) accepted", bad)
		}
	}
}
