package payload

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"fleetmeter/record"
)

var (
	testID       = Identity{Tenant: "acme", Device: "dev1", Source: record.SourceMQTT}
	testReceived = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixMilli()
	hashIDRe     = regexp.MustCompile(`^mqtt:acme:dev1:#[0-9a-f]{16}$`)
)

// hashID marks an expected event id that is a content hash; its exact value is pinned by
// TestEventIDPinned.
const hashID = "#hash"

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

// rec builds an expected record with the test identity filled in.
func rec(eventID string, start, end int64, u record.Usage) record.Usage {
	u.EventID = eventID
	u.Tenant, u.Device, u.Source = testID.Tenant, testID.Device, testID.Source
	u.StartTime, u.EndTime, u.ReceivedTime = start, end, testReceived
	return u
}

type parseCase struct {
	name string
	in   string
	want []record.Usage
}

func checkRecords(t *testing.T, got, want []record.Usage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d:\n%s", len(got), len(want), dump(got))
	}
	for i := range want {
		g, w := got[i], want[i]
		if w.EventID == hashID {
			if !hashIDRe.MatchString(g.EventID) {
				t.Errorf("record %d: event_id %q is not a hash id", i, g.EventID)
			}
			w.EventID = g.EventID
		}
		if g != w {
			t.Errorf("record %d:\n got %s\nwant %s", i, record.AppendJSON(nil, &g), record.AppendJSON(nil, &w))
		}
		if err := g.Validate(); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
	}
}

func dump(rs []record.Usage) string {
	var b []byte
	for i := range rs {
		b = record.AppendJSON(b, &rs[i])
		b = append(b, '\n')
	}
	return string(b)
}

func TestParseJSON(t *testing.T) {
	at := ms("2026-11-25T11:00:00Z")
	cases := []parseCase{
		{
			name: "full object with id",
			in: `{"id":"m-0001","ts":"2026-11-25T11:00:00Z","end":"2026-11-25T11:05:00.250Z",
				"bytes_up":1200,"bytes_down":34000,"duration_ms":300250,"events":3,"rating_group":100,
				"plmn":"262-01","cell":"262-01-1A2B3C","lat":52.52,"lon":13.405,"rat":"NR",
				"slice_sst":1,"slice_sd":"00A1FF"}`,
			want: []record.Usage{rec("mqtt:acme:dev1:m-0001", at, ms("2026-11-25T11:05:00.250Z"), record.Usage{
				BytesUp: 1200, BytesDown: 34000, DurationMs: 300250, Events: 3, RatingGroup: 100,
				PLMN: "262-01", Cell: "262-01-1A2B3C", Lat: 52.52, Lon: 13.405, HasPos: true, RAT: "NR",
				SliceSST: 1, HasSlice: true, SliceSD: "00a1ff"})},
		},
		{
			name: "empty object: received time, hash id",
			in:   ` {} `,
			want: []record.Usage{rec(hashID, testReceived, testReceived, record.Usage{})},
		},
		{
			name: "array with seq, epoch ms, offsets",
			in: `[{"seq":7,"ts":1795604400000,"bytes_up":10},
				{"seq":8,"ts":"2026-11-25T12:00:00+01:00","end":"2026-11-25T11:30:00.5Z","bytes_down":20}]`,
			want: []record.Usage{
				rec("mqtt:acme:dev1:7", at, at, record.Usage{BytesUp: 10}),
				rec("mqtt:acme:dev1:8", at, ms("2026-11-25T11:30:00.5Z"), record.Usage{BytesDown: 20}),
			},
		},
		{
			name: "numeric id, integral numbers in other notations",
			in:   `{"id":42,"bytes_up":1e3,"bytes_down":2.50E2,"events":7.0,"duration_ms":0}`,
			want: []record.Usage{rec("mqtt:acme:dev1:42", testReceived, testReceived, record.Usage{
				BytesUp: 1000, BytesDown: 250, Events: 7})},
		},
		{
			name: "escapes, nulls, rat aliases",
			in: `{"plmn":"262\u002d01","cell":"c\/1","rat":"nb-iot","lat":null,"lon":null,
				"slice_sst":null,"id":null,"events":1}`,
			want: []record.Usage{rec(hashID, testReceived, testReceived, record.Usage{
				PLMN: "262-01", Cell: "c/1", RAT: "NB-IoT", Events: 1})},
		},
		{
			name: "identical records get distinct hash ids",
			in:   `[{"events":1},{"events":1},{"events":1},{"events":2}]`,
			want: []record.Usage{
				rec(hashID, testReceived, testReceived, record.Usage{Events: 1}),
				rec(hashID, testReceived, testReceived, record.Usage{Events: 1}),
				rec(hashID, testReceived, testReceived, record.Usage{Events: 1}),
				rec(hashID, testReceived, testReceived, record.Usage{Events: 2}),
			},
		},
		{
			name: "lte and three-digit mnc",
			in:   `{"rat":"LTE","plmn":"310-410","slice_sst":3}`,
			want: []record.Usage{rec(hashID, testReceived, testReceived, record.Usage{
				RAT: "EUTRA", PLMN: "310-410", SliceSST: 3, HasSlice: true})},
		},
		{
			name: "empty array",
			in:   `[]`,
			want: []record.Usage{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			got, err := p.Parse(KindJSON, []byte(tc.in), testID, testReceived, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, got, tc.want)
			assertDistinctIDs(t, got)
			// KindAuto sniffs the same.
			again, err := p.Parse(KindAuto, []byte(tc.in), testID, testReceived, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, again, got)
		})
	}
}

