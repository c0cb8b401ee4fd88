package rater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
)

// fakeLog is a transactional log with consumer offsets: what a Kafka cluster gives the
// rater, kept in memory. Each partition of the input is a list of messages; outputs are
// lists of committed records per topic and partition.
type fakeLog struct {
	mu        sync.Mutex
	input     map[int32][]Message
	committed map[int32]int64 // next offset to consume per input partition
	out       map[string]map[int32][]kv
	// failProduce makes every transaction that produced to this topic fail.
	failProduce string
	// loseEvery aborts every n-th End as a rebalance would (0: never).
	loseEvery, ends int
	fenced          bool
}

type kv struct{ k, v []byte }

func newFakeLog() *fakeLog {
	return &fakeLog{input: map[int32][]Message{}, committed: map[int32]int64{}, out: map[string]map[int32][]kv{}}
}

func (l *fakeLog) outputs(topic string, p int32) []kv {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]kv(nil), l.out[topic][p]...)
}

// fakeStream is one session on the fakeLog.
type fakeStream struct {
	l       *fakeLog
	pos     map[int32]int64
	pending map[string]map[int32][]kv
	bad     bool
	closed  bool
}

func (l *fakeLog) open(context.Context) (Stream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fenced {
		return nil, errors.New("fenced")
	}
	s := &fakeStream{l: l, pos: map[int32]int64{}}
	for p, o := range l.committed {
		s.pos[p] = o
	}
	return s, nil
}

func (s *fakeStream) Poll(ctx context.Context, into []Message) ([]Message, error) {
	s.l.mu.Lock()
	parts := make([]int32, 0, len(s.l.input))
	for p := range s.l.input {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		msgs := s.l.input[p]
		for n := 0; s.pos[p] < int64(len(msgs)) && n < 3; n++ {
			into = append(into, msgs[s.pos[p]])
			s.pos[p]++
		}
	}
	s.l.mu.Unlock()
	if len(into) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	return into, nil
}

func (s *fakeStream) Begin() error {
	s.pending, s.bad = map[string]map[int32][]kv{}, false
	return nil
}

func (s *fakeStream) Produce(topic string, part int32, key, value []byte, _ string) {
	s.l.mu.Lock()
	if s.l.failProduce == topic {
		s.bad = true
	}
	s.l.mu.Unlock()
	if s.pending[topic] == nil {
		s.pending[topic] = map[int32][]kv{}
	}
	s.pending[topic][part] = append(s.pending[topic][part], kv{append([]byte(nil), key...), append([]byte(nil), value...)})
}

func (s *fakeStream) End(_ context.Context, commit bool) (bool, error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if s.l.fenced {
		return false, errors.New("producer fenced")
	}
	s.l.ends++
	if s.bad || !commit || (s.l.loseEvery > 0 && s.l.ends%s.l.loseEvery == 0) {
		var err error
		if s.bad && commit {
			err = fmt.Errorf("%w: MESSAGE_TOO_LARGE", ErrRefused)
		}
		for p, o := range s.l.committed { // rewind
			s.pos[p] = o
		}
		for p := range s.pos {
			if _, ok := s.l.committed[p]; !ok {
				s.pos[p] = 0
			}
		}
		return false, err
	}
	for t, m := range s.pending {
		if s.l.out[t] == nil {
			s.l.out[t] = map[int32][]kv{}
		}
		for p, kvs := range m {
			s.l.out[t][p] = append(s.l.out[t][p], kvs...)
		}
	}
	for p, o := range s.pos {
		s.l.committed[p] = o
	}
	return true, nil
}

func (s *fakeStream) Close() { s.closed = true }

// fakeStore replays the committed state topic of the fakeLog.
type fakeStore struct{ l *fakeLog }

func (f fakeStore) Replay(_ context.Context, p int32, fn func(k, v []byte) error) (int, error) {
	kvs := f.l.outputs("state", p)
	for _, e := range kvs {
		if err := fn(e.k, e.v); err != nil {
			return 0, err
		}
	}
	return len(kvs), nil
}

