package sim

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"time"

	"fleetmeter/cdr"
	"fleetmeter/record"
)

// The fleet generator: a mixed fleet of the verticals the example tariffs price, each on
// the protocol and with the rhythm such devices have in the field.
//
//	vertical  tenant   protocol                        rhythm (ticks between reports)
//	meter     utilico  CoAP POST, one fixed NB-IoT cell 4: a reading every quarter hour
//	tracker   autoco   MQTT, roams PLMNs of 4 countries 1: a position fix every tick
//	truck     agrico   HTTP JSON Lines via its gateway  2: GPS track, batched per gateway
//	slice     autoco   CHF CDR files in a drop dir      2: one CHFRecord per PDU session
//
// A tick is the fleet's time unit (Drive's Tick); a run replays identically for a seed.

// Vertical is what kind of device a mixed-fleet device is.
type Vertical uint8

// The verticals of a mixed fleet.
const (
	Meter Vertical = iota + 1
	Tracker
	Truck
	Slice
)

func (v Vertical) String() string {
	return [...]string{"", "meter", "tracker", "truck", "slice"}[v]
}

// Protocol is how a device's usage reaches fleetmeter.
type Protocol uint8

// The protocols, in the order Batch holds them.
const (
	MQTT Protocol = iota
	CoAP
	HTTP
	CDR
)

func (p Protocol) String() string { return [...]string{"mqtt", "coap", "http", "cdr"}[p] }

// Mix is the share of each vertical in a mixed fleet, in percent of its devices.
type Mix struct{ Meters, Trackers, Trucks, Slices int }

// DefaultMix: mostly meters, as utility fleets dominate device counts.
var DefaultMix = Mix{Meters: 40, Trackers: 30, Trucks: 20, Slices: 10}

// SliceDNN is the data network name of the 5G slice devices' PDU sessions; a CDR
// collector maps it to their tenant (SliceTenant).
const (
	SliceDNN    = "v2x.autoco.example"
	SliceTenant = "autoco"
	// GatewaySize is how many trucks one HTTP gateway forwards for.
	GatewaySize = 50
)

// NewMixedFleet builds n devices of the verticals in mix (by share, interleaved so any
// prefix of the fleet has the same mix), deterministic for seed.
func NewMixedFleet(n int, mix Mix, seed uint64) *Fleet {
	f := &Fleet{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), mixed: true}
	total := max(mix.Meters+mix.Trackers+mix.Trucks+mix.Slices, 1)
	var counts [5]int
	trucks := 0
	for i := range n {
		// The vertical whose share is furthest behind takes device i.
		v, worst := Meter, -1.0
		for _, c := range []struct {
			v     Vertical
			share int
		}{{Meter, mix.Meters}, {Tracker, mix.Trackers}, {Truck, mix.Trucks}, {Slice, mix.Slices}} {
			if c.share == 0 {
				continue
			}
			lag := float64(c.share*(i+1))/float64(total) - float64(counts[c.v])
			if lag > worst {
				v, worst = c.v, lag
			}
		}
		counts[v]++
		d := Device{Vertical: v}
		id := strconv.Itoa(i)
		switch v {
		case Meter:
			d.Tenant, d.ID, d.Protocol, d.kind = "utilico", "meter-"+id, CoAP, meter
			d.cells = []string{"262010000b" + strconv.Itoa(10+f.rng.IntN(40))}
			d.every = 4
		case Tracker:
			d.Tenant, d.ID, d.Protocol, d.kind = "autoco", "tracker-"+id, MQTT, tracker
			d.plmns = []string{"262-01", "262-02", "208-01", "222-10", "310-260"}
			d.cells = []string{"262010000a101", "26202000c301", "20801000d001", "22210000e001", "310260000f01"}
			d.every = 1
		case Truck:
			d.Tenant, d.ID, d.Protocol, d.kind = "agrico", "truck-"+id, HTTP, truck
			d.lat, d.lon = 52.45+float64(f.rng.IntN(1500))/10000, 13.30+float64(f.rng.IntN(2000))/10000
			d.Gateway = trucks / GatewaySize
			trucks++
			d.every = 2
		case Slice:
			d.Tenant, d.ID, d.Protocol, d.kind = SliceTenant, "imsi-20893"+pad10(i), CDR, slice
			d.every = 2
		}
		d.phase = f.rng.IntN(d.every)
		f.Devices = append(f.Devices, d)
	}
	return f
}

