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

// MaxMessageBytes bounds the value of every message the producer writes: 900 KiB, under
// kgo's default ProducerBatchMaxBytes (1,000,012) and the broker's default
// message.max.bytes (1,048,588), with room to spare for record and batch headers.
const MaxMessageBytes = 900 << 10

// ErrRecordTooLarge is the error of a call holding a record that encodes to more than
// MaxMessageBytes alone. Valid records cannot (their ids are bounded); it is bad input,
// not a reason to retry.
var ErrRecordTooLarge = errors.New("kafka produce: record too large for a message")

// gather is how long a buffer waits for more records before it goes out when no message
// is in flight (at most Config.Linger). Requests come in waves (devices answered together
// send again together): without it the first record of a wave went out alone and the
// rest waited for it, 3.4 records a message with 64 CoAP clients over 8 partitions; with
// it 6, and the CPU per request a fifth lower (BenchmarkCoAPKafka). It adds half a
// millisecond to a lone device's answer. Tried again once small batches cost far less to
// encode (record's smallWriter): with 0.2 ms or none the collector's ratio to bare
// go-coap fell from about 0.6 to 0.44-0.51 (two rounds each).
const gather = 500 * time.Microsecond

// recordBytes is what a record adds to a buffer's size estimate beside its strings: its
// fixed-width columns, offsets and dictionary indexes, about 100 bytes raw, after LZ4 on
// real data. Incompressible columns make a message larger than estimated, by at most
// about 1.7 times at the default batch_bytes, which still fits MaxMessageBytes; past
// that, flushLocked splits by encoded size.
const recordBytes = 32

// Producer batches usage records per partition into Arrow IPC messages on topic usage
// and writes rejections as JSON to topic rejected. Produce returns once every record it
// was given is acknowledged by Kafka (acks=all, idempotent), which is when a collector may
// acknowledge its own source. No message exceeds MaxMessageBytes, whatever shares it:
// one tenant's long records cannot make another's unwritable.
type Producer struct {
	cl       *kgo.Client
	cfg      Config
	parts    int32 // partitions of topic usage
	rparts   int32 // partitions of topic rejected
	maxBytes int   // bound of a message value: MaxMessageBytes
	logger   *slog.Logger

	mu      sync.Mutex
	bufs    []partBuf
	enc     *record.UsageEncoder
	scratch []byte
	chunks  []chunk // flushLocked's, reused
	fresh   []int32 // Enqueue's: partitions whose buffer it found empty, reused
	closed  bool

	// inflight counts the messages produced and not yet acknowledged, all partitions
	// together. A buffer goes out once there are none (group commit), after gather:
	// records wait for the linger only while messages are on their way, and those that
	// arrive meanwhile share the next message of their partition. The last
	// acknowledgement flushes every partition at once, so they share the next produce
	// request: kgo has one request in flight per broker (idempotence), and partitions
	// that each waited for their own message took turns on it, one partition a request
	// (1.15 batches a request with 64 devices over 8 partitions).
	inflight int

	failed sync.WaitGroup // completions of chunks that failed before they were produced
	// ctx is what every Produce call runs under. kgo's Produce blocks while its buffer is
	// full (Kafka unreachable), and a flush does so holding mu; Close cancels ctx once its
	// own deadline passes, which fails the blocked records (their callers acknowledge
	// nothing) and frees mu.
	ctx    context.Context
	cancel context.CancelFunc
}

// partBuf accumulates one partition's records and the callers waiting on them.
type partBuf struct {
	recs    []record.Usage
	waiters []span
	bytes   int // estimated encoded size of recs: decides when to flush, bounds nothing
	first   time.Time
	// linger flushes the buffer Config.Linger after its first record came in: one timer
	// per partition, armed by the record that finds the buffer empty, so a record waits
	// the linger and no longer, and an idle producer does not wake up.
	linger *time.Timer
}

// span is one waiter's records in a partition buffer: from start up to the next span's
// start, or the end of the buffer. An Enqueue call appends under the lock, so its records
// in one buffer are contiguous.
type span struct {
	w     *waiter
	start int
}

// chunk is records [lo, hi) of a flushed buffer: encoded into value, or failed with err.
type chunk struct {
	lo, hi int
	value  []byte
	err    error
	spans  []span // the waiters holding records in [lo, hi)
}

