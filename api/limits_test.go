package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"fleetmeter/api"
)

// probe is a Querier that, before each query, reads back from ClickHouse the settings
// the query runs with (system.settings under the same context).
type probe struct {
	api.Querier
	mu   sync.Mutex
	seen []string
}

func (p *probe) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	rows, err := p.Querier.Query(ctx, "SELECT name, value FROM system.settings WHERE name IN ('max_execution_time', 'max_memory_usage', 'max_threads') ORDER BY name")
	if err != nil {
		return nil, err
	}
	var got []string
	for rows.Next() {
		var n, v string
		if err := rows.Scan(&n, &v); err != nil {
			return nil, err
		}
		got = append(got, n+"="+v)
	}
	rows.Close()
	p.mu.Lock()
	p.seen = append(p.seen, strings.Join(got, " "))
	p.mu.Unlock()
	return p.Querier.Query(ctx, q, args...)
}

// TestQueryLimits: every endpoint's query runs with max_execution_time, max_memory_usage
// and max_threads set from the limits.
func TestQueryLimits(t *testing.T) {
	db, st := newDB(t, fixtureA())
	lim := limits()
	lim.QueryMemory, lim.QueryThreads = 123456789, 2
	p := &probe{Querier: st.Conn()}
	ts := httptest.NewServer(api.New(p, db, testKeys(t), lim, nil, nil, nil))
	defer ts.Close()
	rng := "from=2026-10-01&to=2026-11-01"
	for _, path := range []string{"/v1/usage?" + rng, "/v1/devices?" + rng, "/v1/devices/top?" + rng, "/v1/devices/active?" + rng,
		"/v1/devices/d1/timeline?" + rng, "/v1/periods?" + rng} {
		if code, body := get(t, ts, keyA, path); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	want := "max_execution_time=10 max_memory_usage=123456789 max_threads=2"
	if len(p.seen) != 6 {
		t.Fatalf("%d queries", len(p.seen))
	}
	for _, s := range p.seen {
		if s != want {
			t.Errorf("query ran with %q, want %q", s, want)
		}
	}
}

// limitHit answers every query with ClickHouse's TIMEOUT_EXCEEDED.
type limitHit struct{}

func (limitHit) Query(context.Context, string, ...any) (driver.Rows, error) {
	return nil, &ch.Exception{Code: 159, Message: "Timeout exceeded: elapsed 10.1 seconds, maximum: 10 (tenant ta, secret detail)"}
}

// TestLimitExceeded: a query stopped by its limits is a 503 that says what to do and
// repeats nothing of ClickHouse's message.
func TestLimitExceeded(t *testing.T) {
	ts := httptest.NewServer(api.New(limitHit{}, "db", testKeys(t), limits(), nil, nil, nil))
	defer ts.Close()
	code, body := get(t, ts, keyA, "/v1/usage?from=2026-10-01&to=2026-11-01")
	if code != 503 || !strings.Contains(body, "narrow the range") || strings.Contains(body, "secret") {
		t.Fatalf("%d %s", code, body)
	}
}

// TestKeysNeverLogged: failed queries are logged with the key's name, never the key or
// its hash, and neither are refused keys.
func TestKeysNeverLogged(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := httptest.NewServer(api.New(limitHit{}, "db", testKeys(t), limits(), nil, nil, logger))
	defer ts.Close()
	get(t, ts, keyA, "/v1/usage?from=2026-10-01&to=2026-11-01")
	get(t, ts, keyA+"-wrong", "/v1/usage?from=2026-10-01&to=2026-11-01")
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), `"key":"a"`) {
		t.Fatalf("the failure was not logged with the key's name: %s", buf.String())
	}
	for _, secret := range []string{keyA, api.HashKey(keyA), keyA + "-wrong"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log holds a key or its hash: %s", buf.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
