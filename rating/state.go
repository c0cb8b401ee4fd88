package rating

import (
	"hash/maphash"
	"math"
	"strconv"
	"strings"

	"fleetmeter/record"
	"fleetmeter/rules"
)

// State is the rating state of one Kafka partition: per device its mobility window and
// last profile and the periods it was seen in, and per tenant and period the devices seen
// and the provisional fees charged. Each device must live in exactly one State. A State
// is not safe for concurrent use; the Engine is.
//
// Devices sit in one slice and are found through an open-addressing table of (hash tag,
// index) pairs; a device's identity (tenant NUL device) is kept inline when short, so a
// lookup touches one table slot and one device, the fewest cache misses per record a
// fleet of millions allows.
type State struct {
	seed    maphash.Seed
	table   []slot // len is a power of two, at most half full
	devs    []device
	tenants map[string]string // interned tenant names
	aggs    map[aggKey]*agg
	names   map[month]string // period names, built once
}

type slot struct {
	tag uint32 // high bits of the hash; 0 marks an empty slot
	idx int32
}

type aggKey struct {
	tenant string
	month  month
}

// agg is one tenant's period in this State.
type agg struct {
	devices     uint64
	provisional record.Micros
}

const inlineKey = 32

// device is kept small: it is multiplied by every device of the fleet.
type device struct {
	maxT      int64    // latest start_time seen
	loc0      loc      // the first location run, inline: most devices have one
	extra     []loc    // further runs
	more      *[]month // periods seen besides lastMonth (rare: a device active across months)
	long      string   // tenant NUL device when longer than inlineKey
	nloc      int32
	lastMonth month
	last      uint8 // rules.Mobility
	tlen      uint8 // tenant length within the key
	klen      uint8 // inline key length; 0 when long is used
	key       [inlineKey]byte
}

// loc is one location key's presence: occurrences from first to last with no gap longer
// than the window, so the key counts for an instant t exactly when first <= t < last+window.
// Keys are compared by a 64-bit FNV-1a hash of the key text of TARIFFS.md.
type loc struct {
	key         uint64
	first, last int64
}

// NewState returns an empty State.
func NewState() *State {
	return &State{seed: maphash.MakeSeed(), table: make([]slot, 64), tenants: map[string]string{},
		aggs: map[aggKey]*agg{}, names: map[month]string{}}
}

// Devices returns how many devices the State tracks.
func (s *State) Devices() int { return len(s.devs) }

func (s *State) hash(tenant, dev string) uint64 {
	h := maphash.String(s.seed, tenant)
	return (h*0x9E3779B97F4A7C15 + uint64(len(tenant))) ^ maphash.String(s.seed, dev)
}

func tagOf(h uint64) uint32 { return uint32(h>>32) | 1 }

func (d *device) is(tenant, dev string) bool {
	if d.klen == 0 {
		return len(d.long) == len(tenant)+1+len(dev) && d.long[:len(tenant)] == tenant && d.long[len(tenant)+1:] == dev
	}
	k := d.key[:d.klen]
	return int(d.tlen) == len(tenant) && len(k) == len(tenant)+1+len(dev) &&
		string(k[:len(tenant)]) == tenant && string(k[len(tenant)+1:]) == dev
}

// ids returns the device's tenant and device id (allocating: for encoding only).
func (d *device) ids() (string, string) {
	if d.klen == 0 {
		i := strings.IndexByte(d.long, 0)
		return d.long[:i], d.long[i+1:]
	}
	k := string(d.key[:d.klen])
	return k[:d.tlen], k[int(d.tlen)+1:]
}

func (s *State) device(u *record.Usage) *device { return s.deviceHashed(u, s.hash(u.Tenant, u.Device)) }

// slotOf loads the table slot of h and touchDev the device it points at: a batch calls
// them for many records before rating any, so their cache misses are in flight together
// (see Engine.RateBatch).
func (s *State) slotOf(h uint64) slot { return s.table[h&uint64(len(s.table)-1)] }

func (s *State) touchDev(sl slot) int64 {
	if sl.tag != 0 {
		return s.devs[sl.idx].maxT
	}
	return 0
}

func (s *State) deviceHashed(u *record.Usage, h uint64) *device {
	tag, mask := tagOf(h), uint64(len(s.table)-1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := s.table[i]
		if sl.tag == 0 {
			break
		}
		if sl.tag == tag && s.devs[sl.idx].is(u.Tenant, u.Device) {
			return &s.devs[sl.idx]
		}
	}
	return s.add(u.Tenant, u.Device)
}

func (s *State) add(tenant, dev string) *device {
	if _, ok := s.tenants[tenant]; !ok {
		t := strings.Clone(tenant)
		s.tenants[t] = t
	}
	d := device{maxT: math.MinInt64, lastMonth: noMonth, tlen: uint8(min(len(tenant), 255))}
	if n := len(tenant) + 1 + len(dev); n <= inlineKey && len(tenant) < 256 {
		d.klen = uint8(n)
		copy(d.key[:], tenant)
		copy(d.key[len(tenant)+1:], dev)
	} else {
		d.long = tenant + "\x00" + dev
	}
	s.devs = append(s.devs, d)
	if 2*len(s.devs) > len(s.table) {
		s.rehash(2 * len(s.table))
	} else {
		s.insert(s.hash(tenant, dev), int32(len(s.devs)-1))
	}
	return &s.devs[len(s.devs)-1]
}

func (s *State) insert(h uint64, idx int32) {
	mask := uint64(len(s.table) - 1)
	i := h & mask
	for s.table[i].tag != 0 {
		i = (i + 1) & mask
	}
	s.table[i] = slot{tag: tagOf(h), idx: idx}
}

