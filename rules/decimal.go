package rules

import (
	"errors"
	"math/big"
	"strconv"
)

// Dec is an exact non-negative decimal read from tariff text: Coef x 10^-Scale. Money in a
// tariff is never parsed through float64, so 0.00001 is exactly one hundred-thousandth.
type Dec struct {
	Coef  uint64
	Scale int // 0..MaxScale
}

// MaxScale bounds the decimals a tariff value may carry.
const MaxScale = 18

// ParseDec reads a plain decimal ("0.0010", "3", ".5", "+2.") or one in scientific
// notation ("1e-5", "2.5E3") exactly. Negative values are refused: prices, multipliers
// and fees are never negative.
func ParseDec(s string) (Dec, error) {
	i := 0
	if i < len(s) && s[i] == '+' {
		i++
	}
	if i < len(s) && s[i] == '-' {
		return Dec{}, errors.New("must not be negative")
	}
	var coef uint64
	digits, scale := 0, 0
	seenDot, leading := false, true
	for ; i < len(s); i++ {
		c := s[i]
		if c == '.' && !seenDot {
			seenDot = true
			continue
		}
		if c == 'e' || c == 'E' {
			break
		}
		if c < '0' || c > '9' {
			return Dec{}, errors.New("not a decimal number: " + strconv.Quote(s))
		}
		digits++
		if seenDot {
			scale++
		}
		if c == '0' && leading {
			continue
		}
		leading = false
		if coef > (1<<64-1-9)/10 {
			return Dec{}, errors.New("too many digits: " + strconv.Quote(s))
		}
		coef = coef*10 + uint64(c-'0')
	}
	if digits == 0 {
		return Dec{}, errors.New("not a decimal number: " + strconv.Quote(s))
	}
	if i < len(s) { // exponent
		exp, err := strconv.Atoi(s[i+1:])
		if err != nil || len(s) == i+1 || s[i+1] == ' ' {
			return Dec{}, errors.New("not a decimal number: " + strconv.Quote(s))
		}
		if exp < -2*MaxScale || exp > 2*MaxScale {
			return Dec{}, errors.New("exponent out of range: " + strconv.Quote(s))
		}
		scale -= exp
	}
	d := Dec{Coef: coef, Scale: scale}
	// Trailing zeros carry no value: drop them so "0.0100" costs no extra scale.
	for d.Scale > 0 && d.Coef%10 == 0 && d.Coef != 0 {
		d.Coef /= 10
		d.Scale--
	}
	if d.Coef == 0 {
		d.Scale = 0
	}
	for d.Scale < 0 {
		if d.Coef > (1<<64-1)/10 {
			return Dec{}, errors.New("too large: " + strconv.Quote(s))
		}
		d.Coef *= 10
		d.Scale++
	}
	if d.Scale > MaxScale {
		return Dec{}, errors.New("more than " + strconv.Itoa(MaxScale) + " decimals: " + strconv.Quote(s))
	}
	return d, nil
}

// String formats d as plain decimal text.
func (d Dec) String() string {
	s := strconv.FormatUint(d.Coef, 10)
	if d.Scale == 0 {
		return s
	}
	for len(s) <= d.Scale {
		s = "0" + s
	}
	return s[:len(s)-d.Scale] + "." + s[len(s)-d.Scale:]
}

// At returns the coefficient of d at the given scale (>= d.Scale); ok is false when it
// does not fit 64 bits.
func (d Dec) At(scale int) (uint64, bool) {
	c := d.Coef
	for s := d.Scale; s < scale; s++ {
		if c > (1<<64-1)/10 {
			return 0, false
		}
		c *= 10
	}
	return c, true
}

// Big returns d as an exact rational.
func (d Dec) Big() *big.Rat {
	r := new(big.Rat).SetInt(new(big.Int).SetUint64(d.Coef))
	return r.Quo(r, new(big.Rat).SetInt(Pow10(d.Scale)))
}

// Pow10 returns 10^n as a new big.Int.
func Pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}
