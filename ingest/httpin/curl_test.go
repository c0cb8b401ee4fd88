package httpin

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"fleetmeter/record"
)

// These tests drive the server with the real curl binary and check the exact records
// the sink acknowledged against hand-written expectations.

var now = testNow.UnixMilli()

func wantRecords(t *testing.T, got, want []record.Usage) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d records, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("record %d:\n got %s\nwant %s", i, record.AppendJSON(nil, &got[i]), record.AppendJSON(nil, &want[i]))
		}
	}
}

func TestCurlBodies(t *testing.T) {
	validJSONL := []record.Usage{
		{EventID: "http:acme:gw-0001", Tenant: "acme", Device: "meter-1", Source: "http",
			StartTime: ms("2026-11-25T11:00:00Z"), EndTime: ms("2026-11-25T11:05:00Z"), ReceivedTime: now,
			BytesUp: 1200, BytesDown: 34000, DurationMs: 300000, Events: 3, RatingGroup: 100,
			PLMN: "262-01", Cell: "262-01-1A2B3C", Lat: 52.52, Lon: 13.405, HasPos: true, RAT: "NR",
			SliceSST: 1, HasSlice: true, SliceSD: "00a1ff"},
		{EventID: "http:acme:gw-0002", Tenant: "acme", Device: "meter-2", Source: "http",
			StartTime: ms("2026-11-25T10:30:00.250Z"), EndTime: ms("2026-11-25T10:30:00.250Z"), ReceivedTime: now, Events: 1},
		{EventID: "http:acme:gw-0003", Tenant: "acme", Device: "meter-1", Source: "http",
			StartTime: ms("2026-11-25T11:10:00Z"), EndTime: ms("2026-11-25T11:10:00Z"), ReceivedTime: now, BytesUp: 5},
		{EventID: "http:acme:crlf-1", Tenant: "acme", Device: "meter-9", Source: "http",
			StartTime: ms("2026-11-25T11:59:00Z"), EndTime: ms("2026-11-25T11:59:00Z"), ReceivedTime: now, BytesDown: 7},
	}
	senml := []record.Usage{
		{EventID: "http:acme:dev1:m-0001", Tenant: "acme", Device: "dev1", Source: "http",
			StartTime: ms("2026-11-25T11:00:00Z"), EndTime: ms("2026-11-25T11:00:00Z"), ReceivedTime: now,
			BytesUp: 1200, BytesDown: 34000, DurationMs: 300250, Events: 3, RatingGroup: 100,
			PLMN: "262-01", Cell: "262-01-1A2B3C", Lat: 52.52, Lon: 13.405, HasPos: true, RAT: "NR",
			SliceSST: 1, HasSlice: true, SliceSD: "00a1ff"},
	}
	cases := []struct {
		name, contentType, file, query string
		want                           []record.Usage
	}{
		{"jsonl/x-ndjson", "application/x-ndjson", "testdata/jsonl/valid.jsonl", "", validJSONL},
		{"jsonl/jsonl+charset", "application/jsonl; charset=utf-8", "testdata/jsonl/valid.jsonl", "", validJSONL},
		{"senml+json", "application/senml+json", "testdata/device/senml.json", "?device=dev1", senml},
		{"senml+cbor", "application/senml+cbor", "testdata/device/senml.cbor", "?device=dev1", senml},
		{"plain-json", "application/json", "testdata/device/plain.json", "?device=meter-5", []record.Usage{
			{EventID: "http:acme:meter-5:7", Tenant: "acme", Device: "meter-5", Source: "http",
				StartTime: ms("2026-11-25T11:00:00Z"), EndTime: ms("2026-11-25T11:00:00Z"), ReceivedTime: now,
				BytesUp: 10, RAT: "NB-IoT"},
			{EventID: "http:acme:meter-5:8", Tenant: "acme", Device: "meter-5", Source: "http",
				StartTime: ms("2026-11-25T11:00:00Z"), EndTime: ms("2026-11-25T11:30:00.5Z"), ReceivedTime: now,
				BytesDown: 20},
		}},
		{"cloudevents", "application/cloudevents-batch+json", "testdata/cloudevents/batch.json", "", []record.Usage{
			{EventID: "http:acme:meter-1:ce-1", Tenant: "acme", Device: "meter-1", Source: "http",
				StartTime: ms("2026-11-25T11:00:00Z"), EndTime: ms("2026-11-25T11:00:00Z"), ReceivedTime: now, BytesUp: 100},
			{EventID: "http:acme:meter-3:42", Tenant: "acme", Device: "meter-3", Source: "http",
				StartTime: ms("2026-11-25T11:15:00Z"), EndTime: ms("2026-11-25T11:15:00Z"), ReceivedTime: now,
				BytesDown: 2048, RAT: "NB-IoT"},
			{EventID: "http:acme:meter-3:ce-3", Tenant: "acme", Device: "meter-3", Source: "http",
				StartTime: ms("2026-11-25T11:16:00Z"), EndTime: ms("2026-11-25T11:16:00Z"), ReceivedTime: now, Events: 2},
			{EventID: "http:acme:partner-77", Tenant: "acme", Device: "meter-4", Source: "http",
				StartTime: ms("2026-11-25T11:20:00Z"), EndTime: ms("2026-11-25T11:25:00Z"), ReceivedTime: now, DurationMs: 300000},
		}},
		{"cloudevent", "application/cloudevents+json", "testdata/cloudevents/event.json", "", []record.Usage{
			{EventID: "http:acme:tracker-12:evt-9f2c", Tenant: "acme", Device: "tracker-12", Source: "http",
				StartTime: ms("2026-11-25T11:40:00Z"), EndTime: ms("2026-11-25T11:50:00Z"), ReceivedTime: now,
				DurationMs: 600000, BytesUp: 4096, PLMN: "310-410", RAT: "LTE-M", SliceSST: 3, HasSlice: true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &fakeSink{}
			s := startServer(t, testConfig(), sink)
			r := post(t, s, acmeKey, tc.contentType, tc.file, tc.query)
			if r.status != 202 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			want := `{"accepted":` + itoa(len(tc.want)) + "}\n"
			if r.body != want || r.header["content-type"] != "application/json" {
				t.Errorf("body %q (%s), want %q", r.body, r.header["content-type"], want)
			}
			recs, rejs := sink.got()
			wantRecords(t, recs, tc.want)
			if len(rejs) != 0 {
				t.Errorf("rejections %+v", rejs)
			}
			// A retry yields the same records, event_ids included: the pipeline dedupes it.
			if r := post(t, s, acmeKey, tc.contentType, tc.file, tc.query); r.status != 202 {
				t.Fatalf("retry: status %d: %s", r.status, r.body)
			}
			recs, _ = sink.got()
			wantRecords(t, recs[len(tc.want):], tc.want)
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestCurlGzip(t *testing.T) {
	sink := &fakeSink{}
	s := startServer(t, testConfig(), sink)
	raw, err := os.ReadFile("testdata/jsonl/valid.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(raw)
	zw.Close()
	file := filepath.Join(t.TempDir(), "valid.jsonl.gz")
	os.WriteFile(file, zb.Bytes(), 0o600)
	r := post(t, s, acmeKey, "application/x-ndjson", file, "", "-H", "Content-Encoding: gzip")
	if r.status != 202 || r.body != "{\"accepted\":4}\n" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	// Not gzip at all: the whole body is refused and lands in rejected.
	r = post(t, s, acmeKey, "application/x-ndjson", "testdata/jsonl/valid.jsonl", "", "-H", "Content-Encoding: gzip")
	if r.status != 400 || !strings.Contains(r.body, `"reason":"bad_encoding"`) {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if _, rejs := sink.got(); len(rejs) != 1 || rejs[0].Reason != "bad_encoding" || !bytes.Equal(rejs[0].Raw, raw) {
		t.Fatalf("rejections %+v", rejs)
	}
}

func TestCurlAuth(t *testing.T) {
	sink := &fakeSink{}
	s := startServer(t, testConfig(), sink)
	const file = "testdata/jsonl/valid.jsonl"
	for name, extra := range map[string][]string{
		"none":        nil,
		"unknown key": {"-H", "Authorization: Bearer " + strings.Repeat("x", 25)},
		"key prefix":  {"-H", "Authorization: Bearer " + acmeKey[:20]},
		"basic":       {"-u", "acme:" + acmeKey},
		"no scheme":   {"-H", "Authorization: " + acmeKey},
	} {
		r := post(t, s, "", "application/x-ndjson", file, "", extra...)
		if r.status != 401 || r.header["www-authenticate"] != `Bearer realm="fleetmeter"` ||
			!strings.Contains(r.body, `"error":"unauthorized"`) {
			t.Errorf("%s: status %d %v: %s", name, r.status, r.header, r.body)
		}
	}
	if calls := sink.callCount(); calls != 0 {
		t.Errorf("unauthenticated requests reached the sink %d times", calls)
	}
	// farmco's key posting acme's records: every line is the wrong tenant.
	r := post(t, s, farmKey, "application/x-ndjson", file, "")
	if r.status != 400 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var resp struct {
		Accepted, Rejected int
		Errors             []struct {
			Line   int
			Reason string
		}
	}
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 0 || resp.Rejected != 4 || len(resp.Errors) != 4 || resp.Errors[3].Line != 5 ||
		resp.Errors[0].Reason != "tenant_mismatch" {
		t.Fatalf("response %+v", resp)
	}
	recs, rejs := sink.got()
	if len(recs) != 0 || len(rejs) != 4 || rejs[0].Tenant != "farmco" || rejs[0].Reason != "tenant_mismatch" {
		t.Fatalf("records %d, rejections %+v", len(recs), rejs)
	}
}

func TestCurlTooLarge(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBody = 1024
	cfg.MaxLines = 3
	sink := &fakeSink{}
	s := startServer(t, cfg, sink)
	big := filepath.Join(t.TempDir(), "big.jsonl")
	os.WriteFile(big, bytes.Repeat([]byte("\n"), 2000), 0o600)
	// valid.jsonl is 4 records on 5 lines and under 1 KiB.
	for name, args := range map[string][]string{
		"body":         {"application/x-ndjson", big},
		"chunked body": {"application/x-ndjson", big, "-H", "Transfer-Encoding: chunked"},
		"lines":        {"application/x-ndjson", "testdata/jsonl/valid.jsonl"},
		"events":       {"application/cloudevents-batch+json", "testdata/cloudevents/batch.json"},
	} {
		r := post(t, s, acmeKey, args[0], args[1], "", args[2:]...)
		if r.status != 413 || !strings.Contains(r.body, `"error":"too_large"`) {
			t.Errorf("%s: status %d: %s", name, r.status, r.body)
		}
	}
	// A gzip body within max_body that inflates beyond it.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(bytes.Repeat([]byte(" "), 1<<20))
	zw.Close()
	bomb := filepath.Join(t.TempDir(), "bomb.gz")
	os.WriteFile(bomb, zb.Bytes(), 0o600)
	if r := post(t, s, acmeKey, "application/x-ndjson", bomb, "", "-H", "Content-Encoding: gzip"); r.status != 413 {
		t.Errorf("gzip bomb: status %d: %s", r.status, r.body)
	}
	if recs, rejs := sink.got(); len(recs)+len(rejs) != 0 {
		t.Errorf("413 left %d records, %d rejections", len(recs), len(rejs))
	}
}

func TestCurlUnsupportedMediaType(t *testing.T) {
	s := startServer(t, testConfig(), &fakeSink{})
	for name, args := range map[string][]string{
		"text/plain":      {"-H", "Content-Type: text/plain"},
		"no content-type": {"-H", "Content-Type:"},
		"form (curl's)":   nil,
		"brotli":          {"-H", "Content-Type: application/x-ndjson", "-H", "Content-Encoding: br"},
	} {
		r := post(t, s, acmeKey, "", "testdata/jsonl/valid.jsonl", "", args...)
		if r.status != 415 || !strings.Contains(r.body, "unsupported_media_type") {
			t.Errorf("%s: status %d: %s", name, r.status, r.body)
		}
	}
}

func TestCurlPerLineErrors(t *testing.T) {
	sink := &fakeSink{}
	s := startServer(t, testConfig(), sink)
	r := post(t, s, acmeKey, "application/x-ndjson", "testdata/jsonl/mixed.jsonl", "")
	if r.status != 400 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var resp struct {
		Accepted int `json:"accepted"`
		Rejected int `json:"rejected"`
		Errors   []struct {
			Line    int    `json:"line"`
			Index   *int   `json:"index"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	type lineErr struct {
		line          int
		reason, inMsg string
	}
	want := []lineErr{
		{2, "bad_json", "unexpected EOF"},
		{3, "tenant_mismatch", `tenant "farmco" is not the API key's tenant "acme"`},
		{4, "missing_event_id", "event_id is required"},
		{6, "duplicate_id", `event_id "http:acme:a-1" repeats line 1`},
		{7, "stale_time", "starts at 2026-01-01T00:00:00.000Z"},
		{8, "bad_json", `unknown field "colour"`},
		{9, "bad_field", `rat "5G"`},
	}
	if resp.Accepted != 2 || resp.Rejected != len(want) || len(resp.Errors) != len(want) {
		t.Fatalf("response %s", r.body)
	}
	for i, w := range want {
		e := resp.Errors[i]
		if e.Line != w.line || e.Reason != w.reason || !strings.Contains(e.Message, w.inMsg) || e.Index != nil {
			t.Errorf("error %d: %+v, want %+v", i, e, w)
		}
	}
	recs, rejs := sink.got()
	wantRecords(t, recs, []record.Usage{
		{EventID: "http:acme:a-1", Tenant: "acme", Device: "meter-1", Source: "http",
			StartTime: ms("2026-11-25T11:00:00Z"), EndTime: ms("2026-11-25T11:00:00Z"), ReceivedTime: now, BytesUp: 10},
		{EventID: "http:acme:a-5", Tenant: "acme", Device: "meter-2", Source: "http",
			StartTime: ms("2026-11-25T11:01:00Z"), EndTime: ms("2026-11-25T11:01:00Z"), ReceivedTime: now, BytesDown: 20},
	})
	lines := bytes.Split(must(os.ReadFile("testdata/jsonl/mixed.jsonl")), []byte("\n"))
	devices := []string{"", "tractor-9", "meter-1", "meter-1", "meter-1", "", "meter-1"}
	if len(rejs) != len(want) {
		t.Fatalf("%d rejections, want %d", len(rejs), len(want))
	}
	for i, w := range want {
		j := rejs[i]
		if j.Source != "http" || j.Tenant != "acme" || j.Device != devices[i] || j.Reason != w.reason ||
			j.Received != now || !bytes.Equal(j.Raw, lines[w.line-1]) || !strings.HasPrefix(j.Detail, "line "+itoa(w.line)+": ") {
			t.Errorf("rejection %d: %+v", i, j)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCurlCloudEventsErrors(t *testing.T) {
	sink := &fakeSink{}
	s := startServer(t, testConfig(), sink)
	r := post(t, s, acmeKey, "application/cloudevents-batch+json", "testdata/cloudevents/mixed.json", "")
	if r.status != 400 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var resp struct {
		Accepted, Rejected int
		Errors             []struct {
			Line   int    `json:"line"`
			Index  *int   `json:"index"`
			ID     string `json:"id"`
			Reason string `json:"reason"`
		}
	}
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		index      int
		id, reason string
	}{
		{1, "bad-type", "unknown_type"},
		{2, "no-subject", "missing_identity"},
		{3, "old", "bad_event"},
		{4, "b64", "bad_event"},
		{5, "other-device", "device_mismatch"},
		{6, "bad-field", "negative_counter"},
		{7, "", "bad_event"},
	}
	if resp.Accepted != 1 || resp.Rejected != len(want) || len(resp.Errors) != len(want) {
		t.Fatalf("response %s", r.body)
	}
	for i, w := range want {
		e := resp.Errors[i]
		if e.Index == nil || *e.Index != w.index || e.ID != w.id || e.Reason != w.reason || e.Line != 0 {
			t.Errorf("error %d: %+v, want %+v", i, e, w)
		}
	}
	recs, rejs := sink.got()
	wantRecords(t, recs, []record.Usage{{EventID: "http:acme:meter-1:m-1", Tenant: "acme", Device: "meter-1",
		Source: "http", StartTime: ms("2026-11-25T11:00:00Z"), EndTime: ms("2026-11-25T11:00:00Z"), ReceivedTime: now, Events: 1}})
	if len(rejs) != len(want) || string(rejs[6].Raw) != "42" || rejs[0].Reason != "unknown_type" || rejs[0].Device != "meter-1" {
		t.Errorf("rejections %+v", rejs)
	}
}

func TestCurlSinkFailure(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		sink := &fakeSink{err: errors.New("kafka: not enough replicas")}
		s := startServer(t, testConfig(), sink)
		for _, f := range []string{"testdata/jsonl/valid.jsonl", "testdata/jsonl/mixed.jsonl"} {
			r := post(t, s, acmeKey, "application/x-ndjson", f, "")
			if r.status != 503 || r.header["retry-after"] != "5" || !strings.Contains(r.body, "not enough replicas") {
				t.Errorf("%s: status %d %v: %s", f, r.status, r.header, r.body)
			}
		}
	})
	t.Run("no ack", func(t *testing.T) {
		cfg := testConfig()
		cfg.AckTimeout = 200 * time.Millisecond
		cfg.RetryAfter = 1500 * time.Millisecond
		hold := make(chan struct{})
		sink := &fakeSink{hold: hold}
		s := startServer(t, cfg, sink)
		defer close(hold)
		r := post(t, s, acmeKey, "application/x-ndjson", "testdata/jsonl/valid.jsonl", "")
		if r.status != 503 || r.header["retry-after"] != "2" || !strings.Contains(r.body, "ack_timeout") {
			t.Errorf("status %d %v: %s", r.status, r.header, r.body)
		}
	})
}
