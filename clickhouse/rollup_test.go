package clickhouse_test

import (
	"bytes"
	"context"
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
