// Package pipeline composes the stages shared by the binaries: the mediator's collectors
// and sink, the transactional rater (usage -> rated), and the loader (rated -> ClickHouse).
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

// RaterConfig configures the rating stage.
type RaterConfig struct {
	Kafka kafka.Config
	Group string // shared by every rater instance
	// InstanceID names this instance's transactional producer: stable across its restarts
	// (so a restarted instance fences its zombie predecessor), unique among instances.
	InstanceID string
}

// ratedChunk is the most rated records in one message of topic rated.
const ratedChunk = 4096

// Rater is the streaming rating stage: a consume-transform-produce loop over topic usage,
// one Kafka transaction per batch.
type Rater struct {
	sess    *kafka.TxSession // replaced by Run when Kafka fails it
	open    func(ctx context.Context) (*kafka.TxSession, error)
	kcfg    kafka.Config
	engine  *rating.Engine
	logger  *slog.Logger
	metrics *raterMetrics
	parts   int32 // partitions of usage = of rated = of rater-state
	rparts  int32 // partitions of rejected

	mu     sync.Mutex
	states map[int32]*rating.State // per owned partition of usage, loaded lazily
	stale  atomic.Bool             // partitions moved: drop every state before the next batch

	ready   atomic.Bool
	counter *partitionCounter
}

