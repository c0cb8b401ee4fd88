package record

import (
	"encoding/json"
	"strings"
	"testing"
)

// The usage.v1 line for usageSamples()[0], written out by hand.
const sampleUsageLine = `{"event_id":"mqtt:acme:meter-1:42","tenant":"acme","device":"meter-1","source":"mqtt",` +
	`"start_time":"2025-11-25T10:00:00.000Z","end_time":"2025-11-25T10:01:00.000Z",` +
	`"received_time":"2025-11-25T10:01:01.234Z","bytes_up":1200,"bytes_down":34000,` +
	`"duration_ms":60000,"events":3,"rating_group":10,"plmn":"262-01","cell":"262-01-0x1a2b3c",` +
	`"lat":52.520008,"lon":13.404954,"rat":"NB-IoT","slice_sst":3,"slice_sd":"00a1b2"}`

func TestAppendJSONGolden(t *testing.T) {
	u := usageSamples()[0]
	if got := string(AppendJSON([]byte("> "), &u)); got != "> "+sampleUsageLine {
		t.Errorf("AppendJSON:\n got %s\nwant %s", got, sampleUsageLine)
	}
	null := Usage{EventID: "e", Tenant: "t", Device: "d", Source: "http"}
	const wantNull = `{"event_id":"e","tenant":"t","device":"d","source":"http",` +
		`"start_time":"1970-01-01T00:00:00.000Z","end_time":"1970-01-01T00:00:00.000Z",` +
		`"received_time":"1970-01-01T00:00:00.000Z","bytes_up":0,"bytes_down":0,"duration_ms":0,` +
		`"events":0,"rating_group":0,"plmn":"","cell":"","lat":null,"lon":null,"rat":"",` +
		`"slice_sst":null,"slice_sd":""}`
	if got := string(AppendJSON(nil, &null)); got != wantNull {
		t.Errorf("AppendJSON with nulls:\n got %s\nwant %s", got, wantNull)
	}
	r := ratedSamples()[1]
	r.Usage = null
	const wantRated = `,"record_id":"fee:acme:meter-2:2026-11","charge":"device_fee","zone":"","mobility":"",` +
		`"tariff":"iot-basic","tariff_version":"2026-11-01","offer":"","active_devices":0,"currency":"EUR",` +
		`"amount":"-1.250000","rated_time":"1970-01-01T00:00:00.000Z"}`
	if got := string(AppendRatedJSON(nil, &r)); got != wantNull[:len(wantNull)-1]+wantRated {
		t.Errorf("AppendRatedJSON:\n got %s\nwant %s", got, wantNull[:len(wantNull)-1]+wantRated)
	}
}

