// Package mqtt is the MQTT collector: it subscribes to <prefix>/<tenant>/<device>/usage
// (and .../usage/<format>), normalizes each payload to usage.v1 and acknowledges a QoS 1/2
// message to the broker only after Kafka acknowledged its records. The session is
// persistent (clean session off), so whatever was not acknowledged before a crash is
// redelivered on reconnect. README.md describes topics, options and broker settings.
package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// Collector is a running MQTT collector.
type Collector struct {
	cfg     Config
	sink    ingest.Sink
	metrics *ingest.Metrics
	logger  *slog.Logger

	src ingest.SourceMetrics // resolved once: the handler runs per message

	// mu guards parser and recs. Paho runs one handler goroutine per connection, so it is
	// uncontended; it is held anyway because a reconnect starts a new handler goroutine.
	mu     sync.Mutex
	parser payload.Parser
	recs   []record.Usage

	// slots bounds the messages in flight (cap MaxInFlight); acks carries the sink's
	// answers to the acker goroutine. It has the same capacity, and a message holds a slot
	// until its answer is taken, so a sink callback never blocks on it.
	slots    chan struct{}
	acks     chan ackItem
	stopping chan struct{} // closed when Run's context ends: handlers stop waiting for slots
	stopOnce sync.Once
	resync   chan struct{} // cap 1: a refused message needs a reconnect to be redelivered

	// adm admits (tenant, device) through the device registry, if any. watchFile: the
	// registry came from cfg.RegistryFile and Run reloads it.
	adm       registry.Admitter
	watchFile bool

	healthy atomic.Bool
	sinkLog throttle
}

// ackItem is the sink's answer for one message.
type ackItem struct {
	msg      paho.Message
	received time.Time
	records  int
	err      error
}

// New builds a collector; Run connects it. With cfg.RegistryFile (and no cfg.Registry)
// the registry is loaded here, so a broken file fails start-up.
func New(cfg Config, sink ingest.Sink, metrics *ingest.Metrics, logger *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = ingest.NewMetrics(nil)
	}
	live, watchFile := cfg.Registry, false
	if live == nil && cfg.RegistryFile != "" {
		l, err := registry.LoadLive(cfg.RegistryFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.registry_file: %w", err)
		}
		live, watchFile = l, true
	}
	const src = record.SourceMQTT
	c := &Collector{cfg: cfg, sink: sink, metrics: metrics, logger: logger, watchFile: watchFile,
		src:    metrics.For(src),
		parser: payload.Parser{Limits: payload.DefaultLimits()},
		slots:  make(chan struct{}, cfg.MaxInFlight), acks: make(chan ackItem, cfg.MaxInFlight),
		stopping: make(chan struct{}), resync: make(chan struct{}, 1)}
	c.adm.SetLive(live)
	if r := live.Load(); r != nil {
		c.adm.Prepare(r)
	}
	return c, nil
}

// Registry is the device registry in force (nil: none).
func (c *Collector) Registry() *registry.Registry { return c.adm.Live().Load() }

// Healthy reports whether the broker connection and subscription are up.
func (c *Collector) Healthy() bool { return c.healthy.Load() }

// Run connects, subscribes and serves until ctx ends. Paho reconnects with exponential
// backoff (1s doubling to MaxReconnectInterval) and each connect resubscribes. Run itself
// starts a new session connection only when the sink refused a message, because an MQTT
// 3.1.1 broker redelivers an unacknowledged message only on reconnect.
func (c *Collector) Run(ctx context.Context) error {
	opts, err := c.clientOptions(ctx)
	if err != nil {
		return err
	}
	ackerDone := make(chan struct{})
	ackerStop := make(chan struct{})
	go c.acker(ackerStop, ackerDone)
	defer func() { close(ackerStop); <-ackerDone }()
	if c.watchFile {
		watchCtx, stopWatch := context.WithCancel(ctx)
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			_ = c.adm.Live().Watch(watchCtx, c.cfg.RegistryFile, c.cfg.RegistryReload, func(r *registry.Registry) {
				c.adm.Prepare(r) // build the lookup here rather than on the next message
				c.logger.Info("mqtt: device registry reloaded", "file", r.File(), "devices", r.Len(),
					"strict", r.Strict(), "stamp", r.Stamp())
			}, func(err error) {
				c.logger.Error("mqtt: device registry", "err", err)
			})
		}()
		defer func() { stopWatch(); <-watchDone }()
	}

	backoff, lastResync := time.Second, time.Time{}
	for {
		cl := paho.NewClient(opts)
		cl.Connect() // with ConnectRetry the token completes only on success; retries run in the background
		select {
		case <-ctx.Done():
			c.healthy.Store(false)
			// Shutdown: handlers waiting for a slot give up (their messages stay unacknowledged),
			// then disconnect without acknowledging what is in flight: the broker keeps those
			// messages in the persistent session and redelivers them.
			c.stopOnce.Do(func() { close(c.stopping) })
			cl.Disconnect(250)
			return nil
		case <-c.resync:
			c.healthy.Store(false)
			if time.Since(lastResync) > 2*c.cfg.MaxReconnectInterval {
				backoff = time.Second // the last trouble is long past
			}
			lastResync = time.Now()
			c.logger.Warn("mqtt: reconnecting so the broker redelivers messages Kafka refused", "after", backoff)
			cl.Disconnect(0)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				c.stopOnce.Do(func() { close(c.stopping) })
				return nil
			}
			backoff = min(2*backoff, c.cfg.MaxReconnectInterval)
		}
	}
}

