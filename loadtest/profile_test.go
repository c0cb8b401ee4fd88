package loadtest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// TestSplitProfile builds a profile whose stacks are known and checks each sample lands
// in the first part its stack reaches, read back from the file format go test writes.
func TestSplitProfile(t *testing.T) {
	funcs := map[string]*profile.Function{}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10_000_000,
	}
	var locID uint64
	// stack adds a sample of d whose frames are names, leaf first.
	stack := func(d time.Duration, names ...string) {
		var locs []*profile.Location
		for _, n := range names {
			fn, ok := funcs[n]
			if !ok {
				fn = &profile.Function{ID: uint64(len(funcs) + 1), Name: n}
				funcs[n] = fn
				p.Function = append(p.Function, fn)
			}
			locID++
			loc := &profile.Location{ID: locID, Line: []profile.Line{{Function: fn}}}
			p.Location = append(p.Location, loc)
			locs = append(locs, loc)
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{int64(d / (10 * time.Millisecond)), int64(d)}})
	}
	serve := []string{"net/http.serverHandler.ServeHTTP", "net/http.(*conn).serve"}
	stack(30*time.Millisecond, append([]string{"fleetmeter/ingest/httpin.(*lineReader).fast", "fleetmeter/ingest/httpin.(*batch).jsonLines"}, serve...)...)
	stack(20*time.Millisecond, append([]string{"fleetmeter/record.ValidateWithinIdentified", "fleetmeter/ingest/httpin.(*batch).check"}, serve...)...)
	// An assist under the parser counts as the garbage collector's: the first part its stack reaches.
	stack(10*time.Millisecond, append([]string{"runtime.gcAssistAlloc", "runtime.mallocgc", "fleetmeter/ingest/httpin.(*lineReader).fast"}, serve...)...)
	stack(40*time.Millisecond, "runtime.scanobject", "runtime.gcBgMarkWorker")
	stack(50*time.Millisecond, append([]string{"syscall.read", "net/http.(*body).Read", "io.ReadAll"}, serve...)...)
	stack(60*time.Millisecond, "syscall.write", "net/http.(*persistConn).writeLoop")
	stack(70*time.Millisecond, "net/http.(*response).finishRequest", "net/http.(*conn).serve")
	stack(80*time.Millisecond, "encoding/json.checkValid", "encoding/json.Valid", "fleetmeter/ingest/httpin.scanServer.func1")
	stack(90*time.Millisecond, "runtime.findRunnable", "runtime.schedule")
	stack(5*time.Millisecond, append([]string{"fleetmeter/ingest/httpin.(*Server).handleUsage"}, serve...)...)

	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := splitProfile(path, httpParts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		partGC:                     50 * time.Millisecond,
		partParse:                  110 * time.Millisecond, // the fast path and json.Valid
		partAdmission:              20 * time.Millisecond,
		"reading the request body": 50 * time.Millisecond,
		"the benchmark's HTTP clients (same on both sides)":      60 * time.Millisecond,
		"the rest of the handler (hand-off to the sink, answer)": 5 * time.Millisecond,
		"net/http's server (requests, responses, connections)":   70 * time.Millisecond,
		otherPart: 90 * time.Millisecond,
	}
	for name, d := range want {
		if got.Parts[name] != d {
			t.Errorf("%s: %v, want %v", name, got.Parts[name], d)
		}
	}
	if len(got.Parts) != len(want) {
		t.Errorf("parts %v, want %d of them", got.Parts, len(want))
	}
	if got.Total != 455*time.Millisecond {
		t.Errorf("total %v, want 455ms", got.Total)
	}
}
