package httpin

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"fleetmeter/internal/swar"
	"fleetmeter/record"
)

// lineReader decodes the lines of a JSON Lines body. Most lines are what a gateway's
// JSON encoder writes: the usage.v1 names as they are, strings without escapes, plain
// numbers, times in the Z form. Those are read by fast, one pass with no general
// machinery; any line it is not sure about (escapes, null, a name in another case or
// unknown, a repeated name, exponents, long or odd numbers, trailing data) it gives up
// on, and record.JSONLineReader, the owner of the usage.v1 JSON rules, reads that line
// from the start. fast accepts a subset of what the full parser accepts and yields the
// same record for it (TestFastLineMatchesFull, FuzzFastLine), so every refusal, its
// reason and its message stay the full parser's.
type lineReader struct {
	full   record.JSONLineReader
	ns     string // the event id namespace, "http:<tenant>:"
	tenant string // the key's tenant: a line naming it gets this string, not a copy

	// arena holds the bytes of strings given out: appended to, never written again once
	// a string points into it (records outlive the request; a full arena is left to them).
	arena []byte
	// interned maps a string value (not event ids) to a string already in the arena, so
	// the devices, cells and PLMNs a gateway repeats cost neither bytes nor a copy.
	interned [256]internSlot
	// last is, by string field, the value the last line read fast gave it.
	last [numFields]lastValue
	// order is the fields of the last line read fast, in its order: the guess for the next.
	order  [numFields]uint8
	norder int
	// hour is the last Z-form time's first 13 bytes (date and hour) and their instant.
	hourKey [13]byte
	hourMs  int64
	hourOK  bool

	noFast bool // tests: every line through the full parser
}

// reset prepares r for a request of tenant whose event ids take namespace ns.
func (r *lineReader) reset(tenant, ns string) {
	r.tenant, r.ns = tenant, ns
	r.full.NS = ns
}

// parseInto decodes line into *u (the full parser's contract: on an error *u holds no
// meaningful record).
func (r *lineReader) parseInto(line []byte, u *record.Usage) error {
	if !r.noFast && r.fast(line, u) {
		return nil
	}
	return r.full.ParseInto(line, u)
}

// The usage.v1 fields, as fast numbers them.
const (
	kEventID = iota
	kTenant
	kDevice
	kSource
	kStartTime
	kEndTime
	kReceivedTime
	kBytesUp
	kBytesDown
	kDurationMs
	kEvents
	kRatingGroup
	kPLMN
	kCell
	kLat
	kLon
	kRAT
	kSliceSST
	kSliceSD
	numFields
)

// keyColon is each field's name followed by its closing quote and a colon, what a
// canonical line has after the opening quote of the key: record's names, in its order
// (which the k constants above follow).
var keyColon = func() (t [numFields]string) {
	names := record.UsageJSONFields()
	if len(names) != numFields {
		panic("httpin: the fast path numbers " + strconv.Itoa(numFields) + " usage.v1 fields, record has " + strconv.Itoa(len(names)))
	}
	for f, name := range names {
		t[f] = name + `":`
	}
	return t
}()

// keyWords is keyColon as two little-endian words with the masks of the bytes they
// hold (every name with its `":` fits sixteen bytes).
var keyWords = func() (t [numFields]struct {
	lo, hi, mlo, mhi uint64
	n                int
}) {
	for f, kc := range keyColon {
		var b [16]byte
		copy(b[:], kc)
		t[f].lo, t[f].hi = binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
		t[f].mlo, t[f].mhi = swar.LowBytes(len(kc)), swar.LowBytes(len(kc)-8)
		t[f].n = len(kc)
	}
	return t
}()

// fieldOf is the field a key names exactly, or -1. Only a line whose names stand in
// another order than the previous line's needs it.
func fieldOf(key []byte) int {
	for f, kc := range keyColon {
		if len(kc) == len(key)+2 && string(kc[:len(key)]) == string(key) {
			return f
		}
	}
	return -1
}

