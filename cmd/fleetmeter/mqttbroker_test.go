package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// memSink stands in for Kafka: it acknowledges each call after a random delay (so
// acknowledgements come out of order), recording an event id as stored before calling
// done, and refuses the event ids refuse names.
type memSink struct {
	mu       sync.Mutex
	stored   map[string]int
	rejected []record.Rejection
	pending  int
	maxPend  int
	refuse   func(eventID string) bool
}

func newMemSink() *memSink { return &memSink{stored: map[string]int{}} }

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *memSink) Enqueue(recs []record.Usage, done func(error)) {
	ids := make([]string, len(recs))
	for i := range recs {
		ids[i] = recs[i].EventID
	}
	s.mu.Lock()
	s.pending++
	s.maxPend = max(s.maxPend, s.pending)
	s.mu.Unlock()
	go func() {
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		s.mu.Lock()
		s.pending--
		var err error
		for _, id := range ids {
			if s.refuse != nil && s.refuse(id) {
				err = errors.New("kafka: refused")
				continue
			}
			s.stored[id]++
		}
		s.mu.Unlock()
		done(err)
	}()
}

func (s *memSink) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	s.mu.Lock()
	s.rejected = append(s.rejected, rejs...)
	s.mu.Unlock()
	done(nil)
}

func (s *memSink) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored[id] > 0
}

