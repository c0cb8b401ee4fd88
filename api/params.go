package api

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

type httpError struct {
	code  int
	msg   string
	valid []string
}

func (e *httpError) Error() string { return e.msg }

func bad(format string, a ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

func badValid(msg string, valid []string) error {
	return &httpError{code: http.StatusBadRequest, msg: msg, valid: valid}
}

// notFound is the one answer for a device or object the caller cannot see, whether it
// does not exist or belongs to another tenant: same status, same body.
var notFound = &httpError{code: http.StatusNotFound, msg: "not found"}

// checkParams refuses parameters an endpoint does not know, naming the valid ones.
func checkParams(q url.Values, allowed ...string) error {
	for k := range q {
		if strings.HasPrefix(k, "filter[") && contains(allowed, "filter[...]") {
			continue
		}
		if !contains(allowed, k) {
			return badValid(fmt.Sprintf("unknown parameter %q", k), allowed)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseTime accepts RFC 3339 or a UTC date (YYYY-MM-DD).
func parseTime(name, v string) (int64, error) {
	if v == "" {
		return 0, bad("%s: required (RFC 3339 time or YYYY-MM-DD)", name)
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t.UnixMilli(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, bad("%s: %q is not an RFC 3339 time or YYYY-MM-DD", name, v)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return 0, bad("%s: %q is out of range", name, v)
	}
	return t.UnixMilli(), nil
}

// timeRange reads from and to and holds them to the range limit.
func (s *Server) timeRange(q url.Values) (from, to int64, err error) {
	if from, err = parseTime("from", q.Get("from")); err != nil {
		return 0, 0, err
	}
	if to, err = parseTime("to", q.Get("to")); err != nil {
		return 0, 0, err
	}
	if from <= 0 {
		return 0, 0, bad("from: must be after 1970-01-01")
	}
	if to <= from {
		return 0, 0, bad("to: must be after from")
	}
	if max := int64(s.limit.MaxRangeDays) * 86_400_000; to-from > max {
		return 0, 0, bad("range: %s is longer than %d days", time.Duration(to-from)*time.Millisecond, s.limit.MaxRangeDays)
	}
	return from, to, nil
}

var windows = []string{"hour", "day", "month"}

// window reads the window (default def) and checks the bucket count.
func (s *Server) window(q url.Values, def clickhouse.Window, from, to int64, allowed []string) (clickhouse.Window, error) {
	w := q.Get("window")
	if w == "" {
		w = string(def)
	}
	if !contains(allowed, w) {
		return "", badValid(fmt.Sprintf("window: unknown %q", w), allowed)
	}
	if n := buckets(clickhouse.Window(w), from, to); n > int64(s.limit.MaxBuckets) {
		return "", bad("window: %d %s buckets in the range, more than the %d allowed; use a wider window or a shorter range",
			n, w, s.limit.MaxBuckets)
	}
	return clickhouse.Window(w), nil
}

func buckets(w clickhouse.Window, from, to int64) int64 {
	switch w {
	case clickhouse.Hour:
		return (to-1)/3_600_000 - from/3_600_000 + 1
	case clickhouse.Day:
		return (to-1)/86_400_000 - from/86_400_000 + 1
	}
	a, b := time.UnixMilli(from).UTC(), time.UnixMilli(to-1).UTC()
	return int64((b.Year()-a.Year())*12+int(b.Month())-int(a.Month())) + 1
}

// list splits comma-separated values of every occurrence of a parameter.
func list(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// groupBy and filters read group_by=a,b and filter[dim]=v1,v2.
func groupAndFilters(q url.Values) ([]string, map[string][]string, error) {
	groups := list(q["group_by"])
	for _, g := range groups {
		if !contains(clickhouse.DimNames(), g) {
			return nil, nil, badValid(fmt.Sprintf("group_by: unknown dimension %q", g), clickhouse.DimNames())
		}
	}
	filters := map[string][]string{}
	var names []string
	for k := range q {
		if strings.HasPrefix(k, "filter[") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		dim, ok := strings.CutSuffix(strings.TrimPrefix(k, "filter["), "]")
		if !ok || !contains(clickhouse.DimNames(), dim) {
			return nil, nil, badValid(fmt.Sprintf("filter: unknown dimension in %q", k), clickhouse.DimNames())
		}
		vals := list(q[k])
		if len(vals) == 0 || len(vals) > 1000 {
			return nil, nil, bad("%s: between 1 and 1000 values", k)
		}
		for _, v := range vals {
			if len(v) > record.MaxIDLen {
				return nil, nil, bad("%s: value longer than %d bytes", k, record.MaxIDLen)
			}
		}
		filters[dim] = append(filters[dim], vals...)
	}
	return groups, filters, nil
}

// pageLimit reads limit (default def, at most the configured page size).
func (s *Server) pageLimit(q url.Values, def int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return min(def, s.limit.MaxPage), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > s.limit.MaxPage {
		return 0, bad("limit: want 1..%d", s.limit.MaxPage)
	}
	return n, nil
}