func (c *Collector) clientOptions(ctx context.Context) (*paho.ClientOptions, error) {
	opts := paho.NewClientOptions()
	for _, b := range c.cfg.Brokers {
		opts.AddBroker(b)
	}
	opts.SetClientID(c.cfg.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		// Ordered delivery: the handler only parses and enqueues, acknowledgements follow
		// asynchronously, so order per device is kept without serializing on Kafka acks.
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(c.cfg.MaxReconnectInterval).
		SetConnectTimeout(c.cfg.ConnectTimeout).
		SetKeepAlive(c.cfg.KeepAlive).
		SetUsername(c.cfg.Username).
		SetPassword(c.cfg.Password).
		// No routes: every message goes to the default handler. Messages the broker
		// redelivers from the persistent session arrive before the subscription is renewed,
		// and shared-subscription topics match no route pattern anyway.
		SetDefaultPublishHandler(c.handle)
	if buffered(c.cfg.Brokers) {
		opts.SetCustomOpenConnectionFn(openBuffered)
	}
	if c.cfg.CAFile != "" || c.cfg.CertFile != "" || c.cfg.InsecureTLS {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	opts.SetOnConnectHandler(func(cl paho.Client) { c.subscribe(ctx, cl) })
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
		c.healthy.Store(false)
		c.logger.Warn("mqtt connection lost; reconnecting with backoff", "err", err)
	})
	opts.SetReconnectingHandler(func(_ paho.Client, o *paho.ClientOptions) {
		c.logger.Info("mqtt reconnecting", "brokers", c.cfg.Brokers)
	})
	return opts, nil
}

// subscribe runs on each (re)connect, on its own goroutine, until the broker granted the
// subscription or the connection is gone; only then is the collector healthy.
func (c *Collector) subscribe(ctx context.Context, cl paho.Client) {
	wait := time.Second
	for ctx.Err() == nil && cl.IsConnectionOpen() {
		err := c.trySubscribe(cl)
		if err == nil {
			c.healthy.Store(true)
			c.logger.Info("mqtt subscribed", "filter", c.cfg.Filter(), "qos", c.cfg.QoS)
			return
		}
		c.logger.Error("mqtt subscribe failed; retrying", "filter", c.cfg.Filter(), "err", err, "after", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(2*wait, c.cfg.MaxReconnectInterval)
	}
}

func (c *Collector) trySubscribe(cl paho.Client) error {
	tok := cl.Subscribe(c.cfg.Filter(), c.cfg.QoS, nil)
	if !tok.WaitTimeout(c.cfg.ConnectTimeout) {
		return fmt.Errorf("no SUBACK within %s", c.cfg.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	for _, granted := range st.Result() {
		if granted == 0x80 {
			return errors.New("broker refused the subscription (SUBACK 0x80): check its ACL for this user")
		}
		if granted < c.cfg.QoS {
			c.logger.Warn("mqtt broker granted a lower QoS than asked: messages are not redelivered after a crash",
				"asked", c.cfg.QoS, "granted", granted)
		}
	}
	return nil
}

func (c *Collector) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{InsecureSkipVerify: c.cfg.InsecureTLS, MinVersion: tls.VersionTLS12} //nolint:gosec // operator's explicit choice
	if c.cfg.CAFile != "" {
		pem, err := os.ReadFile(c.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.ca_file: no certificates in %s", c.cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.cfg.CertFile, c.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.cert_file, mqtt.key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// acker takes the sink's answers off the Kafka client's callback goroutine and
// acknowledges to the broker, which may block on the network.
func (c *Collector) acker(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case a := <-c.acks:
			c.finish(a)
		case <-stop:
			return
		}
	}
}

func (c *Collector) finish(a ackItem) {
	<-c.slots
	c.src.InFlight.Dec()
	if a.err != nil {
		// Not acknowledged: the broker redelivers it once the session reconnects.
		if ok, n := c.sinkLog.allow(time.Now(), 5*time.Second); ok {
			c.logger.Error("mqtt: sink refused messages, leaving them unacknowledged",
				"topic", a.msg.Topic(), "err", a.err, "refused_since_last_log", n)
		}
		select {
		case c.resync <- struct{}{}:
		default:
		}
		return
	}
	c.src.Accepted.Add(float64(a.records))
	c.src.AckLatency.Observe(time.Since(a.received).Seconds())
	a.msg.Ack() // a no-op for QoS 0
}

// throttle lets a repeated log line through at most once per interval.
type throttle struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether to log now, and how many calls were suppressed since the last.
func (t *throttle) allow(now time.Time, every time.Duration) (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.suppressed++
	if now.Before(t.next) {
		return false, 0
	}
	n := t.suppressed
	t.suppressed, t.next = 0, now.Add(every)
	return true, n
}
