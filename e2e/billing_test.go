package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"fleetmeter/api"
	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/clickhouse"
	"fleetmeter/internal/chserver/chtest"
	"fleetmeter/kafka"
	"fleetmeter/record"
	"fleetmeter/sim"
)

// billingPuller follows the export cursor of cmd/api with an operator key, as a billing
// system would, and keeps what it pulled; a record pulled twice fails the test.
type billingPuller struct {
	base, key string
	mu        sync.Mutex
	got       map[string]record.Rated // tenant NUL record_id
	dup       string
	cursor    string
	watermark int64
	pages     int
}

// pull reads one page; it reports whether the page was caught up.
func (p *billingPuller) pull(ctx context.Context) (bool, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", p.base+"/v1/billing/records?limit=700&cursor="+url.QueryEscape(p.cursor), nil)
	req.Header.Set("Authorization", "Bearer "+p.key)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return false, &httpStatusError{resp.StatusCode, string(b)}
	}
	var page []record.Rated
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, err := record.ParseRatedJSON(sc.Bytes())
		if err != nil {
			return false, err
		}
		page = append(page, r)
	}
	if err := sc.Err(); err != nil {
		return false, err // cut short: ask again with the same cursor
	}
	if n := resp.Header.Get("Fleetmeter-Records"); n != "" && n != itoa(len(page)) {
		return false, nil // cut short
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range page {
		k := r.Tenant + "\x00" + r.RecordID
		if _, ok := p.got[k]; ok && p.dup == "" {
			p.dup = r.RecordID
		}
		p.got[k] = r
	}
	p.cursor = resp.Header.Get("Fleetmeter-Next-Cursor")
	var wm int64
	_ = json.Unmarshal([]byte(resp.Header.Get("Fleetmeter-Watermark")), &wm)
	p.watermark, p.pages = wm, p.pages+1
	return resp.Header.Get("Fleetmeter-Caught-Up") == "true", nil
}

type httpStatusError struct {
	code int
	body string
}

