package mqtt

import (
	"bytes"
	"strings"
	"testing"

	"fleetmeter/record"
)

// hostileIDs are topic levels no device may be billed under.
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
	{"zero-width space", "dev\u200bice"},
	{"Cyrillic look-alike", "dеvice"}, // U+0435
}

// TestHostileTopicIDs: without a registry (every device admitted), a topic whose device
// or tenant level is not a valid id is rejected (bad_device, bad_tenant) before its
// payload is parsed: no record, so no device fee. The rejection keeps the raw payload,
// is written with the id escaped and bounded, is counted under its reason, and the
// message is acknowledged once the rejection is written.
func TestHostileTopicIDs(t *testing.T) {
	const payload = `{"seq":1,"bytes_up":10}`
	for _, h := range hostileIDs {
		for _, level := range []string{"device", "tenant"} {
			t.Run(level+"/"+h.name, func(t *testing.T) {
				sink := &memSink{}
				c, metrics := registryCollector(t, nil, sink)
				tenant, device, reason := "acme", h.id, record.ReasonBadDevice
				if level == "tenant" {
					tenant, device, reason = h.id, "meter-1", record.ReasonBadTenant
				}
				m := &fakeMsg{topic: "fleetmeter/" + tenant + "/" + device + "/usage", payload: []byte(payload), qos: 1}
				c.handle(nil, m)
				waitFor(t, "acknowledgement", func() bool { return m.acked.Load() == 1 })
				recs, rejs := sink.snapshot()
				if len(recs) != 0 {
					t.Fatalf("billed %d records under a hostile %s: %+v", len(recs), level, recs)
				}
				if len(rejs) != 1 {
					t.Fatalf("rejections = %+v, want 1", rejs)
				}
				r := rejs[0]
				if r.Reason != reason || string(r.Raw) != payload || r.Source != record.SourceMQTT {
					t.Errorf("rejection %s with raw %q, want %s with the payload", r.Reason, r.Raw, reason)
				}
				// As written to topic rejected: the ids as named, but escaped and bounded.
				w, err := record.ParseRejection(r.AppendJSON(nil))
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []string{w.Tenant, w.Device, w.Detail} {
					if len(s) > 300 || strings.ContainsFunc(s, func(c rune) bool { return c < 0x20 || c > 0x7e }) {
						t.Errorf("written with raw bytes or unbounded: %s", record.QuoteInput(s))
					}
				}
				if named := map[string]string{"tenant": w.Tenant, "device": w.Device}[level]; named != record.QuoteInput(h.id) {
					t.Errorf("written %s %s, want %s", level, named, record.QuoteInput(h.id))
				}
				if got := value(t, metrics.Rejected.WithLabelValues(record.SourceMQTT, reason)); got != 1 {
					t.Errorf("rejected{%s} = %v, want 1", reason, got)
				}
			})
		}
	}
}

// TestValidTopicIDs: ids of the documented alphabet are billed as the topic names them.
func TestValidTopicIDs(t *testing.T) {
	sink := &memSink{}
	c, _ := registryCollector(t, nil, sink)
	for i, id := range []string{"imsi-262019876543210", "nai-sensor-17@iot.example.com", "dev:1.a_b~c", strings.Repeat("d", record.MaxIDLen)} {
		c.handle(nil, &fakeMsg{topic: "fleetmeter/acme/" + id + "/usage", payload: []byte(`{"seq":1,"bytes_up":10}`), qos: 1})
		waitFor(t, "record", func() bool { return sink.count() == i+1 })
		recs, rejs := sink.snapshot()
		if len(rejs) != 0 || recs[i].Device != id || recs[i].Tenant != "acme" {
			t.Fatalf("device %q: records %+v, rejections %+v", id, recs, rejs)
		}
	}
}

// TestLargeRejectionBounded: a 1.5 MB payload that does not parse is rejected with the
// first record.MaxRejectRaw bytes, its full length and SHA-256.
func TestLargeRejectionBounded(t *testing.T) {
	sink := &memSink{}
	c, _ := registryCollector(t, nil, sink)
	big := append([]byte(`{"bytes_up":"`), bytes.Repeat([]byte("x"), 1536<<10)...)
	c.handle(nil, &fakeMsg{topic: "fleetmeter/acme/meter-1/usage/json", payload: big, qos: 1})
	waitFor(t, "rejection", func() bool { _, rejs := sink.snapshot(); return len(rejs) == 1 })
	_, rejs := sink.snapshot()
	r := rejs[0]
	if len(r.Raw) != record.MaxRejectRaw || r.RawLen != int64(len(big)) || len(r.RawSHA256) != 64 || !bytes.Equal(r.Raw, big[:len(r.Raw)]) {
		t.Fatalf("raw %d bytes, raw_len %d, sha %q; want the first %d bytes, %d, a SHA-256", len(r.Raw), r.RawLen, r.RawSHA256,
			record.MaxRejectRaw, len(big))
	}
	if n := len(r.AppendJSON(nil)); n > 100<<10 {
		t.Errorf("the rejection message is %d bytes", n)
	}
}
