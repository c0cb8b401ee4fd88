package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"fleetmeter/clickhouse"
	"fleetmeter/record"
	"fleetmeter/rules"
)

func rangeMeta(tenant string, from, to int64) map[string]any {
	return map[string]any{"tenant": tenant, "from": stamp(from).String(), "to": stamp(to).String()}
}

// usage: GET /v1/usage?from&to&window&group_by&filter[dim]=v,...
func (s *Server) usage(w http.ResponseWriter, r *http.Request, tenant string) error {
	q := r.URL.Query()
	if err := checkParams(q, "tenant", "from", "to", "window", "group_by", "filter[...]"); err != nil {
		return err
	}
	from, to, err := s.timeRange(q)
	if err != nil {
		return err
	}
	win, err := s.window(q, clickhouse.Day, from, to, windows)
	if err != nil {
		return err
	}
	groups, filters, err := groupAndFilters(q)
	if err != nil {
		return err
	}
	spec := clickhouse.UsageSpec{Tenant: tenant, From: from, To: to, Window: win, GroupBy: groups, Filters: filters,
		Limit: s.limit.MaxRows, Final: s.final}
	sql, args, err := clickhouse.UsageQuery(s.dbName, spec)
	if err != nil {
		return bad("%v", err)
	}
	cols := spec.Columns()
	ndims := len(cols) - 7
	t := &table{name: "rows", cols: append([]string{}, cols...), meta: rangeMeta(tenant, from, to)}
	t.meta["window"] = string(win)
	t.cols[len(t.cols)-1] = "amount"
	err = s.query(r.Context(), "usage", sql, args, func(rows driver.Rows) error {
		var bucket, recs, bu, bd, du, ev uint64
		var am int64
		dims := make([]string, ndims)
		dest := []any{&bucket}
		for i := range dims {
			dest = append(dest, &dims[i])
		}
		dest = append(dest, &recs, &bu, &bd, &du, &ev, &am)
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		row := []any{stamp(clickhouse.BucketStart(win, bucket))}
		for _, d := range dims {
			row = append(row, d)
		}
		t.rows = append(t.rows, append(row, recs, bu, bd, du, ev, money(am)))
		return nil
	})
	if err != nil {
		return err
	}
	if len(t.rows) > s.limit.MaxRows {
		return bad("result: more than %d rows; use a wider window, fewer group_by dimensions or filters", s.limit.MaxRows)
	}
	t.write(w, r)
	return nil
}

// devices: GET /v1/devices?from&to&limit&cursor (keyset by device id).
func (s *Server) devices(w http.ResponseWriter, r *http.Request, tenant string) error {
	q := r.URL.Query()
	if err := checkParams(q, "tenant", "from", "to", "limit", "cursor"); err != nil {
		return err
	}
	from, to, err := s.timeRange(q)
	if err != nil {
		return err
	}
	limit, err := s.pageLimit(q, 100)
	if err != nil {
		return err
	}
	after, err := decodeCursor(q.Get("cursor"))
	if err != nil {
		return err
	}
	sql, args := clickhouse.DevicesQuery(s.dbName, clickhouse.DeviceSpec{Tenant: tenant, From: from, To: to, After: after, Limit: limit, Final: s.final})
	t := &table{name: "devices", cols: []string{"device", "records", "bytes", "amount", "first_seen", "last_seen"},
		meta: rangeMeta(tenant, from, to)}
	err = s.query(r.Context(), "devices", sql, args, func(rows driver.Rows) error {
		var dev string
		var recs, bytes, first, last uint64
		var am int64
		if err := rows.Scan(&dev, &recs, &bytes, &am, &first, &last); err != nil {
			return err
		}
		t.rows = append(t.rows, []any{dev, recs, bytes, money(am), stamp(first), stamp(last)})
		return nil
	})
	if err != nil {
		return err
	}
	if len(t.rows) > limit {
		t.rows = t.rows[:limit]
		t.next = encodeCursor(t.rows[limit-1][0].(string))
	}
	t.write(w, r)
	return nil
}

