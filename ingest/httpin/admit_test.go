package httpin

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fleetmeter/ingest/registry"
)

func mustRegistry(t *testing.T, strict bool, devs ...[2]string) *registry.Registry {
	t.Helper()
	var ds []registry.Device
	for _, d := range devs {
		ds = append(ds, registry.Device{Tenant: d[0], Device: d[1]})
	}
	r, err := registry.New(strict, ds)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func canon(tenant, device, id string) string {
	return `{"event_id":"` + id + `","tenant":"` + tenant + `","device":"` + device + `","start_time":"2026-11-25T11:00:00Z","events":1}`
}

type errorsBody struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Errors   []struct {
		Line    int    `json:"line"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"errors"`
}

// TestRegistryStrict: with a strict registry, HTTP refuses what MQTT refuses: a device
// the registry does not list (unknown_device) and a device id listed under another tenant
// only (wrong_tenant), in every body kind, each with a rejection on the sink; listed
// devices pass. The client is not told whose device it named.
func TestRegistryStrict(t *testing.T) {
	cfg := testConfig()
	cfg.Registry = registry.NewLive(mustRegistry(t, true, [2]string{"acme", "car-1"}, [2]string{"farmco", "tractor-1"}))
	sink := &fakeSink{}
	s := startServer(t, cfg, sink)

	body := canon("acme", "car-1", "a") + "\n" + canon("acme", "ghost", "b") + "\n" + canon("acme", "tractor-1", "c") + "\n"
	resp, out := do(t, s, http.MethodPost, "application/x-ndjson", "", body)
	var eb errorsBody
	if err := json.Unmarshal([]byte(out), &eb); err != nil || resp.StatusCode != 400 {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	if eb.Accepted != 1 || eb.Rejected != 2 || len(eb.Errors) != 2 ||
		eb.Errors[0].Line != 2 || eb.Errors[0].Reason != "unknown_device" ||
		eb.Errors[1].Line != 3 || eb.Errors[1].Reason != "wrong_tenant" {
		t.Errorf("JSON Lines: %s", out)
	}
	if strings.Contains(out, "farmco") {
		t.Errorf("the answer names the tenant the device belongs to: %s", out)
	}

	cases := []struct{ ct, query, body, reason string }{
		{"application/json", "?device=car-1", `{"id":"p1","events":1}`, ""},
		{"application/json", "?device=ghost", `{"id":"p2","events":1}`, "unknown_device"},
		{"application/json", "?device=tractor-1", `{"id":"p3","events":1}`, "wrong_tenant"},
		{"application/senml+json", "?device=tractor-1", `[{"n":"events","v":1,"t":1795000000}]`, "wrong_tenant"},
		{"application/cloudevents+json", "", `{"specversion":"1.0","id":"ce1","source":"gw","type":"io.fleetmeter.usage.v1",` +
			`"subject":"tractor-1","data":{"id":"x","events":1}}`, "wrong_tenant"},
		{"application/cloudevents-batch+json", "", `[{"specversion":"1.0","id":"ce2","source":"gw","type":"io.fleetmeter.usage.v1",` +
			`"data":` + canon("acme", "ghost", "ce2") + `}]`, "unknown_device"},
	}
	for _, tc := range cases {
		resp, out := do(t, s, http.MethodPost, tc.ct, tc.query, tc.body)
		switch {
		case tc.reason == "" && resp.StatusCode != 202:
			t.Errorf("%s %s: %d %s", tc.ct, tc.query, resp.StatusCode, out)
		case tc.reason != "" && (resp.StatusCode != 400 || !strings.Contains(out, `"reason":"`+tc.reason+`"`)):
			t.Errorf("%s %s: %d %s, want %s", tc.ct, tc.query, resp.StatusCode, out, tc.reason)
		}
	}

	recs, rejs := sink.got()
	if len(recs) != 2 || recs[0].Device != "car-1" || recs[1].Device != "car-1" {
		t.Errorf("records %+v", recs)
	}
	want := []struct{ device, reason string }{{"ghost", "unknown_device"}, {"tractor-1", "wrong_tenant"},
		{"ghost", "unknown_device"}, {"tractor-1", "wrong_tenant"}, {"tractor-1", "wrong_tenant"},
		{"tractor-1", "wrong_tenant"}, {"", "unknown_device"}}
	if len(rejs) != len(want) {
		t.Fatalf("%d rejections, want %d: %+v", len(rejs), len(want), rejs)
	}
	for i, w := range want {
		r := rejs[i]
		if r.Tenant != "acme" || r.Reason != w.reason || (w.device != "" && r.Device != w.device) || len(r.Raw) == 0 ||
			strings.Contains(r.Detail, "farmco") {
			t.Errorf("rejection %d: %+v, want %s %s", i, r, w.device, w.reason)
		}
	}
}

// TestRegistryNotStrict: a registry that is not strict admits unlisted devices, but a
// device id it lists under another tenant only is still wrong_tenant.
func TestRegistryNotStrict(t *testing.T) {
	cfg := testConfig()
	cfg.Registry = registry.NewLive(mustRegistry(t, false, [2]string{"farmco", "tractor-1"}))
	s := startServer(t, cfg, &fakeSink{})
	if resp, out := do(t, s, http.MethodPost, "application/x-ndjson", "", canon("acme", "ghost", "a")); resp.StatusCode != 202 {
		t.Errorf("unlisted device: %d %s", resp.StatusCode, out)
	}
	if resp, out := do(t, s, http.MethodPost, "application/x-ndjson", "", canon("acme", "tractor-1", "b")); resp.StatusCode != 400 ||
		!strings.Contains(out, "wrong_tenant") {
		t.Errorf("another tenant's device: %d %s", resp.StatusCode, out)
	}
}

// TestRegistryFile: http.registry_file is loaded by New (a broken file fails it, naming
// the key) and reloaded while serving.
func TestRegistryFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.yaml")
	write := func(content string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig()
	cfg.RegistryFile = path
	cfg.RegistryReload = 20 * time.Millisecond
	write("strict: true\ndevices:\n  - {tenant: acme, device: car-1}\n  - {tenant: acme, dvice: car-2}\n")
	if _, err := New(cfg, &fakeSink{}, nil, nil); err == nil || !strings.Contains(err.Error(), "http.registry_file: ") {
		t.Fatalf("broken registry: %v", err)
	}
	write("strict: true\ndevices:\n  - {tenant: acme, device: car-1}\n")
	s := startServer(t, cfg, &fakeSink{})
	if resp, out := do(t, s, http.MethodPost, "application/x-ndjson", "", canon("acme", "car-2", "a")); resp.StatusCode != 400 ||
		!strings.Contains(out, "unknown_device") {
		t.Fatalf("before the reload: %d %s", resp.StatusCode, out)
	}
	first := s.Registry()
	write("strict: true\ndevices:\n  - {tenant: acme, device: car-1}\n  - {tenant: acme, device: car-2}\n")
	waitFor(t, func() bool { return s.Registry() != first })
	if resp, out := do(t, s, http.MethodPost, "application/x-ndjson", "", canon("acme", "car-2", "a")); resp.StatusCode != 202 {
		t.Errorf("after the reload: %d %s", resp.StatusCode, out)
	}
}