func assertDistinctIDs(t *testing.T, rs []record.Usage) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.EventID] {
			t.Errorf("event_id %s twice", r.EventID)
		}
		seen[r.EventID] = true
	}
}

type errCase struct {
	reason string
	kind   Kind
	in     string
}

// jsonErrCases covers every reason code plain JSON can produce.
var jsonErrCases = []errCase{
	{ReasonBadJSON, KindJSON, `{"bytes_up":1`},
	{ReasonBadJSON, KindJSON, `{"bytes_up":01}`},
	{ReasonBadJSON, KindJSON, `{"bytes_up":1}x`},
	{ReasonBadJSON, KindJSON, `[{"bytes_up":1},]`},
	{ReasonBadJSON, KindJSON, `[1]`},
	{ReasonBadJSON, KindJSON, `"x"`},
	{ReasonBadJSON, KindJSON, "{\"cell\":\"a\x01\"}"},
	{ReasonBadJSON, KindJSON, "{\"cell\":\"\xff\"}"},
	{ReasonBadJSON, KindJSON, `{"cell":"\x"}`},
	{ReasonUnknownField, KindJSON, `{"bytes_upp":1}`},
	{ReasonUnknownField, KindJSON, `{"device":"dev2"}`},
	{ReasonDuplicateField, KindJSON, `{"events":1,"events":1}`},
	{ReasonBadField, KindJSON, `{"events":"1"}`},
	{ReasonBadField, KindJSON, `{"events":true}`},
	{ReasonBadField, KindJSON, `{"rating_group":4294967296}`},
	{ReasonBadField, KindJSON, `{"slice_sst":256}`},
	{ReasonBadField, KindJSON, `{"plmn":"26201"}`},
	{ReasonBadField, KindJSON, `{"plmn":1}`},
	{ReasonBadField, KindJSON, `{"rat":"GSM"}`},
	{ReasonBadField, KindJSON, `{"cell":"a b"}`},
	{ReasonBadField, KindJSON, `{"slice_sd":"12345"}`},
	{ReasonBadField, KindJSON, `{"slice_sd":"0000ff"}`},
	{ReasonNegativeCounter, KindJSON, `{"bytes_up":-1}`},
	{ReasonNegativeCounter, KindJSON, `{"events":-1e30}`},
	{ReasonBadCounter, KindJSON, `{"bytes_down":1.5}`},
	{ReasonCounterOverflow, KindJSON, `{"duration_ms":18446744073709551616}`},
	{ReasonCounterOverflow, KindJSON, `{"duration_ms":1e20}`},
	{ReasonAbsurdCounter, KindJSON, `{"bytes_up":1125899906842625}`},
	{ReasonBadTime, KindJSON, `{"ts":"2026-11-25 11:00:00"}`},
	{ReasonBadTime, KindJSON, `{"ts":"2026-02-30T11:00:00Z"}`},
	{ReasonBadTime, KindJSON, `{"ts":1e300}`},
	{ReasonBadTime, KindJSON, `{"ts":true}`},
	{ReasonBadInterval, KindJSON, `{"ts":"2026-11-25T11:00:00Z","end":"2026-11-25T10:59:59.999Z"}`},
	{ReasonFutureTime, KindJSON, `{"ts":"2026-11-25T12:05:00.001Z"}`},
	{ReasonFutureTime, KindJSON, `{"end":"2026-11-25T13:00:00Z"}`},
	{ReasonStaleTime, KindJSON, `{"ts":1700000000000}`},
	{ReasonStaleTime, KindJSON, `{"ts":1795604400}`}, // seconds, not ms
	{ReasonTooManyRecords, KindJSON, `[{},{},{},{},{}]`},
	{ReasonBadPosition, KindJSON, `{"lat":1}`},
	{ReasonBadPosition, KindJSON, `{"lat":91,"lon":0}`},
	{ReasonBadPosition, KindJSON, `{"lat":"1","lon":2}`},
	{ReasonBadID, KindJSON, `{"id":"a:b"}`},
	{ReasonBadID, KindJSON, `{"id":""}`},
	{ReasonBadID, KindJSON, `{"id":1,"seq":2}`},
	{ReasonBadID, KindJSON, `{"seq":-1}`},
	{ReasonBadID, KindJSON, `{"seq":"1"}`},
	{ReasonDuplicateID, KindJSON, `[{"id":"a"},{"id":"b"},{"id":"a"}]`},
	{ReasonDuplicateID, KindJSON, `[{"id":1},{"seq":1}]`},
	{ReasonUnknownFormat, KindAuto, `hello`},
	{ReasonUnknownFormat, Kind(99), `{}`},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range jsonErrCases {
		t.Run(tc.reason+"/"+tc.in, func(t *testing.T) {
			p := Parser{Limits: Limits{MaxRecords: 4}}
			into := []record.Usage{{EventID: "keep"}}
			got, err := p.Parse(tc.kind, []byte(tc.in), testID, testReceived, into)
			var ie *record.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("got %v (%d records), want *record.InvalidError %s", err, len(got), tc.reason)
			}
			if ie.Reason != tc.reason {
				t.Fatalf("reason %q (%s), want %q", ie.Reason, ie.Msg, tc.reason)
			}
			if len(got) != 1 || got[0].EventID != "keep" {
				t.Fatalf("into changed on error: %d records", len(got))
			}
		})
	}
}

