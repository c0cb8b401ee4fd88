package mqtt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"fleetmeter/ingest"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

func mustRegistry(t testing.TB, strict bool, devs ...[2]string) *registry.Registry {
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

// registryCollector is a collector with live as its registry, its acker running until
// the test ends, and metrics to read.
func registryCollector(t *testing.T, live *registry.Live, sink ingest.Sink) (*Collector, *ingest.Metrics) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Registry = live
	metrics := ingest.NewMetrics(nil)
	c, err := New(cfg, sink, metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go c.acker(stop, done)
	t.Cleanup(func() { close(stop); <-done })
	return c, metrics
}

func usageMsg(tenant, device, seq string) *fakeMsg {
	return &fakeMsg{topic: "fleetmeter/" + tenant + "/" + device + "/usage", payload: []byte(`{"seq":` + seq + `,"bytes_up":10}`), qos: 1}
}

// TestRegistryStrict: a strict registry rejects an unlisted device (unknown_device) and a
// listed device id under another tenant (wrong_tenant), each to the rejected topic and
// counted; the message is acknowledged only once the rejection is. Listed devices pass.
func TestRegistryStrict(t *testing.T) {
	live := registry.NewLive(mustRegistry(t, true, [2]string{"acme", "car-1"}, [2]string{"globex", "meter-9"}))
	sink := &heldSink{}
	c, metrics := registryCollector(t, live, sink)

	known := usageMsg("acme", "car-1", "1")
	unknown := usageMsg("acme", "ghost", "2")
	wrong := usageMsg("globex", "car-1", "3")
	for _, m := range []*fakeMsg{known, unknown, wrong} {
		c.handle(nil, m)
	}
	sink.mu.Lock()
	recs, rejs := append([]record.Usage(nil), sink.recs...), append([]record.Rejection(nil), sink.rejs...)
	sink.mu.Unlock()
	if len(recs) != 1 || recs[0].Tenant != "acme" || recs[0].Device != "car-1" {
		t.Errorf("records = %+v, want acme/car-1's only", recs)
	}
	if len(rejs) != 2 {
		t.Fatalf("rejections = %+v, want 2", rejs)
	}
	for i, want := range []struct{ tenant, device, reason, detail string }{
		{"acme", "ghost", registry.ReasonUnknownDevice, "acme/ghost is not in the device registry"},
		{"globex", "car-1", ReasonWrongTenant, "registered to tenant acme, not globex"},
	} {
		r := rejs[i]
		if r.Source != record.SourceMQTT || r.Tenant != want.tenant || r.Device != want.device || r.Reason != want.reason ||
			!strings.Contains(r.Detail, want.detail) || len(r.Raw) == 0 || r.Received == 0 {
			t.Errorf("rejection %d = %+v, want %s/%s %s (%q) with the raw payload", i, r, want.tenant, want.device, want.reason, want.detail)
		}
		if got := value(t, metrics.Rejected.WithLabelValues(record.SourceMQTT, want.reason)); got != 1 {
			t.Errorf("rejected{%s} = %v, want 1", want.reason, got)
		}
	}
	if unknown.acked.Load() != 0 || wrong.acked.Load() != 0 {
		t.Fatal("a rejected message was acknowledged before its rejection was")
	}

	sink.release(nil)
	waitFor(t, "acknowledgements", func() bool {
		return known.acked.Load() == 1 && unknown.acked.Load() == 1 && wrong.acked.Load() == 1
	})

	// A rejection the sink refuses leaves the message unacknowledged for redelivery.
	refused := usageMsg("acme", "ghost", "4")
	c.handle(nil, refused)
	sink.release(errTest)
	waitFor(t, "in-flight back to 0", func() bool { return value(t, metrics.InFlight.WithLabelValues(record.SourceMQTT)) == 0 })
	if refused.acked.Load() != 0 {
		t.Error("a message whose rejection Kafka refused was acknowledged")
	}
}

var errTest = errors.New("kafka down")

// TestRegistryNonStrict: without strict, unlisted devices pass; a device id listed only
// under another tenant is still wrong_tenant; an id listed under several tenants passes
// for each of them.
func TestRegistryNonStrict(t *testing.T) {
	live := registry.NewLive(mustRegistry(t, false, [2]string{"acme", "car-1"}, [2]string{"acme", "shared"},
		[2]string{"globex", "shared"}))
	sink := &memSink{}
	c, metrics := registryCollector(t, live, sink)
	msgs := []*fakeMsg{usageMsg("acme", "car-1", "1"), usageMsg("acme", "ghost", "2"), usageMsg("initech", "x", "3"),
		usageMsg("acme", "shared", "4"), usageMsg("globex", "shared", "5"), usageMsg("initech", "car-1", "6")}
	for _, m := range msgs {
		c.handle(nil, m)
	}
	waitFor(t, "acknowledgements", func() bool {
		for _, m := range msgs {
			if m.acked.Load() != 1 {
				return false
			}
		}
		return true
	})
	recs, rejs := sink.snapshot()
	if len(recs) != 5 {
		t.Errorf("accepted %d records, want 5: %+v", len(recs), recs)
	}
	if len(rejs) != 1 || rejs[0].Reason != ReasonWrongTenant || rejs[0].Tenant != "initech" || rejs[0].Device != "car-1" {
		t.Errorf("rejections = %+v, want initech/car-1 wrong_tenant only", rejs)
	}
	if got := value(t, metrics.Rejected.WithLabelValues(record.SourceMQTT, registry.ReasonUnknownDevice)); got != 0 {
		t.Errorf("rejected{unknown_device} = %v in non-strict mode", got)
	}
}

// TestRegistryStore: a new snapshot stored in the shared Live changes the outcome from
// the next message on; a nil one turns the checks off.
func TestRegistryStore(t *testing.T) {
	live := registry.NewLive(mustRegistry(t, true, [2]string{"acme", "car-1"}))
	sink := &memSink{}
	c, _ := registryCollector(t, live, sink)
	c.handle(nil, usageMsg("acme", "car-2", "1"))
	live.Store(mustRegistry(t, true, [2]string{"acme", "car-1"}, [2]string{"acme", "car-2"}))
	c.handle(nil, usageMsg("acme", "car-2", "2"))
	live.Store(mustRegistry(t, true))
	c.handle(nil, usageMsg("acme", "car-1", "3"))
	live.Store(nil)
	c.handle(nil, usageMsg("acme", "car-1", "4"))
	waitFor(t, "all handled", func() bool { r, j := sink.snapshot(); return len(r)+len(j) == 4 })
	recs, rejs := sink.snapshot()
	if len(recs) != 2 || recs[0].EventID != "mqtt:acme:car-2:2" || recs[1].EventID != "mqtt:acme:car-1:4" {
		t.Errorf("accepted %+v, want seq 2 and 4", recs)
	}
	if len(rejs) != 2 || rejs[0].Device != "car-2" || rejs[1].Device != "car-1" {
		t.Errorf("rejected %+v, want car-2 then car-1", rejs)
	}
}

func writeRegistry(t testing.TB, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // atomic switch, as the registry README asks
		t.Fatal(err)
	}
}

