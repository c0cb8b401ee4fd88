package coap

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"fleetmeter/record"
)

// ackSink acknowledges at once: the benchmark measures the collector, not Kafka.
type ackSink struct{ n atomic.Int64 }

func (s *ackSink) Enqueue(recs []record.Usage, done func(error)) {
	s.n.Add(int64(len(recs)))
	done(nil)
}
func (s *ackSink) EnqueueRejects(_ []record.Rejection, done func(error)) { done(nil) }

const benchClients = 64 // one socket per simulated device (go-coap scans an endpoint's whole response cache per datagram: see README.md)

// BenchmarkCoAP: confirmable POSTs of a ~100 B JSON usage message from 64 go-coap
// clients, one socket each, against the collector (parse, sink, 2.04 after the ack)
// and against a bare go-coap server whose handler only answers 2.04, in the same run.
// impl=fleetmeter's sink acknowledges at once; impl=kafka's is the real Kafka producer
// on an in-process kfake broker (BenchmarkCoAPKafka runs it in rounds beside the bare
// server and reports the ratio).
//
//	go test -run '^$' -bench CoAP -benchtime 20000x -count 3 ./ingest/coap/
func BenchmarkCoAP(b *testing.B) {
	b.Run("impl=raw", func(b *testing.B) {
		l, err := coapNet.NewListenUDP("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := udp.NewServer(options.WithHandlerFunc(func(w *responseWriter, _ *pool.Message) {
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		}))
		go func() { _ = srv.Serve(l) }()
		defer srv.Stop()
		benchPost(b, l.LocalAddr().String(), nil)
	})
	b.Run("impl=fleetmeter", func(b *testing.B) {
		sink := &ackSink{}
		col, err := New(devConfig(), sink, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- col.Run(ctx) }()
		<-col.Ready()
		defer func() { cancel(); <-done }()
		benchPost(b, col.Addr(), func() int64 { return sink.n.Load() })
	})
	b.Run("impl=kafka", func(b *testing.B) {
		col, _, _ := startKafkaCollector(b)
		benchPost(b, col.Addr(), nil)
	})
}

func benchPost(b *testing.B, addr string, produced func() int64) {
	clients := make([]*udpClient.Conn, benchClients)
	bodies := make([][]byte, benchClients)
	ts := time.Now().Add(-time.Hour).UnixMilli()
	for i := range clients {
		cc, err := udp.Dial(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		clients[i] = cc
		bodies[i] = fmt.Appendf(nil, `{"seq":%d,"ts":%d,"bytes_up":1200,"bytes_down":34000,"events":3,"plmn":"262-01","rat":"NB-IoT"}`, i, ts)
	}
	var next atomic.Int64
	var failed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			path := fmt.Sprintf("/usage/bench/dev-%02d", i)
			for next.Add(1) <= int64(b.N) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := clients[i].Post(ctx, path, message.AppJSON, bytes.NewReader(bodies[i]))
				cancel()
				if err != nil || resp.Code() != codes.Changed {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, b.N)
	}
	if produced != nil && produced() != int64(b.N) {
		b.Fatalf("sink got %d records for %d requests", produced(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}

// BenchmarkNewPeer: one confirmable POST /usage without an identity (answered 4.01) from
// each of b.N fresh UDP sockets, 16 at a time: what a datagram from an unknown address
// costs, the flood case. Reports peers/s and what is still held at the end per peer
// (goroutines, heap bytes): go-coap keeps a session per address, bounded by
// max_unverified_sessions (1000 by default).
//
//	go test -run '^$' -bench NewPeer -benchtime 20000x ./ingest/coap/
func BenchmarkNewPeer(b *testing.B) {
	col := start(b, devConfig(), &recSink{})
	pkt := rawPOST(b, message.Confirmable, 1, []byte{1}, "/usage", message.AppJSON, []byte(`{}`))
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	var next, unanswered atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			buf := make([]byte, 256)
			for next.Add(1) <= int64(b.N) {
				conn, err := net.Dial("udp", col.Addr())
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = conn.Write(pkt)
				_ = conn.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := conn.Read(buf); err != nil {
					unanswered.Add(1)
				}
				_ = conn.Close()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "peers/s")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "held-goroutines/peer")
	b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/float64(b.N), "held-B/peer")
	b.ReportMetric(float64(unanswered.Load()), "unanswered")
}
