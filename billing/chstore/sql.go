// Package chstore is billing's ClickHouse adapter: it satisfies billing.Store over the
// tables of clickhouse/migrations (rated_usage, and rated_seen and billing_documents of
// 0005_billing.sql). The builders return plain SQL with literals quoted here, pinned by
// sql_test.go and run on ClickHouse 18.16 by the tests.
package chstore

import (
	"strconv"
	"strings"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
)

// quote renders s as a ClickHouse string literal.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func num(n int64) string { return strconv.FormatInt(n, 10) }

// adjustments and deviceFees are conditions on the sort key that hold for every
// adjustment and device fee: rating names them adj:<tenant>:<period> and
// fee:<tenant>:<device>:<period> (the view's period is the end of that id; the test
// TestRatingIDsMatchKeyRanges holds rating to it). A subquery for the adjustments or fees
// then reads their granules of rated_seen only, not the charge column of the whole
// table for every page (ten million rows: the adjustments' join was 40% of a page's
// keys query).
const (
	adjustments = "charge = 'adjustment' AND record_id >= 'adj:' AND record_id < 'adj;'"
	deviceFees  = "charge = 'device_fee' AND record_id >= 'fee:' AND record_id < 'fee;'"
)

// never is the Seen of a record that is not exportable yet (a provisional device fee).
const never = "toUInt32(4294967295)"

// seenSQL returns, per (tenant, record_id) of rated_seen matching where, its Seen e:
// the second its first copy was stored, and for a device_fee the later of that and its
// period's adjustment's (never while there is none). Both are minima over rows that are
// only ever added, so e does not change once what it depends on is stored.
//
// With final, the copies of a key are collapsed by FINAL (rated_seen keeps the least seen
// of equal keys) rather than GROUP BY: twice as fast, and exact where every copy of a key
// lies in one table (a single node; see Store.Final). where must then hold only
// conditions that are the same for every copy of a key (of tenant, record_id and what the
// view derives from them: charge, period), so filtering before the merge equals after it.
//
// Without fees (where admits no device fee), e is the first seen and the adjustments are
// not joined: the join was a third of the keys query's CPU on pages of usage only.
func seenSQL(db, where, tenant string, final, fees bool) string {
	adjWhere := adjustments
	if tenant != "" {
		adjWhere += " AND tenant = " + quote(tenant)
	}
	// The aggregates are renamed (k_*): an alias equal to a column name would replace the
	// column in where.
	first := "SELECT tenant, record_id, any(charge) AS k_charge, any(period) AS k_period, min(toUInt32(seen)) AS first\n" +
		"FROM " + db + ".rated_seen\n" +
		"WHERE " + where + "\n" +
		"GROUP BY tenant, record_id\n"
	if final {
		first = "SELECT tenant, record_id, charge AS k_charge, period AS k_period, toUInt32(seen) AS first\n" +
			"FROM " + db + ".rated_seen FINAL\n" +
			"WHERE " + where + "\n"
	}
	if !fees {
		if final {
			return "SELECT tenant, record_id, toUInt32(seen) AS e\nFROM " + db + ".rated_seen FINAL\nWHERE " + where
		}
		return "SELECT tenant, record_id, min(toUInt32(seen)) AS e\nFROM " + db + ".rated_seen\nWHERE " + where + "\nGROUP BY tenant, record_id"
	}
	return "SELECT tenant, record_id, if(k_charge = 'device_fee', if(adj_found = 1, greatest(first, adj_first), " + never + "), first) AS e\n" +
		"FROM (\n" + first +
		") AS k ANY LEFT JOIN (\n" +
		"SELECT tenant, period AS k_period, min(toUInt32(seen)) AS adj_first, toUInt8(1) AS adj_found\n" +
		"FROM " + db + ".rated_seen\n" +
		"WHERE " + adjWhere + "\n" +
		"GROUP BY tenant, period\n" +
		") AS a USING (tenant, k_period)"
}

