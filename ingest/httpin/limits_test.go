package httpin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dribble is a request body that sends a blank line (skipped by JSON Lines) every few
// milliseconds until finish, then one valid record: a slow upload.
type dribble struct {
	pr     *io.PipeReader
	pw     *io.PipeWriter
	finish chan struct{}
}

func newDribble(line string) *dribble {
	d := &dribble{finish: make(chan struct{})}
	d.pr, d.pw = io.Pipe()
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-d.finish:
				d.pw.Write([]byte(line + "\n"))
				d.pw.Close()
				return
			case <-t.C:
				if _, err := d.pw.Write([]byte("\n")); err != nil {
					return // the transport closed the body: the request was answered
				}
			}
		}
	}()
	return d
}

// postStream posts body (chunked: no Content-Length) as key and returns the answer.
func postStream(ctx context.Context, s *Server, key string, body io.Reader) (int, http.Header, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.Addr()+Path, body)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), nil
}

// TestTenantFairness: one tenant holds max_concurrent slow uploads open; with the default
// limits it gets tenant_max_concurrent of them served and 429 for the rest at once, and
// another tenant's requests are still served (202) while those uploads are open. Without
// per-tenant limits the uploads took every slot and the other tenant got 503.
func TestTenantFairness(t *testing.T) {
	cfg := testConfig() // default max_concurrent, tenant_max_concurrent
	sink := &fakeSink{}
	s := startServer(t, cfg, sink)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a generous bound, not a measurement
	defer cancel()

	type answer struct {
		status int
		header http.Header
		err    error
	}
	n := cfg.MaxConcurrent
	answers := make(chan answer, n)
	var uploads []*dribble
	for i := range n {
		d := newDribble(strings.Replace(line, `"e1"`, `"slow-`+strconv.Itoa(i)+`"`, 1))
		uploads = append(uploads, d)
		go func() {
			st, h, _, err := postStream(ctx, s, acmeKey, d.pr)
			answers <- answer{st, h, err}
		}()
	}
	finish := func() {
		for _, d := range uploads {
			select {
			case <-d.finish:
			default:
				close(d.finish)
			}
		}
	}
	defer finish()

	// Wait until every upload is either being served or refused.
	var early []answer
	waitFor(t, func() bool {
		for {
			select {
			case a := <-answers:
				early = append(early, a)
				continue
			default:
			}
			return len(s.sem)+len(early) == n
		}
	})
	served := len(s.sem)
	for _, a := range early {
		if a.err != nil || a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "5" {
			t.Errorf("refused upload: %d %v %v", a.status, a.header, a.err)
		}
	}
	if served != cfg.TenantMaxConcurrent {
		t.Errorf("%d uploads of one tenant served at once, want tenant_max_concurrent %d", served, cfg.TenantMaxConcurrent)
	}

	// The other tenant, while those uploads stay open.
	for i := range 5 {
		body := `{"event_id":"quick-` + strconv.Itoa(i) + `","tenant":"farmco","device":"f1","start_time":"2026-11-25T11:00:00Z","events":1}`
		st, _, out, err := postStream(ctx, s, farmKey, strings.NewReader(body))
		if err != nil || st != http.StatusAccepted {
			t.Fatalf("other tenant's request %d: %d %s %v", i, st, out, err)
		}
	}
	if len(s.sem) != served {
		t.Fatalf("the slow uploads finished early (%d in flight): the test proves nothing", len(s.sem))
	}

	// The served uploads complete once they finish sending.
	finish()
	for range n - len(early) {
		if a := <-answers; a.err != nil || a.status != http.StatusAccepted {
			t.Errorf("slow upload: %d %v", a.status, a.err)
		}
	}
	recs, _ := sink.got()
	if len(recs) != 5+served {
		t.Errorf("%d records, want %d", len(recs), 5+served)
	}
}

// TestTenantRate: a tenant past its burst gets 429 with the Retry-After that frees a
// token; another tenant does not notice.
func TestTenantRate(t *testing.T) {
	cfg := testConfig()
	cfg.TenantRate = 0.01 // one request per 100 s: no token comes back during the test
	cfg.TenantBurst = 2
	s := startServer(t, cfg, &fakeSink{})
	for i, want := range []int{202, 202, 429} {
		resp, body := do(t, s, http.MethodPost, "application/x-ndjson", "", line)
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		if want == 429 {
			ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			if ra < 90 || ra > 100 || !strings.Contains(body, "http.tenant_rate") {
				t.Errorf("429: Retry-After %q, %s", resp.Header.Get("Retry-After"), body)
			}
		}
	}
	st, _, body, err := postStream(t.Context(), s, farmKey, strings.NewReader(strings.Replace(line, `"acme"`, `"farmco"`, 1)))
	if err != nil || st != 202 {
		t.Errorf("other tenant: %d %s %v", st, body, err)
	}
}

func TestTenantGateBucket(t *testing.T) {
	var g tenantGate
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if d := g.take(t0, 2, 3); d != 0 {
			t.Fatalf("token %d of the burst refused (%s)", i, d)
		}
	}
	if d := g.take(t0, 2, 3); d != 500*time.Millisecond {
		t.Fatalf("empty bucket: wait %s, want 500ms at 2/s", d)
	}
	if d := g.take(t0.Add(500*time.Millisecond), 2, 3); d != 0 {
		t.Fatalf("refilled token refused (%s)", d)
	}
	// A long pause refills to the burst, not beyond.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if d := g.take(later, 2, 3); d != 0 {
			t.Fatalf("token %d after a pause refused", i)
		}
	}
	if d := g.take(later, 2, 3); d == 0 {
		t.Fatal("bucket holds more than its burst")
	}
	if d := g.take(later, 0, 0); d != 0 {
		t.Fatal("rate 0 limits")
	}
}

// TestDeclaredLengthNotAllocated: a request declaring a 1 GiB body (within max_body) but
// sending a few bytes costs what arrives, not what was declared.
func TestDeclaredLengthNotAllocated(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBody = 1 << 30
	s, err := New(cfg, &fakeSink{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 1)
	inner := s.srv.Handler
	s.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		handled <- struct{}{}
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	const declared = 1 << 30
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+Path,
			io.MultiReader(strings.NewReader(line+"\n"), errReader{}))
		req.ContentLength = declared
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		req.Header.Set("Content-Type", "application/x-ndjson")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close() // the client gave up sending: the server saw the body cut short
		}
		<-handled
	}
	send() // warm up pools and connections
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	send()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 32<<20 {
		t.Errorf("a request declaring %d bytes and sending %d allocated %d bytes", declared, len(line)+1, got)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client gives up") }

// TestEarlyAnswerReachesSlowUploader: a refusal before the body is read reaches a client
// still sending (net/http would otherwise drain its body first), and nothing is served.
func TestEarlyAnswerReachesSlowUploader(t *testing.T) {
	cfg := testConfig()
	cfg.TenantMaxConcurrent = 1
	s := startServer(t, cfg, &fakeSink{})
	first := newDribble(line)
	defer close(first.finish)
	go postStream(t.Context(), s, acmeKey, first.pr)
	waitFor(t, func() bool { return len(s.sem) == 1 })
	second := newDribble(line)
	defer close(second.finish)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, h, body, err := postStream(ctx, s, acmeKey, second.pr)
	if err != nil || st != http.StatusTooManyRequests || !strings.Contains(body, "http.tenant_max_concurrent (1)") {
		t.Fatalf("%d %v %s %v", st, h, body, err)
	}
}
