package rules

import (
	"math"
	"math/big"
	"slices"

	"fleetmeter/record"
)

// Dimension is one priced quantity of a usage record.
type Dimension int

// The priced dimensions, in the order of Tariff.Rates.
const (
	Data Dimension = iota
	Duration
	Events
	NumDims
)

var dimNames = [NumDims]string{"data", "duration", "events"}

func (d Dimension) String() string { return dimNames[d] }

// Mobility is a device's profile over the trailing window.
type Mobility int

// Mobility profiles, in the order of a Rate's price table.
const (
	Stationary Mobility = iota
	Nomadic
	Mobile
	numMobility
)

var mobilityNames = [numMobility]string{"stationary", "nomadic", "mobile"}

func (m Mobility) String() string { return mobilityNames[m] }

// NoValidFrom is Tariff.ValidFrom of a tariff without valid_from: in force since forever.
const NoValidFrom = math.MinInt64

// Tariff is one compiled, validated tariff file. Prices are integer coefficients at
// PriceScale decimals and multipliers at MultScale decimals, so rating never touches
// floating point for money.
type Tariff struct {
	ID       string
	Version  string
	Stamp    string // "<version>+<first 8 hex of sha256(file)>", the rated tariff_version
	Currency string
	File     string
	Tenants  []string
	// ValidFrom is the valid_from instant in ms, NoValidFrom when unset.
	ValidFrom int64
	Period    string // "month"

	Zones []Zone

	Window int64 // mobility window in ms
	// LateTolerance (ms) is how far behind its device's newest record a record is still
	// priced exactly: location keys are kept for Window + LateTolerance.
	LateTolerance int64
	StationaryMax int
	NomadicMax    int

	Rates      [NumDims]Rate
	PriceScale int
	MultScale  int
	// Slices holds the multiplier coefficient (at MultScale) for each slice_sst;
	// unlisted slices hold 10^MultScale, a multiplier of 1.
	Slices [256]uint64
	// Offers are sorted by priority, highest first, ties in file order.
	Offers []Offer
	Fee    *DeviceFee

	// Arith holds the constants the exact amount computation needs.
	Arith Arith

	match matcher
	line  map[string]int // line of top-level keys, for set-level problems
}

// Zone is one named zone; its criteria live in the tariff's compiled matcher.
type Zone struct {
	Name    string
	Default bool
}

// Rate prices one dimension.
type Rate struct {
	Defined   bool
	Unit      string
	Div       uint64 // quantity = raw / Div (bytes per unit, ms per unit, 1 per event)
	Increment uint64 // data only: bytes rounded up to a multiple of this, 0 for none
	// Prices holds the resolved price per zone and mobility at index zone*3+mobility, with
	// the fallbacks of docs/tariffs.md already applied.
	Prices []uint64
}

// Price returns the coefficient for zone and mobility.
func (r *Rate) Price(zone int, m Mobility) uint64 { return r.Prices[zone*int(numMobility)+int(m)] }

// Offer is a time-boxed price change.
type Offer struct {
	ID       string
	Priority int64
	From, To int64 // ms, start_time in [From, To)
	// Match criteria: every non-empty list must hold the record's value.
	RatingGroups []uint32
	Zones        []int
	Slices       []uint8
	Tenants      []string
	Mult         uint64 // at MultScale
	HasPrice     [NumDims]bool
	Price        [NumDims]uint64 // at PriceScale
}

// Matches reports whether o applies to u priced in zone.
func (o *Offer) Matches(u *record.Usage, zone int) bool {
	if u.StartTime < o.From || u.StartTime >= o.To {
		return false
	}
	if len(o.RatingGroups) > 0 && !slices.Contains(o.RatingGroups, u.RatingGroup) {
		return false
	}
	if len(o.Zones) > 0 && !slices.Contains(o.Zones, zone) {
		return false
	}
	if len(o.Slices) > 0 && (!u.HasSlice || !slices.Contains(o.Slices, u.SliceSST)) {
		return false
	}
	if len(o.Tenants) > 0 && !slices.Contains(o.Tenants, u.Tenant) {
		return false
	}
	return true
}

// Offer returns the index of the winning offer for u in zone, or -1.
func (t *Tariff) Offer(u *record.Usage, zone int) int {
	for i := range t.Offers {
		if t.Offers[i].Matches(u, zone) {
			return i
		}
	}
	return -1
}

// DeviceFee prices active devices per tenant and period.
type DeviceFee struct {
	Volume bool // mode volume; graduated otherwise
	Tiers  []Tier
}

// Tier is one device-count band; the last one is unbounded.
type Tier struct {
	Upto      uint64
	Unbounded bool
	Price     Dec
}

// TierFor returns the tier holding device number n (n >= 1).
func (f *DeviceFee) TierFor(n uint64) *Tier {
	for i := range f.Tiers {
		if f.Tiers[i].Unbounded || n <= f.Tiers[i].Upto {
			return &f.Tiers[i]
		}
	}
	return &f.Tiers[len(f.Tiers)-1]
}

// Total returns the exact fee for n active devices.
func (f *DeviceFee) Total(n uint64) *big.Rat {
	total := new(big.Rat)
	if n == 0 {
		return total
	}
	if f.Volume {
		p := f.TierFor(n).Price.Big()
		return total.Mul(p, new(big.Rat).SetInt(new(big.Int).SetUint64(n)))
	}
	var lower uint64
	for _, t := range f.Tiers {
		upper := t.Upto
		if t.Unbounded || upper > n {
			upper = n
		}
		if upper > lower {
			cnt := new(big.Rat).SetInt(new(big.Int).SetUint64(upper - lower))
			total.Add(total, cnt.Mul(cnt, t.Price.Big()))
		}
		if t.Unbounded || t.Upto >= n {
			break
		}
		lower = t.Upto
	}
	return total
}

// Arith is what the amount computation needs beyond prices. For a record,
//
//	micros = round_half_even( Mult * sum_d raw_d*price_d*Factor[d] * NumPow / Den )
//
// where Mult is the slice coefficient times the offer coefficient.
type Arith struct {
	Factor [NumDims]uint64 // lcm(divisors)/Div of each dimension
	NumPow uint64          // 10^(6-E) when E = PriceScale+2*MultScale < 6, else 1
	Den    *big.Int        // lcm(divisors) * 10^(E-6) when E >= 6, else lcm
	Den64  uint64          // Den when it fits 64 bits, else 0 (always take the big path)
}

func (t *Tariff) compileArith() {
	l := uint64(1)
	for d := range NumDims {
		if t.Rates[d].Div > 0 {
			l = lcm(l, t.Rates[d].Div)
		}
	}
	for d := range NumDims {
		div := t.Rates[d].Div
		if div == 0 {
			div = 1
		}
		t.Arith.Factor[d] = l / div
	}
	e := t.PriceScale + 2*t.MultScale
	den := new(big.Int).SetUint64(l)
	t.Arith.NumPow = 1
	if e >= 6 {
		den.Mul(den, Pow10(e-6))
	} else {
		t.Arith.NumPow = Pow10(6 - e).Uint64()
	}
	t.Arith.Den = den
	if den.IsUint64() {
		t.Arith.Den64 = den.Uint64()
	}
}

func lcm(a, b uint64) uint64 {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}
