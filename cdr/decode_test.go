package cdr

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"fleetmeter/record"
)

func TestDecodeAppendsAndReuses(t *testing.T) {
	ber := readTestdata(t, "chf_small_10.ber")
	d := goldenDecoder(t)
	d.ReceivedTime = 1234
	keep := record.Usage{EventID: "already-there"}
	// 12 copies: the event_id/device block is flushed mid-call (patchEvery).
	in := bytes.Repeat(ber, 12)
	got, err := d.Decode(in, []record.Usage{keep})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != keep {
		t.Fatalf("existing record changed: %+v", got[0])
	}
	want := smallAll(t, 10)
	if len(got) != 1+12*len(want) {
		t.Fatalf("%d records", len(got))
	}
	for i, u := range got[1:] {
		w := want[i%len(want)]
		w.Tenant, w.ReceivedTime = "golden", 1234
		if u != w {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, u, w)
		}
	}
	if s := d.Stats(); s.CDRs != 120 || s.Records != 336 || s.NoUsage != 0 || s.BadLocation != 0 {
		t.Errorf("stats %+v", s)
	}
	// The buffer is reused: decoding again into got[:0] gives the same records.
	again, _ := d.Decode(ber, got[:0])
	if len(again) != len(want) || again[0].EventID != want[0].EventID {
		t.Errorf("reuse: %d records, first %q", len(again), again[0].EventID)
	}
}

func TestBERErrors(t *testing.T) {
	long := func(n int) []byte {
		return append([]byte{0xBF, 0x81, 0x48, 0x80}, bytes.Repeat([]byte{0xA0, 0x80}, n)...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		msg  string
	}{
		{"tag too long", []byte{0xBF, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00}, "tag number longer than 4 octets"},
		{"truncated tag", []byte{0xBF, 0x81}, "truncated tag"},
		{"truncated length", []byte{0xBF, 0x81, 0x48}, "truncated length"},
		{"reserved length", []byte{0xBF, 0x81, 0x48, 0xFF}, "reserved length octet 0xff"},
		{"5-octet length", []byte{0xBF, 0x81, 0x48, 0x85, 0, 0, 0, 0, 1}, "length in 5 octets is not supported"},
		{"length past end", []byte{0xBF, 0x81, 0x48, 0x82, 0x01, 0x00, 0x80}, "length 256 exceeds the 1 bytes left"},
		{"indefinite primitive", []byte{0xBF, 0x81, 0x48, 0x03, 0x80, 0x80, 0x00}, "indefinite length on a primitive element"},
		{"nesting", long(100), "indefinite lengths nested too deep"},
		{"constructed integer", []byte{0xBF, 0x81, 0x48, 0x04, 0xA7, 0x02, 0x02, 0x00}, "duration: constructed encoding is not supported"},
		{"long integer", []byte{0xBF, 0x81, 0x48, 0x0B, 0x8B, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0}, "localRecordSequenceNumber: INTEGER out of range"},
		{"lrsn range", []byte{0xBF, 0x81, 0x48, 0x07, 0x8B, 0x05, 1, 0, 0, 0, 0}, "localRecordSequenceNumber: 4294967296 out of range"},
		{"empty integer", []byte{0xBF, 0x81, 0x48, 0x02, 0x87, 0x00}, "duration: not a non-negative INTEGER"},
		{"primitive set", []byte{0xBF, 0x81, 0x48, 0x02, 0x8D, 0x00}, "pDUSessionChargingInformation: expected a constructed element"},
		{"short timestamp", []byte{0xBF, 0x81, 0x48, 0x03, 0x86, 0x01, 0x25}, "recordOpeningTime: TimeStamp of 1 octets, want 9"},
		{"no opening time", ctx(200, ctx(5, seq(ctx(1, seq(intNode(5, 1)))))).encode(nil), "recordOpeningTime missing"},
	} {
		_, err := goldenDecoder(t).Decode(tc.in, nil)
		var de *DecodeError
		if !errors.As(err, &de) || !strings.Contains(de.Msg, tc.msg) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.msg)
		}
	}
}

