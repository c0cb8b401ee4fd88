package record

import (
	"bufio"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// refParseJSON is ParseJSON as it was before the hand-written parser: encoding/json into
// the shadow struct json.go still decodes rated records with. The differential tests
// hold the new parser to it.
func refParseJSON(line []byte) (Usage, error) {
	var j usageJSON
	if err := strictUnmarshal(line, &j); err != nil {
		return Usage{}, err
	}
	return j.usage()
}

var (
	refStructField   = regexp.MustCompile(`Go struct field \w+\.(\w+)`)
	refFieldPrefix   = regexp.MustCompile(`^field (\w+):`)
	refUnknownField  = regexp.MustCompile(`unknown field ".*"$`)
	refPositionError = regexp.MustCompile(`lat and lon|position is NaN`)
)

// sameUsage compares records, floats by bits (so -0 and 0 differ).
func sameUsage(a, b Usage) bool {
	fa, fb := a, b
	fa.Lat, fa.Lon, fb.Lat, fb.Lon = 0, 0, 0, 0
	return fa == fb && math.Float64bits(a.Lat) == math.Float64bits(b.Lat) &&
		math.Float64bits(a.Lon) == math.Float64bits(b.Lon)
}

// checkParseJSON holds ParseJSON to refParseJSON on one input.
func checkParseJSON(t *testing.T, line []byte) {
	t.Helper()
	want, wantErr := refParseJSON(line)
	got, err := ParseJSON(line)
	// A JSONLineReader reads it the same whatever field order it expects: the canonical
	// one, and the line's own (a second read of it).
	var r JSONLineReader
	for _, prime := range [][]byte{[]byte(sampleUsageLine), line} {
		_, _ = r.Parse(prime)
		rgot, rerr := r.Parse(line)
		if (rerr == nil) != (err == nil) || (err != nil && rerr.Error() != err.Error()) || (err == nil && !sameUsage(rgot, got)) {
			t.Fatalf("JSONLineReader.Parse(%q) after %q:\n got %+v, %v\nwant %+v, %v", line, prime, rgot, rerr, got, err)
		}
		into := Usage{EventID: "left over", BytesUp: 7, Lat: 1, HasPos: true, SliceSST: 2, HasSlice: true} // a reused slot
		if ierr := r.ParseInto(line, &into); (ierr == nil) != (err == nil) || (err == nil && !sameUsage(into, got)) {
			t.Fatalf("JSONLineReader.ParseInto(%q):\n got %+v, %v\nwant %+v, %v", line, into, ierr, got, err)
		}
	}
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("ParseJSON(%q):\n err = %v\nwant %v", line, err, wantErr)
	case err == nil && !sameUsage(got, want):
		t.Fatalf("ParseJSON(%q):\n got %+v\nwant %+v", line, got, want)
	case err == nil:
		return
	}
	if got != (Usage{}) {
		t.Fatalf("ParseJSON(%q) = %+v with error %v, want a zero record", line, got, err)
	}
	// Where the reference names the field, so must ParseJSON.
	msg, wantMsg := err.Error(), wantErr.Error()
	var need string
	if m := refStructField.FindStringSubmatch(wantMsg); m != nil {
		need = "field usageJSON." + m[1] + " "
	} else if m := refFieldPrefix.FindStringSubmatch(wantMsg); m != nil {
		need = "field " + m[1] + ":"
	} else if m := refUnknownField.FindString(wantMsg); m != "" {
		need = m
	} else if m := refPositionError.FindString(wantMsg); m != "" {
		need = m
	}
	if need != "" && !strings.Contains(msg, need) {
		t.Fatalf("ParseJSON(%q):\n err = %v\nwant it to contain %q (reference: %v)", line, err, need, wantErr)
	}
	// Beyond that, the messages are the same: ParseJSON words its errors as encoding/json does.
	if msg != wantMsg {
		t.Fatalf("ParseJSON(%q):\n err = %v\nwant %v", line, err, wantMsg)
	}
}

