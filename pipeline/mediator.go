package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"fleetmeter/ingest"
	"fleetmeter/ingest/cdrdir"
	"fleetmeter/ingest/coap"
	"fleetmeter/ingest/httpin"
	"fleetmeter/ingest/mqtt"
	"fleetmeter/kafka"
)

// MediatorConfig configures the collectors and their Kafka sink.
type MediatorConfig struct {
	Kafka kafka.Config  `yaml:"kafka"`
	MQTT  mqtt.Config   `yaml:"mqtt"`
	CoAP  coap.Config   `yaml:"coap"`
	HTTP  httpin.Config `yaml:"http"`
	CDR   cdrdir.Config `yaml:"cdr"`
}

// DefaultMediatorConfig enables MQTT only; the other collectors need addresses, keys or
// directories from the operator.
func DefaultMediatorConfig() MediatorConfig {
	c := MediatorConfig{Kafka: kafka.DefaultConfig(), MQTT: mqtt.DefaultConfig(), CoAP: coap.DefaultConfig(),
		HTTP: httpin.DefaultConfig(), CDR: cdrdir.DefaultConfig()}
	c.MQTT.Enabled = true
	return c
}

// Mediator is the running collectors with their shared Kafka producer.
type Mediator struct {
	Producer *kafka.Producer
	MQTT     *mqtt.Collector
	CoAP     *coap.Collector
	HTTP     *httpin.Server
	CDR      *cdrdir.Collector

	collectors []namedCollector
}

type namedCollector struct {
	name string
	c    ingest.Collector
}

// NewMediator connects the producer (creating topics) and builds the enabled collectors:
// the table below is the one place a new collector is added.
func NewMediator(ctx context.Context, cfg MediatorConfig, reg prometheus.Registerer, logger *slog.Logger) (*Mediator, error) {
	cfg.Kafka.Metrics = reg
	prod, err := kafka.NewProducer(ctx, cfg.Kafka, logger)
	if err != nil {
		return nil, err
	}
	m := &Mediator{Producer: prod}
	metrics := ingest.NewMetrics(reg)
	build := []struct {
		name    string
		enabled bool
		new     func() (ingest.Collector, error)
	}{
		{"mqtt", cfg.MQTT.Enabled, func() (c ingest.Collector, err error) {
			m.MQTT, err = mqtt.New(cfg.MQTT, prod, metrics, logger)
			return m.MQTT, err
		}},
		{"coap", cfg.CoAP.Enabled, func() (c ingest.Collector, err error) {
			if m.CoAP, err = coap.New(cfg.CoAP, prod, metrics, logger); err == nil && reg != nil {
				err = reg.Register(m.CoAP) // its session gauges
			}
			return m.CoAP, err
		}},
		{"http", cfg.HTTP.Enabled, func() (c ingest.Collector, err error) {
			m.HTTP, err = httpin.New(cfg.HTTP, prod, metrics, logger)
			return m.HTTP, err
		}},
		{"cdr", cfg.CDR.Enabled, func() (c ingest.Collector, err error) {
			m.CDR, err = cdrdir.New(cfg.CDR, prod, metrics, logger)
			return m.CDR, err
		}},
	}
	for _, b := range build {
		if !b.enabled {
			continue
		}
		c, err := b.new()
		if err != nil {
			if m.HTTP != nil {
				_ = m.HTTP.Close() // it binds in New
			}
			_ = prod.Close(ctx)
			return nil, err
		}
		m.collectors = append(m.collectors, namedCollector{b.name, c})
	}
	return m, nil
}

// Ready reports whether Kafka and every collector are up.
func (m *Mediator) Ready(ctx context.Context) error {
	if err := m.Producer.Ping(ctx); err != nil {
		return err
	}
	for _, c := range m.collectors {
		if !c.c.Healthy() {
			return errors.New(c.name + ": not healthy")
		}
	}
	return nil
}

// Run serves until ctx ends. Shutdown order: the collectors stop taking input first, then
// the producer flushes what they handed it and waits for Kafka's acknowledgements.
func (m *Mediator) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range m.collectors {
		g.Go(func() error { return c.c.Run(gctx) })
	}
	err := g.Wait()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if cerr := m.Producer.Close(cctx); err == nil {
		err = cerr
	}
	return err
}