func TestTimestamp(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		want time.Time
		msg  string
	}{
		{"2402290000002b0000", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), ""},
		{"2501010130002b0530", time.Date(2024, 12, 31, 20, 0, 0, 0, time.UTC), ""},
		{"2512312330002d0100", time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC), ""},
		{"2502290000002b0000", time.Time{}, "out of range"},
		{"2501010000003d0000", time.Time{}, "sign"},
		{"25010100000a2b0000", time.Time{}, "not BCD"},
		{"2501010000002b0060", time.Time{}, "out of range"},
	} {
		var r reader
		b := mustHex(t, tc.hex)
		r.reset(b)
		got := r.timestamp(tlv{start: 0, end: len(b), next: len(b)}, "ts")
		switch {
		case tc.msg == "" && (r.failed || got != tc.want.UnixMilli()):
			t.Errorf("%s: %v (%s), want %v", tc.hex, time.UnixMilli(got).UTC(), r.errMsg, tc.want)
		case tc.msg != "" && !strings.Contains(r.errMsg, tc.msg):
			t.Errorf("%s: error %q, want %q", tc.hex, r.errMsg, tc.msg)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'a') + 10
			}
		}
		b = append(b, v)
	}
	return b
}

func TestLocation(t *testing.T) {
	for _, tc := range []struct {
		json, plmn, cell string
		ok               bool
	}{
		{nrULI, "262-01", "262010000abc01", true},
		{euULI, "310-410", "31041000b1c2d", true},
		{tiULI, "208-93", "20893000007", true},
		{`{"nrLocation":{"tai":{"plmnId":{"mcc":"208","mnc":"93"},"tac":"000001"}}}`, "208-93", "20893000001", true},
		{`{"nrLocation":{"ncgi":{"plmnId":{"mcc":"208","mnc":"93"},"nrCellId":"00000001"}}}`, "208-93", "2089300000001", true}, // read as reported
		{`{"nrLocation":{"ncgi":{"plmnId":{"mcc":"20","mnc":"93"},"nrCellId":"000000001"}}}`, "", "", false},
		{`{"nrLocation":{"ncgi":{"plmnId":{"mcc":"208","mnc":"93"},"nrCellId":"00000000\u0031"}}}`, "", "", false},
		{`{"utraLocation":{"cgi":{}}}`, "", "", true},
		{`{}`, "", "", true},
		{` {"nrLocation" : { } } `, "", "", true},
		{`{"nrLocation":{}} x`, "", "", false},
		{`{"a":[1,2,[3,{"b":"c"}]],"nrLocation":{"tai":{"plmnId":{"mcc":"001","mnc":"001"},"tac":"abcd"}}}`, "001-001", "001001abcd", true},
		{`{"a":tru}`, "", "", false},
		{`{"a":"\"}`, "", "", false},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), "", "", false},
		{``, "", "", false},
	} {
		var loc location
		ok := parseLocation([]byte(tc.json), &loc)
		if ok != tc.ok {
			t.Errorf("%s: ok %v", tc.json, ok)
			continue
		}
		d := goldenDecoder(t)
		plmn, cell := d.location([]byte(tc.json))
		if plmn != tc.plmn || cell != tc.cell {
			t.Errorf("%s: plmn %q cell %q, want %q %q", tc.json, plmn, cell, tc.plmn, tc.cell)
		}
	}
}