// TestRegistryFileReload: registry_file is loaded by New (a broken file fails it) and
// watched by Run; a valid change takes effect, an invalid one is refused and the
// registry in force stays. No broker is needed: Run keeps retrying the connection.
func TestRegistryFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "devices.yaml")
	writeRegistry(t, path, "strict: true\ndevices:\n  - {tenant: acme, device: car-1}\n")

	cfg := DefaultConfig()
	cfg.Brokers = []string{"tcp://127.0.0.1:1"}
	cfg.RegistryFile = path
	cfg.RegistryReload = 10 * time.Millisecond

	bad := cfg
	bad.RegistryFile = filepath.Join(dir, "missing.yaml")
	if _, err := New(bad, &memSink{}, nil, nil); err == nil || !strings.Contains(err.Error(), "mqtt.registry_file") {
		t.Fatalf("New with a missing registry file: %v, want an error naming mqtt.registry_file", err)
	}

	sink := &memSink{}
	c, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	outcome := func(tenant, device, seq string) string {
		t.Helper()
		recs0, rejs0 := sink.snapshot()
		c.handle(nil, usageMsg(tenant, device, seq))
		waitFor(t, "message handled", func() bool { r, j := sink.snapshot(); return len(r)+len(j) > len(recs0)+len(rejs0) })
		if _, rejs := sink.snapshot(); len(rejs) > len(rejs0) {
			return rejs[len(rejs)-1].Reason
		}
		return "accepted"
	}
	if got := outcome("acme", "car-2", "1"); got != registry.ReasonUnknownDevice {
		t.Fatalf("car-2 before the reload: %s, want unknown_device", got)
	}
	stamp := c.Registry().Stamp()
	writeRegistry(t, path, "strict: true\ndevices:\n  - {tenant: acme, device: car-1}\n  - {tenant: acme, device: car-2}\n")
	waitFor(t, "registry reloaded", func() bool { return c.Registry().Stamp() != stamp })
	if got := outcome("acme", "car-2", "2"); got != "accepted" {
		t.Fatalf("car-2 after the reload: %s, want accepted", got)
	}

	// An invalid file is refused: the registry in force stays.
	stamp = c.Registry().Stamp()
	writeRegistry(t, path, "strict: true\ndevices:\n  - {tenant: acme, device: car-1, colour: red}\n")
	time.Sleep(100 * time.Millisecond) // ten polls
	if c.Registry().Stamp() != stamp {
		t.Fatal("an invalid registry file replaced the one in force")
	}
	if got := outcome("acme", "car-2", "3"); got != "accepted" {
		t.Fatalf("car-2 after an invalid change: %s, want accepted", got)
	}

	// Non-strict now: unknown devices pass.
	writeRegistry(t, path, "strict: false\ndevices:\n  - {tenant: acme, device: car-1}\n")
	waitFor(t, "registry reloaded", func() bool { return !c.Registry().Strict() })
	if got := outcome("acme", "ghost", "4"); got != "accepted" {
		t.Fatalf("unknown device in non-strict mode: %s, want accepted", got)
	}
}

