package clickhouse_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

func TestMigrateTwice(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	st, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t.Logf("server %s, features %+v", st.Version(), st.Schema().Features)
	again, err := st.Migrate(ctx)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second migrate applied %v, want nothing", again)
	}
	// A second Open (a restarted loader) migrates nothing either.
	st2, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st2.Close()
	var n uint64
	if err := st.Conn().QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := st.Schema().Migrations()
	if n != uint64(len(ms)) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
	}
}

func sampleRated() []record.Rated {
	base := record.Rated{
		Usage: record.Usage{
			EventID: "ev-1", Tenant: "acme", Device: "dev-1", Source: record.SourceMQTT,
			StartTime: 1764000000123, EndTime: 1764000060456, ReceivedTime: 1764000061789,
			BytesUp: 10, BytesDown: 20, DurationMs: 60333, Events: 1, RatingGroup: 7,
			PLMN: "262-01", Cell: "ecgi-1", Lat: 52.52, Lon: 13.405, HasPos: true,
			RAT: "NR", SliceSST: 1, HasSlice: true, SliceSD: "0a0b0c",
		},
		RecordID: "ev-1", Charge: record.ChargeUsage, Zone: "de", Mobility: "stationary",
		Tariff: "iot-basic", TariffVersion: "v3", Offer: "", ActiveDevices: 42,
		Currency: "EUR", Amount: 1_234_567, RatedTime: 1764000062001,
	}
	r2 := base
	r2.EventID, r2.RecordID, r2.Device = "ev-2", "ev-2", "Gerät-ü-日本-🚗"
	r2.HasPos, r2.Lat, r2.Lon = false, 0, 0
	r2.HasSlice, r2.SliceSST = false, 0
	r2.BytesUp, r2.BytesDown, r2.DurationMs, r2.Events = math.MaxUint64, math.MaxUint64-1, math.MaxUint64, math.MaxUint64
	r2.RatingGroup = math.MaxUint32
	r2.ActiveDevices = math.MaxUint64
	r2.Amount = -987_654_321
	r2.Offer = "match-day «final»"
	r2.Cell, r2.PLMN, r2.RAT, r2.SliceSD = "", "", "", ""
	r3 := base
	r3.EventID, r3.RecordID = "ev-3", "fee-acme-2025-11-dev-1"
	r3.Charge = record.ChargeDeviceFee
	r3.HasSlice, r3.SliceSST = true, 255
	r3.Lat, r3.Lon = -90, 180
	r3.Amount = 9_223_372_036_854_775_807 // the largest Micros
	r4 := base
	r4.Tenant, r4.EventID, r4.RecordID = "globex", "ev-4", "ev-4"
	r4.Currency = "USD"
	r4.Amount = 1
	r4.StartTime, r4.EndTime = 0, 0 // the epoch: DateTime's lower edge
	return []record.Rated{base, r2, r3, r4}
}

func TestInsertReadBackExact(t *testing.T) {
	for _, c := range []string{"lz4", "none"} {
		t.Run("compression="+c, func(t *testing.T) { testInsertReadBackExact(t, c) })
	}
}

func testInsertReadBackExact(t *testing.T, compression string) {
	cfg := testConfig(t)
	cfg.Compression = compression
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in := sampleRated()
	if err := st.InsertRated(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := st.Records(ctx, clickhouse.Filter{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(in)
	slices.SortFunc(want, func(a, b record.Rated) int {
		if c := cmpStr(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return cmpStr(a.RecordID, b.RecordID)
	})
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// The Decimal column the server derives matches the micros exactly.
	var amount string
	q := "SELECT toString(amount) FROM " + st.Schema().Database + ".rated_usage WHERE record_id = 'ev-2'"
	if err := st.Conn().QueryRow(ctx, q).Scan(&amount); err != nil {
		t.Fatal(err)
	}
	if amount != "-987.654321" {
		t.Errorf("amount = %s, want -987.654321", amount)
	}
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestDuplicatesCountOnce(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	in := sampleRated()[:2] // acme, EUR: 1.234567 and -987.654321
	// The same batch twice (a retried INSERT), then one record a third time, re-rated later.
	for range 2 {
		if err := st.InsertRated(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	again := in[0]
	again.RatedTime += 5000
	if err := st.InsertRated(ctx, []record.Rated{again}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Totals(ctx, clickhouse.Filter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	want := []clickhouse.Total{{Tenant: "acme", Currency: "EUR", Records: 2, Amount: 1_234_567 - 987_654_321}}
	if !slices.Equal(got, want) {
		t.Fatalf("totals = %+v, want %+v", got, want)
	}
	recs, err := st.Records(ctx, clickhouse.Filter{Tenant: "acme"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].RatedTime != in[0].RatedTime {
		t.Fatalf("records = %+v, want 2 with the first rating of the copied record", recs)
	}
}

// A record is priced once: a copy rated later with another amount (a device resending
// after the device's state moved on) never replaces the first rating, neither in reads
// nor after the table merges.
func TestFirstRatingStands(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	in := sampleRated()[:1]
	if err := st.InsertRated(ctx, in); err != nil {
		t.Fatal(err)
	}
	later := in[0]
	later.RatedTime += 3_600_000
	later.Amount += 777
	later.Mobility = "stationary"
	earlier := in[0]
	earlier.RatedTime -= 1000 // a loader redelivering an older copy after the first insert
	for _, c := range []record.Rated{later, earlier, later} {
		if err := st.InsertRated(ctx, []record.Rated{c}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		got, err := st.Totals(ctx, clickhouse.Filter{Tenant: in[0].Tenant})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Records != 1 || got[0].Amount != earlier.Amount {
			t.Fatalf("%s: totals = %+v, want 1 record of %s (the earliest rating)", when, got, earlier.Amount)
		}
		recs, err := st.Records(ctx, clickhouse.Filter{Tenant: in[0].Tenant}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].RatedTime != earlier.RatedTime || recs[0].Mobility != earlier.Mobility {
			t.Fatalf("%s: records = %+v, want the earliest rating", when, recs)
		}
	}
	check("before merge")
	if err := st.Conn().Exec(ctx, "OPTIMIZE TABLE "+st.Schema().Database+".rated_usage FINAL"); err != nil {
		t.Fatal(err)
	}
	check("after merge")
}

func TestReplacingMergeCollapses(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	in := sampleRated()
	for range 3 {
		if err := st.InsertRated(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	db := st.Schema().Database
	if err := st.Conn().Exec(ctx, "OPTIMIZE TABLE "+db+".rated_usage FINAL"); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := st.Conn().QueryRow(ctx, "SELECT count() FROM "+db+".rated_usage").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(len(in)) {
		t.Fatalf("after merge %d rows, want %d", n, len(in))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := clickhouse.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := clickhouse.Config{Database: "a-b; DROP", Cluster: "c x", MaxBatch: -1, QueryThreads: -1, Compression: "zip"}
	err := bad.Validate()
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, key := range []string{"clickhouse.addr", "clickhouse.database", "clickhouse.cluster", "clickhouse.dial_timeout", "clickhouse.max_batch", "clickhouse.query_threads", "clickhouse.compression"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}
