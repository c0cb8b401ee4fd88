package payload

import (
	"math"
	"strconv"
	"unicode/utf8"

	"fleetmeter/record"
)

// cborReader walks CBOR (RFC 8949) items without allocating: SenML needs only an array of
// maps of integer keys to scalars, so that is all it accepts. Tags, indefinite-length
// strings and nesting beyond a pack's two levels are refused.
type cborReader struct {
	data []byte
	pos  int
}

const cborBreak = 0xff

func (c *cborReader) fail(msg string) *record.InvalidError {
	return invalid(ReasonBadCBOR, msg+" at offset "+strconv.Itoa(c.pos))
}

// head reads an item head: major type, argument, and whether the length is indefinite.
func (c *cborReader) head() (major byte, arg uint64, indef bool, err *record.InvalidError) {
	if c.pos >= len(c.data) {
		return 0, 0, false, c.fail("unexpected end")
	}
	b := c.data[c.pos]
	major, ai := b>>5, b&0x1f
	c.pos++
	switch {
	case ai < 24:
		return major, uint64(ai), false, nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(c.data)-c.pos < n {
			return 0, 0, false, c.fail("unexpected end")
		}
		for _, x := range c.data[c.pos : c.pos+n] {
			arg = arg<<8 | uint64(x)
		}
		c.pos += n
		return major, arg, false, nil
	case ai == 31 && (major == 4 || major == 5 || major == 2 || major == 3):
		return major, 0, true, nil
	}
	c.pos--
	return 0, 0, false, c.fail("malformed item head")
}

// isBreak consumes a break stop code if it is next.
func (c *cborReader) isBreak() bool {
	if c.pos < len(c.data) && c.data[c.pos] == cborBreak {
		c.pos++
		return true
	}
	return false
}

// container reads an array (major 4) or map (major 5) head; n < 0 means indefinite.
func (c *cborReader) container(want byte, what string) (int, *record.InvalidError) {
	at := c.pos
	major, arg, indef, err := c.head()
	if err != nil {
		return 0, err
	}
	if major != want {
		c.pos = at
		return 0, c.fail("expected " + what)
	}
	if indef {
		return -1, nil
	}
	if arg > uint64(len(c.data)) { // every element takes at least one byte
		c.pos = at
		return 0, c.fail(what + " longer than the payload")
	}
	return int(arg), nil
}

// scalar is one decoded scalar value.
type cborScalar struct {
	major byte // 0/1 integer, 2 bytes, 3 text, 7 simple or float
	n     num  // integers and floats
	b     []byte
	bool  int8 // -1 false, 1 true, 0 neither
}

func (c *cborReader) scalar() (cborScalar, *record.InvalidError) {
	at := c.pos
	major, arg, indef, err := c.head()
	if err != nil {
		return cborScalar{}, err
	}
	switch major {
	case 0:
		return cborScalar{major: 0, n: num{kind: numInt, u: arg}}, nil
	case 1:
		return cborScalar{major: 1, n: num{kind: numInt, neg: true, u: arg}}, nil
	case 2, 3:
		if indef {
			c.pos = at
			return cborScalar{}, c.fail("indefinite-length strings are not supported")
		}
		if arg > uint64(len(c.data)-c.pos) {
			return cborScalar{}, c.fail("string longer than the payload")
		}
		b := c.data[c.pos : c.pos+int(arg)]
		c.pos += int(arg)
		if major == 3 && !utf8.Valid(b) {
			return cborScalar{}, c.fail("text string is not UTF-8")
		}
		return cborScalar{major: major, b: b}, nil
	case 7:
		ai := c.data[at] & 0x1f
		switch {
		case ai == 20:
			return cborScalar{major: 7, bool: -1}, nil
		case ai == 21:
			return cborScalar{major: 7, bool: 1}, nil
		case ai == 25:
			return cborScalar{major: 7, n: num{kind: numFloat, f: halfToFloat(uint16(arg))}}, nil
		case ai == 26:
			return cborScalar{major: 7, n: num{kind: numFloat, f: float64(math.Float32frombits(uint32(arg)))}}, nil
		case ai == 27:
			return cborScalar{major: 7, n: num{kind: numFloat, f: math.Float64frombits(arg)}}, nil
		}
		c.pos = at
		return cborScalar{}, c.fail("unsupported simple value")
	case 6:
		c.pos = at
		return cborScalar{}, c.fail("tags are not supported")
	}
	c.pos = at
	return cborScalar{}, c.fail("expected a scalar")
}

