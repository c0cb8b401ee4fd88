package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicCounts holds, per partition of usage, each tenant period's active-device count as
// its owner last committed it (key "tenant NUL YYYY-MM", value uvarint): small, so every
// rater follows all of it to price provisional fees by the fleet's count.
const TopicCounts = "rater-counts"

// Reader is a process's one long-lived client for reads outside a consumer group:
// liveness, metadata, and replaying a partition of a changelog (which writes one small
// fence record to it, see Replay). Its methods may be
// called from several goroutines; replays run one at a time.
type Reader struct {
	cl  *kgo.Client
	adm *kadm.Client
	mu  sync.Mutex // one replay at a time: they share the client's consumption
}

// NewReader dials nothing yet: the client connects on first use.
func NewReader(cfg Config, logger *slog.Logger) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(baseOpts(cfg, logger, "reader"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), // replay fences go to the partition replayed
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(32<<20))...)
	if err != nil {
		return nil, fmt.Errorf("kafka reader: %w", err)
	}
	return &Reader{cl: cl, adm: kadm.NewClient(cl)}, nil
}

// Close closes the client.
func (r *Reader) Close() { r.cl.Close() }

// LagCollector reports the lag of a consumer group on topics (fleetmeter_kafka_consumer_lag)
// at scrape time, through this reader's client.
func (r *Reader) LagCollector(group string, logger *slog.Logger, topics ...string) prometheus.Collector {
	return newLagCollector(r.adm, group, topics, logger)
}

// Ping checks the cluster answers.
func (r *Reader) Ping(ctx context.Context) error { return r.cl.Ping(ctx) }

// PartitionCounts returns the partition count of each topic, which must exist.
func (r *Reader) PartitionCounts(ctx context.Context, topics ...string) (map[string]int32, error) {
	md, err := r.adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka list topics: %w", err)
	}
	counts := make(map[string]int32, len(topics))
	for _, t := range topics {
		d, ok := md[t]
		if !ok || d.Err != nil {
			return nil, fmt.Errorf("kafka topic %s: missing", t)
		}
		counts[t] = int32(len(d.Partitions))
	}
	return counts, nil
}

// fenceKey is the key of the fences Replay writes; replays skip them.
const fenceKey = "\x00replay-fence"

// Replay calls fn with every committed record of one partition, in offset order, from
// the partition's start up to the moment of the call, and returns how many it passed.
// Records of aborted transactions, and the fences below, are never passed.
//
// Exactness: Replay first appends a fence record to the partition (non-transactional) and
// then reads, read committed, until it reaches the fence's offset. Everything written
// before the call is before the fence, and the fence becomes readable only once every
// transaction before it is decided, so the replay has read all of it. (An end offset
// listed beforehand is not enough: a transaction aborted without a marker, as a broker
// recovering from a crash may do, leaves offsets a read-committed fetch never returns.)
func (r *Reader) Replay(ctx context.Context, topic string, part int32, fn func(key, value []byte) error) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fence := &kgo.Record{Topic: topic, Partition: part, Key: []byte(fenceKey), Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))}
	if err := r.cl.ProduceSync(ctx, fence).FirstErr(); err != nil {
		return 0, fmt.Errorf("kafka replay %s/%d: write fence: %w", topic, part, err)
	}
	starts, err := r.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("kafka replay %s/%d: start offset: %w", topic, part, err)
	}
	from := int64(0)
	if s, ok := starts.Lookup(topic, part); ok && s.Err == nil {
		from = s.Offset
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(from)}})
	defer r.cl.RemoveConsumePartitions(map[string][]int32{topic: {part}})
	n, idle := 0, 0
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := r.cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return n, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		if ferr != nil {
			return n, fmt.Errorf("kafka replay %s/%d: %w", topic, part, ferr)
		}
		done, got := false, false
		var cbErr error
		fs.EachRecord(func(rec *kgo.Record) {
			if cbErr != nil || done || rec.Topic != topic || rec.Partition != part {
				return
			}
			got = true
			if rec.Offset >= fence.Offset {
				done = true
				return
			}
			if string(rec.Key) != fenceKey {
				n++
				cbErr = fn(rec.Key, rec.Value)
			}
		})
		if cbErr != nil {
			return n, cbErr
		}
		if done {
			return n, nil
		}
		if got {
			idle = 0
		} else if idle++; idle >= 120 { // longer than a transaction's timeout: an open one gets aborted first
			return n, fmt.Errorf("kafka replay %s/%d: no progress for 120 s before offset %d (a transaction still open?)",
				topic, part, fence.Offset)
		}
	}
}

// Follower reads every partition of a topic from the start, read committed, and keeps
// going: a process's long-lived view of a small compacted topic.
type Follower struct {
	cl *kgo.Client
}

// NewFollower starts consuming topic (which must exist) from its start.
func NewFollower(cfg Config, topic string, logger *slog.Logger) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(baseOpts(cfg, logger, "follower-"+topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		return nil, fmt.Errorf("kafka follow %s: %w", topic, err)
	}
	return &Follower{cl: cl}, nil
}

// Close stops a follower that never ran.
func (f *Follower) Close() { f.cl.Close() }

// Run calls fn with each record until ctx ends, then closes the follower.
func (f *Follower) Run(ctx context.Context, fn func(part int32, key, value []byte)) {
	defer f.cl.Close()
	for ctx.Err() == nil {
		fs := f.cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { fn(r.Partition, r.Key, r.Value) })
		if fs.IsClientClosed() {
			return
		}
		if errs := fs.Errors(); len(errs) > 0 && ctx.Err() == nil {
			time.Sleep(time.Second) // the client retries; do not spin on a dead cluster
		}
	}
}