// testDevices are tenant/device pairs with username tenant.device and password pw-device.
func testDevices(t testing.TB, pairs ...string) *registry.Registry {
	t.Helper()
	var ds []registry.Device
	for _, p := range pairs {
		tenant, device, _ := strings.Cut(p, "/")
		h, err := registry.HashPassword("pw-" + device)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, registry.Device{Tenant: tenant, Device: device, MQTTUsername: tenant + "." + device, MQTTPasswordHash: h})
	}
	r, err := registry.New(true, ds)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func startTestBroker(t testing.TB, sink *memSink, reg *registry.Registry, maxInFlight, perClient int, logger *slog.Logger) *embeddedBroker {
	t.Helper()
	b, err := startBroker(brokerConfig{Addr: "127.0.0.1:0", TopicPrefix: "fleetmeter", Devices: reg.ByMQTTUsername,
		Reserved: []string{"fleetmeter-standalone-mediator"}, Sink: sink, MaxInFlight: maxInFlight,
		MaxInFlightPerClient: perClient, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// connect returns a connected client, or the connect error.
func connect(b *embeddedBroker, clientID, user, password string) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID(clientID).
		SetUsername(user).SetPassword(password).SetAutoReconnect(false).SetWriteTimeout(20 * time.Second)
	cl := paho.NewClient(opts)
	tok := cl.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	return cl, tok.Error()
}

func mustConnect(t testing.TB, b *embeddedBroker, clientID, user, password string) paho.Client {
	t.Helper()
	cl, err := connect(b, clientID, user, password)
	if err != nil {
		t.Fatalf("connect %s as %s: %v", clientID, user, err)
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl
}

// TestBrokerBurstAcksOnlyStored publishes 30,000 QoS 1 messages in a burst from 10
// devices, without waiting for acknowledgements, through pipeline bounds far smaller
// than the burst. Every message must be acknowledged, and each only after the sink
// stored it: the broker applies back-pressure instead of dropping.
func TestBrokerBurstAcksOnlyStored(t *testing.T) {
	const devices, perDevice, maxInFlight = 10, 3000, 256
	var pairs []string
	for d := range devices {
		pairs = append(pairs, fmt.Sprintf("acme/dev-%d", d))
	}
	sink := newMemSink()
	b := startTestBroker(t, sink, testDevices(t, pairs...), maxInFlight, 64, nil)

	var acked, early atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for d := range devices {
		cl := mustConnect(t, b, "any", fmt.Sprintf("acme.dev-%d", d), fmt.Sprintf("pw-dev-%d", d))
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks := make([]paho.Token, perDevice)
			for s := range perDevice {
				toks[s] = cl.Publish(fmt.Sprintf("fleetmeter/acme/dev-%d/usage", d), 1, false,
					fmt.Sprintf(`{"seq":%d,"events":1}`, s+1))
			}
			for s, tok := range toks {
				if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("dev-%d seq %d: not acknowledged: %v", d, s+1, tok.Error())
					return
				}
				acked.Add(1)
				if !sink.has(fmt.Sprintf("mqtt:acme:dev-%d:%d", d, s+1)) {
					early.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if early.Load() > 0 {
		t.Fatalf("%d of %d messages were acknowledged before the sink stored them", early.Load(), acked.Load())
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.stored) != devices*perDevice || acked.Load() != devices*perDevice {
		t.Fatalf("acknowledged %d, stored %d distinct, want %d", acked.Load(), len(sink.stored), devices*perDevice)
	}
	if sink.maxPend > maxInFlight {
		t.Fatalf("%d messages awaited the sink at once, bound %d", sink.maxPend, maxInFlight)
	}
	t.Logf("%d messages acknowledged, all stored first; at most %d awaited the sink at once", acked.Load(), sink.maxPend)
}

// TestBrokerRefusedNotAcked: a message the sink refuses is never acknowledged; the
// connection is closed so the device resends it after reconnecting.
func TestBrokerRefusedNotAcked(t *testing.T) {
	sink := newMemSink()
	sink.refuse = func(id string) bool { return id == "mqtt:acme:dev-1:2" }
	b := startTestBroker(t, sink, testDevices(t, "acme/dev-1"), 100, 10, nil)
	lost := make(chan struct{})
	opts := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetUsername("acme.dev-1").SetPassword("pw-dev-1").
		SetAutoReconnect(false).SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cl.Disconnect(0)
	first := cl.Publish("fleetmeter/acme/dev-1/usage", 1, false, `{"seq":1,"events":1}`)
	if !first.WaitTimeout(10*time.Second) || first.Error() != nil {
		t.Fatalf("seq 1: %v", first.Error())
	}
	second := cl.Publish("fleetmeter/acme/dev-1/usage", 1, false, `{"seq":2,"events":1}`)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open after Kafka refused a message")
	}
	if second.WaitTimeout(time.Second) && second.Error() == nil {
		t.Fatal("the refused message was acknowledged")
	}
}

// TestBrokerAuth: only registry credentials connect; a device publishes only to its own
// topic, reads nothing, cannot take the mediator's client id or another device's session.
// Nothing logged, even at debug, shows a password or a hash.
func TestBrokerAuth(t *testing.T) {
	sink := newMemSink()
	var logged syncBuffer
	reg := testDevices(t, "agrico/sensor-1", "autoco/victim")
	b := startTestBroker(t, sink, reg, 100, 10, slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer func() {
		for _, secret := range []string{"pw-sensor-1", "pw-victim", "$7$"} {
			if strings.Contains(logged.String(), secret) {
				t.Errorf("the log shows %q:\n%s", secret, logged.String())
			}
		}
		if !strings.Contains(logged.String(), `"reason":"bad_password"`) {
			t.Errorf("no refusal logged at debug:\n%s", logged.String())
		}
	}()

	for _, c := range []struct{ name, id, user, pw string }{
		{"anonymous", "x", "", ""},
		{"unknown user", "x", "nobody", "pw-sensor-1"},
		{"wrong password", "x", "agrico.sensor-1", "pw-victim"},
		{"mediator's client id", "fleetmeter-standalone-mediator", "agrico.sensor-1", "pw-sensor-1"},
	} {
		if cl, err := connect(b, c.id, c.user, c.pw); err == nil {
			cl.Disconnect(0)
			t.Errorf("%s: connected", c.name)
		}
	}

	victim := mustConnect(t, b, "victim", "autoco.victim", "pw-victim")
	// Another device naming the victim's username as client id gets its own session.
	attacker := mustConnect(t, b, "autoco.victim", "agrico.sensor-1", "pw-sensor-1")
	time.Sleep(200 * time.Millisecond)
	if !victim.IsConnectionOpen() {
		t.Fatal("a device took over another's session by its client id")
	}

	sub := attacker.Subscribe("#", 1, func(paho.Client, paho.Message) {})
	if !sub.WaitTimeout(5*time.Second) || sub.Error() != nil {
		t.Fatalf("subscribe: %v", sub.Error())
	}
	if r := sub.(*paho.SubscribeToken).Result()["#"]; r != 0x80 {
		t.Fatalf("subscribing to # granted %#x, want refusal 0x80", r)
	}

	if tok := victim.Publish("fleetmeter/autoco/victim/usage", 1, false, `{"seq":1,"events":1}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("own topic: %v", tok.Error())
	}
	// Billing the victim from another device's connection: mochi disconnects an MQTT
	// 3.1.1 client whose publication is not authorized, and nothing reaches Kafka.
	attacker.Publish("fleetmeter/autoco/victim/usage", 1, false, `{"seq":2,"events":1}`).WaitTimeout(2 * time.Second)
	if attacker.IsConnectionOpen() {
		t.Error("the broker kept a connection that published to another tenant's topic")
	}
	time.Sleep(100 * time.Millisecond)
	if !sink.has("mqtt:autoco:victim:1") || sink.has("mqtt:autoco:victim:2") {
		t.Fatalf("stored %v, want only the victim's own seq 1", sink.stored)
	}
}

// A device removed from the registry publishes no more, even on a connection it had.
func TestBrokerRevokedDevice(t *testing.T) {
	sink := newMemSink()
	live := registry.NewLive(testDevices(t, "acme/dev-1"))
	b, err := startBroker(brokerConfig{Addr: "127.0.0.1:0", TopicPrefix: "fleetmeter", Sink: sink, MaxInFlight: 10,
		MaxInFlightPerClient: 10, Devices: func(u string) (registry.Device, bool) { return live.Load().ByMQTTUsername(u) }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl := mustConnect(t, b, "x", "acme.dev-1", "pw-dev-1")
	if tok := cl.Publish("fleetmeter/acme/dev-1/usage", 1, false, `{"seq":1,"events":1}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	live.Store(testDevices(t, "acme/dev-2"))
	cl.Publish("fleetmeter/acme/dev-1/usage", 1, false, `{"seq":2,"events":1}`).WaitTimeout(2 * time.Second)
	if cl.IsConnectionOpen() || sink.has("mqtt:acme:dev-1:2") {
		t.Fatal("a device removed from the registry published")
	}
	if _, err := connect(b, "x", "acme.dev-1", "pw-dev-1"); err == nil {
		t.Fatal("a device removed from the registry connected")
	}
}

// A payload that does not parse is acknowledged once its rejection is stored, as the
// MQTT collector does, under the reason the parser gave.
func TestBrokerRejectsBadPayload(t *testing.T) {
	sink := newMemSink()
	b := startTestBroker(t, sink, testDevices(t, "acme/dev-1"), 10, 10, nil)
	cl := mustConnect(t, b, "x", "acme.dev-1", "pw-dev-1")
	if tok := cl.Publish("fleetmeter/acme/dev-1/usage/json", 1, false, `{"colour":1}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.rejected) != 1 || len(sink.stored) != 0 {
		t.Fatalf("rejected %+v, stored %v", sink.rejected, sink.stored)
	}
	r := sink.rejected[0]
	if r.Source != record.SourceMQTT || r.Tenant != "acme" || r.Device != "dev-1" || r.Reason != record.ReasonUnknownField ||
		string(r.Raw) != `{"colour":1}` {
		t.Fatalf("rejection %+v", r)
	}
}