func (e *httpStatusError) Error() string { return "http " + itoa(e.code) + ": " + e.body }

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestBillingPullWhileLoaderKilled pulls the billing export through cmd/api, following
// cursors, while the simulated fleet's usage flows through the rater and a loader that is
// SIGKILLed twice (restarted each time, so batches may be inserted again); then the period
// is closed and finalized. The pulled records are exactly `rater rate --close`'s: every
// usage record once with its offline amount, every device fee once (only after the close,
// per tenant fees + adjustment exact), no record twice; each tenant's final invoice total
// equals the offline total to the micro-unit.
func TestBillingPullWhileLoaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: runs in make test, not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := apiBin(t)
	dir := t.TempDir()
	rulesDir := writeTariffs(t, dir)
	half, all := filepath.Join(dir, "half.jsonl"), filepath.Join(dir, "all.jsonl")
	const devices, rounds = 100, 9
	recs := apiInput(t, devices, rounds, rounds/2, half, all)
	offline := offlineRated(t, ctx, rulesDir, all, true)

	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(filepath.Join(dir, "kafka")))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	// While hold is set the loader's offset commits are refused: it inserts a batch and
	// cannot commit it, so a SIGKILL then makes its successor insert the batch again.
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

	b := make([]byte, 16)
	_, _ = rand.Read(b)
	key := "e2e-billing-" + hex.EncodeToString(b)
	cursorKey := hex.EncodeToString(append(b, b...))
	apiListen := addr(freePort(t))
	apiProc := start(t, bin, "--listen", apiListen, "--clickhouse.addr", ch.NativeAddr(), "--keys", "*="+api.HashKey(key),
		"--billing.cursor-key", cursorKey, "--billing.lag", "1s", "--log-level", "warn")
	waitReady(t, "http://"+apiListen+"/readyz", apiProc)

	// The billing system pulls all along.
	p := &billingPuller{base: "http://" + apiListen, key: key, got: map[string]record.Rated{}}
	pullCtx, stopPull := context.WithCancel(ctx)
	pulled := make(chan error, 1)
	go func() {
		for pullCtx.Err() == nil {
			caught, err := p.pull(pullCtx)
			if err != nil && pullCtx.Err() == nil {
				if _, ok := err.(*httpStatusError); ok {
					pulled <- err
					return
				}
			}
			if caught || err != nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
		pulled <- nil
	}()

	// The fleet flows in three parts. During the second the loader's commits are refused
	// and it is SIGKILLed after inserting what it could not commit (a redelivery); during
	// the third it is SIGKILLed while records flow.
	third := len(recs) / 3
	if err := <-feed(ctx, prod, recs[:third], 300, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	if err := <-feed(ctx, prod, recs[third:2*third], 300, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for refused.Load() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the loader never tried to commit the second part")
		case <-time.After(100 * time.Millisecond):
		}
	}
	loader.kill9(t)
	hold.Store(false)
	fed := feed(ctx, prod, recs[2*third:], 100, 20*time.Millisecond)
	time.Sleep(150 * time.Millisecond) // somewhere in the flow; where does not matter
	loader.kill9(t)
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	t.Logf("fed %d usage records, loader SIGKILLed twice (%d commits refused before the first)", len(recs), refused.Load())

	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr = []string{ch.NativeAddr()}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		tot, err := store.Totals(ctx, clickhouse.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, x := range tot {
			n += x.Records
		}
		if n == uint64(len(offline))-uint64(len(sim.Tenants)) { // all but the adjustments
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loaded %d of %d rated records", n, len(offline)-len(sim.Tenants))
		}
	}
	// Closing the period finalizes its invoices, one per tenant; finalizing again (as a
	// second close would) makes nothing new.
	closed := run(t, ctx, rater, "", "close", "--period", "2026-10", "--rules", rulesDir, "--clickhouse.addr", ch.NativeAddr())
	if n := strings.Count(closed, "\tfinal\t"); n != len(sim.Tenants) {
		t.Fatalf("rater close finalized %d invoices, want %d:\n%s", n, len(sim.Tenants), closed)
	}
	bcfg := billing.DefaultConfig()
	bcfg.Lag = time.Second
	made, err := chstore.FinalizePeriod(ctx, store, bcfg, "2026-10", nil)
	if err != nil || len(made) != 0 {
		t.Fatalf("finalizing again: %d new documents, %v", len(made), err)
	}

	// Let the puller catch up past the close, then stop it.
	var end uint32
	if err := store.Conn().QueryRow(ctx, "SELECT toUInt32(now())").Scan(&end); err != nil {
		t.Fatal(err)
	}
	for {
		p.mu.Lock()
		wm := p.watermark
		p.mu.Unlock()
		if wm > int64(end) {
			break
		}
		select {
		case err := <-pulled:
			t.Fatalf("puller stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("puller did not catch up")
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Stop the background puller, then follow cursors until caught up: everything is in.
	stopPull()
	if err := <-pulled; err != nil {
		t.Fatal(err)
	}
	for {
		caught, err := p.pull(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if caught {
			break
		}
	}
	if p.dup != "" {
		t.Fatalf("record %s pulled twice", p.dup)
	}

	// Against offline rating.
	type tally struct{ fees, total record.Micros }
	want, got := map[string]*tally{}, map[string]*tally{}
	for _, m := range []map[string]*tally{want, got} {
		for _, ten := range sim.Tenants {
			m[ten] = &tally{}
		}
	}
	for _, r := range offline {
		k := r.Tenant + "\x00" + r.RecordID
		g, ok := p.got[k]
		if !ok {
			t.Errorf("%s never pulled", r.RecordID)
			continue
		}
		if r.Charge == record.ChargeUsage && g.Amount != r.Amount {
			t.Errorf("%s pulled with %s, offline %s", r.RecordID, g.Amount, r.Amount)
		}
		if r.Charge != record.ChargeUsage {
			want[r.Tenant].fees += r.Amount
			got[r.Tenant].fees += g.Amount
		}
		want[r.Tenant].total += r.Amount
		got[r.Tenant].total += g.Amount
	}
	if len(p.got) != len(offline) {
		t.Errorf("pulled %d records, offline rating has %d", len(p.got), len(offline))
	}
	for _, ten := range sim.Tenants {
		if *got[ten] != *want[ten] {
			t.Errorf("%s: pulled fees %s total %s, offline fees %s total %s", ten, got[ten].fees, got[ten].total, want[ten].fees, want[ten].total)
		}
	}

	var rows, distinct uint64
	if err := store.Conn().QueryRow(ctx, "SELECT count(), uniqExact(record_id) FROM default.rated_usage").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows <= distinct {
		// The loader was killed after an insert it could not commit, so it inserted a batch
		// twice; a background merge of rated_usage may have folded the copies already.
		t.Logf("no copies left in rated_usage (%d rows for %d records): merged away since", rows, distinct)
	}
	t.Logf("rated_usage holds %d rows for %d records (copies from the loader's restarts); pulled %d, each once", rows, distinct, len(p.got))

	// The final invoices, over the API.
	for _, ten := range sim.Tenants {
		var l struct {
			Invoices []billing.Invoice `json:"invoices"`
		}
		apiClient{base: p.base, key: key}.get(t, "/v1/invoices?tenant="+ten+"&period=2026-10", &l)
		if len(l.Invoices) != 1 || l.Invoices[0].Status != "final" || len(l.Invoices[0].Totals) != 1 ||
			l.Invoices[0].Totals[0].Amount != want[ten].total.String() {
			t.Errorf("%s invoices %+v, offline total %s", ten, l.Invoices, want[ten].total)
			continue
		}
		t.Logf("%s: final invoice %s total %s = offline; %d records pulled in %d pages", ten, l.Invoices[0].Number,
			l.Invoices[0].Totals[0].Amount, l.Invoices[0].Records, p.pages)
	}
}
