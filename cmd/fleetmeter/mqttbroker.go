package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
)

// brokerConfig configures the standalone pipeline's embedded MQTT broker (mochi-mqtt).
// It is an ingest endpoint, not a message bus: devices authenticate with the registry's
// MQTT credentials, may publish only to their own usage topics and read nothing, and
// each message goes from the broker straight to the Kafka sink (mqttingest.go) rather
// than through a subscriber.
type brokerConfig struct {
	Addr        string // host:port to listen on; port 0 picks a free one
	TopicPrefix string // devices publish to <prefix>/<tenant>/<device>/usage[/<format>]
	// Devices finds the device an MQTT username belongs to.
	Devices func(username string) (registry.Device, bool)
	// Reserved are client ids no device may connect with (the mediator's).
	Reserved []string
	Sink     ingest.Sink
	// MaxInFlight bounds the messages handed to the sink and not yet acknowledged, over
	// all connections; MaxInFlightPerClient bounds them per connection. At a bound the
	// broker stops reading the connection: TCP pushes back on the device, nothing is
	// dropped.
	MaxInFlight          int
	MaxInFlightPerClient int
	Registerer           prometheus.Registerer // nil: metrics not registered
	Logger               *slog.Logger
}

func (c brokerConfig) validate() error {
	var errs []error
	if c.Devices == nil {
		errs = append(errs, errors.New("embedded mqtt: no device directory"))
	}
	if c.Sink == nil {
		errs = append(errs, errors.New("embedded mqtt: no sink"))
	}
	if c.MaxInFlight < 1 || c.MaxInFlightPerClient < 1 {
		errs = append(errs, fmt.Errorf("embedded mqtt: in-flight bounds must be >= 1, got %d and %d",
			c.MaxInFlight, c.MaxInFlightPerClient))
	}
	return errors.Join(errs...)
}

// embeddedBroker is the running broker.
type embeddedBroker struct {
	srv       *mochi.Server
	tcp       *listeners.TCP
	ingest    *ingestHook
	closing   *atomic.Bool
	closeOnce sync.Once
}

// startBroker listens and serves until Run's context ends (or Close).
func startBroker(cfg brokerConfig) (*embeddedBroker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.RetainAvailable = 0 // nothing is routed, so nothing is retained either
	// A device message is a few hundred bytes; a payload of the parser's 4,096 records
	// fits. A larger packet closes the connection before it is read.
	caps.MaximumPacketSize = 1 << 20
	// Sessions hold nothing a device needs back (no subscriptions, no queued messages): keep
	// a disconnected one for an hour rather than forever.
	caps.MaximumSessionExpiryInterval = 3600
	closing := new(atomic.Bool)
	srv := mochi.New(&mochi.Options{
		InlineClient: false,
		Capabilities: caps,
		Logger:       slog.New(mochiLog{logger.With("component", "mqtt-broker").Handler(), closing}),
	})
	m := newBrokerMetrics(cfg.Registerer)
	auth := newAuthHook(cfg.TopicPrefix, cfg.Devices, cfg.Reserved, m, logger)
	in := newIngestHook(srv, cfg, m, logger)
	for _, h := range []mochi.Hook{auth, in} {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("embedded mqtt: %w", err)
		}
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("embedded mqtt: listen %s: %w", cfg.Addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("embedded mqtt: %w", err)
	}
	return &embeddedBroker{srv: srv, tcp: tcp, ingest: in, closing: closing}, nil
}

// Addr is the address the broker listens on.
func (b *embeddedBroker) Addr() string { return b.tcp.Address() }

// Run serves until ctx ends, then shuts down in order: stop taking messages (a device
// blocked on a full pipeline gets no acknowledgement and resends after reconnecting),
// wait up to drain for Kafka to acknowledge what was handed over and for those
// acknowledgements to reach the devices, then close the connections. The sink's owner
// flushes it meanwhile (pipeline.Mediator.Run does on the same context).
func (b *embeddedBroker) Run(ctx context.Context, drain time.Duration) error {
	<-ctx.Done()
	b.ingest.stop()
	b.ingest.drain(drain)
	b.Close()
	return nil
}

