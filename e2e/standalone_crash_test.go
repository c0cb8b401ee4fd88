package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/clickhouse"
	"fleetmeter/record"
	"fleetmeter/sim"
)

// TestStandaloneCrashNoLoss SIGKILLs `fleetmeter standalone` itself while 20 MQTT
// devices (paho, QoS 1) and 4 CoAP devices (go-coap, confirmable POST) report to it,
// restarts it on the same --data and ports, and lets every device resend what was not
// acknowledged, as real ones do. Then ClickHouse, read as billing reads it (one row per
// record_id), must hold every record exactly once, none missing and none twice: in
// particular every one that was acknowledged before the kill.
func TestStandaloneCrashNoLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const mqttDevices, coapDevices, perDevice = 20, 4, 500
	kills := envInt(t, "FLEETMETER_CRASH_KILLS", 1)
	fleet := sim.NewFleet(mqttDevices+coapDevices, 11)
	total := len(fleet.Devices) * perDevice
	// Payloads are generated up front (the generator is not safe for concurrent use): a
	// resend carries the same seq, so the same event id.
	now := time.Now().UnixMilli()
	payloads := make([][][]byte, len(fleet.Devices))
	for i := range fleet.Devices {
		for s := 1; s <= perDevice; s++ {
			payloads[i] = append(payloads[i], fleet.Message(nil, i, uint64(s), now+int64(s)))
		}
	}

	dir := t.TempDir()
	regFile := filepath.Join(dir, "devices.yaml")
	writeDeviceRegistry(t, regFile, fleet.Devices[:mqttDevices])
	args := []string{"--data", filepath.Join(dir, "data"), "--registry", regFile, "--log-level", "warn",
		"--mqtt-addr", addr(freePort(t)), "--coap-addr", addr(freeUDPPorts(t, 1)[0]), "--http-addr", addr(freePort(t))}
	sa, ready := startStandalone(t, args...)
	mqttAddr, coapAddr := ready["mqtt"], ready["coap"]

	var acked atomic.Int64
	// Devices pace themselves to about 1,000 messages/s in all, so the stream outlasts
	// the kills on any machine.
	interval := time.Duration(len(fleet.Devices)) * time.Millisecond
	var wg sync.WaitGroup
	errs := make(chan error, len(fleet.Devices))
	for i, d := range fleet.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i < mqttDevices {
				errs <- mqttReport(ctx, mqttAddr, d, fleet.Topic("fleetmeter", i), payloads[i], interval, &acked)
			} else {
				errs <- coapReport(ctx, coapAddr, d, payloads[i], interval, &acked)
			}
		}()
	}
	reported := make(chan struct{})
	go func() { wg.Wait(); close(reported) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for k := range kills {
		// Kill somewhere in the middle third of what is left.
		at := int64(total) * int64(k+1) / int64(kills+1)
		at += int64(rng.IntN(total/(3*(kills+1)))) - int64(total/(6*(kills+1)))
		for acked.Load() < at {
			select {
			case <-reported:
				t.Fatalf("the devices finished before kill %d", k+1)
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
		before := acked.Load()
		// SIGKILL the standalone process itself (its ClickHouse child follows it down).
		_ = syscall.Kill(sa.cmd.Process.Pid, syscall.SIGKILL)
		<-sa.done
		waitGroupGone(t, sa.cmd.Process.Pid)
		t.Logf("kill %d: SIGKILL with %d of %d messages acknowledged", k+1, before, total)
		sa, ready = startStandalone(t, args...)
		if ready["mqtt"] != mqttAddr || ready["coap"] != coapAddr {
			t.Fatalf("restarted on mqtt %s coap %s, was %s %s", ready["mqtt"], ready["coap"], mqttAddr, coapAddr)
		}
	}
	select {
	case <-reported:
	case <-ctx.Done():
		t.Fatalf("the devices did not finish: %d of %d acknowledged", acked.Load(), total)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	store, err := clickhouse.Open(ctx, standaloneClickHouse(t, ready))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	want := func(i, s int) string {
		d := fleet.Devices[i]
		src := record.SourceMQTT
		if i >= mqttDevices {
			src = record.SourceCoAP
		}
		return fmt.Sprintf("%s:%s:%s:%d", src, d.Tenant, d.ID, s)
	}
	var billed map[string]uint64
	var rows uint64
	for deadline := time.Now().Add(120 * time.Second); ; {
		billed, rows = billedEventIDs(t, ctx, store)
		if len(billed) >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	var missing, twice []string
	for i := range fleet.Devices {
		for s := 1; s <= perDevice; s++ {
			switch n := billed[want(i, s)]; {
			case n == 0:
				missing = append(missing, want(i, s))
			case n > 1:
				twice = append(twice, want(i, s))
			}
		}
	}
	if len(missing) > 0 {
		// Lost by the broker, or stuck in Kafka, the rater or the loader?
		var found []string
		for _, topic := range []string{"usage", "rated"} {
			for _, committed := range []bool{false, true} {
				in, n := topicEventIDs(t, ctx, ready["kafka"], topic, committed), 0
				for _, id := range missing {
					n += min(in[id], 1)
				}
				found = append(found, fmt.Sprintf("%d in %s (read_committed %v)", n, topic, committed))
			}
		}
		t.Errorf("of the %d event ids missing from ClickHouse: %s", len(missing), strings.Join(found, ", "))
		t.Logf("the standalone's readiness and pipeline metrics:\n%s", pipelineState(ready["metrics"]))
		t.Logf("topic rated, per partition: %s", endOffsets(ctx, ready["kafka"], "rated", "fleetmeter-loader"))
		t.Logf("missing per device: %s", missingRuns(missing))
	}
	if len(missing) > 0 || len(twice) > 0 || len(billed) != total {
		t.Fatalf("after %d kills, billing sees %d distinct event ids for %d acknowledged messages: %d missing (e.g. %v), %d billed more than once (e.g. %v)",
			kills, len(billed), total, len(missing), missing[:min(5, len(missing))], len(twice), twice[:min(5, len(twice))])
	}
	t.Logf("after %d kills every one of %d acknowledged messages is billed exactly once (%d rows before collapsing by record_id)",
		kills, total, rows)
}

// billedEventIDs counts, per event id, the usage records billing sees: rated_usage
// collapsed by (tenant, record_id) as clickhouse.TotalsQuery does. rows is the row count
// before collapsing.
func billedEventIDs(t *testing.T, ctx context.Context, store *clickhouse.Store) (map[string]uint64, uint64) {
	t.Helper()
	q := "SELECT event_id, count() FROM (SELECT tenant, record_id, any(event_id) AS event_id FROM default.rated_usage " +
		"WHERE charge = ? GROUP BY tenant, record_id) GROUP BY event_id"
	rs, err := store.Conn().Query(ctx, q, record.ChargeUsage)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]uint64{}
	for rs.Next() {
		var id string
		var n uint64
		if err := rs.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	var rows uint64
	if err := store.Conn().QueryRow(ctx, "SELECT count() FROM default.rated_usage WHERE charge = ?", record.ChargeUsage).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return out, rows
}

// topicEventIDs counts the event ids in a topic of usage or rated records, reading for at
// most 15 s, and until nothing new came for 3 s once something did.
func topicEventIDs(t *testing.T, ctx context.Context, kafkaAddr, topic string, committed bool) map[string]int {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{}
	var usage []record.Usage
	var rated []record.Rated
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		fetches := cl.PollFetches(pctx)
		idle := pctx.Err() != nil
		cancel()
		if idle {
			if len(seen) > 0 || ctx.Err() != nil {
				return seen
			}
			continue
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if topic == "rated" {
				rated, _ = record.DecodeRated(r.Value, rated[:0])
				for i := range rated {
					seen[rated[i].EventID]++
				}
				return
			}
			usage, _ = record.DecodeUsage(r.Value, usage[:0])
			for i := range usage {
				seen[usage[i].EventID]++
			}
		})
	}
	return seen
}

// waitGroupGone waits until no process of pid's process group is left (the standalone's
// ClickHouse child stops when its parent dies), then a restart finds its data free.
func waitGroupGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if err := syscall.Kill(-pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	t.Logf("process group %d outlived its leader by 30s; killed", pid)
}

// mqttReport publishes d's payloads as a device does: QoS 1 in windows of up to 20
// unacknowledged messages; when the connection fails it reconnects (with the broker
// down, every 200 ms) and resends everything from the first unacknowledged message.
func mqttReport(ctx context.Context, brokerAddr string, d sim.Device, topic string, payloads [][]byte,
	interval time.Duration, acked *atomic.Int64) error {
	user := d.Tenant + "." + d.ID
	opts := paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID(user).SetUsername(user).
		SetPassword("pw-" + d.ID).SetAutoReconnect(false).SetConnectTimeout(2 * time.Second).SetWriteTimeout(5 * time.Second)
	var cl paho.Client
	defer func() {
		if cl != nil {
			cl.Disconnect(0)
		}
	}()
	next, began := 0, time.Now()
	for next < len(payloads) {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %d of %d acknowledged: %w", user, next, len(payloads), ctx.Err())
		}
		if cl == nil || !cl.IsConnectionOpen() {
			cl = paho.NewClient(opts)
			if tok := cl.Connect(); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
				cl = nil
				time.Sleep(200 * time.Millisecond)
				continue
			}
		}
		end := min(next+20, len(payloads))
		toks := make([]paho.Token, 0, end-next)
		for _, p := range payloads[next:end] {
			toks = append(toks, cl.Publish(topic, 1, false, p))
		}
		for _, tok := range toks {
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				cl.Disconnect(0)
				cl = nil
				break
			}
			next++
			acked.Add(1)
		}
		time.Sleep(time.Until(began.Add(time.Duration(next) * interval)))
	}
	return nil
}