// estimate is rec's share of a buffer's size estimate. Allocation-free: it runs per record.
func estimate(u *record.Usage) int {
	return recordBytes + len(u.EventID) + len(u.Tenant) + len(u.Device) + len(u.Source) + len(u.PLMN) +
		len(u.Cell) + len(u.RAT) + len(u.SliceSD)
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

// NewProducer connects and creates the topics if absent.
func NewProducer(ctx context.Context, cfg Config, logger *slog.Logger) (*Producer, error) {
	return newProducer(ctx, cfg, logger, MaxMessageBytes)
}

// newProducer is NewProducer with the message bound and client options of a test.
func newProducer(ctx context.Context, cfg Config, logger *slog.Logger, maxBytes int, extra ...kgo.Opt) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := append(baseOpts(cfg, logger, "producer"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), // batching happens here, per partition, before encoding
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Payloads are LZ4-compressed Arrow already: compressing again costs CPU, saves nothing.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(1024),
	)
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	counts, err := EnsureTopics(ctx, cl, cfg, TopicUsage, TopicRejected)
	if err != nil {
		cl.Close()
		return nil, err
	}
	p := &Producer{cl: cl, cfg: cfg, parts: counts[TopicUsage], rparts: counts[TopicRejected], maxBytes: maxBytes,
		logger: logger, enc: record.NewUsageEncoder()}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.bufs = make([]partBuf, p.parts)
	return p, nil
}

// Partitions is the partition count of topic usage that records are routed by.
func (p *Producer) Partitions() int32 { return p.parts }

// Enqueue queues recs by partition; done runs once Kafka has acknowledged all of them,
// with the first error if any. Calls for one device keep their order: each partition
// buffer is appended under one lock. A buffer is flushed at Config.BatchRecords records or
// at an estimated Config.BatchBytes, whichever comes first; short of that, gather after
// its first record when no message is in flight, else once the last message in flight
// is acknowledged; never later than Config.Linger.
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
	p.fresh = p.fresh[:0]
	for i := range recs {
		u := &recs[i]
		part := PartitionOf(u.Tenant, u.Device, p.parts)
		b := &p.bufs[part]
		if len(b.recs) == 0 {
			b.first = time.Now()
			p.armLocked(part)
			p.fresh = append(p.fresh, part)
		}
		if n := len(b.waiters); n == 0 || b.waiters[n-1].w != w {
			b.waiters = append(b.waiters, span{w: w, start: len(b.recs)})
			w.add() // a batch already flushed may be finishing w concurrently
		}
		b.recs = append(b.recs, *u)
		b.bytes += estimate(u)
		if len(b.recs) >= p.cfg.BatchRecords || b.bytes >= p.cfg.BatchBytes {
			p.flushLocked(part)
		}
	}
	// A buffer this call started goes out after gather unless a message is in flight
	// (then when the last is acknowledged); a buffer it found non-empty waits already.
	for _, part := range p.fresh {
		if b := &p.bufs[part]; p.inflight == 0 && len(b.recs) > 0 {
			if g := min(gather, p.cfg.Linger); g > 0 {
				b.linger.Reset(g)
			} else {
				p.flushLocked(part)
			}
		}
	}
	p.mu.Unlock()
	w.finish(nil)
}

var errClosed = errors.New("kafka produce: producer closed")

// flushLocked encodes one partition's buffer into messages and produces them: one
// message, or, when the encoding exceeds the bound, as many as halving takes (the estimate
// that triggered the flush is no bound). Each waiter counts once per buffer when it
// enters it (Enqueue); a waiter whose records span k messages is counted k-1 more times
// here, before any of them is produced, so it completes once, after the last of them was
// acknowledged. A message's waiters complete in its produce callback, after the broker
// acknowledged it; the messages of a partition are produced in order, and kgo keeps it.
func (p *Producer) flushLocked(part int32) {
	b := &p.bufs[part]
	if len(b.recs) == 0 {
		return
	}
	spans := b.waiters
	p.chunks = p.encodeLocked(b.recs, 0, len(b.recs), p.chunks[:0])
	b.recs, b.waiters, b.bytes = b.recs[:0], nil, 0
	first := 0 // the first span overlapping the chunk; only it can begin in an earlier one
	for i := range p.chunks {
		c := &p.chunks[i]
		for first+1 < len(spans) && spans[first+1].start <= c.lo {
			first++
		}
		last := first
		for last+1 < len(spans) && spans[last+1].start < c.hi {
			last++
		}
		if spans[first].start < c.lo {
			spans[first].w.add()
		}
		c.spans = spans[first : last+1]
	}
	for i := range p.chunks {
		c := &p.chunks[i]
		ws := c.spans
		if c.err != nil {
			// Not under p.mu: a done may enqueue again.
			err := c.err
			p.failed.Go(func() { finishAll(ws, err) })
			continue
		}
		rec := &kgo.Record{Topic: TopicUsage, Partition: part, Value: c.value,
			Headers: []kgo.RecordHeader{{Key: HeaderSchema, Value: []byte(record.Schema)}}}
		p.inflight++
		p.cl.Produce(p.ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				err = fmt.Errorf("kafka produce: %w", err)
			}
			finishAll(ws, err)
			// Not under p.mu here: a flush holds it while kgo's Produce blocks on a full
			// buffer, which only these callbacks empty.
			go p.acked()
		})
	}
	clear(p.chunks) // the values and spans belong to the produced records now
}

