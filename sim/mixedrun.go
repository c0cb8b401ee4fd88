package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// MixedRunConfig is where a mixed fleet (NewMixedFleet) sends, and how often.
type MixedRunConfig struct {
	MQTT        string // tcp://host:port of the MQTT broker
	TopicPrefix string
	QoS         byte
	// Credentials gives each MQTT device its own connection, authenticated with the
	// username and password it returns; nil: the MQTT devices share 8 connections.
	Credentials func(Device) (username, password string)
	CoAP        string                     // host:port on plain UDP: POST /usage/<tenant>/<device>
	HTTP        string                     // host:port: POST /v1/usage, JSON Lines
	HTTPKey     func(tenant string) string // the gateways' API key for a tenant
	CDRDir      string                     // the CDR collector's drop directory
	Interval    time.Duration              // one tick; a device reports every few ticks (its rhythm)
	// Retry is how long a message that is not acknowledged is retried, once ctx ended
	// (30 s if 0).
	Retry time.Duration
}

// RunMixed sends the fleet's ticks, one per Interval (or right after the previous one
// was acknowledged, when that took longer), each device over its own protocol, until ctx
// ends. It returns what was acknowledged (PUBACK, 2.04, 202, the file in the drop
// directory), tick by tick, so per device in order: MQTT and CoAP messages one Sent per
// message, an HTTP gateway's post one Sent (Device its first truck, Tenant its tenant),
// a tick's CDR file one Sent. A message that is not acknowledged is sent again, the same
// bytes (the same event ids), so the pipeline may see it twice but never counts it twice.
func (f *Fleet) RunMixed(ctx context.Context, cfg MixedRunConfig) ([]Sent, error) {
	if !f.mixed {
		return nil, errors.New("simulator: RunMixed needs a fleet of NewMixedFleet")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 30 * time.Second
	}
	// Once ctx ends the tick in flight still goes out, but a service that stops
	// acknowledging must not hold the run forever.
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	go func() {
		select {
		case <-ctx.Done():
		case <-drainCtx.Done():
			return
		}
		t := time.NewTimer(cfg.Retry)
		defer t.Stop()
		select {
		case <-t.C:
			cancelDrain()
		case <-drainCtx.Done():
		}
	}()
	s, err := f.dialMixed(cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	var sent []Sent
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for t := 0; ; t++ {
		b := f.Tick(t, time.Now())
		got, err := s.send(drainCtx, t, b)
		sent = append(sent, got...)
		if err != nil {
			return sent, err
		}
		select {
		case <-ctx.Done():
			return sent, nil
		case <-tick.C:
		}
	}
}

// mixedSender holds a mixed run's connections.
type mixedSender struct {
	f      *Fleet
	cfg    MixedRunConfig
	mqtt   map[int]paho.Client // by device (Credentials) or by device % 8
	shared bool
	coap   []*udpclient.Conn
	httpc  *http.Client
}

func (f *Fleet) dialMixed(cfg MixedRunConfig) (*mixedSender, error) {
	s := &mixedSender{f: f, cfg: cfg, mqtt: map[int]paho.Client{}, shared: cfg.Credentials == nil,
		httpc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	for i := range f.Devices {
		d := f.Devices[i]
		if d.Protocol != MQTT {
			continue
		}
		key := i
		if s.shared {
			key = len(s.mqtt)
			if key >= 8 {
				break
			}
		}
		opts := paho.NewClientOptions().AddBroker(cfg.MQTT).
			SetClientID(fmt.Sprintf("fleetmeter-sim-%d-%d", time.Now().UnixNano(), key)).
			SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond)
		if cfg.Credentials != nil {
			user, pw := cfg.Credentials(d)
			opts.SetClientID(user).SetUsername(user).SetPassword(pw)
		}
		cl := paho.NewClient(opts)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("simulator: mqtt connect %s: %v", cfg.MQTT, tok.Error())
		}
		s.mqtt[key] = cl
	}
	for range 4 {
		c, err := udp.Dial(cfg.CoAP)
		if err != nil {
			return nil, fmt.Errorf("simulator: coap %s: %w", cfg.CoAP, err)
		}
		s.coap = append(s.coap, c)
	}
	ok = true
	return s, nil
}

