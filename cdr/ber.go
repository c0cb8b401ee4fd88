package cdr

import "strconv"

// BER classes as they sit in the top two bits of an identifier octet.
const (
	classUniversal   = 0x00
	classApplication = 0x40
	classContext     = 0x80
	classPrivate     = 0xC0
)

// maxDepth bounds the nesting of indefinite-length elements, which are scanned
// recursively to find their end-of-contents: hostile input must not grow the stack.
const maxDepth = 48

// tlv locates one BER element in the input. Offsets are absolute in reader.b.
type tlv struct {
	off   int    // first identifier octet
	start int    // first content octet
	end   int    // one past the content (the end-of-contents octets for indefinite lengths)
	next  int    // one past the whole element
	tag   uint32 // tag number
	class uint8  // classUniversal ... classPrivate
	cons  bool   // constructed
}

// reader reads BER elements from one input with a sticky error: after the first failure
// every read returns zero values and the failure (offset and message) is kept, so a
// decoder reads many fields and checks once.
type reader struct {
	b      []byte
	failed bool
	errOff int
	errMsg string
}

func (r *reader) reset(b []byte) {
	*r = reader{b: b}
}

func (r *reader) fail(off int, msg string) {
	if !r.failed {
		r.failed, r.errOff, r.errMsg = true, off, msg
	}
}

// elem reads the element starting at off, which must end at or before limit. The common
// case (tag below 31, length below 128) takes the inlined fast path.
func (r *reader) elem(off, limit int) tlv {
	if b := r.b; !r.failed && off >= 0 && limit <= len(b) && off+2 <= limit {
		c, n := b[off], int(b[off+1])
		if c&0x1F != 0x1F && n < 0x80 && n <= limit-off-2 {
			s := off + 2
			return tlv{off: off, start: s, end: s + n, next: s + n, tag: uint32(c & 0x1F), class: c & 0xC0, cons: c&0x20 != 0}
		}
	}
	return r.elemDepth(off, limit, 0)
}

func (r *reader) elemDepth(off, limit, depth int) tlv {
	if r.failed {
		return tlv{}
	}
	b := r.b
	if off >= limit {
		r.fail(off, "unexpected end of data, expected a tag")
		return tlv{}
	}
	t := tlv{off: off}
	p := off
	c := b[p]
	p++
	t.class = c & 0xC0
	t.cons = c&0x20 != 0
	t.tag = uint32(c & 0x1F)
	if t.tag == 0x1F { // high tag number form: base 128, most significant group first
		t.tag = 0
		for n := 0; ; n++ {
			if p >= limit {
				r.fail(off, "truncated tag")
				return tlv{}
			}
			if n == 4 {
				r.fail(off, "tag number longer than 4 octets")
				return tlv{}
			}
			c = b[p]
			p++
			t.tag = t.tag<<7 | uint32(c&0x7F)
			if c&0x80 == 0 {
				break
			}
		}
	}
	if p >= limit {
		r.fail(off, "truncated length")
		return tlv{}
	}
	c = b[p]
	p++
	var n int
	switch {
	case c < 0x80:
		n = int(c)
	case c == 0x80:
		return r.indefinite(t, p, limit, depth)
	case c == 0xFF:
		r.fail(off, "reserved length octet 0xff")
		return tlv{}
	default:
		k := int(c & 0x7F)
		if k > 4 {
			r.fail(off, "length in "+strconv.Itoa(k)+" octets is not supported")
			return tlv{}
		}
		if k > limit-p {
			r.fail(off, "truncated length")
			return tlv{}
		}
		for i := 0; i < k; i++ {
			n = n<<8 | int(b[p+i])
		}
		p += k
	}
	if n > limit-p {
		r.fail(off, "length "+strconv.Itoa(n)+" exceeds the "+strconv.Itoa(limit-p)+" bytes left")
		return tlv{}
	}
	t.start, t.end, t.next = p, p+n, p+n
	return t
}

