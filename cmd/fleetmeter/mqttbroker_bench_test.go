package main

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"fleetmeter/record"
)

// ackSink acknowledges at once: the benchmark measures the broker, not Kafka.
type ackSink struct{}

func (ackSink) Enqueue(_ []record.Usage, done func(error))            { done(nil) }
func (ackSink) EnqueueRejects(_ []record.Rejection, done func(error)) { done(nil) }

// BenchmarkEmbeddedBrokerQoS1 publishes QoS 1 messages from 8 devices, each keeping up
// to 100 unacknowledged, to the embedded broker (auth, ACL, parse, hand-over, ordered
// PUBACK) and to a bare mochi broker that acknowledges on receipt and routes nowhere.
//
//	go test -run '^$' -bench EmbeddedBroker ./cmd/fleetmeter/
func BenchmarkEmbeddedBrokerQoS1(b *testing.B) {
	const devices, window = 8, 100
	var pairs []string
	for d := range devices {
		pairs = append(pairs, fmt.Sprintf("acme/dev-%d", d))
	}
	reg := testDevices(b, pairs...)
	for _, path := range []string{"mochi", "ingest"} {
		b.Run("path="+path, func(b *testing.B) {
			var brokerAddr string
			if path == "mochi" {
				srv := mochi.New(&mochi.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
				_ = srv.AddHook(new(auth.AllowHook), nil)
				tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
				if err := srv.AddListener(tcp); err != nil {
					b.Fatal(err)
				}
				if err := srv.Serve(); err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				brokerAddr = tcp.Address()
			} else {
				br, err := startBroker(brokerConfig{Addr: "127.0.0.1:0", TopicPrefix: "fleetmeter", Devices: reg.ByMQTTUsername,
					Sink: ackSink{}, MaxInFlight: 20000, MaxInFlightPerClient: 1000})
				if err != nil {
					b.Fatal(err)
				}
				defer br.Close()
				brokerAddr = br.Addr()
			}
			clients := make([]paho.Client, devices)
			for d := range devices {
				opts := paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID(fmt.Sprintf("acme.dev-%d", d)).
					SetUsername(fmt.Sprintf("acme.dev-%d", d)).SetPassword(fmt.Sprintf("pw-dev-%d", d)).SetAutoReconnect(false)
				clients[d] = paho.NewClient(opts)
				if tok := clients[d].Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				defer clients[d].Disconnect(0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			began := time.Now()
			var wg sync.WaitGroup
			for d := range devices {
				n := b.N / devices
				if d < b.N%devices {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					topic := fmt.Sprintf("fleetmeter/acme/dev-%d/usage", d)
					var toks []paho.Token
					for s := range n {
						toks = append(toks, clients[d].Publish(topic, 1, false, fmt.Sprintf(`{"seq":%d,"events":1,"bytes_up":100}`, s+1)))
						if len(toks) == window || s == n-1 {
							for _, tok := range toks {
								if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
									b.Error(tok.Error())
									return
								}
							}
							toks = toks[:0]
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "msgs/s")
		})
	}
}
