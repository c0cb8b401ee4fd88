package cdrdir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"fleetmeter/ingest"
	"fleetmeter/record"
)

const testdata = "../../cdr/testdata"

// fakeSink records what it is given. With hold set, acknowledgements wait for release;
// with fail set, every call fails.
type fakeSink struct {
	mu      sync.Mutex
	recs    []record.Usage
	rejs    []record.Rejection
	fail    error
	hold    bool
	pending []func()
	calls   int
}

func (s *fakeSink) Enqueue(recs []record.Usage, done func(error)) {
	s.mu.Lock()
	s.calls++
	if s.fail != nil {
		err := s.fail
		s.mu.Unlock()
		done(err)
		return
	}
	s.recs = append(s.recs, recs...)
	s.ack(done)
}

func (s *fakeSink) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	s.mu.Lock()
	s.calls++
	if s.fail != nil {
		err := s.fail
		s.mu.Unlock()
		done(err)
		return
	}
	for _, r := range rejs {
		r.Raw = slices.Clone(r.Raw)
		s.rejs = append(s.rejs, r)
	}
	s.ack(done)
}

// ack is called with s.mu held and releases it.
func (s *fakeSink) ack(done func(error)) {
	if s.hold {
		s.pending = append(s.pending, func() { done(nil) })
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	done(nil)
}

func (s *fakeSink) release() {
	s.mu.Lock()
	p := s.pending
	s.pending, s.hold = nil, false
	s.mu.Unlock()
	for _, f := range p {
		f()
	}
}

func (s *fakeSink) snapshot() ([]record.Usage, []record.Rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recs), slices.Clone(s.rejs)
}

// fixture is a collector on a temp drop directory driven by hand: poll calls with a fake
// clock instead of Run's timer.
type fixture struct {
	t       *testing.T
	dir     string
	sink    *fakeSink
	col     *Collector
	metrics *ingest.Metrics
	clock   time.Time
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(dir, "in")
	cfg.Decoder.Tenants.Default = "acme"
	if mod != nil {
		mod(&cfg)
	}
	f := &fixture{t: t, dir: cfg.Dir, sink: &fakeSink{}, metrics: ingest.NewMetrics(prometheus.NewRegistry()),
		clock: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	col, err := New(cfg, f.sink, f.metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	col.now = func() time.Time { return f.clock }
	if err := col.prepare(); err != nil {
		t.Fatal(err)
	}
	f.col = col
	return f
}

func (f *fixture) poll() { f.col.poll(context.Background(), context.Background()) }

func (f *fixture) advance(d time.Duration) { f.clock = f.clock.Add(d) }

// drop copies a test vector into the drop directory under name.
func (f *fixture) drop(vector, name string) []byte {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, vector))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, name), b, 0o644); err != nil {
		f.t.Fatal(err)
	}
	return b
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func counter(t *testing.T, v *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := v.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestSettle(t *testing.T) {
	f := newFixture(t, nil) // settle 2s
	f.drop("chf_small_10.cdr", "a.cdr")
	for _, n := range []string{".hidden.cdr", "b.cdr.tmp", "c.cdr.part"} {
		f.drop("chf_small_10.cdr", n)
	}
	f.poll()
	if f.sink.calls != 0 {
		t.Fatal("took a file at first sight")
	}
	f.advance(time.Second)
	// Still being written: the clock starts again.
	fh, _ := os.OpenFile(filepath.Join(f.dir, "a.cdr"), os.O_APPEND|os.O_WRONLY, 0)
	fh.Write([]byte{0})
	fh.Close()
	f.poll()
	f.advance(1500 * time.Millisecond)
	f.poll()
	if f.sink.calls != 0 {
		t.Fatal("took a file that changed 1.5s ago")
	}
	// Truncate it back to the good file; the settle clock restarts once more.
	f.drop("chf_small_10.cdr", "a.cdr")
	f.poll()
	f.advance(2 * time.Second)
	f.poll()
	if !exists(filepath.Join(f.dir, "done", "a.cdr")) || exists(filepath.Join(f.dir, "a.cdr")) {
		t.Fatal("settled file not moved to done/")
	}
	if recs, _ := f.sink.snapshot(); len(recs) != 28 {
		t.Fatalf("%d records, want 28", len(recs))
	}
	for _, n := range []string{".hidden.cdr", "b.cdr.tmp", "c.cdr.part"} {
		if !exists(filepath.Join(f.dir, n)) {
			t.Errorf("%s was taken", n)
		}
	}
}

func TestPattern(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Pattern = "*.cdr"; c.Settle = 0 })
	f.drop("chf_small_10.ber", "x.ber")
	f.drop("chf_small_10.cdr", "y.cdr")
	f.poll()
	if !exists(filepath.Join(f.dir, "x.ber")) || !exists(filepath.Join(f.dir, "done", "y.cdr")) {
		t.Error("pattern not applied")
	}
}

