package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Message is one consumed Kafka record, stripped to what the stages use. Value aliases
// the client's buffer until the next poll.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Value     []byte
	Time      int64 // ms since the epoch
}

// Consumer reads topics in a consumer group, read-committed. Offsets are never committed
// automatically: the caller commits what it has durably written, so a crash replays from
// the last commit (at-least-once; the store collapses the replay).
type Consumer struct {
	cl     *kgo.Client
	group  string
	topics []string
	logger *slog.Logger
}

// NewConsumer joins group on topics (creating them if absent). onRevoked runs when
// partitions leave this member, so per-partition state can be dropped.
func NewConsumer(ctx context.Context, cfg Config, group string, topics []string, logger *slog.Logger,
	onRevoked func(topic string, parts []int32)) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if group == "" {
		return nil, errors.New("kafka consumer: group is required")
	}
	opts := append(append(baseOpts(cfg, logger, group), groupOpts(cfg, group)...),
		kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(32<<20),
	)
	if onRevoked != nil {
		lost := func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			for t, ps := range m {
				onRevoked(t, ps)
			}
		}
		opts = append(opts, kgo.OnPartitionsRevoked(lost), kgo.OnPartitionsLost(lost))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	if _, err := EnsureTopics(ctx, cl, cfg, topics...); err != nil {
		cl.Close()
		return nil, err
	}
	return &Consumer{cl: cl, group: group, topics: topics, logger: logger}, nil
}

// Poll waits for the next fetches and appends them to into. Until Done is called no
// rebalance can take partitions away, so committing what was polled stays valid.
func (c *Consumer) Poll(ctx context.Context, into []Message) ([]Message, error) {
	return poll(ctx, c.cl, 0, into, c.logger)
}

// poll fetches at most max messages (0: what is buffered); a nil ctx takes only what is
// buffered, without waiting. Every record the client handed over is returned, even beside
// a partition's error or a context that ended meanwhile: the client counts it as polled,
// so a commit would pass it, and dropping it would lose it. The error is returned only
// when no record came.
func poll(ctx context.Context, cl *kgo.Client, max int, into []Message, logger *slog.Logger) ([]Message, error) {
	fetches := cl.PollRecords(ctx, max)
	if fetches.IsClientClosed() {
		return into, fmt.Errorf("kafka poll: %w", kgo.ErrClientClosed)
	}
	n := len(into)
	fetches.EachRecord(func(r *kgo.Record) {
		into = append(into, Message{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Value: r.Value,
			Time: r.Timestamp.UnixMilli()})
	})
	// A context that ends while the poll returns records (a batch's deadline, above all)
	// must not drop them either.
	if ctx != nil && len(into) == n {
		if err := ctx.Err(); err != nil {
			return into, err
		}
	}
	var ferr error
	fetches.EachError(func(topic string, part int32, err error) {
		if ctx != nil && errors.Is(err, ctx.Err()) {
			return // the injected fetch of a context that ended: records came nonetheless
		}
		ferr = errors.Join(ferr, fmt.Errorf("kafka fetch %s/%d: %w", topic, part, err))
	})
	if ferr != nil && len(into) > n {
		if logger != nil {
			logger.Warn("kafka fetch failed beside records fetched; the client retries", "err", ferr)
		}
		ferr = nil
	}
	return into, ferr
}

// Buffered appends what the client has already fetched, without waiting, up to max
// messages (0: all of it).
func (c *Consumer) Buffered(into []Message, max int) []Message {
	into, _ = poll(nil, c.cl, max, into, c.logger) //nolint:staticcheck // nil: no wait
	return into
}

// Commit commits everything polled so far: call it only after all of it is durably
// stored. Polls and commits alternate on one goroutine, so "polled" is exactly the batch.
func (c *Consumer) Commit(ctx context.Context) error {
	if err := c.cl.CommitUncommittedOffsets(ctx); err != nil {
		return fmt.Errorf("kafka commit: %w", err)
	}
	return nil
}

// Done lets a pending rebalance proceed; call it after Commit (or after giving up).
func (c *Consumer) Done() { c.cl.AllowRebalance() }

// LagCollector reports this consumer's group lag on its topics
// (fleetmeter_kafka_consumer_lag) at scrape time.
func (c *Consumer) LagCollector() prometheus.Collector {
	return newLagCollector(kadm.NewClient(c.cl), c.group, c.topics, c.logger)
}

// Ping checks the cluster answers.
func (c *Consumer) Ping(ctx context.Context) error { return c.cl.Ping(ctx) }

// Close leaves the group. A poll blocks rebalances until allowed, and leaving is one, so
// it is allowed first: whatever was polled and not committed is consumed again by the
// partitions' next owner.
func (c *Consumer) Close() {
	c.cl.AllowRebalance()
	c.cl.Close()
}
