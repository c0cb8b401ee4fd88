package mqtt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/record"
)

// anon is the listener setting of a broker without authentication; user root keeps
// Mosquitto from dropping to its own user, which could not read the test's temp files.
const anon = "allow_anonymous true\nuser root"

// TestTopicFormats: the topic's last level names the payload format; without it the
// payload is sniffed; an unknown format is rejected as bad_topic. mosquitto_pub proves
// the topic names are publishable.
func TestTopicFormats(t *testing.T) {
	b := startBroker(t, anon)
	sink := &memSink{}
	runCollector(t, testConfig(b, "formats"), sink)
	pub := publisher(t, "tcp://"+b.addr(), nil)

	senmlJSON := []byte(`[{"n":"bytes_up","v":100},{"n":"seq","v":2}]`)
	// CBOR [{0:"bytes_up",2:100},{0:"seq",2:3}]
	senmlCBOR := append(append([]byte{0x82, 0xa2, 0x00, 0x68}, "bytes_up"...), 0x02, 0x18, 0x64, 0xa2, 0x00, 0x63, 's', 'e', 'q', 0x02, 0x03)
	cases := []struct {
		topic   string
		payload []byte
		eventID string // accepted with this id, or
		reason  string // rejected with this reason
	}{
		{"fleetmeter/acme/d1/usage/json", []byte(`{"seq":1,"bytes_up":100}`), "mqtt:acme:d1:1", ""},
		{"fleetmeter/acme/d1/usage/senml-json", senmlJSON, "mqtt:acme:d1:2", ""},
		{"fleetmeter/acme/d1/usage/senml-cbor", senmlCBOR, "mqtt:acme:d1:3", ""},
		{"fleetmeter/acme/d1/usage", []byte(`{"seq":4,"bytes_up":100}`), "mqtt:acme:d1:4", ""},
		{"fleetmeter/acme/d1/usage", []byte(`[{"n":"bytes_up","v":100},{"n":"seq","v":5}]`), "mqtt:acme:d1:5", ""},
		{"fleetmeter/acme/d1/usage", append(senmlCBOR[:len(senmlCBOR)-1:len(senmlCBOR)-1], 0x06), "mqtt:acme:d1:6", ""},
		// The topic wins over sniffing: SenML sent as plain JSON is refused.
		{"fleetmeter/acme/d2/usage/json", senmlJSON, "", "unknown_field"},
		{"fleetmeter/acme/d3/usage/xml", []byte(`<usage/>`), "", "bad_topic"},
		{"fleetmeter/acme/d4/usage/json/extra", []byte(`{}`), "", "bad_topic"},
	}
	for _, tc := range cases[:3] {
		// A third-party client publishes the suffixed topics.
		args := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(b.port), "-q", "1", "-t", tc.topic, "-s"}
		cmd := exec.Command(mosquittoTool(t, "mosquitto_pub"), args...)
		cmd.Stdin = strings.NewReader(string(tc.payload))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %s: %v\n%s", tc.topic, err, out)
		}
	}
	for _, tc := range cases[3:] {
		publish(t, pub, tc.topic, 1, tc.payload)
	}
	waitFor(t, "all messages", func() bool {
		recs, rejs := sink.snapshot()
		return len(recs) == 6 && len(rejs) == 3
	})
	recs, rejs := sink.snapshot()
	for _, tc := range cases {
		if tc.eventID != "" && !slices.ContainsFunc(recs, func(u record.Usage) bool { return u.EventID == tc.eventID && u.BytesUp == 100 }) {
			t.Errorf("%s: no record %s with bytes_up 100 in %+v", tc.topic, tc.eventID, recs)
		}
		if tc.reason != "" && !slices.ContainsFunc(rejs, func(r record.Rejection) bool {
			return r.Reason == tc.reason && string(r.Raw) == string(tc.payload)
		}) {
			t.Errorf("%s: no rejection %s in %+v", tc.topic, tc.reason, rejs)
		}
	}
}

