// Package loader moves committed rated records and rejections into the store (ClickHouse
// in production). It runs over two small interfaces, the Source of committed messages
// and the Store, so its at-least-once loop is tested with fakes; the pipeline wires it to
// Kafka and ClickHouse.
//
// # Why nothing is lost and nothing counts twice
//
// Per batch: insert into the store, retrying until it accepts; then commit the consumed
// offsets; only then poll again. A batch is what arrives within BatchWait of its first
// message, up to BatchRows rows: ClickHouse writes a part per insert (and one per
// materialized view), so an insert per poll, a few hundred rows each under a steady
// stream, made the server spend more CPU on parts and merges than on rows. Nothing is
// consumed while the store is down, so memory stays bounded by one batch. A crash between insert and commit inserts the batch again
// on restart: the store keys rows by record_id and every billing read collapses copies,
// keeping the first rating, so no total changes. The source delivers only committed
// transactions of the rater (read committed), so an aborted batch never reaches the store.
package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/internal/wait"
	"fleetmeter/record"
)

// Table names of the rows metrics.
const (
	tableRated    = "rated_usage"
	tableRejected = "rejected_usage"
)

// Message is one consumed message of the rated or the rejected topic.
type Message struct {
	Rated     bool // from the rated topic (Arrow IPC); else a rejection (JSON)
	Partition int32
	Offset    int64
	Value     []byte
	Time      int64 // ms since the epoch
}

// Source delivers committed messages. Commit stores the offsets of everything polled;
// Done lets the source rebalance between batches.
type Source interface {
	Poll(ctx context.Context, into []Message) ([]Message, error)
	Commit(ctx context.Context) error
	Done()
	Ping(ctx context.Context) error
	Close()
}

// Store is where rated records and rejections land. Inserting the same record_id twice
// must not change what billing reads.
type Store interface {
	InsertRated(ctx context.Context, recs []record.Rated) error
	InsertRejected(ctx context.Context, rejs []record.Rejection) error
	Ping(ctx context.Context) error
}

// Loader is the loading loop.
type Loader struct {
	src     Source
	store   Store
	logger  *slog.Logger
	stalled atomic.Bool
	loaded  *prometheus.CounterVec
	retries prometheus.Counter
	insert  *prometheus.HistogramVec
	delay   prometheus.Histogram
	// MaxBackoff bounds the wait between retries (default 10 s).
	MaxBackoff time.Duration
	// BatchRows ends a batch at this many rows (rated and rejected; default
	// DefaultBatchRows); a poll may overshoot it by what it fetched at once.
	BatchRows int
	// BatchWait is how long a batch keeps polling after its first message (default
	// DefaultBatchWait; 0: one poll per batch): the most a record waits for others.
	BatchWait time.Duration
}

// The batch bounds' defaults. 150 ms keeps inserts to a few per second under any load
// (an insert into rated_usage and its views takes 0.05-0.5 s on two busy cores), which
// ClickHouse merges with ease, and adds at most 150 ms to a record's way (the pipeline's
// aim is under a second from device to query; 250 ms cost the p99 about 0.1-0.2 s and
// saved ClickHouse little CPU); 100,000 rows is clickhouse.max_batch's default, the most
// one insert carries.
const (
	DefaultBatchRows = 100_000
	DefaultBatchWait = 150 * time.Millisecond
)

// New builds a loader over src and store.
func New(src Source, store Store, reg prometheus.Registerer, logger *slog.Logger) *Loader {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Loader{src: src, store: store, logger: logger, MaxBackoff: 10 * time.Second,
		BatchRows: DefaultBatchRows, BatchWait: DefaultBatchWait,
		loaded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_loader_rows_total",
			Help: "Rows inserted into the store, by table."}, []string{"table"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetmeter_loader_retries_total",
			Help: "Store or commit attempts that failed and were retried."}),
		insert: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fleetmeter_loader_insert_seconds",
			Help: "One insert attempt into the store, failed ones included, by table.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 14)},
			[]string{"table"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetmeter_loader_record_delay_seconds",
			Help:    "From a usage record's receipt by the mediator to its rated record's insert into the store.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}),
	}
	// Both tables' series exist from the start, so a dashboard shows 0 rather than nothing.
	l.loaded.WithLabelValues(tableRated)
	l.loaded.WithLabelValues(tableRejected)
	l.insert.WithLabelValues(tableRated)
	l.insert.WithLabelValues(tableRejected)
	if reg != nil {
		reg.MustRegister(l.loaded, l.retries, l.insert, l.delay)
	}
	return l
}