func TestMoveOnlyAfterAck(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0; c.ChunkRecords = 5 })
	f.drop("chf_small_10.cdr", "a.cdr")
	f.sink.hold = true
	done := make(chan struct{})
	go func() { f.poll(); close(done) }()
	// Every call is queued but none acknowledged: the file must stay.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.sink.mu.Lock()
		n := len(f.sink.pending)
		f.sink.mu.Unlock()
		if n == window {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls pending, want the window of %d", n, window)
		}
		time.Sleep(time.Millisecond)
	}
	if !exists(filepath.Join(f.dir, "a.cdr")) || exists(filepath.Join(f.dir, "done", "a.cdr")) {
		t.Fatal("file moved before its records were acknowledged")
	}
	// Release acknowledgements one at a time until the collector is through.
	for {
		select {
		case <-done:
			if !exists(filepath.Join(f.dir, "done", "a.cdr")) {
				t.Fatal("not moved after acknowledgement")
			}
			if recs, _ := f.sink.snapshot(); len(recs) != 28 {
				t.Fatalf("%d records", len(recs))
			}
			return
		default:
		}
		f.sink.mu.Lock()
		var next func()
		if len(f.sink.pending) > 0 {
			next, f.sink.pending = f.sink.pending[0], f.sink.pending[1:]
		}
		f.sink.mu.Unlock()
		if next != nil {
			if !exists(filepath.Join(f.dir, "a.cdr")) {
				t.Fatal("file moved while acknowledgements were outstanding")
			}
			next()
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDamaged(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	b := f.drop("chf_damaged_truncated.cdr", "t.cdr")
	f.poll()
	recs, rejs := f.sink.snapshot()
	if len(recs) != 18 {
		t.Errorf("%d records, want the 18 of CDRs 1-6", len(recs))
	}
	if len(rejs) != 1 {
		t.Fatalf("%d rejections, want 1", len(rejs))
	}
	r := rejs[0]
	path := filepath.Join(f.dir, "t.cdr")
	if r.Source != "cdr" || r.Reason != "cdr_damaged" || !strings.Contains(r.Detail, path) ||
		!strings.Contains(r.Detail, "offset 3825") || !slices.Equal(r.Raw, b[3825:]) || r.RawLen != int64(len(b)-3825) ||
		r.RawSHA256 != sha(b[3825:]) {
		t.Errorf("rejection %+v", r)
	}
	moved := filepath.Join(f.dir, "failed", "t.cdr", "t.cdr")
	if !exists(moved) || exists(path) || exists(filepath.Join(f.dir, "done", "t.cdr")) {
		t.Fatal("damaged file not in failed/t.cdr/")
	}
	q := readReason(t, filepath.Join(f.dir, "failed", "t.cdr"))
	if q.Reason != "cdr_damaged" || q.Offset == nil || *q.Offset != 3825 || q.Record == nil || *q.Record != 7 ||
		q.RecordsProduced != 18 || q.Rejections != 1 || q.File != "t.cdr" || q.Size != int64(len(b)) ||
		q.SHA256 != sha(b) || !strings.Contains(q.Detail, "offset 3825") {
		t.Errorf("reason.json %+v", q)
	}
	if got := counter(t, f.metrics.Rejected, "cdr", "cdr_damaged"); got != 1 {
		t.Errorf("rejected metric %v", got)
	}
	if got := counter(t, f.metrics.Accepted, "cdr"); got != 18 {
		t.Errorf("accepted metric %v", got)
	}

	// The raw-BER damage too, capped raw.
	f.drop("chf_damaged_garbage.ber", "g.ber")
	f.poll()
	_, rejs = f.sink.snapshot()
	if len(rejs) != 2 || !strings.Contains(rejs[1].Detail, "offset 3021") || len(rejs[1].Raw) != 6190-3021 {
		t.Errorf("garbage rejection %+v", rejs[1:])
	}
}

func TestSinkErrorRetried(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0; c.Poll = 50 * time.Millisecond })
	f.drop("chf_small_10.cdr", "a.cdr")
	f.sink.fail = errors.New("kafka down")
	d := f.col.poll(context.Background(), context.Background())
	if !exists(filepath.Join(f.dir, "a.cdr")) || f.col.Healthy() || d != 50*time.Millisecond {
		t.Fatalf("after a sink error: file kept %v, healthy %v, retry in %s", exists(filepath.Join(f.dir, "a.cdr")), f.col.Healthy(), d)
	}
	if d := f.col.poll(context.Background(), context.Background()); d != 100*time.Millisecond {
		t.Errorf("backoff %s, want 100ms", d)
	}
	f.sink.mu.Lock()
	f.sink.fail = nil
	f.sink.mu.Unlock()
	f.poll()
	if !exists(filepath.Join(f.dir, "done", "a.cdr")) || !f.col.Healthy() {
		t.Fatal("not retried after the sink recovered")
	}
	if recs, _ := f.sink.snapshot(); len(recs) != 28 {
		t.Errorf("%d records", len(recs))
	}
}

