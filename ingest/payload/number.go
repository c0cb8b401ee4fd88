package payload

import (
	"math"
	"strconv"
)

// numKind says which representation a num holds.
type numKind uint8

const (
	numNone  numKind = iota
	numDec           // JSON number text, kept exact
	numInt           // CBOR integer: neg means -1-u
	numFloat         // CBOR float
)

// num is one numeric value as the wire carried it. Converting late keeps counters exact
// (JSON text and CBOR integers never pass through float64) and lets a CBOR float and the
// same value in JSON convert identically.
type num struct {
	kind numKind
	neg  bool
	u    uint64
	f    float64
	raw  []byte
}

// scaled is a signed integer as sign and magnitude, so uint64 counters keep their range.
type scaled struct {
	neg bool
	mag uint64
}

// pow10 holds 10^0 .. 10^19, every power that fits uint64.
var pow10 = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
	1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// convResult says why a conversion failed; convOK when it did not.
type convResult uint8

const (
	convOK convResult = iota
	convFraction
	convOverflow
	convNotNumber
)

// scale returns n * 10^exp as an integer. With round it rounds half away from zero;
// without, a fractional result is convFraction.
func (p *Parser) scale(n num, exp int, round bool) (scaled, convResult) {
	switch n.kind {
	case numDec:
		return decToInt(n.raw, exp, round)
	case numInt:
		mag := n.u
		if n.neg {
			if mag == math.MaxUint64 {
				return scaled{neg: true}, convOverflow
			}
			mag++
		}
		for ; exp > 0; exp-- {
			if mag > math.MaxUint64/10 {
				return scaled{neg: n.neg}, convOverflow
			}
			mag *= 10
		}
		return scaled{neg: n.neg && mag != 0, mag: mag}, convOK
	case numFloat:
		if math.IsNaN(n.f) || math.IsInf(n.f, 0) {
			return scaled{}, convNotNumber
		}
		// The shortest decimal form is what a JSON encoder would have written, so a CBOR
		// float converts exactly as the same value in SenML JSON.
		p.fbuf = strconv.AppendFloat(p.fbuf[:0], n.f, 'e', -1, 64)
		return decToInt(p.fbuf, exp, round)
	}
	return scaled{}, convNotNumber
}

// float returns n as float64.
func (p *Parser) float(n num) (float64, bool) {
	switch n.kind {
	case numDec:
		f, err := strconv.ParseFloat(string(n.raw), 64)
		return f, err == nil
	case numInt:
		f := float64(n.u)
		if n.neg {
			f = -f - 1
		}
		return f, true
	case numFloat:
		return n.f, !math.IsNaN(n.f) && !math.IsInf(n.f, 0)
	}
	return 0, false
}

// decToInt converts a JSON number (already checked against the JSON grammar, or produced
// by strconv 'e' formatting) times 10^exp to an integer.
func decToInt(raw []byte, exp int, round bool) (scaled, convResult) {
	i := 0
	neg := false
	if i < len(raw) && raw[i] == '-' {
		neg = true
		i++
	}
	// Mantissa digits: integer part, then fraction; point counts fraction digits.
	mStart := i
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(raw) && raw[i] == '.' {
		i++
		fracStart = i
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
		fracEnd = i
	}
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		eneg := false
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			eneg = raw[i] == '-'
			i++
		}
		e := 0
		for ; i < len(raw) && raw[i] >= '0' && raw[i] <= '9'; i++ {
			if e < 1_000_000 { // saturate: beyond this the value is 0 or overflows anyway
				e = e*10 + int(raw[i]-'0')
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(raw) || intEnd == mStart {
		return scaled{}, convNotNumber
	}
	exp -= fracEnd - fracStart
	digit := func(k int) byte { // k-th mantissa digit, integer part then fraction
		if n := intEnd - mStart; k < n {
			return raw[mStart+k]
		} else {
			return raw[fracStart+k-n]
		}
	}
	nd := (intEnd - mStart) + (fracEnd - fracStart)
	// Digits at index >= keep are below the units place after scaling.
	keep := nd + exp
	if exp >= 0 {
		keep = nd
	}
	var mag uint64
	overflow := false
	for k := 0; k < keep && k < nd; k++ {
		d := uint64(digit(k) - '0')
		if mag > (math.MaxUint64-d)/10 {
			overflow = true
			break
		}
		mag = mag*10 + d
	}
	if overflow {
		return scaled{neg: neg}, convOverflow
	}
	if exp > 0 && mag != 0 {
		if exp >= len(pow10) || mag > math.MaxUint64/pow10[exp] {
			return scaled{neg: neg}, convOverflow
		}
		mag *= pow10[exp]
	}
	if keep < nd {
		first := keep
		if first < 0 {
			first = 0
		}
		nonzero := false
		for k := first; k < nd; k++ {
			if digit(k) != '0' {
				nonzero = true
				break
			}
		}
		if nonzero {
			if !round {
				return scaled{}, convFraction
			}
			// Round half away from zero on the first dropped digit (keep < 0: all of the
			// mantissa is below 0.1, so it rounds to 0).
			if keep >= 0 && digit(keep) >= '5' {
				if mag == math.MaxUint64 {
					return scaled{neg: neg}, convOverflow
				}
				mag++
			}
		}
	}
	return scaled{neg: neg && mag != 0, mag: mag}, convOK
}

// add returns a+b, or false when the result leaves the sign-magnitude uint64 range.
func (a scaled) add(b scaled) (scaled, bool) {
	if a.neg == b.neg {
		s := a.mag + b.mag
		if s < a.mag {
			return scaled{}, false
		}
		return scaled{neg: a.neg && s != 0, mag: s}, true
	}
	if a.mag >= b.mag {
		d := a.mag - b.mag
		return scaled{neg: a.neg && d != 0, mag: d}, true
	}
	d := b.mag - a.mag
	return scaled{neg: b.neg && d != 0, mag: d}, true
}

// int64 returns s as int64 if |s| < limit.
func (s scaled) int64(limit uint64) (int64, bool) {
	if s.mag >= limit {
		return 0, false
	}
	if s.neg {
		return -int64(s.mag), true
	}
	return int64(s.mag), true
}