// fast decodes a line it is sure about into *u and reports true; false leaves *u
// partly written and the line to the full parser. line is trimmed of spaces.
func (r *lineReader) fast(d []byte, u *record.Usage) bool {
	n := len(d)
	if n < 2 || d[0] != '{' || d[n-1] != '}' {
		return false
	}
	*u = record.Usage{} // built in place (a record copied costs as much as its zeroing)
	var (
		seen     uint32
		order    [numFields]uint8
		nkeys    int
		times    [3]int64 // start_time, end_time, received_time
		lat, lon float64
	)
	i := skipSpace(d, 1)
	for {
		// A key: the one the previous line had here, else any usage.v1 name as it is.
		if i >= n || d[i] != '"' {
			return false
		}
		i++
		f := -1
		if nkeys < r.norder {
			pf := r.order[nkeys]
			k := &keyWords[pf]
			if i+16 <= n {
				if binary.LittleEndian.Uint64(d[i:])&k.mlo == k.lo && binary.LittleEndian.Uint64(d[i+8:])&k.mhi == k.hi {
					f = int(pf)
					i += k.n
				}
			} else if i+k.n <= n && string(d[i:i+k.n]) == keyColon[pf] { // near the line's end
				f = int(pf)
				i += k.n
			}
		}
		if f < 0 {
			q := indexQuote(d, i)
			if q < 0 {
				return false
			}
			if f = fieldOf(d[i:q]); f < 0 {
				return false
			}
			i = skipSpace(d, q+1)
			if i >= n || d[i] != ':' {
				return false
			}
			i++
		}
		if seen&(1<<f) != 0 {
			return false // a repeated name: the full parser knows which value wins
		}
		seen |= 1 << f
		if nkeys < len(order) {
			order[nkeys] = uint8(f)
		}
		nkeys++
		if i < n && d[i] <= ' ' {
			i = skipSpace(d, i)
		}
		if i >= n {
			return false
		}
		switch f {
		case kBytesUp, kBytesDown, kDurationMs, kEvents, kRatingGroup, kSliceSST:
			v, end, ok := r.number(f, d, i, false)
			if !ok {
				return false
			}
			i = end
			switch f {
			case kBytesUp:
				u.BytesUp = v
			case kBytesDown:
				u.BytesDown = v
			case kDurationMs:
				u.DurationMs = v
			case kEvents:
				u.Events = v
			case kRatingGroup:
				if v > math.MaxUint32 {
					return false
				}
				u.RatingGroup = uint32(v)
			case kSliceSST:
				if v > math.MaxUint8 {
					return false
				}
				u.SliceSST, u.HasSlice = uint8(v), true
			}
		case kLat, kLon:
			bits, end, ok := r.number(f, d, i, true)
			if !ok {
				return false
			}
			i = end
			v := math.Float64frombits(bits)
			if f == kLat {
				lat = v
			} else {
				lon = v
			}
		case kStartTime, kEndTime, kReceivedTime:
			if d[i] != '"' {
				return false
			}
			// A time read good holds no quote, backslash or control byte: the Z form
			// needs no string scan first.
			end := i + 1 + len("2006-01-02T15:04:05Z")
			if end >= n || d[end] != '"' {
				var ok bool
				if end, ok = plainString(d, i+1); !ok {
					return false
				}
			}
			t, ok := r.time(d[i+1 : end])
			if !ok {
				return false // empty (absent, or missing for start_time) or bad: not ours to word
			}
			times[f-kStartTime] = t
			i = end + 1
		default: // the other string fields
			if d[i] != '"' {
				return false
			}
			// The value the previous line gave the field, closing quote included: that
			// string again (it holds no quote, so the first quote after it ends it).
			if lv := &r.last[f]; lv.mlo != 0 && (i+17 <= n &&
				binary.LittleEndian.Uint64(d[i+1:])&lv.mlo == lv.lo && binary.LittleEndian.Uint64(d[i+9:])&lv.mhi == lv.hi ||
				i+17 > n && i+2+len(lv.s) <= n && string(d[i+1:i+1+len(lv.s)]) == lv.s && d[i+1+len(lv.s)] == '"') {
				*stringField(u, f) = lv.s
				i += len(lv.s) + 2
				break
			}
			end, ok := plainString(d, i+1)
			if !ok {
				return false
			}
			// Kept in the arena and the tables even if the line is given up later: the
			// strings are right for their bytes all the same.
			if f == kEventID {
				if end > i+1 {
					u.EventID = r.eventID(d[i+1 : end])
				}
			} else {
				*stringField(u, f) = r.value(f, d[i+1:end])
			}
			i = end + 1
		}
		if i < n && d[i] <= ' ' {
			i = skipSpace(d, i)
		}
		if i >= n {
			return false
		}
		if d[i] == '}' {
			if i != n-1 {
				return false // something after the object: the full parser's to judge
			}
			break
		}
		if d[i] != ',' {
			return false
		}
		if i++; i < n && d[i] <= ' ' {
			i = skipSpace(d, i)
		}
	}

	// start_time is required; end_time defaults to it.
	if seen&(1<<kStartTime) == 0 {
		return false
	}
	u.StartTime, u.EndTime, u.ReceivedTime = times[0], times[0], times[2]
	if seen&(1<<kEndTime) != 0 {
		u.EndTime = times[1]
	}
	const pos = 1<<kLat | 1<<kLon
	switch seen & pos {
	case pos:
		u.Lat, u.Lon, u.HasPos = lat, lon, true
	case 0:
	default:
		return false
	}

	r.order, r.norder = order, min(nkeys, len(order))
	return true
}

