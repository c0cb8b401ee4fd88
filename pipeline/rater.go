// Package pipeline composes the stages shared by the binaries: the mediator's collectors
// and sink, the transactional rater (usage -> rated), and the loader (rated -> ClickHouse).
// It is wiring: adapters (Kafka, ClickHouse) meet the domain (rating, rater) here.
package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/kafka"
	"fleetmeter/rater"
	"fleetmeter/rating"
	"fleetmeter/rules"
)

// RaterConfig configures the rating stage.
type RaterConfig struct {
	Kafka kafka.Config
	Group string // shared by every rater instance
	// InstanceID names this instance's transactional producer: stable across its restarts
	// (so a restarted instance fences its zombie predecessor), unique among instances.
	InstanceID string
	// MaxMessageBytes bounds every message the rater produces (default kafka.MaxMessageBytes).
	MaxMessageBytes int
}

// Rater is the rating stage on Kafka: the rater loop (package rater) over a transactional
// group session, the state changelog replayed through the process's one long-lived
// reader, and the fleet's device counts followed from the counts topic.
type Rater struct {
	loop     *rater.Rater
	engine   *rating.Engine
	counter  *rater.FleetCounter
	reader   *kafka.Reader
	follower *kafka.Follower
}

// NewRater joins the group, checks the topic layout and builds the engine that prices
// with set (Engine().SetRules swaps it).
func NewRater(ctx context.Context, cfg RaterConfig, set *rules.Set, reg prometheus.Registerer,
	logger *slog.Logger) (*Rater, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InstanceID == "" {
		return nil, errors.New("rater: instance id is required (stable per instance, unique among instances)")
	}
	cfg.Kafka.Metrics = reg
	outs := []string{kafka.TopicRated, kafka.TopicState, kafka.TopicCounts, kafka.TopicRejected}
	counter := rater.NewFleetCounter()
	engine := rating.NewEngine(set, rating.Options{Counter: counter})
	var lost atomic.Pointer[rater.Rater] // set once the loop exists; partitions lost before that held no state
	open := func(ctx context.Context) (rater.Stream, error) {
		s, err := kafka.NewTxSession(ctx, cfg.Kafka, cfg.Group, TxID(cfg.InstanceID), kafka.TopicUsage,
			outs, logger, func([]int32) {
				if l := lost.Load(); l != nil {
					l.PartitionsLost()
				}
			})
		if err != nil {
			return nil, err
		}
		return &txStream{s: s}, nil
	}
	first, err := open(ctx) // creates the topics
	if err != nil {
		return nil, err
	}
	reader, err := kafka.NewReader(cfg.Kafka, logger)
	if err != nil {
		first.Close()
		return nil, err
	}
	fail := func(err error) (*Rater, error) {
		first.Close()
		reader.Close()
		return nil, err
	}
	counts, err := reader.PartitionCounts(ctx, append([]string{kafka.TopicUsage}, outs...)...)
	if err != nil {
		return fail(err)
	}
	parts := counts[kafka.TopicUsage]
	for _, t := range []string{kafka.TopicRated, kafka.TopicState, kafka.TopicCounts} {
		if counts[t] != parts {
			return fail(fmt.Errorf("rater: topic %s has %d partitions, %s has %d: they must be equal",
				t, counts[t], kafka.TopicUsage, parts))
		}
	}
	rparts := counts[kafka.TopicRejected]
	follower, err := kafka.NewFollower(cfg.Kafka, kafka.TopicCounts, logger)
	if err != nil {
		return fail(err)
	}
	opened := false
	loop, err := rater.New(rater.Config{
		Topics: rater.Topics{Rated: kafka.TopicRated, State: kafka.TopicState, Counts: kafka.TopicCounts,
			Rejected: kafka.TopicRejected},
		RejectedPartition: func(t, d string) int32 { return kafka.PartitionOf(t, d, rparts) },
		MaxMessageBytes:   cmp.Or(cfg.MaxMessageBytes, kafka.MaxMessageBytes),
	}, func(ctx context.Context) (rater.Stream, error) {
		if !opened { // the session opened above serves first
			opened = true
			return first, nil
		}
		return open(ctx)
	}, stateStore{reader}, engine, counter, reg, logger)
	if err != nil {
		follower.Close()
		return fail(err)
	}
	lost.Store(loop)
	if reg != nil {
		reg.MustRegister(reader.LagCollector(cfg.Group, logger, kafka.TopicUsage))
	}
	return &Rater{loop: loop, engine: engine, counter: counter, reader: reader, follower: follower}, nil
}

// Engine is the rating engine, for swapping tariffs.
func (r *Rater) Engine() *rating.Engine { return r.engine }

// Run rates until ctx ends (see rater.Rater.Run), following the fleet's counts meanwhile.
func (r *Rater) Run(ctx context.Context) error {
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.follower.Run(fctx, r.counter.SetEncoded)
	}()
	err := r.loop.Run(ctx)
	stop()
	<-done
	r.reader.Close()
	return err
}

// Ready reports whether Kafka answers and batches commit.
func (r *Rater) Ready(ctx context.Context) error {
	if err := r.reader.Ping(ctx); err != nil {
		return err
	}
	return r.loop.Ready()
}

// txStream adapts kafka.TxSession to rater.Stream.
type txStream struct {
	s    *kafka.TxSession
	msgs []kafka.Message
}

func (t *txStream) Poll(ctx context.Context, into []rater.Message) ([]rater.Message, error) {
	var err error
	t.msgs, err = t.s.Poll(ctx, t.msgs[:0])
	for _, m := range t.msgs {
		into = append(into, rater.Message{Partition: m.Partition, Offset: m.Offset, Value: m.Value, Time: m.Time})
	}
	return into, err
}
func (t *txStream) Begin() error { return t.s.Begin() }
func (t *txStream) Produce(topic string, part int32, key, value []byte, schema string) {
	t.s.Produce(topic, part, key, value, schema)
}
func (t *txStream) End(ctx context.Context, commit bool) (bool, error) {
	ok, err := t.s.End(ctx, commit)
	if err == nil && !ok && commit {
		if cause := t.s.Refused(); cause != nil {
			return false, fmt.Errorf("%w: %v", rater.ErrRefused, cause)
		}
	}
	return ok, err
}
func (t *txStream) Close() { t.s.Close() }

// stateStore replays partitions of the state changelog.
type stateStore struct{ r *kafka.Reader }

func (s stateStore) Replay(ctx context.Context, part int32, fn func(key, value []byte) error) (int, error) {
	return s.r.Replay(ctx, kafka.TopicState, part, fn)
}

// TxID is the transactional id of the rater instance named instance.
func TxID(instance string) string { return "fleetmeter-rater-" + instance }