func TestTenantMap(t *testing.T) {
	two := uint8(2)
	m := TenantMap{Default: "acme", Rules: []TenantRule{
		{Tenant: "farm", SUPIRange: []string{"imsi-208930000000100", "imsi-208930000000199"}},
		{Tenant: "oem", SUPIPrefix: "imsi-26201", DNN: "cars.example"},
		{Tenant: "fast", SliceSST: &two, SliceSD: "A0B0C0"},
		{Tenant: "iot", DNN: "IOT"},
	}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dev, dnn string
		sst      uint8
		slice    bool
		sd, want string
	}{
		{"imsi-208930000000150", "internet", 1, true, "", "farm"},
		{"imsi-2089300000001500", "internet", 1, true, "", "acme"}, // other length: outside the range
		{"imsi-208930000000200", "internet", 1, true, "", "acme"},
		{"imsi-262011234567890", "CARS.example", 0, false, "", "oem"},
		{"imsi-262011234567890", "internet", 0, false, "", "acme"},
		{"imsi-1", "x", 2, true, "a0b0c0", "fast"},
		{"imsi-1", "x", 2, true, "a0b0c1", "acme"},
		{"imsi-1", "x", 2, false, "a0b0c0", "acme"},
		{"nai-x@y", "iot", 0, false, "", "iot"},
	} {
		if got := m.Lookup(tc.dev, tc.dnn, tc.sst, tc.slice, tc.sd); got != tc.want {
			t.Errorf("%+v: %q", tc, got)
		}
	}

	bad := TenantMap{Rules: []TenantRule{
		{SUPIPrefix: "imsi-"},
		{Tenant: "x"},
		{Tenant: "x", SUPIRange: []string{"imsi-2"}},
		{Tenant: "x", SUPIRange: []string{"imsi-2", "imsi-10"}},
		{Tenant: "x", SUPIRange: []string{"imsi-3", "imsi-2"}},
		{Tenant: "x", SliceSD: "xyz"},
	}}
	err := bad.Validate()
	for _, want := range []string{
		"tenants.rules[0].tenant: must be set", "tenants.rules[1]: needs at least one",
		"tenants.rules[2].supi_range: want [first, last]", "tenants.rules[3].supi_range: \"imsi-2\" and \"imsi-10\" differ in length",
		"tenants.rules[4].supi_range: first", "tenants.rules[5].slice_sd",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
	if _, err := NewDecoder(Config{Tenants: bad}); err == nil {
		t.Error("NewDecoder accepted a bad tenant map")
	}
}

func TestRATMapping(t *testing.T) {
	want := map[uint64]string{0: "", 1: "", 2: "", 3: "WLAN", 4: "", 5: "", 6: "EUTRA", 7: "", 8: "NB-IoT", 9: "LTE-M", 10: "NR",
		11: "EUTRA", 14: "EUTRA", 15: "NB-IoT", 18: "NB-IoT", 19: "LTE-M", 22: "LTE-M", 23: "", 255: ""}
	for v, w := range want {
		if got := ratName(v); got != w {
			t.Errorf("rATType %d: %q, want %q", v, got, w)
		}
	}
}

// One decoder reading many ULIs, each several times and in between others (some share
// a cache slot: 600 cells over 512 slots): every read gives what a fresh read gives,
// and every unreadable one, the empty one included, is counted each time.
func TestLocationCache(t *testing.T) {
	var ulis []string
	for i := range 600 {
		ulis = append(ulis, fmt.Sprintf(`{"nrLocation":{"tai":{"plmnId":{"mcc":"208","mnc":"93"},"tac":"%06x"},"ncgi":{"plmnId":{"mcc":"208","mnc":"93"},"nrCellId":"%09x"}}}`, i%7, i))
	}
	ulis = append(ulis, ``, `{}`, `{"a":tru}`, ` {"nrLocation" : { } } `,
		`{"eutraLocation":{"tai":{"plmnId":{"mcc":"001","mnc":"01"},"tac":"0001"},"ecgi":{"plmnId":{"mcc":"001","mnc":"01"},"eutraCellId":"000000g"}}}`)
	d := goldenDecoder(t)
	var bad uint64
	for round := range 3 {
		for i := range ulis {
			uli := ulis[(i*7+round*13)%len(ulis)]
			plmn, cell := d.location([]byte(uli))
			wplmn, wcell, wbad := goldenDecoder(t).parseULI([]byte(uli))
			if plmn != wplmn || cell != wcell {
				t.Fatalf("round %d, %s: plmn %q cell %q, want %q %q", round, uli, plmn, cell, wplmn, wcell)
			}
			if wbad {
				bad++
			}
			if got := d.Stats().BadLocation; got != bad {
				t.Fatalf("round %d, %s: %d unreadable ULIs counted, want %d", round, uli, got, bad)
			}
		}
	}
}
