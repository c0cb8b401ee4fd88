package record

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseRFC3339(t *testing.T) {
	// Expected instants are computed by time.Date, not by the parser's arithmetic.
	at := func(y int, mo time.Month, d, h, mi, s, ms int, offsetMin int) int64 {
		return time.Date(y, mo, d, h, mi, s, ms*1e6, time.UTC).UnixMilli() - int64(offsetMin)*60_000
	}
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"2026-11-25T11:00:00Z", at(2026, 11, 25, 11, 0, 0, 0, 0)},
		// RFC 3339 section 5.6: "T" and "Z" may be lower case.
		{"2026-11-25t11:00:00Z", at(2026, 11, 25, 11, 0, 0, 0, 0)},
		{"2026-11-25T11:00:00z", at(2026, 11, 25, 11, 0, 0, 0, 0)},
		{"2026-11-25t11:00:00.5z", at(2026, 11, 25, 11, 0, 0, 500, 0)},
		{"2026-11-25T11:00:00.123456789Z", at(2026, 11, 25, 11, 0, 0, 123, 0)},
		{"2026-11-25T11:00:00.1239999999999999Z", at(2026, 11, 25, 11, 0, 0, 123, 0)},
		{"2026-11-25T11:00:00.1Z", at(2026, 11, 25, 11, 0, 0, 100, 0)},
		{"2026-11-25T12:30:00+01:30", at(2026, 11, 25, 12, 30, 0, 0, 90)},
		{"2026-11-25T10:00:00-01:00", at(2026, 11, 25, 10, 0, 0, 0, -60)},
		{"2026-11-25T10:00:00-00:00", at(2026, 11, 25, 10, 0, 0, 0, 0)},
		{"2026-11-25T10:00:00+23:59", at(2026, 11, 25, 10, 0, 0, 0, 23*60+59)},
		{"2024-02-29T23:59:59.999Z", at(2024, 2, 29, 23, 59, 59, 999, 0)},
		{"2000-02-29T00:00:00Z", at(2000, 2, 29, 0, 0, 0, 0, 0)},
		{"1970-01-01T00:00:00Z", 0},
		// Before 1970 the fraction still counts forward: truncation is to the earlier ms.
		{"1969-12-31T23:59:59.9999Z", -1},
		{"0000-01-01T00:00:00Z", at(0, 1, 1, 0, 0, 0, 0, 0)},
		{"9999-12-31T23:59:59.999Z", at(9999, 12, 31, 23, 59, 59, 999, 0)},
	} {
		got, ok := ParseRFC3339(tc.in)
		if !ok || got != tc.want {
			t.Errorf("ParseRFC3339(%q) = %d, %v; want %d", tc.in, got, ok, tc.want)
		}
		if gotB, okB := ParseRFC3339([]byte(tc.in)); gotB != got || okB != ok {
			t.Errorf("ParseRFC3339([]byte(%q)) = %d, %v; the string gives %d, %v", tc.in, gotB, okB, got, ok)
		}
	}
	for _, in := range []string{
		"",
		"2026-11-25",
		"2026-11-25T11:00:00",       // no offset
		"2026-11-25 11:00:00Z",      // space separator
		"2026-11-25T11:00:00,5Z",    // comma fraction (time.Parse takes it)
		"2026-11-25T11:00:00.Z",     // dot without digits
		"2026-11-25T1:00:00Z",       // one-digit hour (time.Parse takes it)
		"2026-11-25T11:00:00+24:00", // offset hour (time.Parse takes it)
		"2026-11-25T11:00:00+01:60", // offset minute (time.Parse takes it)
		"2026-11-25T11:00:00+0100",
		"2026-11-25T11:00:00+01",
		"2026-11-25T11:00:00+01:00x",
		"2026-11-25T11:00:00Zx",
		"2026-11-25T24:00:00Z",
		"2026-11-25T23:60:00Z",
		"2026-12-31T23:59:60Z", // leap second
		"2026-02-29T00:00:00Z",
		"1900-02-29T00:00:00Z",
		"2026-04-31T00:00:00Z",
		"2026-13-01T00:00:00Z",
		"2026-00-01T00:00:00Z",
		"2026-01-00T00:00:00Z",
		"+2026-01-01T00:00:00Z",
		"-001-01-01T00:00:00Z",
		"2026/11/25T11:00:00Z",
		"2026-11-25X11:00:00Z",
		"2026-11-25T11:00:00\x00",
		"2026-11-25T11:00:00Z\n",
		" 2026-11-25T11:00:00Z",
		"２026-11-25T11:00:00Z",
	} {
		if got, ok := ParseRFC3339(in); ok {
			t.Errorf("ParseRFC3339(%q) = %d, want refused", in, got)
		}
	}
}

