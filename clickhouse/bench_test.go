package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

const benchBatch = 100_000

// benchRows is one loader batch: 3 tenants, 1000 devices, one month.
func benchRows(n int) []record.Rated {
	rows := make([]record.Rated, n)
	tenants := []string{"acme-automotive", "utility-north", "farm-coop"}
	zones := []string{"home", "eu", "world"}
	mob := []string{"stationary", "nomadic", "mobile"}
	devices := make([]string, 1000)
	for i := range devices {
		devices[i] = fmt.Sprintf("imsi-26201%010d", i)
	}
	t0 := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range rows {
		id := fmt.Sprintf("ev-%016x", i)
		start := t0 + int64(i)*20_000
		rows[i] = record.Rated{
			Usage: record.Usage{
				EventID: id, Tenant: tenants[i%3], Device: devices[i%1000], Source: record.SourceMQTT,
				StartTime: start, EndTime: start + 60_000, ReceivedTime: start + 61_000,
				BytesUp: uint64(i % 5000), BytesDown: uint64(i % 70000), DurationMs: 60_000, Events: 1,
				RatingGroup: 10, PLMN: "262-01", Cell: fmt.Sprintf("ecgi-%d", i%500),
				Lat: 52.5 + float64(i%100)/1000, Lon: 13.4, HasPos: i%4 != 0,
				RAT: "NB-IoT", SliceSST: 3, HasSlice: i%2 == 0,
			},
			RecordID: id, Charge: record.ChargeUsage, Zone: zones[i%3], Mobility: mob[i%3],
			Tariff: "iot-basic", TariffVersion: "2025-11-01", ActiveDevices: 1000,
			Currency: "EUR", Amount: record.Micros(i % 1_000_000), RatedTime: start + 62_000,
		}
	}
	return rows
}

// BenchmarkInsert compares InsertRated (conversion from records, ReplacingMergeTree, two
// rollup views, the Decimal default) with the raw ceiling: the same rows, already in
// column slices, appended column-wise by clickhouse-go into a plain MergeTree table
// without views; impl=store-noviews separates the cost of the views.
// Run: go test ./clickhouse -run '^$' -bench Insert -benchtime 10x -count 3
func BenchmarkInsert(b *testing.B) {
	rows := benchRows(benchBatch)
	ctx := context.Background()
	st := openStore(b)

	b.Run("impl=store", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := st.InsertRated(ctx, rows); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
	})

	// The same store with its rollup views dropped: what the views cost.
	b.Run("impl=store-noviews", func(b *testing.B) {
		st := openStore(b)
		for _, v := range []string{"rated_daily_device_mv", "rated_daily_tenant_mv"} {
			if err := st.Conn().Exec(ctx, "DROP TABLE "+st.Schema().Database+"."+v); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := st.InsertRated(ctx, rows); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("impl=raw", func(b *testing.B) {
		db := st.Schema().Database
		conn := st.Conn()
		ddl := "CREATE TABLE IF NOT EXISTS " + db + ".raw_rated AS " + db + ".rated_usage ENGINE = MergeTree() PARTITION BY toYYYYMM(start_time) ORDER BY (tenant, record_id)"
		if err := conn.Exec(ctx, ddl); err != nil {
			b.Fatal(err)
		}
		names, values := clickhouse.RatedColumnsForBench(rows)
		q := "INSERT INTO " + db + ".raw_rated (" + joinNames(names) + ")"
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			batch, err := conn.PrepareBatch(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			for i, v := range values {
				if err := batch.Column(i).Append(v); err != nil {
					b.Fatal(err)
				}
			}
			if err := batch.Send(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
	})
}

func joinNames(names []string) string { return strings.Join(names, ", ") }