// parseJSONSeeds are edge cases beyond testdata/parsejson_seeds.jsonl.
func parseJSONSeeds() []string {
	const st = `"start_time":"2025-11-25T10:00:00Z"`
	seeds := []string{
		sampleUsageLine,
		"",
		" ",
		"null",
		"null}",
		"nullx",
		" null ",
		"{}",
		"{} ",
		"{}}",
		"{}]x",
		"{} x",
		"{" + st + "}",
		"{" + st + "}\n",
		"{" + st + "} \t\r\n ]garbage",
		"{" + st + "} }",
		"{" + st + "} {}",
		"{" + st + "}null",
		" \t\r\n{ \t\r\n" + `"start_time"` + " \t\r\n: \t\r\n" + `"2025-11-25T10:00:00Z"` + " \t\r\n} \t\r\n",
		"{" + st + ",}",
		"{," + st + "}",
		"{" + st + ",,}",
		"{" + st,
		"{" + st + ",",
		`{"START_TIME":"2025-11-25T10:00:00Z","Event_ID":"x"}`,
		`{"ſtart_time":"2025-11-25T10:00:00Z","ſource":"mqtt"}`,
		`{"\u0073tart_time":"2025-11-25T10:00:00Z"}`,
		`{"start\u005ftime":"2025-11-25T10:00:00Z"}`,
		`{"\u017ftart_time":"2025-11-25T10:00:00Z"}`,
		"{\"start_time\xff\":\"2025-11-25T10:00:00Z\"}",
		`{"start_time":"2025-11-25T10:00:00Z","start_time":"2025-11-25T11:00:00Z"}`,
		`{"start_time":"2025-11-25T10:00:00Z","start_time":null}`,
		`{"start_time":null,` + st + `}`,
		`{` + st + `,"bytes_up":5,"bytes_up":null}`,
		`{` + st + `,"event_id":"a","event_id":null,"tenant":"t","tenant":"u"}`,
		`{` + st + `,"lat":1,"lon":2,"lat":null}`,
		`{` + st + `,"lat":1,"lon":2,"lat":null,"lon":null}`,
		`{` + st + `,"lat":null,"lon":null}`,
		`{` + st + `,"lat":-0,"lon":-0.0}`,
		`{` + st + `,"lat":1e2,"lon":1E-2}`,
		`{` + st + `,"lat":1e400,"lon":1}`,
		`{` + st + `,"lat":1e-400,"lon":1}`,
		`{` + st + `,"lat":0.1234567890123456789,"lon":123456789012345678901234567890}`,
		`{` + st + `,"lat":52.520008,"lon":-13.404954}`,
		`{` + st + `,"lat":01,"lon":1}`,
		`{` + st + `,"lat":1.,"lon":1}`,
		`{` + st + `,"lat":.5,"lon":1}`,
		`{` + st + `,"lat":+1,"lon":1}`,
		`{` + st + `,"lat":-,"lon":1}`,
		`{` + st + `,"lat":1e,"lon":1}`,
		`{` + st + `,"lat":"1","lon":1}`,
		`{` + st + `,"lat":true,"lon":1}`,
		`{` + st + `,"slice_sst":255}`,
		`{` + st + `,"slice_sst":256}`,
		`{` + st + `,"slice_sst":3,"slice_sst":null}`,
		`{` + st + `,"slice_sst":null,"slice_sst":7}`,
		`{` + st + `,"rating_group":4294967295}`,
		`{` + st + `,"rating_group":4294967296}`,
		`{` + st + `,"bytes_up":18446744073709551615}`,
		`{` + st + `,"bytes_up":18446744073709551616}`,
		`{` + st + `,"bytes_up":99999999999999999999}`,
		`{` + st + `,"bytes_up":-0}`,
		`{` + st + `,"bytes_up":-1}`,
		`{` + st + `,"bytes_up":1.0}`,
		`{` + st + `,"bytes_up":1e3}`,
		`{` + st + `,"bytes_up":0}`,
		`{` + st + `,"bytes_up":00}`,
		`{` + st + `,"bytes_up":"1"}`,
		`{` + st + `,"bytes_up":true}`,
		`{` + st + `,"bytes_up":[]}`,
		`{` + st + `,"bytes_up":{}}`,
		`{` + st + `,"event_id":1}`,
		`{` + st + `,"event_id":[1,2]}`,
		`{` + st + `,"event_id":{"a":1}}`,
		`{` + st + `,"event_id":nul}`,
		`{` + st + `,"event_id":tru}`,
		`{` + st + `,"event_id":"\u0000\b\f\n\r\t\"\\\/"}`,
		`{` + st + `,"event_id":"\ud83d\ude9c \ud83d \ude9c \ud83dx \ud83d\u0041 \udc00\ud800"}`,
		`{` + st + `,"event_id":"\uD83D\uDE9C\uDBFF\uDFFF\uFFFF\u00e9"}`,
		`{` + st + `,"event_id":"\x"}`,
		`{` + st + `,"event_id":"\u12"}`,
		`{` + st + `,"event_id":"\u12G4"}`,
		`{` + st + `,"event_id":"\'"}`,
		"{" + st + ",\"event_id\":\"a\x01b\"}",
		"{" + st + ",\"event_id\":\"a\x7fb\"}",
		"{" + st + ",\"event_id\":\"ok\xffbad\xed\xa0\x80\xc0\xaf\"}",
		"{" + st + ",\"event_id\":\"ü🚜\"}",
		`{` + st + `,"event_id":"unterminated}`,
		`{` + st + `,"unknown":1}`,
		`{"unknown":1,` + st + `}`,
		`{` + st + `,"bytes_up":1x}`,
		`{"start_time":"2025-11-25T10:00:00.123456789123Z"}`,
		`{"start_time":"2025-11-25T10:00:00.5+01:00","end_time":"2025-11-25T10:00:00-23:59"}`,
		`{"start_time":"2025-11-25T10:00:00,5Z"}`,
		`{"start_time":"2025-11-25t10:00:00Z"}`,
		`{"start_time":"2025-11-25T10:00:00z"}`,
		`{"start_time":"2024-02-29T00:00:00Z","end_time":"2023-02-29T00:00:00Z"}`,
		`{"start_time":"2100-02-29T00:00:00Z"}`,
		`{"start_time":"2000-02-29T00:00:00Z"}`,
		`{"start_time":"0000-01-01T00:00:00Z","received_time":"9999-12-31T23:59:59.999999999Z"}`,
		`{"start_time":"2025-11-25T24:00:00Z"}`,
		`{"start_time":"2025-11-25T23:59:60Z"}`,
		`{"start_time":"2025-11-25T10:00:00+24:00"}`,
		`{"start_time":"2025-11-25T10:00:00"}`,
		`{"start_time":"1969-12-31T23:59:59.9999Z"}`,
		`{"start_time":"2025-11-25T10:00:00Z","end_time":""}`,
		`{"start_time":"","end_time":"2025-11-25T10:00:00Z"}`,
		`{"start_time":"2025-11-25T10:00:00Z","received_time":"\u0032025-11-25T10:00:00Z"}`,
		`{"start_time":"2025-11-25T10:00:00Z","end_time":"x"}`,
		"\ufeff{" + st + "}",
		"[]",
		`"x"`,
		"1",
		"{" + st + ",\"event_id\":\"" + strings.Repeat("long value ", 40) + "\"}",
		`{"start_time":"2025-11-25T10:00:00Z","ΚΕΛΒΙΝ":1}`,
	}
	return seeds
}