// topDevices: GET /v1/devices/top?from&to&limit — by amount, highest first.
func (s *Server) topDevices(w http.ResponseWriter, r *http.Request, tenant string) error {
	q := r.URL.Query()
	if err := checkParams(q, "tenant", "from", "to", "limit"); err != nil {
		return err
	}
	from, to, err := s.timeRange(q)
	if err != nil {
		return err
	}
	limit, err := s.pageLimit(q, 10)
	if err != nil {
		return err
	}
	sql, args := clickhouse.TopDevicesQuery(s.dbName, tenant, from, to, limit, s.final)
	t := &table{name: "devices", cols: []string{"device", "records", "bytes", "amount"}, meta: rangeMeta(tenant, from, to)}
	err = s.query(r.Context(), "devices_top", sql, args, func(rows driver.Rows) error {
		var dev string
		var recs, bytes uint64
		var am int64
		if err := rows.Scan(&dev, &recs, &bytes, &am); err != nil {
			return err
		}
		t.rows = append(t.rows, []any{dev, recs, bytes, money(am)})
		return nil
	})
	if err != nil {
		return err
	}
	t.write(w, r)
	return nil
}

// activeDevices: GET /v1/devices/active?from&to&window=day|month; monthly buckets carry
// the device_fee tier the count reached when tariffs are configured.
func (s *Server) activeDevices(w http.ResponseWriter, r *http.Request, tenant string) error {
	q := r.URL.Query()
	if err := checkParams(q, "tenant", "from", "to", "window"); err != nil {
		return err
	}
	from, to, err := s.timeRange(q)
	if err != nil {
		return err
	}
	win, err := s.window(q, clickhouse.Month, from, to, []string{"day", "month"})
	if err != nil {
		return err
	}
	sql, args, err := clickhouse.ActivePerBucketQuery(s.dbName, clickhouse.ActiveSpec{Tenant: tenant, From: from, To: to, Window: win, Final: s.final})
	if err != nil {
		return bad("%v", err)
	}
	set := s.tariff()
	t := &table{name: "buckets", cols: []string{"bucket", "devices", "fee_tier", "fee_tier_upto", "fee_tier_price"},
		meta: rangeMeta(tenant, from, to)}
	t.meta["window"] = string(win)
	err = s.query(r.Context(), "devices_active", sql, args, func(rows driver.Rows) error {
		var bucket, n uint64
		if err := rows.Scan(&bucket, &n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		start := clickhouse.BucketStart(win, bucket)
		row := []any{stamp(start), n, nil, nil, nil}
		if win == clickhouse.Month {
			row[2], row[3], row[4] = feeTier(set, tenant, start, n)
		}
		t.rows = append(t.rows, row)
		return nil
	})
	if err != nil {
		return err
	}
	t.write(w, r)
	return nil
}

// feeTier names the device_fee tier holding device number n in the month starting at
// start: its 1-based index, upper bound ("" when unbounded) and price.
func feeTier(set *rules.Set, tenant string, start int64, n uint64) (any, any, any) {
	if set == nil {
		return nil, nil, nil
	}
	end := time.UnixMilli(start).UTC().AddDate(0, 1, 0).UnixMilli()
	tf := set.FeeTariff(tenant, start, end)
	if tf == nil || tf.Fee == nil || len(tf.Fee.Tiers) == 0 {
		return nil, nil, nil
	}
	tier := tf.Fee.TierFor(n)
	idx := uint64(1)
	for i := range tf.Fee.Tiers {
		if &tf.Fee.Tiers[i] == tier {
			idx = uint64(i + 1)
		}
	}
	upto := ""
	if !tier.Unbounded {
		upto = strconv.FormatUint(tier.Upto, 10)
	}
	return idx, upto, tier.Price.String()
}

// timeline: GET /v1/devices/{device}/timeline?from&to&limit&cursor. A device with no
// records in the range, whoever's it is, is 404 "not found".
func (s *Server) timeline(w http.ResponseWriter, r *http.Request, tenant string) error {
	q := r.URL.Query()
	if err := checkParams(q, "tenant", "from", "to", "limit", "cursor"); err != nil {
		return err
	}
	device := r.PathValue("device")
	from, to, err := s.timeRange(q)
	if err != nil {
		return err
	}
	limit, err := s.pageLimit(q, 100)
	if err != nil {
		return err
	}
	cur, err := decodeCursor(q.Get("cursor"))
	if err != nil {
		return err
	}
	spec := clickhouse.TimelineSpec{Tenant: tenant, Device: device, From: from, To: to, Limit: limit}
	if cur != "" {
		ms, id, ok := strings.Cut(cur, ":")
		n, perr := strconv.ParseInt(ms, 10, 64)
		if !ok || perr != nil || id == "" {
			return bad("cursor: malformed")
		}
		spec.AfterTime, spec.AfterID = n, id
	}
	if record.CheckDeviceID(device) != nil {
		return notFound
	}
	sql, args := clickhouse.TimelineQuery(s.dbName, spec)
	t := &table{name: "records", cols: []string{"record_id", "start_time", "end_time", "charge", "zone", "mobility", "source",
		"rat", "bytes_up", "bytes_down", "duration_ms", "events", "currency", "amount"}, meta: rangeMeta(tenant, from, to)}
	t.meta["device"] = device
	var lastMs []uint64
	err = s.query(r.Context(), "timeline", sql, args, func(rows driver.Rows) error {
		var id, ch, z, mo, so, ra, cur string
		var st, en, bu, bd, du, ev uint64
		var am int64
		if err := rows.Scan(&id, &st, &en, &ch, &z, &mo, &so, &ra, &bu, &bd, &du, &ev, &cur, &am); err != nil {
			return err
		}
		lastMs = append(lastMs, st)
		t.rows = append(t.rows, []any{id, stamp(st), stamp(en), ch, z, mo, so, ra, bu, bd, du, ev, cur, money(am)})
		return nil
	})
	if err != nil {
		return err
	}
	if len(t.rows) == 0 && cur == "" {
		return notFound
	}
	if len(t.rows) > limit {
		t.rows = t.rows[:limit]
		t.next = encodeCursor(fmt.Sprintf("%d:%s", lastMs[limit-1], t.rows[limit-1][0].(string)))
	}
	t.write(w, r)
	return nil
}

// periods: GET /v1/periods?from&to — per month: open or closed (its adjustment record
// adj:<tenant>:<period> exists), provisional device fees, the adjustment, and the fees
// (exact once closed).
func (s *Server) periods(w http.ResponseWriter, r *http.Request, tenant string) error {
	q := r.URL.Query()
	if err := checkParams(q, "tenant", "from", "to"); err != nil {
		return err
	}
	from, to, err := s.timeRange(q)
	if err != nil {
		return err
	}
	sql, args := clickhouse.PeriodQuery(s.dbName, tenant, from, to, s.final)
	set := s.tariff()
	t := &table{name: "periods", cols: []string{"period", "status", "fees_exact", "devices", "currency", "usage_amount",
		"provisional_fees", "adjustment", "fees", "total", "fee_tier"}, meta: rangeMeta(tenant, from, to)}
	err = s.query(r.Context(), "periods", sql, args, func(rows driver.Rows) error {
		var month, adjN, devs uint64
		var usage, fees, adj int64
		var cur string
		if err := rows.Scan(&month, &usage, &fees, &adj, &adjN, &devs, &cur); err != nil {
			return err
		}
		start := clickhouse.BucketStart(clickhouse.Month, month)
		status := "open"
		if adjN > 0 {
			status = "closed"
		}
		tier, _, _ := feeTier(set, tenant, start, devs)
		t.rows = append(t.rows, []any{fmt.Sprintf("%04d-%02d", month/100, month%100), status, adjN > 0, devs, cur,
			money(usage), money(fees), money(adj), money(fees + adj), money(usage + fees + adj), tier})
		return nil
	})
	if err != nil {
		return err
	}
	t.write(w, r)
	return nil
}

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeCursor(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || len(b) > 512 {
		return "", bad("cursor: malformed")
	}
	return string(b), nil
}
