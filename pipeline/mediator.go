package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"fleetmeter/ingest"
	"fleetmeter/ingest/mqtt"
	"fleetmeter/kafka"
)

// MediatorConfig configures the collectors and their Kafka sink.
type MediatorConfig struct {
	Kafka kafka.Config `yaml:"kafka"`
	MQTT  mqtt.Config  `yaml:"mqtt"`
}

// Mediator is the running collectors with their shared Kafka producer.
type Mediator struct {
	Producer *kafka.Producer
	MQTT     *mqtt.Collector
}

// NewMediator connects the producer (creating topics) and builds the enabled collectors.
func NewMediator(ctx context.Context, cfg MediatorConfig, reg prometheus.Registerer, logger *slog.Logger) (*Mediator, error) {
	prod, err := kafka.NewProducer(ctx, cfg.Kafka, logger)
	if err != nil {
		return nil, err
	}
	m := &Mediator{Producer: prod}
	metrics := ingest.NewMetrics(reg)
	if cfg.MQTT.Enabled {
		if m.MQTT, err = mqtt.New(cfg.MQTT, prod, metrics, logger); err != nil {
			_ = prod.Close(ctx)
			return nil, err
		}
	}
	return m, nil
}

// Ready reports whether Kafka and every collector are up.
func (m *Mediator) Ready(ctx context.Context) error {
	if err := m.Producer.Ping(ctx); err != nil {
		return err
	}
	if m.MQTT != nil && !m.MQTT.Healthy() {
		return errNotConnected("mqtt")
	}
	return nil
}

type errNotConnected string

func (e errNotConnected) Error() string { return string(e) + ": not connected" }

// Run serves until ctx ends. Shutdown order: the collectors stop taking input first, then
// the producer flushes what they handed it and waits for Kafka's acknowledgements.
func (m *Mediator) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if m.MQTT != nil {
		g.Go(func() error { return m.MQTT.Run(gctx) })
	}
	err := g.Wait()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if cerr := m.Producer.Close(cctx); err == nil {
		err = cerr
	}
	return err
}
