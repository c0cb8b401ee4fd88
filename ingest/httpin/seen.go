package httpin

import "hash/maphash"

// idSet holds the event ids a request accepted so far, each with where it came from (a
// JSON Lines line, or -(index+1) of a CloudEvents batch), to refuse a repeat. It is a
// map's job done cheaper per record: open addressing over a table reused from request to
// request (a generation number tells this request's slots from stale ones, so nothing is
// cleared) and one hash per lookup-and-insert. The ids are the accepted records' own
// strings: the set keeps no copy.
type idSet struct {
	slots []idSlot
	gen   uint32
	n     int
	seed  maphash.Seed
}

type idSlot struct {
	gen  uint32
	hash uint32
	key  int
	id   string
}

// reset empties the set.
func (s *idSet) reset() {
	s.gen++
	s.n = 0
	if s.gen == 0 { // wrapped: old generations could look current
		clear(s.slots)
		s.gen = 1
	}
}

// add inserts id with key unless id is present; then it returns the key it was added
// with and false.
func (s *idSet) add(id string, key int) (first int, added bool) {
	if 2*(s.n+1) > len(s.slots) {
		s.grow()
	}
	h := maphash.String(s.seed, id)
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &s.slots[i]
		if sl.gen != s.gen {
			*sl = idSlot{gen: s.gen, hash: uint32(h), key: key, id: id}
			s.n++
			return key, true
		}
		if sl.hash == uint32(h) && sl.id == id {
			return sl.key, false
		}
	}
}

// grow doubles the table (at least 256 slots) and re-inserts this request's ids.
func (s *idSet) grow() {
	if s.seed == (maphash.Seed{}) {
		s.seed = maphash.MakeSeed()
	}
	old := s.slots
	s.slots = make([]idSlot, max(256, 2*len(old)))
	mask := uint64(len(s.slots) - 1)
	for _, sl := range old {
		if sl.gen != s.gen {
			continue
		}
		i := maphash.String(s.seed, sl.id) & mask
		for s.slots[i].gen == s.gen {
			i = (i + 1) & mask
		}
		s.slots[i] = sl
	}
}
