package record

import (
	"errors"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// hostileIDs are ids no collector may bill under: each the name of the attack.
var hostileIDs = []struct{ name, id string }{
	{"empty", ""},
	{"NUL", "dev\x00ice"},
	{"ANSI escape", "dev\x1b[31mice"},
	{"right-to-left override", "dev\u202eecived"},
	{"invalid UTF-8", "dev\xffice"},
	{"10 KB", strings.Repeat("d", 10<<10)},
	{"129 bytes", strings.Repeat("d", MaxIDLen+1)},
	{"control character", "dev\x01ice"},
	{"newline", "dev\nice"},
	{"tab", "dev\tice"},
	{"DEL", "dev\x7fice"},
	{"C1 control", "dev\u0085ice"},
	{"space", "dev ice"},
	{"zero-width space", "dev\u200bice"},
	{"byte order mark", "\ufeffdevice"},
	{"Cyrillic look-alike", "dеvice"}, // the е is U+0435
	{"fullwidth", "ｄevice"},
	{"MQTT level separator", "dev/ice"},
	{"MQTT single-level wildcard", "dev+ice"},
	{"MQTT multi-level wildcard", "dev#ice"},
}

// goodIDs are ids every collector must accept.
var goodIDs = []string{
	"d", "meter-1", "imsi-262019876543210", "nai-sensor-17@iot.example.com", "msisdn-4915112345678",
	"dev-udp:1", "a.b_c~d", `quote"back\slash`, strings.Repeat("d", MaxIDLen), "!$%&'()*,;<=>?[]^`{|}",
}

func validUsage() Usage {
	return Usage{EventID: "mqtt:acme:meter-1:42", Tenant: "acme", Device: "meter-1", Source: SourceMQTT,
		StartTime: 1764064800000, EndTime: 1764064860000, ReceivedTime: 1764064861234,
		BytesUp: 1200, BytesDown: 34000, DurationMs: 60000, Events: 3, RatingGroup: 10,
		PLMN: "262-01", Cell: "262-01-0x1a2b3c", Lat: 52.52, Lon: 13.405, HasPos: true, RAT: "NB-IoT",
		SliceSST: 1, HasSlice: true, SliceSD: "00a1b2"}
}

func reasonOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("error %v is not an *InvalidError", err)
	}
	if !KnownReason(inv.Reason) {
		t.Fatalf("error %v has reason %q, not in the table", err, inv.Reason)
	}
	return inv.Reason
}

func TestValidIDs(t *testing.T) {
	for _, h := range hostileIDs {
		if ValidDeviceID(h.id) || ValidTenantID(h.id) || ValidDeviceID([]byte(h.id)) {
			t.Errorf("%s: %q accepted as an id", h.name, h.id)
		}
		want := ReasonBadDevice
		if h.id == "" {
			want = ReasonMissingIdentity
		}
		if got := reasonOf(t, CheckDeviceID(h.id)); got != want {
			t.Errorf("%s: CheckDeviceID reason %q, want %q", h.name, got, want)
		}
		if want == ReasonBadDevice {
			want = ReasonBadTenant
		}
		if got := reasonOf(t, CheckTenantID(h.id)); got != want {
			t.Errorf("%s: CheckTenantID reason %q, want %q", h.name, got, want)
		}
	}
	for _, id := range goodIDs {
		if !ValidDeviceID(id) || !ValidTenantID(id) || CheckDeviceID(id) != nil || CheckTenantID(id) != nil {
			t.Errorf("%q refused as an id", id)
		}
	}
}

