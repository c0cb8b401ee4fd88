package httpin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"fleetmeter/ingest"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c := DefaultConfig()
	c.Enabled = true
	c.Listen = "8080"
	c.Keys = []APIKey{{Key: "short", Tenant: "acme"}, {Key: acmeKey, KeyFile: "/k", Tenant: ""}, {Tenant: "x"},
		{Key: acmeKey + " x", Tenant: "bad\ntenant"}}
	c.MaxBody = 0
	c.AckTimeout = -time.Second
	c.TenantMaxConcurrent = 0
	c.TenantRate = -1
	c.TLSCert = "cert.pem"
	err := c.Validate()
	for _, want := range []string{
		`http.listen: must be host:port, got "8080"`,
		"http.keys[0].key: must be at least 16 characters",
		"http.keys[1]: set key or key_file, not both",
		"http.keys[1].tenant: required",
		"http.keys[2]: key or key_file is required",
		"http.keys[3].key: must be printable ASCII without spaces",
		"http.keys[3].tenant: ",
		"http.max_body: must be positive, got 0",
		"http.tenant_max_concurrent: must be positive, got 0",
		"http.tenant_rate: must be within [0, 1e9] requests per second (0: no limit), got -1",
		"http.ack_timeout: must be a positive duration, got -1s",
		"http.tls_cert, http.tls_key: set both or neither",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	c = DefaultConfig()
	c.TenantBurst = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "http.tenant_burst: must be at least 1 when http.tenant_rate is set, got 0") {
		t.Errorf("rate without burst: %v", err)
	}
	c.TenantRate = 0
	if err := c.Validate(); err != nil {
		t.Errorf("no rate limit, no burst: %v", err)
	}
	c = DefaultConfig()
	c.Enabled = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "http.keys: at least one") {
		t.Errorf("enabled without keys: %v", err)
	}
}