var topics = Topics{Rated: "rated", State: "state", Counts: "counts", Rejected: "rejected"}

func testSet(t testing.TB) *rules.Set {
	s, err := rules.Load("../deploy/tariffs")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// genUsage makes n records of devs devices of tenant agrico over 3 cells, in per-device
// time order, encoded into messages of 50 records routed to parts partitions.
func genUsage(seed uint64, devs, n int, parts int32) (map[int32][]Message, []record.Usage) {
	rng := rand.New(rand.NewPCG(seed, seed))
	base := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC).UnixMilli()
	clock := make([]int64, devs)
	all := make([]record.Usage, n)
	for i := range all {
		d := rng.IntN(devs)
		clock[d] += rng.Int64N(3 * 3600 * 1000)
		ts := base + clock[d]
		all[i] = record.Usage{EventID: fmt.Sprintf("e%d", i), Tenant: "agrico", Device: fmt.Sprintf("d%d", d), Source: "mqtt",
			StartTime: ts, EndTime: ts, BytesUp: rng.Uint64N(2_000_000), Events: 1,
			Cell: fmt.Sprintf("26201000%d", rng.IntN(3)), PLMN: "262-01"}
	}
	byPart := map[int32][]record.Usage{}
	for _, u := range all {
		p := int32(len(u.Device)+int(u.Device[len(u.Device)-1])) % parts
		byPart[p] = append(byPart[p], u)
	}
	msgs := map[int32][]Message{}
	enc := record.NewUsageEncoder()
	for p, us := range byPart {
		for i := 0; i < len(us); i += 50 {
			b, err := enc.Encode(nil, us[i:min(i+50, len(us))])
			if err != nil {
				panic(err)
			}
			msgs[p] = append(msgs[p], Message{Partition: p, Offset: int64(len(msgs[p])), Value: b})
		}
	}
	// Offline order = per partition order (a device's records keep their order).
	var ordered []record.Usage
	for p := int32(0); p < parts; p++ {
		ordered = append(ordered, byPart[p]...)
	}
	return msgs, ordered
}

