package sim

import (
	"context"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Sent is one message (or HTTP post, or CDR file) that was acknowledged.
type Sent struct {
	Device int
	// Of a mixed run (RunMixed): the protocol it went over and the tenant it was sent
	// for; Run sends over MQTT only (the zero Proto).
	Proto   Protocol
	Tenant  string
	Payload []byte
}

// RunConfig shapes a simulated run.
type RunConfig struct {
	Broker      string        // tcp://host:port
	TopicPrefix string        // fleetmeter
	Interval    time.Duration // per device, between messages
	Clients     int           // MQTT connections; devices are spread over them
	QoS         byte
	// Credentials, when set, gives each device its own connection, authenticated with
	// the username and password it returns for the device (Clients is then ignored).
	Credentials func(Device) (username, password string)
}

// Run publishes until ctx ends and returns every message the broker acknowledged, in
// per-device order. A publish that times out is retried with the same payload (the same
// sequence number, hence the same event_id), so the pipeline may see it twice but never
// counts it twice.
func (f *Fleet) Run(ctx context.Context, cfg RunConfig) ([]Sent, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 8
	}
	cfg.Clients = min(cfg.Clients, len(f.Devices))
	if cfg.Credentials != nil {
		cfg.Clients = len(f.Devices)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	var (
		mu   sync.Mutex
		sent []Sent
		wg   sync.WaitGroup
		errs = make(chan error, cfg.Clients)
	)
	// Once ctx ends, queued messages still go out (they are generated, so they count),
	// but a broker that stops acknowledging must not hold the run forever.
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	go func() {
		<-ctx.Done()
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case <-t.C:
			cancelDrain()
		case <-drainCtx.Done():
		}
	}()
	// Messages are generated centrally (the generator is not concurrency-safe), then each
	// client publishes its devices' messages in order.
	queues := make([]chan Sent, cfg.Clients)
	for k := range queues {
		queues[k] = make(chan Sent, 1024)
		opts := paho.NewClientOptions().AddBroker(cfg.Broker).
			SetClientID(fmt.Sprintf("fleetmeter-sim-%d-%d", time.Now().UnixNano(), k)).
			SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond)
		if cfg.Credentials != nil {
			user, pw := cfg.Credentials(f.Devices[k])
			opts.SetClientID(user).SetUsername(user).SetPassword(pw)
		}
		cl := paho.NewClient(opts)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("simulator: connect %s: %v", cfg.Broker, tok.Error())
		}
		wg.Add(1)
		go func(q <-chan Sent) {
			defer wg.Done()
			defer cl.Disconnect(250)
			failed := false
			for s := range q {
				if failed {
					continue // keep draining so the generator never blocks
				}
				topic := f.Topic(cfg.TopicPrefix, s.Device)
				for {
					tok := cl.Publish(topic, cfg.QoS, false, s.Payload)
					if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
						break
					}
					if drainCtx.Err() != nil {
						errs <- fmt.Errorf("simulator: publish %s: not acknowledged by the broker: %v", topic, tok.Error())
						failed = true
						break
					}
				}
				if failed {
					continue
				}
				mu.Lock()
				sent = append(sent, s)
				mu.Unlock()
			}
		}(queues[k])
	}
	seqs := make([]uint64, len(f.Devices))
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
loop:
	for {
		now := time.Now().UnixMilli()
		for i := range f.Devices {
			seqs[i]++
			queues[i%cfg.Clients] <- Sent{Device: i, Payload: f.Message(nil, i, seqs[i], now)}
		}
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	close(errs)
	return sent, <-errs
}
