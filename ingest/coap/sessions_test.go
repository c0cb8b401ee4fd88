package coap

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus"
)

// The table's bounds, eviction order, verification, byte charges and expiry.
func TestSessionTable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxSessions, cfg.MaxUnverifiedSessions, cfg.MaxUnverifiedBytes = 4, 2, 1000
	tab := newSessionTable(cfg, time.Minute, 100)
	var freed []int
	open := func(i int, at time.Time) *session {
		return tab.open(at, func() { freed = append(freed, i) })
	}
	now := time.Now()
	s := []*session{open(0, now), open(1, now), open(2, now)} // 2 unverified at most: 0 goes
	if len(freed) != 1 || freed[0] != 0 || s[0].state.Load() != stateClosed {
		t.Fatalf("freed %v", freed)
	}
	tab.verify(s[1])
	tab.verify(s[2])
	s = append(s, open(3, now), open(4, now)) // 2 verified + 2 unverified: full
	if st := tab.stats(); st.Verified != 2 || st.Unverified != 2 || st.UnverifiedBytes != 200 || st.Evicted != 1 {
		t.Fatalf("stats %+v", st)
	}
	// At max_sessions a new peer evicts the oldest unverified one, never a verified one.
	s = append(s, open(5, now))
	if len(freed) != 2 || freed[1] != 3 {
		t.Fatalf("freed %v", freed)
	}
	tab.verify(s[4])
	tab.verify(s[5])
	if got := open(6, now); got != nil || tab.stats().Refused != 1 {
		t.Fatalf("all verified: want refusal, got %v %+v", got, tab.stats())
	}
	// Bytes: over max_unverified_bytes the oldest unverified session goes, itself included.
	tab.closed(s[1])
	tab.closed(s[1]) // idempotent
	a := open(7, now)
	if !tab.charge(a, 850) || tab.charge(a, 100) || a.state.Load() != stateClosed {
		t.Fatalf("charge: state %d stats %+v", a.state.Load(), tab.stats())
	}
	// Verified sessions are not charged.
	if !tab.charge(s[2], 1<<20) {
		t.Fatal("verified session charged")
	}
	// Age: unverified sessions close at the ttl, on the sweep or the next open.
	b := open(8, now)
	tab.sweep(now.Add(59 * time.Second))
	if b.state.Load() != stateUnverified {
		t.Fatal("expired early")
	}
	tab.sweep(now.Add(time.Minute))
	if st := tab.stats(); b.state.Load() != stateClosed || st.Expired != 1 || st.Unverified != 0 || st.UnverifiedBytes != 0 || st.Verified != 3 {
		t.Fatalf("after sweep: %+v", st)
	}
	for _, x := range s[2:] {
		tab.closed(x)
	}
	if st := tab.stats(); st.Verified != 0 || st.Unverified != 0 || st.UnverifiedBytes != 0 {
		t.Fatalf("after close: %+v", st)
	}
}

// settle waits until the goroutine count is at most limit, and returns it.
func settle(limit int) int {
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// floodUDP sends pkt once from each of n fresh UDP sockets, at most batch open at a time,
// calling check after each batch.
func floodUDP(t *testing.T, addr string, n, batch int, pkt func(i int) []byte, check func(sent int)) {
	t.Helper()
	for sent := 0; sent < n; {
		k := min(batch, n-sent)
		conns := make([]net.Conn, 0, k)
		for i := range k {
			cn, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, cn)
			if _, err := cn.Write(pkt(sent + i)); err != nil {
				t.Fatal(err)
			}
			if i%20 == 19 { // let the server drain its socket buffer rather than the kernel drop
				time.Sleep(time.Millisecond)
			}
		}
		sent += k
		check(sent)
		for _, cn := range conns {
			_ = cn.Close()
		}
	}
}

