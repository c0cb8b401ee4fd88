package httpin

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fleetmeter/ingest"
	"fleetmeter/record"
)

// testNow is the server clock in tests, so received_time and the stale/future checks
// are fixed.
var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const (
	acmeKey = "acme-key-0123456789abcdef"
	farmKey = "farm-key-0123456789abcdef"
)

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

// fakeSink records what it acknowledges. err makes every call fail (nothing kept);
// hold, when set, delays acknowledgements until it is closed.
type fakeSink struct {
	mu    sync.Mutex
	recs  []record.Usage
	rejs  []record.Rejection
	calls int
	err   error
	hold  chan struct{}
}

func (f *fakeSink) Enqueue(recs []record.Usage, done func(error)) {
	cp := slices.Clone(recs)
	f.ack(func() { f.recs = append(f.recs, cp...) }, done)
}

func (f *fakeSink) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	cp := slices.Clone(rejs)
	f.ack(func() { f.rejs = append(f.rejs, cp...) }, done)
}

func (f *fakeSink) ack(keep func(), done func(error)) {
	f.mu.Lock()
	f.calls++
	hold, err := f.hold, f.err
	f.mu.Unlock()
	go func() {
		if hold != nil {
			<-hold
		}
		if err == nil {
			f.mu.Lock()
			keep()
			f.mu.Unlock()
		}
		done(err)
	}()
}

func (f *fakeSink) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeSink) got() ([]record.Usage, []record.Rejection) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.recs), slices.Clone(f.rejs)
}

func testConfig() Config {
	c := DefaultConfig()
	c.Enabled = true
	c.Listen = "127.0.0.1:0"
	c.Keys = []APIKey{{Key: acmeKey, Tenant: "acme"}, {Key: farmKey, Tenant: "farmco"}}
	c.ShutdownTimeout = 5 * time.Second
	return c
}

// startServer runs a server on a free loopback port until the test ends.
func startServer(t testing.TB, cfg Config, sink ingest.Sink) *Server {
	t.Helper()
	s, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return testNow }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

type curlResult struct {
	status int
	header map[string]string // last response's headers, lower-case names
	body   string
}

// curl runs the real curl binary against the server and returns the final response.
func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	dir := t.TempDir()
	bodyPath, hdrPath := filepath.Join(dir, "body"), filepath.Join(dir, "headers")
	args = append([]string{"-sS", "--max-time", "20", "-o", bodyPath, "-D", hdrPath, "-w", "%{http_code}"}, args...)
	out, err := exec.Command("curl", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("curl %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("curl: %v", err)
	}
	var r curlResult
	if r.status, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
		t.Fatalf("curl status %q", out)
	}
	body, _ := os.ReadFile(bodyPath)
	r.body = string(body)
	hdrs, _ := os.ReadFile(hdrPath)
	r.header = map[string]string{}
	for _, line := range strings.Split(string(hdrs), "\r\n") {
		if strings.HasPrefix(line, "HTTP/") {
			clear(r.header) // a 100 Continue came first
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			r.header[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	return r
}

// post sends a file with curl to Path+query: key "" sends no Authorization.
func post(t *testing.T, s *Server, key, contentType, file, query string, extra ...string) curlResult {
	t.Helper()
	args := []string{"-X", "POST", "--data-binary", "@" + file}
	if contentType != "" {
		args = append(args, "-H", "Content-Type: "+contentType)
	}
	if key != "" {
		args = append(args, "-H", "Authorization: Bearer "+key)
	}
	args = append(args, extra...)
	return curl(t, append(args, "http://"+s.Addr()+Path+query)...)
}