func TestNameCollision(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	first := f.drop("chf_small_10.cdr", "a.cdr")
	f.poll()
	second := f.drop("chf_free5gc_native_3.cdr", "a.cdr")
	f.poll()
	third := f.drop("chf_small_10.ber", "a.cdr")
	f.poll()
	for name, want := range map[string][]byte{"a.cdr": first, "a.1.cdr": second, "a.2.cdr": third} {
		got, err := os.ReadFile(filepath.Join(f.dir, "done", name))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("done/%s: %v", name, err)
		}
	}
	if recs, _ := f.sink.snapshot(); len(recs) != 28+8+28 {
		t.Errorf("%d records", len(recs))
	}
}

func TestUnknownTenant(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Settle = 0
		c.Decoder.Tenants.Default = ""
		sst := uint8(2)
		c.Decoder.Tenants.Rules = append(c.Decoder.Tenants.Rules, cdrRule("fast", &sst))
	})
	f.drop("chf_small_10.cdr", "a.cdr")
	f.poll()
	recs, rejs := f.sink.snapshot()
	// SST 2: records 3, 6, 9 (4+5+4 containers) map; the other 15 have no tenant.
	if len(recs) != 13 || len(rejs) != 15 {
		t.Fatalf("%d records, %d rejections", len(recs), len(rejs))
	}
	for _, r := range rejs {
		if r.Reason != "unknown_tenant" || r.Device == "" || !strings.Contains(r.Detail, "no tenant rule") {
			t.Fatalf("rejection %+v", r)
		}
		u, err := record.ParseJSON(r.Raw)
		if err != nil || u.EventID == "" || u.Device != r.Device {
			t.Fatalf("raw %s: %v", r.Raw, err)
		}
	}
	if !exists(filepath.Join(f.dir, "done", "a.cdr")) {
		t.Error("file with unmapped records is not damaged: it belongs in done/")
	}
	if got := counter(t, f.metrics.Rejected, "cdr", "unknown_tenant"); got != 15 {
		t.Errorf("metric %v", got)
	}
}

func TestTooLarge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0; c.MaxFileBytes = 1000 })
	b := f.drop("chf_small_10.cdr", "big.cdr")
	f.poll()
	recs, rejs := f.sink.snapshot()
	if len(recs) != 0 || len(rejs) != 1 || rejs[0].Reason != "cdr_too_large" || !slices.Equal(rejs[0].Raw, b) ||
		rejs[0].RawLen != int64(len(b)) || rejs[0].RawSHA256 != sha(b) {
		t.Fatalf("%d records, rejections %+v", len(recs), rejs)
	}
	if !exists(filepath.Join(f.dir, "failed", "big.cdr", "big.cdr")) {
		t.Fatal("not in failed/big.cdr/")
	}
	q := readReason(t, filepath.Join(f.dir, "failed", "big.cdr"))
	if q.Reason != "cdr_too_large" || q.Offset != nil || q.Size != int64(len(b)) || q.SHA256 != sha(b) {
		t.Errorf("reason.json %+v", q)
	}
}

// Records sent twice (a restart before the move) are identical, so downstream collapses
// them: event_id comes from the CDR, received_time from the file's mtime.
func TestResendIdentical(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	f.drop("chf_damaged_truncated.cdr", "a.cdr")
	p := f.col.proc
	path := filepath.Join(f.dir, "a.cdr")
	if _, err := p.Send(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := p.Send(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	recs, rejs := f.sink.snapshot()
	if len(recs) != 36 || !slices.Equal(recs[:18], recs[18:]) {
		t.Error("second send differs from the first")
	}
	if len(rejs) != 2 || rejs[0].Detail != rejs[1].Detail || rejs[0].Received != rejs[1].Received || !slices.Equal(rejs[0].Raw, rejs[1].Raw) {
		t.Error("rejections differ")
	}
	st, _ := os.Stat(path)
	if recs[0].ReceivedTime != st.ModTime().UnixMilli() {
		t.Errorf("received_time %d, mtime %d", recs[0].ReceivedTime, st.ModTime().UnixMilli())
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Settle, cfg.Poll = dir, 20*time.Millisecond, 5*time.Millisecond
	cfg.Decoder.Tenants.Default = "acme"
	sink := &fakeSink{}
	col, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- col.Run(ctx) }()
	b, _ := os.ReadFile(filepath.Join(testdata, "chf_small_10.cdr"))
	os.WriteFile(filepath.Join(dir, ".a.cdr.part"), b, 0o644)
	os.Rename(filepath.Join(dir, ".a.cdr.part"), filepath.Join(dir, "a.cdr"))
	deadline := time.Now().Add(5 * time.Second)
	for !exists(filepath.Join(dir, "done", "a.cdr")) {
		if time.Now().After(deadline) {
			t.Fatal("file not processed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !col.Healthy() {
		t.Error("not healthy")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if col.Healthy() {
		t.Error("healthy after stop")
	}
}