// readParseJSONSeeds reads testdata/parsejson_seeds.jsonl: one input a line.
func readParseJSONSeeds(t testing.TB) []string {
	f, err := os.Open("testdata/parsejson_seeds.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestParseJSONMatchesReference(t *testing.T) {
	for _, s := range append(readParseJSONSeeds(t), parseJSONSeeds()...) {
		checkParseJSON(t, []byte(s))
	}
	for _, u := range jsonSamples() {
		checkParseJSON(t, AppendJSON(nil, &u))
	}
}

// TestParseJSONFloats checks the float fast path against strconv on random decimals.
func TestParseJSONFloats(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		var b []byte
		if r.IntN(2) == 0 {
			b = append(b, '-')
		}
		b = strconv.AppendUint(b, r.Uint64N(1_000_000_000), 10)
		if r.IntN(4) != 0 {
			b = append(b, '.')
			for n := 1 + r.IntN(18); n > 0; n-- {
				b = append(b, byte('0'+r.IntN(10)))
			}
		}
		p := jsonParser{data: b}
		got, err := p.parseFloat(fLat, "float64")
		want, werr := strconv.ParseFloat(string(b), 64)
		if err != nil || werr != nil || math.Float64bits(got) != math.Float64bits(want) || p.pos != len(b) {
			t.Fatalf("parseFloat(%s) = %v, %v; strconv: %v, %v", b, got, err, want, werr)
		}
	}
}

