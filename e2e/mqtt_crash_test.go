package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/record"
)

// TestMQTTCrashNoLoss publishes 50,000 QoS 1 messages (50 devices x 1000, each with a
// unique seq) through a real Mosquitto to the mediator binary, SIGKILLs the mediator three
// times at random moments mid-stream and restarts it with the same client id, then reads
// topic usage back: every published event_id must be there. Duplicates (the messages in
// flight at a kill, which the broker redelivers) are allowed only as the same event_id;
// they are counted and logged.
func TestMQTTCrashNoLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const devices, perDevice, publishers = 50, 1000, 5
	kills := 3
	if s := os.Getenv("FLEETMETER_CRASH_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	const total = devices * perDevice

	mqttAddr := startMosquitto(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaAddr := kc.ListenAddrs()[0]

	startMediator := func() (*proc, string) {
		listen := addr(freePort(t))
		p := start(t, filepath.Join(binDir, "mediator"), "run", "--kafka.brokers", kafkaAddr,
			"--mqtt.brokers", "tcp://"+mqttAddr, "--mqtt.client-id", "crash-mediator", "--listen", listen,
			"--log-level", "warn")
		waitReady(t, "http://"+listen+"/readyz", p)
		return p, listen
	}
	// The first start creates the persistent session: from then on the broker holds
	// every message for it, whether a mediator is connected or not.
	med, medListen := startMediator()

	began := time.Now()
	var published atomic.Int64
	pubErr := make(chan error, publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pubErr <- publishDevices(mqttAddr, p, publishers, devices, perDevice, &published)
		}()
	}
	pubDone := make(chan struct{})
	go func() { wg.Wait(); close(pubDone) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for k := range kills {
		select {
		case <-time.After(time.Duration(50+rng.IntN(600)) * time.Millisecond):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		state := mediatorState(medListen)
		// SIGKILL the whole process group: no drain, no goodbye to the broker.
		_ = syscall.Kill(-med.cmd.Process.Pid, syscall.SIGKILL)
		<-med.done
		t.Logf("kill %d at %s: %d of %d published; the mediator had %s", k+1, time.Since(began).Round(time.Millisecond),
			published.Load(), total, state)
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		med, medListen = startMediator()
	}
	select {
	case <-pubDone:
	case <-ctx.Done():
		t.Fatalf("publishing did not finish: %d of %d", published.Load(), total)
	}
	close(pubErr)
	for err := range pubErr {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("published %d messages in %s", total, time.Since(began).Round(time.Millisecond))

	cctx, ccancel := context.WithTimeout(ctx, 45*time.Second)
	defer ccancel()
	seen, records := consumeEventIDs(t, cctx, kafkaAddr, total, func(seen map[string]int) bool {
		for d := range devices {
			for s := 1; s <= perDevice; s++ {
				if seen[eventID(d, s)] == 0 {
					return false
				}
			}
		}
		return true
	})
	var missing []string
	for d := range devices {
		for s := 1; s <= perDevice; s++ {
			if seen[eventID(d, s)] == 0 {
				missing = append(missing, eventID(d, s))
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d published messages missing from topic usage after %d kills, e.g. %v",
			len(missing), total, kills, missing[:min(10, len(missing))])
	}
	if len(seen) != total {
		t.Fatalf("topic usage holds %d distinct event ids, want exactly %d", len(seen), total)
	}
	// Duplicates are what was in flight at the kills, plus PUBACKs still unread in the
	// broker's socket buffer (Mosquitto reads one packet per connection per loop turn, so
	// under many publishers it falls behind; the kill's RST discards them). Unpaced
	// publishers make that tens of thousands. Same event ids, so harmless downstream.
	t.Logf("last mediator: %s", mediatorState(medListen))
	hist := map[int]int{}
	minSeq, maxSeq := perDevice, 0
	for d := range devices {
		for s := 1; s <= perDevice; s++ {
			if c := seen[eventID(d, s)]; c > 1 {
				hist[c]++
				minSeq, maxSeq = min(minSeq, s), max(maxSeq, s)
			}
		}
	}
	t.Logf("event ids seen n times (n: ids): %v, over seqs %d..%d", hist, minSeq, maxSeq)
	t.Logf("all %d event ids in topic usage after %d kills; %d records, %d duplicates (redelivered, same event_id), %s in all",
		total, kills, records, records-total, time.Since(began).Round(time.Millisecond))
}

func eventID(device, seq int) string { return fmt.Sprintf("mqtt:acme:dev-%d:%d", device, seq) }

// publishDevices publishes perDevice messages for every device d with d%of == shard,
// QoS 1, in windows of 200 unacknowledged publications, counting into published.
func publishDevices(mqttAddr string, shard, of, devices, perDevice int, published *atomic.Int64) error {
	opts := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(fmt.Sprintf("crash-pub-%d", shard)).
		SetAutoReconnect(false).SetWriteTimeout(10 * time.Second)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publisher %d connect: %v", shard, tok.Error())
	}
	defer cl.Disconnect(250)
	// Paced to about 1,500 msg/s per publisher, so the stream lasts ~7 s and every kill
	// lands in the middle of it whatever the machine's speed.
	const rate = 1500
	began, sent := time.Now(), 0
	var window []paho.Token
	flush := func() error {
		for _, tok := range window {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				return fmt.Errorf("publisher %d: %v", shard, tok.Error())
			}
		}
		published.Add(int64(len(window)))
		sent += len(window)
		window = window[:0]
		time.Sleep(time.Until(began.Add(time.Duration(sent) * time.Second / rate)))
		return nil
	}
	for s := 1; s <= perDevice; s++ {
		for d := shard; d < devices; d += of {
			payload := fmt.Sprintf(`{"seq":%d,"events":1,"bytes_up":%d}`, s, 100+s)
			window = append(window, cl.Publish(fmt.Sprintf("fleetmeter/acme/dev-%d/usage", d), 1, false, payload))
			if len(window) == 200 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// consumeEventIDs reads topic usage from the start until complete(seen) holds or ctx
// ends, returning how often each event id occurred and the record count.
func consumeEventIDs(t *testing.T, ctx context.Context, kafkaAddr string, want int, complete func(map[string]int) bool) (map[string]int, int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics("usage"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := make(map[string]int, want)
	var recs []record.Usage
	records := 0
	for {
		if len(seen) >= want && complete(seen) {
			return seen, records
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			t.Logf("consumer stopped: %v with %d distinct event ids", ctx.Err(), len(seen))
			return seen, records
		}
		fetches.EachRecord(func(r *kgo.Record) {
			recs, err = record.DecodeUsage(r.Value, recs[:0])
			if err != nil {
				t.Errorf("decode usage at partition %d offset %d: %v", r.Partition, r.Offset, err)
				return
			}
			for i := range recs {
				seen[recs[i].EventID]++
				records++
			}
		})
	}
}

// mediatorState reads the mediator's MQTT counters from /metrics, for the log.
func mediatorState(listen string) string {
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var parts []string
	for _, line := range strings.Split(string(body), "\n") {
		for _, name := range []string{"fleetmeter_mediator_received_total", "fleetmeter_mediator_accepted_total", "fleetmeter_mediator_in_flight"} {
			if strings.HasPrefix(line, name+`{source="mqtt"}`) {
				parts = append(parts, strings.TrimPrefix(strings.TrimPrefix(line, "fleetmeter_mediator_"), `{source="mqtt"}`))
			}
		}
	}
	return strings.Join(parts, ",")
}
