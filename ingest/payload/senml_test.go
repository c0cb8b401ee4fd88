package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"fleetmeter/record"
)

var update = flag.Bool("update", false, "rewrite testdata/senml/*.cbor from the .json packs")

// senmlCBORLabels are RFC 8428 section 6's integer labels.
var senmlCBORLabels = map[string]int{"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6,
	"n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8}

// toCBOR re-encodes a SenML JSON pack as SenML CBOR with a third-party encoder
// (deterministic, shortest floats: half and single precision get exercised too). Labels
// it does not know stay text keys, and records that are not objects stay as they are.
func toCBOR(t testing.TB, js []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var pack []any
	if err := dec.Decode(&pack); err != nil {
		t.Fatalf("toCBOR: %v", err)
	}
	out := make([]any, len(pack))
	for i, r := range pack {
		obj, ok := r.(map[string]any)
		if !ok {
			out[i] = r
			continue
		}
		m := map[any]any{}
		for k, v := range obj {
			if n, ok := v.(json.Number); ok {
				if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
					v = i
				} else if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
					v = u
				} else if f, err := n.Float64(); err == nil {
					v = f
				} else {
					t.Fatalf("toCBOR: number %s", n)
				}
			}
			if k == "vd" {
				if s, ok := v.(string); ok {
					b, err := base64.RawURLEncoding.DecodeString(s)
					if err != nil {
						t.Fatalf("toCBOR: vd: %v", err)
					}
					v = b
				}
			}
			if l, ok := senmlCBORLabels[k]; ok {
				m[l] = v
			} else {
				m[k] = v
			}
		}
		out[i] = m
	}
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(out)
	if err != nil {
		t.Fatalf("toCBOR: %v", err)
	}
	return b
}

