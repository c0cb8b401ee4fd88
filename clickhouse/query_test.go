package clickhouse

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFilterWhere(t *testing.T) {
	tests := []struct {
		name  string
		f     Filter
		where string
		args  []any
	}{
		{"none", Filter{}, "", nil},
		{"tenant", Filter{Tenant: "acme"}, "WHERE tenant = ?\n", []any{"acme"}},
		{"from", Filter{From: 1764000000123},
			"WHERE start_time >= toDateTime(?) AND start_time_ms >= ?\n",
			[]any{int64(1764000000), uint64(1764000000123)}},
		// To is exclusive: a bound on a whole second does not include that second.
		{"to on a second", Filter{To: 1764000001000},
			"WHERE start_time <= toDateTime(?) AND start_time_ms < ?\n",
			[]any{int64(1764000000), uint64(1764000001000)}},
		{"all", Filter{Tenant: "t'x", From: 1000, To: 2500},
			"WHERE tenant = ? AND start_time >= toDateTime(?) AND start_time_ms >= ? AND start_time <= toDateTime(?) AND start_time_ms < ?\n",
			[]any{"t'x", int64(1), uint64(1000), int64(2), uint64(2500)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			where, args := tt.f.where()
			if where != tt.where || !reflect.DeepEqual(args, tt.args) {
				t.Errorf("where() = %q %#v\nwant       %q %#v", where, args, tt.where, tt.args)
			}
		})
	}
}

func TestQueryBuilders(t *testing.T) {
	tests := []struct {
		name  string
		sql   string
		args  []any
		want  string
		wargs []any
	}{
		{
			name: "totals all",
			want: `SELECT tenant, cur, count() AS records, sum(amt) AS amount
FROM (
SELECT tenant, record_id, argMin(currency, rated_time_ms) AS cur, argMin(amount, rated_time_ms) AS amt
FROM fm.rated_usage
GROUP BY tenant, record_id
)
GROUP BY tenant, cur
ORDER BY tenant, cur`,
		},
		{
			name: "totals tenant",
			want: `SELECT tenant, cur, count() AS records, sum(amt) AS amount
FROM (
SELECT tenant, record_id, argMin(currency, rated_time_ms) AS cur, argMin(amount, rated_time_ms) AS amt
FROM fm.rated_usage
WHERE tenant = ?
GROUP BY tenant, record_id
)
GROUP BY tenant, cur
ORDER BY tenant, cur`,
			wargs: []any{"acme"},
		},
		{
			name: "records period",
			want: `SELECT event_id, tenant, device, source, start_time_ms, end_time_ms, received_time_ms, bytes_up, bytes_down, duration_ms, events, rating_group, plmn, cell, lat, lon, rat, slice_sst, slice_sd, record_id, charge, zone, mobility, tariff, tariff_version, offer, active_devices, currency, amount_micros, rated_time_ms
FROM fm.rated_usage
WHERE start_time >= toDateTime(?) AND start_time_ms >= ? AND start_time <= toDateTime(?) AND start_time_ms < ?
ORDER BY tenant, record_id, rated_time_ms
LIMIT 1 BY tenant, record_id`,
			wargs: []any{int64(1761955200), uint64(1761955200000), int64(1764547199), uint64(1764547200000)},
		},
		{
			name: "rollup tenant",
			want: `SELECT tenant, day, zone, mobility, charge, currency, sum(records) AS records, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
sum(duration_ms) AS duration_ms, sum(events) AS events, sum(amount) AS amount
FROM fm.rated_daily_tenant
WHERE tenant = ? AND day >= toDate(?) AND day < toDate(?)
GROUP BY tenant, day, zone, mobility, charge, currency
ORDER BY tenant, day, zone, mobility, charge, currency`,
			wargs: []any{"acme", "2025-11-01", "2025-12-01"},
		},
		{
			name: "rollup device",
			want: `SELECT tenant, day, zone, mobility, device, charge, currency, sum(records) AS records, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
sum(duration_ms) AS duration_ms, sum(events) AS events, sum(amount) AS amount
FROM fm.rated_daily_device
GROUP BY tenant, day, zone, mobility, device, charge, currency
ORDER BY tenant, day, zone, mobility, device, charge, currency`,
		},
	}
	nov := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	dec := nov.AddDate(0, 1, 0)
	built := map[string]func() (string, []any){
		"totals all":     func() (string, []any) { return TotalsQuery("fm", Filter{}) },
		"totals tenant":  func() (string, []any) { return TotalsQuery("fm", Filter{Tenant: "acme"}) },
		"records period": func() (string, []any) { return RecordsQuery("fm", Filter{From: nov.UnixMilli(), To: dec.UnixMilli()}) },
		"rollup tenant": func() (string, []any) {
			return RollupQuery("fm", RollupFilter{Tenant: "acme", From: nov, To: dec})
		},
		"rollup device": func() (string, []any) { return RollupQuery("fm", RollupFilter{ByDevice: true}) },
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sql, args := built[tt.name]()
			if sql != tt.want {
				t.Errorf("sql:\n%s\nwant:\n%s", sql, tt.want)
			}
			if !reflect.DeepEqual(args, tt.wargs) {
				t.Errorf("args = %#v, want %#v", args, tt.wargs)
			}
			if n := strings.Count(sql, "?"); n != len(args) {
				t.Errorf("%d placeholders, %d args", n, len(args))
			}
		})
	}
}
