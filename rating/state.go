package rating

import (
	"hash/maphash"
	"math"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"fleetmeter/record"
	"fleetmeter/rules"
)

// State is the rating state of one Kafka partition: per device its mobility window and
// last profile and the periods it was seen in, and per tenant and period the devices seen
// and the provisional fees charged. Each device must live in exactly one State. A State
// is not safe for concurrent use; the Engine is.
//
// Devices sit in fixed-size pages and are found through an open-addressing table of
// (hash tag, index) pairs; a device's identity (tenant NUL device) is kept inline when
// short, so a lookup touches one table slot and one device, the fewest cache misses per
// record a fleet of millions allows. Pages and table hold no Go pointers and live off the
// Go heap (offHeap): a device costs its 104 bytes plus its table slots, not twice that
// under the collector's growth target. What does not fit inline (a long id, more than
// one location run, several periods) sits in a side table on the heap.
//
// A State tracks what changed since ClearDirty (devices and tenant periods) so the rater
// writes only those to its changelog (see changelog.go).
type State struct {
	seed    maphash.Seed
	mem     *stateMem
	ndev    int32
	exts    []devExt // side table; index 0 unused
	freeExt []int32
	tenants map[string]string // interned tenant names
	aggs    map[aggKey]*agg
	names   map[month]string // period names, built once

	dirtyDevs []int32
	dirtyAggs []aggKey
	late      uint64 // records rated beyond late tolerance

	// The month of the last record and its [start, end): most records fall in the same
	// month as the one before, and the calendar arithmetic costs more than the compare.
	curMonth         month
	curStart, curEnd int64
}

// stateMem owns the off-heap pages and table of a State; its finalizer returns them
// if the State is dropped without Release.
type stateMem struct {
	pages    [][]device
	pageMaps []mapping
	table    []slot // len is a power of two, at most half full
	tableMap mapping
}

func (m *stateMem) release() {
	for _, p := range m.pageMaps {
		p.free()
	}
	m.tableMap.free()
	*m = stateMem{}
}

const (
	// A page of 2^18 devices is 13 huge pages exactly (104 * 2^18 = 13 * 2 MiB).
	pageShift = 18
	pageDevs  = 1 << pageShift
	// hugeFrom is the device count from which a State asks for huge pages (see
	// mapping.adviseHuge): about 7 MB of devices, where small pages start to cost more
	// in address translation than a partly used huge page costs in memory.
	hugeFrom = 1 << 16
	// firstPageDevs is the first page's size before it grows (see growPages).
	firstPageDevs = 64
)

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
	dirty       bool
}

const inlineKey = 32

// device is kept small (104 bytes) and pointer-free: it is multiplied by every device of the fleet
// and lives off the Go heap.
type device struct {
	// The identity first: a lookup compares it, so it shares the device's first cache line
	// with the fields every record reads; the location runs follow.
	key       [inlineKey]byte
	maxT      int64 // latest start_time seen
	lastMonth month
	ext       int32 // index into State.exts; 0 when none
	nloc      uint16
	last      uint8 // rules.Mobility
	tlen      uint8 // tenant length within the key
	klen      uint8 // inline key length; 0 when the key is in the ext
	dirty     bool  // changed since ClearDirty
	loc0      loc   // the first two location runs, inline: most devices have one or two
	loc1      loc
}

// devExt holds what a few devices need beyond their inline fields.
type devExt struct {
	long  string  // tenant NUL device when longer than inlineKey
	extra []loc   // location runs after loc0
	more  []month // periods seen besides lastMonth
}

func (x *devExt) empty() bool { return x.long == "" && len(x.extra) == 0 && len(x.more) == 0 }

// loc is one location key's presence: occurrences from first to last with no gap longer
// than the window, so the key counts for an instant t exactly when first <= t < last+window.
// Keys are compared by a 64-bit FNV-1a hash of the key text of docs/tariffs.md.
type loc struct {
	key         uint64
	first, last int64
}

// NewState returns an empty State.
func NewState() *State {
	s := &State{seed: maphash.MakeSeed(), mem: &stateMem{}, exts: make([]devExt, 1), tenants: map[string]string{},
		aggs: map[aggKey]*agg{}, names: map[month]string{}}
	s.mem.table, s.mem.tableMap = offHeap[slot](64)
	runtime.SetFinalizer(s.mem, (*stateMem).release)
	return s
}

// Release returns the State's off-heap memory now rather than when it is collected. The
// State must not be used afterwards.
func (s *State) Release() {
	if s.mem != nil {
		s.mem.release()
		s.ndev = 0
	}
}

// Devices returns how many devices the State tracks.
func (s *State) Devices() int { return int(s.ndev) }

