package coap

import (
	"sync"
	"sync/atomic"
	"time"
)

// A session is go-coap's state for one peer: per remote address on plain UDP, per DTLS
// connection. go-coap creates it for the first datagram from an address, before anything
// is checked: a goroutine, maps, a response cache, block-wise buffers, kept for
// idle_timeout. Unbounded, a sender cycling source ports (or DTLS ClientHellos) grows
// memory and goroutines without limit. sessionTable bounds them per listener:
//
//   - A session opens unverified. It becomes verified at its first request with an
//     admitted identity (plain UDP in dev mode: vet, in go-coap's read loop, before the
//     next datagram is read) or when its DTLS handshake finishes (the PSK identity was in
//     the registry). Plain UDP without dev mode never verifies: it only answers 4.01.
//   - Unverified sessions are kept oldest first and bounded in number
//     (max_unverified_sessions), in bytes (max_unverified_bytes: a fixed charge per
//     session plus every datagram it sent, an upper bound of what it can hold) and in age
//     (unverified_idle_timeout; a pending DTLS handshake: handshake_timeout).
//   - All sessions together are bounded by max_sessions.
//   - A new session over a bound evicts the oldest unverified ones. Verified sessions are
//     never evicted: a flood cannot push out devices already reporting. Only when every
//     session is verified is a new peer refused (its datagram dropped).
//
// Evicting frees the state at once (see freeUDP), so goroutines and memory stay within
// the bounds however fast the flood comes, and a legitimate new device gets in even
// during a flood: its session evicts the oldest unverified one and is verified by its
// first request before another datagram is read.
type sessionTable struct {
	maxSessions   int
	maxUnverified int
	maxBytes      int64
	ttl           time.Duration // age at which an unverified session is closed
	perSession    int64         // fixed charge of an unverified session

	mu         sync.Mutex
	total      int   // open sessions, verified or not
	unverified int   // of which unverified
	bytes      int64 // charged to unverified sessions
	head, tail *session

	evicted atomic.Uint64 // unverified sessions closed over a bound
	expired atomic.Uint64 // unverified sessions closed at ttl
	refused atomic.Uint64 // new peers dropped: max_sessions verified sessions held
}

const (
	stateUnverified uint32 = iota
	stateVerified
	stateClosed
)

type session struct {
	prev, next *session // unverified sessions, oldest first
	opened     time.Time
	bytes      int64         // charged while unverified
	state      atomic.Uint32 // written under the table's lock; read without it on the request path
	free       func()        // closes the session and frees its state
}

// Fixed charges of an unverified session against max_unverified_bytes: heap plus
// goroutine stacks per peer, measured by flooding go-coap v3.8.0 / pion v3.1.15 without
// these bounds (~11 KiB per plain UDP session with its goroutine; ~32 KiB per pending
// DTLS handshake with its four goroutines).
const (
	udpSessionCharge   = 12 << 10
	dtlsSessionCharge  = 32 << 10
	minUnverifiedBytes = dtlsSessionCharge + maxDatagram
)

func newSessionTable(cfg Config, ttl time.Duration, charge int64) *sessionTable {
	return &sessionTable{maxSessions: cfg.MaxSessions, maxUnverified: cfg.MaxUnverifiedSessions,
		maxBytes: cfg.MaxUnverifiedBytes, ttl: ttl, perSession: charge}
}

// open admits a new session, evicting the oldest unverified ones as the bounds require;
// nil means refused: the caller closes the connection. free must close the session
// without calling back into the table synchronously under its lock (closed takes it).
func (t *sessionTable) open(now time.Time, free func()) *session {
	t.mu.Lock()
	victims := t.expireLocked(now, nil)
	for t.head != nil && (t.unverified >= t.maxUnverified || t.total >= t.maxSessions || t.bytes+t.perSession > t.maxBytes) {
		victims = append(victims, t.evictLocked(t.head))
		t.evicted.Add(1)
	}
	var s *session
	if t.total < t.maxSessions {
		s = &session{opened: now, bytes: t.perSession, free: free}
		t.linkLocked(s)
		t.total++
		t.unverified++
		t.bytes += t.perSession
	}
	t.mu.Unlock()
	freeAll(victims)
	if s == nil {
		t.refused.Add(1)
	}
	return s
}

