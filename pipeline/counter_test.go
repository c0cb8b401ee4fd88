package pipeline

import (
	"testing"
	"time"

	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
)

const feeTariff = `id: fees
version: "1"
currency: EUR
tenants: [t]
period: month
zones:
  - name: all
    default: true
rates:
  events:
    unit: event
    prices: {"*": {"*": 0}}
device_fee:
  mode: volume
  tiers:
    - {upto: 2, price: 1.00}
    - {price: 0.50}
`

// The count a provisional fee uses covers the partitions of other instances (from their
// snapshots) and owned ones (live), each partition once.
func TestPartitionCounterSumsOwnedAndRemote(t *testing.T) {
	tar, err := rules.Parse("fees.yaml", []byte(feeTariff))
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.NewSet(tar)
	if err != nil {
		t.Fatal(err)
	}
	eng := rating.NewEngine(set, rating.Options{})
	r := &Rater{parts: 3, states: map[int32]*rating.State{}}
	c := newPartitionCounter(r)
	eng.UseCounter(c)
	// Partition 2 belongs to another instance: its snapshot says 2 devices of t in 2026-10.
	c.remote[2] = map[string]uint64{"t\x002026-10": 2}
	// Partition 1 was owned once (a stale snapshot of 5) and is owned now: live state wins.
	c.remote[1] = map[string]uint64{"t\x002026-10": 5}
	r.states[1] = rating.NewState()

	ts := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	u := record.Usage{EventID: "e1", Tenant: "t", Device: "d1", Source: "mqtt", StartTime: ts, EndTime: ts, Events: 1}
	out, err := eng.Rate(r.states[1], &u, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fee *record.Rated
	for i := range out {
		if out[i].Charge == record.ChargeDeviceFee {
			fee = &out[i]
		}
	}
	// 2 remote + 1 live = 3 active devices: the tier above 2, priced 0.50.
	if fee == nil || fee.ActiveDevices != 3 || fee.Amount != 500_000 {
		t.Fatalf("device fee = %+v; want active_devices 3 at 0.500000", fee)
	}
}
