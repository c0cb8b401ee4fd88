package rating

import (
	"fmt"
	"math"
	"math/big"
	"slices"

	"fleetmeter/record"
	"fleetmeter/rules"
)

// firstSight counts u's device as active in m and charges its provisional fee at the
// tier holding the tenant's count as known now.
func (e *Engine) firstSight(set *rules.Set, st *State, u *record.Usage, m month, now int64, out []record.Rated) []record.Rated {
	period := st.periodName(m)
	a := st.agg(u.Tenant, m)
	a.devices++ // before counting: a counter may count from the states themselves
	st.touchAgg(u.Tenant, m, a)
	e.counter.Add(u.Tenant, period, 1)
	n := e.counter.Count(u.Tenant, period)
	start, end := m.bounds()
	t := set.FeeTariff(u.Tenant, start, end)
	if t == nil || t.Fee == nil {
		return out
	}
	amt, err := decMicros(t.Fee.TierFor(max(n, 1)).Price)
	if err != nil {
		return out // a tier price beyond int64 micros is refused by the adjustment too
	}
	a.provisional += amt
	id := "fee:" + u.Tenant + ":" + u.Device + ":" + period
	return append(out, record.Rated{
		Usage:    record.Usage{EventID: id, Tenant: u.Tenant, Device: u.Device, StartTime: start, EndTime: end, ReceivedTime: u.ReceivedTime},
		RecordID: id, Charge: record.ChargeDeviceFee, Tariff: t.ID, TariffVersion: t.Stamp,
		ActiveDevices: n, Currency: t.Currency, Amount: amt, RatedTime: now})
}

// Close settles period (YYYY-MM) for every tenant with devices seen in sts: it appends
// one adjustment per tenant (record_id adj:<tenant>:<period>, sorted by tenant) equal to
// the exact fee for the devices seen minus the provisional fees charged, so a period's
// device_fee plus adjustment records are exact whatever the partitioning and order. The
// fee is the device_fee of rules.Set.FeeTariff. sts must together hold every partition
// of the tenants closed. Close does not change the states; see State.Forget.
func (e *Engine) Close(sts []*State, period string, out []record.Rated) ([]record.Rated, error) {
	m, err := parsePeriod(period)
	if err != nil {
		return out, fmt.Errorf("close period: %w", err)
	}
	sum := map[string]PeriodTally{}
	for _, st := range sts {
		for k, a := range st.aggs {
			if k.month != m {
				continue
			}
			s := sum[k.tenant]
			s.Devices += a.devices
			s.Provisional += a.provisional
			sum[k.tenant] = s
		}
	}
	return e.Adjust(period, sum, out)
}

// PeriodTally is what closing a tenant's period needs: its active devices and the
// provisional device fees already charged.
type PeriodTally struct {
	Devices     uint64
	Provisional record.Micros
}

// Adjust appends one adjustment per tenant of tally (sorted by tenant): the exact device
// fee for its active devices minus the provisional fees, so device_fee plus adjustment is
// exact. Close feeds it from rating states; a store can feed it from rated records.
func (e *Engine) Adjust(period string, tally map[string]PeriodTally, out []record.Rated) ([]record.Rated, error) {
	m, err := parsePeriod(period)
	if err != nil {
		return out, fmt.Errorf("close period: %w", err)
	}
	set := e.set.Load()
	tenants := make([]string, 0, len(tally))
	for t := range tally {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants)
	start, end := m.bounds()
	now := e.now()
	for _, ten := range tenants {
		a := tally[ten]
		var t *rules.Tariff
		if set != nil {
			t = set.FeeTariff(ten, start, end)
		}
		var exact record.Micros
		if t != nil && t.Fee != nil {
			if exact, err = roundRat(t.Fee.Total(a.Devices)); err != nil {
				return out, fmt.Errorf("close period %s tenant %s: %w", period, ten, err)
			}
		} else if a.Provisional == 0 {
			continue
		}
		id := "adj:" + ten + ":" + period
		r := record.Rated{Usage: record.Usage{EventID: id, Tenant: ten, StartTime: start, EndTime: end, ReceivedTime: end},
			RecordID: id, Charge: record.ChargeAdjustment, ActiveDevices: a.Devices, Amount: exact - a.Provisional, RatedTime: now}
		if t != nil {
			r.Tariff, r.TariffVersion, r.Currency = t.ID, t.Stamp, t.Currency
		}
		out = append(out, r)
	}
	return out, nil
}

// PeriodBounds returns the [start, end) of a period named YYYY-MM, in ms since the epoch.
func PeriodBounds(period string) (start, end int64, err error) {
	m, err := parsePeriod(period)
	if err != nil {
		return 0, 0, err
	}
	start, end = m.bounds()
	return start, end, nil
}

// FeeTotal returns the exact device fee of tenant's period for n active devices, rounded
// once to micro-units; ok is false when no device_fee applies.
func (e *Engine) FeeTotal(tenant, period string, n uint64) (record.Micros, bool, error) {
	m, err := parsePeriod(period)
	if err != nil {
		return 0, false, err
	}
	start, end := m.bounds()
	set := e.set.Load()
	if set == nil {
		return 0, false, nil
	}
	t := set.FeeTariff(tenant, start, end)
	if t == nil || t.Fee == nil {
		return 0, false, nil
	}
	v, err := roundRat(new(big.Rat).Set(t.Fee.Total(n)))
	return v, true, err
}

// decMicros rounds a tariff decimal to micro-units, half to even, in integers.
func decMicros(d rules.Dec) (record.Micros, error) {
	if d.Scale <= 6 {
		v, ok := d.At(6)
		if !ok || v > math.MaxInt64 {
			return 0, errAmountRange
		}
		return record.Micros(v), nil
	}
	return roundDiv64(d.Coef, pow10[d.Scale-6])
}
