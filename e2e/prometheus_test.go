package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"fleetmeter/deploy/grafana/dashboards"
	"fleetmeter/sim"
)

// TestDashboardQueriesOnStandalone runs the dashboards against a running pipeline:
// `fleetmeter standalone --simulate` scraped every second by Debian's prometheus. Every
// Prometheus query of every dashboard panel must return at least one series, and every
// ClickHouse query must run on the standalone's ClickHouse (the usage panels returning
// rows). What the standalone exposes must also pass promlint.
func TestDashboardQueriesOnStandalone(t *testing.T) {
	all, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	promBin := tool(t, "prometheus")
	dir := t.TempDir()
	p, ready := startStandalone(t, "--data", filepath.Join(dir, "data"), "--simulate", "6", "--interval", "500ms",
		"--log-level", "warn")
	if ready["metrics"] == "" || ready["api"] == "" {
		t.Fatalf("ready line names no metrics or api address: %v", ready)
	}

	// One input refused, so the rejection panels have something to show.
	resp, err := http.Post("http://"+ready["http"]+"/v1/usage", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated ingest: status %d, want 401", resp.StatusCode)
	}

	// One usage API query, so its panels have something to show.
	now := time.Now().UTC()
	apiQuery(t, p, ready["api"], "/v1/periods?from="+now.Add(-time.Hour).Format(time.RFC3339)+"&to="+
		now.Add(time.Hour).Format(time.RFC3339))

	lintExposition(t, "http://"+ready["metrics"]+"/metrics")
	lintExposition(t, "http://"+ready["api"]+"/metrics")

	port := freePort(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: fleetmeter
    static_configs: [{targets: [%q, %q]}]
`, ready["metrics"], ready["api"])), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := addr(port)
	start(t, promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	// A few scrapes, so rates over them have two samples and more.
	for {
		if n, err := promQuery(ctx, promAddr, `count_over_time(up{job="fleetmeter"}[1m]) >= 4`); err == nil && n == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("prometheus did not scrape the standalone and its api 4 times each")
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Every Prometheus query, with Grafana's interval variables filled in, until each
	// returns series or the time is up (series of a stage appear once it did some work).
	vars := strings.NewReplacer("$__rate_interval", "30s", "$__range", "1m", "$__interval", "5s")
	var pending []dashboards.Query
	for _, d := range all {
		pending = append(pending, d.Queries(dashboards.Prometheus)...)
	}
	if len(pending) == 0 {
		t.Fatal("the dashboards hold no Prometheus query")
	}
	total := len(pending)
	why := map[dashboards.Query]string{}
	for len(pending) > 0 && ctx.Err() == nil {
		var left []dashboards.Query
		for _, q := range pending {
			n, err := promQuery(ctx, promAddr, vars.Replace(q.Text))
			switch {
			case err != nil:
				why[q] = err.Error()
				left = append(left, q)
			case n == 0:
				why[q] = "no series"
				left = append(left, q)
			}
		}
		pending = left
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	for _, q := range pending {
		t.Errorf("%s / %s (%s): %s\n  %s", q.Dashboard, q.Panel, q.RefID, why[q], q.Text)
	}
	t.Logf("%d Prometheus queries returned series", total-len(pending))

	password := ""
	if f := ready["clickhouse_password_file"]; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		password = strings.TrimSpace(string(b))
	}
	chctx, chcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer chcancel()
	checkClickHouseQueries(t, chctx, ready["clickhouse"], password, all)
}

// apiQuery asks the usage API for path with the first simulated tenant's key, which the
// standalone printed.
func apiQuery(t *testing.T, p *proc, apiAddr, path string) {
	t.Helper()
	prefix := "api key " + sim.Tenants[0] + ": "
	var key string
	for _, line := range strings.Split(p.output(), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			key, _, _ = strings.Cut(rest, " ")
		}
	}
	if key == "" {
		t.Fatalf("the standalone printed no api key for %s", sim.Tenants[0])
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+apiAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("api %s: status %d", path, resp.StatusCode)
	}
}

// lintExposition runs promlint over everything url exposes.
func lintExposition(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	problems, err := promlint.New(resp.Body).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint %s: %s: %s", url, p.Metric, p.Text)
	}
}

// promResult is what /api/v1/query answers.
type promResult struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func promGet(ctx context.Context, promAddr, query string) (*promResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+promAddr+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r promResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", r.Error)
	}
	return &r, nil
}

// promQuery returns how many series query yields now.
func promQuery(ctx context.Context, promAddr, query string) (int, error) {
	r, err := promGet(ctx, promAddr, query)
	if err != nil {
		return 0, err
	}
	return len(r.Data.Result), nil
}

// checkClickHouseQueries runs every ClickHouse query of the dashboards, with the
// plugin's macros expanded for the last hour and the first simulated tenant, in the
// database fleetmeter writes (the data source's default database). Queries on
// rated_usage must return rows once the loader has inserted some.
func checkClickHouseQueries(t *testing.T, ctx context.Context, chAddr, password string, all []dashboards.Dashboard) {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{chAddr}, Auth: ch.Auth{Database: "default", Username: "default",
		Password: password}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	macros := strings.NewReplacer("${tenant}", sim.Tenants[0])
	expand := func(sql string) string {
		sql = macros.Replace(sql)
		sql = expandMacro(sql, "$__timeFilter(", func(col string) string {
			return col + " >= now() - INTERVAL 1 HOUR AND " + col + " <= now() + INTERVAL 1 HOUR"
		})
		// The plugin expands this to toStartOfInterval, which the ClickHouse of Debian
		// (18.16, what the tests run) predates: the same 10 s buckets, spelled for both.
		return expandMacro(sql, "$__timeInterval(", func(col string) string {
			return "toDateTime(intDiv(toUInt32(" + col + "), 10) * 10)"
		})
	}
	n := 0
	for _, d := range all {
		for _, q := range d.Queries(dashboards.ClickHouse) {
			n++
			sql := expand(q.Text)
			if strings.Contains(sql, "$") {
				t.Errorf("%s / %s: unexpanded macro or variable:\n%s", q.Dashboard, q.Panel, sql)
				continue
			}
			wantRows := strings.Contains(sql, "FROM rated_usage")
			for {
				rows, err := conn.Query(ctx, sql)
				if err != nil {
					t.Errorf("%s / %s: %v\n%s", q.Dashboard, q.Panel, err, sql)
					break
				}
				got := 0
				for rows.Next() {
					got++
				}
				err = rows.Err()
				rows.Close()
				if err != nil {
					t.Errorf("%s / %s: %v\n%s", q.Dashboard, q.Panel, err, sql)
					break
				}
				if got > 0 || !wantRows {
					break
				}
				if ctx.Err() != nil {
					t.Errorf("%s / %s: no rows\n%s", q.Dashboard, q.Panel, sql)
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	if n == 0 {
		t.Error("the dashboards hold no ClickHouse query")
	}
}

// expandMacro replaces each name(col) in sql with fn(col).
func expandMacro(sql, name string, fn func(col string) string) string {
	for {
		i := strings.Index(sql, name)
		if i < 0 {
			return sql
		}
		j := strings.IndexByte(sql[i:], ')')
		if j < 0 {
			return sql
		}
		col := strings.TrimSpace(sql[i+len(name) : i+j])
		sql = sql[:i] + fn(col) + sql[i+j+1:]
	}
}
