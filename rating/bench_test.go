package rating

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"fleetmeter/record"
	"fleetmeter/rules"
)

// benchTariff is a realistic tariff: 50 zones (10 circles, 5 polygons, 15 cell zones,
// 19 PLMN zones, the default), prices for every zone, slices and 5 offers.
func benchTariff() string {
	var b strings.Builder
	b.WriteString("id: bench\nversion: \"1\"\ncurrency: EUR\ntenants: [t0, t1, t2, t3]\nzones:\n")
	var names []string
	for i := range 10 {
		fmt.Fprintf(&b, "  - name: circle%d\n    geofence: {circle: {lat: %.4f, lon: %.4f, radius_km: 3.5}}\n", i, 48+float64(i)*0.5, 8+float64(i)*0.7)
		names = append(names, fmt.Sprintf("circle%d", i))
	}
	for i := range 5 {
		la, lo := 45+float64(i), 2+float64(i)
		fmt.Fprintf(&b, "  - name: poly%d\n    geofence: {polygon: [[%v, %v], [%v, %v], [%v, %v], [%v, %v], [%v, %v]]}\n", i,
			la, lo, la, lo+0.2, la+0.1, lo+0.25, la+0.2, lo+0.2, la+0.2, lo)
		names = append(names, fmt.Sprintf("poly%d", i))
	}
	for i := range 15 {
		fmt.Fprintf(&b, "  - name: cells%d\n    cells: [\"2620%02d00a*\", \"2620%02d00b1\", \"2620%02d00b2\"]\n", i, i, i, i)
		names = append(names, fmt.Sprintf("cells%d", i))
	}
	for i := range 19 {
		fmt.Fprintf(&b, "  - name: net%d\n    plmns: [\"%03d-%02d\", \"%03d-%02d\"]\n", i, 200+i, 1, 200+i, 2)
		names = append(names, fmt.Sprintf("net%d", i))
	}
	b.WriteString("  - name: world\n    default: true\nmobility: {window: 24h, stationary_max: 1, nomadic_max: 5}\nrates:\n")
	b.WriteString("  data:\n    unit: MB\n    increment: 1KB\n    prices:\n")
	for i, n := range names {
		fmt.Fprintf(&b, "      %s: {stationary: 0.00%d1, nomadic: 0.00%d2, mobile: 0.00%d3}\n", n, i%10, i%10, i%10)
	}
	b.WriteString("      \"*\": {\"*\": 0.01}\n  duration:\n    unit: minute\n    prices: {\"*\": {\"*\": 0.0005}}\n")
	b.WriteString("  events:\n    prices: {\"*\": {\"*\": 0.00001}}\nslices: {1: 1.0, 2: 3.0, 3: 0.8}\noffers:\n")
	for i := range 5 {
		fmt.Fprintf(&b, "  - {id: offer%d, priority: %d, from: 2026-11-0%dT00:00:00Z, to: 2026-11-2%dT00:00:00Z, match: {rating_groups: [%d], zones: [net%d]}, multiplier: 0.5}\n", i, i, i+1, i, 30+i, i)
	}
	b.WriteString("device_fee:\n  mode: graduated\n  tiers:\n    - {upto: 1000, price: 0.5}\n    - {upto: 100000, price: 0.35}\n    - {price: 0.2}\n")
	return b.String()
}

func benchSet(tb testing.TB) *rules.Set {
	t, err := rules.Parse("bench.yaml", []byte(benchTariff()))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := rules.NewSet(t)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// benchInput makes n records over devs devices: a third with positions (some in
// geofences), a third with cells, the rest with PLMNs only.
func benchInput(tb testing.TB, rng *rand.Rand, devs, n int) []record.Usage {
	base := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC).UnixMilli()
	ids := make([]string, devs)
	for i := range ids {
		ids[i] = fmt.Sprintf("device-%07d", i)
	}
	out := make([]record.Usage, n)
	for i := range out {
		d := rng.IntN(devs)
		ts := base + rng.Int64N(3*24*3600*1000)
		u := record.Usage{EventID: fmt.Sprintf("ev-%d", i), Tenant: fmt.Sprintf("t%d", d%4), Device: ids[d],
			Source: "mqtt", StartTime: ts, EndTime: ts, BytesUp: rng.Uint64N(200_000), BytesDown: rng.Uint64N(2_000_000),
			DurationMs: rng.Uint64N(300_000), Events: rng.Uint64N(3), RatingGroup: uint32(30 + rng.IntN(6)),
			PLMN: fmt.Sprintf("%03d-%02d", 200+rng.IntN(25), 1+rng.IntN(3))}
		switch d % 3 {
		case 0:
			c := rng.IntN(10)
			u.Lat, u.Lon, u.HasPos = 48+float64(c)*0.5+rng.Float64()*0.1-0.05, 8+float64(c)*0.7+rng.Float64()*0.1-0.05, true
		case 1:
			u.Cell = fmt.Sprintf("2620%02d00a%03d", rng.IntN(20), rng.IntN(4))
		}
		if rng.IntN(4) == 0 {
			u.SliceSST, u.HasSlice = uint8(1+rng.IntN(3)), true
		}
		out[i] = u
	}
	return asDecoded(tb, out, 256)
}

