package billing_test

import (
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/record"
)

// processCPU is the CPU seconds this process has used: on a shared box the CPU per row
// says what the encoding costs when the wall clock says how long it waited.
func processCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkRecordWriter encodes a page of rated records held in memory in each format to
// io.Discard: the encoding's share of an export (BenchmarkExport in billing/chstore
// measures the whole of it). rows/s is the figure, cpu-s/Mrow its cost (GC included).
//
//	go test -run '^$' -bench RecordWriter ./billing/
func BenchmarkRecordWriter(b *testing.B) {
	const n = 200_000
	recs := make([]billing.Exported, n)
	for i := range recs {
		id := fmt.Sprintf("ev-%016x", i)
		recs[i].Rec = record.Rated{
			Usage: record.Usage{EventID: id, Tenant: "acme-automotive", Device: fmt.Sprintf("imsi-26201%010d", i%1000), Source: "mqtt",
				StartTime: 1_790_000_000_000 + int64(i)*1000, EndTime: 1_790_000_060_000 + int64(i)*1000, ReceivedTime: 1_790_000_061_000 + int64(i)*1000,
				BytesUp: uint64(i % 5000), BytesDown: uint64(i % 70000), DurationMs: 60_000, Events: 1, RatingGroup: 10, PLMN: "262-01",
				Cell: fmt.Sprintf("ecgi-%d", i%500), Lat: 52.5, Lon: 13.4, HasPos: i%4 != 0, RAT: "NB-IoT", SliceSST: 3, HasSlice: i%2 == 0},
			RecordID: id, Charge: record.ChargeUsage, Zone: "home", Mobility: "stationary", Tariff: "iot-basic",
			TariffVersion: "2026-10", ActiveDevices: 1000, Currency: "EUR", Amount: record.Micros(i % 9999), RatedTime: 1_790_000_062_000 + int64(i)*1000,
		}
	}
	// input=columns is the export's path (a page read as billing.Columns), input=records
	// a Store without columns.
	cols := billing.NewColumns(recs, new(billing.Columns))
	for _, f := range []billing.Format{billing.ArrowStream, billing.Parquet, billing.JSONLines, billing.CSV} {
		for _, in := range []string{"columns", "records"} {
			b.Run("format="+f.String()+"/input="+in, func(b *testing.B) {
				b.ReportAllocs()
				cpu := processCPU(b)
				for b.Loop() {
					w, err := billing.NewRecordWriter(f, io.Discard)
					if err != nil {
						b.Fatal(err)
					}
					if in == "columns" {
						err = w.WriteColumns(cols)
					} else {
						err = w.Write(recs)
					}
					if err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				b.ReportMetric((processCPU(b)-cpu)/(float64(n)*float64(b.N)/1e6), "cpu-s/Mrow")
			})
		}
	}
}