// lastValue is the value a field had in the last line read fast, when it took at most
// 15 bytes: those bytes and the one that ended the value (a string's closing quote, the
// delimiter after a number) as two little-endian words with their masks (mlo 0: none),
// and what they read as: s for a string; for a number v (a float's bits) and n, its length.
type lastValue struct {
	lo, hi, mlo, mhi uint64
	s                string
	v                uint64
	n                int
}

// number reads the number of field f at d[i:] (a float's bits when float): the last
// line's when the bytes are the same up to the delimiter after it, else parsed and
// remembered. end is where the delimiter lies.
func (r *lineReader) number(f int, d []byte, i int, float bool) (v uint64, end int, ok bool) {
	lv := &r.last[f]
	if lv.sameAt(d, i) {
		return lv.v, i + lv.n, true
	}
	if float {
		var x float64
		x, end, ok = plainFloat(d, i)
		v = math.Float64bits(x)
	} else {
		v, end, ok = plainUint(d, i)
	}
	if ok {
		lv.number(d[i:end+1], v)
	}
	return v, end, ok
}

// sameAt reports whether the number at d[i:] is lv's, byte for byte up to the delimiter
// after it, so it reads as lv.v. A number near the line's end (less than sixteen bytes
// left) is read anew.
func (lv *lastValue) sameAt(d []byte, i int) bool {
	return lv.mlo != 0 && i+16 <= len(d) &&
		binary.LittleEndian.Uint64(d[i:])&lv.mlo == lv.lo && binary.LittleEndian.Uint64(d[i+8:])&lv.mhi == lv.hi
}

// number remembers the number b (its text and the delimiter that ended it) read as v;
// not one at the very end of the buffer (sameAt needs sixteen bytes there anyway).
func (lv *lastValue) number(b []byte, v uint64) {
	n := len(b)
	if n > 16 || cap(b) < 16 {
		lv.mlo = 0
		return
	}
	w := b[:16]
	lv.mlo, lv.mhi, lv.v, lv.n = swar.LowBytes(n), swar.LowBytes(n-8), v, n-1
	lv.lo, lv.hi = binary.LittleEndian.Uint64(w)&lv.mlo, binary.LittleEndian.Uint64(w[8:])&lv.mhi
}

// value is the string of bytes v, a value of string field f, interned and remembered
// as the field's last value. v is followed in its buffer by its closing quote.
func (r *lineReader) value(f int, v []byte) string {
	var s string
	if f == kTenant && string(v) == r.tenant {
		s = r.tenant
	} else {
		s = r.intern(v)
	}
	lv := &r.last[f]
	n := len(v)
	if n > 15 {
		lv.mlo = 0
		return s
	}
	lv.lo, lv.hi = lowWords(v[:n+1], n+1) // the value and its closing quote
	lv.mlo, lv.mhi, lv.s = swar.LowBytes(n+1), swar.LowBytes(n+1-8), s
	return s
}