// Ready reports whether the store accepts inserts and the source answers.
func (l *Loader) Ready(ctx context.Context) error {
	if l.stalled.Load() {
		return errors.New("loader stalled: store or kafka refusing writes, retrying")
	}
	if err := l.src.Ping(ctx); err != nil {
		return err
	}
	return l.store.Ping(ctx)
}

// Run loads until ctx ends (see the package doc), then closes the source.
func (l *Loader) Run(ctx context.Context) error {
	defer l.src.Close()
	var (
		msgs  []Message
		rated []record.Rated
		rejs  []record.Rejection
	)
	for {
		var err error
		msgs, err = l.src.Poll(ctx, msgs[:0])
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			l.logger.Warn("loader poll failed, retrying", "err", err)
			l.src.Done()
			wait.Sleep(ctx, time.Second)
			continue
		}
		if len(msgs) == 0 {
			l.src.Done()
			continue
		}
		rated, rejs = decode(msgs, rated[:0], rejs[:0])
		if !l.fill(ctx, &msgs, &rated, &rejs) {
			return nil
		}
		if !l.retry(ctx, "insert rated", l.timed(tableRated, func() error { return l.store.InsertRated(ctx, rated) })) {
			return nil
		}
		l.observeDelay(rated)
		if !l.retry(ctx, "insert rejected", l.timed(tableRejected, func() error { return l.store.InsertRejected(ctx, rejs) })) ||
			!l.retry(ctx, "commit", func() error { return l.src.Commit(ctx) }) {
			return nil
		}
		l.src.Done()
		l.loaded.WithLabelValues(tableRated).Add(float64(len(rated)))
		l.loaded.WithLabelValues(tableRejected).Add(float64(len(rejs)))
	}
}

// fill keeps polling into the batch until it holds BatchRows rows or BatchWait has
// passed since its first message; false when ctx ended. A failed poll ends the batch
// early: what came is loaded, and the next poll meets the failure again.
func (l *Loader) fill(ctx context.Context, msgs *[]Message, rated *[]record.Rated, rejs *[]record.Rejection) bool {
	if l.BatchWait <= 0 {
		return true
	}
	deadline := time.Now().Add(l.BatchWait)
	for len(*rated)+len(*rejs) < l.BatchRows && time.Now().Before(deadline) {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		k := len(*msgs)
		var err error
		*msgs, err = l.src.Poll(wctx, *msgs)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		*rated, *rejs = decode((*msgs)[k:], *rated, *rejs)
		if err != nil {
			break
		}
	}
	return true
}

// decode appends the rows of msgs to rated and rejs; a message that does not decode
// becomes a rejection holding it.
func decode(msgs []Message, rated []record.Rated, rejs []record.Rejection) ([]record.Rated, []record.Rejection) {
	for _, m := range msgs {
		if m.Rated {
			n := len(rated)
			var err error
			if rated, err = record.DecodeRated(m.Value, rated); err != nil {
				rated = rated[:n]
				rj := record.Rejection{Source: record.SourceKafka, Reason: record.ReasonBadBatch,
					Detail: fmt.Sprintf("rated partition %d offset %d: %v", m.Partition, m.Offset, err), Received: m.Time}
				rj.SetRaw(m.Value)
				rejs = append(rejs, rj)
			}
			continue
		}
		rj, err := record.ParseRejection(m.Value)
		if err != nil {
			rj = record.Rejection{Source: record.SourceKafka, Reason: record.ReasonBadRejection,
				Detail: fmt.Sprintf("rejected partition %d offset %d: %v", m.Partition, m.Offset, err), Received: m.Time}
			rj.SetRaw(m.Value)
		}
		rejs = append(rejs, rj)
	}
	return rated, rejs
}

// timed measures each attempt of insert into table.
func (l *Loader) timed(table string, insert func() error) func() error {
	h := l.insert.WithLabelValues(table)
	return func() error {
		start := time.Now()
		err := insert()
		h.Observe(time.Since(start).Seconds())
		return err
	}
}

// observeDelay measures how long the records took from the mediator to the store.
func (l *Loader) observeDelay(rated []record.Rated) {
	now := time.Now().UnixMilli()
	for i := range rated {
		if r := rated[i].ReceivedTime; r > 0 && r <= now {
			l.delay.Observe(float64(now-r) / 1000)
		}
	}
}

// retry runs fn until it succeeds, backing off up to MaxBackoff; false when ctx ended first.
func (l *Loader) retry(ctx context.Context, what string, fn func() error) bool {
	backoff := min(100*time.Millisecond, l.MaxBackoff)
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
		backoff = min(backoff*2, l.MaxBackoff)
	}
}
