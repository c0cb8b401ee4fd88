package clickhouse

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Analytics queries answer a tenant's questions about its own usage (cmd/api). Every
// figure is exact: the inner query collapses the copies of a record_id keeping the first
// rating (argMin by rated_time_ms, as TotalsQuery; or, on one node, by
// FINAL, which keeps the same row), and only then are filters, buckets and group-bys
// applied, so a redelivered copy rated differently can neither count nor move a record to
// another group. The daily rollups are not read: they count redeliveries.
//
// Safety: the tenant and every filter value travel as bound parameters; dimension names
// are taken from a fixed table (Dims), never from the caller's text.

// Dim is a dimension a usage query groups or filters by.
type Dim struct {
	Name string // API name, also the column's alias in the inner query
	col  string // the value on a rated_usage row
}

// pick is the dimension's value in the inner query: the row's own under FINAL, else the
// first rating's.
func (d Dim) pick(final bool) string {
	if d.Name == "device" {
		return "device"
	}
	if final {
		if d.col == d.Name {
			return d.col
		}
		return d.col + " AS " + d.Name
	}
	return "argMin(" + d.col + ", rated_time_ms) AS " + d.Name
}

// Dims are the dimensions, in the order results list them.
var Dims = []Dim{
	{"device", "device"},
	{"zone", "zone"},
	{"mobility", "mobility"},
	{"source", "source"},
	{"rat", "rat"},
	// slice: "" (none), "<sst>" or "<sst>-<sd>"
	{"slice", "if(isNull(slice_sst), '', concat(toString(assumeNotNull(slice_sst)), " +
		"if(toString(slice_sd) = '', '', concat('-', toString(slice_sd)))))"},
	{"tariff", "tariff"},
	{"offer", "offer"},
	{"charge", "charge"},
	{"currency", "currency"},
}

// DimNames lists the valid dimension names.
func DimNames() []string {
	out := make([]string, len(Dims))
	for i, d := range Dims {
		out[i] = d.Name
	}
	return out
}

func dimIndex(name string) int {
	for i, d := range Dims {
		if d.Name == name {
			return i
		}
	}
	return -1
}

// Window is a bucket width.
type Window string

// Windows of usage queries; buckets are UTC.
const (
	Hour  Window = "hour"
	Day   Window = "day"
	Month Window = "month"
)

// bucketExpr renders the bucket of start time t (epoch ms): its start in epoch ms for
// hours and days, YYYYMM for months (BucketStart converts). Plain arithmetic and
// toYYYYMM with an explicit zone run alike on 18.16 and current servers.
func (w Window) bucketExpr(t string) (string, error) {
	switch w {
	case Hour:
		return "intDiv(" + t + ", 3600000) * 3600000", nil
	case Day:
		return "intDiv(" + t + ", 86400000) * 86400000", nil
	case Month:
		return "toUInt64(toYYYYMM(toDateTime(intDiv(" + t + ", 1000), 'UTC'), 'UTC'))", nil
	}
	return "", fmt.Errorf("window %q: want hour, day or month", string(w))
}

// BucketStart converts a bucket value of window w to its start in epoch ms.
func BucketStart(w Window, v uint64) int64 {
	if w == Month {
		return monthStart(int(v/100), int(v%100))
	}
	return int64(v)
}

// UsageSpec is one usage query of one tenant.
type UsageSpec struct {
	Tenant   string // required
	From, To int64  // start_time_ms in [From, To), both required
	Window   Window
	GroupBy  []string            // dimension names (Dims)
	Filters  map[string][]string // dimension -> accepted values (any of)
	Limit    int                 // most rows returned; the query asks for one more to detect overflow
	// Final collapses copies with FINAL instead of GROUP BY record_id: 3-4x faster, and
	// exact on one node, where the ReplacingMergeTree's version keep_first makes FINAL
	// keep the earliest rating. Leave it off on a cluster unless every copy of a record
	// is sure to sit on one shard.
	Final bool
}

// UsageColumns describes a usage result row: bucket, the group-by dims in spec order
// (currency always included, last, when not grouped explicitly), then the sums.
func (s UsageSpec) Columns() []string {
	cols := []string{"bucket"}
	cols = append(cols, s.groupDims()...)
	return append(cols, "records", "bytes_up", "bytes_down", "duration_ms", "events", "amount_micros")
}