// encodeLocked appends the chunks records [lo, hi) of recs make to into: one when their
// encoding fits the bound, else those of each half. A single record over the bound is a
// failed chunk, so halving ends.
func (p *Producer) encodeLocked(recs []record.Usage, lo, hi int, into []chunk) []chunk {
	payload, err := p.enc.Encode(p.scratch[:0], recs[lo:hi])
	if err != nil {
		return append(into, chunk{lo: lo, hi: hi, err: fmt.Errorf("kafka produce: encode batch: %w", err)})
	}
	// Encoding goes into a reused, already grown buffer (growing it during the IPC write
	// is what makes Arrow encoding slow); the message gets an exact-size copy, since kgo
	// holds it until acknowledged.
	p.scratch = payload[:0]
	switch {
	case len(payload) <= p.maxBytes:
		return append(into, chunk{lo: lo, hi: hi, value: append([]byte(nil), payload...)})
	case hi-lo == 1:
		u := &recs[lo]
		return append(into, chunk{lo: lo, hi: hi, err: fmt.Errorf("%w: event_id %s of tenant %s, device %s: %d bytes encoded, bound %d",
			ErrRecordTooLarge, record.QuoteInput(u.EventID), record.QuoteInput(u.Tenant), record.QuoteInput(u.Device),
			len(payload), p.maxBytes)})
	}
	mid := lo + (hi-lo)/2
	return p.encodeLocked(recs, mid, hi, p.encodeLocked(recs, lo, mid, into))
}

func finishAll(spans []span, err error) {
	for _, s := range spans {
		s.w.finish(err)
	}
}

// armLocked starts the linger of partition part's buffer, which just took its first record.
func (p *Producer) armLocked(part int32) {
	b := &p.bufs[part]
	if b.linger == nil {
		b.linger = time.AfterFunc(p.cfg.Linger, func() { p.lingerDone(part) })
		return
	}
	b.linger.Reset(p.cfg.Linger)
}

// lingerDone flushes partition part's buffer once its first record has waited
// Config.Linger, or gather when no message is in flight. The
// timer may be late for a buffer flushed meanwhile and filled again: then it waits out
// the new first record's time.
func (p *Producer) lingerDone(part int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &p.bufs[part]
	if len(b.recs) == 0 {
		return
	}
	since := time.Since(b.first)
	wait := p.cfg.Linger - since
	if p.inflight == 0 {
		wait = min(wait, gather-since)
	}
	if wait > 0 {
		b.linger.Reset(wait)
		return
	}
	p.flushLocked(part)
}

// acked counts one acknowledged (or failed) message and, if it was the last in flight,
// flushes every partition's records that waited for it.
func (p *Producer) acked() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	if p.inflight > 0 || p.closed {
		return
	}
	for part := range p.bufs {
		p.flushLocked(int32(part))
	}
}

// EnqueueRejects writes rejections to topic rejected, one JSON object per message keyed
// by device; done runs once all are acknowledged. Each message is bounded: AppendJSON
// bounds the value, and the key (read by no one; the partition is explicit) holds at most
// MaxIDLen bytes of tenant and of device, which cuts only invalid ones.
func (p *Producer) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	if len(rejs) == 0 {
		done(nil)
		return
	}
	w := &waiter{done: done, pending: len(rejs)}
	for i := range rejs {
		tenant, device := rejs[i].Tenant, rejs[i].Device
		key := tenant[:min(len(tenant), record.MaxIDLen)] + "/" + device[:min(len(device), record.MaxIDLen)]
		r := &kgo.Record{Topic: TopicRejected, Key: []byte(key),
			Partition: PartitionOf(rejs[i].Tenant, rejs[i].Device, p.rparts), Value: rejs[i].AppendJSON(nil)}
		p.cl.Produce(p.ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				err = fmt.Errorf("kafka reject: %w", err)
			}
			w.finish(err)
		})
	}
}

// Ping checks the cluster is reachable.
func (p *Producer) Ping(ctx context.Context) error { return p.cl.Ping(ctx) }

// Close flushes what is buffered, waits for its acknowledgements until ctx ends and
// disconnects. Past ctx's deadline (Kafka down) it gives up: the records not yet
// acknowledged fail, so no caller acknowledges its source for them and they are
// redelivered to the next run, which is harmless (deterministic event ids).
func (p *Producer) Close(ctx context.Context) error {
	// Armed before taking mu: a flush may hold it, blocked in Produce, until p.ctx ends.
	stopAbandon := context.AfterFunc(ctx, p.cancel)
	defer stopAbandon()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for part := range p.bufs {
		p.flushLocked(int32(part))
		if b := &p.bufs[part]; b.linger != nil {
			b.linger.Stop() // one already running finds the buffer empty
		}
	}
	p.mu.Unlock()
	err := p.cl.Flush(ctx)
	p.failed.Wait()
	p.cl.Close() // fails whatever kgo still holds: unacknowledged, so no caller acknowledges it
	p.cancel()
	if err != nil {
		return fmt.Errorf("kafka producer close: %w", err)
	}
	return nil
}
