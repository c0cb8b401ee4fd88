package loader

import (
	"context"
	"errors"
	"fmt"
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
}

func (s *fakeSource) Poll(ctx context.Context, into []Message) ([]Message, error) {
	s.mu.Lock()
	n := min(len(s.log)-s.pos, 3)
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
	failures int // the next inserts that fail
}

func (s *fakeStore) InsertRated(_ context.Context, recs []record.Rated) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return errors.New("store down")
	}
	s.rows = append(s.rows, recs...)
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