func TestParseJSONAllocs(t *testing.T) {
	line := []byte(sampleUsageLine)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseJSON(line); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("ParseJSON allocates %v times per canonical line, want at most 1", n)
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range readParseJSONSeeds(f) {
		f.Add([]byte(s))
	}
	for _, s := range parseJSONSeeds() {
		f.Add([]byte(s))
	}
	for _, u := range jsonSamples() {
		f.Add(AppendJSON(nil, &u))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkParseJSON(t, line)
	})
}

func BenchmarkParseJSON(b *testing.B) {
	line := []byte(sampleUsageLine)
	for _, impl := range []struct {
		name  string
		parse func([]byte) (Usage, error)
	}{{"handwritten", ParseJSON}, {"encoding_json", refParseJSON}} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, err := impl.parse(line); err != nil {
					b.Fatal(err)
				}
			}
			reportRows(b, 1, 0)
		})
	}
}

func TestKeySlots(t *testing.T) {
	for f, name := range usageFieldNames {
		line := []byte(`"` + name + `":"a value long enough to read words"`)
		if got, end := plainKey(line, 0); got != f || end != len(name)+2 {
			t.Errorf("plainKey(%q) = %d, %d; want %d, %d", line, got, end, f, len(name)+2)
		}
	}
	for _, key := range []string{`"event_ids"`, `"Event_id"`, `"evt_id"`, `"x"`, `""`, `"event_id`, `"a\u0062"`,
		`"received_timex"`, `"slice_s\"d"`, `"bytes_up\u0000"`} {
		if f, _ := plainKey([]byte(key+`: "a value long enough to read words"`), 0); f >= 0 {
			t.Errorf("plainKey(%s) = %d, want -1", key, f)
		}
	}
}

func TestJSONLineReader(t *testing.T) {
	const ns = "http:acme:"
	r := JSONLineReader{NS: ns}
	var kept []Usage // records the reader returned earlier must not change
	rest := `,"tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z"}`
	for _, c := range []struct{ id, want string }{
		{`"gw-1"`, "http:acme:gw-1"},
		{`"http:acme:gw-1"`, "http:acme:gw-1"},                                // a retry of an id already in the namespace
		{`"http:acme:"`, "http:acme:"},                                        // the namespace alone is in it
		{`"http:acm"`, "http:acme:http:acm"},                                  // a prefix of it is not
		{`"g\u0077-1"`, "http:acme:gw-1"},                                     // escaped
		{`"http\u003aacme:gw-1"`, "http:acme:gw-1"},                           // escaped, in the namespace once decoded
		{`"` + strings.Repeat("é", 200) + `"`, ns + strings.Repeat("é", 200)}, // past the stack buffer
		{`""`, ""},
		{`null`, ""},
	} {
		line := []byte(`{"event_id":` + c.id + rest)
		got, err := r.Parse(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		want, err := ParseJSON(line)
		if err != nil {
			t.Fatal(err)
		}
		want.EventID = c.want
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", line, got, want)
		}
		kept = append(kept, got)
	}
	line := []byte(sampleUsageLine)
	for range 500 { // a few chunks' worth
		if _, err := r.Parse(line); err != nil {
			t.Fatal(err)
		}
	}
	for i, u := range kept[:7] {
		if want := []string{"http:acme:gw-1", "http:acme:gw-1", "http:acme:", "http:acme:http:acm", "http:acme:gw-1",
			"http:acme:gw-1", ns + strings.Repeat("é", 200)}[i]; u.EventID != want || u.Tenant != "acme" || u.Device != "d1" {
			t.Errorf("record %d changed: %+v", i, u)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = r.Parse(line) }); n > 0.1 {
		t.Errorf("JSONLineReader.Parse: %v allocations per line, want a chunk's share", n)
	}
}
