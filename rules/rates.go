package rules

import (
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// scaler gathers every price and multiplier of a tariff so they can be brought to one
// common scale each once the whole file is read.
type scaler struct {
	prices []pending
	mults  []pending
	rates  [NumDims]map[string]map[string]pendingRef
	slices map[uint8]pendingRef
	offers []rawOffer
}

type pending struct {
	d    Dec
	n    ast.Node
	path string
	v    uint64 // the coefficient at the common scale, after apply
}

type pendingRef int // index into scaler.prices or scaler.mults

type rawOffer struct {
	Offer
	mult    pendingRef
	hasMult bool
	price   [NumDims]pendingRef
}

func (s *scaler) price(d Dec, n ast.Node, path string) pendingRef {
	s.prices = append(s.prices, pending{d: d, n: n, path: path})
	return pendingRef(len(s.prices) - 1)
}

func (s *scaler) mult(d Dec, n ast.Node, path string) pendingRef {
	s.mults = append(s.mults, pending{d: d, n: n, path: path})
	return pendingRef(len(s.mults) - 1)
}

func scaleAll(w *walker, ps []pending) int {
	scale := 0
	for _, p := range ps {
		scale = max(scale, p.d.Scale)
	}
	for i := range ps {
		v, ok := ps[i].d.At(scale)
		if !ok {
			w.errf(ps[i].n, ps[i].path, "%s needs more than 64 bits at the %d decimals other values in this tariff use", ps[i].d, scale)
		}
		ps[i].v = v
	}
	return scale
}

func (s *scaler) apply(w *walker, t *Tariff) {
	t.PriceScale = scaleAll(w, s.prices)
	t.MultScale = scaleAll(w, s.mults)
	one, _ := Dec{Coef: 1}.At(t.MultScale)
	mobKeys := [numMobility]string{"stationary", "nomadic", "mobile"}
	for d := range NumDims {
		r := &t.Rates[d]
		r.Prices = make([]uint64, len(t.Zones)*int(numMobility))
		tab := s.rates[d]
		for z, zone := range t.Zones {
			for m, mk := range mobKeys {
				// docs/tariffs.md step 5: zone+mobility, zone+"*", "*"+mobility, "*"+"*", else 0.
				for _, k := range [][2]string{{zone.Name, mk}, {zone.Name, "*"}, {"*", mk}, {"*", "*"}} {
					if ref, ok := tab[k[0]][k[1]]; ok {
						r.Prices[z*int(numMobility)+m] = s.prices[ref].v
						break
					}
				}
			}
		}
	}
	for i := range t.Slices {
		t.Slices[i] = one
	}
	for sst, ref := range s.slices {
		t.Slices[sst] = s.mults[ref].v
	}
	slices.SortStableFunc(s.offers, func(a, b rawOffer) int {
		switch {
		case a.Priority > b.Priority:
			return -1
		case a.Priority < b.Priority:
			return 1
		}
		return 0
	})
	t.Offers = make([]Offer, len(s.offers))
	for i, ro := range s.offers {
		o := ro.Offer
		o.Mult = one
		if ro.hasMult {
			o.Mult = s.mults[ro.mult].v
		}
		for d := range NumDims {
			if o.HasPrice[d] {
				o.Price[d] = s.prices[ro.price[d]].v
			}
		}
		t.Offers[i] = o
	}
}

var dataUnits = map[string]uint64{"KB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000}

func (w *walker) rates(t *Tariff, top field, sc *scaler) {
	fields, ok := w.mapping(top.value, top.path, "data", "duration", "events")
	if !ok {
		return
	}
	for _, fl := range fields {
		d := map[string]Dimension{"data": Data, "duration": Duration, "events": Events}[fl.key]
		r := &t.Rates[d]
		r.Defined = true
		rf, ok := w.mapping(fl.value, fl.path, "unit", "increment", "prices")
		if !ok {
			continue
		}
		if !hasKey(rf, "prices") {
			w.errf(fl.value, fl.path+".prices", "missing")
		}
		if !hasKey(rf, "unit") {
			if d != Events {
				w.errf(fl.value, fl.path+".unit", "missing")
			}
			r.Unit, r.Div = "event", 1
		}
		for _, f := range rf {
			switch f.key {
			case "unit":
				w.unit(d, r, f)
			case "increment":
				if d != Data {
					w.errf(f.keyN, f.path, "only data takes an increment")
					continue
				}
				r.Increment = w.bytes(f)
			case "prices":
				sc.rates[d] = w.priceTable(t, f, sc)
			}
		}
	}
}

func (w *walker) unit(d Dimension, r *Rate, f field) {
	s, _ := scalarText(f.value)
	r.Unit = s
	switch d {
	case Data:
		r.Div = dataUnits[s]
		if r.Div == 0 {
			w.errf(f.value, f.path, "must be KB, MB or GB")
		}
	case Duration:
		r.Div = map[string]uint64{"second": 1000, "minute": 60000}[s]
		if r.Div == 0 {
			w.errf(f.value, f.path, "must be second or minute")
		}
	case Events:
		r.Div = 1
		if s != "event" {
			w.errf(f.value, f.path, "must be event")
		}
	}
}

// bytes reads a byte size: an integer number of bytes, or a count with B, KB, MB or GB.
func (w *walker) bytes(f field) uint64 {
	s, _ := scalarText(f.value)
	mul := uint64(1)
	for _, u := range []string{"KB", "MB", "GB", "B"} {
		if num, ok := strings.CutSuffix(s, u); ok {
			s, mul = strings.TrimSpace(num), max(dataUnits[u], 1)
			break
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 || v > (1<<64-1)/mul {
		w.errf(f.value, f.path, "must be a positive size such as 1KB, 512B or 1024")
		return 0
	}
	return v * mul
}

func (w *walker) priceTable(t *Tariff, top field, sc *scaler) map[string]map[string]pendingRef {
	out := map[string]map[string]pendingRef{}
	zones, ok := w.mapping(top.value, top.path)
	if !ok {
		return out
	}
	for _, z := range zones {
		if z.key != "*" && !slices.ContainsFunc(t.Zones, func(x Zone) bool { return x.Name == z.key }) {
			w.errf(z.keyN, z.path, "no zone named %q", z.key)
			continue
		}
		mobs, ok := w.mapping(z.value, z.path, "stationary", "nomadic", "mobile", "*")
		if !ok {
			continue
		}
		row := map[string]pendingRef{}
		for _, m := range mobs {
			if d, ok := w.dec(m.value, m.path); ok {
				row[m.key] = sc.price(d, m.value, m.path)
			}
		}
		out[z.key] = row
	}
	return out
}

func (w *walker) slices(t *Tariff, top field, sc *scaler) {
	fields, ok := w.mapping(top.value, top.path)
	if !ok {
		return
	}
	sc.slices = map[uint8]pendingRef{}
	for _, f := range fields {
		sst, ok := w.uint(f.keyN, f.path, 255)
		if !ok {
			continue
		}
		if d, ok := w.dec(f.value, f.path); ok {
			sc.slices[uint8(sst)] = sc.mult(d, f.value, f.path)
		}
	}
}

func (w *walker) offers(t *Tariff, top field, sc *scaler) {
	vals, ok := w.sequence(top.value, top.path)
	if !ok {
		return
	}
	for i, v := range vals {
		op := "offers[" + strconv.Itoa(i) + "]"
		fields, ok := w.mapping(v, op, "id", "priority", "from", "to", "match", "multiplier", "price")
		if !ok {
			continue
		}
		ro := rawOffer{}
		var fromN, toN ast.Node
		for _, f := range fields {
			switch f.key {
			case "id":
				ro.ID, _ = w.str(f)
				for _, o := range sc.offers {
					if o.ID == ro.ID && ro.ID != "" {
						w.errf(f.value, f.path, "duplicate offer %q", ro.ID)
					}
				}
			case "priority":
				ro.Priority, _ = w.int(f.value, f.path)
			case "from":
				ro.From, _ = w.time(f.value, f.path)
				fromN = f.value
			case "to":
				ro.To, _ = w.time(f.value, f.path)
				toN = f.value
			case "match":
				w.offerMatch(t, &ro.Offer, f)
			case "multiplier":
				if d, ok := w.dec(f.value, f.path); ok {
					ro.mult, ro.hasMult = sc.mult(d, f.value, f.path), true
				}
			case "price":
				pf, ok := w.mapping(f.value, f.path, "data", "duration", "events")
				if !ok {
					continue
				}
				for _, p := range pf {
					dim := map[string]Dimension{"data": Data, "duration": Duration, "events": Events}[p.key]
					if d, ok := w.dec(p.value, p.path); ok {
						ro.HasPrice[dim] = true
						ro.price[dim] = sc.price(d, p.value, p.path)
					}
				}
			}
		}
		for _, k := range []string{"id", "from", "to"} {
			if !hasKey(fields, k) {
				w.errf(v, op+"."+k, "missing")
			}
		}
		if !hasKey(fields, "multiplier") && !hasKey(fields, "price") {
			w.errf(v, op, "needs a multiplier, a price or both")
		}
		if fromN != nil && toN != nil && ro.From >= ro.To {
			w.errf(toN, op+".to", "must be after from")
		}
		sc.offers = append(sc.offers, ro)
	}
}

func (w *walker) offerMatch(t *Tariff, o *Offer, top field) {
	fields, ok := w.mapping(top.value, top.path, "rating_groups", "zones", "slices", "tenants")
	if !ok {
		return
	}
	for _, f := range fields {
		vals, ok := w.sequence(f.value, f.path)
		if !ok {
			continue
		}
		if len(vals) == 0 {
			w.errf(f.value, f.path, "must not be empty (leave the key out to match any)")
		}
		for j, v := range vals {
			p := f.path + "[" + strconv.Itoa(j) + "]"
			switch f.key {
			case "rating_groups":
				if g, ok := w.uint(v, p, 1<<32-1); ok {
					o.RatingGroups = append(o.RatingGroups, uint32(g))
				}
			case "slices":
				if s, ok := w.uint(v, p, 255); ok {
					o.Slices = append(o.Slices, uint8(s))
				}
			case "zones":
				name, _ := scalarText(v)
				z := slices.IndexFunc(t.Zones, func(x Zone) bool { return x.Name == name })
				if z < 0 {
					w.errf(v, p, "no zone named %q", name)
					continue
				}
				o.Zones = append(o.Zones, z)
			case "tenants":
				name, _ := scalarText(v)
				if !slices.Contains(t.Tenants, name) {
					w.errf(v, p, "tenant %q is not listed in tenants", name)
					continue
				}
				o.Tenants = append(o.Tenants, name)
			}
		}
	}
}

func (w *walker) deviceFee(t *Tariff, top field) {
	fields, ok := w.mapping(top.value, top.path, "mode", "tiers")
	if !ok {
		return
	}
	fee := &DeviceFee{}
	for _, f := range fields {
		switch f.key {
		case "mode":
			s, _ := scalarText(f.value)
			switch s {
			case "graduated":
			case "volume":
				fee.Volume = true
			default:
				w.errf(f.value, f.path, "must be graduated or volume")
			}
		case "tiers":
			vals, ok := w.sequence(f.value, f.path)
			if !ok {
				continue
			}
			for i, v := range vals {
				tp := f.path + "[" + strconv.Itoa(i) + "]"
				tf, ok := w.mapping(v, tp, "upto", "price")
				if !ok {
					continue
				}
				tier := Tier{Unbounded: true}
				if !hasKey(tf, "price") {
					w.errf(v, tp+".price", "missing")
				}
				for _, x := range tf {
					switch x.key {
					case "upto":
						tier.Upto, _ = w.uint(x.value, x.path, 1<<63-1)
						tier.Unbounded = false
						if tier.Upto == 0 {
							w.errf(x.value, x.path, "must be at least 1")
						}
						if n := len(fee.Tiers); n > 0 && !fee.Tiers[n-1].Unbounded && tier.Upto <= fee.Tiers[n-1].Upto {
							w.errf(x.value, x.path, "tiers must ascend: %d is not above %d", tier.Upto, fee.Tiers[n-1].Upto)
						}
					case "price":
						tier.Price, _ = w.dec(x.value, x.path)
					}
				}
				if n := len(fee.Tiers); n > 0 && fee.Tiers[n-1].Unbounded {
					w.errf(v, tp, "only the last tier may be unbounded (tier %d has no upto)", n-1)
				}
				fee.Tiers = append(fee.Tiers, tier)
			}
			if n := len(fee.Tiers); n == 0 {
				w.errf(f.value, f.path, "needs at least one tier")
			} else if !fee.Tiers[n-1].Unbounded {
				w.errf(vals[n-1], f.path+"["+strconv.Itoa(n-1)+"]", "the last tier must be unbounded (no upto)")
			}
		}
	}
	for _, k := range []string{"mode", "tiers"} {
		if !hasKey(fields, k) {
			w.errf(top.value, "device_fee."+k, "missing")
		}
	}
	t.Fee = fee
}