// TestSharedSubscription: two collectors in one $share group split the stream, and
// together see every message exactly once.
func TestSharedSubscription(t *testing.T) {
	b := startBroker(t, anon)
	sinkA, sinkB := &memSink{}, &memSink{}
	cfgA, cfgB := testConfig(b, "shared-a"), testConfig(b, "shared-b")
	cfgA.SharedGroup, cfgB.SharedGroup = "mediators", "mediators"
	runCollector(t, cfgA, sinkA)
	runCollector(t, cfgB, sinkB)
	pub := publisher(t, "tcp://"+b.addr(), nil)
	const n = 2000
	for i := range n {
		tok := pub.Publish(fmt.Sprintf("fleetmeter/acme/d%d/usage", i%20), 1, false, fmt.Sprintf(`{"seq":%d}`, i))
		if i%100 == 99 {
			tok.Wait()
		}
	}
	waitFor(t, "all messages", func() bool { return sinkA.count()+sinkB.count() >= n })
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive now
	a, _ := sinkA.snapshot()
	bb, _ := sinkB.snapshot()
	if len(a) == 0 || len(bb) == 0 {
		t.Fatalf("not split: collector a got %d, b got %d", len(a), len(bb))
	}
	seen := make(map[string]int, n)
	for _, u := range append(a, bb...) {
		seen[u.EventID]++
	}
	if len(seen) != n || len(a)+len(bb) != n {
		t.Fatalf("a=%d b=%d distinct=%d; want %d messages each once", len(a), len(bb), len(seen), n)
	}
	t.Logf("shared subscription split %d messages: a=%d b=%d", n, len(a), len(bb))
}

