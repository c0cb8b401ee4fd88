// Package mqtt is the MQTT collector: it subscribes to <prefix>/<tenant>/<device>/usage,
// normalizes each payload to usage.v1 and acknowledges a QoS 1/2 message to the broker
// only after Kafka acknowledged its records. The session is persistent (clean session
// off), so whatever was not acknowledged before a crash is redelivered on reconnect.
package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/record"
)

// Config of the MQTT collector.
type Config struct {
	Enabled     bool     `yaml:"enabled"`
	Brokers     []string `yaml:"brokers"`      // tcp://host:1883, ssl://host:8883
	ClientID    string   `yaml:"client_id"`    // stable: the persistent session hangs on it
	TopicPrefix string   `yaml:"topic_prefix"` // topics are <prefix>/<tenant>/<device>/usage
	SharedGroup string   `yaml:"shared_group"` // non-empty: subscribe via $share/<group>/ to split load
	QoS         byte     `yaml:"qos"`
	Username    string   `yaml:"username"`
	Password    string   `yaml:"password"`
	CAFile      string   `yaml:"ca_file"`
	InsecureTLS bool     `yaml:"insecure_tls"`
}

// DefaultConfig returns the collector defaults.
func DefaultConfig() Config {
	return Config{Brokers: []string{"tcp://127.0.0.1:1883"}, ClientID: "fleetmeter-mediator",
		TopicPrefix: "fleetmeter", QoS: 1}
}

// Validate reports every problem, naming the key.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("mqtt.brokers: at least one broker URL is required"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("mqtt.client_id: required (the persistent session is bound to it)"))
	}
	if c.QoS > 2 {
		errs = append(errs, fmt.Errorf("mqtt.qos: must be 0, 1 or 2, got %d", c.QoS))
	}
	if c.TopicPrefix == "" || strings.ContainsAny(c.TopicPrefix, "+#") {
		errs = append(errs, fmt.Errorf("mqtt.topic_prefix: must be non-empty without wildcards, got %q", c.TopicPrefix))
	}
	return errors.Join(errs...)
}

// Filter is the subscription filter the config implies.
func (c Config) Filter() string {
	f := c.TopicPrefix + "/+/+/usage"
	if c.SharedGroup != "" {
		f = "$share/" + c.SharedGroup + "/" + f
	}
	return f
}

// Collector is a running MQTT collector.
type Collector struct {
	cfg     Config
	sink    ingest.Sink
	metrics *ingest.Metrics
	logger  *slog.Logger
	parser  payload.Parser // used only by paho's single ordered handler goroutine
	recs    []record.Usage
	healthy atomic.Bool
}

// New builds a collector; Run connects it.
func New(cfg Config, sink ingest.Sink, metrics *ingest.Metrics, logger *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = ingest.NewMetrics(nil)
	}
	return &Collector{cfg: cfg, sink: sink, metrics: metrics, logger: logger,
		parser: payload.Parser{Limits: payload.DefaultLimits()}}, nil
}

// Healthy reports whether the broker connection and subscription are up.
func (c *Collector) Healthy() bool { return c.healthy.Load() }

// Run connects, subscribes and serves until ctx ends. Paho reconnects with backoff on
// its own; each (re)connect resubscribes.
func (c *Collector) Run(ctx context.Context) error {
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
		SetMaxReconnectInterval(30 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetUsername(c.cfg.Username).
		SetPassword(c.cfg.Password).
		// Messages the broker redelivers from the persistent session can arrive before the
		// subscription is renewed; the default handler catches them (and shared-subscription
		// topics, which no route pattern matches).
		SetDefaultPublishHandler(c.handle)
	if c.cfg.CAFile != "" || c.cfg.InsecureTLS {
		tc, err := c.tlsConfig()
		if err != nil {
			return err
		}
		opts.SetTLSConfig(tc)
	}
	opts.SetOnConnectHandler(func(cl paho.Client) {
		tok := cl.Subscribe(c.cfg.Filter(), c.cfg.QoS, nil)
		if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
			c.healthy.Store(true)
			c.logger.Info("mqtt subscribed", "filter", c.cfg.Filter(), "qos", c.cfg.QoS)
			return
		}
		c.logger.Error("mqtt subscribe failed", "filter", c.cfg.Filter(), "err", tok.Error())
		cl.Disconnect(0) // reconnect logic retries the whole session
	})
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
		c.healthy.Store(false)
		c.logger.Warn("mqtt connection lost", "err", err)
	})
	cl := paho.NewClient(opts)
	cl.Connect() // with ConnectRetry the token completes only on success; retries run in the background
	<-ctx.Done()
	c.healthy.Store(false)
	// Disconnect without acknowledging what is still in flight: the broker keeps those
	// messages in the persistent session and redelivers them.
	cl.Disconnect(250)
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
	return tc, nil
}

// handle runs on paho's ordered router goroutine for every message.
func (c *Collector) handle(_ paho.Client, m paho.Message) {
	const src = record.SourceMQTT
	received := time.Now()
	c.metrics.Received.WithLabelValues(src).Inc()
	c.metrics.InFlight.WithLabelValues(src).Inc()
	ack := func(err error) {
		c.metrics.InFlight.WithLabelValues(src).Dec()
		if err != nil {
			// Not acknowledged: the broker redelivers it with the session.
			c.logger.Error("mqtt: sink refused message, leaving it unacknowledged", "topic", m.Topic(), "err", err)
			return
		}
		c.metrics.AckLatency.WithLabelValues(src).Observe(time.Since(received).Seconds())
		m.Ack()
	}
	tenant, device, ok := c.parseTopic(m.Topic())
	if !ok {
		c.reject(record.Rejection{Source: src, Reason: "bad_topic",
			Detail: "topic " + m.Topic() + " is not " + c.cfg.TopicPrefix + "/<tenant>/<device>/usage",
			Raw:    m.Payload(), Received: received.UnixMilli()}, ack)
		return
	}
	id := payload.Identity{Tenant: tenant, Device: device, Source: src}
	var err error
	c.recs, err = c.parser.Parse(payload.KindAuto, m.Payload(), id, received.UnixMilli(), c.recs[:0])
	if err != nil {
		reason := "bad_payload"
		var inv *record.InvalidError
		if errors.As(err, &inv) {
			reason = inv.Reason
		}
		c.reject(record.Rejection{Source: src, Tenant: tenant, Device: device, Reason: reason,
			Detail: err.Error(), Raw: m.Payload(), Received: received.UnixMilli()}, ack)
		return
	}
	n := len(c.recs)
	c.sink.Enqueue(c.recs, func(err error) {
		if err == nil {
			c.metrics.Accepted.WithLabelValues(src).Add(float64(n))
		}
		ack(err)
	})
}

func (c *Collector) reject(r record.Rejection, ack func(error)) {
	c.metrics.Rejected.WithLabelValues(r.Source, r.Reason).Inc()
	c.sink.EnqueueRejects([]record.Rejection{r}, ack)
}

// parseTopic splits <prefix>/<tenant>/<device>/usage.
func (c *Collector) parseTopic(topic string) (tenant, device string, ok bool) {
	rest, found := strings.CutPrefix(topic, c.cfg.TopicPrefix+"/")
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, "/usage")
	if !found {
		return "", "", false
	}
	tenant, device, found = strings.Cut(rest, "/")
	if !found || tenant == "" || device == "" || strings.Contains(device, "/") {
		return "", "", false
	}
	return tenant, device, true
}
