package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fleetmeter/api"
	"fleetmeter/billing"
	"fleetmeter/clickhouse"
	"fleetmeter/internal/chserver"
	"fleetmeter/internal/chserver/chtest"
	"fleetmeter/record"
	"fleetmeter/rules"
)

// One ClickHouse for the test binary; each fixture gets its own database.
var srv *chserver.Server

func TestMain(m *testing.M) { os.Exit(chtest.RunMain(m, &srv)) }

var dbSeq atomic.Int64

// Keys of the fixture tenants; only their hashes reach the server.
const (
	keyA  = "key-tenant-a-0123456789"
	keyB  = "key-tenant-b-0123456789"
	keyOp = "key-operator-0123456789"
)

var oct = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

const hour = int64(3_600_000)

// rated builds a usage record of tenant/device at start with amount micros.
func rated(tenant, device, id, zone, mobility string, start int64, amount int64, ratedAt int64) record.Rated {
	return record.Rated{Usage: record.Usage{EventID: id, Tenant: tenant, Device: device, Source: record.SourceMQTT,
		StartTime: start, EndTime: start, ReceivedTime: start, BytesUp: 100, BytesDown: 1000, Events: 2, RAT: "NB-IoT",
		HasSlice: true, SliceSST: 3},
		RecordID: id, Charge: record.ChargeUsage, Zone: zone, Mobility: mobility, Tariff: "t-" + tenant, TariffVersion: "v1",
		Currency: "EUR", Amount: record.Micros(amount), RatedTime: ratedAt}
}

// fixtureA is tenant ta's data: 2 devices over 2 days, one record inserted twice with
// the later copy rated differently (zone and amount), a device fee and the closing
// adjustment of 2026-10.
func fixtureA() []record.Rated {
	var out []record.Rated
	for i := 0; i < 30; i++ {
		dev := []string{"d1", "d2"}[i%2]
		zone := []string{"home", "eu", "world"}[i%3]
		mob := []string{"stationary", "mobile"}[i%2]
		out = append(out, rated("ta", dev, fmt.Sprintf("a-%02d", i), zone, mob, oct+int64(i)*2*hour, 1_000_001+int64(i)*37, oct+int64(i)*2*hour+5))
	}
	dup := out[4]
	dup.Zone, dup.Amount, dup.RatedTime = "dupzone", 999_999_999, dup.RatedTime+60_000
	out = append(out, dup)
	fee := rated("ta", "d1", "fee:ta:d1:2026-10", "", "", oct, 100_000, oct+10)
	fee.Charge, fee.BytesUp, fee.BytesDown, fee.Events = record.ChargeDeviceFee, 0, 0, 0
	adj := rated("ta", "", "adj:ta:2026-10", "", "", oct, 100_000, oct+40*24*hour)
	adj.Charge, adj.BytesUp, adj.BytesDown, adj.Events, adj.ActiveDevices = record.ChargeAdjustment, 0, 0, 0, 2
	return append(out, fee, adj)
}

// fixtureB is tenant tb's: a device named like one of ta's (d1), a device and zone only
// tb has, in the same hours, and an open period.
func fixtureB() []record.Rated {
	var out []record.Rated
	for i := 0; i < 20; i++ {
		dev := []string{"d1", "bsecretdev"}[i%2]
		out = append(out, rated("tb", dev, fmt.Sprintf("b-%02d", i), "bsecretzone", "nomadic", oct+int64(i)*hour, 7_777_777, oct+int64(i)*hour+1))
	}
	return out
}

// newDB creates a database holding recs and returns its name.
func newDB(t testing.TB, recs ...[]record.Rated) (string, *clickhouse.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{srv.NativeAddr()}
	cfg.Database = fmt.Sprintf("api_%d_%d", os.Getpid(), dbSeq.Add(1))
	st, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, r := range recs {
		if err := st.InsertRated(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	return cfg.Database, st
}

func testKeys(t testing.TB) *api.Keys {
	keys, err := api.NewKeys([]api.KeyConfig{
		{Name: "a", Tenant: "ta", SHA256: api.HashKey(keyA)},
		{Name: "b", Tenant: "tb", SHA256: api.HashKey(keyB)},
		{Name: "op", Operator: true, SHA256: api.HashKey(keyOp)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// newServer serves the API over a fresh database holding recs.
func newServer(t testing.TB, limit api.Limits, recs ...[]record.Rated) *httptest.Server {
	t.Helper()
	return newServerMode(t, false, limit, recs...)
}

// newServerMode is newServer with usage queries collapsing copies by FINAL when final.
func newServerMode(t testing.TB, final bool, limit api.Limits, recs ...[]record.Rated) *httptest.Server {
	t.Helper()
	db, st := newDB(t, recs...)
	set, err := rules.Load("../deploy/tariffs")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	h := api.New(st.Conn(), db, testKeys(t), limit, func() *rules.Set { return set }, nil, logger)
	h.SetFinal(final)
	bcfg := billing.DefaultConfig()
	bcfg.CursorKey, bcfg.Lag = "0123456789abcdef0123456789abcdef-api-test", time.Second
	if err := api.MountBilling(h, st, bcfg, logger); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

func limits() api.Limits { return api.DefaultConfig().Limit }

// get fetches path with key (and Accept when given), returning status and body.
func get(t testing.TB, ts *httptest.Server, key, path string, accept ...string) (int, string) {
	t.Helper()
	code, _, body := fetch(t, ts, key, path, strings.Join(accept, ", "))
	return code, body
}

// fetch GETs path with key and Accept (each when not empty), returning status, headers
// and body.
func fetch(t testing.TB, ts *httptest.Server, key, path, accept string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", ts.URL+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// testWriter sends the server's log to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }
