package httpin

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"fleetmeter/record"
)

// knownReasons are the codes a JSON Lines body can be refused with (no registry).
var knownReasons = map[string]bool{
	record.ReasonBadJSON: true, record.ReasonTenantMismatch: true, record.ReasonBadDevice: true,
	record.ReasonMissingEventID: true, record.ReasonBadID: true, record.ReasonDuplicateID: true,
	record.ReasonFutureTime: true, record.ReasonStaleTime: true, record.ReasonAbsurdCounter: true,
	record.ReasonBadField: true, record.ReasonBadInterval: true, record.ReasonBadPosition: true,
	record.ReasonMissingIdentity: true, record.ReasonBadTime: true,
}

// FuzzJSONLines checks the JSON Lines body handler: no panic; every non-blank line is
// either accepted or refused, once, in order, with a known reason and its raw bytes;
// accepted records are valid, belong to the key's tenant and source http, and have
// distinct event_ids; and posting the produced records again (a client's retry of what
// it read back) yields the same records, event_ids included.
func FuzzJSONLines(f *testing.F) {
	files, err := filepath.Glob("testdata/jsonl/*.jsonl")
	if err != nil || len(files) == 0 {
		f.Fatal("no seeds")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	lim := DefaultConfig().limits()
	f.Fuzz(func(t *testing.T, body []byte) {
		if tooManyLines(body, 1000) {
			return
		}
		var b batch
		b.reset("acme", now, lim, 1000, nil)
		b.jsonLines(body)

		var lines [][]byte
		for _, l := range bytes.Split(body, []byte{'\n'}) {
			lines = append(lines, bytes.TrimSpace(l))
		}
		nonBlank := 0
		for _, l := range lines {
			if len(l) > 0 {
				nonBlank++
			}
		}
		if len(b.recs)+b.nerr != nonBlank || len(b.rejs) != b.nerr || len(b.errs) != min(b.nerr, maxListed) {
			t.Fatalf("%d lines, %d accepted, %d errors, %d rejections", nonBlank, len(b.recs), b.nerr, len(b.rejs))
		}
		prev := 0
		for i, e := range b.errs {
			if e.Line <= prev || e.Line > len(lines) || e.Index != -1 || !knownReasons[e.Reason] {
				t.Fatalf("error %d: %+v", i, e)
			}
			prev = e.Line
			line := lines[e.Line-1]
			if j := b.rejs[i]; !bytes.Equal(j.Raw, line[:min(len(line), record.MaxRejectRaw)]) || j.Reason != e.Reason || j.Tenant != "acme" ||
				j.Source != record.SourceHTTP || j.Received != now {
				t.Fatalf("rejection %d: %+v", i, j)
			}
		}
		seen := map[string]bool{}
		var again []byte
		for i := range b.recs {
			u := &b.recs[i]
			if err := u.Validate(); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
			if u.Tenant != "acme" || u.Source != record.SourceHTTP || u.ReceivedTime != now ||
				!strings.HasPrefix(u.EventID, "http:acme:") || len(u.EventID) > maxEventID || seen[u.EventID] {
				t.Fatalf("record %d: %s", i, record.AppendJSON(nil, u))
			}
			seen[u.EventID] = true
			again = append(record.AppendJSON(again, u), '\n')
		}
		var b2 batch
		b2.reset("acme", now, lim, 1000, nil)
		b2.jsonLines(again)
		if b2.nerr != 0 || !reflect.DeepEqual(b2.recs, b.recs) && len(b.recs) > 0 {
			t.Fatalf("retry of the produced records differs: %+v\n%s", b2.errs, again)
		}
	})
}

// FuzzCloudEvents checks the CloudEvents batch handler: no panic; a body that is a JSON
// array yields one outcome per event (else one whole-body error); accepted records
// belong to the key's tenant with distinct event_ids.
func FuzzCloudEvents(f *testing.F) {
	files, _ := filepath.Glob("testdata/cloudevents/*.json")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	lim := DefaultConfig().limits()
	f.Fuzz(func(t *testing.T, body []byte) {
		var b batch
		b.reset("acme", now, lim, 1000, nil)
		if !b.cloudEvents(body) {
			return
		}
		var events []json.RawMessage
		if tb := bytes.TrimSpace(body); len(tb) > 0 && tb[0] == '[' && json.Unmarshal(body, &events) == nil {
			if len(b.recs)+b.nerr != len(events) {
				t.Fatalf("%d events, %d accepted, %d errors", len(events), len(b.recs), b.nerr)
			}
		} else if b.nerr != 1 || len(b.recs) != 0 || b.errs[0].Index != -1 {
			t.Fatalf("not a batch, yet %d accepted, errors %+v", len(b.recs), b.errs)
		}
		seen := map[string]bool{}
		for i := range b.recs {
			u := &b.recs[i]
			if err := u.Validate(); err != nil || u.Tenant != "acme" || u.Source != record.SourceHTTP ||
				!strings.HasPrefix(u.EventID, "http:acme:") || seen[u.EventID] {
				t.Fatalf("record %d: %v %s", i, err, record.AppendJSON(nil, u))
			}
			seen[u.EventID] = true
		}
	})
}