// indefinite finds the end-of-contents of an indefinite-length element whose content
// starts at p, by walking its children.
func (r *reader) indefinite(t tlv, p, limit, depth int) tlv {
	if !t.cons {
		r.fail(t.off, "indefinite length on a primitive element")
		return tlv{}
	}
	if depth >= maxDepth {
		r.fail(t.off, "indefinite lengths nested too deep")
		return tlv{}
	}
	t.start = p
	for q := p; ; {
		if q+1 < limit && r.b[q] == 0 && r.b[q+1] == 0 {
			t.end, t.next = q, q+2
			return t
		}
		if q >= limit {
			r.fail(t.off, "indefinite length without end-of-contents")
			return tlv{}
		}
		ch := r.elemDepth(q, limit, depth+1)
		if r.failed {
			return tlv{}
		}
		q = ch.next
	}
}

// prim returns the content of a primitive element.
func (r *reader) prim(t tlv, what string) []byte {
	if r.failed {
		return nil
	}
	if t.cons {
		r.fail(t.off, what+": constructed encoding is not supported")
		return nil
	}
	return r.b[t.start:t.end]
}

// int64 reads an INTEGER of at most 8 octets (two's complement).
func (r *reader) int64(t tlv, what string) int64 {
	v := r.prim(t, what)
	if r.failed {
		return 0
	}
	if len(v) == 0 || len(v) > 8 {
		r.fail(t.off, what+": INTEGER of "+strconv.Itoa(len(v))+" octets")
		return 0
	}
	x := int64(int8(v[0]))
	for _, c := range v[1:] {
		x = x<<8 | int64(c)
	}
	return x
}

// uint reads a non-negative INTEGER no larger than max (up to 2^64-1, 9 octets with a
// leading zero).
func (r *reader) uint(t tlv, what string, max uint64) uint64 {
	if !r.failed && !t.cons && t.end-t.start <= 8 && t.end > t.start && t.end <= len(r.b) && r.b[t.start]&0x80 == 0 {
		var x uint64
		for _, c := range r.b[t.start:t.end] {
			x = x<<8 | uint64(c)
		}
		if x <= max {
			return x
		}
	}
	return r.uintSlow(t, what, max)
}

func (r *reader) uintSlow(t tlv, what string, max uint64) uint64 {
	v := r.prim(t, what)
	if r.failed {
		return 0
	}
	if len(v) == 0 || v[0]&0x80 != 0 {
		r.fail(t.off, what+": not a non-negative INTEGER")
		return 0
	}
	if len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) > 8 {
		r.fail(t.off, what+": INTEGER out of range")
		return 0
	}
	var x uint64
	for _, c := range v {
		x = x<<8 | uint64(c)
	}
	if x > max {
		r.fail(t.off, what+": "+strconv.FormatUint(x, 10)+" out of range")
		return 0
	}
	return x
}

// timestamp reads a TS 32.298 TimeStamp: OCTET STRING (SIZE(9)) holding
// YYMMDDhhmmss in BCD, then the ASCII sign of the UTC offset, then its hhmm in BCD.
// It returns milliseconds since the Unix epoch, UTC. YY is taken as 20YY.
func (r *reader) timestamp(t tlv, what string) int64 {
	v := r.prim(t, what)
	if r.failed {
		return 0
	}
	if len(v) != 9 {
		r.fail(t.off, what+": TimeStamp of "+strconv.Itoa(len(v))+" octets, want 9")
		return 0
	}
	var d [8]int
	for i, j := 0, 0; i < 9; i++ {
		if i == 6 {
			continue
		}
		hi, lo := int(v[i]>>4), int(v[i]&0x0F)
		if hi > 9 || lo > 9 {
			r.fail(t.off, what+": TimeStamp is not BCD")
			return 0
		}
		d[j] = hi*10 + lo
		j++
	}
	year, month, day, hour, min, sec, tzh, tzm := 2000+d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
	var sign int64
	switch v[6] {
	case '+':
		sign = 1
	case '-':
		sign = -1
	default:
		r.fail(t.off, what+": TimeStamp UTC offset sign is not + or -")
		return 0
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || min > 59 || sec > 59 || tzh > 23 || tzm > 59 {
		r.fail(t.off, what+": TimeStamp out of range")
		return 0
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+min*60+sec)
	secs -= sign * int64(tzh*3600+tzm*60)
	return secs * 1000
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil counts days from 1970-01-01 to the proleptic Gregorian date
// (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}
