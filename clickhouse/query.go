package clickhouse

import (
	"strings"
	"time"
)

// Filter selects rated records: one tenant (or all) and a half-open range of start times.
type Filter struct {
	Tenant string // empty: every tenant
	From   int64  // start_time_ms >= From (ms since the epoch); 0: no lower bound
	To     int64  // start_time_ms < To; 0: no upper bound
	Charge string // usage, device_fee or adjustment; empty: every charge
}

// where renders the filter. The DateTime bounds let ClickHouse prune partitions and
// granules; the _ms bounds make the range exact to the millisecond.
func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	if f.Tenant != "" {
		conds = append(conds, "tenant = ?")
		args = append(args, f.Tenant)
	}
	if f.Charge != "" {
		conds = append(conds, "charge = ?")
		args = append(args, f.Charge)
	}
	if f.From > 0 {
		conds = append(conds, "start_time >= toDateTime(?)", "start_time_ms >= ?")
		args = append(args, seconds(f.From), uint64(f.From))
	}
	if f.To > 0 {
		conds = append(conds, "start_time <= toDateTime(?)", "start_time_ms < ?")
		args = append(args, seconds(f.To-1), uint64(f.To))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return "WHERE " + strings.Join(conds, " AND ") + "\n", args
}

// TotalsQuery counts rated records and sums their amounts per tenant and currency, each
// record once however often it was inserted.
//
// Duplicates are collapsed by GROUP BY (tenant, record_id) rather than FINAL: it runs on
// every thread, and on a Distributed table the initiator merges the groups of all shards,
// so it stays exact even if copies of a record sit on different shards (FINAL collapses
// only within one shard). Of several copies, the one rated first counts (a record is
// priced once), as the ReplacingMergeTree keeps on merge.
func TotalsQuery(db string, f Filter) (string, []any) {
	where, args := f.where()
	q := "SELECT tenant, cur, count() AS records, sum(amt) AS amount\n" +
		"FROM (\n" +
		"SELECT tenant, record_id, argMin(currency, rated_time_ms) AS cur, argMin(amount, rated_time_ms) AS amt\n" +
		"FROM " + db + ".rated_usage\n" +
		where +
		"GROUP BY tenant, record_id\n" +
		")\n" +
		"GROUP BY tenant, cur\n" +
		"ORDER BY tenant, cur"
	return q, args
}

// RecordColumns are the columns a rated record is read back from, in the order ScanRated
// expects: the exact _ms times and amount_micros rather than their second and Decimal
// forms.
var RecordColumns = []string{
	"event_id", "tenant", "device", "source",
	"start_time_ms", "end_time_ms", "received_time_ms",
	"bytes_up", "bytes_down", "duration_ms", "events", "rating_group",
	"plmn", "cell", "lat", "lon", "rat", "slice_sst", "slice_sd",
	"record_id", "charge", "zone", "mobility", "tariff", "tariff_version", "offer",
	"active_devices", "currency", "amount_micros", "rated_time_ms",
}

// RecordsQuery returns the rated records, one row per (tenant, record_id): the copy rated
// first, as in TotalsQuery. LIMIT 1 BY is applied again on the initiator of a Distributed
// query, so it is exact across shards too.
func RecordsQuery(db string, f Filter) (string, []any) {
	where, args := f.where()
	q := "SELECT " + strings.Join(RecordColumns, ", ") + "\n" +
		"FROM " + db + ".rated_usage\n" +
		where +
		"ORDER BY tenant, record_id, rated_time_ms\n" +
		"LIMIT 1 BY tenant, record_id"
	return q, args
}

// RollupFilter selects days of a daily rollup.
type RollupFilter struct {
	Tenant   string    // empty: every tenant
	From, To time.Time // days From <= day < To (UTC dates); zero: unbounded
	ByDevice bool      // per device (rated_daily_device) rather than per tenant
}

// RollupQuery sums a daily rollup. SummingMergeTree folds rows of one key only when parts
// merge, so the query sums again by the key. The figures include redelivered duplicates
// (see migrations/0003_rollups.sql): analytics, not billing.
func RollupQuery(db string, f RollupFilter) (string, []any) {
	table, keys := "rated_daily_tenant", "tenant, day, zone, mobility, charge, currency"
	if f.ByDevice {
		table, keys = "rated_daily_device", "tenant, day, zone, mobility, device, charge, currency"
	}
	var conds []string
	var args []any
	if f.Tenant != "" {
		conds = append(conds, "tenant = ?")
		args = append(args, f.Tenant)
	}
	if !f.From.IsZero() {
		conds = append(conds, "day >= toDate(?)")
		args = append(args, f.From.UTC().Format(time.DateOnly))
	}
	if !f.To.IsZero() {
		conds = append(conds, "day < toDate(?)")
		args = append(args, f.To.UTC().Format(time.DateOnly))
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ") + "\n"
	}
	q := "SELECT " + keys + ", sum(records) AS records, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,\n" +
		"sum(duration_ms) AS duration_ms, sum(events) AS events, sum(amount) AS amount\n" +
		"FROM " + db + "." + table + "\n" +
		where +
		"GROUP BY " + keys + "\n" +
		"ORDER BY " + keys
	return q, args
}

// ActiveDevicesQuery counts distinct devices per tenant among the selected records (a
// device is identified by tenant and device together).
func ActiveDevicesQuery(db string, f Filter) (string, []any) {
	where, args := f.where()
	return "SELECT tenant, uniqExact(device) AS devices\nFROM " + db + ".rated_usage\n" + where +
		"GROUP BY tenant\nORDER BY tenant", args
}
