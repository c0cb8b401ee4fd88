// Package pipeline composes the stages shared by the binaries: the streaming rater that
// consumes topic usage, prices each record and loads the priced records into the store.
// It is wiring: adapters (Kafka, ClickHouse) meet the domain (rating) here.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/kafka"
	"fleetmeter/rating"
	"fleetmeter/record"
)

// Store is where rated records land (ClickHouse in production).
type Store interface {
	InsertRated(ctx context.Context, recs []record.Rated) error
	Ping(ctx context.Context) error
}

// Rejecter takes what cannot be rated (topic rejected in production).
type Rejecter interface {
	EnqueueRejects(rejs []record.Rejection, done func(error))
}

// Rater is the streaming rating stage.
type Rater struct {
	cons    *kafka.Consumer
	engine  *rating.Engine
	store   Store
	rejects Rejecter
	logger  *slog.Logger
	metrics *raterMetrics

	mu     sync.Mutex
	states map[int32]*rating.State // per partition of topic usage

	stalled atomic.Bool // the store or Kafka refuses: not ready
}

type raterMetrics struct {
	rated    *prometheus.CounterVec
	rejected *prometheus.CounterVec
	batches  prometheus.Histogram
	retries  prometheus.Counter
}

func newRaterMetrics(reg prometheus.Registerer) *raterMetrics {
	m := &raterMetrics{
		rated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_rated_total",
			Help: "Rated records written to the store, by charge."}, []string{"charge"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_rejected_total",
			Help: "Usage records the rater rejected, by reason."}, []string{"reason"}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetmeter_rater_batch_seconds",
			Help: "From poll to commit of one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_rater_retries_total",
			Help: "Store, reject or commit attempts that failed and were retried."}),
	}
	if reg != nil {
		reg.MustRegister(m.rated, m.rejected, m.batches, m.retries)
	}
	return m
}

// RaterConfig configures the stage.
type RaterConfig struct {
	Kafka kafka.Config
	Group string
}

// NewRater joins the consumer group.
func NewRater(ctx context.Context, cfg RaterConfig, engine *rating.Engine, store Store, rejects Rejecter,
	reg prometheus.Registerer, logger *slog.Logger) (*Rater, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Rater{engine: engine, store: store, rejects: rejects, logger: logger,
		metrics: newRaterMetrics(reg), states: map[int32]*rating.State{}}
	cons, err := kafka.NewConsumer(ctx, cfg.Kafka, cfg.Group, logger, r.dropStates)
	if err != nil {
		return nil, err
	}
	r.cons = cons
	return r, nil
}

// Ready reports whether the stage is making progress (store and Kafka accept writes).
func (r *Rater) Ready(ctx context.Context) error {
	if r.stalled.Load() {
		return errors.New("rater stalled: store or kafka refusing writes, retrying")
	}
	return r.store.Ping(ctx)
}

func (r *Rater) dropStates(parts []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range parts {
		delete(r.states, p)
	}
}

func (r *Rater) state(p int32) *rating.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.states[p]
	if st == nil {
		st = rating.NewState()
		r.states[p] = st
	}
	return st
}

// Run consumes until ctx ends. Per batch, in this order:
//  1. rate every polled record (per partition state, so per-device order is the input order);
//  2. insert the rated records into the store, retrying until it accepts them;
//  3. send what could not be rated to rejected, retrying until acknowledged;
//  4. commit the consumed offsets, and only then let a rebalance move partitions.
//
// A crash before 4 replays the batch from the last commit: the store keys rows by
// record_id and its billing reads collapse duplicates, so a replay changes no total.
func (r *Rater) Run(ctx context.Context) error {
	defer r.cons.Close()
	var (
		batch kafka.Batch
		out   []record.Rated
		rejs  []record.Rejection
	)
	for {
		err := r.cons.Poll(ctx, &batch)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.logger.Warn("rater poll failed, retrying", "err", err)
			r.metrics.retries.Inc()
			sleep(ctx, time.Second)
			continue
		}
		start := time.Now()
		out, rejs = out[:0], append(rejs[:0], batch.Bad...)
		var cur int32 = -1
		var st *rating.State
		for i := range batch.Records {
			if p := batch.Partitions[i]; p != cur || st == nil {
				cur, st = p, r.state(p)
			}
			u := &batch.Records[i]
			out, err = r.engine.Rate(st, u, out)
			if err != nil {
				rejs = append(rejs, usageRejection(u, err))
			}
		}
		if !r.retry(ctx, "store", func() error { return r.store.InsertRated(ctx, out) }) {
			return nil
		}
		if !r.retry(ctx, "reject", func() error { return r.reject(ctx, rejs) }) {
			return nil
		}
		if !r.retry(ctx, "commit", func() error { return r.cons.Commit(ctx) }) {
			return nil
		}
		r.cons.Done()
		for i := range out {
			r.metrics.rated.WithLabelValues(out[i].Charge).Inc()
		}
		for i := range rejs {
			r.metrics.rejected.WithLabelValues(rejs[i].Reason).Inc()
		}
		r.metrics.batches.Observe(time.Since(start).Seconds())
	}
}

func (r *Rater) reject(ctx context.Context, rejs []record.Rejection) error {
	if len(rejs) == 0 {
		return nil
	}
	ch := make(chan error, 1)
	r.rejects.EnqueueRejects(rejs, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry runs fn until it succeeds, backing off up to 10 s; false when ctx ended first.
func (r *Rater) retry(ctx context.Context, what string, fn func() error) bool {
	backoff := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			r.stalled.Store(false)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.stalled.Store(true)
		r.metrics.retries.Inc()
		r.logger.Warn("rater "+what+" failed, retrying", "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func usageRejection(u *record.Usage, err error) record.Rejection {
	reason := "rating_error"
	var inv *record.InvalidError
	if errors.As(err, &inv) {
		reason = inv.Reason
	}
	return record.Rejection{Source: u.Source, Tenant: u.Tenant, Device: u.Device, Reason: reason,
		Detail: fmt.Sprintf("event %s: %v", u.EventID, err), Raw: record.AppendJSON(nil, u), Received: u.ReceivedTime}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
