package coap

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/kafka"
)

// BenchmarkCoAPKafka is BenchmarkCoAP end to end: the collector's sink is the real Kafka
// producer (package kafka, default configuration) on an in-process kfake broker, so a
// device gets its 2.04 only after Kafka acknowledged its record. Beside it, bare go-coap
// answering 2.04 at once. The two take turns in rounds of a few thousand requests, so
// both see the same machine load: ratio is the collector's req/s over the bare server's,
// cpu-ratio the same from the CPU time the process spent per request (clients, servers,
// the broker, GC), which other load on the machine moves much less. records/message is
// how many records the sink put in a Kafka message. b.N counts the requests of each.
//
// A third server takes its turn too: bare go-coap whose handler produces the request's
// body as it is to the same kfake broker with a bare franz-go client (acks=all, keyed by
// the path, kgo's own batching while a request is in flight) and answers 2.04 from the produce callback: the least a
// Go service can do to acknowledge a device only after Kafka has its message.
// ratio-kafka and cpu-ratio-kafka compare the collector with it, kafka-req/s is its rate.
//
// Each client waits for its answer before it sends again, so with few clients the
// collector's rate is clients / acknowledgement latency. The sink sends what it holds
// half a millisecond after the first record when no message is in flight, else when the
// last in flight is acknowledged, so that latency is a broker round trip and what queued
// behind it (kafka.linger bounds the wait), not the linger:
// 64 clients measure the latency, 256 the capacity. A fleet is many devices each
// sending now and then; 256 concurrent devices are still a small one.
//
//	go test -run '^$' -bench CoAPKafka -benchtime 20000x -count 5 ./ingest/coap/
func BenchmarkCoAPKafka(b *testing.B) {
	for _, clients := range []int{benchClients, 128, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchCoAPKafka(b, clients) })
	}
}

func benchCoAPKafka(b *testing.B, clients int) {
	l, err := coapNet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := udp.NewServer(options.WithHandlerFunc(func(w *responseWriter, _ *pool.Message) {
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	}))
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	col, prod, brokers := startKafkaCollector(b)
	rawKafka := startRawKafkaServer(b, brokers)
	loads := []*coapLoad{newCoAPLoad(b, col.Addr(), clients), newCoAPLoad(b, l.LocalAddr().String(), clients),
		newCoAPLoad(b, rawKafka, clients)}
	wall := make([]time.Duration, len(loads))
	cpu := make([]time.Duration, len(loads))
	round := 32 * clients
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += round {
		k := min(round, b.N-n)
		for i, ld := range loads {
			c0 := processCPU(b)
			wall[i] += ld.run(k)
			cpu[i] += processCPU(b) - c0
		}
	}
	b.StopTimer()
	for i, ld := range loads {
		if f := ld.failed.Load(); f > 0 {
			b.Fatalf("%s: %d requests failed, the first: %v", []string{"collector", "bare", "bare+kafka"}[i], f, ld.first.Load())
		}
	}
	// Records per Kafka message: how much the sink batched.
	if err := prod.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), kafka.TopicUsage)
	if err != nil {
		b.Fatal(err)
	}
	var msgs int64
	ends.Each(func(o kadm.ListedOffset) { msgs += o.Offset })
	b.ReportMetric(float64(b.N)/float64(max(msgs, 1)), "records/message")
	b.ReportMetric(float64(b.N)/wall[0].Seconds(), "req/s")
	b.ReportMetric(float64(b.N)/wall[1].Seconds(), "bare-req/s")
	b.ReportMetric(wall[1].Seconds()/wall[0].Seconds(), "ratio")
	b.ReportMetric(cpu[1].Seconds()/cpu[0].Seconds(), "cpu-ratio")
	b.ReportMetric(float64(b.N)/wall[2].Seconds(), "kafka-req/s")
	b.ReportMetric(wall[2].Seconds()/wall[0].Seconds(), "ratio-kafka")
	b.ReportMetric(cpu[2].Seconds()/cpu[0].Seconds(), "cpu-ratio-kafka")
}

// startRawKafkaServer starts bare go-coap answering 2.04 once a bare franz-go client has
// produced the request's body to topic raw (8 partitions, keyed by the path) of brokers.
// It returns the server's address.
func startRawKafkaServer(b *testing.B, brokers []string) string {
	const topic = "raw"
	// Linger 0: kgo sends at once when nothing is in flight and batches what comes
	// meanwhile (its default, 10 ms, would make this baseline wait on a timer).
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 8, 1, nil, topic); err != nil {
		b.Fatal(err)
	}
	l, err := coapNet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := udp.NewServer(options.WithHandlerFunc(func(w *responseWriter, r *pool.Message) {
		path, _ := r.Path()
		body, _ := r.ReadBody()
		done := make(chan error, 1)
		cl.Produce(r.Context(), &kgo.Record{Key: []byte(path), Value: body}, func(_ *kgo.Record, err error) { done <- err })
		code := codes.Changed
		if <-done != nil {
			code = codes.ServiceUnavailable
		}
		_ = w.SetResponse(code, message.TextPlain, nil)
	}))
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(srv.Stop)
	return l.LocalAddr().String()
}

// startKafkaCollector starts an in-process kfake broker, the Kafka producer (default
// configuration) on it and the collector on the producer, all stopped at the end of b.
// It returns the collector, the producer and the broker addresses.
func startKafkaCollector(b *testing.B) (*Collector, *kafka.Producer, []string) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = cluster.ListenAddrs()
	ctx, cancel := context.WithCancel(context.Background())
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prod.Close(context.Background()) })
	col, err := New(devConfig(), prod, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- col.Run(ctx) }()
	<-col.Ready()
	b.Cleanup(func() { cancel(); <-done }) // runs first: the collector stops before the producer
	return col, prod, kcfg.Brokers
}

// coapLoad is go-coap clients, one socket each, posting a JSON usage message as device
// dev-NN of tenant bench.
type coapLoad struct {
	clients []*udpClient.Conn
	bodies  [][]byte
	paths   []string
	failed  atomic.Int64
	first   atomic.Value // the first failure
}

func newCoAPLoad(b *testing.B, addr string, clients int) *coapLoad {
	ld := &coapLoad{}
	ts := time.Now().Add(-time.Hour).UnixMilli()
	for i := range clients {
		cc, err := udp.Dial(addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		ld.clients = append(ld.clients, cc)
		ld.bodies = append(ld.bodies, fmt.Appendf(nil, `{"seq":%d,"ts":%d,"bytes_up":1200,"bytes_down":34000,"events":3,"plmn":"262-01","rat":"NB-IoT"}`, i, ts))
		ld.paths = append(ld.paths, fmt.Sprintf("/usage/bench/dev-%03d", i))
	}
	return ld
}

// run posts n messages and returns how long they took, the last answer included.
func (ld *coapLoad) run(n int) time.Duration {
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i, cc := range ld.clients {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := cc.Post(ctx, ld.paths[i], message.AppJSON, bytes.NewReader(ld.bodies[i]))
				cancel()
				if err != nil || resp.Code() != codes.Changed {
					if ld.failed.Add(1) == 1 {
						if err == nil {
							err = fmt.Errorf("answered %v", resp.Code())
						}
						ld.first.Store(err.Error())
					}
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
