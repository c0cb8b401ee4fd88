package record

import (
	"errors"
	"strconv"
)

// Micros is an amount of money in millionths of a currency unit.
type Micros int64

// String formats m with exactly six decimals: "0.000002", "-1.250000".
func (m Micros) String() string { return string(m.Append(nil)) }

// Append appends the six-decimal form of m to b.
func (m Micros) Append(b []byte) []byte {
	v := uint64(m)
	if m < 0 {
		b = append(b, '-')
		v = uint64(-m)
	}
	b = strconv.AppendUint(b, v/1_000_000, 10)
	b = append(b, '.')
	frac := v % 1_000_000
	var d [6]byte
	for i := 5; i >= 0; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	return append(b, d[:]...)
}

// ParseMicros reads a decimal string with at most six fractional digits.
func ParseMicros(s string) (Micros, error) {
	if s == "" {
		return 0, errors.New("parse amount: empty")
	}
	neg := false
	i := 0
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		i = 1
	}
	var whole, frac uint64
	digits, fracDigits := 0, 0
	seenDot := false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && !seenDot:
			seenDot = true
		case c >= '0' && c <= '9':
			digits++
			if seenDot {
				fracDigits++
				if fracDigits > 6 {
					return 0, errors.New("parse amount " + strconv.Quote(s) + ": more than six decimals")
				}
				frac = frac*10 + uint64(c-'0')
			} else {
				if whole > (1<<63-1)/10_000_000 {
					return 0, errors.New("parse amount " + strconv.Quote(s) + ": out of range")
				}
				whole = whole*10 + uint64(c-'0')
			}
		default:
			return 0, errors.New("parse amount " + strconv.Quote(s) + ": not a decimal")
		}
	}
	if digits == 0 {
		return 0, errors.New("parse amount " + strconv.Quote(s) + ": no digits")
	}
	for ; fracDigits < 6; fracDigits++ {
		frac *= 10
	}
	// whole < 10^13 here, so the sum fits a uint64; it must also fit an int64.
	u := whole*1_000_000 + frac
	if u > 1<<63-1 && !(neg && u == 1<<63) {
		return 0, errors.New("parse amount " + strconv.Quote(s) + ": out of range")
	}
	v := Micros(u)
	if neg {
		v = -v
	}
	return v, nil
}
