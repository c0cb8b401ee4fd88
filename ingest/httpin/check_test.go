package httpin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"fleetmeter/ingest/payload"
	"fleetmeter/record"
)

// canonField is one field of a test line: its name and its value as JSON text.
type canonField struct{ name, value string }

// canonFields is a canonical line's fields, as a gateway writes them.
var canonFields = []canonField{
	{"event_id", `"gw-000001"`}, {"tenant", `"acme"`}, {"device", `"meter-1"`},
	{"start_time", `"2026-11-25T11:00:00Z"`}, {"end_time", `"2026-11-25T11:00:30Z"`},
	{"bytes_up", `1000`}, {"bytes_down", `30000`}, {"events", `3`}, {"rating_group", `100`},
	{"plmn", `"262-01"`}, {"cell", `"262-01-1A2B3C"`}, {"lat", `52.52`}, {"lon", `13.405`}, {"rat", `"NB-IoT"`},
}

// hostileValues are values each rule of the admission refuses, or accepts at its limit,
// written raw (the fast path reads them) or escaped (the full parser does).
var hostileValues = []canonField{
	{"event_id", `""`}, {"event_id", `null`}, {"event_id", "\"gw\x7f1\""}, {"event_id", `"gw\u007f1"`},
	{"event_id", "\"gw\xc2\x851\""}, {"event_id", "\"gw\xe2\x80\x8b1\""}, {"event_id", "\"gw\xe2\x80\xae1\""},
	{"event_id", "\"\xef\xbb\xbfgw\""}, {"event_id", "\"gw\xef\xbf\xbd\""}, {"event_id", "\"gw\xff\""},
	{"event_id", `"gw\u0000"`}, {"event_id", `"` + strings.Repeat("e", maxEventID-len(testNS)) + `"`},
	{"event_id", `"` + strings.Repeat("e", maxEventID-len(testNS)+1) + `"`}, {"event_id", `"http:acme:"`},
	{"event_id", `"http:acme:x"`}, {"event_id", `"http:farm:x"`}, {"event_id", `"événement-①"`},
	{"tenant", `"acme2"`}, {"tenant", `""`}, {"tenant", `"ac me"`}, {"tenant", `"ACME"`},
	{"device", `""`}, {"device", `null`}, {"device", `"dev/ice"`}, {"device", `"dev+ice"`}, {"device", "\"dev\x7f\""},
	{"device", `"dév"`}, {"device", `"` + strings.Repeat("d", record.MaxIDLen) + `"`},
	{"device", `"` + strings.Repeat("d", record.MaxIDLen+1) + `"`}, {"device", `"dev ice"`},
	{"start_time", `"1969-12-31T23:59:59Z"`}, {"start_time", `"2026-10-01T00:00:00Z"`},
	{"start_time", `"2026-10-21T12:00:00Z"`}, {"start_time", `"2026-11-25T11:00:31Z"`},
	{"end_time", `"2026-11-25T12:05:00Z"`}, {"end_time", `"2026-11-25T12:05:00.001Z"`},
	{"end_time", `"2100-01-01T00:00:00Z"`}, {"end_time", `"2026-11-25T10:59:59Z"`},
	{"received_time", `"1960-01-01T00:00:00Z"`},
	{"bytes_up", `1125899906842624`}, {"bytes_up", `1125899906842625`}, {"bytes_down", `18446744073709551615`},
	{"events", `1125899906842625`}, {"duration_ms", `1125899906842625`},
	{"plmn", `"26201"`}, {"plmn", `"310-260"`}, {"cell", `"` + strings.Repeat("c", 65) + `"`}, {"cell", `"a b"`},
	{"cell", "\"a\xe2\x80\xae\""}, {"rat", `"LTE"`}, {"rat", `""`}, {"lat", `90.000001`}, {"lon", `-180.5`},
	{"lat", `-90`}, {"slice_sd", `"abcdef"`}, {"slice_sst", `1`}, {"slice_sd", `"ABCDEF"`}, {"slice_sd", `"abcdeg"`},
}

// canonLine writes canonFields with the values of set in place (or added).
func canonLine(set ...canonField) []byte {
	fields := append([]canonField(nil), canonFields...)
next:
	for _, s := range set {
		for i := range fields {
			if fields[i].name == s.name {
				fields[i].value = s.value
				continue next
			}
		}
		fields = append(fields, s)
	}
	b := []byte{'{'}
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(append(append(b, '"'), f.name...), `":`...), f.value...)
	}
	return append(b, '}')
}

// TestCheckMatchesValidateWithin is the differential test of the admission. check runs
// each identity rule once (device and event id itself, the tenant once per request) and
// leaves the rest to record.ValidateWithinIdentified, and takes the event id as the
// parsers namespaced it. A batch told its tenant is not known good (tenantOK false) runs
// all of record.ValidateWithin on every record instead: both must give the same records,
// refusals, reasons and messages, over bodies of canonical lines, lines with hostile
// values (one or two per line: the order of the rules shows) and random mutations,
// through the fast path and through the full parser. Whatever is accepted passes
// record.ValidateWithin and has its event id in the tenant's namespace. A quarter of the
// bodies go as CloudEvents batches instead, check's other caller.
func TestCheckMatchesValidateWithin(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	// The collector's limits, and a window of two centuries, where only the time range
	// refuses a time (bad_time), and a low counter bound.
	lims := []payload.Limits{DefaultConfig().limits(), DefaultConfig().limits()}
	lims[1].MaxPastAge, lims[1].MaxFutureSkew, lims[1].MaxCounter = 100*365*24*time.Hour, 100*365*24*time.Hour, 1<<40
	seeds := seedLines(t)
	var got, want batch
	accepted, refused := map[string]int{}, map[string]int{}
	for body := range 400 {
		var lines []byte
		for range 1 + rng.IntN(20) {
			var l []byte
			switch rng.IntN(4) {
			case 0:
				l = canonLine(hostileValues[rng.IntN(len(hostileValues))])
			case 1:
				l = canonLine(hostileValues[rng.IntN(len(hostileValues))], hostileValues[rng.IntN(len(hostileValues))])
			case 2:
				l = mutate(rng, seeds[rng.IntN(len(seeds))])
			default:
				l = seeds[rng.IntN(len(seeds))]
			}
			if !bytes.ContainsAny(l, "\n") {
				lines = append(append(lines, l...), '\n')
			}
		}
		got.lines.noFast, want.lines.noFast = body%2 == 1, body%2 == 1
		lim := lims[body/2%2]
		got.reset("acme", now, lim, 1000, nil)
		want.reset("acme", now, lim, 1000, nil)
		if !got.tenantOK {
			t.Fatal("tenant acme not taken as valid: the test compares nothing")
		}
		want.tenantOK = false
		if body%4 == 3 {
			// The same lines as the data of a CloudEvents batch (check namespaces their ids),
			// each JSON one with a subject sometimes, and an event id made from it sometimes.
			events := []byte{'['}
			for i, l := range bytes.Split(bytes.TrimSuffix(lines, []byte{'\n'}), []byte{'\n'}) {
				if !json.Valid(l) {
					continue
				}
				if len(events) > 1 {
					events = append(events, ',')
				}
				events = fmt.Appendf(events, `{"specversion":"1.0","id":"ev-%d","source":"gw","type":%q`, i%7, EventType)
				if rng.IntN(3) == 0 {
					events = append(events, `,"subject":"meter-1"`...)
				}
				if rng.IntN(3) == 0 { // no event_id: the event's id makes it
					l = bytes.Replace(l, []byte(`"event_id":`), []byte(`"source":`), 1)
				}
				events = append(append(append(events, `,"data":`...), l...), '}')
			}
			lines = append(events, ']')
			got.cloudEvents(lines)
			want.cloudEvents(lines)
			accepted["events"] += len(got.recs)
		} else {
			got.jsonLines(lines)
			want.jsonLines(lines)
		}
		if len(got.recs) != len(want.recs) {
			t.Fatalf("body %q: %d records accepted, %d with record.ValidateWithin", lines, len(got.recs), len(want.recs))
		}
		for i := range got.recs {
			u := &got.recs[i]
			if d := sameUsage(*u, want.recs[i]); d != "" {
				t.Fatalf("body %q: record %d differs in %s:\n%+v\n%+v", lines, i, d, *u, want.recs[i])
			}
			if err := record.ValidateWithin(u, got.rlim); err != nil {
				t.Fatalf("body %q: record %d accepted, record.ValidateWithin refuses it: %v", lines, i, err)
			}
			if u.EventID != got.namespace(u.EventID) || !strings.HasPrefix(u.EventID, testNS) {
				t.Fatalf("body %q: record %d has event id %q, outside the namespace", lines, i, u.EventID)
			}
		}
		if got.nerr != want.nerr || !reflect.DeepEqual(got.errs, want.errs) || !reflect.DeepEqual(got.rejs, want.rejs) {
			t.Fatalf("body %q: refusals differ:\n%d %+v\n%d %+v", lines, got.nerr, got.errs, want.nerr, want.errs)
		}
		for _, e := range got.errs {
			refused[e.Reason]++
		}
		accepted["records"] += len(got.recs)
	}
	// The hostile values must reach every rule, or the comparison proves little.
	for _, reason := range []string{record.ReasonBadJSON, record.ReasonTenantMismatch, record.ReasonMissingIdentity,
		record.ReasonBadDevice, record.ReasonMissingEventID, record.ReasonBadID, record.ReasonBadInterval,
		record.ReasonFutureTime, record.ReasonStaleTime, record.ReasonAbsurdCounter, record.ReasonBadTime,
		record.ReasonBadField, record.ReasonBadPosition, record.ReasonDuplicateID} {
		if refused[reason] == 0 {
			t.Errorf("no line refused with %s", reason)
		}
	}
	if accepted["records"] < 500 || accepted["events"] < 100 {
		t.Errorf("%d records accepted, %d of them from events: the bodies are mostly refused", accepted["records"], accepted["events"])
	}
}
