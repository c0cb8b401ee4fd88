// Package rater is the streaming rating stage: a consume-transform-produce loop that
// prices usage records with per-partition state, effectively once. It runs over two small
// interfaces, the transactional Stream and the StateStore that replays a partition's
// changelog, so the loop is tested with fakes (abort, rebalance, fencing) and wired to
// Kafka by the pipeline.
//
// # Why the state is exact
//
// Each partition of the input has a State (rating.State). Per batch, one transaction
// carries (1) the rated records, (2) a changelog entry for every device and tenant period
// the batch changed, on the partition of the same number of the state topic, (3) the
// partition's changed active-device counts on the counts topic, and (4) the consumed
// offsets. Either all of it commits or none of it does. So at every committed offset,
// the changelog of a partition, replayed from its start, holds exactly the newest entry
// of every key written by the batches up to that offset: the State that rated them. A
// new owner (after a crash, a SIGKILL, a rebalance, a fenced zombie) replays the
// changelog, read committed, before rating the partition's next batch, and consumes from
// the committed offsets: it rates the next records with exactly the state that matches
// them. An aborted batch leaves no entry, so the rater drops its in-memory states and
// replays them too. Compaction keeps the newest entry per key, so it changes nothing a
// replay sees; a replay reads what a batch changed, so a batch costs what it touched,
// not the size of the fleet.
package rater

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/internal/wait"
	"fleetmeter/rating"
	"fleetmeter/record"
)

// Message is one consumed input message.
type Message struct {
	Partition int32
	Offset    int64
	Value     []byte
	Time      int64 // ms since the epoch
}

// Stream is a transactional consume-transform-produce session (a Kafka group member with
// a transactional producer). Produce adds to the open transaction; End commits the
// produced records together with the offsets of everything polled since Begin, or
// aborts and rewinds to the committed offsets. End returns an error wrapping ErrRefused
// (and committed false) when it aborted because the brokers refused what the batch
// produced for good; any other error means the session itself failed.
type Stream interface {
	Poll(ctx context.Context, into []Message) ([]Message, error)
	Begin() error
	Produce(topic string, part int32, key, value []byte, schema string)
	End(ctx context.Context, commit bool) (committed bool, err error)
	Close()
}

// ErrRefused marks a batch whose output the brokers refused for good (a message too
// large, an invalid record): the same input would be refused again.
var ErrRefused = errors.New("kafka refused the batch's output")

// StateStore replays the committed changelog of one partition of the state topic.
type StateStore interface {
	Replay(ctx context.Context, part int32, fn func(key, value []byte) error) (int, error)
}

// Topics names the outputs.
type Topics struct {
	Rated, State, Counts, Rejected string
}

// Config shapes the loop.
type Config struct {
	Topics Topics
	// RejectedPartition routes a rejection of a device to its partition of the rejected
	// topic (the adapter's partitioner); default partition 0.
	RejectedPartition func(tenant, device string) int32
	// MaxMessageBytes bounds every produced value; rated output is split by its encoded
	// size to stay under it. Default 900 KiB, under the broker's default 1 MiB.
	MaxMessageBytes int
	// StuckAfter is how many batches in a row may fail to commit before the rater reports
	// itself not ready, and how often the same batch may be refused before it is
	// quarantined. Default 3.
	StuckAfter int
}

func (c *Config) defaults() {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 900 << 10
	}
	if c.StuckAfter <= 0 {
		c.StuckAfter = 3
	}
	if c.RejectedPartition == nil {
		c.RejectedPartition = func(string, string) int32 { return 0 }
	}
}

// Rater runs the loop. Open makes a new Stream when Kafka failed the last one.
type Rater struct {
	cfg     Config
	open    func(ctx context.Context) (Stream, error)
	sess    Stream
	store   StateStore
	engine  *rating.Engine
	counter *FleetCounter
	logger  *slog.Logger
	m       *metrics

	states map[int32]*rating.State // per owned partition, replayed lazily
	stale  atomic.Bool             // partitions moved: drop every state before the next batch

	ready    atomic.Bool
	failures int          // batches in a row that did not commit
	why      atomic.Value // string: why not ready

	refusedAt batchKey // the batch the brokers last refused
	refusals  int      // how often in a row
	refusal   error
}

// batchKey names a batch by its first message: after an abort the session rewinds, so a
// batch refused again starts at the same place.
type batchKey struct {
	part   int32
	offset int64
}

