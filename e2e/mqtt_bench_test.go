package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/ingest"
	"fleetmeter/ingest/mqtt"
	"fleetmeter/kafka"
	"fleetmeter/record"
)

// ingestRig is a real Mosquitto and an in-process kfake with a real kafka.Producer,
// shared by the rounds of one measurement so raw and collector run against the same
// services in the same run.
type ingestRig struct {
	mqttAddr string
	producer *kafka.Producer
	rounds   int
}

func newIngestRig(tb testing.TB) *ingestRig {
	tb.Helper()
	mqttAddr := startMosquitto(tb)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(kc.Close)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = kc.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = prod.Close(context.Background()) })
	return &ingestRig{mqttAddr: mqttAddr, producer: prod}
}

// benchPayload is a 100-byte plain JSON usage message.
func benchPayload(seq int) []byte {
	p := fmt.Appendf(nil, `{"seq":%d,"bytes_up":1200,"bytes_down":34000,"events":3,"plmn":"262-01","rat":"NB-IoT","cell":"`, seq)
	for len(p) < 98 {
		p = append(p, 'c')
	}
	return append(p, `"}`...)
}

// queue creates the persistent session of clientID subscribed to prefix's topics and
// fills it with n QoS 1 messages while nobody is connected, so a drain measures the
// subscriber alone, not the publisher.
func (r *ingestRig) queue(tb testing.TB, clientID, prefix string, n int) {
	tb.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + r.mqttAddr).SetClientID(clientID).SetCleanSession(false)
	sub := paho.NewClient(opts)
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("session connect: %v", tok.Error())
	}
	if tok := sub.Subscribe(prefix+"/+/+/usage/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("session subscribe: %v", tok.Error())
	}
	sub.Disconnect(100)

	const publishers = 4
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := paho.NewClientOptions().AddBroker("tcp://" + r.mqttAddr).SetClientID(clientID + "-pub-" + strconv.Itoa(p))
			cl := paho.NewClient(opts)
			if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				errs <- tok.Error()
				return
			}
			defer cl.Disconnect(100)
			var window []paho.Token
			for i := p; i < n; i += publishers {
				window = append(window, cl.Publish(fmt.Sprintf("%s/acme/dev-%d/usage", prefix, i%500), 1, false, benchPayload(i)))
				if len(window) == 500 || i+publishers >= n {
					for _, tok := range window {
						if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
							errs <- fmt.Errorf("publish: %v", tok.Error())
							return
						}
					}
					window = window[:0]
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// drainRaw connects a plain paho subscriber (auto-ack, ordered: paho's defaults) to a
// queued session and returns how long it took to receive and acknowledge n messages.
func (r *ingestRig) drainRaw(tb testing.TB, clientID string, n int) time.Duration {
	tb.Helper()
	var got atomic.Int64
	all := make(chan struct{})
	opts := paho.NewClientOptions().AddBroker("tcp://" + r.mqttAddr).SetClientID(clientID).SetCleanSession(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			if got.Add(1) == int64(n) {
				close(all)
			}
		})
	began := time.Now()
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("raw connect: %v", tok.Error())
	}
	defer cl.Disconnect(100)
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		tb.Fatalf("raw subscriber got %d of %d", got.Load(), n)
	}
	return time.Since(began)
}

// countingSink passes calls on and closes all once n messages are acknowledged.
type countingSink struct {
	ingest.Sink
	n   int64
	got atomic.Int64
	all chan struct{}
}

func (s *countingSink) Enqueue(recs []record.Usage, done func(error)) {
	s.Sink.Enqueue(recs, func(err error) {
		done(err)
		if err == nil && s.got.Add(1) == s.n {
			close(s.all)
		}
	})
}

