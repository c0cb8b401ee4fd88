package rating

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"fleetmeter/record"
	"fleetmeter/rules"
)

const stateVersion = 1

// MarshalBinary encodes the whole State (devices, their windows and periods, per-tenant
// period aggregates): the full snapshot format of the rater's first releases, still read
// when a changelog starts with one (see Apply).
func (s *State) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+int(s.ndev)*48)
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(s.ndev))
	for i := int32(0); i < s.ndev; i++ {
		d := s.dev(i)
		tenant, dev := s.ids(d)
		b = appendString(b, tenant)
		b = appendString(b, dev)
		b = s.appendDevice(b, d)
	}
	b = binary.AppendUvarint(b, uint64(len(s.aggs)))
	for k, a := range s.aggs {
		b = appendString(b, k.tenant)
		b = binary.AppendVarint(b, int64(k.month))
		b = binary.AppendUvarint(b, a.devices)
		b = binary.AppendVarint(b, int64(a.provisional))
	}
	return b, nil
}

// appendDevice encodes what a device knows besides its identity.
func (s *State) appendDevice(b []byte, d *device) []byte {
	b = binary.AppendVarint(b, d.maxT)
	b = append(b, d.last)
	b = binary.AppendVarint(b, int64(d.lastMonth))
	more := s.months(d)
	b = binary.AppendUvarint(b, uint64(len(more)))
	for _, m := range more {
		b = binary.AppendVarint(b, int64(m))
	}
	b = binary.AppendUvarint(b, uint64(d.nloc))
	for j := range int(d.nloc) {
		l := s.at(d, j)
		b = binary.LittleEndian.AppendUint64(b, l.key)
		b = binary.AppendVarint(b, l.first)
		b = binary.AppendVarint(b, l.last)
	}
	return b
}

// readDevice decodes appendDevice's fields into d, replacing what d held.
func (s *State) readDevice(r *reader, d *device) {
	d.maxT = r.varint()
	if p := r.bytes(1); p != nil {
		if p[0] > byte(rules.Mobile) {
			r.fail("bad mobility")
		}
		d.last = p[0]
	}
	d.lastMonth = r.month()
	var more []month
	if m := r.count(); m > 0 {
		more = make([]month, m)
		for j := range more {
			more[j] = r.month()
		}
	}
	m := r.count()
	if m > math.MaxUint16 {
		r.fail("too many locations")
		return
	}
	var extra []loc
	if m > inlineLocs {
		extra = make([]loc, m-inlineLocs)
	}
	d.nloc = uint16(m)
	for j := range m {
		l := &d.loc0
		switch {
		case j == 1:
			l = &d.loc1
		case j >= inlineLocs:
			l = &extra[j-inlineLocs]
		}
		if kb := r.bytes(8); kb != nil {
			l.key = binary.LittleEndian.Uint64(kb)
		}
		l.first, l.last = r.varint(), r.varint()
	}
	if d.ext != 0 || len(more) > 0 || len(extra) > 0 {
		x := s.ext(d)
		x.more, x.extra = more, extra
		s.trimExt(d)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader is a sticky-error cursor: decode many fields, check the error once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("decode state: %s at byte %d", what, r.off)
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)-r.off) { // every element takes at least one byte
		r.fail("count beyond input")
		return 0
	}
	return int(n)
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b)-r.off {
		r.fail("truncated")
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *reader) string() string { return string(r.bytes(r.count())) }

func (r *reader) month() month {
	v := r.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail("month out of range")
	}
	return month(v)
}

// UnmarshalBinary replaces s with the State MarshalBinary encoded.
func (s *State) UnmarshalBinary(b []byte) error {
	ns, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	s.Release()
	*s = *ns
	return nil
}

func decodeSnapshot(b []byte) (*State, error) {
	if len(b) == 0 || b[0] != stateVersion {
		return nil, errors.New("decode state: unknown version")
	}
	r := &reader{b: b, off: 1}
	ns := NewState()
	n := r.count()
	for i := 0; i < n && r.err == nil; i++ {
		tenant, dev := r.string(), r.string()
		if r.err != nil {
			break
		}
		idx := ns.lookup(tenant, dev, ns.hash(tenant, dev))
		if int(ns.ndev) != i+1 {
			r.fail("duplicate device")
			break
		}
		ns.readDevice(r, ns.dev(idx))
	}
	n = r.count()
	for i := 0; i < n && r.err == nil; i++ {
		tenant := r.string()
		m := r.month()
		a := ns.agg(tenant, m)
		a.devices = r.uvarint()
		a.provisional = record.Micros(r.varint())
	}
	if r.err == nil && r.off != len(b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		ns.Release()
		return nil, r.err
	}
	return ns, nil
}
