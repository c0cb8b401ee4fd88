package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"fleetmeter/clickhouse"
)

// analyticsQueries builds every analytics query once, with a hostile filter value.
func analyticsQueries(t *testing.T, db string) map[string][2]any {
	t.Helper()
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	out := map[string][2]any{}
	for _, w := range []clickhouse.Window{clickhouse.Hour, clickhouse.Day, clickhouse.Month} {
		q, args, err := clickhouse.UsageQuery(db, clickhouse.UsageSpec{Tenant: "t1", From: from, To: to, Window: w,
			GroupBy: clickhouse.DimNames(), Filters: map[string][]string{"zone": {"home", "x' OR 1=1 --"}, "slice": {"3-0a"}}, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		out["usage_"+string(w)] = [2]any{q, args}
		q, args, err = clickhouse.UsageQuery(db, clickhouse.UsageSpec{Tenant: "t1", From: from, To: to, Window: w, Final: true,
			GroupBy: []string{"zone", "slice"}, Filters: map[string][]string{"mobility": {"mobile"}, "slice": {"3"}}, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		out["usage_final_"+string(w)] = [2]any{q, args}
	}
	for _, final := range []bool{false, true} {
		sfx := map[bool]string{false: "", true: "_final"}[final]
		q, args := clickhouse.DevicesQuery(db, clickhouse.DeviceSpec{Tenant: "t1", From: from, To: to, After: "d1", Limit: 10, Final: final})
		out["devices"+sfx] = [2]any{q, args}
		q, args = clickhouse.TopDevicesQuery(db, "t1", from, to, 10, final)
		out["top"+sfx] = [2]any{q, args}
		q, args, _ = clickhouse.ActivePerBucketQuery(db, clickhouse.ActiveSpec{Tenant: "t1", From: from, To: to, Window: clickhouse.Month, Final: final})
		out["active"+sfx] = [2]any{q, args}
		q, args = clickhouse.PeriodQuery(db, "t1", from, to, final)
		out["periods"+sfx] = [2]any{q, args}
	}
	q, args := clickhouse.TimelineQuery(db, clickhouse.TimelineSpec{Tenant: "t1", Device: "d1", From: from, To: to, AfterTime: from, AfterID: "r1", Limit: 10})
	out["timeline"] = [2]any{q, args}
	return out
}

// TestAnalyticsBindsValues: tenant and filter values travel only as parameters, and
// every query collapses duplicates before summing.
func TestAnalyticsBindsValues(t *testing.T) {
	for name, qa := range analyticsQueries(t, "db") {
		q := qa[0].(string)
		if strings.Contains(q, "OR 1=1") || strings.Contains(q, "'t1'") || strings.Contains(q, "'home'") {
			t.Errorf("%s: a value is spliced into the SQL:\n%s", name, q)
		}
		if strings.Count(q, "?") != len(qa[1].([]any)) {
			t.Errorf("%s: %d placeholders, %d args", name, strings.Count(q, "?"), len(qa[1].([]any)))
		}
		if !strings.Contains(q, " FINAL") && (!strings.Contains(q, "rated_time_ms)") || !strings.Contains(q, "GROUP BY") || !strings.Contains(q, "record_id")) {
			t.Errorf("%s: does not collapse duplicates by record_id keeping the first rating:\n%s", name, q)
		}
	}
	_, _, err := clickhouse.UsageQuery("db", clickhouse.UsageSpec{Tenant: "t", From: 1, To: 2, Window: clickhouse.Day, GroupBy: []string{"imsi"}})
	if err == nil || !strings.Contains(err.Error(), "valid: device, zone") {
		t.Errorf("unknown dimension: %v", err)
	}
}

// TestAnalyticsQueriesRun runs every query on the test server (18.16 here). With
// FLEETMETER_SQL_OUT=FILE it also writes them with literal values, for
// checking against a current ClickHouse (any current clickhouse-local or server).
func TestAnalyticsQueriesRun(t *testing.T) {
	st := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dump strings.Builder
	for name, qa := range analyticsQueries(t, st.Schema().Database) {
		q, args := qa[0].(string), qa[1].([]any)
		rows, err := st.Conn().Query(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, q)
		}
		rows.Close()
		lit := q
		for _, a := range args {
			v := fmt.Sprint(a)
			if s, ok := a.(string); ok {
				v = "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
			}
			lit = strings.Replace(lit, "?", v, 1)
		}
		dump.WriteString(strings.ReplaceAll(lit, st.Schema().Database+".", "") + ";\n")
	}
	if out := os.Getenv("FLEETMETER_SQL_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(dump.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