// ExportSecondsQuery returns, per second of seen in [After.Seen, UpTo] in order, the
// copies stored then, how many of them are adjustments, and their least and greatest
// record_id: a page's span (the store stops a page's candidates at the second where they
// reach its limit, so a page costs what it returns, not the size of the table) and its
// key range. The page's keys query and data read are narrowed to that range of record_id
// (and FeeBoundsQuery's): every key whose e lies in the page's seconds has a copy stored
// in them (or is a fee of an adjustment stored in them), and all copies of a key share
// its record_id. The range lets ClickHouse skip the granules of rated_seen and
// rated_usage (sorted by tenant, record_id) outside it; where record_ids grow with time
// (sequences, time-ordered ids) a page reads about its own rows, else it still scans the
// keys of the whole table. The store keeps the seconds for the pages that follow
// (secondCache): seen is not in the sort key, so the query reads the whole seen column.
func ExportSecondsQuery(db string, req billing.ExportRequest) string {
	scope := ""
	if req.Tenant != "" {
		scope = "tenant = " + quote(req.Tenant) + " AND "
	}
	// PREWHERE: record_id and charge are read only where seen matches.
	return "SELECT s, c, a, lo, hi FROM (\n" +
		"SELECT toUInt32(seen) AS s, count() AS c, countIf(charge = 'adjustment') AS a, min(record_id) AS lo, max(record_id) AS hi\n" +
		"FROM " + db + ".rated_seen\n" +
		"PREWHERE " + scope + "toUInt32(seen) >= " + num(req.After.Seen) + " AND toUInt32(seen) <= " + num(req.UpTo) + "\n" +
		"GROUP BY s\n" +
		") ORDER BY s"
}

// FeeBoundsQuery returns the least and greatest record_id of the device fees whose
// period's adjustment has a copy stored in [After.Seen, UpTo] (asked only when there is
// one: the page's seconds count them).
func FeeBoundsQuery(db string, req billing.ExportRequest) string {
	scope := ""
	if req.Tenant != "" {
		scope = "tenant = " + quote(req.Tenant) + " AND "
	}
	return "SELECT min(record_id), max(record_id) FROM " + db + ".rated_seen\n" +
		"WHERE " + scope + deviceFees + " AND (tenant, period) IN (SELECT tenant, period FROM " + db + ".rated_seen WHERE " +
		scope + adjustments + " AND toUInt32(seen) >= " + num(req.After.Seen) + " AND toUInt32(seen) <= " + num(req.UpTo) + ")"
}

// RangeCountQuery counts the rows of table (rated_seen or rated_usage) in the key range:
// the store compares it with the rows it expects, to skip a set of keys that would leave
// few rows out.
func RangeCountQuery(db, table, tenant string, keys KeyRange) string {
	scope := ""
	if tenant != "" {
		scope = "tenant = " + quote(tenant) + " AND "
	}
	return "SELECT count() FROM " + db + "." + table + " WHERE " + scope + keys.sql()
}

// KeyRange is where a page's record_ids lie: [Lo, Hi] ([Lo, Hi) when HiOpen), or also
// [FeeLo, FeeHi] when HasFees. The zero KeyRange admits only the empty record_id.
type KeyRange struct {
	Lo, Hi       string
	FeeLo, FeeHi string
	HasFees      bool
	HiOpen       bool
}

// Split returns k cut at record_id at: [Lo, at) and [at, Hi]. ok is false when at does
// not lie in (Lo, Hi] or k has fees (their range may overlap either half).
func (k KeyRange) Split(at string) (lo, hi KeyRange, ok bool) {
	if k.HasFees || k.HiOpen || at <= k.Lo || at > k.Hi {
		return k, KeyRange{}, false
	}
	return KeyRange{Lo: k.Lo, Hi: at, HiOpen: true}, KeyRange{Lo: at, Hi: k.Hi}, true
}

// mayHoldFees says whether a device fee may lie in k: rating names them
// fee:<tenant>:<device>:<period> (deviceFees), so a range of record_ids wholly before
// "fee:" or from "fee;" on holds none.
func (k KeyRange) mayHoldFees() bool {
	return k.HasFees || k.Lo < "fee;" && k.Hi >= "fee:"
}

func (k KeyRange) sql() string {
	le := " <= "
	if k.HiOpen {
		le = " < "
	}
	c := "record_id >= " + quote(k.Lo) + " AND record_id" + le + quote(k.Hi)
	if k.HasFees {
		c = "(" + c + " OR record_id >= " + quote(k.FeeLo) + " AND record_id <= " + quote(k.FeeHi) + ")"
	}
	return c
}

// keyHash is a record's key as one UInt64. The export's sets of keys hold it rather than
// the (tenant, record_id) strings: a set of a million string tuples costs ClickHouse
// seconds to build and probe, one of UInt64 a fraction of the read. A set of hashes only
// ever admits too much (two keys of one hash); what it admits is checked exactly after.
const keyHash = "cityHash64(tenant, record_id)"

