package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TxSession is a consume-transform-produce loop in one Kafka transaction per batch: the
// records produced, and the consumed offsets, become visible together or not at all.
// A rebalance or crash before End aborts the batch; the partitions' next owner consumes
// it again from the last committed offsets.
type TxSession struct {
	sess   *kgo.GroupTransactSession
	cfg    Config
	logger *slog.Logger

	mu      sync.Mutex
	errs    []error
	pending sync.WaitGroup
	refused error // why the last End aborted, when Kafka refused what the batch produced
}

// NewTxSession joins group on topic in, producing transactionally as txID. txID must be
// stable per instance (it fences a zombie predecessor) and unique among instances.
// onLost runs when partitions of in leave this member: their in-memory state is stale.
func NewTxSession(ctx context.Context, cfg Config, group, txID, in string, out []string, logger *slog.Logger,
	onLost func(parts []int32)) (*TxSession, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if group == "" || txID == "" {
		return nil, errors.New("kafka transactions: group and transactional id are required")
	}
	lost := func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
		if onLost != nil {
			onLost(m[in])
		}
	}
	opts := append(append(baseOpts(cfg, logger, group), groupOpts(cfg, group)...),
		kgo.TransactionalID(txID),
		kgo.TransactionTimeout(60*time.Second),
		kgo.ConsumeTopics(in),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.FetchMaxBytes(4<<20),
		kgo.OnPartitionsRevoked(lost),
		kgo.OnPartitionsLost(lost),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka transactions: %w", err)
	}
	// Outputs partitioned like the input are created with the input's partition count.
	counts, err := EnsureTopics(ctx, sess.Client(), cfg, in)
	if err != nil {
		sess.Close()
		return nil, err
	}
	ocfg := cfg
	ocfg.Partitions = counts[in]
	if _, err := EnsureTopics(ctx, sess.Client(), ocfg, out...); err != nil {
		sess.Close()
		return nil, err
	}
	// Initialize the producer now, not at the first batch: with this transactional id it
	// fences a predecessor and has the coordinator abort the transaction that one left
	// open, so the partitions' state can be replayed to the end before the first batch
	// (a replay reads committed data only, and would otherwise wait out the timeout).
	if _, _, err := sess.Client().ProducerID(ctx); err != nil {
		sess.Close()
		return nil, fmt.Errorf("kafka transactions: init producer id: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &TxSession{sess: sess, cfg: cfg, logger: logger}, nil
}

// One transaction takes the first message a poll waits for and then whatever is already
// fetched, up to these bounds: so a rater that keeps up commits a transaction per
// message without waiting for more, and one that lags (a burst, a backlog after an
// outage) commits fewer, larger transactions, each bounded. A transaction's fixed cost
// (registering its partitions, committing the offsets, the two-phase commit, a forced
// heartbeat) is several round trips: at the mediator's linger a message carries a few
// dozen records, and two messages per transaction, as before, left the rater committing
// a transaction per 30 records and falling behind at a quarter of the pipeline's maximum.
// The bounds are of the input: maxTxnBytes of encoded usage is some tens of thousands of
// records (the rated output is split by its encoded size, see rater), and keeps a
// rater's working set within a few tens of MB besides its devices.
//
// A transaction also gathers for txnGather after its first message: with the rater
// keeping up at the pipeline's maximum, what was already fetched was a few messages, 75
// records a transaction, and each transaction's round trips and markers cost the broker
// more than the rater saved (kfake's CPU per record rose by a third when the rater got
// faster). The gather bounds the transactions to about a hundred a second whatever the
// load, for at most txnGather more latency per record.
const (
	maxTxnMessages = 64
	maxTxnBytes    = 1 << 20
	txnGather      = 10 * time.Millisecond
)

// Poll appends the next fetched messages to into: it waits for one, then takes what is
// fetched within txnGather, maxTxnMessages and maxTxnBytes. The messages come grouped by
// partition, each partition's in offset order. After the brokers refused a batch's output
// (Refused), the next batches are of one message until one commits, so a batch the rater
// quarantines in the end holds no more than the message it cannot get past.
func (s *TxSession) Poll(ctx context.Context, into []Message) ([]Message, error) {
	n := len(into)
	into, err := poll(ctx, s.sess.Client(), 1, into, s.logger)
	if err != nil || len(into) == n || s.Refused() != nil {
		return into, err
	}
	size := len(into[n].Value)
	gather, cancel := context.WithTimeout(ctx, txnGather)
	defer cancel()
	for len(into)-n < maxTxnMessages && size < maxTxnBytes && gather.Err() == nil {
		k := len(into)
		var perr error
		if into, perr = poll(gather, s.sess.Client(), 1, into, s.logger); len(into) > k {
			size += len(into[k].Value)
		}
		if perr != nil {
			break // the gather's end; any other error is the next Poll's to report
		}
	}
	// Each poll's messages are grouped by partition; several polls' are regrouped.
	slices.SortStableFunc(into[n:], func(a, b Message) int { return cmp.Compare(a.Partition, b.Partition) })
	return into, nil
}

// Begin opens the transaction of one batch.
func (s *TxSession) Begin() error {
	s.mu.Lock()
	s.errs = s.errs[:0]
	s.mu.Unlock()
	if err := s.sess.Begin(); err != nil {
		return fmt.Errorf("kafka begin transaction: %w", err)
	}
	return nil
}

// Produce adds a record to the open transaction. value must not change until End.
func (s *TxSession) Produce(topic string, part int32, key, value []byte, schema string) {
	r := &kgo.Record{Topic: topic, Partition: part, Key: key, Value: value}
	if schema != "" {
		r.Headers = []kgo.RecordHeader{{Key: HeaderSchema, Value: []byte(schema)}}
	}
	s.pending.Add(1)
	s.sess.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
		defer s.pending.Done()
		if err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
		}
	})
}

