package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/record"
)

// Consumer reads Arrow usage batches from topic usage in a consumer group. Offsets are
// never committed automatically: the caller commits what it has durably written, so a
// crash replays from the last commit (at-least-once; the store collapses the replay).
type Consumer struct {
	cl     *kgo.Client
	logger *slog.Logger
}

// Batch is what one poll returned: the decoded records with the partition each came from,
// the messages that did not decode, and the offsets to commit once it is all stored.
type Batch struct {
	Records    []record.Usage
	Partitions []int32 // Partitions[i] is the partition of Records[i]
	Bad        []record.Rejection
}

// NewConsumer joins group on topic usage. onRevoked runs when partitions leave this
// member, after the last polled batch was committed or abandoned, so per-partition state
// can be dropped.
func NewConsumer(ctx context.Context, cfg Config, group string, logger *slog.Logger, onRevoked func(parts []int32)) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if group == "" {
		return nil, errors.New("kafka consumer: group is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lost := func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
		if onRevoked != nil {
			onRevoked(m[TopicUsage])
		}
	}
	opts := append(baseOpts(cfg, logger),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(TopicUsage),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(lost),
		kgo.OnPartitionsLost(lost),
		kgo.FetchMaxBytes(32<<20),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	if _, err := EnsureTopics(ctx, cl, cfg, TopicUsage, TopicRejected); err != nil {
		cl.Close()
		return nil, err
	}
	return &Consumer{cl: cl, logger: logger}, nil
}

// Poll waits for the next fetches and decodes them into b, reusing its slices. Until
// Done is called, no rebalance can take partitions away, so committing b stays valid.
func (c *Consumer) Poll(ctx context.Context, b *Batch) error {
	b.Records, b.Partitions, b.Bad = b.Records[:0], b.Partitions[:0], b.Bad[:0]
	fetches := c.cl.PollRecords(ctx, 0)
	if fetches.IsClientClosed() {
		return fmt.Errorf("kafka poll: %w", kgo.ErrClientClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var ferr error
	fetches.EachError(func(topic string, part int32, err error) {
		ferr = errors.Join(ferr, fmt.Errorf("kafka fetch %s/%d: %w", topic, part, err))
	})
	if ferr != nil {
		c.cl.AllowRebalance()
		return ferr
	}
	fetches.EachRecord(func(r *kgo.Record) {
		n := len(b.Records)
		var err error
		b.Records, err = record.DecodeUsage(r.Value, b.Records)
		if err != nil {
			b.Records = b.Records[:n]
			b.Bad = append(b.Bad, record.Rejection{Source: "kafka", Reason: "bad_batch",
				Detail: fmt.Sprintf("topic %s partition %d offset %d: %v", r.Topic, r.Partition, r.Offset, err),
				Raw:    r.Value, Received: r.Timestamp.UnixMilli()})
			return
		}
		for i := n; i < len(b.Records); i++ {
			b.Partitions = append(b.Partitions, r.Partition)
		}
	})
	return nil
}

// Commit commits everything polled so far: call it only after all of it is durably
// stored. Polls and commits alternate on one goroutine, so "polled" is exactly the batch.
func (c *Consumer) Commit(ctx context.Context) error {
	if err := c.cl.CommitUncommittedOffsets(ctx); err != nil {
		return fmt.Errorf("kafka commit: %w", err)
	}
	return nil
}

// Done lets a pending rebalance proceed; call it after Commit (or after giving up on b).
func (c *Consumer) Done() { c.cl.AllowRebalance() }

// Close leaves the group. A poll blocks rebalances until allowed, and leaving is one, so
// it is allowed first: whatever was polled and not committed is consumed again by the
// partitions' next owner.
func (c *Consumer) Close() {
	c.cl.AllowRebalance()
	c.cl.Close()
}
