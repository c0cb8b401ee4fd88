package mqtt

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/internal/config"
	"fleetmeter/record"
)

func TestValidateNamesKeys(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Brokers = []string{"http://x:1", "nohost"}
	cfg.ClientID = ""
	cfg.QoS = 3
	cfg.TopicPrefix = "a/+"
	cfg.SharedGroup = "g/1"
	cfg.CertFile = "c.pem"
	cfg.MaxReconnectInterval = time.Millisecond
	cfg.MaxInFlight = -1
	cfg.RegistryReload = -time.Second
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken config")
	}
	for _, key := range []string{`mqtt.brokers: "http://x:1"`, `mqtt.brokers: "nohost"`, "mqtt.client_id", "mqtt.qos",
		"mqtt.topic_prefix", "mqtt.shared_group", "mqtt.cert_file", "mqtt.max_reconnect_interval", "mqtt.max_in_flight",
		"mqtt.registry_reload"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if err := (Config{Brokers: []string{"ssl://h:8883"}, ClientID: "x", TopicPrefix: "p"}).Validate(); err != nil {
		t.Fatalf("zero durations should take defaults: %v", err)
	}
}

func TestFilter(t *testing.T) {
	cfg := DefaultConfig()
	if got := cfg.Filter(); got != "fleetmeter/+/+/usage/#" {
		t.Fatalf("Filter() = %q", got)
	}
	cfg.SharedGroup = "mediators"
	if got := cfg.Filter(); got != "$share/mediators/fleetmeter/+/+/usage/#" {
		t.Fatalf("shared Filter() = %q", got)
	}
}

func TestParseTopic(t *testing.T) {
	c := &Collector{cfg: DefaultConfig()}
	for _, tc := range []struct {
		topic          string
		tenant, device string
		kind           payload.Kind
		ok             bool
	}{
		{"fleetmeter/acme/d1/usage", "acme", "d1", payload.KindAuto, true},
		{"fleetmeter/acme/d1/usage/json", "acme", "d1", payload.KindJSON, true},
		{"fleetmeter/acme/d1/usage/senml-json", "acme", "d1", payload.KindSenMLJSON, true},
		{"fleetmeter/acme/d1/usage/senml+json", "acme", "d1", payload.KindSenMLJSON, true},
		{"fleetmeter/acme/d1/usage/senml-cbor", "acme", "d1", payload.KindSenMLCBOR, true},
		{"fleetmeter/acme/d1/usage/senml+cbor", "acme", "d1", payload.KindSenMLCBOR, true},
		{"fleetmeter/acme/d1/usage/xml", "acme", "d1", 0, false},
		{"fleetmeter/acme/d1/usage/json/x", "acme", "d1", 0, false},
		{"fleetmeter/acme/d1/status", "acme", "d1", 0, false},
		{"fleetmeter/acme//usage", "", "", 0, false},
		{"fleetmeter//d1/usage", "", "", 0, false},
		{"fleetmeterx/acme/d1/usage", "", "", 0, false},
		{"other/acme/d1/usage", "", "", 0, false},
		{"fleetmeter/acme/usage", "", "", 0, false},
	} {
		tenant, device, kind, ok := c.parseTopic(tc.topic)
		if ok != tc.ok || (ok && (tenant != tc.tenant || device != tc.device || kind != tc.kind)) {
			t.Errorf("parseTopic(%q) = %q %q %v %v; want %q %q %v %v", tc.topic, tenant, device, kind, ok,
				tc.tenant, tc.device, tc.kind, tc.ok)
		}
	}
}

// fakeMsg is a paho.Message handed to the handler directly.
type fakeMsg struct {
	topic   string
	payload []byte
	qos     byte
	acked   atomic.Int32
}

func (m *fakeMsg) Duplicate() bool   { return false }
func (m *fakeMsg) Qos() byte         { return m.qos }
func (m *fakeMsg) Retained() bool    { return false }
func (m *fakeMsg) Topic() string     { return m.topic }
func (m *fakeMsg) MessageID() uint16 { return 1 }
func (m *fakeMsg) Payload() []byte   { return m.payload }
func (m *fakeMsg) Ack()              { m.acked.Add(1) }

// heldSink holds every call until release answers it with err.
type heldSink struct {
	mu    sync.Mutex
	recs  []record.Usage
	rejs  []record.Rejection
	dones []func(error)
}

func (s *heldSink) Enqueue(recs []record.Usage, done func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, recs...)
	s.dones = append(s.dones, done)
}

func (s *heldSink) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejs = append(s.rejs, rejs...)
	s.dones = append(s.dones, done)
}

func (s *heldSink) release(err error) {
	s.mu.Lock()
	dones := s.dones
	s.dones = nil
	s.mu.Unlock()
	for _, d := range dones {
		d(err)
	}
}

