package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/kafka"
	"fleetmeter/loader"
)

// Store is where rated records and rejections land (ClickHouse in production).
type Store = loader.Store

// LoaderConfig configures the loading stage.
type LoaderConfig struct {
	Kafka kafka.Config
	Group string
	// BatchRows and BatchWait bound one insert (loader.Loader's fields of the same names)
	// when BatchRows is set (BatchWait 0: an insert per poll); else the loader's defaults.
	BatchRows int
	BatchWait time.Duration
}

// Loader is the loading stage on Kafka: the loader loop (package loader) over a consumer
// of topics rated and rejected, read committed.
type Loader = loader.Loader

// NewLoader joins the loader group on topics rated and rejected.
func NewLoader(ctx context.Context, cfg LoaderConfig, store Store, reg prometheus.Registerer, logger *slog.Logger) (*Loader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Kafka.Metrics = reg
	cons, err := kafka.NewConsumer(ctx, cfg.Kafka, cfg.Group, []string{kafka.TopicRated, kafka.TopicRejected}, logger, nil)
	if err != nil {
		return nil, err
	}
	l := loader.New(&consumerSource{c: cons}, store, reg, logger)
	if cfg.BatchRows > 0 {
		l.BatchRows, l.BatchWait = cfg.BatchRows, cfg.BatchWait
	}
	if reg != nil {
		reg.MustRegister(cons.LagCollector())
	}
	return l, nil
}

// consumerSource adapts kafka.Consumer to loader.Source.
type consumerSource struct {
	c    *kafka.Consumer
	msgs []kafka.Message
}

func (s *consumerSource) Poll(ctx context.Context, into []loader.Message) ([]loader.Message, error) {
	var err error
	s.msgs, err = s.c.Poll(ctx, s.msgs[:0])
	for _, m := range s.msgs {
		into = append(into, loader.Message{Rated: m.Topic == kafka.TopicRated, Partition: m.Partition, Offset: m.Offset,
			Value: m.Value, Time: m.Time})
	}
	return into, err
}
func (s *consumerSource) Commit(ctx context.Context) error { return s.c.Commit(ctx) }
func (s *consumerSource) Done()                            { s.c.Done() }
func (s *consumerSource) Ping(ctx context.Context) error   { return s.c.Ping(ctx) }
func (s *consumerSource) Close()                           { s.c.Close() }