// lowWords is the first n (at most 16) bytes of b as two little-endian words, the rest
// masked off: read where they lie when b's buffer holds sixteen bytes, else from a copy.
func lowWords(b []byte, n int) (lo, hi uint64) {
	var w []byte
	if cap(b) >= 16 {
		w = b[:16]
	} else {
		var c [16]byte
		copy(c[:], b[:n])
		w = c[:]
	}
	return binary.LittleEndian.Uint64(w) & swar.LowBytes(n), binary.LittleEndian.Uint64(w[8:]) & swar.LowBytes(n-8)
}

// stringField is the string field of u that f names (not event_id).
func stringField(u *record.Usage, f int) *string {
	switch f {
	case kTenant:
		return &u.Tenant
	case kDevice:
		return &u.Device
	case kSource:
		return &u.Source
	case kPLMN:
		return &u.PLMN
	case kCell:
		return &u.Cell
	case kRAT:
		return &u.RAT
	}
	return &u.SliceSD
}

// skipSpace skips JSON whitespace from d[i].
func skipSpace(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n') {
		i++
	}
	return i
}

// indexQuote is the index of the first '"' from d[i], or -1.
func indexQuote(d []byte, i int) int {
	for ; i < len(d); i++ {
		if d[i] == '"' {
			return i
		}
	}
	return -1
}

// Eight-byte lanes of plainString's word test.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainString finds the closing quote of the string whose first byte is d[i], for a
// string that reads as itself: no escape, no control character, valid UTF-8.
func plainString(d []byte, i int) (end int, ok bool) {
	start := i
	var high uint64 // OR of the words passed: a byte >= 0x80 calls for the UTF-8 check
	// Eight bytes at a time: the lowest lane flagged as a quote, a backslash or a byte
	// below 0x20 is exact (a borrow only flags lanes above a true one).
	for i+8 <= len(d) {
		w := binary.LittleEndian.Uint64(d[i:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		if m := ((q-ones)&^q | (bs-ones)&^bs | (w-ones*0x20)&^w) & highs; m != 0 {
			k := bits.TrailingZeros64(m) / 8
			i += k
			if d[i] != '"' {
				return 0, false
			}
			if (high|w&swar.LowBytes(k))&highs != 0 && !utf8.Valid(d[start:i]) {
				return 0, false
			}
			return i, true
		}
		high |= w
		i += 8
	}
	for ; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			return i, high&highs == 0 || utf8.Valid(d[start:i])
		case c == '\\' || c < 0x20:
			return 0, false
		case c >= utf8.RuneSelf:
			high |= highs
		}
	}
	return 0, false
}

// plainUint reads an unsigned integer without sign, fraction or exponent, ended by a
// delimiter, of at most 19 digits (so it cannot overflow; longer ones go to the full
// parser).
func plainUint(d []byte, i int) (v uint64, end int, ok bool) {
	start := i
	v, i = digitRun(d, i, 0)
	if nd := i - start; nd == 0 || nd > 19 || (d[start] == '0' && nd > 1) || !delimiter(d, i) {
		return 0, 0, false
	}
	return v, i, true
}

// digitRun reads the decimal digits from d[i] on into v (v*10 + digit each; the caller
// bounds how many) and returns where they end.
func digitRun(d []byte, i int, v uint64) (uint64, int) {
	for ; i < len(d); i++ {
		c := d[i] - '0'
		if c > 9 {
			break
		}
		v = v*10 + uint64(c)
	}
	return v, i
}