// TestMetricsMove drives the handler directly: received and in-flight move on receipt,
// accepted, ack latency and the broker acknowledgement only once the sink acknowledged,
// rejected by reason, and a refused message is neither counted accepted nor acknowledged.
func TestMetricsMove(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics := ingest.NewMetrics(reg)
	sink := &heldSink{}
	c, err := New(DefaultConfig(), sink, metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go c.acker(stop, done)
	defer func() { close(stop); <-done }()
	const src = record.SourceMQTT

	good := &fakeMsg{topic: "fleetmeter/acme/d1/usage", payload: []byte(`[{"seq":1,"events":1},{"seq":2,"events":1}]`), qos: 1}
	bad := &fakeMsg{topic: "fleetmeter/acme/d1/usage/json", payload: []byte(`{"bytes_up":"lots"}`), qos: 1}
	badTopic := &fakeMsg{topic: "fleetmeter/acme/d1/usage/xml", payload: []byte(`{}`), qos: 0}
	c.handle(nil, good)
	c.handle(nil, bad)
	c.handle(nil, badTopic)

	if got := value(t, metrics.Received.WithLabelValues(src)); got != 3 {
		t.Errorf("received = %v, want 3", got)
	}
	if got := value(t, metrics.InFlight.WithLabelValues(src)); got != 3 {
		t.Errorf("in-flight before the sink answered = %v, want 3", got)
	}
	if got := value(t, metrics.Accepted.WithLabelValues(src)); got != 0 {
		t.Errorf("accepted before the sink answered = %v, want 0", got)
	}
	if good.acked.Load() != 0 {
		t.Fatal("acknowledged to the broker before the sink acknowledged")
	}
	if got := value(t, metrics.Rejected.WithLabelValues(src, "bad_field")) +
		value(t, metrics.Rejected.WithLabelValues(src, "bad_counter")); got != 1 {
		t.Errorf("rejected{bad_field|bad_counter} = %v, want 1 (rejections: %+v)", got, sink.rejs)
	}
	if got := value(t, metrics.Rejected.WithLabelValues(src, "bad_topic")); got != 1 {
		t.Errorf("rejected{bad_topic} = %v, want 1", got)
	}

	sink.release(nil)
	waitFor(t, "in-flight back to 0", func() bool { return value(t, metrics.InFlight.WithLabelValues(src)) == 0 })
	if got := value(t, metrics.Accepted.WithLabelValues(src)); got != 2 {
		t.Errorf("accepted = %v, want 2 records", got)
	}
	if good.acked.Load() != 1 || bad.acked.Load() != 1 || badTopic.acked.Load() != 1 {
		t.Errorf("acks good=%d bad=%d badTopic=%d, want 1 each (rejections are acknowledged once written)",
			good.acked.Load(), bad.acked.Load(), badTopic.acked.Load())
	}
	if n := histogramCount(t, reg, "fleetmeter_mediator_ack_latency_seconds"); n != 3 {
		t.Errorf("ack latency observations = %d, want 3", n)
	}

	refused := &fakeMsg{topic: "fleetmeter/acme/d1/usage", payload: []byte(`{"seq":3}`), qos: 1}
	c.handle(nil, refused)
	sink.release(errors.New("kafka down"))
	waitFor(t, "in-flight back to 0", func() bool { return value(t, metrics.InFlight.WithLabelValues(src)) == 0 })
	if refused.acked.Load() != 0 {
		t.Error("a message the sink refused was acknowledged")
	}
	if got := value(t, metrics.Accepted.WithLabelValues(src)); got != 2 {
		t.Errorf("accepted after a refusal = %v, want still 2", got)
	}
	select {
	case <-c.resync:
	default:
		t.Error("a refusal did not ask for a reconnect (the broker redelivers only then)")
	}
}

// TestInFlightBound: at MaxInFlight the handler waits for the sink, and gives up on
// shutdown without acknowledging.
func TestInFlightBound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInFlight = 2
	sink := &heldSink{}
	c, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go c.acker(stop, done)
	defer func() { close(stop); <-done }()
	msg := func(seq string) *fakeMsg {
		return &fakeMsg{topic: "fleetmeter/acme/d1/usage", payload: []byte(`{"seq":` + seq + `}`), qos: 1}
	}
	c.handle(nil, msg("1"))
	c.handle(nil, msg("2"))
	third := make(chan struct{})
	go func() { c.handle(nil, msg("3")); close(third) }()
	select {
	case <-third:
		t.Fatal("handler took a third message past max_in_flight 2")
	case <-time.After(100 * time.Millisecond):
	}
	sink.release(nil)
	<-third
	sink.release(nil)

	// Full again, then shutdown: the waiting handler returns, nothing is acknowledged.
	c.handle(nil, msg("4"))
	c.handle(nil, msg("5"))
	last := msg("6")
	sixth := make(chan struct{})
	go func() { c.handle(nil, last); close(sixth) }()
	time.Sleep(50 * time.Millisecond)
	close(c.stopping)
	select {
	case <-sixth:
	case <-time.After(2 * time.Second):
		t.Fatal("handler kept waiting for a slot after shutdown")
	}
	if last.acked.Load() != 0 {
		t.Fatal("message dropped at shutdown was acknowledged")
	}
}

func TestThrottle(t *testing.T) {
	var th throttle
	now := time.Unix(0, 0)
	if ok, n := th.allow(now, time.Second); !ok || n != 1 {
		t.Fatalf("first = %v %d", ok, n)
	}
	for range 5 {
		if ok, _ := th.allow(now.Add(time.Millisecond), time.Second); ok {
			t.Fatal("allowed within the interval")
		}
	}
	if ok, n := th.allow(now.Add(2*time.Second), time.Second); !ok || n != 6 {
		t.Fatalf("after interval = %v %d, want true 6", ok, n)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
			return n
		}
	}
	return 0
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}

// TestSampleConfig: the sample file decodes strictly and states the defaults.
func TestSampleConfig(t *testing.T) {
	var got struct {
		MQTT Config `yaml:"mqtt"`
	}
	if err := config.LoadFile("mqtt.sample.yaml", &got); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Enabled = true
	if !reflect.DeepEqual(got.MQTT, want) {
		t.Fatalf("sample decodes to\n%+v\nwant the defaults\n%+v", got.MQTT, want)
	}
}
