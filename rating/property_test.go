package rating

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"fleetmeter/record"
)

var (
	propTenants = []string{"agrico", "autoco", "utilico"}
	propPLMNs   = []string{"262-01", "262-02", "262-07", "208-10", "310-260", ""}
)

// genInput makes n records over devs devices of the example tenants, spread over two
// months, in an order where each device's records are in time order except for some
// late ones.
func genInput(rng *rand.Rand, devs, n int) []record.Usage {
	base := ms("2026-11-20T00:00:00Z")
	clock := make([]int64, devs)
	out := make([]record.Usage, n)
	for i := range out {
		d := rng.IntN(devs)
		clock[d] += rng.Int64N(4 * 3600 * 1000)
		ts := base + clock[d]
		if rng.IntN(10) == 0 {
			ts -= rng.Int64N(8 * 3600 * 1000) // late record
		}
		u := record.Usage{EventID: fmt.Sprintf("e%d", i), Tenant: propTenants[d%len(propTenants)],
			Device: fmt.Sprintf("dev%d", d), Source: "mqtt", StartTime: ts, EndTime: ts,
			BytesUp: rng.Uint64N(3_000_000), BytesDown: rng.Uint64N(100_000), DurationMs: rng.Uint64N(600_000),
			Events: rng.Uint64N(5), RatingGroup: []uint32{0, 32, 100}[rng.IntN(3)], PLMN: propPLMNs[rng.IntN(len(propPLMNs))]}
		switch rng.IntN(4) {
		case 0:
			u.Cell = fmt.Sprintf("262010000a1%d", rng.IntN(4))
		case 1:
			u.Lat, u.Lon, u.HasPos = 52.0+rng.Float64()*0.6, 13.0+rng.Float64()*0.5, true
		}
		if rng.IntN(3) == 0 {
			u.SliceSST, u.HasSlice = uint8(1+rng.IntN(3)), true
		}
		out[i] = u
	}
	return out
}

type ratedRun struct {
	usage  map[string]record.Rated  // by record_id
	totals map[string]record.Micros // tenant/period -> device_fee + adjustment
	active map[string]uint64        // tenant/period -> devices in the adjustment
}

func runPartitioned(t *testing.T, e *Engine, in []record.Usage, parts int, rng *rand.Rand) ratedRun {
	sts := make([]*State, parts)
	for i := range sts {
		sts[i] = NewState()
	}
	part := map[string]int{}
	queues := map[string][]int{}
	var devs []string
	for i := range in {
		k := in[i].Tenant + "/" + in[i].Device
		if _, ok := part[k]; !ok {
			part[k] = rng.IntN(parts)
			devs = append(devs, k)
		}
		queues[k] = append(queues[k], i)
	}
	run := ratedRun{usage: map[string]record.Rated{}, totals: map[string]record.Micros{}, active: map[string]uint64{}}
	periods := map[string]bool{}
	var out []record.Rated
	// A random interleaving that keeps each device's order.
	for len(devs) > 0 {
		j := rng.IntN(len(devs))
		k := devs[j]
		i := queues[k][0]
		queues[k] = queues[k][1:]
		if len(queues[k]) == 0 {
			devs = slices.Delete(devs, j, j+1)
		}
		var err error
		out, err = e.Rate(sts[part[k]], &in[i], out[:0])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out {
			switch r.Charge {
			case record.ChargeUsage:
				r.RatedTime = 0
				run.usage[r.RecordID] = r
				periods[monthOf(r.StartTime).String()] = true
			case record.ChargeDeviceFee:
				run.totals[r.Tenant+"/"+monthOf(r.StartTime).String()] += r.Amount
			}
		}
	}
	for p := range periods {
		var err error
		out, err = e.Close(sts, p, out[:0])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out {
			run.totals[r.Tenant+"/"+p] += r.Amount
			run.active[r.Tenant+"/"+p] = r.ActiveDevices
		}
	}
	return run
}

// TestPartitioningInvariance: random partitionings of the devices over several States and
// random interleavings that keep each device's order give the same usage records and the
// same period fee totals (device_fee + adjustment), equal to the exact fee.
func TestPartitioningInvariance(t *testing.T) {
	set := mustSet(t, "../deploy/tariffs")
	rng := rand.New(rand.NewPCG(11, 12))
	in := genInput(rng, 60, 1500)
	ref := runPartitioned(t, NewEngine(set, Options{Now: func() int64 { return 0 }}), in, 1, rng)
	if len(ref.usage) != len(in) || len(ref.totals) == 0 {
		t.Fatalf("reference: %d usage, %d totals", len(ref.usage), len(ref.totals))
	}
	ref0 := NewEngine(set, Options{})
	for key, total := range ref.totals {
		tenant, period := key[:len(key)-8], key[len(key)-7:]
		exact, ok, err := ref0.FeeTotal(tenant, period, ref.active[key])
		if err != nil || !ok || exact != total {
			t.Errorf("%s: total %v, exact %v (%v %v)", key, total, exact, ok, err)
		}
	}
	for trial := range 12 {
		parts := 1 + rng.IntN(5)
		got := runPartitioned(t, NewEngine(set, Options{Now: func() int64 { return 0 }}), in, parts, rng)
		for id, r := range ref.usage {
			if got.usage[id] != r {
				t.Fatalf("trial %d (%d partitions): %s differs:\n got %+v\nwant %+v", trial, parts, id, got.usage[id], r)
			}
		}
		for k, v := range ref.totals {
			if got.totals[k] != v || got.active[k] != ref.active[k] {
				t.Fatalf("trial %d (%d partitions): %s total %v (%d devices), want %v (%d)", trial, parts, k, got.totals[k], got.active[k], v, ref.active[k])
			}
		}
	}
}
