package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"fleetmeter/api"
	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

var (
	benchOnce sync.Once
	benchDB   string
	benchSt   *clickhouse.Store
	benchErr  error
)

// benchData loads FLEETMETER_BENCH_ROWS rated rows (default 1,000,000) of 10 tenants over
// 2026-09..2026-11, 1% inserted twice, once per test binary.
func benchData(b *testing.B) (string, *clickhouse.Store) {
	benchOnce.Do(func() {
		rows := 1_000_000
		if v := os.Getenv("FLEETMETER_BENCH_ROWS"); v != "" {
			rows, _ = strconv.Atoi(v)
		}
		ctx := context.Background()
		cfg := clickhouse.DefaultConfig()
		cfg.Addr = []string{srv.NativeAddr()}
		cfg.Database = fmt.Sprintf("apibench_%d", os.Getpid())
		if benchSt, benchErr = clickhouse.Open(ctx, cfg); benchErr != nil {
			return
		}
		benchDB = cfg.Database
		start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		span := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli() - start
		zones := []string{"home", "eu", "world", "farm-north", "depot"}
		mobs := []string{"stationary", "nomadic", "mobile"}
		batch := make([]record.Rated, 0, 100_000)
		for i := 0; i < rows; i++ {
			ten := "t" + strconv.Itoa(i%10)
			dev := "dev-" + strconv.Itoa((i/10)%10_000)
			ts := start + int64(i)*span/int64(rows)
			r := rated(ten, dev, "r-"+strconv.Itoa(i), zones[(i/7)%5], mobs[(i/3)%3], ts, int64(1000+i%977), ts+100)
			batch = append(batch, r)
			if i%100 == 0 {
				r.RatedTime += 1000
				batch = append(batch, r)
			}
			if len(batch) >= 100_000 || i == rows-1 {
				if benchErr = benchSt.InsertRated(ctx, batch); benchErr != nil {
					return
				}
				batch = batch[:0]
			}
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB, benchSt
}

// BenchmarkUsageMonthDayZone: one tenant's month grouped by day and zone, straight to
// ClickHouse (the API's SQL and settings, copies collapsed by FINAL as on one node) and
// through the API (HTTP, auth, JSON); then the GROUP BY record_id collapse used on a
// cluster, for reference. Reports p50/p95 in ms. At issue scale:
//
//	FLEETMETER_BENCH_ROWS=10000000 go test -run '^$' -bench UsageMonthDayZone -benchtime 40x -timeout 30m ./api/
func BenchmarkUsageMonthDayZone(b *testing.B) {
	db, st := benchData(b)
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	lim := limits()
	keys, _ := api.NewKeys([]api.KeyConfig{{Name: "t3", Tenant: "t3", SHA256: api.HashKey("bench-key")}})
	srv := api.New(st.Conn(), db, keys, lim, nil, nil, nil)
	srv.SetFinal(true) // as api.Run on a single node
	ts := httptest.NewServer(srv)
	defer ts.Close()
	spec := clickhouse.UsageSpec{Tenant: "t3", From: from, To: to, Window: clickhouse.Day, GroupBy: []string{"zone"},
		Limit: lim.MaxRows, Final: true}
	q, args, err := clickhouse.UsageQuery(db, spec)
	if err != nil {
		b.Fatal(err)
	}
	spec.Final = false
	qg, argsg, err := clickhouse.UsageQuery(db, spec)
	if err != nil {
		b.Fatal(err)
	}
	ctx := ch.Context(context.Background(), ch.WithSettings(ch.Settings{"max_execution_time": int(lim.QueryTimeout / time.Second),
		"max_memory_usage": int(lim.QueryMemory), "max_threads": lim.QueryThreads}))
	sql := func(q string, args []any) func() {
		return func() {
			rows, err := st.Conn().Query(ctx, q, args...)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if n == 0 {
				b.Fatal("no rows")
			}
		}
	}
	viaAPI := func() {
		req, _ := http.NewRequest("GET", ts.URL+"/v1/usage?from=2026-10-01&to=2026-11-01&window=day&group_by=zone", nil)
		req.Header.Set("Authorization", "Bearer bench-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("api: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	for _, c := range []struct {
		name string
		fn   func()
	}{{"path=clickhouse", sql(q, args)}, {"path=api", viaAPI}, {"path=clickhouse/collapse=groupby", sql(qg, argsg)}} {
		b.Run(c.name, func(b *testing.B) {
			c.fn() // warm
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				c.fn()
				lat = append(lat, time.Since(t0))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*95+99)/100-1].Microseconds())/1000, "p95-ms")
		})
	}
}