func newTestRater(t testing.TB, l *fakeLog, maxBytes int) *Rater {
	c := NewFleetCounter()
	e := rating.NewEngine(testSet(t), rating.Options{Counter: c, Now: func() int64 { return 1 }})
	r, err := New(Config{Topics: topics, MaxMessageBytes: maxBytes}, l.open, fakeStore{l}, e, c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runUntil runs r until every input message is committed or the deadline passes.
func runUntil(t *testing.T, r *Rater, l *fakeLog, total int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	for ctx.Err() == nil {
		l.mu.Lock()
		n := 0
		for _, o := range l.committed {
			n += int(o)
		}
		l.mu.Unlock()
		if n == total {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("timed out")
	}
}

// committedRated decodes the usage charges of the rated topic by record id.
func committedRated(t *testing.T, l *fakeLog, parts int32) map[string]record.Rated {
	got := map[string]record.Rated{}
	for p := int32(0); p < parts; p++ {
		for _, e := range l.outputs("rated", p) {
			rs, err := record.DecodeRated(e.v, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if _, dup := got[r.RecordID]; dup {
					t.Fatalf("record %s committed twice", r.RecordID)
				}
				got[r.RecordID] = r
			}
		}
	}
	return got
}

// offline rates the records in order with one State: what the stream must equal.
func offline(t *testing.T, us []record.Usage) map[string]record.Rated {
	e := rating.NewEngine(testSet(t), rating.Options{Now: func() int64 { return 1 }})
	st := rating.NewState()
	out := e.RateBatch(st, us, nil, nil)
	m := map[string]record.Rated{}
	for _, r := range out {
		m[r.RecordID] = r
	}
	return m
}

func compare(t *testing.T, got, want map[string]record.Rated) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rated records committed, offline rating gives %d", len(got), len(want))
	}
	for id, w := range want {
		g := got[id]
		if w.Charge == record.ChargeDeviceFee { // the tier depends on counts seen: compare identity only
			if g.RecordID != id {
				t.Fatalf("fee %s missing", id)
			}
			continue
		}
		if g.Amount != w.Amount || g.Mobility != w.Mobility || g.Zone != w.Zone {
			t.Fatalf("record %s: got %s %s %s, offline %s %s %s", id, g.Amount, g.Zone, g.Mobility, w.Amount, w.Zone, w.Mobility)
		}
	}
}

// Aborts (every 3rd transaction, as rebalances or failed produces do) leave the committed
// output equal to offline rating, each record once: the state is replayed from the
// changelog after every abort.
func TestAbortsReplayState(t *testing.T) {
	const parts = 3
	l := newFakeLog()
	msgs, ordered := genUsage(1, 40, 3000, parts)
	l.input = msgs
	l.loseEvery = 3
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	r := newTestRater(t, l, 0)
	runUntil(t, r, l, total)
	compare(t, committedRated(t, l, parts), offline(t, ordered))
}

// A rater killed between batches and a new one (a restart, or the partition's next
// owner) continue from the committed offsets with the state replayed: same output.
func TestRestartResumesFromChangelog(t *testing.T) {
	const parts = 2
	l := newFakeLog()
	msgs, ordered := genUsage(2, 30, 2000, parts)
	l.input = msgs
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	for i := 0; ; i++ {
		r := newTestRater(t, l, 0)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = r.Run(ctx); close(done) }()
		time.Sleep(time.Duration(5+i%7) * time.Millisecond)
		cancel()
		<-done
		l.mu.Lock()
		n := 0
		for _, o := range l.committed {
			n += int(o)
		}
		l.mu.Unlock()
		if n == total {
			break
		}
		if i > 2000 {
			t.Fatal("no progress")
		}
	}
	compare(t, committedRated(t, l, parts), offline(t, ordered))
}