func (s *State) rehash(size int) {
	s.table = make([]slot, size)
	for i := range s.devs {
		t, d := s.devs[i].ids()
		s.insert(s.hash(t, d), int32(i))
	}
}

func (s *State) periodName(m month) string {
	n, ok := s.names[m]
	if !ok {
		n = m.String()
		s.names[m] = n
	}
	return n
}

func (s *State) agg(tenant string, m month) *agg {
	k := aggKey{tenant, m}
	a := s.aggs[k]
	if a == nil {
		a = &agg{}
		if t, ok := s.tenants[tenant]; ok {
			k.tenant = t
		}
		s.aggs[k] = a
	}
	return a
}

// Forget drops what the State keeps for a closed period: its aggregates and the marks
// of devices seen in it. A record of that period arriving later counts as a first sight
// again, so forget only periods that can no longer receive records.
func (s *State) Forget(period string) error {
	m, err := parsePeriod(period)
	if err != nil {
		return err
	}
	for k := range s.aggs {
		if k.month == m {
			delete(s.aggs, k)
		}
	}
	for i := range s.devs {
		d := &s.devs[i]
		if d.lastMonth == m {
			d.lastMonth = noMonth
			if more := d.months(); len(more) > 0 {
				d.lastMonth = more[len(more)-1]
				d.setMonths(more[:len(more)-1])
			}
		}
		more := d.months()
		for j := 0; j < len(more); j++ {
			if more[j] == m {
				more = append(more[:j], more[j+1:]...)
				j--
			}
		}
		d.setMonths(more)
	}
	return nil
}

func (d *device) months() []month {
	if d.more == nil {
		return nil
	}
	return *d.more
}

func (d *device) setMonths(m []month) {
	switch {
	case len(m) == 0:
		d.more = nil
	case d.more == nil:
		d.more = &m
	default:
		*d.more = m
	}
}

// markSeen records that d was active in m; false if it already was.
func (d *device) markSeen(m month) bool {
	if d.lastMonth == m {
		return false
	}
	for _, x := range d.months() {
		if x == m {
			return false
		}
	}
	if d.lastMonth != noMonth {
		d.setMonths(append(d.months(), d.lastMonth))
	}
	d.lastMonth = m
	return true
}

func (d *device) at(i int) *loc {
	if i == 0 {
		return &d.loc0
	}
	return &d.extra[i-1]
}

// mobility updates d's window with u and returns u's profile (TARIFFS.md step 3).
func (d *device) mobility(t *rules.Tariff, u *record.Usage) rules.Mobility {
	key, ok := locKey(u)
	if !ok {
		return rules.Mobility(d.last)
	}
	ts, w := u.StartTime, t.Window
	d.maxT = max(d.maxT, ts)
	merged := -1
	for i := range int(d.nloc) {
		l := d.at(i)
		if l.key != key || ts < l.first-w || ts > l.last+w {
			continue
		}
		if merged < 0 {
			l.first, l.last = min(l.first, ts), max(l.last, ts)
			merged = i
			continue
		}
		// ts bridged two runs of the same key: fold this one into the first.
		m := d.at(merged)
		m.first, m.last = min(m.first, l.first), max(m.last, l.last)
		l.last = math.MinInt64 / 2 // pruned below
	}
	if merged < 0 {
		if d.nloc == 0 {
			d.loc0 = loc{key: key, first: ts, last: ts}
		} else {
			d.extra = append(d.extra, loc{key: key, first: ts, last: ts})
		}
		d.nloc++
	}
	// Keep what can matter for a record up to one window older than the newest seen.
	n, j := 0, 0
	for i := range int(d.nloc) {
		l := *d.at(i)
		if l.last+w <= d.maxT-w {
			continue
		}
		*d.at(j) = l
		j++
		if l.first <= ts && ts < l.last+w {
			n++
		}
	}
	d.nloc = int32(j)
	if j <= 1 {
		d.extra = d.extra[:0]
	} else {
		clear(d.extra[j-1:])
		d.extra = d.extra[:j-1]
	}
	switch {
	case n <= t.StationaryMax:
		d.last = uint8(rules.Stationary)
	case n <= t.NomadicMax:
		d.last = uint8(rules.Nomadic)
	default:
		d.last = uint8(rules.Mobile)
	}
	return rules.Mobility(d.last)
}

// locKey hashes the location key of TARIFFS.md: cell, else g:<floor(lat*100)>:<floor(lon*100)>,
// else plmn. The key text is built on the stack and never allocated.
func locKey(u *record.Usage) (uint64, bool) {
	switch {
	case u.Cell != "":
		return fnvString(u.Cell), true
	case u.HasPos:
		var buf [48]byte
		b := append(buf[:0], "g:"...)
		b = strconv.AppendInt(b, int64(math.Floor(u.Lat*100)), 10)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(math.Floor(u.Lon*100)), 10)
		return fnvBytes(b), true
	case u.PLMN != "":
		return fnvString(u.PLMN), true
	}
	return 0, false
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

func fnvBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

// ActiveDevices returns how many of tenant's devices this State has seen in period
// (YYYY-MM); 0 for a malformed period.
func (s *State) ActiveDevices(tenant, period string) uint64 {
	m, err := parsePeriod(period)
	if err != nil {
		return 0
	}
	if a := s.aggs[aggKey{tenant, m}]; a != nil {
		return a.devices
	}
	return 0
}

// Tally returns the active devices per tenant and period ("tenant\x00YYYY-MM").
func (s *State) Tally() map[string]uint64 {
	out := make(map[string]uint64, len(s.aggs))
	for k, a := range s.aggs {
		out[k.tenant+"\x00"+k.month.String()] = a.devices
	}
	return out
}
