package httpin

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"fleetmeter/record"
)

const testNS = "http:acme:"

// sameUsage reports how two records differ ("" when they do not), floats compared by
// their bits (so -0 and 0 differ).
func sameUsage(a, b record.Usage) string {
	if math.Float64bits(a.Lat) != math.Float64bits(b.Lat) || math.Float64bits(a.Lon) != math.Float64bits(b.Lon) {
		return "position"
	}
	a.Lat, a.Lon, b.Lat, b.Lon = 0, 0, 0, 0
	if a != b {
		return "fields"
	}
	return ""
}

// compareLine reads line with r (fast path, falling back) and with a fresh full parser,
// and fails t if they disagree: a line fast accepts must be one the full parser accepts
// as the same record, and parseInto must give the full parser's record or error. It
// reports whether fast took the line.
func compareLine(t testing.TB, r *lineReader, line []byte) bool {
	t.Helper()
	full := record.JSONLineReader{NS: testNS}
	var want record.Usage
	wantErr := full.ParseInto(line, &want)

	// Both start from a record holding something: they must not leave any of it.
	junk := record.Usage{EventID: "junk", Tenant: "t", Device: "d", Source: "s", StartTime: 1, EndTime: 2,
		ReceivedTime: 3, BytesUp: 4, BytesDown: 5, DurationMs: 6, Events: 7, RatingGroup: 8, PLMN: "262-01",
		Cell: "c", Lat: 9, Lon: 10, HasPos: true, RAT: "NR", SliceSST: 11, HasSlice: true, SliceSD: "abcdef"}
	fu := junk
	took := r.fast(line, &fu)
	if took {
		if wantErr != nil {
			t.Fatalf("fast path accepted %q, full parser refused it: %v", line, wantErr)
		}
		if d := sameUsage(fu, want); d != "" {
			t.Fatalf("fast path and full parser differ in %s on %q:\nfast %+v\nfull %+v", d, line, fu, want)
		}
	}
	got := junk
	err := r.parseInto(line, &got)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("parseInto(%q) error %v, full parser %v", line, err, wantErr)
	case err != nil && err.Error() != wantErr.Error():
		t.Fatalf("parseInto(%q) error %q, full parser %q", line, err, wantErr)
	case err == nil && sameUsage(got, want) != "":
		t.Fatalf("parseInto(%q) = %+v, full parser %+v", line, got, want)
	}
	return took
}

// seedLines are canonical lines (the benchmark's) and the JSON Lines test bodies' lines.
func seedLines(t testing.TB) [][]byte {
	lines := bytes.Split(bytes.TrimSpace(benchBody(40)), []byte{'\n'})
	files, _ := filepath.Glob("testdata/jsonl/*.jsonl")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(b, []byte{'\n'}) {
			if l = bytes.TrimSpace(l); len(l) > 0 {
				lines = append(lines, l)
			}
		}
	}
	return append(lines,
		[]byte(`{"event_id": "x-1", "tenant": "acme", "device": "d", "start_time": "2026-11-25T11:00:00.5Z", "lat": -0.0, "lon": 0}`),
		[]byte(`{"event_id":"http:acme:x-2","tenant":"acme","device":"d","start_time":"2026-11-25T11:00:00+01:00","received_time":"2026-11-25T10:00:00Z","slice_sst":1,"slice_sd":"ABCDEF","duration_ms":0,"source":"mqtt"}`),
		[]byte(`{"event_id":"http:acme:","tenant":"acme","device":"d","start_time":"2026-11-25T11:00:00Z","lat":0.1234567890123456,"lon":123456789012345}`),
		[]byte(`{"event_id":"http:acme","tenant":"acme","device":"d","start_time":"2026-11-25T11:00:00Z","lat":-12345678.9012345,"lon":1.0000000000000001}`),
		[]byte(`{"event_id":"x-3","tenant":"äcme","device":"gerät-7","start_time":"2026-11-25T11:59:59Z","end_time":"2026-11-25T12:00:00Z","lat":1.5,"lon":-179.999999999999}`),
	)
}