// coapReport POSTs d's payloads one at a time as confirmable requests, taking 2.04 as
// the acknowledgement; on a timeout or 5.03 it waits and resends the same payload.
func coapReport(ctx context.Context, coapAddr string, d sim.Device, payloads [][]byte, interval time.Duration,
	acked *atomic.Int64) error {
	path := "/usage/" + d.Tenant + "/" + d.ID
	began := time.Now()
	for i := 0; i < len(payloads); {
		if ctx.Err() != nil {
			return fmt.Errorf("coap %s: %d of %d acknowledged: %w", d.ID, i, len(payloads), ctx.Err())
		}
		cc, err := udp.Dial(coapAddr, options.WithErrors(func(error) {})) // a dead server is expected here
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for i < len(payloads) {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			resp, err := cc.Post(rctx, path, message.AppJSON, bytes.NewReader(payloads[i]))
			cancel()
			if err != nil {
				break // the server is gone: dial again and resend
			}
			if c := resp.Code(); c == codes.Changed {
				i++
				acked.Add(1)
				time.Sleep(time.Until(began.Add(time.Duration(i) * interval)))
				continue
			} else if c >= codes.BadRequest && c < codes.InternalServerError {
				_ = cc.Close()
				return fmt.Errorf("coap %s seq %d: %v", d.ID, i+1, c)
			}
			// 5.03 under back-pressure, or whatever a dying server sent: resend.
			time.Sleep(100 * time.Millisecond)
			break
		}
		_ = cc.Close()
	}
	return nil
}