func pad10(i int) string {
	s := strconv.Itoa(i)
	for len(s) < 10 {
		s = "0" + s
	}
	return s
}

// Msg is one device message of a Batch: an MQTT publish or a CoAP POST.
type Msg struct {
	Device  int
	Seq     uint64
	Payload []byte
}

// Post is one HTTP gateway request: JSON Lines of canonical records of its trucks.
type Post struct {
	Gateway int
	Tenant  string
	Devices []int
	Body    []byte
}

// Batch is what the fleet sends in one tick, by protocol.
type Batch struct {
	MQTT, CoAP []Msg
	HTTP       []Post
	CDR        []byte // one CDR file (TS 32.297) of the tick's PDU sessions, nil if none
	CDRDevices []int  // whose records the file holds, in order
	Records    int    // usage records in the batch
}

// Tick generates tick number t's messages, stamped at now: each device reports when its
// rhythm says so. Sequence numbers are per device, so a device's event ids never repeat.
func (f *Fleet) Tick(t int, now time.Time) Batch {
	var b Batch
	ms := now.UnixMilli()
	gateways := map[int]int{} // gateway -> index in b.HTTP
	var cdrs [][]byte
	for i := range f.Devices {
		d := &f.Devices[i]
		if !f.mixed || (t+d.phase)%d.every != 0 {
			continue
		}
		d.seq++
		b.Records++
		switch d.Protocol {
		case MQTT:
			b.MQTT = append(b.MQTT, Msg{Device: i, Seq: d.seq, Payload: f.Message(nil, i, d.seq, ms)})
		case CoAP:
			b.CoAP = append(b.CoAP, Msg{Device: i, Seq: d.seq, Payload: f.Message(nil, i, d.seq, ms)})
		case HTTP:
			k, ok := gateways[d.Gateway]
			if !ok {
				k = len(b.HTTP)
				gateways[d.Gateway] = k
				b.HTTP = append(b.HTTP, Post{Gateway: d.Gateway, Tenant: d.Tenant})
			}
			p := &b.HTTP[k]
			p.Devices = append(p.Devices, i)
			p.Body = f.truckLine(p.Body, i, d.seq, ms)
		case CDR:
			cdrs = append(cdrs, f.chfRecord(i, d.seq, now))
			b.CDRDevices = append(b.CDRDevices, i)
		}
	}
	if len(cdrs) > 0 {
		b.CDR = cdr.EncodeFile(cdrs)
	}
	return b
}

// TickRecords is how many usage records tick t holds, without generating them.
func (f *Fleet) TickRecords(t int) int {
	n := 0
	for i := range f.Devices {
		if f.mixed && (t+f.Devices[i].phase)%f.Devices[i].every == 0 {
			n++
		}
	}
	return n
}

// truckLine appends a truck's GPS report as a canonical usage.v1 JSON line, as its
// gateway forwards it (the gateway names the event).
func (f *Fleet) truckLine(b []byte, i int, seq uint64, ms int64) []byte {
	d := &f.Devices[i]
	d.step++
	// A truck drives a slow random walk across the fields and the roads between them.
	d.lat += float64(f.rng.IntN(21)-10) / 10000
	d.lon += float64(f.rng.IntN(21)-10) / 10000
	u := record.Usage{
		EventID: "gw" + strconv.Itoa(d.Gateway) + ":" + d.ID + ":" + strconv.FormatUint(seq, 10),
		Tenant:  d.Tenant, Device: d.ID, Source: record.SourceHTTP,
		StartTime: ms, EndTime: ms, BytesUp: uint64(300 + f.rng.IntN(1200)), BytesDown: uint64(f.rng.IntN(400)),
		Events: 1, PLMN: "262-01", RAT: "LTE-M", Lat: d.lat, Lon: d.lon, HasPos: true,
	}
	b = record.AppendJSON(b, &u)
	return append(b, '\n')
}