// Late returns how many records were rated further behind their device's newest record
// than the tariff's late tolerance (priced with the keys still remembered).
func (s *State) Late() uint64 { return s.late }

func (s *State) dev(i int32) *device { return &s.mem.pages[i>>pageShift][i&(pageDevs-1)] }

func (s *State) hash(tenant, dev string) uint64 {
	h := maphash.String(s.seed, tenant)
	return (h*0x9E3779B97F4A7C15 + uint64(len(tenant))) ^ maphash.String(s.seed, dev)
}

func tagOf(h uint64) uint32 { return uint32(h>>32) | 1 }

func (s *State) is(d *device, tenant, dev string) bool {
	if d.klen == 0 {
		long := s.exts[d.ext].long
		return len(long) == len(tenant)+1+len(dev) && long[:len(tenant)] == tenant && long[len(tenant)+1:] == dev
	}
	k := d.key[:d.klen]
	return int(d.tlen) == len(tenant) && len(k) == len(tenant)+1+len(dev) &&
		string(k[:len(tenant)]) == tenant && string(k[len(tenant)+1:]) == dev
}

// ids returns the device's tenant and device id (allocating: for encoding only).
func (s *State) ids(d *device) (string, string) {
	k := s.keyOf(d)
	i := strings.IndexByte(k, 0)
	return k[:i], k[i+1:]
}

// keyOf returns tenant NUL device (allocating when inline).
func (s *State) keyOf(d *device) string {
	if d.klen == 0 {
		return s.exts[d.ext].long
	}
	return string(d.key[:d.klen])
}

// appendKey appends tenant NUL device to b without allocating.
func (s *State) appendKey(b []byte, d *device) []byte {
	if d.klen == 0 {
		return append(b, s.exts[d.ext].long...)
	}
	return append(b, d.key[:d.klen]...)
}

// prefetchSlot and prefetchDev fetch, without waiting, the table slot of h and then the
// device of the first slot along h's probe sequence with h's tag (see Engine.RateBatch).
// prefetchDev looks at a few slots only, most often in the one cache line prefetchSlot
// fetched; a device further along is not fetched.
func (s *State) prefetchSlot(h uint64) {
	prefetch(uintptr(unsafe.Pointer(&s.mem.table[h&uint64(len(s.mem.table)-1)])))
}

func (s *State) prefetchDev(h uint64) {
	table, tag := s.mem.table, tagOf(h)
	mask := uint64(len(table) - 1)
	var sl slot
	for k := range uint64(4) {
		if sl = table[(h+k)&mask]; sl.tag == tag || sl.tag == 0 {
			break
		}
	}
	if sl.tag != tag {
		return
	}
	// A device spans two or three cache lines; a record reads all of them.
	p := uintptr(unsafe.Pointer(s.dev(sl.idx)))
	prefetch(p)
	prefetch(p + 64)
	prefetch(p + unsafe.Sizeof(device{}) - 1)
}

// lookup returns the index of the device, adding it when new.
func (s *State) lookup(tenant, dev string, h uint64) int32 {
	tag, table := tagOf(h), s.mem.table
	mask := uint64(len(table) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := table[i]
		if sl.tag == 0 {
			break
		}
		if sl.tag == tag {
			if s.is(s.dev(sl.idx), tenant, dev) {
				return sl.idx
			}
		}
	}
	return s.add(tenant, dev, h)
}

func (s *State) add(tenant, dev string, h uint64) int32 {
	if _, ok := s.tenants[tenant]; !ok {
		t := strings.Clone(tenant)
		s.tenants[t] = t
	}
	idx := s.ndev
	s.growPages(idx)
	s.ndev++
	if s.ndev == hugeFrom {
		for _, m := range s.mem.pageMaps {
			m.adviseHuge()
		}
		s.mem.tableMap.adviseHuge()
	}
	d := s.dev(idx)
	*d = device{maxT: math.MinInt64, lastMonth: noMonth, tlen: uint8(min(len(tenant), 255))}
	if n := len(tenant) + 1 + len(dev); n <= inlineKey && len(tenant) < 256 {
		d.klen = uint8(n)
		copy(d.key[:], tenant)
		copy(d.key[len(tenant)+1:], dev)
	} else {
		d.ext = s.newExt()
		s.exts[d.ext].long = tenant + "\x00" + dev
	}
	if 2*int(s.ndev) > len(s.mem.table) {
		s.rehash(2 * len(s.mem.table))
	} else {
		s.insert(h, idx)
	}
	return idx
}