type metrics struct {
	rated, late  prometheus.Counter
	rejected     *prometheus.CounterVec
	batches      *prometheus.CounterVec
	latency      prometheus.Histogram
	restore      prometheus.Histogram
	changelog    prometheus.Counter
	devices      prometheus.Gauge
	stuck        prometheus.Gauge
	restoreItems prometheus.Counter
	quarantined  prometheus.Counter
	tenants      *tenantMetrics
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rated: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_rater_rated_total",
			Help: "Rated records committed to topic rated."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_rater_late_records_total",
			Help: "Records further behind their device's newest than the tariff's late_tolerance (priced with the keys still kept)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_rejected_total",
			Help: "Usage records the rater rejected, by reason."}, []string{"reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_transactions_total",
			Help: "Batch transactions, by outcome (committed, aborted)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetmeter_rater_batch_seconds",
			Help: "From poll to commit of one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		restore: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetmeter_rater_restore_seconds",
			Help: "Replaying one partition's changelog.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		changelog: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_rater_changelog_bytes_total",
			Help: "Bytes of keys and values written to the state changelog."}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetmeter_rater_devices",
			Help: "Devices tracked in the states of owned partitions."}),
		stuck: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetmeter_rater_stuck",
			Help: "1 while batches keep failing to commit (the rater reports not ready)."}),
		restoreItems: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_rater_restored_entries_total",
			Help: "Changelog entries replayed."}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_rater_quarantined_total",
			Help: "Usage records sent to topic rejected (reason quarantined) because Kafka refused their batch's output again and again; alert on any."}),
		tenants: newTenantMetrics(),
	}
	// The series of both outcomes, and of the reasons only this stage gives, exist from
	// the start, so a rate over them is 0, not empty.
	m.batches.WithLabelValues("committed")
	m.batches.WithLabelValues("aborted")
	for _, r := range []string{record.ReasonNoTariff, record.ReasonAmountOverflow, record.ReasonBadBatch,
		record.ReasonTooLarge, record.ReasonQuarantined} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.rated, m.late, m.rejected, m.batches, m.latency, m.restore, m.changelog, m.devices, m.stuck, m.restoreItems,
			m.quarantined, m.tenants.records, m.tenants.amount)
	}
	return m
}

// New builds a rater. The engine must count devices with counter (rating.Options.Counter).
func New(cfg Config, open func(ctx context.Context) (Stream, error), store StateStore, engine *rating.Engine,
	counter *FleetCounter, reg prometheus.Registerer, logger *slog.Logger) (*Rater, error) {
	if open == nil || store == nil || engine == nil || counter == nil {
		return nil, errors.New("rater: stream, state store, engine and counter are required")
	}
	if engine.Counter() != rating.DeviceCounter(counter) {
		return nil, errors.New("rater: the engine must count devices with the rater's counter")
	}
	if cfg.Topics.Rated == "" || cfg.Topics.State == "" || cfg.Topics.Counts == "" || cfg.Topics.Rejected == "" {
		return nil, errors.New("rater: every output topic must be named")
	}
	cfg.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Rater{cfg: cfg, open: open, store: store, engine: engine, counter: counter, logger: logger,
		m: newMetrics(reg), states: map[int32]*rating.State{}}
	r.m.tenants.show(engine.Rules())
	r.why.Store("starting")
	return r, nil
}

// PartitionsLost tells the rater that partitions left this member: its states are stale.
// Safe to call from any goroutine (the stream's rebalance callback).
func (r *Rater) PartitionsLost() { r.stale.Store(true) }

// Ready is nil while batches commit; otherwise it says why not.
func (r *Rater) Ready() error {
	if !r.ready.Load() {
		return fmt.Errorf("rater: not committing: %s", r.why.Load())
	}
	return nil
}

func (r *Rater) notReady(why string) {
	r.ready.Store(false)
	r.why.Store(why)
}