// chfRecord encodes a 5G PDU session's CHFRecord (TS 32.298): SUPI, the slice (SST 1 or
// 2, the URLLC slice for remote driving), DNN SliceDNN, NR, one rating group with one
// used-unit container of uplink and downlink volume.
func (f *Fleet) chfRecord(i int, seq uint64, now time.Time) []byte {
	d := &f.Devices[i]
	sst := int64(1 + f.rng.IntN(2))
	up, down := uint64(20_000+f.rng.IntN(2_000_000)), uint64(100_000+f.rng.IntN(20_000_000))
	first := now.Add(-time.Minute).Truncate(time.Second)
	container := berSeq(berInt(1, 60), berUint(4, up+down), berUint(5, up), berUint(6, down), berUint(7, 0),
		berInt(9, int64(seq)), berCtx(11, berPrim(2, bcd(first)), berPrim(3, bcd(now)), berInt(7, 10)))
	muu := berSeq(berUint(0, 10+10*uint64(f.rng.IntN(2))), berCtx(1, container))
	supi := d.ID[len("imsi-"):]
	// The CHF numbers its records: with its id, the number names the CDR (and its event ids).
	f.lrsn++
	return berCtx(200,
		berInt(0, 200), berPrim(1, []byte("chf-sim")), berCtx(2, berInt(0, 1), berPrim(1, []byte(supi))),
		berCtx(5, muu), berPrim(6, bcd(first)), berInt(7, 60), berInt(9, 0), berInt(11, f.lrsn),
		berCtx(13, berInt(0, int64(i)), berInt(6, 1), berCtx(7, berInt(0, sst), berPrim(1, []byte{0, 0, byte(sst)})),
			berInt(12, 10), berPrim(13, []byte(SliceDNN))))
}

// BER: context-specific tags below 31 only, definite lengths.
func berTLV(id byte, tag int, content []byte) []byte {
	b := []byte{id | byte(tag)}
	if tag >= 31 { // one more octet suffices for the tags used here (< 16384)
		b = []byte{id | 0x1F, byte(0x80 | tag>>7), byte(tag & 0x7F)}
	}
	switch n := len(content); {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	default:
		b = append(b, 0x82, byte(n>>8), byte(n))
	}
	return append(b, content...)
}

func berCtx(tag int, kids ...[]byte) []byte { return berTLV(0xA0, tag, concat(kids)) }
func berSeq(kids ...[]byte) []byte          { return berTLV(0x20, 16, concat(kids)) }
func berPrim(tag int, v []byte) []byte      { return berTLV(0x80, tag, v) }

func berInt(tag int, v int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(v))
	for len(b) > 1 && ((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xFF && b[1]&0x80 != 0)) {
		b = b[1:]
	}
	return berPrim(tag, b)
}

func berUint(tag int, v uint64) []byte {
	b := binary.BigEndian.AppendUint64([]byte{0}, v)
	for len(b) > 1 && b[0] == 0 && b[1]&0x80 == 0 {
		b = b[1:]
	}
	return berPrim(tag, b)
}

func concat(parts [][]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// bcd is a TS 32.298 TimeStamp in UTC.
func bcd(t time.Time) []byte {
	t = t.UTC()
	d := func(v int) byte { return byte(v/10)<<4 | byte(v%10) }
	return []byte{d(t.Year() % 100), d(int(t.Month())), d(t.Day()), d(t.Hour()), d(t.Minute()), d(t.Second()), '+', 0, 0}
}