func TestParseJSONGolden(t *testing.T) {
	got, err := ParseJSON([]byte(sampleUsageLine))
	if err != nil {
		t.Fatal(err)
	}
	if want := usageSamples()[0]; got != want {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// Optional fields: end_time defaults to start_time, received_time to zero; other
	// offsets than Z are accepted.
	got, err = ParseJSON([]byte(`{"event_id":"e","tenant":"t","device":"d","source":"coap",` +
		`"start_time":"2025-11-25T11:00:00.5+01:00","bytes_up":18446744073709551615}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{EventID: "e", Tenant: "t", Device: "d", Source: "coap", StartTime: 1764064800500,
		EndTime: 1764064800500, BytesUp: 18446744073709551615}
	if got != want {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// Times are read as ingest/payload reads them: lower-case t and z (RFC 3339 5.6) too.
	got, err = ParseJSON([]byte(`{"event_id":"e","tenant":"t","device":"d","start_time":"2025-11-25t10:00:00.5z",` +
		`"end_time":"2025-11-25t11:00:00.5+01:00"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.StartTime != 1764064800500 || got.EndTime != 1764064800500 {
		t.Fatalf("lower-case t/z: start %d end %d, want 1764064800500 for both", got.StartTime, got.EndTime)
	}
	// What time.Parse takes beyond RFC 3339 is refused, naming the field.
	for _, bad := range []string{"2025-11-25T10:00:00,5Z", "2025-11-25T1:00:00Z", "2025-11-25T10:00:00+24:00"} {
		_, err := ParseJSON([]byte(`{"event_id":"e","tenant":"t","device":"d","start_time":"` + bad + `"}`))
		if err == nil || !strings.Contains(err.Error(), "field start_time") {
			t.Errorf("start_time %s: err = %v, want a start_time error", bad, err)
		}
	}
}

// jsonSamples are the usage samples with times JSON can carry (RFC 3339 years 0-9999).
func jsonSamples() []Usage {
	us := usageSamples()
	us[2].StartTime, us[2].EndTime, us[2].ReceivedTime = -62135596800000, 253402300799999, 1
	us = append(us, Usage{EventID: "quote\"back\\slash\ttab\nnl\x01ctl\u2028ls\u00adshy", Tenant: "t",
		Device: "<&>", Source: "mqtt", Cell: "\U0001F69C", PLMN: "\x7f"})
	return us
}

func TestJSONRoundTrip(t *testing.T) {
	for i, u := range jsonSamples() {
		line := AppendJSON(nil, &u)
		if !json.Valid(line) {
			t.Errorf("sample %d: AppendJSON wrote invalid JSON: %s", i, line)
			continue
		}
		got, err := ParseJSON(line)
		if err != nil {
			t.Errorf("sample %d: %v\n%s", i, err, line)
			continue
		}
		if got != u {
			t.Errorf("sample %d:\n got %+v\nwant %+v", i, got, u)
		}
	}
	for i, r := range ratedSamples() {
		r.Usage = jsonSamples()[i]
		r.RatedTime = min(r.RatedTime, 253402300799999)
		line := AppendRatedJSON(nil, &r)
		got, err := ParseRatedJSON(line)
		if err != nil {
			t.Errorf("rated %d: %v\n%s", i, err, line)
			continue
		}
		if got != r {
			t.Errorf("rated %d:\n got %+v\nwant %+v", i, got, r)
		}
	}
}

// Strings are JSON strings: control characters as \u00XX, invalid UTF-8 as U+FFFD (as
// encoding/json reads and writes it).
func TestAppendJSONEscapes(t *testing.T) {
	u := Usage{EventID: "a\x01b\"c\\d\te\nf\rg\x1fh", Tenant: "ok\xffbad", Device: "ü🚜"}
	line := string(AppendJSON(nil, &u))
	for _, want := range []string{
		`"event_id":"a\u0001b\"c\\d\te\nf\rg\u001fh"`,
		`"tenant":"ok\ufffdbad"`,
		`"device":"ü🚜"`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("AppendJSON wrote %s\nwant it to contain %s", line, want)
		}
	}
}

func TestParseJSONRejects(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{`{"event_id":"e","tenant":"t","start_time":"2025-11-25T10:00:00Z","bytes_upp":1}`, "unknown field"},
		{`{"event_id":"e","start_time":"2025-11-25T10:00:00Z"} {}`, "trailing data"},
		{`{"event_id":"e"}`, "field start_time: missing"},
		{`{"start_time":"yesterday"}`, "field start_time"},
		{`{"start_time":"2025-11-25T10:00:00Z","end_time":"x"}`, "field end_time"},
		{`{"start_time":"2025-11-25T10:00:00Z","lat":1}`, "lat and lon"},
		{`{"start_time":"2025-11-25T10:00:00Z","bytes_up":-1}`, "bytes_up"},
		{`{"start_time":"2025-11-25T10:00:00Z","slice_sst":256}`, "slice_sst"},
		{`not json`, "decode json"},
	} {
		if _, err := ParseJSON([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseJSON(%s): err = %v, want %q", tc.in, err, tc.msg)
		}
	}
	line := string(AppendRatedJSON(nil, &ratedSamples()[0]))
	for _, tc := range []struct{ from, to, msg string }{
		{`"amount":"0.000002"`, `"amount":"0.0000021"`, "more than six decimals"},
		{`"amount":"0.000002"`, `"amount":2e-6`, "amount"},
		{`"rated_time":"2025-11-25T10:01:40.000Z"`, `"rated_time":""`, "field rated_time: missing"},
	} {
		in := strings.Replace(line, tc.from, tc.to, 1)
		if in == line {
			t.Fatalf("%s not in %s", tc.from, line)
		}
		if _, err := ParseRatedJSON([]byte(in)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseRatedJSON with %s: err = %v, want %q", tc.to, err, tc.msg)
		}
	}
}
