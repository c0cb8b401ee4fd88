// Package sim simulates a device fleet: farm sensors (agrico), vehicles (autoco) and
// smart meters (utilico) reporting usage as plain JSON payloads. It is deterministic for
// a seed, so a run can be replayed and its expected totals recomputed.
package sim

import (
	"math/rand/v2"
	"strconv"
)

// Device is one simulated device.
type Device struct {
	Tenant string
	ID     string
	// Of a mixed fleet's devices (NewMixedFleet): the vertical, the protocol it sends
	// over and, for trucks, the HTTP gateway forwarding its reports.
	Vertical Vertical
	Protocol Protocol
	Gateway  int
	kind     kind
	every    int // reports every this many ticks
	phase    int
	seq      uint64
	lat      float64
	lon      float64
	cells    []string
	plmns    []string
	step     int
}

type kind uint8

const (
	sensor kind = iota
	vehicle
	meter
	tracker
	truck
	slice
)

// Tenants the fleet reports for, in the order devices are assigned to them.
var Tenants = []string{"agrico", "autoco", "utilico"}

// Fleet is a set of devices and the generator of their messages.
type Fleet struct {
	Devices []Device
	rng     *rand.Rand
	mixed   bool
	lrsn    int64 // the simulated CHF's local record sequence number
}

// NewFleet builds n devices spread over the tenants, deterministic for seed.
func NewFleet(n int, seed uint64) *Fleet {
	f := &Fleet{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for i := 0; i < n; i++ {
		k := kind(i % 3)
		d := Device{Tenant: Tenants[k], kind: k}
		switch k {
		case sensor:
			d.ID = "sensor-" + strconv.Itoa(i)
			// Scattered around a farm near Berlin; some outside the geofences.
			d.lat = 52.50 + float64(f.rng.IntN(400))/10000
			d.lon = 13.38 + float64(f.rng.IntN(600))/10000
			d.plmns = []string{"262-01"}
		case vehicle:
			d.ID = "car-" + strconv.Itoa(i)
			d.plmns = []string{"262-01", "262-02", "208-93", "310-260"}
			d.cells = []string{"262010000a101", "262010000a102", "262010000b20", "26202000c301", "20893000d001", "310260000e01"}
		case meter:
			d.ID = "meter-" + strconv.Itoa(i)
			d.cells = []string{"262010000b" + strconv.Itoa(10+f.rng.IntN(40))}
			d.plmns = []string{"262-01"}
		}
		f.Devices = append(f.Devices, d)
	}
	return f
}

// Topic is the MQTT topic device i publishes to.
func (f *Fleet) Topic(prefix string, i int) string {
	d := &f.Devices[i]
	return prefix + "/" + d.Tenant + "/" + d.ID + "/usage"
}

// Message appends device i's next usage payload (plain JSON, sequence seq, start time
// tsMillis) to b.
func (f *Fleet) Message(b []byte, i int, seq uint64, tsMillis int64) []byte {
	d := &f.Devices[i]
	d.step++
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, tsMillis, 10)
	switch d.kind {
	case sensor:
		b = appendField(b, "bytes_up", uint64(200+f.rng.IntN(800)))
		b = appendField(b, "bytes_down", uint64(f.rng.IntN(200)))
		b = appendField(b, "events", uint64(1+f.rng.IntN(3)))
		b = append(b, `,"lat":`...)
		b = strconv.AppendFloat(b, d.lat, 'f', 5, 64)
		b = append(b, `,"lon":`...)
		b = strconv.AppendFloat(b, d.lon, 'f', 5, 64)
		b = append(b, `,"plmn":"262-01","rat":"NB-IoT"`...)
	case vehicle, tracker:
		b = appendField(b, "bytes_up", uint64(10_000+f.rng.IntN(500_000)))
		b = appendField(b, "bytes_down", uint64(50_000+f.rng.IntN(2_000_000)))
		b = appendField(b, "duration_ms", uint64(1000+f.rng.IntN(59_000)))
		b = appendField(b, "rating_group", uint64(10+10*f.rng.IntN(3)))
		// Vehicles move: one step along their route every few messages.
		at := (d.step / 3) % len(d.cells)
		b = append(b, `,"cell":"`...)
		b = append(b, d.cells[at]...)
		b = append(b, `","plmn":"`...)
		b = append(b, d.plmns[at*len(d.plmns)/len(d.cells)]...)
		if d.kind == tracker { // asset trackers: no slice
			b = append(b, `","rat":"LTE-M"`...)
			break
		}
		b = append(b, `","rat":"LTE-M","slice_sst":`...)
		b = strconv.AppendInt(b, int64(1+f.rng.IntN(3)), 10)
	case meter:
		b = appendField(b, "bytes_up", uint64(64+f.rng.IntN(64)))
		b = appendField(b, "events", 1)
		b = append(b, `,"cell":"`...)
		b = append(b, d.cells[0]...)
		b = append(b, `","plmn":"262-01","rat":"NB-IoT"`...)
	}
	return append(b, '}')
}

func appendField(b []byte, name string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}