// ExportKeysQuery selects the positions of the page after req.After, with each key's
// keyHash (h): the keys whose e lies in [After.Seen, UpTo] past After. Candidates are
// only records with a copy, or a device fee whose adjustment has a copy, stored in that
// range: e cannot land there otherwise (when the range is all there is, every record is a
// candidate: whole). The candidates are chosen by hash, so a few more may be grouped; e,
// computed over all their copies, decides.
//
// A key comes as one string, tenant then record_id, and the length of its tenant: the
// driver decodes a String column value by value, and one string per key instead of two
// is a tenth of the client's work of reading a page's keys.
//
// Unordered (!ordered), the keys come in no particular order and LIMIT only bounds how
// many: the caller orders them (Store.pageKeys). Without hash, h is 0: for a caller that
// matches rows to keys by their strings only.
func ExportKeysQuery(db string, req billing.ExportRequest, whole bool, keys KeyRange, final, ordered, hash bool) string {
	a, w := num(req.After.Seen), num(req.UpTo)
	scope := ""
	if req.Tenant != "" {
		scope = "tenant = " + quote(req.Tenant) + " AND "
	}
	scope += keys.sql() + " AND "
	cand := scope + "1"
	if !whole {
		inRange := "toUInt32(seen) >= " + a + " AND toUInt32(seen) <= " + w
		cand = scope + "(" + keyHash + " IN (SELECT " + keyHash + " FROM " + db + ".rated_seen WHERE " + scope + inRange + ")" +
			" OR (charge = 'device_fee' AND (tenant, period) IN (SELECT tenant, period FROM " + db + ".rated_seen WHERE " +
			scope + adjustments + " AND " + inRange + ")))"
	}
	t, r := quote(req.After.Tenant), quote(req.After.RecordID)
	order := ""
	if ordered {
		order = "ORDER BY e, tenant, record_id\n"
	}
	h := keyHash
	if !hash {
		h = "toUInt64(0)"
	}
	return "SELECT concat(tenant, record_id) AS key_str, toUInt32(length(tenant)) AS tenant_len, e, " + h + " AS h FROM (\n" +
		seenSQL(db, cand, req.Tenant, final, keys.mayHoldFees()) + "\n)\n" +
		"WHERE e <= " + w + " AND (e > " + a + " OR e = " + a + " AND (tenant > " + t + " OR tenant = " + t + " AND record_id > " + r + "))\n" +
		order +
		"LIMIT " + strconv.Itoa(req.Limit)
}

// ExportDataQuery reads every stored copy of the keys whose keyHash is in the external
// table keys (h UInt64), the hash after the record's columns; the caller keeps the page's
// keys (exactly: a hash may stand for another key too) and of each its first rating
// (least rated_time_ms, as clickhouse.RecordsQuery's LIMIT 1 BY). Copies are few, and
// choosing in Go spares the server a sort or GROUP BY of whole rows (ten times the cost
// of the read here). With keys empty it reads every copy in the range, without h: the
// caller then drops the rows of other keys itself.
func ExportDataQuery(db, tenant string, keyRange KeyRange, keys string) string {
	scope := keyRange.sql()
	if tenant != "" {
		scope = "tenant = " + quote(tenant) + " AND " + scope
	}
	if keys == "" {
		return "SELECT " + strings.Join(clickhouse.RecordColumns, ", ") + "\n" +
			"FROM " + db + ".rated_usage\n" +
			"WHERE " + scope
	}
	return "SELECT " + strings.Join(clickhouse.RecordColumns, ", ") + ", " + keyHash + " AS h\n" +
		"FROM " + db + ".rated_usage\n" +
		"WHERE " + scope + " AND " + keyHash + " IN " + keys
}

// ExportColumnsQuery is ExportDataQuery for a reader of column blocks: a row's 16 string
// columns (billing.StrCols order) come as two Strings, the concatenations of the first 8
// and of the last 8, followed by the lengths of the first 15 as UInt32 columns, then the
// other columns (U64Cols order, rating_group, lat, lon, slice_sst, amount_micros) and,
// with keys, h. The driver decodes a String column value by value (a varint read through
// a byte reader, a zeroed append), a numeric column in one read: two Strings per row
// instead of 16 was a third of the client's work of an export. Two, not one: the driver
// sizes a block's string buffer for all its rows from the first value when that is
// shorter than 128 bytes, and grows it value by value (copying and clearing it again and
// again) when it is longer, as a rated record's 16 strings together are.
func ExportColumnsQuery(db, tenant string, keyRange KeyRange, keys string) string {
	strs, lens := make([]string, 0, 16), make([]string, 0, 15)
	for k, i := range billing.StrCols {
		strs = append(strs, clickhouse.RecordColumns[i])
		if k < 15 {
			lens = append(lens, "toUInt32(length("+clickhouse.RecordColumns[i]+"))")
		}
	}
	nums := make([]string, 0, 14)
	for _, i := range billing.U64Cols {
		nums = append(nums, clickhouse.RecordColumns[i])
	}
	for _, i := range []int{billing.ColRatingGroup, billing.ColLat, billing.ColLon, billing.ColSliceSST, billing.ColAmount} {
		nums = append(nums, clickhouse.RecordColumns[i])
	}
	scope := keyRange.sql()
	if tenant != "" {
		scope = "tenant = " + quote(tenant) + " AND " + scope
	}
	q := "SELECT concat(" + strings.Join(strs[:strSplit], ", ") + "), concat(" + strings.Join(strs[strSplit:], ", ") + "), " +
		strings.Join(lens, ", ") + ", " + strings.Join(nums, ", ")
	if keys == "" {
		return q + "\nFROM " + db + ".rated_usage\nWHERE " + scope
	}
	return q + ", " + keyHash + " AS h\nFROM " + db + ".rated_usage\nWHERE " + scope + " AND " + keyHash + " IN " + keys
}