// pipelineState is what a stuck standalone says about itself: /readyz and the rater's,
// loader's and consumer lag's series of /metrics.
func pipelineState(metricsAddr string) string {
	var b strings.Builder
	for _, path := range []string{"/readyz", "/metrics"} {
		resp, err := http.Get("http://" + metricsAddr + path)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(body), "\n") {
			if path == "/readyz" || (!strings.HasPrefix(l, "#") && (strings.Contains(l, "fleetmeter_rater_") ||
				strings.Contains(l, "fleetmeter_loader_") || strings.Contains(l, "consumer_lag") || strings.Contains(l, "fleetmeter_ready"))) {
				fmt.Fprintf(&b, "%s %s\n", path, l)
			}
		}
	}
	return b.String()
}

// endOffsets gives, per partition of topic, the high watermark, the last stable offset (a
// transaction left open holds it back for read_committed readers) and group's committed
// offset.
func endOffsets(ctx context.Context, kafkaAddr, topic, group string) string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	hwm, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err.Error()
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return err.Error()
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return err.Error()
	}
	var out []string
	hwm.Each(func(o kadm.ListedOffset) {
		l, _ := lso.Lookup(topic, o.Partition)
		c, _ := committed.Lookup(topic, o.Partition)
		out = append(out, fmt.Sprintf("p%d high watermark %d, last stable %d, %s committed %d", o.Partition, o.Offset, l.Offset, group, c.At))
	})
	return strings.Join(out, "; ")
}

// missingRuns summarizes event ids "source:tenant:device:seq" as each device's count and
// its lowest and highest missing sequence number.
func missingRuns(ids []string) string {
	type run struct{ n, lo, hi int }
	runs := map[string]*run{}
	var order []string
	for _, id := range ids {
		i := strings.LastIndexByte(id, ':')
		seq, err := strconv.Atoi(id[i+1:])
		if i < 0 || err != nil {
			continue
		}
		r := runs[id[:i]]
		if r == nil {
			r = &run{lo: seq, hi: seq}
			runs[id[:i]] = r
			order = append(order, id[:i])
		}
		r.n++
		r.lo, r.hi = min(r.lo, seq), max(r.hi, seq)
	}
	var out []string
	for _, d := range order {
		r := runs[d]
		out = append(out, fmt.Sprintf("%s %d (seq %d-%d)", d, r.n, r.lo, r.hi))
	}
	return strings.Join(out, ", ")
}