// 5,000 unauthenticated datagrams from distinct source ports: go-coap's per-address
// state (and goroutine) stays within max_unverified_sessions throughout, a device
// verified before the flood keeps its session, and new devices still get 2.04.
func TestUDPFloodBounded(t *testing.T) {
	const capUnverified = 100
	cfg := devConfig()
	cfg.MaxSessions, cfg.MaxUnverifiedSessions = 300, capUnverified
	c := start(t, cfg, &recSink{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	before := post(t, c.Addr(), "/usage/farm/meter-7", "before-flood")
	if before != codes.Changed {
		t.Fatalf("before the flood: %v", before)
	}
	base := runtime.NumGoroutine()
	junk := rawPOST(t, message.Confirmable, 7, []byte{7}, "/usage", message.AppJSON, []byte(`{}`))
	peakSessions, peakGoroutines := 0, 0
	floodUDP(t, c.Addr(), 5000, 500, func(int) []byte { return junk }, func(int) {
		udp, _ := c.Sessions()
		if udp.Unverified > capUnverified || udp.Verified != 1 {
			t.Fatalf("sessions over the bound: %+v", udp)
		}
		peakSessions = max(peakSessions, udp.Unverified)
		peakGoroutines = max(peakGoroutines, settle(base+capUnverified+50)-base)
	})
	udp, _ := c.Sessions()
	gauge := gathered(t, reg, "fleetmeter_coap_sessions", map[string]string{"transport": "udp", "state": "unverified"})
	t.Logf("5000 datagrams: peak %d unverified sessions, peak goroutine delta %d, evicted %d, gauge %v",
		peakSessions, peakGoroutines, udp.Evicted, gauge)
	if peakGoroutines > capUnverified+50 {
		t.Fatalf("goroutines grew by %d, bound %d", peakGoroutines, capUnverified)
	}
	if gauge > capUnverified || udp.Evicted < 10*capUnverified { // ports repeat and the kernel drops some

		t.Fatalf("gauge %v, stats %+v", gauge, udp)
	}
	for i, path := range []string{"/usage/farm/meter-7", "/usage/farm/meter-8"} {
		if code := post(t, c.Addr(), path, "after-flood"); code != codes.Changed {
			t.Fatalf("device %d after the flood: %v", i, code)
		}
	}
}

// gathered reads the gauge name{labels} from reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("%s%v not gathered", name, labels)
	return 0
}

// clientHello captures the first flight of a pion DTLS client: a ClientHello without a
// cookie, as a spoofing sender would send it.
func clientHello(t *testing.T) []byte {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return
		}
		dc, err := piondtls.ClientWithOptions(conn, pc.LocalAddr(),
			piondtls.WithPSK(func([]byte) ([]byte, error) { return []byte("k"), nil }),
			piondtls.WithPSKIdentityHint([]byte("x")),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8))
		if err != nil {
			_ = conn.Close()
			return
		}
		_ = dc.HandshakeContext(ctx)
		_ = dc.Close()
	}()
	buf := make([]byte, 2048)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n < 14 || buf[0] != 22 || buf[13] != 1 {
		t.Fatalf("not a ClientHello: % x", buf[:min(n, 16)])
	}
	return append([]byte(nil), buf[:n]...)
}

// 2,000 DTLS ClientHellos from distinct source ports: the server answers with a
// HelloVerifyRequest (the cookie exchange is on), pending handshakes stay within
// max_unverified_sessions with their goroutines, and a device still completes its
// handshake and gets 2.04.
func TestDTLSHelloFloodBounded(t *testing.T) {
	const capUnverified = 50
	cfg := DefaultConfig()
	cfg.Listen, cfg.DTLSListen = "", "127.0.0.1:0"
	cfg.Registry = testRegistry(t, true)
	cfg.MaxSessions, cfg.MaxUnverifiedSessions = 200, capUnverified
	c := start(t, cfg, &recSink{})
	hello := clientHello(t)

	// The first ClientHello is answered with a HelloVerifyRequest (handshake type 3).
	conn, err := net.Dial("udp", c.DTLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(hello); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(buf); err != nil || n < 14 || buf[0] != 22 || buf[13] != 3 {
		t.Fatalf("want a HelloVerifyRequest, got % x, %v", buf[:min(n, 16)], err)
	}

	base := runtime.NumGoroutine()
	const perHandshake = 6 // goroutines of a pending handshake: go-coap's and pion's
	peakPending, peakGoroutines := 0, 0
	floodUDP(t, c.DTLSAddr(), 2000, 250, func(int) []byte { return hello }, func(int) {
		_, d := c.Sessions()
		if d.Unverified > capUnverified {
			t.Fatalf("pending handshakes over the bound: %+v", d)
		}
		peakPending = max(peakPending, d.Unverified)
		peakGoroutines = max(peakGoroutines, settle(base+perHandshake*capUnverified+50)-base)
	})
	_, d := c.Sessions()
	t.Logf("2000 ClientHellos: peak %d pending handshakes, peak goroutine delta %d, stats %+v", peakPending, peakGoroutines, d)
	if peakGoroutines > perHandshake*capUnverified+50 {
		t.Fatalf("goroutines grew by %d", peakGoroutines)
	}
	cc := dialDTLS(t, c.DTLSAddr(), "car-1@acme", []byte("secret-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Post(ctx, "/usage", message.AppJSON, bytes.NewReader(jsonBody("dtls-after-flood")))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("after the flood: %v %v", resp, err)
	}
	if _, d := c.Sessions(); d.Verified != 1 {
		t.Fatalf("dtls sessions %+v", d)
	}
}