func (s *mixedSender) close() {
	for _, c := range s.mqtt {
		c.Disconnect(250)
	}
	for _, c := range s.coap {
		_ = c.Close()
	}
	s.httpc.CloseIdleConnections()
}

// retry calls send until it succeeds or ctx ends, a short pause between attempts.
func retry(ctx context.Context, what string, send func() error) error {
	for {
		err := send()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("simulator: %s: not acknowledged: %w", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// send sends tick t's batch over every protocol at once and returns what was
// acknowledged, in the batch's order.
func (s *mixedSender) send(ctx context.Context, t int, b Batch) ([]Sent, error) {
	f, cfg := s.f, s.cfg
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	okMQTT := make([]bool, len(b.MQTT))
	okCoAP := make([]bool, len(b.CoAP))
	okHTTP := make([]bool, len(b.HTTP))
	// MQTT: a goroutine per connection publishes its devices' messages in order.
	byConn := map[paho.Client][]int{}
	for j, m := range b.MQTT {
		key := m.Device
		if s.shared {
			key = m.Device % len(s.mqtt)
		}
		cl := s.mqtt[key]
		byConn[cl] = append(byConn[cl], j)
	}
	for cl, js := range byConn {
		wg.Go(func() {
			for _, j := range js {
				m := b.MQTT[j]
				topic := f.Topic(cfg.TopicPrefix, m.Device)
				err := retry(ctx, "mqtt publish "+topic, func() error {
					tok := cl.Publish(topic, cfg.QoS, false, m.Payload)
					if !tok.WaitTimeout(10 * time.Second) {
						return errors.New("no PUBACK in 10s")
					}
					return tok.Error()
				})
				if err != nil {
					fail(err)
					return
				}
				okMQTT[j] = true
			}
		})
	}
	// CoAP: confirmable POSTs, the meters spread over the sockets.
	for k, c := range s.coap {
		wg.Go(func() {
			for j := k; j < len(b.CoAP); j += len(s.coap) {
				m := b.CoAP[j]
				d := &f.Devices[m.Device]
				path := "/usage/" + d.Tenant + "/" + d.ID
				err := retry(ctx, "coap post "+path, func() error {
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					return PostCoAP(cctx, c, d, m.Payload)
				})
				if err != nil {
					fail(err)
					return
				}
				okCoAP[j] = true
			}
		})
	}
	// HTTP: the gateways post their trucks' JSON Lines, 4 at a time.
	sem := make(chan struct{}, 4)
	for j, p := range b.HTTP {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			err := retry(ctx, "http post", func() error {
				return PostGateway(ctx, s.httpc, cfg.HTTP, cfg.HTTPKey(p.Tenant), p.Body)
			})
			if err != nil {
				fail(err)
				return
			}
			okHTTP[j] = true
		})
	}
	// CDR: the tick's file lands in the drop directory as a CHF writes it: under a
	// temporary name, then renamed.
	okCDR := false
	if b.CDR != nil {
		if err := DropCDR(cfg.CDRDir, fmt.Sprintf("chf-sim-%08d.cdr", t), b.CDR); err != nil {
			fail(fmt.Errorf("simulator: %w", err))
		} else {
			okCDR = true
		}
	}
	wg.Wait()
	var sent []Sent
	for j, m := range b.MQTT {
		if okMQTT[j] {
			sent = append(sent, Sent{Device: m.Device, Proto: MQTT, Tenant: f.Devices[m.Device].Tenant, Payload: m.Payload})
		}
	}
	for j, m := range b.CoAP {
		if okCoAP[j] {
			sent = append(sent, Sent{Device: m.Device, Proto: CoAP, Tenant: f.Devices[m.Device].Tenant, Payload: m.Payload})
		}
	}
	for j, p := range b.HTTP {
		if okHTTP[j] {
			sent = append(sent, Sent{Device: p.Devices[0], Proto: HTTP, Tenant: p.Tenant, Payload: p.Body})
		}
	}
	if okCDR {
		sent = append(sent, Sent{Device: b.CDRDevices[0], Proto: CDR, Tenant: SliceTenant, Payload: b.CDR})
	}
	return sent, errors.Join(errs...)
}