// Run rates until ctx ends. Per batch:
//  1. replay the changelog of every partition in the batch this instance holds no state
//     for (after start, a rebalance or an aborted batch);
//  2. in one transaction, rate every record with the state of its partition (a device's
//     records in their order of arrival), produce the rated records, the rejections, the
//     changelog entries and counts of what changed, and commit the consumed offsets;
//  3. once committed, mark the states clean; if the transaction aborted, drop them.
//
// When Kafka fails the session itself (an outage, a fenced or expired transaction), the
// states are dropped and a new session joins once Kafka answers, resuming from the
// committed offsets and changelogs.
func (r *Rater) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		var err error
		if r.sess == nil {
			r.sess, err = r.open(ctx)
		}
		if err == nil {
			err = r.runSession(ctx)
			r.sess.Close()
			r.sess = nil
		}
		r.dropStates()
		if ctx.Err() != nil {
			return nil
		}
		r.notReady(fmt.Sprintf("session failed: %v", err))
		r.logger.Error("rater session failed, rejoining", "err", err, "backoff", backoff)
		if !wait.Sleep(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// runSession runs batches on r.sess until ctx ends (nil) or the session fails.
func (r *Rater) runSession(ctx context.Context) error {
	r.ready.Store(true)
	var (
		msgs  []Message
		b     = newBatch(r.cfg.MaxMessageBytes)
		parts []int32
	)
	for {
		var err error
		msgs, err = r.sess.Poll(ctx, msgs[:0])
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.notReady(fmt.Sprintf("poll: %v", err))
			r.logger.Warn("rater poll failed, retrying", "err", err)
			wait.Sleep(ctx, time.Second)
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		if r.stale.Swap(false) {
			r.dropStates()
		}
		start := time.Now()
		parts = parts[:0]
		for i := range msgs {
			if i == 0 || msgs[i].Partition != msgs[i-1].Partition {
				parts = append(parts, msgs[i].Partition)
			}
		}
		for _, p := range parts {
			if _, err := r.state(ctx, p); err != nil {
				return err
			}
		}
		if err := r.sess.Begin(); err != nil {
			return err
		}
		key := batchKey{msgs[0].Partition, msgs[0].Offset}
		quarantine := r.refusals >= r.cfg.StuckAfter && key == r.refusedAt
		if quarantine {
			r.quarantineBatch(msgs, b)
		} else if err := r.rateBatch(msgs, b); err != nil {
			_, _ = r.sess.End(ctx, false)
			return err
		}
		committed, err := r.sess.End(ctx, true)
		if errors.Is(err, ErrRefused) {
			if key != r.refusedAt {
				r.refusedAt, r.refusals = key, 0
			}
			r.refusals++
			r.refusal = err
			err = nil
		}
		if err != nil {
			r.notReady(fmt.Sprintf("end transaction: %v", err))
			return err
		}
		if !committed {
			// The batch is rolled back and will be consumed again: so must the states be.
			r.m.batches.WithLabelValues("aborted").Inc()
			r.dropStates()
			r.failures++
			if r.failures >= r.cfg.StuckAfter {
				why := fmt.Sprintf("%d batches in a row failed to commit (partitions %v); see the kafka transaction errors logged", r.failures, parts)
				if r.Ready() == nil {
					r.logger.Error("rater stuck: batches keep aborting", "failures", r.failures, "partitions", parts)
				}
				r.notReady(why)
				r.m.stuck.Set(1)
			}
			continue
		}
		if quarantine {
			r.m.quarantined.Add(float64(b.quarantined))
			r.logger.Error("rater quarantined a batch Kafka kept refusing: its records are on topic rejected, reason quarantined",
				"partition", key.part, "offset", key.offset, "records", b.quarantined, "refusals", r.refusals, "cause", r.refusal)
		}
		r.refusedAt, r.refusals, r.refusal = batchKey{}, 0, nil
		r.failures = 0
		r.ready.Store(true)
		r.m.stuck.Set(0)
		r.m.batches.WithLabelValues("committed").Inc()
		r.m.rated.Add(float64(b.nRated))
		r.m.tenants.add(&b.tenants)
		r.m.changelog.Add(float64(b.changelogBytes))
		for i := range b.rejs {
			r.m.rejected.WithLabelValues(b.rejs[i].Reason).Inc()
		}
		var devs int
		for _, st := range r.states {
			devs += st.Devices()
		}
		r.m.devices.Set(float64(devs))
		for _, p := range parts {
			st := r.states[p]
			if late := st.Late(); late > b.late[p] {
				r.m.late.Add(float64(late - b.late[p]))
			}
			st.ClearDirty()
		}
		r.m.latency.Observe(time.Since(start).Seconds())
	}
}

func (r *Rater) dropStates() {
	for p, st := range r.states {
		r.counter.Own(p, nil)
		st.Release()
		delete(r.states, p)
	}
}

// state returns the state of partition p, replaying its changelog when this instance
// holds none.
func (r *Rater) state(ctx context.Context, p int32) (*rating.State, error) {
	if st := r.states[p]; st != nil {
		return st, nil
	}
	start := time.Now()
	st := rating.NewState()
	n, err := r.store.Replay(ctx, p, st.Apply)
	if err != nil {
		st.Release()
		r.notReady(fmt.Sprintf("restore partition %d: %v", p, err))
		return nil, fmt.Errorf("rater: restore partition %d: %w", p, err)
	}
	r.m.restore.Observe(time.Since(start).Seconds())
	r.m.restoreItems.Add(float64(n))
	r.logger.Info("rater restored partition", "partition", p, "entries", n, "devices", st.Devices(),
		"seconds", time.Since(start).Seconds())
	r.states[p] = st
	r.counter.Own(p, st)
	return st, nil
}

// usageRejection is the rejection of a record the engine refused.
func usageRejection(u *record.Usage, err error) record.Rejection {
	rj := record.Rejection{Source: u.Source, Tenant: u.Tenant, Device: u.Device, Reason: record.ReasonOf(err),
		Detail: fmt.Sprintf("event %s: %v", u.EventID, err), Received: u.ReceivedTime}
	rj.SetRaw(record.AppendJSON(nil, u))
	return rj
}