// groupDims: the requested dims, deduplicated, plus currency (sums of different
// currencies mean nothing).
func (s UsageSpec) groupDims() []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range s.GroupBy {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	if !seen["currency"] {
		out = append(out, "currency")
	}
	return out
}

// ErrUnknownDim names a dimension outside Dims.
type ErrUnknownDim struct{ Kind, Name string }

func (e ErrUnknownDim) Error() string {
	return fmt.Sprintf("%s: unknown dimension %q; valid: %s", e.Kind, e.Name, strings.Join(DimNames(), ", "))
}

func (s UsageSpec) check() error {
	if s.Tenant == "" {
		return errors.New("usage query: tenant required")
	}
	if s.From <= 0 || s.To <= s.From {
		return errors.New("usage query: from < to required")
	}
	for _, g := range s.GroupBy {
		if dimIndex(g) < 0 {
			return ErrUnknownDim{"group_by", g}
		}
	}
	for k := range s.Filters {
		if dimIndex(k) < 0 {
			return ErrUnknownDim{"filter", k}
		}
	}
	return nil
}

// rangeWhere is the inner WHERE: tenant and time range, with DateTime bounds for
// partition and granule pruning and _ms bounds for exactness (as Filter.where).
func rangeWhere(tenant string, from, to int64) (string, []any) {
	return "WHERE tenant = ? AND start_time >= toDateTime(?) AND start_time_ms >= ? AND start_time <= toDateTime(?) AND start_time_ms < ?\n",
		[]any{tenant, seconds(from), uint64(from), seconds(to - 1), uint64(to)}
}

