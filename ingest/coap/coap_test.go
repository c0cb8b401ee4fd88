package coap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"fleetmeter/ingest/registry"
)

func jsonBody(id string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"ts":%d,"events":1}`, id, testTime().UnixMilli())
}

// A retransmitted CON (same message id, same endpoint) gets the cached response and is
// not handed to the sink again, whether it arrives after the answer or while the first
// copy still awaits Kafka.
func TestDuplicateMessageID(t *testing.T) {
	hold := make(chan struct{})
	sink := &recSink{hold: hold, enqueued: make(chan struct{}, 16)}
	c := start(t, devConfig(), sink)
	conn, err := net.Dial("udp", c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pkt := rawPOST(t, message.Confirmable, 0x1234, []byte{0xca, 0xfe}, "/usage/farm/meter-7", message.AppJSON, jsonBody("dup-1"))

	// While the first copy awaits the acknowledgement, retransmissions are dropped.
	for range 3 {
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	<-sink.enqueued
	if r, ok := readResp(t, conn, 100*time.Millisecond); ok {
		t.Fatalf("answered before the acknowledgement: %+v", r)
	}
	close(hold)
	first, ok := readResp(t, conn, 5*time.Second)
	if !ok || first.typ != message.Acknowledgement || first.code != codes.Changed || first.mid != 0x1234 || !bytes.Equal(first.token, []byte{0xca, 0xfe}) {
		t.Fatalf("first response %+v", first)
	}
	if r, ok := readResp(t, conn, 200*time.Millisecond); ok {
		t.Fatalf("a dropped retransmission was answered: %+v", r)
	}

	// After the answer, a retransmission gets the same answer from the cache.
	again := retransmit(t, conn, pkt)
	if !bytes.Equal(again.raw, first.raw) {
		t.Fatalf("retransmission answer %+v, first %+v", again, first)
	}
	// A new message id is a new request.
	if _, err := conn.Write(rawPOST(t, message.Confirmable, 0x1235, []byte{0xca, 0xff}, "/usage/farm/meter-7", message.AppJSON, jsonBody("dup-2"))); err != nil {
		t.Fatal(err)
	}
	if r, ok := readResp(t, conn, 5*time.Second); !ok || r.code != codes.Changed || r.mid != 0x1235 {
		t.Fatalf("second request: %+v", r)
	}
	batches, _ := sink.snapshot()
	if len(batches) != 2 || batches[0][0].EventID != "coap:farm:meter-7:dup-1" || batches[1][0].EventID != "coap:farm:meter-7:dup-2" {
		t.Fatalf("sink got %d batches: %+v", len(batches), batches)
	}
}

// retransmit sends pkt until it is answered, as a client retransmits. (go-coap forgets
// an in-flight message id a moment after sending its answer: a copy arriving in between
// is dropped like any in-flight duplicate.)
func retransmit(t *testing.T, conn net.Conn, pkt []byte) rawResp {
	t.Helper()
	for range 20 {
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		if r, ok := readResp(t, conn, 250*time.Millisecond); ok {
			return r
		}
	}
	t.Fatal("no answer")
	return rawResp{}
}

// A NON request is answered NON with a fresh message id; a duplicate NON is not produced
// twice either.
func TestNonConfirmableDuplicate(t *testing.T) {
	sink := &recSink{}
	c := start(t, devConfig(), sink)
	conn, err := net.Dial("udp", c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pkt := rawPOST(t, message.NonConfirmable, 0x0777, []byte{1}, "/usage/farm/meter-7", message.AppJSON, jsonBody("non-1"))
	var answers []rawResp
	for range 2 {
		answers = append(answers, retransmit(t, conn, pkt))
	}
	for _, r := range answers {
		if r.typ != message.NonConfirmable || r.code != codes.Changed || !bytes.Equal(r.token, []byte{1}) {
			t.Fatalf("answer %+v", r)
		}
	}
	if b, _ := sink.snapshot(); len(b) != 1 {
		t.Fatalf("sink got %d batches", len(b))
	}
}

// More than max_in_flight requests awaiting Kafka: 5.03 with Max-Age, nothing enqueued;
// the held request gets 2.04 once acknowledged.
func TestBackpressure(t *testing.T) {
	hold := make(chan struct{})
	sink := &recSink{hold: hold, enqueued: make(chan struct{}, 16)}
	cfg := devConfig()
	cfg.MaxInFlight = 1
	cfg.BackpressureMaxAge = 7 * time.Second
	c := start(t, cfg, sink)

	held := make(chan error, 1)
	a, err := udp.Dial(c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := a.Post(ctx, "/usage/farm/meter-7", message.AppJSON, bytes.NewReader(jsonBody("bp-1")))
		if err == nil && resp.Code() != codes.Changed {
			err = fmt.Errorf("held request got %v", resp.Code())
		}
		held <- err
	}()
	<-sink.enqueued
	waitUntil(t, "one request in flight", func() bool { return c.InFlight() == 1 })

	b, err := udp.Dial(c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := b.Post(ctx, "/usage/farm/meter-8", message.AppJSON, bytes.NewReader(jsonBody("bp-2")))
	if err != nil {
		t.Fatal(err)
	}
	maxAge, _ := resp.GetOptionUint32(message.MaxAge)
	if resp.Code() != codes.ServiceUnavailable || maxAge != 7 {
		t.Fatalf("got %v max-age %d, want 5.03 max-age 7", resp.Code(), maxAge)
	}
	// A refusal needs a slot too: no 4.00 whose rejection could not be recorded.
	resp, err = b.Post(ctx, "/usage/farm/meter-8", message.AppJSON, bytes.NewReader([]byte(`{"colour":1}`)))
	if err != nil || resp.Code() != codes.ServiceUnavailable {
		t.Fatalf("bad payload under backpressure: %v %v", resp, err)
	}
	close(hold)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "slot released", func() bool { return c.InFlight() == 0 })
	resp, err = b.Post(ctx, "/usage/farm/meter-8", message.AppJSON, bytes.NewReader(jsonBody("bp-2")))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("after release: %v %v", resp, err)
	}
	batches, rejects := sink.snapshot()
	if len(batches) != 2 || len(rejects) != 0 {
		t.Fatalf("batches %d rejects %d", len(batches), len(rejects))
	}
}

// A sink that does not acknowledge in time, or fails: 5.03, so the device retries.
func TestSinkTimeoutAndError(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink *recSink
	}{
		{"timeout", &recSink{never: true}},
		{"error", &recSink{err: errors.New("kafka down")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := devConfig()
			cfg.AckTimeout = 200 * time.Millisecond
			c := start(t, cfg, tc.sink)
			cc, err := udp.Dial(c.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cc.Post(ctx, "/usage/farm/meter-7", message.AppJSON, bytes.NewReader(jsonBody("t-1")))
			if err != nil {
				t.Fatal(err)
			}
			if maxAge, _ := resp.GetOptionUint32(message.MaxAge); resp.Code() != codes.ServiceUnavailable || maxAge != 5 {
				t.Fatalf("got %v max-age %d", resp.Code(), maxAge)
			}
		})
	}
}

// A request whose acknowledgement comes after ack_timeout got 5.03; that late callback
// must not answer a later request whose records are not acknowledged yet (the collector
// reuses what a request waits on, and must not reuse it before its callback ran).
func TestLateAckAnswersNoOtherRequest(t *testing.T) {
	sink := &recSink{late: make(chan func(error), 4)}
	cfg := devConfig()
	cfg.AckTimeout = 300 * time.Millisecond
	c := start(t, cfg, sink)
	cc, err := udp.Dial(c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	post := func(id string) codes.Code {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cc.Post(ctx, "/usage/farm/meter-7", message.AppJSON, bytes.NewReader(jsonBody(id)))
		if err != nil {
			t.Error(err)
			return 0
		}
		return resp.Code()
	}
	if got := post("t-1"); got != codes.ServiceUnavailable {
		t.Fatalf("request 1 unacknowledged: %v, want 5.03", got)
	}
	first := <-sink.late
	for i, want := range []codes.Code{codes.ServiceUnavailable, codes.Changed, codes.Changed} {
		res := make(chan codes.Code, 1)
		go func() { res <- post(fmt.Sprint("t-", i+2)) }()
		done := <-sink.late
		if i == 0 {
			first(nil) // late, while request 2 waits
		} else {
			done(nil)
		}
		if got := <-res; got != want {
			t.Fatalf("request %d: %v, want %v", i+2, got, want)
		}
	}
}

func dialDTLS(t *testing.T, addr, identity string, key []byte) *udpClient.Conn {
	t.Helper()
	cc, err := dtls.Dial(addr, dtls.NewDTLSClientOptions(
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithPSKIdentityHint([]byte(identity)),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
	))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// The registry is read per request: a device removed while its DTLS session lives gets
// 4.01 (unknown_identity) on its next request.
func TestDTLSIdentityRemovedFromRegistry(t *testing.T) {
	sink := &recSink{}
	cfg := DefaultConfig()
	cfg.Listen = ""
	cfg.DTLSListen = "127.0.0.1:0"
	live := testRegistry(t, true)
	cfg.Registry = live
	c := start(t, cfg, sink)
	cc := dialDTLS(t, c.DTLSAddr(), "car-2@acme", []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Post(ctx, "/usage", message.AppJSON, bytes.NewReader(jsonBody("g-1")))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("first: %v %v", resp, err)
	}
	smaller, _ := registry.New(true, []registry.Device{{Tenant: "acme", Device: "car-1", CoAPPSKIdentity: "car-1@acme", CoAPPSK: []byte("secret-1")}})
	live.Store(smaller)
	resp, err = cc.Post(ctx, "/usage", message.AppJSON, bytes.NewReader(jsonBody("g-2")))
	if err != nil || resp.Code() != codes.Unauthorized {
		t.Fatalf("after removal: %v %v", resp, err)
	}
	batches, rejects := sink.snapshot()
	if len(batches) != 1 || len(rejects) != 1 || rejects[0].Reason != "unknown_identity" {
		t.Fatalf("batches %v rejects %+v", batches, rejects)
	}
}

// registry_file is loaded by New (a broken file fails start-up) and reloaded while
// running.
func TestRegistryFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "devices.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	cfg := devConfig()
	cfg.RegistryFile, cfg.DevModeForce = path, true
	cfg.RegistryReload = 10 * time.Millisecond
	write("strict: true\ndevices: [{tenant: farm, device: meter-7, colour: red}]\n")
	if _, err := New(cfg, &recSink{}, nil, nil); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("broken registry: %v", err)
	}
	write("strict: true\ndevices: [{tenant: farm, device: meter-7}]\n")
	sink := &recSink{}
	c := start(t, cfg, sink)
	cc, err := udp.Dial(c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	post := func(device, id string) codes.Code {
		resp, err := cc.Post(ctx, "/usage/farm/"+device, message.AppJSON, bytes.NewReader(jsonBody(id)))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Code()
	}
	if code := post("meter-8", "f-1"); code != codes.Unauthorized {
		t.Fatalf("unknown device: %v", code)
	}
	write("strict: true\ndevices: [{tenant: farm, device: meter-7}, {tenant: farm, device: meter-8}]\n")
	waitUntil(t, "reload", func() bool { _, ok := c.Registry().Lookup("farm", "meter-8"); return ok })
	if code := post("meter-8", "f-2"); code != codes.Changed {
		t.Fatalf("after reload: %v", code)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := Config{DTLSListen: "nohost", MaxBody: -1, BackpressureMaxAge: time.Millisecond}
	err := bad.Validate()
	for _, key := range []string{"coap.dtls_listen: must be host:port", "coap.registry_file: required", "coap.max_body",
		"coap.max_in_flight", "coap.backpressure_max_age", "coap.ack_timeout", "coap.idle_timeout", "coap.handshake_timeout",
		"coap.max_sessions", "coap.max_unverified_sessions", "coap.max_unverified_bytes", "coap.unverified_idle_timeout"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("missing %q in %v", key, err)
		}
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "coap.listen, coap.dtls_listen") {
		t.Errorf("no listener: %v", err)
	}
}

// Shutdown does not wait for acknowledgements that may never come.
func TestShutdownWithRequestsInFlight(t *testing.T) {
	sink := &recSink{never: true, enqueued: make(chan struct{}, 4)}
	cfg := devConfig()
	cfg.AckTimeout = time.Minute
	c, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	conn, err := net.Dial("udp", c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(rawPOST(t, message.Confirmable, 1, []byte{1}, "/usage/farm/meter-7", message.AppJSON, jsonBody("s-1"))); err != nil {
		t.Fatal(err)
	}
	<-sink.enqueued
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return with a request in flight")
	}
	if c.Healthy() {
		t.Fatal("healthy after stop")
	}
}