// halfToFloat decodes an IEEE 754 half-precision float.
func halfToFloat(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var f float64
	switch exp {
	case 0:
		f = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			f = math.Inf(1)
		} else {
			f = math.NaN()
		}
	default:
		f = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		f = -f
	}
	return f
}

// parseSenMLCBOR decodes a SenML CBOR pack (RFC 8428 section 6).
func (p *Parser) parseSenMLCBOR(data []byte, into []record.Usage) ([]record.Usage, *record.InvalidError) {
	c := cborReader{data: data}
	p.senmlReset()
	n, err := c.container(4, "array")
	if err != nil {
		return into, err
	}
	var r senmlRec
	for i := 0; n < 0 || i < n; i++ {
		if n < 0 && c.isBreak() {
			break
		}
		if i >= p.lim.MaxRecords {
			return into, invalid(ReasonTooManyRecords, "more than "+strconv.Itoa(p.lim.MaxRecords)+" records")
		}
		r = senmlRec{}
		if err := c.record(&r); err != nil {
			return into, err
		}
		if into, err = p.senmlApply(&r, into); err != nil {
			return into, err
		}
	}
	if c.pos != len(c.data) {
		return into, c.fail("trailing data")
	}
	return into, nil
}

// record decodes one SenML record map.
func (c *cborReader) record(r *senmlRec) *record.InvalidError {
	n, err := c.container(5, "map")
	if err != nil {
		return err
	}
	for i := 0; n < 0 || i < n; i++ {
		if n < 0 && c.isBreak() {
			return nil
		}
		at := c.pos
		k, err := c.scalar()
		if err != nil {
			return err
		}
		var l label
		switch k.major {
		case 0, 1:
			key := int64(k.n.u)
			if k.n.neg {
				key = -1 - key
			}
			if k.n.u <= 1<<32 {
				l = senmlCBORLabel(key)
			}
		case 3:
			return invalid(ReasonUnknownField, "unknown SenML field "+record.QuoteInput(string(k.b)))
		default:
			c.pos = at
			return c.fail("map key is not an integer")
		}
		if l == labelUnknown {
			return invalid(ReasonUnknownField, "unknown SenML label at offset "+strconv.Itoa(at))
		}
		if !r.set(l) {
			return invalid(ReasonDuplicateField, "SenML field "+labelNames[l]+" given twice")
		}
		v, err := c.scalar()
		if err != nil {
			return err
		}
		switch l {
		case labelBN, labelBU, labelN, labelU, labelVS:
			if v.major != 3 {
				return invalid(ReasonBadSenML, labelNames[l]+" must be a text string")
			}
			switch l {
			case labelBN:
				r.bn = v.b
			case labelBU:
				r.bu = v.b
			case labelN:
				r.n = v.b
			case labelU:
				r.u = v.b
			case labelVS:
				r.vs = v.b
			}
		case labelVD:
			if v.major != 2 {
				return invalid(ReasonBadSenML, "vd must be a byte string")
			}
			r.vd = v.b
		case labelVB:
			if v.bool == 0 {
				return invalid(ReasonBadSenML, "vb must be a boolean")
			}
			r.vb = v.bool > 0
		default:
			if v.n.kind == numNone {
				return invalid(ReasonBadSenML, labelNames[l]+" must be a number")
			}
			switch l {
			case labelBT:
				r.bt = v.n
			case labelBV:
				r.bv = v.n
			case labelBS:
				r.bs = v.n
			case labelBVer:
				r.bver = v.n
			case labelV:
				r.v = v.n
			case labelS:
				r.s = v.n
			case labelT:
				r.t = v.n
			case labelUT:
				r.ut = v.n
			}
		}
	}
	return nil
}