// TestAdmitNoAlloc: admitting a listed device allocates nothing, however long its ids.
func TestAdmitNoAlloc(t *testing.T) {
	tenant, device := strings.Repeat("t", 100), strings.Repeat("d", 100)
	a := registry.NewAdmission(mustRegistry(t, true, [2]string{tenant, device}))
	topic := "fleetmeter/" + tenant + "/" + device + "/usage"
	c := &Collector{cfg: DefaultConfig()}
	allocs := testing.AllocsPerRun(1000, func() {
		tn, dv, _, _ := c.parseTopic(topic)
		if reason, _ := admit(a, tn, dv); reason != "" {
			t.Fatal(reason)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per admitted message, want 0", allocs)
	}
}

func BenchmarkAdmit(b *testing.B) {
	var devs [][2]string
	for i := range 100000 {
		devs = append(devs, [2]string{"tenant-" + strconv.Itoa(i%20), "device-" + strconv.Itoa(i)})
	}
	var ad registry.Admitter
	ad.SetLive(registry.NewLive(mustRegistry(b, true, devs...)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d := devs[i%len(devs)]
		if reason, _ := admit(ad.Current(), d[0], d[1]); reason != "" {
			b.Fatal(reason)
		}
	}
}

// TestRegistryMosquitto: through a real Mosquitto, a strict registry file rejects an
// unlisted device and a device published under another tenant, each message is
// acknowledged once its rejection is written, and a reload of the file admits the device
// from then on.
func TestRegistryMosquitto(t *testing.T) {
	b := startBroker(t, anon)
	path := filepath.Join(t.TempDir(), "devices.yaml")
	writeRegistry(t, path, "strict: true\ndevices:\n  - tenant: acme\n    device: car-1\n    mqtt_username: acme-car-1\n")
	cfg := testConfig(b, "registry")
	cfg.RegistryFile = path
	cfg.RegistryReload = 20 * time.Millisecond
	sink := &memSink{}
	c := runCollector(t, cfg, sink)
	pub := publisher(t, "tcp://"+b.addr(), nil)

	publish(t, pub, "fleetmeter/acme/car-1/usage", 1, []byte(`{"seq":1,"bytes_up":100}`))
	publish(t, pub, "fleetmeter/acme/ghost/usage/json", 1, []byte(`{"seq":2,"bytes_up":100}`))
	publish(t, pub, "fleetmeter/globex/car-1/usage", 1, []byte(`{"seq":3,"bytes_up":100}`))
	waitFor(t, "1 record and 2 rejections", func() bool { r, j := sink.snapshot(); return len(r) == 1 && len(j) == 2 })
	recs, rejs := sink.snapshot()
	if recs[0].EventID != "mqtt:acme:car-1:1" {
		t.Errorf("accepted %+v, want mqtt:acme:car-1:1", recs[0])
	}
	got := map[string]string{}
	for _, r := range rejs {
		got[r.Tenant+"/"+r.Device] = r.Reason
	}
	if got["acme/ghost"] != registry.ReasonUnknownDevice || got["globex/car-1"] != ReasonWrongTenant {
		t.Errorf("rejections by device = %v, want acme/ghost unknown_device, globex/car-1 wrong_tenant", got)
	}
	inFlight := c.metrics.InFlight.WithLabelValues(record.SourceMQTT)
	waitFor(t, "every message acknowledged", func() bool { return value(t, inFlight) == 0 })
	if n := value(t, c.metrics.Rejected.WithLabelValues(record.SourceMQTT, registry.ReasonUnknownDevice)); n != 1 {
		t.Errorf("rejected{unknown_device} = %v, want 1", n)
	}

	stamp := c.Registry().Stamp()
	writeRegistry(t, path, "strict: true\ndevices:\n  - {tenant: acme, device: car-1}\n  - {tenant: acme, device: ghost}\n")
	waitFor(t, "registry reloaded", func() bool { return c.Registry().Stamp() != stamp })
	publish(t, pub, "fleetmeter/acme/ghost/usage/json", 1, []byte(`{"seq":4,"bytes_up":100}`))
	waitFor(t, "acme/ghost accepted after the reload", func() bool { return sink.count() == 2 })
	if recs, rejs := sink.snapshot(); recs[1].EventID != "mqtt:acme:ghost:4" || len(rejs) != 2 {
		t.Errorf("after the reload: records %+v, rejections %+v", recs, rejs)
	}
}
