package rating

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"fleetmeter/record"
)

// A State is persisted as a changelog: one entry per device and one per tenant period,
// keyed so that a compacted log keeps the newest of each, and written only for what a
// batch changed. Replaying the entries of a partition in order (Apply) rebuilds the
// State that wrote them; a state snapshot of the first releases (key legacySnapshotKey)
// replaces everything before it.
//
// Keys (bytes):
//
//	'd' tenant NUL device   -> device: newest start_time, last profile, periods seen, location runs
//	'a' tenant NUL YYYY-MM  -> tenant period: active devices (uvarint), provisional fees (varint micros)
const (
	keyDevice = 'd'
	keyAgg    = 'a'
	entryV1   = 1
)

// legacySnapshotPrefix starts the key of a whole-state snapshot ("usage/<partition>").
var legacySnapshotPrefix = []byte("usage/")

// Changes reports whether anything changed since the last ClearDirty.
func (s *State) Changes() (devices, periods int) { return len(s.dirtyDevs), len(s.dirtyAggs) }

// AppendChanges encodes an entry for every device and tenant period changed since the
// last ClearDirty, appending keys and values to buf, and calls emit with each (slices of
// the returned buffer's backing arrays; they stay valid, as earlier arrays are never
// written again). Devices come first, in the order they first changed.
func (s *State) AppendChanges(buf []byte, emit func(key, value []byte)) []byte {
	for _, idx := range s.dirtyDevs {
		d := s.dev(idx)
		k0 := len(buf)
		buf = append(buf, keyDevice)
		buf = s.appendKey(buf, d)
		v0 := len(buf)
		buf = append(buf, entryV1)
		buf = s.appendDevice(buf, d)
		emit(buf[k0:v0:v0], buf[v0:len(buf):len(buf)])
	}
	for _, k := range s.dirtyAggs {
		a := s.aggs[k]
		if a == nil { // forgotten since
			continue
		}
		k0 := len(buf)
		buf = append(buf, keyAgg)
		buf = append(buf, k.tenant...)
		buf = append(buf, 0)
		buf = append(buf, s.periodName(k.month)...)
		v0 := len(buf)
		buf = append(buf, entryV1)
		buf = binary.AppendUvarint(buf, a.devices)
		buf = binary.AppendVarint(buf, int64(a.provisional))
		emit(buf[k0:v0:v0], buf[v0:len(buf):len(buf)])
	}
	return buf
}

// ChangedPeriods calls fn with the active-device count of every tenant period changed
// since the last ClearDirty.
func (s *State) ChangedPeriods(fn func(tenant, period string, devices uint64)) {
	for _, k := range s.dirtyAggs {
		if a := s.aggs[k]; a != nil {
			fn(k.tenant, s.periodName(k.month), a.devices)
		}
	}
}

// ClearDirty forgets what changed: call it once the changes are durable.
func (s *State) ClearDirty() {
	for _, idx := range s.dirtyDevs {
		s.dev(idx).dirty = false
	}
	for _, k := range s.dirtyAggs {
		if a := s.aggs[k]; a != nil {
			a.dirty = false
		}
	}
	s.dirtyDevs, s.dirtyAggs = s.dirtyDevs[:0], s.dirtyAggs[:0]
}

// Apply replays one changelog entry. A nil value (a tombstone) is ignored: entries are
// never deleted. Applied entries are not marked changed.
func (s *State) Apply(key, value []byte) error {
	if bytes.HasPrefix(key, legacySnapshotPrefix) {
		ns, err := decodeSnapshot(value)
		if err != nil {
			return fmt.Errorf("state snapshot %q: %w", key, err)
		}
		s.Release()
		*s = *ns
		return nil
	}
	if len(key) < 3 || len(value) == 0 {
		if value == nil && len(key) > 0 {
			return nil
		}
		return fmt.Errorf("state entry %q: too short", key)
	}
	if value[0] != entryV1 {
		return fmt.Errorf("state entry %q: unknown version %d", key, value[0])
	}
	sep := bytes.IndexByte(key[1:], 0)
	if sep < 0 {
		return fmt.Errorf("state entry %q: no tenant separator", key)
	}
	tenant, rest := string(key[1:1+sep]), string(key[2+sep:])
	r := &reader{b: value, off: 1}
	switch key[0] {
	case keyDevice:
		idx := s.lookup(tenant, rest, s.hash(tenant, rest))
		d := s.dev(idx)
		s.readDevice(r, d)
	case keyAgg:
		m, err := parsePeriod(rest)
		if err != nil {
			return fmt.Errorf("state entry %q: %w", key, err)
		}
		a := s.agg(tenant, m)
		a.devices = r.uvarint()
		a.provisional = record.Micros(r.varint())
	default:
		return fmt.Errorf("state entry %q: unknown kind %q", key, key[0])
	}
	if r.err == nil && r.off != len(value) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return fmt.Errorf("state entry %q: %w", key, r.err)
	}
	return nil
}