// End commits the batch (its produced records and the consumed offsets) or aborts it.
// committed is false when it aborted: on a failed produce, on a rebalance during the
// batch, or when commit was false; the session then rewinds to the committed offsets.
func (s *TxSession) End(ctx context.Context, commit bool) (bool, error) {
	try := kgo.TransactionEndTry(commit)
	if commit {
		if err := s.sess.Client().Flush(ctx); err != nil {
			return false, fmt.Errorf("kafka flush: %w", err)
		}
		s.pending.Wait()
		s.mu.Lock()
		s.refused = nil
		if len(s.errs) > 0 {
			try = kgo.TryAbort
			err := errors.Join(s.errs...)
			s.logger.Error("kafka transaction aborted: a produce failed", "err", err)
			if !anyRetriable(s.errs) {
				s.refused = err
			}
		}
		s.mu.Unlock()
	}
	committed, err := s.sess.End(ctx, try)
	if err != nil {
		return false, fmt.Errorf("kafka end transaction: %w", err)
	}
	return committed, nil
}

// Refused returns why the last End aborted when the brokers refused what the batch
// produced for good (a message too large, an invalid record): the same input will be
// refused again. Nil after a commit, or when the failure may pass (an outage, a timeout).
func (s *TxSession) Refused() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

func anyRetriable(errs []error) bool {
	for _, err := range errs {
		if kerr.IsRetriable(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) {
			return true
		}
		var ke *kerr.Error
		if !errors.As(err, &ke) { // not a broker's answer: a client or network failure
			return true
		}
	}
	return false
}

// Close aborts what is open and leaves the group.
func (s *TxSession) Close() { s.sess.CloseAllowingRebalance() }

// AbortOpen ends whatever transaction txID left open (a killed process's): initializing a
// producer with that transactional id fences the old one and has the coordinator abort
// its transaction. Nothing is produced with it afterwards.
func AbortOpen(ctx context.Context, cfg Config, txID string, logger *slog.Logger) error {
	cl, err := kgo.NewClient(append(baseOpts(cfg, logger, "fence"), kgo.TransactionalID(txID),
		kgo.TransactionTimeout(60*time.Second))...)
	if err != nil {
		return fmt.Errorf("kafka abort %s: %w", txID, err)
	}
	defer cl.Close()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("kafka abort %s: init producer id: %w", txID, err)
	}
	return nil
}