// Transactions that keep aborting (not a refusal of the output, which is quarantined:
// say the group keeps rebalancing) make the rater not ready, saying why, instead of
// looping silently; it is ready again once transactions commit.
func TestStuckRaterIsNotReady(t *testing.T) {
	l := newFakeLog()
	msgs, _ := genUsage(3, 5, 100, 1)
	l.input = msgs
	l.loseEvery = 1
	r := newTestRater(t, l, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := r.Ready(); err != nil && strings.Contains(err.Error(), "failed to commit") {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := r.Ready()
	if err == nil || !strings.Contains(err.Error(), "failed to commit") {
		t.Fatalf("Ready() = %v while every batch aborts", err)
	}
	l.mu.Lock()
	l.loseEvery = 0
	l.mu.Unlock()
	for r.Ready() != nil && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("still not ready after the broker accepts again: %v", err)
	}
	cancel()
	<-done
}

// A fenced session (a newer instance with the same transactional id) ends the session;
// nothing of the fenced batch is committed.
func TestFencedSessionCommitsNothing(t *testing.T) {
	l := newFakeLog()
	msgs, _ := genUsage(4, 5, 200, 1)
	l.input = msgs
	l.fenced = true
	r := newTestRater(t, l, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = r.Run(ctx)
	if len(l.outputs("rated", 0)) != 0 || len(l.committed) != 0 {
		t.Fatal("a fenced rater committed output")
	}
	if r.Ready() == nil {
		t.Fatal("a fenced rater reports ready")
	}
}

// Every message produced is bounded by its encoded size: with a 20 KB bound, rated
// messages are split until each fits, and the totals still equal offline rating.
func TestRatedMessagesBoundedByEncodedSize(t *testing.T) {
	const parts, bound = 1, 20_000
	l := newFakeLog()
	msgs, ordered := genUsage(5, 200, 1200, parts)
	// One message of 1200 records: far over the bound once rated.
	var all []record.Usage
	for _, m := range msgs[0] {
		all, _ = record.DecodeUsage(m.Value, all)
	}
	b, err := record.NewUsageEncoder().Encode(nil, all)
	if err != nil {
		t.Fatal(err)
	}
	l.input = map[int32][]Message{0: {{Partition: 0, Value: b}}}
	r := newTestRater(t, l, bound)
	runUntil(t, r, l, 1)
	for _, e := range l.outputs("rated", 0) {
		if len(e.v) > bound {
			t.Fatalf("a rated message of %d bytes, bound %d", len(e.v), bound)
		}
	}
	if n := len(l.outputs("rated", 0)); n < 2 {
		t.Fatalf("%d rated messages: not split", n)
	}
	compare(t, committedRated(t, l, parts), offline(t, ordered))
}

// The fleet count sums owned live states and the other partitions' committed counts.
func TestFleetCounterSumsOwnedAndRemote(t *testing.T) {
	c := NewFleetCounter()
	e := rating.NewEngine(testSet(t), rating.Options{Counter: c})
	st := rating.NewState()
	c.Own(1, st)
	c.SetEncoded(2, CountKey("agrico", "2026-11"), CountValue(7))
	c.SetEncoded(1, CountKey("agrico", "2026-11"), CountValue(100)) // stale: partition 1 is owned
	ts := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range 3 {
		u := record.Usage{EventID: fmt.Sprint(i), Tenant: "agrico", Device: fmt.Sprint("d", i), Source: "mqtt", StartTime: ts, EndTime: ts, Events: 1}
		if _, err := e.Rate(st, &u, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Count("agrico", "2026-11"); n != 10 {
		t.Fatalf("count = %d, want 7 remote + 3 owned", n)
	}
	c.Own(1, nil)
	if n := c.Count("agrico", "2026-11"); n != 107 {
		t.Fatalf("count after giving partition 1 up = %d, want its committed 100 + 7", n)
	}
}

// A batch whose output Kafka refuses for good is quarantined after StuckAfter refusals:
// each of its records lands on topic rejected once, whole, with reason quarantined, the
// offsets move on and nothing is rated from it; the rater reported not ready meanwhile
// and is ready again after. Batches that can be written are rated as before.
func TestQuarantineRefusedBatch(t *testing.T) {
	l := newFakeLog()
	msgs, ordered := genUsage(6, 10, 300, 1)
	l.input = msgs
	l.failProduce = "rated" // the broker refuses every rated message
	var logs syncBuffer
	c := NewFleetCounter()
	e := rating.NewEngine(testSet(t), rating.Options{Counter: c, Now: func() int64 { return 1 }})
	r, err := New(Config{Topics: topics}, l.open, fakeStore{l}, e, c, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	for ctx.Err() == nil {
		l.mu.Lock()
		n := l.committed[0]
		l.mu.Unlock()
		if n == int64(len(msgs[0])) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if out := logs.String(); !strings.Contains(out, "rater stuck") || !strings.Contains(out, "rater quarantined a batch") {
		t.Errorf("the rater did not say it was stuck and what it quarantined:\n%s", out)
	}
	if got := l.outputs("rated", 0); len(got) != 0 {
		t.Fatalf("%d rated messages committed although every one was refused", len(got))
	}
	seen := map[string]int{}
	for _, e := range l.outputs("rejected", 0) {
		rj, err := record.ParseRejection(e.v)
		if err != nil {
			t.Fatal(err)
		}
		if rj.Reason != record.ReasonQuarantined {
			t.Fatalf("rejection reason %q, want %q", rj.Reason, record.ReasonQuarantined)
		}
		u, err := record.ParseJSON(rj.Raw)
		if err != nil {
			t.Fatalf("quarantined raw is not the whole record: %v", err)
		}
		seen[u.EventID]++
	}
	for _, u := range ordered {
		if seen[u.EventID] != 1 {
			t.Fatalf("record %s quarantined %d times, want once", u.EventID, seen[u.EventID])
		}
	}
	if len(seen) != len(ordered) {
		t.Fatalf("%d records quarantined, input has %d", len(seen), len(ordered))
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