// drainCollector runs the MQTT collector on the real producer against a queued session and
// returns how long it took until Kafka acknowledged all n messages.
func (r *ingestRig) drainCollector(tb testing.TB, clientID, prefix string, n int, tune func(*mqtt.Config)) time.Duration {
	tb.Helper()
	cfg := mqtt.DefaultConfig()
	cfg.Brokers = []string{"tcp://" + r.mqttAddr}
	cfg.ClientID = clientID
	cfg.TopicPrefix = prefix
	if tune != nil {
		tune(&cfg)
	}
	sink := &countingSink{Sink: r.producer, n: int64(n), all: make(chan struct{})}
	c, err := mqtt.New(cfg, sink, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Progress every 250 ms, logged when the drain is slow: the machine is shared, and a
	// stall should be told apart from noise.
	var trace []int64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-sink.all:
			d := time.Since(began)
			if rate := float64(n) / d.Seconds(); rate < 5000 {
				tb.Logf("slow collector drain (%.0f msg/s); acknowledged every 250 ms: %v", rate, trace)
			}
			return d
		case <-tick.C:
			trace = append(trace, sink.got.Load())
		case <-time.After(2 * time.Minute):
			tb.Fatalf("collector got %d of %d acknowledged", sink.got.Load(), n)
		}
	}
}

func (r *ingestRig) drain(tb testing.TB, path string, n int) time.Duration {
	r.rounds++
	id := fmt.Sprintf("bench-%s-%d", path, r.rounds)
	prefix := fmt.Sprintf("b%d", r.rounds) // old sessions keep their subscriptions: a fresh prefix per round
	r.queue(tb, id, prefix, n)
	if path == "raw" {
		return r.drainRaw(tb, id, n)
	}
	return r.drainCollector(tb, id, prefix, n, nil)
}

// TestMQTTCollectorThroughput measures, in one run against the same Mosquitto and kfake,
// a plain paho subscriber and the collector path (Mosquitto -> collector -> kafka.Producer
// -> kfake -> PUBACK) draining a queued session of 100-byte QoS 1 messages, alternating
// rounds, and logs the medians and their ratio. FLEETMETER_MQTT_MIN_RATIO fails the test
// below a ratio (unset: report only, as the machine is shared and noisy).
func TestMQTTCollectorThroughput(t *testing.T) {
	n, rounds := 20000, 3
	if testing.Short() {
		n, rounds = 5000, 1
	}
	rig := newIngestRig(t)
	var raw, col []float64
	for range rounds {
		raw = append(raw, float64(n)/rig.drain(t, "raw", n).Seconds())
		col = append(col, float64(n)/rig.drain(t, "collector", n).Seconds())
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	rawMed, colMed := median(raw), median(col)
	ratio := colMed / rawMed
	t.Logf("QoS 1, 100 B, %d messages x %d rounds: raw paho %.0f msg/s (rounds %.0f), collector->Kafka %.0f msg/s (rounds %.0f), ratio %.2f",
		n, rounds, rawMed, raw, colMed, col, ratio)
	if s := os.Getenv("FLEETMETER_MQTT_MIN_RATIO"); s != "" {
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("FLEETMETER_MQTT_MIN_RATIO: %v", err)
		}
		if ratio < want {
			t.Fatalf("collector/raw ratio %.2f below %.2f", ratio, want)
		}
	}
}

// BenchmarkMQTTIngest: b.N queued 100-byte QoS 1 messages drained by a plain paho
// subscriber (path=raw) or by the collector into Kafka (path=collector). Run with a fixed
// count: go test -run '^$' -bench MQTTIngest -benchtime 20000x ./e2e/
func BenchmarkMQTTIngest(b *testing.B) {
	rig := newIngestRig(b)
	for _, path := range []string{"raw", "collector"} {
		b.Run("path="+path, func(b *testing.B) {
			b.StopTimer()
			rig.rounds++
			id := fmt.Sprintf("bench-%s-%d", path, rig.rounds)
			prefix := fmt.Sprintf("b%d", rig.rounds)
			rig.queue(b, id, prefix, b.N)
			b.ReportAllocs()
			b.StartTimer()
			var d time.Duration
			if path == "raw" {
				d = rig.drainRaw(b, id, b.N)
			} else {
				d = rig.drainCollector(b, id, prefix, b.N, nil)
			}
			b.ReportMetric(float64(b.N)/d.Seconds(), "msg/s")
		})
	}
}
