package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"fleetmeter/api"
	"fleetmeter/clickhouse"
	"fleetmeter/ingest/payload"
	"fleetmeter/internal/chserver/chtest"
	"fleetmeter/kafka"
	"fleetmeter/record"
	"fleetmeter/sim"
)

var (
	apiBinOnce sync.Once
	apiBinErr  error
)

// apiBin builds cmd/api next to the other binaries (once per test run).
func apiBin(t *testing.T) string {
	t.Helper()
	apiBinOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "api"), "../cmd/api").CombinedOutput()
		if err != nil {
			apiBinErr = fmt.Errorf("build cmd/api: %v\n%s", err, out)
		}
	})
	if apiBinErr != nil {
		t.Fatal(apiBinErr)
	}
	return filepath.Join(binDir, "api")
}

// apiInput is the simulated fleet's usage from 2026-10-01 on, one message per device every
// 6 h 13 min (so hours and days hold different zones and mobility), as records and JSON Lines: the
// first `split` rounds to first, all of it to all.
func apiInput(t *testing.T, devices, rounds, split int, first, all string) []record.Usage {
	t.Helper()
	fleet := sim.NewFleet(devices, 11)
	p := payload.Parser{Limits: payload.DefaultLimits()}
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var recs []record.Usage
	var b []byte
	for k := 0; k < rounds; k++ {
		for i := range fleet.Devices {
			d := &fleet.Devices[i]
			ts := base + int64(k)*373*60_000 + int64(i)
			n := len(recs)
			var err error
			recs, err = p.Parse(payload.KindJSON, fleet.Message(nil, i, uint64(k+1), ts),
				payload.Identity{Tenant: d.Tenant, Device: d.ID, Source: record.SourceMQTT}, ts, recs)
			if err != nil {
				t.Fatal(err)
			}
			for j := n; j < len(recs); j++ {
				b = record.AppendJSON(b, &recs[j])
				b = append(b, '\n')
			}
		}
		if k == split-1 {
			if err := os.WriteFile(first, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(all, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return recs
}

// offlineRated rates input with `rater rate` (the reference).
func offlineRated(t *testing.T, ctx context.Context, rulesDir, input string, closing bool) []record.Rated {
	t.Helper()
	args := []string{"rate", "--rules", rulesDir, "--in", input}
	if closing {
		args = append(args, "--close")
	}
	out := run(t, ctx, filepath.Join(binDir, "rater"), "", args...)
	var recs []record.Rated
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, err := record.ParseRatedJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("offline output: %v", err)
		}
		recs = append(recs, r)
	}
	return recs
}

// figures are what the API should answer for one tenant, from offline rating, rendered
// as the API renders them so maps compare directly.
type figures struct {
	byCharge   map[string]string // charge -> "records amount"
	byHour     map[string]string // bucket|zone|mobility -> "records bytes_up bytes_down events amount" (usage)
	devices    int
	top        []string // "device amount", highest first
	usage, fee record.Micros
}

func offlineFigures(recs []record.Rated, tenant string, usageOnly bool) figures {
	f := figures{byCharge: map[string]string{}, byHour: map[string]string{}}
	type acc struct {
		n, up, down, ev uint64
		am              record.Micros
	}
	charge, hour, dev := map[string]*acc{}, map[string]*acc{}, map[string]record.Micros{}
	for _, r := range recs {
		if r.Tenant != tenant || (usageOnly && r.Charge != record.ChargeUsage) {
			continue
		}
		a := charge[r.Charge]
		if a == nil {
			a = &acc{}
			charge[r.Charge] = a
		}
		a.n++
		a.am += r.Amount
		if r.Device != "" {
			dev[r.Device] += r.Amount
		}
		if r.Charge != record.ChargeUsage {
			f.fee += r.Amount
			continue
		}
		f.usage += r.Amount
		k := time.UnixMilli(r.StartTime-r.StartTime%3_600_000).UTC().Format(time.RFC3339) + "|" + r.Zone + "|" + r.Mobility
		h := hour[k]
		if h == nil {
			h = &acc{}
			hour[k] = h
		}
		h.n, h.up, h.down, h.ev, h.am = h.n+1, h.up+r.BytesUp, h.down+r.BytesDown, h.ev+r.Events, h.am+r.Amount
	}
	for k, a := range charge {
		f.byCharge[k] = fmt.Sprintf("%d %s", a.n, a.am)
	}
	for k, a := range hour {
		f.byHour[k] = fmt.Sprintf("%d %d %d %d %s", a.n, a.up, a.down, a.ev, a.am)
	}
	var devs []string
	for d := range dev {
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool {
		if dev[devs[i]] != dev[devs[j]] {
			return dev[devs[i]] > dev[devs[j]]
		}
		return devs[i] < devs[j]
	})
	f.devices = len(devs)
	for _, d := range devs[:min(5, len(devs))] {
		f.top = append(f.top, d+" "+dev[d].String())
	}
	return f
}

// apiClient calls the running cmd/api with one key.
type apiClient struct {
	base, key string
}

func (c apiClient) get(t *testing.T, path string, into any) {
	t.Helper()
	req, _ := http.NewRequest("GET", c.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

type usageRows struct {
	Rows []struct {
		Bucket, Zone, Mobility, Charge, Amount string
		Records, BytesUp, BytesDown, Events    uint64
	} `json:"rows"`
}

func (r *usageRows) UnmarshalJSON(b []byte) error {
	var raw struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, m := range raw.Rows {
		s := func(k string) string { v, _ := m[k].(string); return v }
		n := func(k string) uint64 { v, _ := m[k].(float64); return uint64(v) }
		r.Rows = append(r.Rows, struct {
			Bucket, Zone, Mobility, Charge, Amount string
			Records, BytesUp, BytesDown, Events    uint64
		}{s("bucket"), s("zone"), s("mobility"), s("charge"), s("amount"), n("records"), n("bytes_up"), n("bytes_down"), n("events")})
	}
	return nil
}

const octRange = "from=2026-10-01&to=2026-11-01"

// apiFigures reads the same figures from the API.
func apiFigures(t *testing.T, c apiClient, usageOnly bool) figures {
	t.Helper()
	f := figures{byCharge: map[string]string{}, byHour: map[string]string{}}
	filter := ""
	if usageOnly {
		filter = "&filter[charge]=usage"
	}
	var u usageRows
	c.get(t, "/v1/usage?"+octRange+"&window=month&group_by=charge"+filter, &u)
	for _, r := range u.Rows {
		f.byCharge[r.Charge] = fmt.Sprintf("%d %s", r.Records, r.Amount)
	}
	u = usageRows{}
	c.get(t, "/v1/usage?from=2026-10-01&to=2026-10-05&window=hour&group_by=zone,mobility&filter[charge]=usage", &u)
	for _, r := range u.Rows {
		f.byHour[r.Bucket+"|"+r.Zone+"|"+r.Mobility] = fmt.Sprintf("%d %d %d %d %s", r.Records, r.BytesUp, r.BytesDown, r.Events, r.Amount)
	}
	var active struct {
		Buckets []struct{ Devices int } `json:"buckets"`
	}
	c.get(t, "/v1/devices/active?"+octRange, &active)
	for _, b := range active.Buckets {
		f.devices += b.Devices
	}
	if !usageOnly {
		var top struct {
			Devices []struct{ Device, Amount string } `json:"devices"`
		}
		c.get(t, "/v1/devices/top?"+octRange+"&limit=5", &top)
		for _, d := range top.Devices {
			f.top = append(f.top, d.Device+" "+d.Amount)
		}
	}
	return f
}

// diff describes how got differs from want ("" when equal).
func (want figures) diff(got figures, withTop bool) string {
	var b strings.Builder
	cmp := func(name string, w, g map[string]string) {
		for k, v := range w {
			if g[k] != v {
				fmt.Fprintf(&b, "%s %s: api %q, offline %q\n", name, k, g[k], v)
			}
		}
		for k, v := range g {
			if _, ok := w[k]; !ok {
				fmt.Fprintf(&b, "%s %s: api %q, offline has none\n", name, k, v)
			}
		}
	}
	cmp("charge", want.byCharge, got.byCharge)
	cmp("hour|zone|mobility", want.byHour, got.byHour)
	if want.devices != got.devices {
		fmt.Fprintf(&b, "active devices: api %d, offline %d\n", got.devices, want.devices)
	}
	if withTop && strings.Join(want.top, ",") != strings.Join(got.top, ",") {
		fmt.Fprintf(&b, "top devices: api %v, offline %v\n", got.top, want.top)
	}
	return b.String()
}

// waitFigures polls until the API's figures equal want for every tenant (the pipeline is
// asynchronous); the comparison itself is exact, only the waiting is bounded.
func waitFigures(t *testing.T, clients map[string]apiClient, want map[string]figures, usageOnly bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var d strings.Builder
		for ten, c := range clients {
			if s := want[ten].diff(apiFigures(t, c, usageOnly), !usageOnly); s != "" {
				fmt.Fprintf(&d, "tenant %s:\n%s", ten, s)
			}
		}
		if d.Len() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("api figures differ from offline rating:\n%s", d.String())
		}
		time.Sleep(time.Second)
	}
}

// TestAPIEqualsOfflineRating runs the pipeline (kfake, rater, loader, ClickHouse) and
// cmd/api for the simulated fleet's 3 tenants and checks that the API answers, per
// tenant, exactly what `rater rate --close` computes offline, to the micro-unit:
//
//  1. after the first half of the input, usage per charge, per hour x zone x mobility and
//     active devices equal the offline rating of that half;
//  2. then the loader's offset commits are refused by the broker (a kfake control) while
//     the second half flows: the loader inserts a batch and cannot commit it; it is
//     SIGKILLed there, between insert and commit, and restarted, so it inserts that batch
//     again. The daily rollup now counts more records than exist (it counts the
//     redelivery), the API does not: after closing the period, every figure (charges,
//     hours, devices, top devices, the period closed with exact fees) equals offline;
//  3. the web page, in headless Chromium, shows the same numbers (subtest Page).
func TestAPIEqualsOfflineRating(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: runs in make test, not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := apiBin(t)
	dir := t.TempDir()
	rulesDir := writeTariffs(t, dir)
	half, all := filepath.Join(dir, "half.jsonl"), filepath.Join(dir, "all.jsonl")
	const devices, rounds = 150, 12
	recs := apiInput(t, devices, rounds, rounds/2, half, all)
	split := len(recs) / 2
	wantHalf, wantAll := map[string]figures{}, map[string]figures{}
	offHalf, offAll := offlineRated(t, ctx, rulesDir, half, false), offlineRated(t, ctx, rulesDir, all, true)
	for _, ten := range sim.Tenants {
		wantHalf[ten] = offlineFigures(offHalf, ten, true)
		wantAll[ten] = offlineFigures(offAll, ten, false)
	}

	// The broker: the loader's offset commits are refused while hold is set.
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(filepath.Join(dir, "kafka")))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	var hold atomic.Bool
	var refused atomic.Int64
	kc.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		r := req.(*kmsg.OffsetCommitRequest)
		if !hold.Load() || r.Group != "fleetmeter-loader" {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		resp.Version = r.Version
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.UnknownServerError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		refused.Add(1)
		return resp, nil, true
	})
	kafkaAddr := kc.ListenAddrs()[0]
	ch := chtest.StartForTest(t)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{kafkaAddr}
	kcfg.Partitions = 4
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(context.Background())

	rater := filepath.Join(binDir, "rater")
	common := []string{"--kafka.brokers", kafkaAddr, "--listen", "", "--log-level", "warn"}
	start(t, rater, append([]string{"run", "--instance", "r1", "--rules", rulesDir}, common...)...)
	loader := &restartable{name: "loader", bin: rater,
		args: append([]string{"load", "--instance", "l1", "--clickhouse.addr", ch.NativeAddr()}, common...)}
	loader.p = start(t, loader.bin, loader.args...)

	// cmd/api with one key per tenant (only hashes on its command line) and the tariffs.
	clients := map[string]apiClient{}
	var keyArgs []string
	apiListen := addr(freePort(t))
	for _, ten := range sim.Tenants {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		key := "e2e-" + ten + "-" + hex.EncodeToString(b)
		clients[ten] = apiClient{base: "http://" + apiListen, key: key}
		keyArgs = append(keyArgs, ten+"="+api.HashKey(key))
	}
	apiProc := start(t, bin, "--listen", apiListen, "--clickhouse.addr", ch.NativeAddr(), "--rules", rulesDir,
		"--keys", strings.Join(keyArgs, ","), "--log-level", "warn")
	waitReady(t, "http://"+apiListen+"/readyz", apiProc)

	// 1. The first half, loaded normally.
	if err := <-feed(ctx, prod, recs[:split], 500, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFigures(t, clients, wantHalf, true, 90*time.Second)
	t.Logf("first half (%d records): api equals offline rating", split)

	// 2. Commits refused; the second half flows until the loader has inserted a batch it
	// cannot commit; SIGKILL it there and start it again.
	hold.Store(true)
	if err := <-feed(ctx, prod, recs[split:], 500, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); refused.Load() == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the loader never tried to commit the second half")
		}
	}
	loader.kill9(t) // kills and restarts: hold still set, so the new loader cannot commit either
	hold.Store(false)
	t.Logf("loader SIGKILLed after %d refused commits, restarted", refused.Load())

	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr = []string{ch.NativeAddr()}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Every device's provisional fee in, then close the period.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		devs, err := store.ActiveDevices(ctx, clickhouse.Filter{Charge: record.ChargeDeviceFee})
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, d := range devs {
			n += d
		}
		tot, err := store.Totals(ctx, clickhouse.Filter{Charge: record.ChargeUsage})
		if err != nil {
			t.Fatal(err)
		}
		var u uint64
		for _, x := range tot {
			u += x.Records
		}
		if n == devices && u == uint64(len(recs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loaded %d of %d device fees, %d of %d usage records", n, devices, u, len(recs))
		}
	}
	run(t, ctx, rater, "", "close", "--period", "2026-10", "--rules", rulesDir, "--clickhouse.addr", ch.NativeAddr())

	// The redelivery happened: the rollup counts it, rated_usage as read does not.
	var rollup, exact uint64
	if err := store.Conn().QueryRow(ctx, "SELECT sum(records) FROM default.rated_daily_tenant WHERE charge = 'usage'").Scan(&rollup); err != nil {
		t.Fatal(err)
	}
	if err := store.Conn().QueryRow(ctx, "SELECT uniqExact(record_id) FROM default.rated_usage WHERE charge = 'usage'").Scan(&exact); err != nil {
		t.Fatal(err)
	}
	if exact != uint64(len(recs)) || rollup <= exact {
		t.Fatalf("want a redelivered batch: rollup counts %d usage records, rated_usage holds %d distinct of %d", rollup, exact, len(recs))
	}
	t.Logf("redelivery after the kill: the daily rollup counts %d usage records, %d exist", rollup, exact)

	waitFigures(t, clients, wantAll, false, 30*time.Second)
	for _, ten := range sim.Tenants {
		var p struct {
			Periods []map[string]any `json:"periods"`
		}
		clients[ten].get(t, "/v1/periods?"+octRange, &p)
		w := wantAll[ten]
		got := fmt.Sprint(p.Periods)
		if len(p.Periods) != 1 || p.Periods[0]["status"] != "closed" || p.Periods[0]["fees_exact"] != true ||
			p.Periods[0]["fees"] != w.fee.String() || p.Periods[0]["usage_amount"] != w.usage.String() ||
			p.Periods[0]["total"] != (w.usage+w.fee).String() || p.Periods[0]["devices"] != float64(w.devices) {
			t.Errorf("%s periods: %s; offline usage %s fees %s devices %d", ten, got, w.usage, w.fee, w.devices)
		}
		t.Logf("%s: api equals offline: %d devices, usage %s, fees %s (closed, exact)", ten, w.devices, w.usage, w.fee)
	}

	t.Run("Page", func(t *testing.T) { checkPage(t, ctx, clients["agrico"], wantAll["agrico"]) })
}

