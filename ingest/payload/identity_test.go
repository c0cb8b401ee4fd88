package payload

import (
	"errors"
	"strings"
	"testing"

	"fleetmeter/record"
)

// hostileIDs are transport identities (MQTT topic levels, CoAP dev-mode path segments,
// HTTP ?device=) no record may be built for.
var hostileIDs = []struct{ name, id string }{
	{"NUL", "dev\x00ice"},
	{"ANSI escape", "dev\x1b[31mice"},
	{"right-to-left override", "dev\u202eecived"},
	{"invalid UTF-8", "dev\xffice"},
	{"10 KB", strings.Repeat("d", 10<<10)},
	{"control character", "dev\x01ice"},
	{"newline", "dev\nice"},
	{"DEL", "dev\x7fice"},
	{"space", "dev ice"},
	{"slash", "dev/ice"},
	{"byte order mark", "\ufeffdevice"},
}

// TestParseHostileIdentity: whatever the payload kind, a hostile tenant or device is
// refused before the payload is read (bad_tenant, bad_device) and into is left as it was.
func TestParseHostileIdentity(t *testing.T) {
	payloads := map[Kind]string{
		KindJSON:      `{"seq":1,"bytes_up":10}`,
		KindSenMLJSON: `[{"n":"bytes_up","v":10},{"n":"seq","v":1}]`,
		KindSenMLCBOR: "\x81\xa2\x00\x68bytes_up\x02\x0a",
		KindAuto:      `{"seq":1,"bytes_up":10}`,
	}
	for _, h := range hostileIDs {
		for kind, data := range payloads {
			for _, level := range []string{"tenant", "device"} {
				id, want := testID, ReasonBadDevice
				if level == "tenant" {
					id.Tenant, want = h.id, ReasonBadTenant
				} else {
					id.Device = h.id
				}
				var p Parser
				into := []record.Usage{{EventID: "keep"}}
				got, err := p.Parse(kind, []byte(data), id, testReceived, into)
				var ie *record.InvalidError
				if !errors.As(err, &ie) || ie.Reason != want {
					t.Errorf("%s %s, %s: err %v, want %s", level, h.name, kind, err, want)
				}
				if len(got) != 1 || got[0].EventID != "keep" {
					t.Errorf("%s %s, %s: into changed: %d records", level, h.name, kind, len(got))
				}
			}
		}
	}
	// The same payloads are accepted under a valid identity, so the refusals above are the
	// identity's.
	for kind, data := range payloads {
		var p Parser
		if _, err := p.Parse(kind, []byte(data), Identity{Tenant: "acme", Device: "nai-x@iot.example", Source: "coap"},
			testReceived, nil); err != nil {
			t.Errorf("%s under a valid identity: %v", kind, err)
		}
	}
}

// TestParseTimesLikeRecord: ts and end are read by record.ParseRFC3339, lower-case t and
// z included, exactly as record.ParseJSON reads canonical lines.
func TestParseTimesLikeRecord(t *testing.T) {
	for _, ts := range []string{"2026-11-25T11:00:00.5Z", "2026-11-25t11:00:00.5z", "2026-11-25t12:00:00.5+01:00"} {
		var p Parser
		got, err := p.Parse(KindJSON, []byte(`{"ts":"`+ts+`"}`), testID, testReceived, nil)
		if err != nil {
			t.Errorf("ts %s: %v", ts, err)
			continue
		}
		line := `{"event_id":"e","tenant":"t","device":"d","start_time":"` + ts + `"}`
		u, err := record.ParseJSON([]byte(line))
		if err != nil || got[0].StartTime != u.StartTime || u.StartTime != ms("2026-11-25T11:00:00.5Z") {
			t.Errorf("ts %s: payload %d, record %d (%v), want %d", ts, got[0].StartTime, u.StartTime, err, ms("2026-11-25T11:00:00.5Z"))
		}
	}
}