// verify marks s verified: it leaves the unverified list and its bounds.
func (t *sessionTable) verify(s *session) {
	if s.state.Load() != stateUnverified {
		return
	}
	t.mu.Lock()
	if s.state.Load() == stateUnverified {
		t.unlinkLocked(s)
		t.unverified--
		t.bytes -= s.bytes
		s.bytes = 0
		s.state.Store(stateVerified)
	}
	t.mu.Unlock()
}

// charge adds n bytes an unverified session received, evicting the oldest unverified
// sessions (s itself, possibly) while over max_unverified_bytes. It reports whether s is
// still open.
func (t *sessionTable) charge(s *session, n int64) bool {
	if st := s.state.Load(); st != stateUnverified {
		return st == stateVerified
	}
	t.mu.Lock()
	if st := s.state.Load(); st != stateUnverified {
		t.mu.Unlock()
		return st == stateVerified
	}
	s.bytes += n
	t.bytes += n
	var victims []*session
	for t.bytes > t.maxBytes && t.head != nil {
		victims = append(victims, t.evictLocked(t.head))
		t.evicted.Add(1)
	}
	t.mu.Unlock()
	freeAll(victims)
	return s.state.Load() != stateClosed
}

// closed forgets s once its connection closed, however that happened. Idempotent.
func (t *sessionTable) closed(s *session) {
	t.mu.Lock()
	switch s.state.Load() {
	case stateUnverified:
		t.unlinkLocked(s)
		t.unverified--
		t.bytes -= s.bytes
		t.total--
	case stateVerified:
		t.total--
	}
	s.state.Store(stateClosed)
	t.mu.Unlock()
}

// sweep closes the unverified sessions older than the table's ttl.
func (t *sessionTable) sweep(now time.Time) {
	t.mu.Lock()
	victims := t.expireLocked(now, nil)
	t.mu.Unlock()
	freeAll(victims)
}

func (t *sessionTable) expireLocked(now time.Time, victims []*session) []*session {
	for t.head != nil && now.Sub(t.head.opened) >= t.ttl {
		victims = append(victims, t.evictLocked(t.head))
		t.expired.Add(1)
	}
	return victims
}

// evictLocked takes an unverified session out of the table; the caller frees it after
// unlocking.
func (t *sessionTable) evictLocked(s *session) *session {
	t.unlinkLocked(s)
	t.unverified--
	t.total--
	t.bytes -= s.bytes
	s.state.Store(stateClosed)
	return s
}

func (t *sessionTable) linkLocked(s *session) {
	s.prev, s.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = s
	} else {
		t.head = s
	}
	t.tail = s
}

func (t *sessionTable) unlinkLocked(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		t.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		t.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

func freeAll(victims []*session) {
	for _, v := range victims {
		v.free()
	}
}

// SessionStats is one listener's sessions (see sessionTable).
type SessionStats struct {
	Verified, Unverified int
	UnverifiedBytes      int64  // charged against max_unverified_bytes
	Evicted              uint64 // unverified sessions closed over a bound
	Expired              uint64 // unverified sessions closed at unverified_idle_timeout / handshake_timeout
	Refused              uint64 // new peers dropped: max_sessions verified sessions held
}

func (t *sessionTable) stats() SessionStats {
	if t == nil {
		return SessionStats{}
	}
	t.mu.Lock()
	st := SessionStats{Verified: t.total - t.unverified, Unverified: t.unverified, UnverifiedBytes: t.bytes}
	t.mu.Unlock()
	st.Evicted, st.Expired, st.Refused = t.evicted.Load(), t.expired.Load(), t.refused.Load()
	return st
}