// mutate changes line in one to three places, towards what a parser could get wrong:
// JSON's special bytes, digits, escapes, spaces, bad UTF-8, names in other cases, repeated
// keys, long numbers, null.
func mutate(rng *rand.Rand, line []byte) []byte {
	out := bytes.Clone(line)
	pieces := []string{`"`, `\`, `,`, `:`, `{`, `}`, `[`, ` `, "\t", `-`, `.`, `e`, `E`, `+`, `0`, `1`, `9`,
		`null`, `\u0041`, `\n`, "\x01", "\x7f", "\xc3\xa4", "\xff", "\xe2\x80", `"lat":1`, `"lon":2`,
		`"event_id":"y"`, `"EVENT_ID":"z"`, `"Tenant":"acme"`, `18446744073709551616`, `4294967296`, `256`,
		`1.0000000000000001`, `123456789012345`, `1234567890123456`, `"2026-11-25T11:00:60Z"`,
		`"2026-02-29T11:00:00Z"`, `"2026-11-25t11:00:00z"`, `""`, `00`, `-0`, `0.`}
	for range 1 + rng.IntN(3) {
		if len(out) == 0 {
			break
		}
		at := rng.IntN(len(out) + 1)
		switch rng.IntN(4) {
		case 0: // insert
			out = append(out[:at], append([]byte(pieces[rng.IntN(len(pieces))]), out[at:]...)...)
		case 1: // delete a few bytes
			end := min(len(out), at+1+rng.IntN(4))
			out = append(out[:at], out[end:]...)
		case 2: // replace one byte
			if at < len(out) {
				out[at] = pieces[rng.IntN(len(pieces))][0]
			}
		case 3: // a digit changed
			if at < len(out) && out[at] >= '0' && out[at] <= '9' {
				out[at] = byte('0' + rng.IntN(10))
			}
		}
	}
	return out
}

// TestFastLineMatchesFull is the differential test of the fast path: canonical lines,
// the test bodies' lines and many mutations of them read by one lineReader (its caches
// carried from line to line, as in a body) give the full parser's records and errors.
func TestFastLineMatchesFull(t *testing.T) {
	lines := seedLines(t)
	var r lineReader
	r.reset("acme", testNS)
	fast := 0
	for _, l := range lines {
		if compareLine(t, &r, l) {
			fast++
		}
	}
	// The fast path must carry the common case, or this test proves nothing about it.
	if fast < len(lines)*3/4 {
		t.Fatalf("fast path took %d of %d seed lines", fast, len(lines))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 30000
	fast = 0
	for range n {
		if compareLine(t, &r, mutate(rng, lines[rng.IntN(len(lines))])) {
			fast++
		}
	}
	if fast < n/10 || fast == n {
		t.Fatalf("fast path took %d of %d mutated lines: the mutations miss one side", fast, n)
	}
}

// TestJSONLinesFastMatchesFull checks whole bodies: the batch a body yields through the
// fast path (records, rejections with their details and raw bytes, the errors listed)
// is the one it yields through the full parser alone.
func TestJSONLinesFastMatchesFull(t *testing.T) {
	lines := seedLines(t)
	rng := rand.New(rand.NewPCG(3, 4))
	lim := DefaultConfig().limits()
	var fast, full batch
	full.lines.noFast = true
	for range 300 {
		var body []byte
		for range 1 + rng.IntN(30) {
			l := lines[rng.IntN(len(lines))]
			if rng.IntN(3) == 0 {
				l = mutate(rng, l)
			}
			body = append(append(body, l...), '\n')
		}
		fast.reset("acme", now, lim, 1000, nil)
		full.reset("acme", now, lim, 1000, nil)
		fast.jsonLines(body)
		full.jsonLines(body)
		if len(fast.recs) != len(full.recs) {
			t.Fatalf("body %q: %d records through the fast path, %d through the full parser", body, len(fast.recs), len(full.recs))
		}
		for i := range fast.recs {
			if d := sameUsage(fast.recs[i], full.recs[i]); d != "" {
				t.Fatalf("body %q: record %d differs in %s:\nfast %+v\nfull %+v", body, i, d, fast.recs[i], full.recs[i])
			}
		}
		if fast.nerr != full.nerr || !reflect.DeepEqual(fast.errs, full.errs) || !reflect.DeepEqual(fast.rejs, full.rejs) {
			t.Fatalf("body %q: refusals differ:\nfast %d %+v\nfull %d %+v", body, fast.nerr, fast.errs, full.nerr, full.errs)
		}
	}
}

// FuzzFastLine checks the fast path against the full parser on any line, read after a
// canonical line (so the field order and time caches are warm) and again on its own.
// Seeds: testdata/fuzz/FuzzFastLine and the lines of testdata/jsonl.
func FuzzFastLine(f *testing.F) {
	for _, l := range seedLines(f) {
		f.Add(l)
	}
	warm := bytes.TrimSpace(benchBody(1))
	f.Fuzz(func(t *testing.T, line []byte) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || bytes.IndexByte(line, '\n') >= 0 {
			return // jsonLines never passes these
		}
		var r lineReader
		r.reset("acme", testNS)
		compareLine(t, &r, line)
		compareLine(t, &r, warm)
		compareLine(t, &r, line)
		if strings.Count(string(line), `"`) > 0 {
			compareLine(t, &r, bytes.ReplaceAll(line, []byte(`"acme"`), []byte(`"acme2"`)))
		}
	})
}