// asDecoded returns us as the rater sees them: encoded and decoded again in Kafka
// batches of n, so each batch's strings sit in its own column buffers, not in a million
// separate allocations shared between batches (which would add a cache miss per record
// that the rater never pays).
func asDecoded(tb testing.TB, us []record.Usage, n int) []record.Usage {
	enc := record.NewUsageEncoder()
	out := make([]record.Usage, 0, len(us))
	var buf []byte
	for i := 0; i < len(us); i += n {
		var err error
		if buf, err = enc.Encode(buf[:0], us[i:min(i+n, len(us))]); err != nil {
			tb.Fatal(err)
		}
		if out, err = record.DecodeUsage(buf, out); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// BenchmarkRate measures the per-record rating path on a State already tracking every
// device. go test -run '^$' -bench Rate -benchtime 2000000x ./rating/
func BenchmarkRate(b *testing.B) {
	for _, devs := range []int{1_000_000} {
		b.Run(fmt.Sprintf("tariff=zones50/devices=%d", devs), func(b *testing.B) {
			e := NewEngine(benchSet(b), Options{Now: func() int64 { return 0 }})
			st := NewState()
			rng := rand.New(rand.NewPCG(1, 1))
			out := make([]record.Rated, 0, 4)
			// Warm up: every device seen once, so the loop measures the steady state.
			warm := benchInput(b, rng, devs, 1)[0]
			for i := range devs {
				warm.Device = fmt.Sprintf("device-%07d", i)
				warm.Tenant = fmt.Sprintf("t%d", i%4)
				out, _ = e.Rate(st, &warm, out[:0])
			}
			in := benchInput(b, rng, devs, 1<<16)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			i := 0
			for b.Loop() {
				var err error
				out, err = e.Rate(st, &in[i&(1<<16-1)], out[:0])
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i)/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkRateBatch is BenchmarkRate through RateBatch, 256 records per call as a
// decoded Kafka batch would hand them over.
func BenchmarkRateBatch(b *testing.B) {
	const devs = 1_000_000
	b.Run(fmt.Sprintf("tariff=zones50/devices=%d/batch=256", devs), func(b *testing.B) {
		e := NewEngine(benchSet(b), Options{Now: func() int64 { return 0 }})
		st := NewState()
		rng := rand.New(rand.NewPCG(1, 1))
		out := make([]record.Rated, 0, 1024)
		warm := benchInput(b, rng, devs, 1)[0]
		for i := range devs {
			warm.Device = fmt.Sprintf("device-%07d", i)
			warm.Tenant = fmt.Sprintf("t%d", i%4)
			out, _ = e.Rate(st, &warm, out[:0])
		}
		in := benchInput(b, rng, devs, 1<<16)
		fail := func(i int, err error) { b.Fatal(err) }
		b.ReportAllocs()
		start := time.Now()
		i := 0
		for b.Loop() {
			j := (i * 256) & (1<<16 - 1)
			out = e.RateBatch(st, in[j:j+256], out[:0], fail)
			st.ClearDirty() // as the rater does once a batch's changes are written
			i++
		}
		b.ReportMetric(float64(i*256)/time.Since(start).Seconds(), "records/s")
	})
}

// BenchmarkStateMemory measures what a State costs per tracked device after one record
// each: resident memory (RSS, which counts the off-heap pages) and Go heap.
// go test -run '^$' -bench StateMemory -benchtime 1x ./rating/
func BenchmarkStateMemory(b *testing.B) {
	const devs = 1_000_000
	b.Run(fmt.Sprintf("devices=%d", devs), func(b *testing.B) {
		e := NewEngine(benchSet(b), Options{Now: func() int64 { return 0 }})
		in := benchInput(b, rand.New(rand.NewPCG(2, 2)), 1, 1)[0]
		names := make([]string, devs)
		for i := range names {
			names[i] = fmt.Sprintf("device-%07d", i)
		}
		out := make([]record.Rated, 0, 4)
		var perDev, rssDev float64
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			debug.FreeOSMemory()
			rss0 := rssBytes(b)
			st := NewState()
			for i := range devs {
				in.Device, in.Tenant = names[i], "t0"
				out, _ = e.Rate(st, &in, out[:0])
			}
			st.ClearDirty()
			runtime.GC()
			runtime.ReadMemStats(&after)
			debug.FreeOSMemory()
			rssDev = float64(rssBytes(b)-rss0) / devs
			perDev = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / devs
			runtime.KeepAlive(st)
			st.Release()
		}
		b.ReportMetric(perDev, "heap-bytes/device")
		b.ReportMetric(rssDev, "rss-bytes/device")
	})
}

// rssBytes reads this process's resident set from /proc (0 where there is none).
func rssBytes(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		tb.Fatal(err)
	}
	return res * int64(os.Getpagesize())
}