// TestPasswordAuth: against a broker with a password_file made by mosquitto_passwd, the
// right credentials subscribe and receive; wrong ones never become healthy.
func TestPasswordAuth(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(mosquittoTool(t, "mosquitto_passwd"), "-b", "-c", pwFile, "mediator", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	b := startBroker(t, "allow_anonymous false\nuser root\npassword_file "+pwFile)

	bad := testConfig(b, "auth-bad")
	bad.Username, bad.Password = "mediator", "wrong"
	cb, err := New(bad, &memSink{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopBad := runUntilCleanup(t, cb)

	good := testConfig(b, "auth-good")
	good.Username, good.Password = "mediator", "s3cret"
	sink := &memSink{}
	runCollector(t, good, sink)
	pub := publisher(t, "tcp://"+b.addr(), func(o *paho.ClientOptions) { o.SetUsername("mediator").SetPassword("s3cret") })
	publish(t, pub, "fleetmeter/acme/d1/usage", 1, []byte(`{"seq":1}`))
	waitFor(t, "message with credentials", func() bool { return sink.count() == 1 })
	if cb.Healthy() {
		t.Fatal("collector with a wrong password reports healthy")
	}
	stopBad()
}

// TestTLS: an ssl:// broker verified against ca_file, requiring a client certificate
// (cert_file, key_file) for mutual TLS; without one the collector never subscribes.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCA(t, dir)
	writeLeaf(t, dir, "server", ca, caKey, true)
	writeLeaf(t, dir, "client", ca, caKey, false)
	f := func(name string) string { return filepath.Join(dir, name) }
	b := startBroker(t, fmt.Sprintf("%s\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true",
		anon, f("ca.pem"), f("server.pem"), f("server.key")))

	noCert := testConfig(b, "tls-nocert")
	noCert.Brokers = []string{"ssl://" + b.addr()}
	noCert.CAFile = f("ca.pem")
	cn, err := New(noCert, &memSink{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopNoCert := runUntilCleanup(t, cn)

	cfg := noCert
	cfg.ClientID = "tls-mutual"
	cfg.CertFile, cfg.KeyFile = f("client.pem"), f("client.key")
	sink := &memSink{}
	c := runCollector(t, cfg, sink)
	tc, err := c.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	pub := publisher(t, "ssl://"+b.addr(), func(o *paho.ClientOptions) { o.SetTLSConfig(tc) })
	publish(t, pub, "fleetmeter/acme/d1/usage", 1, []byte(`{"seq":1}`))
	waitFor(t, "message over TLS", func() bool { return sink.count() == 1 })
	if cn.Healthy() {
		t.Fatal("collector without a client certificate reports healthy")
	}
	stopNoCert()
}

// runUntilCleanup runs c without waiting for health; the returned func stops it.
func runUntilCleanup(t *testing.T, c *Collector) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	var once bool
	stop := func() {
		if !once {
			once = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func mosquittoTool(t testing.TB, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s is not installed: run `make deps` (scripts/deps.sh)", name)
	return ""
}

func writeCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleetmeter test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writeLeaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReconnect: the broker dies (SIGKILL) and comes back on the same port; the collector
// reports unhealthy meanwhile, reconnects with backoff, resubscribes (the restarted
// broker has no session) and receives again.
func TestReconnect(t *testing.T) {
	b := startBroker(t, anon)
	cfg := testConfig(b, "reconnect")
	cfg.MaxReconnectInterval = 2 * time.Second
	sink := &memSink{}
	c := runCollector(t, cfg, sink)
	b.kill()
	waitFor(t, "unhealthy after the broker died", func() bool { return !c.Healthy() })
	time.Sleep(2500 * time.Millisecond) // several failed attempts: backoff grows to its cap
	b.start()
	began := time.Now()
	waitFor(t, "healthy after the broker returned", c.Healthy)
	t.Logf("resubscribed %s after the broker returned", time.Since(began).Round(time.Millisecond))
	pub := publisher(t, "tcp://"+b.addr(), nil)
	publish(t, pub, "fleetmeter/acme/d1/usage", 1, []byte(`{"seq":1}`))
	waitFor(t, "message after reconnect", func() bool { return sink.count() == 1 })
}

// TestQoS: a QoS 1 subscription takes QoS 0 and QoS 1 publications (QoS 0 needs no
// acknowledgement: Ack is a no-op); a QoS 0 subscription takes QoS 1 publications
// downgraded. In-flight returns to zero either way.
func TestQoS(t *testing.T) {
	b := startBroker(t, anon)
	pub := publisher(t, "tcp://"+b.addr(), nil)
	for _, subQoS := range []byte{1, 0} {
		cfg := testConfig(b, fmt.Sprintf("qos-%d", subQoS))
		cfg.QoS = subQoS
		cfg.TopicPrefix = fmt.Sprintf("q%d", subQoS)
		sink := &memSink{}
		c := runCollector(t, cfg, sink)
		for i, pubQoS := range []byte{0, 1, 0, 1} {
			publish(t, pub, cfg.TopicPrefix+"/acme/d1/usage", pubQoS, []byte(fmt.Sprintf(`{"seq":%d}`, i)))
		}
		waitFor(t, fmt.Sprintf("4 messages at subscription QoS %d", subQoS), func() bool { return sink.count() == 4 })
		waitFor(t, "in-flight 0", func() bool { return value(t, c.metrics.InFlight.WithLabelValues(record.SourceMQTT)) == 0 })
	}
}

// TestRefusedIsRedelivered: a message the sink refuses stays unacknowledged; the collector
// reconnects so the broker redelivers it from the persistent session, and it gets in.
func TestRefusedIsRedelivered(t *testing.T) {
	b := startBroker(t, anon)
	var calls int
	mu := new(sync.Mutex)
	sink := &memSink{refuse: func() bool {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return calls <= 2
	}}
	runCollector(t, testConfig(b, "refused"), sink)
	pub := publisher(t, "tcp://"+b.addr(), nil)
	publish(t, pub, "fleetmeter/acme/d1/usage", 1, []byte(`{"seq":42}`))
	waitFor(t, "redelivered message accepted", func() bool { return sink.count() == 1 })
	recs, _ := sink.snapshot()
	if recs[0].EventID != "mqtt:acme:d1:42" {
		t.Fatalf("got %s", recs[0].EventID)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 {
		t.Fatalf("sink saw %d deliveries, want 3 (two refused, one accepted)", calls)
	}
}

// TestAckedNotRedelivered: what the collector acknowledged is gone from the session; a
// new connection with the same client id gets nothing again.
func TestAckedNotRedelivered(t *testing.T) {
	b := startBroker(t, anon)
	cfg := testConfig(b, "acked")
	sink := &memSink{}
	c, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntilCleanup(t, c)
	waitFor(t, "subscribed", c.Healthy)
	pub := publisher(t, "tcp://"+b.addr(), nil)
	for i := range 100 {
		publish(t, pub, "fleetmeter/acme/d1/usage", 1, []byte(fmt.Sprintf(`{"seq":%d}`, i)))
	}
	waitFor(t, "100 messages", func() bool { return sink.count() == 100 })
	time.Sleep(100 * time.Millisecond)
	stop()
	again := &memSink{}
	runCollector(t, cfg, again)
	time.Sleep(500 * time.Millisecond)
	if n := again.count(); n != 0 {
		t.Fatalf("%d acknowledged messages were redelivered", n)
	}
}
