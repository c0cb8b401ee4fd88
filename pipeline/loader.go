package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/internal/wait"
	"fleetmeter/kafka"
	"fleetmeter/record"
)

// Store is where rated records and rejections land (ClickHouse in production). Inserting
// the same record_id twice must not change what billing reads.
type Store interface {
	InsertRated(ctx context.Context, recs []record.Rated) error
	InsertRejected(ctx context.Context, rejs []record.Rejection) error
	Ping(ctx context.Context) error
}

// LoaderConfig configures the loading stage.
type LoaderConfig struct {
	Kafka kafka.Config
	Group string
}

// Loader moves committed rated records and rejections from Kafka into the store.
type Loader struct {
	cons    *kafka.Consumer
	store   Store
	logger  *slog.Logger
	stalled atomic.Bool
	loaded  *prometheus.CounterVec
	retries prometheus.Counter
}

// NewLoader joins the loader group on topics rated and rejected.
func NewLoader(ctx context.Context, cfg LoaderConfig, store Store, reg prometheus.Registerer, logger *slog.Logger) (*Loader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cons, err := kafka.NewConsumer(ctx, cfg.Kafka, cfg.Group, []string{kafka.TopicRated, kafka.TopicRejected}, logger, nil)
	if err != nil {
		return nil, err
	}
	l := &Loader{cons: cons, store: store, logger: logger,
		loaded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_loader_rows_total",
			Help: "Rows inserted into the store, by table."}, []string{"table"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_loader_retries_total",
			Help: "Store or commit attempts that failed and were retried."}),
	}
	if reg != nil {
		reg.MustRegister(l.loaded, l.retries)
	}
	return l, nil
}

// Ready reports whether the store accepts inserts and Kafka answers.
func (l *Loader) Ready(ctx context.Context) error {
	if l.stalled.Load() {
		return errors.New("loader stalled: store or kafka refusing writes, retrying")
	}
	if err := l.cons.Ping(ctx); err != nil {
		return err
	}
	return l.store.Ping(ctx)
}

// Run loads until ctx ends. Per batch: insert into the store, retrying until it accepts;
// then commit the offsets; only then poll again. Nothing is consumed while the store is
// down, so memory stays bounded by one batch. A crash between insert and commit inserts
// the batch again on restart: the store keys rows by record_id and billing reads
// collapse duplicates, so no total changes.
func (l *Loader) Run(ctx context.Context) error {
	defer l.cons.Close()
	var (
		msgs  []kafka.Message
		rated []record.Rated
		rejs  []record.Rejection
	)
	for {
		var err error
		msgs, err = l.cons.Poll(ctx, msgs[:0])
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			l.logger.Warn("loader poll failed, retrying", "err", err)
			l.cons.Done()
			wait.Sleep(ctx, time.Second)
			continue
		}
		rated, rejs = rated[:0], rejs[:0]
		for _, m := range msgs {
			switch m.Topic {
			case kafka.TopicRated:
				n := len(rated)
				if rated, err = record.DecodeRated(m.Value, rated); err != nil {
					rated = rated[:n]
					rejs = append(rejs, record.Rejection{Source: "kafka", Reason: "bad_batch",
						Detail: fmt.Sprintf("rated partition %d offset %d: %v", m.Partition, m.Offset, err),
						Raw:    append([]byte(nil), m.Value...), Received: m.Time})
				}
			case kafka.TopicRejected:
				rj, err := record.ParseRejection(m.Value)
				if err != nil {
					rj = record.Rejection{Source: "kafka", Reason: "bad_rejection", Detail: err.Error(),
						Raw: append([]byte(nil), m.Value...), Received: m.Time}
				}
				rejs = append(rejs, rj)
			}
		}
		if !l.retry(ctx, "insert rated", func() error { return l.store.InsertRated(ctx, rated) }) ||
			!l.retry(ctx, "insert rejected", func() error { return l.store.InsertRejected(ctx, rejs) }) ||
			!l.retry(ctx, "commit", func() error { return l.cons.Commit(ctx) }) {
			return nil
		}
		l.cons.Done()
		l.loaded.WithLabelValues("rated_usage").Add(float64(len(rated)))
		l.loaded.WithLabelValues("rejected_usage").Add(float64(len(rejs)))
	}
}

// retry runs fn until it succeeds, backing off up to 10 s; false when ctx ended first.
func (l *Loader) retry(ctx context.Context, what string, fn func() error) bool {
	backoff := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			l.stalled.Store(false)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		l.stalled.Store(true)
		l.retries.Inc()
		l.logger.Warn("loader "+what+" failed, retrying", "err", err, "backoff", backoff)
		if !wait.Sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