// delimiter reports whether d[i] may follow a value: whitespace, ',' or '}'.
func delimiter(d []byte, i int) bool {
	if i >= len(d) {
		return false
	}
	switch d[i] {
	case ',', '}', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// pow10f holds the powers of ten a float64 holds exactly.
var pow10f = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15}

// plainFloat reads a number of at most 15 digits without exponent: mantissa and power
// of ten are exact, so the one division rounds correctly (strconv's own fast path).
func plainFloat(d []byte, i int) (v float64, end int, ok bool) {
	neg := i < len(d) && d[i] == '-'
	if neg {
		i++
	}
	intStart := i
	mant, i := digitRun(d, i, 0)
	digits, frac := i-intStart, 0
	if digits == 0 || (d[intStart] == '0' && digits > 1) {
		return 0, 0, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		mant, i = digitRun(d, i, mant)
		if i == j {
			return 0, 0, false
		}
		frac = i - j
		digits += frac
	}
	if digits > 15 || !delimiter(d, i) {
		return 0, 0, false
	}
	v = float64(mant) / pow10f[frac]
	if neg {
		v = -v
	}
	return v, i, true
}

// time reads an RFC 3339 time. The Z form sharing its date and hour with the last one
// read costs two word compares and four digits; any other form goes to
// record.ParseRFC3339, which owns the format.
func (r *lineReader) time(s []byte) (int64, bool) {
	if len(s) == len("2006-01-02T15:04:05Z") && s[19] == 'Z' && s[13] == ':' && s[16] == ':' {
		m, ok1 := digits2(s[14], s[15])
		sec, ok2 := digits2(s[17], s[18])
		if ok1 && ok2 && m <= 59 && sec <= 59 {
			within := int64(m*60+sec) * 1000
			if r.hourOK && string(s[:13]) == string(r.hourKey[:]) {
				return r.hourMs + within, true
			}
			ms, ok := record.ParseRFC3339(s)
			if ok {
				copy(r.hourKey[:], s[:13])
				r.hourMs, r.hourOK = ms-within, true
			}
			return ms, ok
		}
	}
	return record.ParseRFC3339(s)
}

func digits2(a, b byte) (int, bool) {
	if a < '0' || a > '9' || b < '0' || b > '9' {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}

// arenaBytes is the size of an arena: the event ids of some two hundred records.
const arenaBytes = 8 << 10

// store returns the concatenation of a and b as a string in the arena.
func (r *lineReader) store(a string, b []byte) string {
	n := len(a) + len(b)
	if cap(r.arena)-len(r.arena) < n {
		r.arena = make([]byte, 0, max(arenaBytes, n))
	}
	off := len(r.arena)
	r.arena = append(append(r.arena, a...), b...)
	return unsafe.String(&r.arena[off], n)
}

// eventID is a line's event_id in the namespace (kept as is when already in it).
func (r *lineReader) eventID(id []byte) string {
	if len(id) >= len(r.ns) && string(id[:len(r.ns)]) == r.ns {
		return r.store("", id)
	}
	return r.store(r.ns, id)
}

// intern returns v as a string, the one given out before for the same bytes when the
// table still holds it. A value of up to sixteen bytes is told by two words read from
// the body buffer it lies in (what follows it there masked off), a longer one by its bytes.
func (r *lineReader) intern(v []byte) string {
	n := len(v)
	if n == 0 {
		return ""
	}
	var lo, hi uint64
	if n <= 16 && cap(v) >= 16 { // inline: lowWords is not
		w := v[:16]
		lo, hi = binary.LittleEndian.Uint64(w)&swar.LowBytes(n), binary.LittleEndian.Uint64(w[8:])&swar.LowBytes(n-8)
	} else {
		lo, hi = lowWords(v, min(n, 16))
	}
	slot := &r.interned[((lo^hi*0xff51afd7ed558ccd)*0x9E3779B97F4A7C15+uint64(n))>>56]
	if slot.n == n && slot.lo == lo && slot.hi == hi && (n <= 16 || slot.s == string(v)) {
		return slot.s
	}
	s := r.store("", v)
	*slot = internSlot{lo: lo, hi: hi, n: n, s: s}
	return s
}

// internSlot is a string of the intern table with its first sixteen bytes as words.
type internSlot struct {
	lo, hi uint64
	n      int
	s      string
}