func TestSenML(t *testing.T) {
	at := ms("2026-11-25T11:00:00Z")
	cases := []parseCase{
		{
			name: "full",
			in:   readFile(t, "testdata/senml/full.json"),
			want: []record.Usage{rec("mqtt:acme:dev1:m-0001", at, at, record.Usage{
				BytesUp: 1200, BytesDown: 34000, DurationMs: 300250, Events: 3, RatingGroup: 100,
				PLMN: "262-01", Cell: "262-01-1A2B3C", Lat: 52.52, Lon: 13.405, HasPos: true, RAT: "NR",
				SliceSST: 1, HasSlice: true, SliceSD: "00a1ff"})},
		},
		{
			name: "times group records",
			in:   readFile(t, "testdata/senml/times.json"),
			want: []record.Usage{
				rec(hashID, at, at, record.Usage{BytesUp: 10}),
				rec("mqtt:acme:dev1:12", at+60_000, at+60_000, record.Usage{BytesUp: 20, Events: 1}),
			},
		},
		{
			name: "relative times and names with the device",
			in:   readFile(t, "testdata/senml/relative.json"),
			want: []record.Usage{
				rec(hashID, testReceived, testReceived, record.Usage{BytesUp: 5}),
				rec(hashID, testReceived-60_000, testReceived-60_000, record.Usage{BytesUp: 6, DurationMs: 1500}),
			},
		},
		{
			name: "base value, unit, version",
			in:   readFile(t, "testdata/senml/base.json"),
			want: []record.Usage{rec(hashID, at, at, record.Usage{
				BytesUp: 105, BytesDown: 50, DurationMs: 2600, Lat: -33.8688, Lon: 151.2093, HasPos: true})},
		},
		{
			name: "base-only records and an empty pack",
			in:   `[{"bn":"dev1/"},{"bt":1795604400},{"n":"events","v":0}]`,
			want: []record.Usage{rec(hashID, at, at, record.Usage{})},
		},
		{
			name: "empty pack",
			in:   `[ ]`,
			want: []record.Usage{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			got, err := p.Parse(KindSenMLJSON, []byte(tc.in), testID, testReceived, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, got, tc.want)
			assertDistinctIDs(t, got)
			auto, err := p.Parse(KindAuto, []byte(tc.in), testID, testReceived, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, auto, got)
			// The same pack in CBOR gives the same records, ids included.
			cb, err := p.Parse(KindSenMLCBOR, toCBOR(t, []byte(tc.in)), testID, testReceived, nil)
			if err != nil {
				t.Fatalf("cbor: %v", err)
			}
			checkRecords(t, cb, got)
		})
	}
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSenMLTestdata checks every SenML JSON file against its CBOR twin: the twin is what
// the third-party encoder makes of it (go test -update rewrites them) and both decode to
// the same records.
func TestSenMLTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/senml/*.json")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		js := []byte(readFile(t, f))
		cb := toCBOR(t, js)
		cf := strings.TrimSuffix(f, ".json") + ".cbor"
		if *update {
			if err := os.WriteFile(cf, cb, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if have, err := os.ReadFile(cf); err != nil || !bytes.Equal(have, cb) {
			t.Errorf("%s is stale or missing (go test -run TestSenMLTestdata -update): %v", cf, err)
			continue
		}
		var p Parser
		a, err := p.Parse(KindSenMLJSON, js, testID, testReceived, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		b, err := p.Parse(KindAuto, cb, testID, testReceived, nil)
		if err != nil {
			t.Fatalf("%s: %v", cf, err)
		}
		checkRecords(t, b, a)
	}
}

// senmlErrCases covers every reason code SenML can produce. cbor marks the cases whose
// CBOR re-encoding fails for the same reason.
var senmlErrCases = []struct {
	errCase
	cbor bool
}{
	{errCase{ReasonBadSenML, KindSenMLJSON, `{"n":"bytes_up","v":1}`}, false},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[1]`}, false},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"n":"bytes_up","v":1}`}, false},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"n":"bytes_up","v":"1"}]`}, true},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"n":1,"v":1}]`}, true},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"n":"bytes_up"}]`}, true},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"n":"bytes_up","v":1,"vs":"1"}]`}, true},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"n":"bytes_up","s":1}]`}, true},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"bver":11}]`}, true},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"v":1}]`}, true},
	{errCase{ReasonBadSenML, KindSenMLJSON, `[{"n":"events","vb":"yes"}]`}, true},
	{errCase{ReasonUnknownField, KindSenMLJSON, `[{"n":"bytes_up","v":1,"x_":2}]`}, true},
	{errCase{ReasonUnknownField, KindSenMLJSON, `[{"n":"kWh","v":1}]`}, true},
	{errCase{ReasonDuplicateField, KindSenMLJSON, `[{"n":"events","v":1},{"n":"events","v":2}]`}, true},
	{errCase{ReasonDuplicateField, KindSenMLJSON, `[{"n":"events","v":1,"v":2}]`}, false},
	{errCase{ReasonBadField, KindSenMLJSON, `[{"n":"plmn","vs":"26201"}]`}, true},
	{errCase{ReasonBadField, KindSenMLJSON, `[{"n":"plmn","v":26201}]`}, true},
	{errCase{ReasonBadField, KindSenMLJSON, `[{"n":"rating_group","v":4294967296}]`}, true},
	{errCase{ReasonBadField, KindSenMLJSON, `[{"n":"events","vb":true}]`}, true},
	{errCase{ReasonBadUnit, KindSenMLJSON, `[{"n":"bytes_up","u":"kB","v":1}]`}, true},
	{errCase{ReasonBadUnit, KindSenMLJSON, `[{"n":"duration","v":1}]`}, true},
	{errCase{ReasonBadUnit, KindSenMLJSON, `[{"bu":"s","n":"bytes_down","v":1}]`}, true},
	{errCase{ReasonBadUnit, KindSenMLJSON, `[{"n":"events","u":"B","v":1}]`}, true},
	{errCase{ReasonDeviceMismatch, KindSenMLJSON, `[{"bn":"dev2:","n":"events","v":1}]`}, true},
	{errCase{ReasonDeviceMismatch, KindSenMLJSON, `[{"bn":"dev12","n":"events","v":1}]`}, true},
	{errCase{ReasonDeviceMismatch, KindSenMLJSON, `[{"bn":"urn:dev:mac:xdev1:","n":"events","v":1}]`}, true},
	{errCase{ReasonDeviceMismatch, KindSenMLJSON, `[{"bn":"urn:dev::dev1:","n":"events","v":1}]`}, true},
	{errCase{ReasonDeviceMismatch, KindSenMLJSON, `[{"n":"dev2:events","v":1}]`}, true},
	{errCase{ReasonNegativeCounter, KindSenMLJSON, `[{"n":"bytes_up","v":-1}]`}, true},
	{errCase{ReasonNegativeCounter, KindSenMLJSON, `[{"bv":-10,"n":"bytes_up","v":5}]`}, true},
	{errCase{ReasonBadCounter, KindSenMLJSON, `[{"n":"events","v":1.5}]`}, true},
	{errCase{ReasonCounterOverflow, KindSenMLJSON, `[{"n":"bytes_up","v":1e20}]`}, true},
	{errCase{ReasonCounterOverflow, KindSenMLJSON, `[{"n":"duration","u":"s","v":18446744073709552}]`}, true},
	{errCase{ReasonAbsurdCounter, KindSenMLJSON, `[{"n":"bytes_up","v":1125899906842625}]`}, true},
	{errCase{ReasonBadTime, KindSenMLJSON, `[{"bt":1e300,"n":"events","v":1}]`}, true},
	{errCase{ReasonFutureTime, KindSenMLJSON, `[{"n":"events","t":301,"v":1}]`}, true},
	{errCase{ReasonFutureTime, KindSenMLJSON, `[{"bt":1895604400,"n":"events","v":1}]`}, true},
	{errCase{ReasonStaleTime, KindSenMLJSON, `[{"bt":1695604400,"n":"events","v":1}]`}, true},
	{errCase{ReasonTooManyRecords, KindSenMLJSON, `[{},{},{},{},{}]`}, true},
	{errCase{ReasonBadPosition, KindSenMLJSON, `[{"n":"lat","v":1}]`}, true},
	{errCase{ReasonBadPosition, KindSenMLJSON, `[{"n":"lat","v":1},{"n":"lon","v":181}]`}, true},
	{errCase{ReasonBadID, KindSenMLJSON, `[{"n":"id","vs":"a b"}]`}, true},
	{errCase{ReasonBadID, KindSenMLJSON, `[{"n":"seq","v":1.5}]`}, true},
	{errCase{ReasonBadID, KindSenMLJSON, `[{"n":"seq","v":1},{"n":"id","vs":"x"}]`}, true},
	{errCase{ReasonDuplicateID, KindSenMLJSON, `[{"n":"seq","v":1},{"n":"seq","t":-1,"v":1}]`}, true},
}

var cborErrCases = []errCase{
	{ReasonBadCBOR, KindSenMLCBOR, "\x81"},                         // truncated
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\x00"},                 // truncated map
	{ReasonBadCBOR, KindSenMLCBOR, "\x80\x00"},                     // trailing data
	{ReasonBadCBOR, KindSenMLCBOR, "\xa0"},                         // not an array
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\x01"},                     // record not a map
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\x00\xc1\x01"},         // tag
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\x00\x7f\x61x\xff"},    // indefinite text
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\x00\x62\xff\xfe"},     // invalid UTF-8
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\x00\xa0"},             // nested map
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\xf4\x01"},             // key not an integer
	{ReasonBadCBOR, KindSenMLCBOR, "\x9b\xff\xff\xff\xff\xff\xff"}, // truncated length
	{ReasonBadCBOR, KindSenMLCBOR, "\x9a\xff\xff\xff\xff"},         // length beyond payload
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\x00\xf7"},             // undefined
	{ReasonBadCBOR, KindSenMLCBOR, "\x81\xa1\x00\x1c"},             // reserved additional info
	{ReasonUnknownField, KindSenMLCBOR, "\x81\xa1\x09\x01"},        // label 9
}

func allErrCasesSenML(t testing.TB) []errCase {
	var out []errCase
	for _, c := range senmlErrCases {
		out = append(out, c.errCase)
		if c.cbor {
			out = append(out, errCase{c.reason, KindSenMLCBOR, string(toCBOR(t, []byte(c.in)))})
		}
	}
	return append(out, cborErrCases...)
}

func TestSenMLErrors(t *testing.T) {
	for _, tc := range allErrCasesSenML(t) {
		t.Run(tc.kind.String()+"/"+tc.reason, func(t *testing.T) {
			p := Parser{Limits: Limits{MaxRecords: 4}}
			into := []record.Usage{{EventID: "keep"}}
			got, err := p.Parse(tc.kind, []byte(tc.in), testID, testReceived, into)
			var ie *record.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("%q: got %v (%d records), want %s", tc.in, err, len(got), tc.reason)
			}
			if ie.Reason != tc.reason {
				t.Fatalf("%q: reason %q (%s), want %q", tc.in, ie.Reason, ie.Msg, tc.reason)
			}
			if len(got) != 1 || got[0].EventID != "keep" {
				t.Fatalf("into changed on error: %d records", len(got))
			}
		})
	}
}
