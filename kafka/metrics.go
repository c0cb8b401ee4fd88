package kafka

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// clientHooks returns the hooks that expose a client's own metrics (franz-go's kprom:
// connections, bytes and records read and written, per broker and topic) on
// cfg.Metrics, as fleetmeter_kafka_*{client="<role>"}; none when cfg.Metrics is nil.
// role names the client within its process (producer, rater, reader, ...), so each
// client's series stay apart; a second client of the same role in one process goes
// unmeasured rather than failing.
func clientHooks(cfg Config, role string, logger *slog.Logger) []kgo.Opt {
	if cfg.Metrics == nil {
		return nil
	}
	km := kprom.NewMetrics("fleetmeter", kprom.Subsystem("kafka"), kprom.Registry(nil),
		kprom.WithStaticLabel(prometheus.Labels{"client": role}))
	return []kgo.Opt{kgo.WithHooks(km, &clientMetrics{km: km, reg: cfg.Metrics, role: role, logger: logger})}
}

// clientMetrics registers a client's kprom collector while the client lives. kprom
// builds its collectors when the client is created (its OnNewClient runs before ours).
type clientMetrics struct {
	km         *kprom.Metrics
	reg        prometheus.Registerer
	role       string
	logger     *slog.Logger
	registered bool
}

func (c *clientMetrics) OnNewClient(*kgo.Client) {
	if err := c.reg.Register(c); err != nil {
		if c.logger != nil {
			c.logger.Warn("kafka client metrics not registered", "client", c.role, "err", err)
		}
		return
	}
	c.registered = true
}

func (c *clientMetrics) OnClientClosed(*kgo.Client) {
	if c.registered {
		c.reg.Unregister(c)
	}
}

func (c *clientMetrics) Describe(ch chan<- *prometheus.Desc) { c.km.Describe(ch) }

// Collect passes kprom's metrics on, except its two gauges named like counters
// (buffered_{produce,fetch}_records_total), which break the exposition conventions; the
// buffered bytes gauges say the same.
func (c *clientMetrics) Collect(ch chan<- prometheus.Metric) {
	inner := make(chan prometheus.Metric)
	go func() {
		c.km.Collect(inner)
		close(inner)
	}()
	for m := range inner {
		if !strings.HasSuffix(fqName(m.Desc()), "_records_total") || !strings.Contains(fqName(m.Desc()), "_buffered_") {
			ch <- m
		}
	}
}

// fqName reads a descriptor's name from its String form, the only place the client
// library shows it: Desc{fqName: "name", ...}.
func fqName(d *prometheus.Desc) string {
	s := d.String()
	const pre = `Desc{fqName: "`
	if !strings.HasPrefix(s, pre) {
		return ""
	}
	s = s[len(pre):]
	if i := strings.IndexByte(s, '"'); i >= 0 {
		return s[:i]
	}
	return ""
}

// lagTimeout bounds the offset requests of one scrape.
const lagTimeout = 3 * time.Second

// lagCollector reports a consumer group's lag at scrape time: per partition of its
// topics, the newest committed (stable) offset minus the group's committed offset (or
// the partition's start, before the group's first commit). It asks Kafka, so it keeps
// reporting while the group's members are stalled or gone. Offsets count a transaction's
// commit marker too, and a consumer never receives (so never commits past) it: a
// caught-up group reads 1 on a partition whose newest write was a transaction (the
// rater's outputs), as Kafka's own tools do.
type lagCollector struct {
	adm    *kadm.Client
	group  string
	topics []string
	desc   *prometheus.Desc
	logger *slog.Logger
}

func newLagCollector(adm *kadm.Client, group string, topics []string, logger *slog.Logger) *lagCollector {
	return &lagCollector{adm: adm, group: group, topics: topics, logger: logger,
		desc: prometheus.NewDesc("fleetmeter_kafka_consumer_lag",
			"Offsets of a partition the consumer group has not committed yet, read committed: a caught-up group shows 1 after a transaction commit marker.",
			[]string{"topic", "partition"}, prometheus.Labels{"group": group})}
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	lags, err := l.lag(ctx)
	if err != nil {
		// A scrape while the service shuts down meets the closed client: nothing to report.
		if l.logger != nil && !errors.Is(err, kgo.ErrClientClosed) {
			l.logger.Warn("kafka consumer lag not measured", "group", l.group, "err", err)
		}
		return
	}
	for _, x := range lags {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, float64(x.lag), x.topic,
			strconv.Itoa(int(x.partition)))
	}
}

type partitionLag struct {
	topic     string
	partition int32
	lag       int64
}

func (l *lagCollector) lag(ctx context.Context) ([]partitionLag, error) {
	committed, err := l.adm.FetchOffsets(ctx, l.group)
	if err != nil {
		return nil, err
	}
	starts, err := l.adm.ListStartOffsets(ctx, l.topics...)
	if err != nil {
		return nil, err
	}
	ends, err := l.adm.ListCommittedOffsets(ctx, l.topics...)
	if err != nil {
		return nil, err
	}
	var out []partitionLag
	ends.Each(func(end kadm.ListedOffset) {
		if end.Err != nil || end.Partition < 0 {
			return
		}
		from := int64(0)
		if s, ok := starts.Lookup(end.Topic, end.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if c, ok := committed.Lookup(end.Topic, end.Partition); ok && c.Err == nil && c.At >= 0 {
			from = max(from, c.At)
		}
		out = append(out, partitionLag{end.Topic, end.Partition, max(0, end.Offset-from)})
	})
	return out, nil
}
