package loader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"fleetmeter/record"
)

// fakeSource is a log of messages with a committed offset, as a consumer group gives.
type fakeSource struct {
	mu        sync.Mutex
	log       []Message
	committed int // next message to deliver after a restart
	pos       int
	commitErr error // Commit fails with it while set
	perPoll   int   // messages a poll delivers at most (default 3)
	gap       time.Duration
	next      time.Time // with gap: when the next message becomes available
}

func (s *fakeSource) Poll(ctx context.Context, into []Message) ([]Message, error) {
	if s.gap > 0 {
		s.mu.Lock()
		wait := time.Until(s.next)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return into, ctx.Err()
		case <-time.After(wait):
		}
	}
	s.mu.Lock()
	n := min(len(s.log)-s.pos, cmp.Or(s.perPoll, 3))
	s.next = time.Now().Add(s.gap)
	into = append(into, s.log[s.pos:s.pos+n]...)
	s.pos += n
	s.mu.Unlock()
	if n == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Millisecond):
		}
	}
	return into, nil
}

func (s *fakeSource) Commit(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commitErr != nil {
		return s.commitErr
	}
	s.committed = s.pos
	return nil
}
func (s *fakeSource) Done()                      {}
func (s *fakeSource) Ping(context.Context) error { return nil }
func (s *fakeSource) Close()                     {}

// restart rewinds to the committed offset, as a new group member would.
func (s *fakeSource) restart() {
	s.mu.Lock()
	s.pos = s.committed
	s.mu.Unlock()
}

func (s *fakeSource) done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed == len(s.log)
}

// fakeStore keeps every insert and collapses by record_id as billing reads do (the
// first rating stands).
type fakeStore struct {
	mu       sync.Mutex
	rows     []record.Rated
	rejs     []record.Rejection
	failures int   // the next inserts that fail
	inserts  []int // rows of each successful rated insert
	onInsert func(recs []record.Rated)
}

func (s *fakeStore) InsertRated(_ context.Context, recs []record.Rated) error {
	if s.onInsert != nil {
		s.onInsert(recs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return errors.New("store down")
	}
	s.rows = append(s.rows, recs...)
	s.inserts = append(s.inserts, len(recs))
	return nil
}

func (s *fakeStore) InsertRejected(_ context.Context, rejs []record.Rejection) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejs = append(s.rejs, rejs...)
	return nil
}
func (s *fakeStore) Ping(context.Context) error { return nil }

func (s *fakeStore) billing() (n int, sum record.Micros) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := map[string]record.Rated{}
	for _, r := range s.rows {
		if f, ok := first[r.RecordID]; !ok || r.RatedTime < f.RatedTime {
			first[r.RecordID] = r
		}
	}
	for _, r := range first {
		sum += r.Amount
	}
	return len(first), sum
}

func ratedLog(t *testing.T, n, per int) ([]Message, record.Micros) {
	enc := record.NewRatedEncoder()
	var msgs []Message
	var sum record.Micros
	for i := range n {
		var recs []record.Rated
		for j := range per {
			id := fmt.Sprintf("e%d-%d", i, j)
			amt := record.Micros(1000*i + j)
			recs = append(recs, record.Rated{Usage: record.Usage{EventID: id, Tenant: "t", Device: "d", Source: "mqtt"},
				RecordID: id, Charge: record.ChargeUsage, Currency: "EUR", Amount: amt, RatedTime: 1})
			sum += amt
		}
		b, err := enc.Encode(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, Message{Rated: true, Offset: int64(i), Value: b})
	}
	return msgs, sum
}

func runUntil(t *testing.T, l *Loader, src *fakeSource, stop func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	for !stop() && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

// A store that refuses inserts for a while stalls the loader (not ready), commits nothing
// meanwhile, and loses nothing once it accepts.
func TestStoreOutageRetries(t *testing.T) {
	msgs, sum := ratedLog(t, 10, 20)
	src := &fakeSource{log: msgs}
	st := &fakeStore{failures: 5}
	l := New(src, st, nil, nil)
	l.MaxBackoff = time.Millisecond
	sawStall := false
	runUntil(t, l, src, func() bool {
		if l.Ready(context.Background()) != nil {
			sawStall = true
			src.mu.Lock()
			c := src.committed
			src.mu.Unlock()
			if c != 0 {
				t.Error("committed offsets while the store refused the batch")
			}
		}
		return src.done()
	})
	if !sawStall {
		t.Error("never reported stalled while the store refused inserts")
	}
	if n, got := st.billing(); n != 200 || got != sum {
		t.Fatalf("store holds %d records, %s; want 200, %s", n, got, sum)
	}
}

// A loader that dies after inserting and before committing (here: the commit keeps
// failing until the process is gone) inserts the batch again after the restart; billing
// reads, collapsing record_ids, see every record once.
func TestCrashBetweenInsertAndCommit(t *testing.T) {
	msgs, sum := ratedLog(t, 6, 50)
	src := &fakeSource{log: msgs, commitErr: errors.New("kafka gone")}
	st := &fakeStore{}
	l := New(src, st, nil, nil)
	l.MaxBackoff = time.Millisecond
	runUntil(t, l, src, func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.rows) > 0
	})
	src.restart()
	src.commitErr = nil
	runUntil(t, New(src, st, nil, nil), src, src.done)
	if len(st.rows) <= 300 {
		t.Fatalf("store got %d rows: the crash did not make it insert a batch twice", len(st.rows))
	}
	if n, got := st.billing(); n != 300 || got != sum {
		t.Fatalf("billing reads %d records, %s; want 300, %s", n, got, sum)
	}
}