// Close stops the broker at once; messages not yet acknowledged stay with the devices.
func (b *embeddedBroker) Close() {
	b.closeOnce.Do(func() {
		b.ingest.stop()
		b.closing.Store(true)
		_ = b.srv.Close()
	})
}

// usageTopic splits <prefix>/<tenant>/<device>/usage[/<format>], the MQTT collector's
// topic scheme (ingest/mqtt, README "Device payloads").
func usageTopic(prefix, topic string) (tenant, device string, kind payload.Kind, ok bool) {
	rest, found := strings.CutPrefix(topic, prefix)
	if !found || !strings.HasPrefix(rest, "/") {
		return "", "", 0, false
	}
	tenant, rest, _ = strings.Cut(rest[1:], "/")
	device, rest, _ = strings.Cut(rest, "/")
	level, format, hasFormat := strings.Cut(rest, "/")
	if tenant == "" || device == "" || level != "usage" {
		return "", "", 0, false
	}
	if !hasFormat {
		return tenant, device, payload.KindAuto, true
	}
	switch format {
	case "json":
		return tenant, device, payload.KindJSON, true
	case "senml-json", "senml+json", "senml":
		return tenant, device, payload.KindSenMLJSON, true
	case "senml-cbor", "senml+cbor", "cbor":
		return tenant, device, payload.KindSenMLCBOR, true
	}
	return "", "", 0, false
}

// brokerMetrics count what the embedded broker does per message and per connection.
type brokerMetrics struct {
	received   prometheus.Counter
	accepted   prometheus.Counter
	rejected   *prometheus.CounterVec
	inFlight   prometheus.Gauge
	ackLatency prometheus.Observer
	refused    *prometheus.CounterVec
	denied     *prometheus.CounterVec
}

func newBrokerMetrics(reg prometheus.Registerer) *brokerMetrics {
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetmeter_broker_ack_latency_seconds",
		Help:    "Embedded MQTT broker: from receipt to the acknowledgement sent to the device.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})
	m := &brokerMetrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_broker_received_total",
			Help: "Embedded MQTT broker: messages received from authenticated devices."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_broker_accepted_total",
			Help: "Embedded MQTT broker: usage records Kafka acknowledged."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_broker_rejected_total",
			Help: "Embedded MQTT broker: messages rejected (written to topic rejected), by reason."}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetmeter_broker_in_flight",
			Help: "Embedded MQTT broker: messages handed to Kafka and not yet acknowledged to the device."}),
		ackLatency: latency,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_broker_connects_refused_total",
			Help: "Embedded MQTT broker: connections refused, by reason."}, []string{"reason"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_broker_acl_denied_total",
			Help: "Embedded MQTT broker: publications and subscriptions the ACL denied."}, []string{"op"}),
	}
	if reg != nil {
		reg.MustRegister(m.received, m.accepted, m.rejected, m.inFlight, latency, m.refused, m.denied)
	}
	return m
}

// mochiLog passes on mochi's records from info up: it logs every packet a hook refuses at
// debug, and here that is every message. Once the broker is closing, errors only: it
// warns about every connection it closes otherwise.
type mochiLog struct {
	slog.Handler
	closing *atomic.Bool
}

func (h mochiLog) Enabled(ctx context.Context, l slog.Level) bool {
	least := slog.LevelInfo
	if h.closing.Load() {
		least = slog.LevelError
	}
	return l >= least && h.Handler.Enabled(ctx, l)
}

func (h mochiLog) WithAttrs(as []slog.Attr) slog.Handler {
	return mochiLog{h.Handler.WithAttrs(as), h.closing}
}

func (h mochiLog) WithGroup(name string) slog.Handler {
	return mochiLog{h.Handler.WithGroup(name), h.closing}
}
