package rating

import (
	"math"
	"math/big"
	"math/bits"

	"fleetmeter/record"
	"fleetmeter/rules"
)

var errAmountRange = &record.InvalidError{Reason: record.ReasonAmountOverflow, Msg: "amount does not fit 64-bit micro-units"}

// quantities are the raw integer inputs of the three dimensions: data bytes after the
// increment, duration ms, events. A data sum that overflows 64 bits sets wide.
type quantities struct {
	raw  [rules.NumDims]uint64
	wide bool
}

func quantify(t *rules.Tariff, u *record.Usage) quantities {
	var q quantities
	b, carry := bits.Add64(u.BytesUp, u.BytesDown, 0)
	if inc := t.Rates[rules.Data].Increment; inc > 1 && carry == 0 {
		if rem := b % inc; rem != 0 {
			b, carry = bits.Add64(b, inc-rem, 0)
		}
	}
	q.raw = [rules.NumDims]uint64{b, u.DurationMs, u.Events}
	q.wide = carry != 0
	return q
}

// amount prices one usage record exactly and rounds once, half to even, to micro-units:
//
//	micros = round( slice * offer * sum_d raw_d*price_d*Factor_d * NumPow / Den )
//
// (see rules.Arith). The fast path is 64-bit integer arithmetic with every overflow
// checked; any overflow redoes the computation with math/big.
func amount(t *rules.Tariff, u *record.Usage, prices *[rules.NumDims]uint64, sMult, oMult uint64) (record.Micros, error) {
	q := quantify(t, u)
	a := &t.Arith
	if !q.wide && a.Den64 != 0 {
		var sum uint64
		ok := true
		for d := range rules.NumDims {
			if q.raw[d] == 0 || prices[d] == 0 {
				continue
			}
			hi, v := bits.Mul64(q.raw[d], prices[d])
			hi2, v2 := bits.Mul64(v, a.Factor[d])
			var c uint64
			sum, c = bits.Add64(sum, v2, 0)
			if hi|hi2|c != 0 {
				ok = false
				break
			}
		}
		if ok {
			hi, num := bits.Mul64(sum, sMult)
			hi2, num2 := bits.Mul64(num, oMult)
			hi3, num3 := bits.Mul64(num2, a.NumPow)
			if hi|hi2|hi3 == 0 {
				return roundDiv64(num3, a.Den64)
			}
		}
	}
	return amountBig(t, u, prices, sMult, oMult)
}

func roundDiv64(num, den uint64) (record.Micros, error) {
	qu, r := num/den, num%den
	if r > den-r || (r == den-r && qu&1 == 1) {
		qu++
	}
	if qu > math.MaxInt64 {
		return 0, errAmountRange
	}
	return record.Micros(qu), nil
}

func amountBig(t *rules.Tariff, u *record.Usage, prices *[rules.NumDims]uint64, sMult, oMult uint64) (record.Micros, error) {
	a := &t.Arith
	data := new(big.Int).SetUint64(u.BytesUp)
	data.Add(data, new(big.Int).SetUint64(u.BytesDown))
	if inc := t.Rates[rules.Data].Increment; inc > 1 {
		bi := new(big.Int).SetUint64(inc)
		if rem := new(big.Int).Mod(data, bi); rem.Sign() != 0 {
			data.Add(data, bi.Sub(bi, rem))
		}
	}
	raw := [rules.NumDims]*big.Int{data, new(big.Int).SetUint64(u.DurationMs), new(big.Int).SetUint64(u.Events)}
	sum := new(big.Int)
	for d := range rules.NumDims {
		x := new(big.Int).SetUint64(prices[d])
		x.Mul(x, raw[d])
		x.Mul(x, new(big.Int).SetUint64(a.Factor[d]))
		sum.Add(sum, x)
	}
	sum.Mul(sum, new(big.Int).SetUint64(sMult))
	sum.Mul(sum, new(big.Int).SetUint64(oMult))
	sum.Mul(sum, new(big.Int).SetUint64(a.NumPow))
	return roundBig(sum, a.Den)
}

// roundBig returns num/den rounded half to even, as micro-units.
func roundBig(num, den *big.Int) (record.Micros, error) {
	qu, r := new(big.Int).QuoRem(num, den, new(big.Int))
	r2 := new(big.Int).Lsh(r.Abs(r), 1)
	if c := r2.Cmp(den); c > 0 || (c == 0 && qu.Bit(0) == 1) {
		if num.Sign() < 0 {
			qu.Sub(qu, big.NewInt(1))
		} else {
			qu.Add(qu, big.NewInt(1))
		}
	}
	if !qu.IsInt64() {
		return 0, errAmountRange
	}
	return record.Micros(qu.Int64()), nil
}

// roundRat rounds an exact rational to micro-units, half to even.
func roundRat(r *big.Rat) (record.Micros, error) {
	num := new(big.Int).Mul(r.Num(), big.NewInt(1_000_000))
	return roundBig(num, r.Denom())
}