// A message that does not decode becomes a rejection with a bounded raw input, and the
// loader goes on.
func TestUndecodableMessagesAreRejections(t *testing.T) {
	msgs, _ := ratedLog(t, 2, 5)
	big := make([]byte, 300_000)
	msgs = append(msgs, Message{Rated: true, Offset: 2, Value: big}, Message{Offset: 3, Value: []byte("{not json")})
	src := &fakeSource{log: msgs}
	st := &fakeStore{}
	runUntil(t, New(src, st, nil, nil), src, src.done)
	if n, _ := st.billing(); n != 10 {
		t.Fatalf("%d rated records loaded, want 10", n)
	}
	reasons := map[string]int{}
	for _, rj := range st.rejs {
		reasons[rj.Reason]++
		if len(rj.Raw) > record.MaxRejectRaw {
			t.Fatalf("rejection keeps %d raw bytes", len(rj.Raw))
		}
	}
	if reasons[record.ReasonBadBatch] != 1 || reasons[record.ReasonBadRejection] != 1 {
		t.Fatalf("rejections by reason %v, want one bad_batch and one bad_rejection", reasons)
	}
}

// A batch gathers polls until BatchRows rows, and offsets are committed only once the
// insert holding every polled message succeeded: at each insert, nothing of its batch is
// committed yet, and every earlier batch is.
func TestBatchUpToRows(t *testing.T) {
	msgs, sum := ratedLog(t, 20, 10)
	src := &fakeSource{log: msgs, perPoll: 1}
	st := &fakeStore{}
	inserted := 0 // messages inserted so far
	st.onInsert = func(recs []record.Rated) {
		src.mu.Lock()
		defer src.mu.Unlock()
		if src.committed != inserted {
			t.Errorf("insert of %d rows with %d messages committed, want %d (the inserted ones)", len(recs), src.committed, inserted)
		}
		if src.pos != inserted+len(recs)/10 {
			t.Errorf("insert of %d rows while %d messages were polled: not all of the batch", len(recs), src.pos-inserted)
		}
		inserted = src.pos
	}
	l := New(src, st, nil, nil)
	l.BatchRows, l.BatchWait = 50, time.Minute
	runUntil(t, l, src, src.done)
	if want := []int{50, 50, 50, 50}; !slices.Equal(st.inserts, want) {
		t.Errorf("inserts of %v rows, want %v", st.inserts, want)
	}
	if n, got := st.billing(); n != 200 || got != sum {
		t.Fatalf("store holds %d records, %s; want 200, %s", n, got, sum)
	}
}

// A batch waits at most BatchWait after its first message: a trickle of one message
// every 10 ms is loaded in inserts of several messages, each within the wait.
func TestBatchUpToWait(t *testing.T) {
	msgs, sum := ratedLog(t, 30, 10)
	src := &fakeSource{log: msgs, perPoll: 1, gap: 10 * time.Millisecond}
	st := &fakeStore{}
	l := New(src, st, nil, nil)
	l.BatchWait = 60 * time.Millisecond
	start := time.Now()
	runUntil(t, l, src, src.done)
	took := time.Since(start)
	// 30 messages 10 ms apart: 300 ms, so about 300/60 = 5 inserts; a slow machine may
	// see fewer, larger ones but never one per message, nor one holding more than the
	// wait lets through (60 ms / 10 ms, and a message at each end).
	if len(st.inserts) < 2 || len(st.inserts) > 15 {
		t.Errorf("%d inserts (%v rows) in %v, want a few", len(st.inserts), st.inserts, took)
	}
	for _, n := range st.inserts {
		if n > 10*max(8, int(l.BatchWait/src.gap)+2) && took < 2*time.Second {
			t.Errorf("an insert of %d rows: more than %v lets through", n, l.BatchWait)
		}
	}
	if n, got := st.billing(); n != 300 || got != sum {
		t.Fatalf("store holds %d records, %s; want 300, %s", n, got, sum)
	}
}