// UsageQuery sums usage per bucket and group. Duplicates collapse before anything else;
// filters apply to the first rating's values.
func UsageQuery(db string, s UsageSpec) (string, []any, error) {
	if err := s.check(); err != nil {
		return "", nil, err
	}
	bucket, err := s.Window.bucketExpr("t")
	if err != nil {
		return "", nil, err
	}
	need := map[string]bool{}
	groups := s.groupDims()
	for _, g := range groups {
		need[g] = true
	}
	for k := range s.Filters {
		need[k] = true
	}
	var inner []string
	if s.Final {
		inner = append(inner, "start_time_ms AS t")
	} else {
		inner = append(inner, "argMin(start_time_ms, rated_time_ms) AS t")
	}
	for _, d := range Dims {
		if need[d.Name] && d.Name != "device" {
			inner = append(inner, d.pick(s.Final))
		}
	}
	for _, m := range [][2]string{{"bytes_up", "bu"}, {"bytes_down", "bd"}, {"duration_ms", "du"}, {"events", "ev"}, {"amount_micros", "am"}} {
		if s.Final {
			inner = append(inner, m[0]+" AS "+m[1])
		} else {
			inner = append(inner, "argMin("+m[0]+", rated_time_ms) AS "+m[1])
		}
	}
	where, args := rangeWhere(s.Tenant, s.From, s.To)

	// Filters in a fixed order so the SQL is stable.
	var fkeys []string
	for k := range s.Filters {
		fkeys = append(fkeys, k)
	}
	sort.Slice(fkeys, func(i, j int) bool { return dimIndex(fkeys[i]) < dimIndex(fkeys[j]) })
	var conds []string
	for _, k := range fkeys {
		vals := s.Filters[k]
		if len(vals) == 0 {
			continue
		}
		ph := strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", ")
		conds = append(conds, k+" IN ("+ph+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	outerWhere := ""
	if len(conds) > 0 {
		outerWhere = "WHERE " + strings.Join(conds, " AND ") + "\n"
	}
	// Under FINAL the inner WHERE holds only the tenant (sorting key) and start times,
	// which every copy of a record shares, so filtering before the collapse (18.16 moves
	// conditions to PREWHERE) cannot drop a first rating; dimension filters stay outside.
	final, group := "", "GROUP BY record_id, device\n"
	if s.Final {
		final, group = " FINAL", ""
	}
	keys := append([]string{"bucket"}, groups...)
	limit := ""
	if s.Limit > 0 {
		limit = "\nLIMIT " + strconv.Itoa(s.Limit+1)
	}
	q := "SELECT " + bucket + " AS bucket, " + strings.Join(groups, ", ") + ",\n" +
		"count() AS records, sum(bu) AS bytes_up, sum(bd) AS bytes_down, sum(du) AS duration_ms, sum(ev) AS events, sum(am) AS amount_micros\n" +
		"FROM (\n" +
		"SELECT record_id, device, " + strings.Join(inner, ", ") + "\n" +
		"FROM " + db + ".rated_usage" + final + "\n" +
		where + group +
		")\n" +
		outerWhere +
		"GROUP BY " + strings.Join(keys, ", ") + "\n" +
		"ORDER BY " + strings.Join(keys, ", ") + limit
	return q, args, nil
}

// DeviceSpec selects a tenant's devices over a time range, page by page (keyset on the
// device id: After is the last device of the previous page).
type DeviceSpec struct {
	Tenant   string
	From, To int64
	After    string
	Limit    int
	Device   string // one device only (empty: all)
	Final    bool   // collapse copies by FINAL (UsageSpec.Final)
}

// firstRatings is the inner query of the per-device reads: one row per (device,
// record_id) with the first rating's values of cols (pairs of column and alias), by
// GROUP BY and argMin, or by FINAL (see UsageSpec.Final; where must hold only conditions
// every copy of a record shares: tenant, device, start times).
func firstRatings(db, where string, final bool, cols ...[2]string) string {
	var sel []string
	for _, c := range cols {
		if final {
			sel = append(sel, c[0]+" AS "+c[1])
		} else {
			sel = append(sel, "argMin("+c[0]+", rated_time_ms) AS "+c[1])
		}
	}
	q := "SELECT device, record_id, " + strings.Join(sel, ", ") + "\nFROM " + db + ".rated_usage"
	if final {
		return q + " FINAL\n" + where
	}
	return q + "\n" + where + "GROUP BY device, record_id\n"
}

var (
	colCharge = [2]string{"charge", "ch"}
	colStart  = [2]string{"start_time_ms", "t"}
	colUp     = [2]string{"bytes_up", "bu"}
	colDown   = [2]string{"bytes_down", "bd"}
	colAmount = [2]string{"amount_micros", "am"}
	colCur    = [2]string{"currency", "cur"}
)

// DevicesQuery lists devices with usage in the range: usage records, bytes, amount over
// every charge, first and last usage start time. Ordered by device.
func DevicesQuery(db string, s DeviceSpec) (string, []any) {
	where, args := rangeWhere(s.Tenant, s.From, s.To)
	if s.After != "" {
		where += "AND device > ?\n"
		args = append(args, s.After)
	}
	if s.Device != "" {
		where += "AND device = ?\n"
		args = append(args, s.Device)
	}
	return "SELECT device, countIf(ch = 'usage') AS records, sum(bu + bd) AS bytes, sum(am) AS amount_micros,\n" +
			"minIf(t, ch = 'usage') AS first_seen_ms, maxIf(t, ch = 'usage') AS last_seen_ms\n" +
			"FROM (\n" + firstRatings(db, where, s.Final, colCharge, colStart, colUp, colDown, colAmount) + ")\n" +
			"GROUP BY device\n" +
			"HAVING records > 0\n" +
			"ORDER BY device\n" +
			"LIMIT " + strconv.Itoa(max(s.Limit, 1)+1),
		args
}

// TopDevicesQuery returns the n devices with the highest amount in the range (ties by
// device id).
func TopDevicesQuery(db string, tenant string, from, to int64, n int, final bool) (string, []any) {
	where, args := rangeWhere(tenant, from, to)
	where += "AND device != ''\n" // the period's adjustment belongs to no device
	return "SELECT device, count() AS records, sum(bu + bd) AS bytes, sum(am) AS amount_micros\n" +
		"FROM (\n" + firstRatings(db, where, final, colUp, colDown, colAmount) + ")\n" +
		"GROUP BY device\n" +
		"ORDER BY amount_micros DESC, device\n" +
		"LIMIT " + strconv.Itoa(max(n, 1)), args
}

// ActiveSpec counts active devices per bucket: a device is active in a bucket when it has
// a usage record starting in it (docs/tariffs.md).
type ActiveSpec struct {
	Tenant   string
	From, To int64
	Window   Window
	Final    bool // collapse copies by FINAL (UsageSpec.Final)
}

// ActivePerBucketQuery returns bucket and active devices.
func ActivePerBucketQuery(db string, s ActiveSpec) (string, []any, error) {
	bucket, err := s.Window.bucketExpr("t")
	if err != nil {
		return "", nil, err
	}
	where, args := rangeWhere(s.Tenant, s.From, s.To)
	return "SELECT " + bucket + " AS bucket, uniqExactIf(device, ch = 'usage') AS devices\n" +
		"FROM (\n" + firstRatings(db, where, s.Final, colCharge, colStart) + ")\n" +
		"GROUP BY bucket\n" +
		"ORDER BY bucket", args, nil
}

// TimelineSpec pages one device's records in start-time order; the keyset is
// (start_time_ms, record_id) of the previous page's last row.
type TimelineSpec struct {
	Tenant, Device string
	From, To       int64
	AfterTime      int64
	AfterID        string
	Limit          int
}

// TimelineColumns are TimelineQuery's columns.
var TimelineColumns = []string{"record_id", "start_time_ms", "end_time_ms", "charge", "zone", "mobility", "source",
	"rat", "bytes_up", "bytes_down", "duration_ms", "events", "currency", "amount_micros"}

// TimelineQuery returns one device's rated records (first rating of each), Limit+1 rows.
func TimelineQuery(db string, s TimelineSpec) (string, []any) {
	where, args := rangeWhere(s.Tenant, s.From, s.To)
	where += "AND device = ?\n"
	args = append(args, s.Device)
	having := ""
	if s.AfterID != "" {
		having = "HAVING (st > ?) OR (st = ? AND record_id > ?)\n"
		args = append(args, uint64(s.AfterTime), uint64(s.AfterTime), s.AfterID)
	}
	return "SELECT record_id, argMin(start_time_ms, rated_time_ms) AS st, argMin(end_time_ms, rated_time_ms) AS en,\n" +
		"argMin(charge, rated_time_ms) AS ch, argMin(zone, rated_time_ms) AS z, argMin(mobility, rated_time_ms) AS mo,\n" +
		"argMin(source, rated_time_ms) AS so, argMin(rat, rated_time_ms) AS ra,\n" +
		"argMin(bytes_up, rated_time_ms) AS bu, argMin(bytes_down, rated_time_ms) AS bd, argMin(duration_ms, rated_time_ms) AS du,\n" +
		"argMin(events, rated_time_ms) AS ev, argMin(currency, rated_time_ms) AS cur, argMin(amount_micros, rated_time_ms) AS am\n" +
		"FROM " + db + ".rated_usage\n" + where +
		"GROUP BY record_id\n" + having +
		"ORDER BY st, record_id\n" +
		"LIMIT " + strconv.Itoa(max(s.Limit, 1)+1), args
}

// PeriodQuery returns, for the tenant's months in [from, to): provisional device fees,
// adjustment (and whether its record exists: the period is closed), usage amount, and
// active devices; one row per month that has any record.
func PeriodQuery(db, tenant string, from, to int64, final bool) (string, []any) {
	where, args := rangeWhere(tenant, from, to)
	return "SELECT toUInt64(toYYYYMM(toDateTime(intDiv(t, 1000), 'UTC'), 'UTC')) AS month,\n" +
		"sumIf(am, ch = 'usage') AS usage_micros, sumIf(am, ch = 'device_fee') AS fees_micros,\n" +
		"sumIf(am, ch = 'adjustment') AS adjustment_micros, countIf(ch = 'adjustment') AS adjustments,\n" +
		"uniqExactIf(device, ch = 'usage') AS devices, any(cur) AS currency\n" +
		"FROM (\n" + firstRatings(db, where, final, colCharge, colStart, colAmount, colCur) + ")\n" +
		"GROUP BY month\n" +
		"ORDER BY month", args
}

// monthStart is the first instant (epoch ms, UTC) of year-month.
func monthStart(year, month int) int64 {
	return time.Date(year, time.Month(month), 1, 0, 0, 0, 0, time.UTC).UnixMilli()
}
