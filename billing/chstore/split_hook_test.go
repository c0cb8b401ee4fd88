package chstore

import (
	"context"

	"fleetmeter/billing"
)

// SplitOf returns the two halves ExportColumns would read req's data as, ok false when
// it would read it whole (or after the keys).
func (s *Store) SplitOf(ctx context.Context, req billing.ExportRequest) (lo, hi KeyRange, ok bool, err error) {
	p, err := s.plan(ctx, req)
	if err != nil || p.empty || !s.final || !p.dense {
		return lo, hi, false, err
	}
	lo, hi, ok = p.keys.Split(p.split)
	return lo, hi, ok, nil
}

// AlignMin sets the least limit of a page that plan ends at a second's end.
func (s *Store) AlignMin(n int) *Store { s.align = n; return s }

// SecondsReads is how many times the store has read a page's seconds from the server
// rather than from its cache; SecondsRun bounds the seconds a read keeps.
func (s *Store) SecondsReads() int {
	s.secs.mu.Lock()
	defer s.secs.mu.Unlock()
	return s.secs.reads
}

func (s *Store) SecondsRun(n int) *Store { s.secs.maxSec = n; return s }