// TestSampleConfig decodes httpin.sample.yaml strictly, as the mediator's config loader does.
func TestSampleConfig(t *testing.T) {
	var file struct {
		HTTP Config `yaml:"http"`
	}
	file.HTTP = DefaultConfig()
	b, err := os.ReadFile("httpin.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.NewDecoder(bytes.NewReader(b), yaml.Strict()).Decode(&file); err != nil {
		t.Fatal(yaml.FormatError(err, false, true))
	}
	if err := file.HTTP.Validate(); err != nil {
		t.Fatal(err)
	}
	c := file.HTTP
	if !c.Enabled || len(c.Keys) != 3 || c.Keys[1].KeyFile == "" || c.MaxBody != 4<<20 || c.AckTimeout != 10*time.Second {
		t.Errorf("sample decoded to %+v", c)
	}
	// The sample shows the defaults: decoding it over a zero Config gives them.
	var zero struct {
		HTTP Config `yaml:"http"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(b), yaml.Strict()).Decode(&zero); err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	z := zero.HTTP
	if z.MaxConcurrent != d.MaxConcurrent || z.TenantMaxConcurrent != d.TenantMaxConcurrent ||
		z.TenantRate != d.TenantRate || z.TenantBurst != d.TenantBurst {
		t.Errorf("sample limits %d %d %v %d, defaults %d %d %v %d", z.MaxConcurrent, z.TenantMaxConcurrent, z.TenantRate,
			z.TenantBurst, d.MaxConcurrent, d.TenantMaxConcurrent, d.TenantRate, d.TenantBurst)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good"), filepath.Join(dir, "short")
	os.WriteFile(good, []byte("  "+farmKey+"\n"), 0o600)
	os.WriteFile(short, []byte("abc\n"), 0o600)
	cfg := testConfig()
	cfg.Keys = []APIKey{{Key: acmeKey, Tenant: "acme"}, {KeyFile: good, Tenant: "farmco"}}
	s, err := New(cfg, &fakeSink{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if k := s.authenticate("Bearer " + farmKey); k == nil || k.tenant != "farmco" {
		t.Errorf("key file: %+v", k)
	}
	if k := s.authenticate("bearer  " + acmeKey + " "); k == nil || k.tenant != "acme" {
		t.Errorf("inline key, lower-case scheme: %+v", k)
	}
	for _, h := range []string{"", "Bearer", "Bearer ", "Token " + acmeKey, acmeKey, "Bearer " + acmeKey + "x"} {
		if k := s.authenticate(h); k != nil {
			t.Errorf("%q authenticated", h)
		}
	}
	cfg.Keys = []APIKey{{Key: acmeKey, Tenant: "acme"}, {KeyFile: short, Tenant: "x"},
		{KeyFile: filepath.Join(dir, "missing"), Tenant: "y"}, {Key: acmeKey, Tenant: "z"}}
	_, err = New(cfg, &fakeSink{}, nil, nil)
	for _, want := range []string{"http.keys[1].key_file: " + short + ": must be at least 16",
		"http.keys[2].key_file: open ", "http.keys[3]: same key as http.keys[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestNewBindsAndClose(t *testing.T) {
	s, err := New(testConfig(), &fakeSink{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr %s is not the bound port", addr)
	}
	cfg := testConfig()
	cfg.Listen = addr
	if _, err := New(cfg, &fakeSink{}, nil, nil); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Errorf("second bind: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(testConfig(), nil, nil, nil); err == nil {
		t.Error("nil sink accepted")
	}
}

func do(t *testing.T, s *Server, method, ct, query, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.Addr()+Path+query, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const line = `{"event_id":"e1","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z","events":1}`

func TestMethodAndPath(t *testing.T) {
	s := startServer(t, testConfig(), &fakeSink{})
	if resp, _ := do(t, s, http.MethodGet, "", "", ""); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err := http.Post("http://"+s.Addr()+"/v2/usage", "application/x-ndjson", strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("other path: %d", resp.StatusCode)
	}
}

func TestDeviceBodies(t *testing.T) {
	cfg := testConfig()
	cfg.MaxLines = 1
	sink := &fakeSink{}
	s := startServer(t, cfg, sink)
	cases := []struct {
		name, ct, query, body string
		status                int
		reason                string
	}{
		{"no device", "application/json", "", `{"events":1}`, 400, "missing_identity"},
		{"device with a space", "application/json", "?device=a%20b", `{"events":1}`, 400, "bad_device"},
		{"device with newline", "application/json", "?device=a%0Ab", `{"events":1}`, 400, "bad_device"},
		{"parser error", "application/json", "?device=d", `{"events":1.5}`, 400, "bad_counter"},
		{"senml device mismatch", "application/senml+json", "?device=d", `[{"bn":"other:","n":"events","v":1}]`, 400, "device_mismatch"},
		{"too many records", "application/json", "?device=d", `[{"events":1},{"events":2}]`, 413, ""},
		{"one record", "application/json", "?device=d", `{"id":"x1","events":1}`, 202, ""},
	}
	for _, tc := range cases {
		resp, body := do(t, s, http.MethodPost, tc.ct, tc.query, tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
		if tc.status == 400 && (strings.Contains(body, `"line"`) || strings.Contains(body, `"index"`)) {
			t.Errorf("%s: a whole-body error names a line: %s", tc.name, body)
		}
	}
	recs, rejs := sink.got()
	if len(recs) != 1 || recs[0].EventID != "http:acme:d:x1" {
		t.Errorf("records %+v", recs)
	}
	if len(rejs) != 5 || rejs[3].Raw == nil || string(rejs[3].Raw) != `{"events":1.5}` || rejs[3].Device != "d" {
		t.Errorf("rejections %+v", rejs)
	}
}

func TestEmptyBodies(t *testing.T) {
	sink := &fakeSink{}
	s := startServer(t, testConfig(), sink)
	for _, tc := range []struct{ ct, body string }{
		{"application/x-ndjson", ""}, {"application/x-ndjson", "\n \r\n\n"},
		{"application/cloudevents-batch+json", "[]"},
	} {
		if resp, body := do(t, s, http.MethodPost, tc.ct, "", tc.body); resp.StatusCode != 202 || body != "{\"accepted\":0}\n" {
			t.Errorf("%q: %d %s", tc.body, resp.StatusCode, body)
		}
	}
	for _, body := range []string{"", "null", "{}", `{"specversion":"1.0"}`, "[1,"} {
		if resp, out := do(t, s, http.MethodPost, "application/cloudevents-batch+json", "", body); resp.StatusCode != 400 || !strings.Contains(out, "bad_json") {
			t.Errorf("batch %q: %d %s", body, resp.StatusCode, out)
		}
	}
	if sink.callCount() != 5 {
		t.Errorf("sink calls %d, want one rejection each for the bad batches", sink.callCount())
	}
}

// TestBusy: requests beyond max_concurrent get 503 at once instead of queueing.
func TestBusy(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConcurrent = 1
	hold := make(chan struct{})
	sink := &fakeSink{hold: hold}
	s := startServer(t, cfg, sink)
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+Path, strings.NewReader(line))
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	waitFor(t, func() bool { return sink.callCount() == 1 })
	resp, body := do(t, s, http.MethodPost, "application/x-ndjson", "", line)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || !strings.Contains(body, "too many requests") {
		t.Errorf("second request: %d %s", resp.StatusCode, body)
	}
	close(hold)
	if st := <-first; st != 202 {
		t.Errorf("first request: %d", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGracefulShutdown: cancelling Run stops accepting connections, while the request
// in flight still gets its 202 once the sink acknowledges.
func TestGracefulShutdown(t *testing.T) {
	hold := make(chan struct{})
	sink := &fakeSink{hold: hold}
	s, err := New(testConfig(), sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	waitFor(t, s.Healthy)
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+Path, strings.NewReader(line))
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	waitFor(t, func() bool { return sink.callCount() == 1 })
	cancel()
	waitFor(t, func() bool { return !s.Healthy() })
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-runErr:
		t.Fatalf("Run returned before the request in flight finished: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(hold)
	if st := <-status; st != 202 {
		t.Errorf("in-flight request: %d", st)
	}
	if err := <-runErr; err != nil {
		t.Error(err)
	}
	if recs, _ := sink.got(); len(recs) != 1 {
		t.Errorf("records %d", len(recs))
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := ingest.NewMetrics(reg)
	sink := &fakeSink{}
	cfg := testConfig()
	s, err := New(cfg, sink, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return testNow }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	do(t, s, http.MethodPost, "application/x-ndjson", "", string(must(os.ReadFile("testdata/jsonl/mixed.jsonl"))))
	// Runs of one reason, counted once a run: three bad lines, two of another tenant, one bad.
	other := `{"event_id":"b","tenant":"farmco","device":"d","start_time":"2026-11-25T11:00:00Z"}`
	do(t, s, http.MethodPost, "application/x-ndjson", "", "{\n[]\n{\n"+other+"\n"+other+"\nx\n")
	do(t, s, http.MethodPost, "text/plain", "", "x")
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+Path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range []struct {
		got  float64
		want float64
		name string
	}{
		{value(m.Received.WithLabelValues("http")), 4, "received"},
		{value(m.Accepted.WithLabelValues("http")), 2, "accepted"},
		{value(m.Rejected.WithLabelValues("http", "bad_json")), 2 + 4, "rejected bad_json"},
		{value(m.Rejected.WithLabelValues("http", "tenant_mismatch")), 1 + 2, "rejected tenant_mismatch"},
		{value(m.Rejected.WithLabelValues("http", "duplicate_id")), 1, "rejected duplicate_id"},
		{value(m.Rejected.WithLabelValues("http", "unauthorized")), 1, "unauthorized"},
		{value(m.Rejected.WithLabelValues("http", "unsupported_media_type")), 1, "unsupported_media_type"},
		{value(m.InFlight.WithLabelValues("http")), 0, "in flight"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestCurlTLS serves HTTPS with a throwaway certificate that curl verifies.
func TestCurlTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile)
	cfg := testConfig()
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	sink := &fakeSink{}
	s := startServer(t, cfg, sink)
	url := "https://" + s.Addr() + Path
	r := curl(t, "--cacert", certFile, "-H", "Authorization: Bearer "+acmeKey, "-H", "Content-Type: application/x-ndjson",
		"--data-binary", "@testdata/jsonl/valid.jsonl", url)
	if r.status != 202 || r.body != "{\"accepted\":4}\n" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	cfg.TLSKey = certFile
	if _, err := New(cfg, sink, nil, nil); err == nil || !strings.Contains(err.Error(), "http.tls_cert, http.tls_key") {
		t.Errorf("bad key pair: %v", err)
	}
}

func writeCert(t *testing.T, certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

var _ ingest.Collector = (*Server)(nil)

func TestBatchChecks(t *testing.T) {
	var b batch
	b.reset("acme", testNow.UnixMilli(), DefaultConfig().limits(), 100, nil)
	body := strings.Join([]string{
		`{"event_id":"fee:acme:d1:2026-11","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z"}`,
		`{"event_id":"` + strings.Repeat("x", 300) + `","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z"}`,
		`{"event_id":"e3","tenant":"acme","device":"` + strings.Repeat("d", 129) + `","start_time":"2026-11-25T11:00:00Z"}`,
		`{"event_id":"e4","tenant":"acme","device":"d1","start_time":"2026-11-25T12:10:00Z"}`,
		`{"event_id":"e5","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z","end_time":"2026-11-25T10:00:00Z"}`,
		`{"event_id":"e6","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z","plmn":"26201"}`,
		`{"event_id":"e7","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z","slice_sd":"00a1ff"}`,
		`{"event_id":"e8","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z","bytes_up":1125899906842625}`,
		`{"event_id":"e9","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z","lat":91,"lon":0}`,
		`{"event_id":"e10","tenant":"acme","device":"d1","start_time":"2026-11-25T11:00:00Z","cell":"a\u0001"}`,
		`{"event_id":"e11","tenant":"acme","device":"","start_time":"2026-11-25T11:00:00Z"}`,
		`[]`,
	}, "\n")
	b.jsonLines([]byte(body))
	want := []string{"bad_id", "bad_device", "future_time", "bad_interval", "bad_field", "bad_field",
		"absurd_counter", "bad_position", "bad_field", "missing_identity", "bad_json"}
	if len(b.recs) != 1 || b.recs[0].EventID != "http:acme:fee:acme:d1:2026-11" {
		t.Errorf("records %+v", b.recs)
	}
	if b.nerr != len(want) {
		t.Fatalf("errors %+v", b.errs)
	}
	for i, w := range want {
		if b.errs[i].Reason != w || b.errs[i].Line != i+2 {
			t.Errorf("error %d: %+v, want %s", i, b.errs[i], w)
		}
	}
}

func TestErrorListBounded(t *testing.T) {
	sink := &fakeSink{}
	s := startServer(t, testConfig(), sink)
	body := strings.Repeat("nope\n", 250)
	resp, out := do(t, s, http.MethodPost, "application/x-ndjson", "", body)
	if resp.StatusCode != 400 || strings.Count(out, `"reason"`) != maxListed || !strings.Contains(out, `"rejected":250`) {
		t.Errorf("%d %.200s", resp.StatusCode, out)
	}
	if _, rejs := sink.got(); len(rejs) != 250 {
		t.Errorf("%d rejections, want all 250", len(rejs))
	}
}

// TestRejectionsOnlyFailure: when the sink refuses the rejections the client is told to
// retry, so refused lines are never lost either.
func TestRejectionsOnlyFailure(t *testing.T) {
	sink := &fakeSink{err: errors.New("down")}
	s := startServer(t, testConfig(), sink)
	if resp, _ := do(t, s, http.MethodPost, "application/x-ndjson", "", "nope"); resp.StatusCode != 503 {
		t.Errorf("status %d", resp.StatusCode)
	}
}