type raterMetrics struct {
	rated    prometheus.Counter
	rejected *prometheus.CounterVec
	batches  *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newRaterMetrics(reg prometheus.Registerer) *raterMetrics {
	m := &raterMetrics{
		rated: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_rater_rated_total",
			Help: "Rated records committed to topic rated."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_rejected_total",
			Help: "Usage records the rater rejected, by reason."}, []string{"reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_transactions_total",
			Help: "Batch transactions, by outcome (committed, aborted)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetmeter_rater_batch_seconds",
			Help: "From poll to commit of one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.rated, m.rejected, m.batches, m.latency)
	}
	return m
}

// NewRater joins the group and checks the topic layout.
func NewRater(ctx context.Context, cfg RaterConfig, engine *rating.Engine, reg prometheus.Registerer,
	logger *slog.Logger) (*Rater, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InstanceID == "" {
		return nil, errors.New("rater: instance id is required (stable per instance, unique among instances)")
	}
	r := &Rater{engine: engine, logger: logger, metrics: newRaterMetrics(reg), states: map[int32]*rating.State{}, kcfg: cfg.Kafka}
	r.open = func(ctx context.Context) (*kafka.TxSession, error) {
		return kafka.NewTxSession(ctx, cfg.Kafka, cfg.Group, "fleetmeter-rater-"+cfg.InstanceID, kafka.TopicUsage,
			[]string{kafka.TopicRated, kafka.TopicState, kafka.TopicRejected}, logger, func([]int32) { r.stale.Store(true) })
	}
	sess, err := r.open(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := kafka.PartitionCounts(ctx, cfg.Kafka, kafka.TopicUsage, kafka.TopicRated, kafka.TopicState, kafka.TopicRejected)
	if err != nil {
		sess.Close()
		return nil, err
	}
	r.parts, r.rparts = counts[kafka.TopicUsage], counts[kafka.TopicRejected]
	if counts[kafka.TopicRated] != r.parts || counts[kafka.TopicState] != r.parts {
		sess.Close()
		return nil, fmt.Errorf("rater: topics %s, %s and %s need the same partition count, have %d, %d, %d",
			kafka.TopicUsage, kafka.TopicRated, kafka.TopicState, r.parts, counts[kafka.TopicRated], counts[kafka.TopicState])
	}
	r.sess = sess
	r.counter = newPartitionCounter(r)
	engine.UseCounter(r.counter)
	return r, nil
}

// Ready reports whether the last batch committed (or none was due yet).
func (r *Rater) Ready(ctx context.Context) error {
	if err := kafka.Ping(ctx, r.kcfg); err != nil {
		return err
	}
	if !r.ready.Load() {
		return errors.New("rater: not committing (starting, or kafka refusing transactions)")
	}
	return nil
}

// Run rates until ctx ends. Per batch, in one transaction:
//  1. rate every polled record with the state of its partition, so a device's records
//     are priced in their order of arrival;
//  2. produce the rated records to topic rated (same partition as their input), the
//     rejections to topic rejected, and a snapshot of each touched partition's state to
//     topic rater-state (same partition);
//  3. commit the consumed offsets inside the transaction and end it.
//
// Rated output, state and offsets thus move together. A crash or rebalance before 3
// aborts all of it: the next owner of a partition loads the last committed snapshot and
// re-rates the same records from the committed offsets, producing the same record ids.
// The loader reads topic rated read-committed, so aborted output never reaches ClickHouse.
//
// When Kafka fails the session itself (an outage, a fenced or expired transaction), the
// batch is aborted, the states dropped, and a new session joins the group once Kafka
// answers again, resuming from the committed offsets and snapshots.
func (r *Rater) Run(ctx context.Context) error {
	cctx, stopCount := context.WithCancel(ctx)
	defer stopCount()
	go r.counter.refresh(cctx, 30*time.Second)
	backoff := time.Second
	for {
		err := r.runSession(ctx)
		r.sess.Close()
		if ctx.Err() != nil {
			return nil
		}
		r.ready.Store(false)
		r.dropStates()
		r.logger.Error("rater session failed, rejoining", "err", err, "backoff", backoff)
		for {
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 30*time.Second)
			sess, err := r.open(ctx)
			if err == nil {
				r.sess = sess
				backoff = time.Second
				break
			}
			r.logger.Warn("rater: kafka not available yet", "err", err)
		}
	}
}

// runSession runs batches on r.sess until ctx ends (nil) or the session fails.
func (r *Rater) runSession(ctx context.Context) error {
	r.ready.Store(true)
	var (
		msgs []kafka.Message
		recs []record.Usage
		out  []record.Rated
		rejs []record.Rejection
		enc  = record.NewRatedEncoder()
	)
	for {
		var err error
		msgs, err = r.sess.Poll(ctx, msgs[:0])
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.ready.Store(false)
			r.logger.Warn("rater poll failed, retrying", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		if r.stale.Swap(false) {
			r.dropStates()
		}
		start := time.Now()
		if err := r.sess.Begin(); err != nil {
			return err
		}
		rejs = rejs[:0]
		nRated := 0
		for i := 0; i < len(msgs); {
			// Fetches come grouped by partition: rate one partition's run at a time.
			p := msgs[i].Partition
			st, err := r.state(ctx, p)
			if err != nil {
				_, _ = r.sess.End(ctx, false)
				return err
			}
			recs, out = recs[:0], out[:0]
			for ; i < len(msgs) && msgs[i].Partition == p; i++ {
				n := len(recs)
				recs, err = record.DecodeUsage(msgs[i].Value, recs)
				if err != nil {
					rejs = append(rejs, record.Rejection{Source: "kafka", Reason: "bad_batch",
						Detail: fmt.Sprintf("usage partition %d offset %d: %v", p, msgs[i].Offset, err),
						Raw:    append([]byte(nil), msgs[i].Value...), Received: msgs[i].Time})
					recs = recs[:n]
				}
			}
			out = r.engine.RateBatch(st, recs, out, func(j int, err error) {
				rejs = append(rejs, usageRejection(&recs[j], err))
			})
			// Messages stay well under the broker's default 1 MiB limit (~95 B a row).
			for k := 0; k < len(out); k += ratedChunk {
				payload, err := enc.Encode(nil, out[k:min(k+ratedChunk, len(out))])
				if err != nil {
					_, _ = r.sess.End(ctx, false)
					return fmt.Errorf("rater: encode rated batch: %w", err)
				}
				r.sess.Produce(kafka.TopicRated, p, nil, payload, record.RatedSchema)
			}
			snap, err := st.MarshalBinary()
			if err != nil {
				_, _ = r.sess.End(ctx, false)
				return fmt.Errorf("rater: snapshot partition %d: %w", p, err)
			}
			r.sess.Produce(kafka.TopicState, p, []byte(fmt.Sprintf("usage/%d", p)), snap, "")
			nRated += len(out)
		}
		for i := range rejs {
			rj := &rejs[i]
			r.sess.Produce(kafka.TopicRejected, kafka.PartitionOf(rj.Tenant, rj.Device, r.rparts),
				[]byte(rj.Tenant+"/"+rj.Device), rj.AppendJSON(nil), "")
		}
		committed, err := r.sess.End(ctx, true)
		if err != nil {
			r.ready.Store(false)
			return err
		}
		if !committed {
			// The batch is rolled back and will be consumed again: so must the state be.
			r.metrics.batches.WithLabelValues("aborted").Inc()
			r.dropStates()
			continue
		}
		r.ready.Store(true)
		r.metrics.batches.WithLabelValues("committed").Inc()
		r.metrics.rated.Add(float64(nRated))
		for i := range rejs {
			r.metrics.rejected.WithLabelValues(rejs[i].Reason).Inc()
		}
		r.metrics.latency.Observe(time.Since(start).Seconds())
	}
}

func (r *Rater) dropStates() {
	r.mu.Lock()
	clear(r.states)
	r.mu.Unlock()
}

// state returns the state of partition p, loading the last committed snapshot when this
// instance has none: after start, after a rebalance, after an aborted batch.
func (r *Rater) state(ctx context.Context, p int32) (*rating.State, error) {
	r.mu.Lock()
	st := r.states[p]
	r.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st = rating.NewState()
	snap, err := kafka.LastValue(ctx, r.kcfg, kafka.TopicState, p)
	if err != nil {
		return nil, fmt.Errorf("rater: load state of partition %d: %w", p, err)
	}
	if snap != nil {
		if err := st.UnmarshalBinary(snap); err != nil {
			return nil, fmt.Errorf("rater: state snapshot of partition %d: %w", p, err)
		}
	}
	r.mu.Lock()
	r.states[p] = st
	r.mu.Unlock()
	return st, nil
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
