// Package kafka is the Kafka adapter: it produces normalized usage as Arrow IPC batches
// (one batch per message, all records of one partition), consumes them for the rater, and
// creates the topics. It satisfies ingest.Sink; the domain packages never import it.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topic names of the pipeline.
const (
	TopicUsage    = "usage"
	TopicRejected = "rejected"
	TopicRated    = "rated"
	TopicState    = "rater-state" // per-partition rating state changelog, committed with the offsets
)

// HeaderSchema names the schema of a message's payload.
const HeaderSchema = "schema"

// Config locates the cluster and shapes the topics and batches.
type Config struct {
	Brokers           []string      `yaml:"brokers"`
	Partitions        int32         `yaml:"partitions"`         // for topics created on start
	ReplicationFactor int16         `yaml:"replication_factor"` // -1: broker default
	Linger            time.Duration `yaml:"linger"`             // the longest a partition batch waits (producer.go: gather, group commit)
	BatchRecords      int           `yaml:"batch_records"`      // flush a partition batch at this many records
	BatchBytes        int           `yaml:"batch_bytes"`        // ... or at this estimated size (at most MaxMessageBytes)
	ClientID          string        `yaml:"client_id"`
	// Instance, when set, is this process's static group membership id: a restarted process
	// takes its old place in the group at once instead of waiting out the session timeout.
	Instance       string        `yaml:"instance"`
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// Metrics, when set, receives each client's own metrics (fleetmeter_kafka_*).
	Metrics prometheus.Registerer `yaml:"-"`
}

// DefaultConfig returns the defaults every binary starts from.
func DefaultConfig() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:9092"},
		Partitions:        8,
		ReplicationFactor: -1,
		Linger:            5 * time.Millisecond,
		BatchRecords:      5000,
		BatchBytes:        512 << 10,
		ClientID:          "fleetmeter",
		SessionTimeout:    15 * time.Second,
	}
}

// Validate reports every problem, naming the key.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers: at least one broker is required"))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("kafka.partitions: must be >= 1, got %d", c.Partitions))
	}
	if c.Linger < 0 || c.Linger > time.Minute {
		errs = append(errs, fmt.Errorf("kafka.linger: must be within [0, 1m], got %s", c.Linger))
	}
	if c.SessionTimeout < 0 {
		errs = append(errs, fmt.Errorf("kafka.session_timeout: must be >= 0, got %s", c.SessionTimeout))
	}
	if c.BatchRecords < 1 {
		errs = append(errs, fmt.Errorf("kafka.batch_records: must be >= 1, got %d", c.BatchRecords))
	}
	if c.BatchBytes < 1 || c.BatchBytes > MaxMessageBytes {
		errs = append(errs, fmt.Errorf("kafka.batch_bytes: must be within [1, %d], got %d", MaxMessageBytes, c.BatchBytes))
	}
	return errors.Join(errs...)
}

// PartitionOf maps a device (tenant and device together) to one of n partitions. Every
// producer uses it, so one device's records always share a partition and keep their order.
func PartitionOf(tenant, device string, n int32) int32 {
	// FNV-1a over tenant, a zero byte, device; written out to stay allocation-free.
	h := uint32(2166136261)
	for i := 0; i < len(tenant); i++ {
		h = (h ^ uint32(tenant[i])) * 16777619
	}
	h *= 16777619 // the zero separator
	for i := 0; i < len(device); i++ {
		h = (h ^ uint32(device[i])) * 16777619
	}
	return int32(h % uint32(n))
}

// EnsureTopics creates the pipeline topics if absent and returns the partition count of
// each, so producers route by the real count rather than the configured one.
func EnsureTopics(ctx context.Context, cl *kgo.Client, cfg Config, topics ...string) (map[string]int32, error) {
	adm := kadm.NewClient(cl)
	for _, t := range topics {
		var configs map[string]*string
		if t == TopicState || t == TopicCounts {
			// Changelogs: only the newest entry of each key matters.
			compact := "compact"
			configs = map[string]*string{"cleanup.policy": &compact}
		}
		resp, err := adm.CreateTopics(ctx, cfg.Partitions, cfg.ReplicationFactor, configs, t)
		if err != nil {
			return nil, fmt.Errorf("create topic %s: %w", t, err)
		}
		for _, r := range resp.Sorted() {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return nil, fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
			}
		}
	}
	// Metadata can lag a create, above all when several processes create the same topics
	// at once (a mediator and a rater starting together): wait for it, briefly.
	deadline := time.Now().Add(15 * time.Second)
	for {
		md, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("list topics: %w", err)
		}
		counts := make(map[string]int32, len(topics))
		var missing error
		for _, t := range topics {
			d, ok := md[t]
			if !ok || d.Err != nil || len(d.Partitions) == 0 {
				missing = fmt.Errorf("topic %s: no metadata after create", t)
				break
			}
			counts[t] = int32(len(d.Partitions))
		}
		if missing == nil {
			return counts, nil
		}
		if time.Now().After(deadline) {
			return nil, missing
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// slogLogger adapts *slog.Logger to kgo.Logger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }
func (s slogLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch level {
	case kgo.LogLevelError:
		s.l.Error(msg, kv...)
	default:
		s.l.Warn(msg, kv...)
	}
}

// groupOpts are the options of a group member.
func groupOpts(cfg Config, group string) []kgo.Opt {
	opts := []kgo.Opt{kgo.ConsumerGroup(group)}
	if cfg.Instance != "" {
		opts = append(opts, kgo.InstanceID(cfg.Instance))
	}
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout), kgo.RebalanceTimeout(2*cfg.SessionTimeout))
	}
	return opts
}

// baseOpts are every client's options; role names the client in its metrics.
func baseOpts(cfg Config, logger *slog.Logger, role string) []kgo.Opt {
	brokers := make([]string, 0, len(cfg.Brokers))
	for _, b := range cfg.Brokers {
		brokers = append(brokers, strings.Split(b, ",")...)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(cfg.ClientID)}
	if logger != nil {
		opts = append(opts, kgo.WithLogger(slogLogger{logger}))
	}
	return append(opts, clientHooks(cfg, role, logger)...)
}
