package coap

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// recSink records what reaches it. With hold set, acknowledgements wait until hold is
// closed; with err set, they fail.
type recSink struct {
	mu       sync.Mutex
	batches  [][]record.Usage
	rejects  []record.Rejection
	enqueued chan struct{} // one token per Enqueue/EnqueueRejects call, if non-nil
	hold     chan struct{}
	err      error
	never    bool             // never acknowledge
	late     chan func(error) // if non-nil, each call's callback goes here for the test to run
}

func (s *recSink) Enqueue(recs []record.Usage, done func(error)) {
	s.mu.Lock()
	s.batches = append(s.batches, append([]record.Usage(nil), recs...))
	s.mu.Unlock()
	s.ack(done)
}

func (s *recSink) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	s.mu.Lock()
	s.rejects = append(s.rejects, rejs...)
	s.mu.Unlock()
	s.ack(done)
}

func (s *recSink) ack(done func(error)) {
	if s.enqueued != nil {
		s.enqueued <- struct{}{}
	}
	switch {
	case s.never:
	case s.late != nil:
		s.late <- done
	case s.hold != nil:
		go func() { <-s.hold; done(s.err) }()
	default:
		done(s.err)
	}
}

func (s *recSink) snapshot() ([][]record.Usage, []record.Rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]record.Usage(nil), s.batches...), append([]record.Rejection(nil), s.rejects...)
}

// testRegistry: two DTLS devices (one with a hex key), one known only by name and one
// with MQTT credentials.
func testRegistry(t *testing.T, strict bool) *registry.Live {
	t.Helper()
	r, err := registry.New(strict, []registry.Device{
		{Tenant: "acme", Device: "car-1", CoAPPSKIdentity: "car-1@acme", CoAPPSK: []byte("secret-1")},
		{Tenant: "acme", Device: "car-2", CoAPPSKIdentity: "car-2@acme", CoAPPSK: []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02}},
		{Tenant: "farm", Device: "meter-7"},
		{Tenant: "farm", Device: "gw-1", MQTTUsername: "farm-gw-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return registry.NewLive(r)
}

// start runs a collector on loopback port 0 and stops it at the end of the test.
func start(t testing.TB, cfg Config, sink *recSink) *Collector {
	t.Helper()
	if cfg.Listen == "" && cfg.DTLSListen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	c, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	if !c.Healthy() {
		cancel()
		t.Fatalf("collector did not start: %v", <-done)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return")
		}
		if c.Healthy() {
			t.Error("healthy after stop")
		}
	})
	return c
}

func devConfig() Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DevMode = true
	return cfg
}

// coapClient runs libcoap's client with -v 6 (so the response's type and code are
// printed) and returns the lines describing received PDUs plus everything it printed.
func coapClient(t *testing.T, bin string, args ...string) (resp []string, all string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		t.Skipf("%s not installed (Debian libcoap3-bin)", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-v", "6", "-B", "5"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil && !errors.As(err, new(*exec.ExitError)) {
		t.Fatalf("%s: %v", bin, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		// "v:1 t:ACK c:2.04 i:53a0 {01} [ ]": lines of PDUs; requests have a method code.
		if strings.HasPrefix(l, "v:1 ") && !strings.Contains(l, " c:POST ") && !strings.Contains(l, " c:GET ") {
			resp = append(resp, l)
		}
	}
	return resp, string(out)
}

// wantResponse checks that the last PDU received has the type and code, e.g. "ACK", "2.04".
func wantResponse(t *testing.T, resp []string, all, typ, code string) {
	t.Helper()
	if len(resp) == 0 {
		t.Fatalf("no response; client printed:\n%s", all)
	}
	last := resp[len(resp)-1]
	if !strings.Contains(last, " t:"+typ+" ") || !strings.Contains(last, " c:"+code+" ") {
		t.Fatalf("want %s %s, got %q; client printed:\n%s", typ, code, last, all)
	}
}

// rawPOST builds a CoAP POST datagram.
func rawPOST(t testing.TB, typ message.Type, mid int32, token []byte, path string, cf message.MediaType, body []byte) []byte {
	t.Helper()
	m := pool.NewMessage(context.Background())
	if err := m.SetupPost(path, token, cf, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	m.SetType(typ)
	m.SetMessageID(mid)
	b, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type rawResp struct {
	typ     message.Type
	code    codes.Code
	mid     int32
	token   []byte
	maxAge  uint32
	payload string
	raw     []byte
}

// readResp reads one datagram from conn (false on timeout).
func readResp(t testing.TB, conn net.Conn, wait time.Duration) (rawResp, bool) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return rawResp{}, false
		}
		t.Fatal(err)
	}
	m := pool.NewMessage(context.Background())
	if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err != nil {
		t.Fatal(err)
	}
	r := rawResp{typ: m.Type(), code: m.Code(), mid: m.MessageID(), token: m.Token(), raw: append([]byte(nil), buf[:n]...)}
	r.maxAge, _ = m.GetOptionUint32(message.MaxAge)
	if b, _ := m.ReadBody(); b != nil {
		r.payload = string(b)
	}
	return r, true
}

// stripReceived checks every record was received during the test and zeroes the field,
// so records compare with literals.
func stripReceived(t *testing.T, since time.Time, recs []record.Usage) []record.Usage {
	t.Helper()
	out := append([]record.Usage(nil), recs...)
	for i := range out {
		if out[i].ReceivedTime < since.UnixMilli() || out[i].ReceivedTime > time.Now().UnixMilli() {
			t.Fatalf("record %d received_time %d outside the test", i, out[i].ReceivedTime)
		}
		out[i].ReceivedTime = 0
	}
	return out
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// post sends one usage request over a fresh go-coap UDP client and returns the code.
func post(t *testing.T, addr, path, id string) codes.Code {
	t.Helper()
	cc, err := udp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Post(ctx, path, message.AppJSON, bytes.NewReader(jsonBody(id)))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Code()
}