// checkPage drives the web page in headless Chromium and compares what it shows with the
// API (and the totals with offline rating).
func checkPage(t *testing.T, ctx context.Context, c apiClient, want figures) {
	node := tool(t, "node")
	tool(t, "chromium")
	script, _ := filepath.Abs("web/page.mjs")
	if _, err := os.Stat("web/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: run `make deps` (scripts/deps.sh)")
	}
	out := t.ArtifactDir()
	got := run(t, ctx, node, "", script, c.base, c.key, "2026-10-01", "2026-11-01", out)
	var page struct {
		Rejected, State, Status, Who string
		TotalRecords                 string   `json:"total_records"`
		TotalAmount                  string   `json:"total_amount"`
		TotalDevices                 string   `json:"total_devices"`
		Zones                        []string `json:"zones"`
		ZoneRecords                  []string `json:"zone_records"`
		ZoneAmounts                  []string `json:"zone_amounts"`
		TopDevices                   []string `json:"top_devices"`
		TopAmounts                   []string `json:"top_amounts"`
		ActivePeriods                []string `json:"active_periods"`
		ActiveDevices                []string `json:"active_devices"`
		ActiveTiers                  []string `json:"active_tiers"`
		Periods                      []string `json:"periods"`
		PeriodStatus                 []string `json:"period_status"`
		PeriodTotals                 []string `json:"period_totals"`
		ChartBars                    int      `json:"chart_bars"`
		ChartSeries                  []string `json:"chart_series"`
		Offsite                      []string
	}
	if err := json.Unmarshal([]byte(got), &page); err != nil {
		t.Fatalf("page output %q: %v", got, err)
	}
	t.Logf("page: %s; screenshots in %s", got, out)
	if page.State != "ready" || page.Rejected != "Unknown key." || page.Who != "tenant agrico" {
		t.Fatalf("page state %q status %q, wrong key said %q, who %q", page.State, page.Status, page.Rejected, page.Who)
	}
	if len(page.Offsite) > 0 {
		t.Errorf("page loaded from elsewhere: %v", page.Offsite)
	}
	// Totals and zones against the API's own month x zone answer.
	var u usageRows
	c.get(t, "/v1/usage?"+octRange+"&window=month&group_by=zone", &u)
	zoneAmt, zoneRec := map[string]record.Micros{}, map[string]uint64{}
	var total record.Micros
	var recs uint64
	for _, r := range u.Rows {
		z := r.Zone
		if z == "" {
			z = "(device fees)"
		}
		m := mustMicros(t, r.Amount)
		zoneAmt[z] += m
		zoneRec[z] += r.Records
		total += m
		recs += r.Records
	}
	if page.TotalAmount != total.String() || page.TotalAmount != (want.usage+want.fee).String() || page.TotalRecords != fmt.Sprint(recs) {
		t.Errorf("page totals %s / %s records; api %s / %d; offline %s", page.TotalAmount, page.TotalRecords, total, recs, want.usage+want.fee)
	}
	if page.TotalDevices != fmt.Sprint(want.devices) {
		t.Errorf("page devices %s, offline %d", page.TotalDevices, want.devices)
	}
	if len(page.Zones) != len(zoneAmt) {
		t.Errorf("page zones %v, api %v", page.Zones, zoneAmt)
	}
	for i, z := range page.Zones {
		if page.ZoneAmounts[i] != zoneAmt[z].String() || page.ZoneRecords[i] != fmt.Sprint(zoneRec[z]) {
			t.Errorf("zone %s: page %s / %s, api %s / %d", z, page.ZoneAmounts[i], page.ZoneRecords[i], zoneAmt[z], zoneRec[z])
		}
	}
	var top []string
	for i := range page.TopDevices[:min(5, len(page.TopDevices))] {
		top = append(top, page.TopDevices[i]+" "+page.TopAmounts[i])
	}
	if strings.Join(top, ",") != strings.Join(want.top, ",") {
		t.Errorf("page top devices %v, offline %v", top, want.top)
	}
	if fmt.Sprint(page.ActivePeriods, page.ActiveDevices) != fmt.Sprint([]string{"2026-10"}, []string{fmt.Sprint(want.devices)}) ||
		len(page.ActiveTiers) != 1 || !strings.HasPrefix(page.ActiveTiers[0], "tier 1 (up to 1000, 0.1") {
		t.Errorf("page active devices %v %v %v, offline %d", page.ActivePeriods, page.ActiveDevices, page.ActiveTiers, want.devices)
	}
	if fmt.Sprint(page.Periods, page.PeriodStatus, page.PeriodTotals) !=
		fmt.Sprint([]string{"2026-10"}, []string{"closed (exact)"}, []string{(want.usage + want.fee).String() + " EUR"}) {
		t.Errorf("page periods %v %v %v", page.Periods, page.PeriodStatus, page.PeriodTotals)
	}
	if page.ChartBars == 0 || len(page.ChartSeries) != 4 {
		t.Errorf("charts: %d bars, series %v", page.ChartBars, page.ChartSeries)
	}
	for _, f := range []string{"signin.png", "dashboard.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() < 5000 {
			t.Errorf("screenshot %s: %v", f, err)
		}
	}
}

func mustMicros(t *testing.T, s string) record.Micros {
	t.Helper()
	m, err := record.ParseMicros(s)
	if err != nil {
		t.Fatalf("amount %q: %v", s, err)
	}
	return m
}