// growPages makes room for device idx. The first page starts small and doubles up to
// pageDevs (moved each time: devices are plain values and no pointer to one is held
// across an add), so a State of a few devices maps and commits a few pages, not the
// 27 MB of a full page; later pages are full at once.
func (s *State) growPages(idx int32) {
	pi, off := int(idx>>pageShift), int(idx&(pageDevs-1))
	n := pageDevs
	switch {
	case pi == len(s.mem.pages) && pi == 0:
		n = firstPageDevs
	case pi == len(s.mem.pages):
	case off == len(s.mem.pages[pi]):
		n = min(2*off, pageDevs)
	default:
		return
	}
	p, m := offHeap[device](n)
	if idx >= hugeFrom {
		m.adviseHuge()
	}
	if pi < len(s.mem.pages) {
		copy(p, s.mem.pages[pi])
		s.mem.pageMaps[pi].free()
		s.mem.pages[pi], s.mem.pageMaps[pi] = p, m
		return
	}
	s.mem.pages = append(s.mem.pages, p)
	s.mem.pageMaps = append(s.mem.pageMaps, m)
}

func (s *State) newExt() int32 {
	if n := len(s.freeExt); n > 0 {
		i := s.freeExt[n-1]
		s.freeExt = s.freeExt[:n-1]
		return i
	}
	s.exts = append(s.exts, devExt{})
	return int32(len(s.exts) - 1)
}

// ext returns d's side record, creating it.
func (s *State) ext(d *device) *devExt {
	if d.ext == 0 {
		d.ext = s.newExt()
	}
	return &s.exts[d.ext]
}

// trimExt gives d's side record back once it holds nothing.
func (s *State) trimExt(d *device) {
	if d.ext != 0 && s.exts[d.ext].empty() {
		s.exts[d.ext] = devExt{}
		s.freeExt = append(s.freeExt, d.ext)
		d.ext = 0
	}
}

func (s *State) insert(h uint64, idx int32) {
	table := s.mem.table
	mask := uint64(len(table) - 1)
	i := h & mask
	for table[i].tag != 0 {
		i = (i + 1) & mask
	}
	table[i] = slot{tag: tagOf(h), idx: idx}
}

func (s *State) rehash(size int) {
	old := s.mem.tableMap
	s.mem.table, s.mem.tableMap = offHeap[slot](size)
	if s.ndev >= hugeFrom {
		s.mem.tableMap.adviseHuge()
	}
	old.free()
	var buf [256]byte
	for i := int32(0); i < s.ndev; i++ {
		d := s.dev(i)
		k := s.appendKey(buf[:0], d)
		t := int(d.tlen)
		if d.klen == 0 {
			t = strings.IndexByte(s.exts[d.ext].long, 0)
		}
		s.insert(s.hash(string(k[:t]), string(k[t+1:])), i)
	}
}

// monthOf is monthOf(ms), remembering the last month's bounds.
func (s *State) monthOf(ms int64) month {
	if ms >= s.curStart && ms < s.curEnd {
		return s.curMonth
	}
	m := monthOf(ms)
	s.curMonth = m
	s.curStart, s.curEnd = m.bounds()
	return m
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
		} else {
			k.tenant = strings.Clone(tenant)
		}
		s.aggs[k] = a
	}
	return a
}

// touchAgg marks a tenant period changed.
func (s *State) touchAgg(tenant string, m month, a *agg) {
	if !a.dirty {
		a.dirty = true
		s.dirtyAggs = append(s.dirtyAggs, aggKey{s.tenants[tenant], m})
	}
}

// touch marks a device changed.
func (s *State) touch(d *device, idx int32) {
	if !d.dirty {
		d.dirty = true
		s.dirtyDevs = append(s.dirtyDevs, idx)
	}
}

// Forget drops what the State keeps for a closed period: its aggregates and the marks
// of devices seen in it. A record of that period arriving later counts as a first sight
// again, so forget only periods that can no longer receive records.
func (s *State) Forget(period string) error {
	m, err := parsePeriod(period)
	if err != nil {
		return err
	}
	for k, a := range s.aggs {
		if k.month == m {
			if a.dirty {
				a.dirty = false
			}
			delete(s.aggs, k)
		}
	}
	for i := int32(0); i < s.ndev; i++ {
		d := s.dev(i)
		more := s.months(d)
		changed := false
		if d.lastMonth == m {
			changed = true
			d.lastMonth = noMonth
			if len(more) > 0 {
				d.lastMonth = more[len(more)-1]
				more = more[:len(more)-1]
			}
		}
		for j := 0; j < len(more); j++ {
			if more[j] == m {
				more = append(more[:j], more[j+1:]...)
				j--
				changed = true
			}
		}
		if changed {
			s.setMonths(d, more)
			s.touch(d, i)
		}
	}
	return nil
}

func (s *State) months(d *device) []month {
	if d.ext == 0 {
		return nil
	}
	return s.exts[d.ext].more
}

func (s *State) setMonths(d *device, m []month) {
	if len(m) == 0 && d.ext == 0 {
		return
	}
	s.ext(d).more = m
	s.trimExt(d)
}

// markSeen records that d was active in m; false if it already was.
func (s *State) markSeen(d *device, m month) bool {
	if d.lastMonth == m {
		return false
	}
	for _, x := range s.months(d) {
		if x == m {
			return false
		}
	}
	if d.lastMonth != noMonth {
		x := s.ext(d)
		x.more = append(x.more, d.lastMonth)
	}
	d.lastMonth = m
	return true
}

func (s *State) at(d *device, i int) *loc {
	switch i {
	case 0:
		return &d.loc0
	case 1:
		return &d.loc1
	}
	return &s.exts[d.ext].extra[i-inlineLocs]
}

const inlineLocs = 2

// maxRuns bounds the location runs a device keeps, so a device entry stays far below a
// Kafka message's size (about 20 bytes a run) whatever a device reports. A device with
// more distinct locations in its window than this is mobile under any sane nomadic_max.
const maxRuns = 1024

// mobility updates d's window with u and returns u's profile (docs/tariffs.md step 3).
//
// The window keeps every key that can count for a record up to t.LateTolerance behind
// the device's newest start_time: a key counts at t while t < last+window, so a run is
// dropped once last+window <= newest-late_tolerance. An older record is priced with what
// is still kept and counted as late.
//
// The profile a record without a location key takes is that of the last record that
// added to the window (a new run, or a run extended) and was not late. A redelivered copy
// adds nothing (its occurrence is inside its run, which is kept as long as it can matter),
// so it changes no other record's profile.
func (s *State) mobility(t *rules.Tariff, d *device, u *record.Usage) rules.Mobility {
	key, ok := locKey(u)
	if !ok {
		return rules.Mobility(d.last)
	}
	ts, w := u.StartTime, t.Window
	late := d.maxT != math.MinInt64 && ts < d.maxT-t.LateTolerance
	if late {
		s.late++
	}
	d.maxT = max(d.maxT, ts)
	merged, changed := -1, false
	for i := range int(d.nloc) {
		l := s.at(d, i)
		if l.key != key || ts < l.first-w || ts > l.last+w {
			continue
		}
		if merged < 0 {
			if ts < l.first || ts > l.last {
				l.first, l.last = min(l.first, ts), max(l.last, ts)
				changed = true
			}
			merged = i
			continue
		}
		// ts bridged two runs of the same key: fold this one into the first.
		m := s.at(d, merged)
		m.first, m.last = min(m.first, l.first), max(m.last, l.last)
		l.last = math.MinInt64 / 2 // pruned below
		changed = true
	}
	if merged < 0 {
		if d.nloc < inlineLocs {
			*s.at(d, int(d.nloc)) = loc{key: key, first: ts, last: ts}
		} else {
			x := s.ext(d)
			x.extra = append(x.extra, loc{key: key, first: ts, last: ts})
		}
		d.nloc++
		changed = true
	}
	n, j := 0, 0
	keepAfter := d.maxT - t.LateTolerance // d.maxT is set: ts was just folded in
	for i := range int(d.nloc) {
		l := *s.at(d, i)
		if l.last+w <= keepAfter && !(l.first <= ts && ts < l.last+w) {
			continue
		}
		*s.at(d, j) = l
		j++
		if l.first <= ts && ts < l.last+w {
			n++
		}
	}
	for j > maxRuns { // a device reporting ever new locations: forget the stalest
		old := 0
		for i := 1; i < j; i++ {
			if s.at(d, i).last < s.at(d, old).last {
				old = i
			}
		}
		*s.at(d, old) = *s.at(d, j-1)
		j--
	}
	d.nloc = uint16(j)
	if d.ext != 0 {
		x := &s.exts[d.ext]
		if j <= inlineLocs {
			x.extra = x.extra[:0]
		} else {
			clear(x.extra[j-inlineLocs:])
			x.extra = x.extra[:j-inlineLocs]
		}
		if len(x.extra) == 0 {
			x.extra = nil
		}
		s.trimExt(d)
	}
	p := rules.Mobile
	switch {
	case n <= t.StationaryMax:
		p = rules.Stationary
	case n <= t.NomadicMax:
		p = rules.Nomadic
	}
	if changed && !late {
		d.last = uint8(p)
	}
	return p
}

// locKey hashes the location key of docs/tariffs.md: cell, else g:<floor(lat*100)>:<floor(lon*100)>,
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