// rfc3339Grammar is RFC 3339 section 5.6 as a regular expression, with the section's
// allowance for lower-case t and z, and without the leap second: the reference the
// parser is held to, next to time.Parse for the calendar.
var rfc3339Grammar = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

// referenceRFC3339 parses s with the standard library where s follows the grammar.
func referenceRFC3339(s string) (int64, bool) {
	if !rfc3339Grammar.MatchString(s) {
		return 0, false
	}
	up := []byte(s)
	up[10] = 'T'
	if up[len(up)-1] == 'z' {
		up[len(up)-1] = 'Z'
	}
	tm, err := time.Parse(time.RFC3339Nano, string(up))
	if err != nil {
		return 0, false
	}
	return tm.UnixMilli(), true
}

// TestParseRFC3339Reference checks the parser against the grammar and time.Parse on
// random near-valid inputs.
func TestParseRFC3339Reference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		sep := "Tt"[r.IntN(2)]
		s := fmt.Sprintf("%04d-%02d-%02d%c%02d:%02d:%02d", r.IntN(10000), r.IntN(14), r.IntN(33), sep,
			r.IntN(25), r.IntN(61), r.IntN(61))
		switch r.IntN(3) {
		case 0:
			s += "." + fmt.Sprintf("%012d", r.Int64N(1_000_000_000_000))[:1+r.IntN(12)]
		case 1:
			s += [...]string{".", ",5"}[r.IntN(2)]
		}
		switch r.IntN(4) {
		case 0:
			s += "Z"
		case 1:
			s += "z"
		case 2:
			s += fmt.Sprintf("%c%02d:%02d", "+-"[r.IntN(2)], r.IntN(25), r.IntN(61))
		}
		got, ok := ParseRFC3339(s)
		want, wok := referenceRFC3339(s)
		if ok != wok || got != want {
			t.Fatalf("ParseRFC3339(%s) = %d, %v; reference %d, %v", s, got, ok, want, wok)
		}
	}
}

func TestParseRFC3339NoAlloc(t *testing.T) {
	b := []byte("2026-11-25T11:00:00.123+01:00")
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := ParseRFC3339(b); !ok {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Errorf("ParseRFC3339 allocates %v times, want 0", n)
	}
}

// FuzzParseRFC3339: no panic; the parser agrees with the grammar and time.Parse; what it
// accepts round-trips through TimeLayout when the UTC year stays in 0000-9999.
func FuzzParseRFC3339(f *testing.F) {
	for _, s := range []string{"2026-11-25T11:00:00Z", "2026-11-25t11:00:00.5z", "2026-11-25T11:00:00.123456789+01:30",
		"0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999-23:59", "2024-02-29T00:00:00Z", "2026-11-25T11:00:00,5Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseRFC3339(s)
		want, wok := referenceRFC3339(s)
		if ok != wok || got != want {
			t.Fatalf("ParseRFC3339(%q) = %d, %v; reference %d, %v", s, got, ok, want, wok)
		}
		if gotB, okB := ParseRFC3339([]byte(s)); gotB != got || okB != ok {
			t.Fatalf("bytes and string disagree on %q", s)
		}
		if !ok {
			return
		}
		out := FormatTime(got)
		if strings.HasPrefix(out, "-") || len(out) != len(TimeLayout)-len("Z07:00")+1 {
			return // the offset moved the instant out of years 0000-9999
		}
		if back, ok := ParseRFC3339(out); !ok || back != got {
			t.Fatalf("%q -> %d -> %s -> %d, %v", s, got, out, back, ok)
		}
	})
}
