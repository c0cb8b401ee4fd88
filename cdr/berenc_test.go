package cdr

import (
	"time"
)

// A test-only BER encoder, to build cases the shared vectors do not cover: indefinite
// lengths, multi-byte tags, unknown fields, non-minimal lengths.

type node struct {
	class  byte // classUniversal ... classPrivate
	cons   bool
	tag    uint32
	val    []byte // primitive content
	kids   []node // constructed content
	indef  bool   // indefinite length (constructed only)
	lenLen int    // force the long length form with this many octets
	raw    []byte // emitted verbatim instead of a TLV (damage)
}

func (n node) encode(b []byte) []byte {
	if n.raw != nil {
		return append(b, n.raw...)
	}
	id := n.class
	if n.cons {
		id |= 0x20
	}
	if n.tag < 31 {
		b = append(b, id|byte(n.tag))
	} else {
		b = append(b, id|0x1F)
		var groups []byte
		for v := n.tag; ; v >>= 7 {
			groups = append([]byte{byte(v & 0x7F)}, groups...)
			if v < 0x80 {
				break
			}
		}
		for i := range len(groups) - 1 {
			groups[i] |= 0x80
		}
		b = append(b, groups...)
	}
	var content []byte
	if n.cons {
		for _, k := range n.kids {
			content = k.encode(content)
		}
	} else {
		content = n.val
	}
	if n.indef {
		b = append(b, 0x80)
		b = append(b, content...)
		return append(b, 0, 0)
	}
	b = appendLength(b, len(content), n.lenLen)
	return append(b, content...)
}

func appendLength(b []byte, n, lenLen int) []byte {
	if n < 0x80 && lenLen == 0 {
		return append(b, byte(n))
	}
	k := lenLen
	if k == 0 {
		for v := n; v > 0; v >>= 8 {
			k++
		}
	}
	b = append(b, 0x80|byte(k))
	for i := k - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// indefAll switches every constructed node under n to indefinite lengths.
func indefAll(n node) node {
	if n.cons {
		n.indef = true
		kids := make([]node, len(n.kids))
		for i, k := range n.kids {
			kids[i] = indefAll(k)
		}
		n.kids = kids
	}
	return n
}

func ctx(tag uint32, kids ...node) node {
	return node{class: classContext, cons: true, tag: tag, kids: kids}
}
func seq(kids ...node) node          { return node{class: classUniversal, cons: true, tag: 16, kids: kids} }
func prim(tag uint32, v []byte) node { return node{class: classContext, tag: tag, val: v} }
func str(tag uint32, s string) node  { return prim(tag, []byte(s)) }

func intNode(tag uint32, v int64) node {
	var b []byte
	for i := 7; i > 0; i-- { // minimal two's complement
		top := byte(v >> (8 * i))
		next := byte(v >> (8 * (i - 1)))
		if (top == 0 && next&0x80 == 0) || (top == 0xFF && next&0x80 != 0) {
			continue
		}
		for j := i; j >= 0; j-- {
			b = append(b, byte(v>>(8*j)))
		}
		return prim(tag, b)
	}
	return prim(tag, []byte{byte(v)})
}

func uintNode(tag uint32, v uint64) node {
	var b []byte
	for i := 7; i >= 0; i-- {
		c := byte(v >> (8 * i))
		if len(b) == 0 && c == 0 && i > 0 {
			continue
		}
		if len(b) == 0 && c&0x80 != 0 {
			b = append(b, 0)
		}
		b = append(b, c)
	}
	return prim(tag, b)
}

// bcd encodes a TS 32.298 TimeStamp in t's zone.
func bcd(t time.Time) []byte {
	d := func(v int) byte { return byte(v/10)<<4 | byte(v%10) }
	_, off := t.Zone()
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	return []byte{d(t.Year() % 100), d(int(t.Month())), d(t.Day()), d(t.Hour()), d(t.Minute()), d(t.Second()), sign, d(off / 3600), d(off % 3600 / 60)}
}

// fileHeader builds a TS 32.297 file around CDR bodies (release 7 headers, 54 octets).
func buildFile(bodies [][]byte, mutate func(h []byte)) []byte {
	b := EncodeFile(bodies)
	if mutate != nil {
		mutate(b)
	}
	return b
}
