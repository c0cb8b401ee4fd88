package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/record"
)

// Producer batches usage records per partition into Arrow IPC messages on topic usage
// and writes rejections as JSON to topic rejected. Produce returns once every record it
// was given is acknowledged by Kafka (acks=all, idempotent), which is when a collector may
// acknowledge its own source.
type Producer struct {
	cl     *kgo.Client
	cfg    Config
	parts  int32 // partitions of topic usage
	rparts int32 // partitions of topic rejected
	logger *slog.Logger

	mu      sync.Mutex
	bufs    []partBuf
	enc     *record.UsageEncoder
	scratch []byte
	closed  bool

	stop chan struct{}
	done chan struct{}
}

// partBuf accumulates one partition's records and the callers waiting on them.
type partBuf struct {
	recs    []record.Usage
	waiters []*waiter
	first   time.Time
}

// waiter is one Enqueue call: it completes when all partitions holding its records have
// been acknowledged.
type waiter struct {
	mu      sync.Mutex
	pending int
	err     error
	done    func(error)
}

func (w *waiter) add() {
	w.mu.Lock()
	w.pending++
	w.mu.Unlock()
}

func (w *waiter) finish(err error) {
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
	}
	w.pending--
	last := w.pending == 0
	w.mu.Unlock()
	if last {
		w.done(w.err)
	}
}

// NewProducer connects, creates the topics if absent and starts the linger loop.
func NewProducer(ctx context.Context, cfg Config, logger *slog.Logger) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := append(baseOpts(cfg, logger),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), // batching happens here, per partition, before encoding
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Payloads are LZ4-compressed Arrow already: compressing again costs CPU, saves nothing.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(1024),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	counts, err := EnsureTopics(ctx, cl, cfg, TopicUsage, TopicRejected)
	if err != nil {
		cl.Close()
		return nil, err
	}
	p := &Producer{cl: cl, cfg: cfg, parts: counts[TopicUsage], rparts: counts[TopicRejected], logger: logger,
		enc: record.NewUsageEncoder(), stop: make(chan struct{}), done: make(chan struct{})}
	p.bufs = make([]partBuf, p.parts)
	go p.lingerLoop()
	return p, nil
}

// Partitions is the partition count of topic usage that records are routed by.
func (p *Producer) Partitions() int32 { return p.parts }

// Enqueue queues recs by partition; done runs once Kafka has acknowledged all of them.
// Calls for one device keep their order: each partition buffer is appended under one lock.
func (p *Producer) Enqueue(recs []record.Usage, done func(error)) {
	if len(recs) == 0 {
		done(nil)
		return
	}
	w := &waiter{done: done}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		done(errClosed)
		return
	}
	// pending starts at one, a guard held until every record is queued, so a batch
	// acknowledged meanwhile cannot complete the call early.
	w.pending = 1
	for i := range recs {
		part := PartitionOf(recs[i].Tenant, recs[i].Device, p.parts)
		b := &p.bufs[part]
		if len(b.recs) == 0 {
			b.first = time.Now()
		}
		b.recs = append(b.recs, recs[i])
		if n := len(b.waiters); n == 0 || b.waiters[n-1] != w {
			b.waiters = append(b.waiters, w)
			w.add() // a batch already flushed may be finishing w concurrently
		}
		if len(b.recs) >= p.cfg.BatchRecords {
			p.flushLocked(part)
		}
	}
	p.mu.Unlock()
	w.finish(nil)
}

var errClosed = errors.New("kafka produce: producer closed")

// flushLocked encodes one partition's buffer into one message and produces it. The
// waiters complete in the produce callback, after the broker acknowledged the message.
func (p *Producer) flushLocked(part int32) {
	b := &p.bufs[part]
	if len(b.recs) == 0 {
		return
	}
	waiters := b.waiters
	payload, err := p.enc.Encode(p.scratch[:0], b.recs)
	b.recs = b.recs[:0]
	b.waiters = nil
	if err != nil {
		for _, w := range waiters {
			w.finish(fmt.Errorf("kafka produce: encode batch: %w", err))
		}
		return
	}
	// Encoding goes into a reused, already grown buffer (growing it during the IPC write
	// is what makes Arrow encoding slow); the message gets an exact-size copy, since kgo
	// holds it until acknowledged.
	value := append([]byte(nil), payload...)
	p.scratch = payload[:0]
	rec := &kgo.Record{Topic: TopicUsage, Partition: part, Value: value,
		Headers: []kgo.RecordHeader{{Key: HeaderSchema, Value: []byte(record.Schema)}}}
	p.cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		if err != nil {
			err = fmt.Errorf("kafka produce: %w", err)
		}
		for _, w := range waiters {
			w.finish(err)
		}
	})
}

func (p *Producer) lingerLoop() {
	defer close(p.done)
	tick := time.NewTicker(max(p.cfg.Linger/2, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-tick.C:
			p.mu.Lock()
			for part := range p.bufs {
				if b := &p.bufs[part]; len(b.recs) > 0 && now.Sub(b.first) >= p.cfg.Linger {
					p.flushLocked(int32(part))
				}
			}
			p.mu.Unlock()
		}
	}
}

// EnqueueRejects writes rejections to topic rejected, one JSON object per message keyed
// by device; done runs once all are acknowledged.
func (p *Producer) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	if len(rejs) == 0 {
		done(nil)
		return
	}
	w := &waiter{done: done, pending: len(rejs)}
	for i := range rejs {
		r := &kgo.Record{Topic: TopicRejected, Key: []byte(rejs[i].Tenant + "/" + rejs[i].Device),
			Partition: PartitionOf(rejs[i].Tenant, rejs[i].Device, p.rparts), Value: rejs[i].AppendJSON(nil)}
		p.cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			if err != nil {
				err = fmt.Errorf("kafka reject: %w", err)
			}
			w.finish(err)
		})
	}
}

// Ping checks the cluster is reachable.
func (p *Producer) Ping(ctx context.Context) error { return p.cl.Ping(ctx) }

// Close flushes what is buffered, waits for its acknowledgements and disconnects.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for part := range p.bufs {
		p.flushLocked(int32(part))
	}
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	err := p.cl.Flush(ctx)
	p.cl.Close()
	if err != nil {
		return fmt.Errorf("kafka producer close: %w", err)
	}
	return nil
}