func TestMissingIdentity(t *testing.T) {
	for _, id := range []Identity{{Device: "d", Source: "mqtt"}, {Tenant: "t", Source: "mqtt"}, {Tenant: "t", Device: "d"}} {
		var p Parser
		_, err := p.Parse(KindJSON, []byte(`{}`), id, testReceived, nil)
		var ie *record.InvalidError
		if !errors.As(err, &ie) || ie.Reason != ReasonMissingIdentity {
			t.Errorf("%+v: got %v", id, err)
		}
	}
}

// TestEventIDPinned pins the hash ids: changing how they are derived makes replays of
// old payloads count twice, so it must be a deliberate, visible change.
func TestEventIDPinned(t *testing.T) {
	var p Parser
	got, err := p.Parse(KindJSON, []byte(`[{"ts":"2026-11-25T11:00:00Z","bytes_up":100,"lat":1.5,"lon":2.5},{"ts":"2026-11-25T11:00:00Z","bytes_up":100,"lat":1.5,"lon":2.5}]`), testID, testReceived, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mqtt:acme:dev1:#05edf799088f0b9f", "mqtt:acme:dev1:#0acef5c1784e2b5e"}
	for i := range want {
		if got[i].EventID != want[i] {
			t.Errorf("record %d: event_id %s, want %s", i, got[i].EventID, want[i])
		}
	}
}

func TestEventIDDeterministic(t *testing.T) {
	in := []byte(`[{"ts":"2026-11-25T11:00:00Z","bytes_up":100},{"ts":"2026-11-25T11:00:00Z","bytes_up":101},{"bytes_up":100,"ts":"2026-11-25T11:00:00Z"}]`)
	var p1, p2 Parser
	a, err := p1.Parse(KindJSON, in, testID, testReceived, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Redelivered later, to a parser that has seen other payloads.
	if _, err := p2.Parse(KindJSON, []byte(`{"events":5}`), testID, testReceived, nil); err != nil {
		t.Fatal(err)
	}
	b, err := p2.Parse(KindJSON, in, testID, testReceived+60_000, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i].EventID != b[i].EventID {
			t.Errorf("record %d: %s then %s", i, a[i].EventID, b[i].EventID)
		}
	}
	assertDistinctIDs(t, a)
	// Another device or tenant never shares ids.
	c, err := p1.Parse(KindJSON, in, Identity{Tenant: "acme", Device: "dev2", Source: "mqtt"}, testReceived, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimPrefix(c[0].EventID, "mqtt:acme:dev2:") == strings.TrimPrefix(a[0].EventID, "mqtt:acme:dev1:") {
		t.Errorf("hash ignores the device: %s, %s", a[0].EventID, c[0].EventID)
	}
}

func TestParseAppendsAndReuses(t *testing.T) {
	var p Parser
	into := make([]record.Usage, 0, 8)
	into, err := p.Parse(KindJSON, []byte(`{"id":"a","events":1}`), testID, testReceived, into)
	if err != nil {
		t.Fatal(err)
	}
	into, err = p.Parse(KindJSON, []byte(`[{"id":"b","events":2},{"id":"c","events":3}]`), testID, testReceived, into)
	if err != nil {
		t.Fatal(err)
	}
	if len(into) != 3 || into[0].EventID != "mqtt:acme:dev1:a" || into[2].EventID != "mqtt:acme:dev1:c" || into[2].Events != 3 {
		t.Fatalf("got %s", dump(into))
	}
}

func TestSniffAndContentTypes(t *testing.T) {
	sniff := map[string]Kind{
		`{"bytes_up":1}`:           KindJSON,
		` [ {"ts":1} ]`:            KindJSON,
		`[]`:                       KindJSON,
		`[{}]`:                     KindJSON,
		`[{"bn":"dev1:","n":"x"}]`: KindSenMLJSON,
		"\n[{\"n\":\"bytes_up\"}]": KindSenMLJSON,
		"\x81\xa1\x00\x61x":        KindSenMLCBOR,
		"\x9f\xff":                 KindSenMLCBOR,
		`hello`:                    KindAuto,
		``:                         KindAuto,
		`[1]`:                      KindAuto,
	}
	for in, want := range sniff {
		if got := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %v, want %v", in, got, want)
		}
	}
	cts := map[string]Kind{
		"application/json":                KindJSON,
		"Application/JSON; charset=utf-8": KindJSON,
		"application/senml+json":          KindSenMLJSON,
		"application/senml+cbor":          KindSenMLCBOR,
		"text/plain":                      KindAuto,
		"":                                KindAuto,
	}
	for in, want := range cts {
		if got := KindFromContentType(in); got != want {
			t.Errorf("KindFromContentType(%q) = %v, want %v", in, got, want)
		}
	}
	for cf, want := range map[uint16]Kind{50: KindJSON, 110: KindSenMLJSON, 112: KindSenMLCBOR, 0: KindAuto, 60: KindAuto} {
		if got := KindFromCoAPFormat(cf); got != want {
			t.Errorf("KindFromCoAPFormat(%d) = %v, want %v", cf, got, want)
		}
	}
}