// TestValidateHostileIdentity: a record with a hostile tenant or device is refused,
// whatever else it holds, and the message shows the id escaped and bounded.
func TestValidateHostileIdentity(t *testing.T) {
	for _, h := range hostileIDs {
		for _, field := range []string{"tenant", "device"} {
			u := validUsage()
			want := ReasonBadTenant
			if field == "tenant" {
				u.Tenant = h.id
			} else {
				u.Device = h.id
				want = ReasonBadDevice
			}
			if h.id == "" {
				want = ReasonMissingIdentity
			}
			err := Validate(&u)
			if got := reasonOf(t, err); got != want {
				t.Errorf("%s %s: reason %q, want %q", field, h.name, got, want)
				continue
			}
			if msg := err.Error(); len(msg) > 300 || strings.ContainsFunc(msg, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
				t.Errorf("%s %s: message not escaped and bounded: %q", field, h.name, msg)
			}
			if got := reasonOf(t, ValidateWithin(&u, Limits{})); got != want {
				t.Errorf("%s %s: ValidateWithin reason %q, want %q", field, h.name, got, want)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(u *Usage)
		reason string
	}{
		{"valid", func(u *Usage) {}, ""},
		{"minimal", func(u *Usage) { *u = Usage{EventID: "e", Tenant: "t", Device: "d"} }, ""},
		{"unicode event id", func(u *Usage) { u.EventID = "http:acme:événement-①" }, ""},
		{"no event id", func(u *Usage) { u.EventID = "" }, ReasonMissingEventID},
		{"no tenant", func(u *Usage) { u.Tenant = "" }, ReasonMissingIdentity},
		{"no device", func(u *Usage) { u.Device = "" }, ReasonMissingIdentity},
		{"event id NUL", func(u *Usage) { u.EventID = "e\x00" }, ReasonBadID},
		{"event id ANSI", func(u *Usage) { u.EventID = "e\x1b[31m" }, ReasonBadID},
		{"event id RLO", func(u *Usage) { u.EventID = "e\u202e1" }, ReasonBadID},
		{"event id invalid UTF-8", func(u *Usage) { u.EventID = "e\xff" }, ReasonBadID},
		{"event id C1", func(u *Usage) { u.EventID = "e\u0085" }, ReasonBadID},
		{"event id 10 KB", func(u *Usage) { u.EventID = strings.Repeat("e", 10<<10) }, ReasonBadID},
		{"event id at the limit", func(u *Usage) { u.EventID = strings.Repeat("e", MaxEventIDLen) }, ""},
		{"end before start", func(u *Usage) { u.EndTime = u.StartTime - 1 }, ReasonBadInterval},
		{"start before 1970", func(u *Usage) { u.StartTime = -1 }, ReasonBadTime},
		{"start at 1970", func(u *Usage) { u.StartTime = 0 }, ""},
		{"end at 2100", func(u *Usage) { u.EndTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() }, ReasonBadTime},
		{"end just before 2100", func(u *Usage) { u.EndTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() - 1 }, ""},
		{"received before 1970", func(u *Usage) { u.ReceivedTime = -1 }, ReasonBadTime},
		// Any counter: the rater prices all of uint64; the plausibility bound is Limits'.
		{"bytes_down max uint64", func(u *Usage) { u.BytesDown = math.MaxUint64 }, ""},
		{"plmn three-digit MNC", func(u *Usage) { u.PLMN = "310-260" }, ""},
		{"plmn without dash", func(u *Usage) { u.PLMN = "26201" }, ReasonBadField},
		{"plmn letters", func(u *Usage) { u.PLMN = "26a-01" }, ReasonBadField},
		{"cell 64", func(u *Usage) { u.Cell = strings.Repeat("c", 64) }, ""},
		{"cell 65", func(u *Usage) { u.Cell = strings.Repeat("c", 65) }, ReasonBadField},
		{"cell control", func(u *Usage) { u.Cell = "a\x01" }, ReasonBadField},
		{"cell space", func(u *Usage) { u.Cell = "a b" }, ReasonBadField},
		{"cell RLO", func(u *Usage) { u.Cell = "a\u202e" }, ReasonBadField},
		{"rat lower case", func(u *Usage) { u.RAT = "nr" }, ReasonBadField},
		{"rat LTE", func(u *Usage) { u.RAT = "LTE" }, ReasonBadField},
		{"slice_sst without slice_sd", func(u *Usage) { u.SliceSD = "" }, ""},
		{"slice_sd without slice_sst", func(u *Usage) { u.HasSlice, u.SliceSST = false, 0 }, ReasonBadField},
		{"slice_sd upper case", func(u *Usage) { u.SliceSD = "00A1B2" }, ReasonBadField},
		{"slice_sd short", func(u *Usage) { u.SliceSD = "00a1b" }, ReasonBadField},
		{"lat 90", func(u *Usage) { u.Lat = 90 }, ""},
		{"lat 90.000001", func(u *Usage) { u.Lat = 90.000001 }, ReasonBadPosition},
		{"lon -180", func(u *Usage) { u.Lon = -180 }, ""},
		{"lon -180.5", func(u *Usage) { u.Lon = -180.5 }, ReasonBadPosition},
		{"lat NaN", func(u *Usage) { u.Lat = math.NaN() }, ReasonBadPosition},
		{"lon +Inf", func(u *Usage) { u.Lon = math.Inf(1) }, ReasonBadPosition},
		{"no position, any lat", func(u *Usage) { u.HasPos, u.Lat = false, 1000 }, ""},
	} {
		u := validUsage()
		tc.change(&u)
		if got := reasonOf(t, Validate(&u)); got != tc.reason {
			t.Errorf("%s: reason %q, want %q (%v)", tc.name, got, tc.reason, Validate(&u))
		}
		if got := reasonOf(t, u.Validate()); got != tc.reason {
			t.Errorf("%s: method reason %q, want %q", tc.name, got, tc.reason)
		}
	}
}

func TestValidateWithin(t *testing.T) {
	received := validUsage().ReceivedTime
	for _, tc := range []struct {
		name   string
		lim    Limits
		change func(u *Usage)
		reason string
	}{
		{"valid", Limits{}, func(u *Usage) {}, ""},
		{"ends 5 min after received", Limits{}, func(u *Usage) { u.EndTime = received + 5*60_000 }, ""},
		{"ends 5 min 1 ms after received", Limits{}, func(u *Usage) { u.EndTime = received + 5*60_000 + 1 }, ReasonFutureTime},
		{"skew 1 h", Limits{MaxFutureSkew: time.Hour}, func(u *Usage) { u.EndTime = received + 5*60_000 + 1 }, ""},
		{"starts 35 days before", Limits{}, func(u *Usage) { u.StartTime = received - 35*24*3600_000 }, ""},
		{"starts 35 days 1 ms before", Limits{}, func(u *Usage) { u.StartTime = received - 35*24*3600_000 - 1 }, ReasonStaleTime},
		{"bytes_up at 2^50", Limits{}, func(u *Usage) { u.BytesUp = 1 << 50 }, ""},
		{"bytes_up above 2^50", Limits{}, func(u *Usage) { u.BytesUp = 1<<50 + 1 }, ReasonAbsurdCounter},
		{"bytes_down above 2^50", Limits{}, func(u *Usage) { u.BytesDown = math.MaxUint64 }, ReasonAbsurdCounter},
		{"duration_ms above 2^50", Limits{}, func(u *Usage) { u.DurationMs = 1<<50 + 1 }, ReasonAbsurdCounter},
		{"events above 2^50", Limits{}, func(u *Usage) { u.Events = 1<<50 + 1 }, ReasonAbsurdCounter},
		{"counter under a lower limit", Limits{MaxCounter: 1000}, func(u *Usage) { u.BytesUp, u.BytesDown, u.DurationMs = 1000, 0, 0 }, ""},
		{"counter over a lower limit", Limits{MaxCounter: 1000}, func(u *Usage) { u.BytesUp, u.BytesDown, u.DurationMs = 1001, 0, 0 }, ReasonAbsurdCounter},
		{"a higher limit", Limits{MaxCounter: math.MaxUint64}, func(u *Usage) { u.BytesUp = math.MaxUint64 }, ""},
		{"received before 1970", Limits{}, func(u *Usage) { u.ReceivedTime, u.StartTime, u.EndTime = -10, -10, -10 }, ReasonBadTime},
		{"interval first", Limits{}, func(u *Usage) { u.EndTime = u.StartTime - 1 }, ReasonBadInterval},
		{"window before fields", Limits{}, func(u *Usage) { u.EndTime = received + time.Hour.Milliseconds(); u.PLMN = "x" }, ReasonFutureTime},
		{"counter before fields", Limits{}, func(u *Usage) { u.Events = 1<<50 + 1; u.PLMN = "x" }, ReasonAbsurdCounter},
		{"plmn", Limits{}, func(u *Usage) { u.PLMN = "26201" }, ReasonBadField},
		{"position", Limits{}, func(u *Usage) { u.Lat = math.NaN() }, ReasonBadPosition},
		{"start before 1970 within a long age", Limits{MaxPastAge: 100 * 365 * 24 * time.Hour}, func(u *Usage) { u.StartTime = -1 }, ReasonBadTime},
		{"end at 2100 within a long skew", Limits{MaxFutureSkew: 100 * 365 * 24 * time.Hour}, func(u *Usage) { u.EndTime = MaxTime }, ReasonBadTime},
	} {
		u := validUsage()
		tc.change(&u)
		if got := reasonOf(t, ValidateWithin(&u, tc.lim)); got != tc.reason {
			t.Errorf("%s: reason %q, want %q (%v)", tc.name, got, tc.reason, ValidateWithin(&u, tc.lim))
		}
		// The identity is good in every case: the rest is all ValidateWithin checks.
		if got := reasonOf(t, ValidateWithinIdentified(&u, tc.lim)); got != tc.reason {
			t.Errorf("%s: ValidateWithinIdentified reason %q, want %q", tc.name, got, tc.reason)
		}
	}
}

func TestValidateNoAlloc(t *testing.T) {
	u := validUsage()
	if n := testing.AllocsPerRun(100, func() {
		if err := ValidateWithin(&u, Limits{}); err != nil {
			t.Fatal(err)
		}
		if err := ValidateWithinIdentified(&u, Limits{}); err != nil {
			t.Fatal(err)
		}
		if err := Validate(&u); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("validating a valid record allocates %v times, want 0", n)
	}
}

func TestQuoteInput(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"meter-1", `"meter-1"`},
		{"a\x1b[31mb", `"a\x1b[31mb"`},
		{"a\u202eb", `"a\u202eb"`},
		{"a\xffb", `"a\xffb"`},
		{strings.Repeat("x", 100), `"` + strings.Repeat("x", 64) + `"... (100 bytes)`},
		// The cut does not split a character.
		{strings.Repeat("x", 63) + "é" + strings.Repeat("x", 10), `"` + strings.Repeat("x", 63) + `"... (75 bytes)`},
	} {
		if got := QuoteInput(tc.in); got != tc.want {
			t.Errorf("QuoteInput(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// Reference predicates for FuzzValidate, written as patterns rather than loops.
var (
	refID   = regexp.MustCompile(`^[!-~]{1,128}$`)
	refPLMN = regexp.MustCompile(`^(|\d{3}-\d{2,3})$`)
	refCell = regexp.MustCompile(`^[!-~]{0,64}$`)
	refSD   = regexp.MustCompile(`^(|[0-9a-f]{6})$`)
)

func refValidEventID(s string) bool {
	if s == "" || len(s) > 512 || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r == utf8.RuneError || unicode.In(r, unicode.Cc, unicode.Cf) })
}

// An event_id with invalid UTF-8 is refused as bad_id, also after a JSON decoder replaced
// the bytes with U+FFFD: two ids differing only there would otherwise be one record.
func TestEventIDInvalidUTF8(t *testing.T) {
	for _, line := range []string{
		"{\"event_id\":\"a\xff-1\",\"tenant\":\"t\",\"device\":\"d\",\"source\":\"http\",\"start_time\":\"2026-11-01T00:00:00Z\",\"events\":1}",
		`{"event_id":"a\ufffd-1","tenant":"t","device":"d","source":"http","start_time":"2026-11-01T00:00:00Z","events":1}`,
	} {
		u, err := ParseJSON([]byte(line))
		if err == nil {
			err = Validate(&u)
		}
		if ReasonOf(err) != ReasonBadID {
			t.Errorf("%q: %v (reason %s), want %s", line, err, ReasonOf(err), ReasonBadID)
		}
	}
}

// FuzzValidate: no panic; every refusal carries a reason from the table; what Validate
// accepts meets the rules restated as patterns, survives the canonical JSON codec
// unchanged, and ValidateWithin never accepts what Validate refuses.
func FuzzValidate(f *testing.F) {
	u := validUsage()
	f.Add(u.EventID, u.Tenant, u.Device, u.PLMN, u.Cell, u.RAT, u.SliceSD, u.StartTime, u.EndTime, u.ReceivedTime,
		u.BytesUp, u.SliceSST, uint8(3), u.Lat, u.Lon)
	f.Add("e", "t", "dev\u202eice", "", "", "", "", int64(0), int64(0), int64(0), uint64(0), uint8(0), uint8(0), 0.0, 0.0)
	f.Fuzz(func(t *testing.T, eventID, tenant, device, plmn, cell, rat, sd string, start, end, received int64,
		counter uint64, sst, flags uint8, lat, lon float64) {
		u := Usage{EventID: eventID, Tenant: tenant, Device: device, Source: SourceMQTT, StartTime: start, EndTime: end,
			ReceivedTime: received, BytesUp: counter, BytesDown: counter / 2, PLMN: plmn, Cell: cell, RAT: rat, SliceSD: sd}
		if flags&1 != 0 {
			u.SliceSST, u.HasSlice = sst, true
		}
		if flags&2 != 0 {
			u.Lat, u.Lon, u.HasPos = lat, lon, true
		}
		err := Validate(&u)
		reasonOf(t, err)
		within := ValidateWithin(&u, Limits{})
		reasonOf(t, within)
		if ValidTenantID(u.Tenant) && ValidDeviceID(u.Device) && ValidEventID(u.EventID) {
			if rest := ValidateWithinIdentified(&u, Limits{}); (rest == nil) != (within == nil) || rest != nil && rest.Error() != within.Error() {
				t.Fatalf("ValidateWithinIdentified %v, ValidateWithin %v: %+v", rest, within, u)
			}
		}
		if err != nil {
			if within == nil {
				t.Fatalf("ValidateWithin accepts what Validate refuses (%v): %+v", err, u)
			}
			return
		}
		if within == nil && counter > DefaultMaxCounter {
			t.Fatalf("ValidateWithin accepted counter %d", counter)
		}
		idOK := func(s string) bool { return refID.MatchString(s) && !strings.ContainsAny(s, "/+#") }
		if !idOK(u.Tenant) || !idOK(u.Device) || !refValidEventID(u.EventID) || !refPLMN.MatchString(u.PLMN) ||
			!refCell.MatchString(u.Cell) || !refSD.MatchString(u.SliceSD) || (u.SliceSD != "" && !u.HasSlice) ||
			u.EndTime < u.StartTime ||
			(u.HasPos && (math.Abs(u.Lat) > 90 || math.Abs(u.Lon) > 180 || math.IsNaN(u.Lat) || math.IsNaN(u.Lon))) {
			t.Fatalf("Validate accepted a record the rules refuse: %+v", u)
		}
		for _, ms := range []int64{u.StartTime, u.EndTime, u.ReceivedTime} {
			if y := time.UnixMilli(ms).UTC().Year(); y < 1970 || y >= 2100 {
				t.Fatalf("Validate accepted year %d: %+v", y, u)
			}
		}
		line := AppendJSON(nil, &u)
		back, perr := ParseJSON(line)
		if perr != nil || !sameUsage(back, u) {
			t.Fatalf("a valid record does not survive JSON: %v\n%s\n got %+v\nwant %+v", perr, line, back, u)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	u := validUsage()
	for _, impl := range []struct {
		name string
		f    func() error
	}{{"Validate", func() error { return Validate(&u) }}, {"ValidateWithin", func() error { return ValidateWithin(&u, Limits{}) }}} {
		b.Run("func="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := impl.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestValidEventIDEveryByte puts every byte value at every position of ids of 1 to 20
// bytes (the word-at-a-time path and the byte loop both) against the rule written per byte.
func TestValidEventIDEveryByte(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for pos := range n {
			for c := range 256 {
				id := []byte(strings.Repeat("a", n))
				id[pos] = byte(c)
				want := c >= 0x20 && c <= 0x7e
				if c >= 0x80 { // a lone byte >= 0x80 is invalid UTF-8
					want = false
				}
				if got := ValidEventID(string(id)); got != want {
					t.Fatalf("ValidEventID(%q) = %v, want %v", id, got, want)
				}
			}
		}
	}
}
