package clickhouse_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

func TestRollupsFilled(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	in := sampleRated() // acme: 3 records on 2025-11-24 (two usage, one fee); globex: 1 on 1970-01-01
	if err := st.InsertRated(ctx, in); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2025, 11, 24, 0, 0, 0, 0, time.UTC)
	got, err := st.Rollup(ctx, clickhouse.RollupFilter{Tenant: "acme", From: day, To: day.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// Per tenant: usage and device_fee are separate keys.
	if len(got) != 2 {
		t.Fatalf("tenant rollup rows = %+v, want 2", got)
	}
	fee, usage := got[0], got[1] // ordered by charge
	if fee.Charge != record.ChargeDeviceFee || fee.Records != 1 || fee.Amount != in[2].Amount {
		t.Errorf("fee row = %+v", fee)
	}
	if usage.Charge != record.ChargeUsage || usage.Records != 2 || usage.Amount != in[0].Amount+in[1].Amount ||
		usage.BytesUp != in[0].BytesUp+in[1].BytesUp || !usage.Day.Equal(day) || usage.Zone != "de" || usage.Mobility != "stationary" {
		t.Errorf("usage row = %+v", usage)
	}

	dev, err := st.Rollup(ctx, clickhouse.RollupFilter{ByDevice: true})
	if err != nil {
		t.Fatal(err)
	}
	// acme dev-1 usage, acme dev-1 fee, acme Gerät usage, globex dev-1 usage.
	if len(dev) != 4 {
		t.Fatalf("device rollup rows = %d (%+v), want 4", len(dev), dev)
	}
	var sum record.Micros
	var recs uint64
	for _, r := range dev {
		sum += r.Amount
		recs += r.Records
	}
	var want record.Micros
	for _, r := range in {
		want += r.Amount
	}
	if recs != uint64(len(in)) || sum != want {
		t.Errorf("device rollup: %d records %s, want %d %s", recs, sum, len(in), want)
	}
}

func TestInsertRejected(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	in := []record.Rejection{
		{Source: "mqtt", Tenant: "acme", Device: "d1", Reason: "bad_json", Detail: "unexpected EOF", Raw: []byte{0, 1, 0xff, '{'}, Received: 1764000000123},
		{Source: "cdr", Reason: "bad_ber", Detail: "offset 17", Raw: nil, Received: 1764000000999},
	}
	if err := st.InsertRejected(ctx, in); err != nil {
		t.Fatal(err)
	}
	rows, err := st.Conn().Query(ctx, "SELECT source, tenant, device, reason, detail, raw, received_time_ms, toUnixTimestamp(received_time) FROM "+
		st.Schema().Database+".rejected_usage ORDER BY received_time_ms")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var r record.Rejection
		var raw string
		var ms uint64
		var sec uint32
		if err := rows.Scan(&r.Source, &r.Tenant, &r.Device, &r.Reason, &r.Detail, &raw, &ms, &sec); err != nil {
			t.Fatal(err)
		}
		w := in[i]
		if r.Source != w.Source || r.Tenant != w.Tenant || r.Device != w.Device || r.Reason != w.Reason ||
			r.Detail != w.Detail || !bytes.Equal([]byte(raw), w.Raw) || int64(ms) != w.Received || int64(sec) != w.Received/1000 {
			t.Errorf("row %d = %+v raw %q ms %d sec %d, want %+v", i, r, raw, ms, sec, w)
		}
	}
	if i != len(in) {
		t.Fatalf("read %d rejections, want %d", i, len(in))
	}
}

// A rejection of a large input stores its first 64 KiB, and the whole input's length and
// SHA-256, so the row says it holds a prefix.
func TestInsertRejectedBoundedRaw(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	input := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB
	rj := record.Rejection{Source: "http", Tenant: "acme", Device: "d1", Reason: record.ReasonTooLarge, Received: 1764000000123}
	rj.SetRaw(input)
	if err := st.InsertRejected(ctx, []record.Rejection{rj}); err != nil {
		t.Fatal(err)
	}
	var raw, sum string
	var n uint64
	if err := st.Conn().QueryRow(ctx, "SELECT raw, raw_len, raw_sha256 FROM "+st.Schema().Database+".rejected_usage").Scan(&raw, &n, &sum); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(input)
	if len(raw) != record.MaxRejectRaw || !bytes.Equal([]byte(raw), input[:len(raw)]) || n != uint64(len(input)) || sum != hex.EncodeToString(want[:]) {
		t.Fatalf("stored %d raw bytes, raw_len %d, sha %s; want %d, %d, %x", len(raw), n, sum, record.MaxRejectRaw, len(input), want)
	}
}

// A migration cut short after adding a column completes when it runs again, on servers
// without ADD COLUMN IF NOT EXISTS too.
func TestMigrationRerunAfterAddColumn(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	db := st.Schema().Database
	if err := st.Conn().Exec(ctx, "ALTER TABLE "+db+".schema_migrations DELETE WHERE version = 4"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; { // a mutation: wait until it is applied
		var n uint64
		if err := st.Conn().QueryRow(ctx, "SELECT count() FROM "+db+".schema_migrations WHERE version = 4").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("schema_migrations still lists version 4")
		}
		time.Sleep(50 * time.Millisecond)
	}
	done, err := st.Migrate(ctx)
	if err != nil {
		t.Fatalf("re-run of migration 4 with its columns present: %v", err)
	}
	if len(done) != 1 || done[0] != 4 {
		t.Fatalf("applied %v, want [4]", done)
	}
}