// LinesQuery sums the tenant's records of a period (start_time in [start, end) ms; fees
// and the adjustment named for period) whose e lies in (after, upTo], each record once
// with its first rating, per billing.LineKey.
func LinesQuery(db, tenant, period string, start, end, after, upTo int64) string {
	ten := quote(tenant)
	dim := "multiIf(charge != 'usage', '', bytes > 0 AND duration_ms = 0 AND events = 0, 'data', " +
		"bytes = 0 AND duration_ms > 0 AND events = 0, 'duration', bytes = 0 AND duration_ms = 0 AND events > 0, 'events', " +
		"bytes = 0 AND duration_ms = 0 AND events = 0, 'none', 'mixed')"
	ratio := "multiIf(dim = 'data', amt / bytes, dim = 'duration', amt / duration_ms, dim = 'events', amt / events, 0)"
	seenWhere := "tenant = " + ten + " AND (start_time_ms >= " + num(start) + " AND start_time_ms < " + num(end) +
		" OR period = " + quote(period) + ")"
	return "SELECT charge, tariff, zone, mobility, offer, currency, " + dim + " AS dim, if(charge = 'device_fee', amt, 0) AS unit_fee,\n" +
		"count() AS records, sum(bytes) AS sbytes, sum(duration_ms) AS sdur, sum(events) AS sev, sum(amt) AS amount,\n" +
		"min(" + ratio + ") AS rmin, max(" + ratio + ") AS rmax, uniqExact(device) AS devices\n" +
		"FROM (\n" +
		"SELECT tenant, record_id, argMin(charge, rated_time_ms) AS charge, argMin(tariff, rated_time_ms) AS tariff,\n" +
		"argMin(zone, rated_time_ms) AS zone, argMin(mobility, rated_time_ms) AS mobility, argMin(offer, rated_time_ms) AS offer,\n" +
		"argMin(currency, rated_time_ms) AS currency, argMin(bytes_up + bytes_down, rated_time_ms) AS bytes,\n" +
		"argMin(duration_ms, rated_time_ms) AS duration_ms, argMin(events, rated_time_ms) AS events,\n" +
		"argMin(amount_micros, rated_time_ms) AS amt, any(device) AS device\n" +
		"FROM " + db + ".rated_usage\n" +
		"WHERE tenant = " + ten + " AND start_time >= toDateTime(" + num(start/1000) + ") AND start_time < toDateTime(" + num((end+999)/1000) + ")" +
		" AND start_time_ms >= " + num(start) + " AND start_time_ms < " + num(end) + "\n" +
		"GROUP BY tenant, record_id\n" +
		") AS r ANY INNER JOIN (\n" + seenSQL(db, seenWhere, tenant, false, true) + "\n) AS s USING (tenant, record_id)\n" +
		"WHERE e > " + num(after) + " AND e <= " + num(upTo) + "\n" +
		"GROUP BY charge, tariff, zone, mobility, offer, currency, dim, unit_fee\n" +
		"ORDER BY charge = 'adjustment', charge = 'device_fee', tariff, zone, mobility, offer, currency, dim, unit_fee"
}

// ClosedQuery lists the tenants whose adjustment for period was first stored by upTo.
func ClosedQuery(db, period string, upTo int64) string {
	return "SELECT tenant FROM " + db + ".rated_seen\n" +
		"WHERE " + adjustments + " AND period = " + quote(period) + "\n" +
		"GROUP BY tenant HAVING min(toUInt32(seen)) <= " + num(upTo) + "\n" +
		"ORDER BY tenant"
}

// DocumentsQuery returns a tenant period's stored documents; of two saves of one seq,
// the one finalized first.
func DocumentsQuery(db, tenant, period string) string {
	return "SELECT seq, argMin(number, finalized_ms), argMin(toUInt32(watermark), finalized_ms), min(finalized_ms), argMin(body, finalized_ms)\n" +
		"FROM " + db + ".billing_documents\n" +
		"WHERE tenant = " + quote(tenant) + " AND period = " + quote(period) + "\n" +
		"GROUP BY seq\n" +
		"ORDER BY seq"
}
