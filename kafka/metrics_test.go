package kafka

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The lag of a group is the records of each partition past its commit (or from the
// partition's start before any commit), whether or not a member is consuming; the
// clients' own metrics are registered while they live, and everything passes promlint.
func TestConsumerLagAndClientMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cfg.Partitions = 2
	reg := prometheus.NewRegistry()
	cfg.Metrics = reg
	const topic = "lagtest"

	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := EnsureTopics(ctx, cl, cfg, topic); err != nil {
		t.Fatal(err)
	}
	produce := func(part int32, n int) {
		t.Helper()
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: part, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 10)
	produce(1, 4)

	c, err := NewConsumer(ctx, cfg, "g", []string{topic}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lag := c.LagCollector()
	reg.MustRegister(lag)
	want := func(p0, p1 float64) {
		t.Helper()
		exp := `
# HELP fleetmeter_kafka_consumer_lag Offsets of a partition the consumer group has not committed yet, read committed: a caught-up group shows 1 after a transaction commit marker.
# TYPE fleetmeter_kafka_consumer_lag gauge
fleetmeter_kafka_consumer_lag{group="g",partition="0",topic="lagtest"} ` + ftoa(p0) + `
fleetmeter_kafka_consumer_lag{group="g",partition="1",topic="lagtest"} ` + ftoa(p1) + `
`
		// A scrape reports nothing while the group's coordinator is not answering yet.
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if err = testutil.CollectAndCompare(lag, strings.NewReader(exp)); err == nil {
				return
			}
		}
		t.Fatal(err)
	}
	want(10, 4)
	var msgs []Message
	for n := 0; n < 14; {
		if msgs, err = c.Poll(ctx, msgs[:0]); err != nil {
			t.Fatal(err)
		}
		n += len(msgs)
	}
	if err := c.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want(0, 0)
	produce(0, 3)
	want(3, 0)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var kprom bool
	for _, f := range families {
		if f.GetName() == "fleetmeter_kafka_read_bytes_total" {
			kprom = true
		}
		if strings.Contains(f.GetName(), "_buffered_") && strings.HasSuffix(f.GetName(), "_records_total") {
			t.Errorf("%s: a gauge named as a counter is exposed", f.GetName())
		}
	}
	if !kprom {
		t.Error("the consumer's client metrics (fleetmeter_kafka_read_bytes_total) are missing")
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	c.Close()
	if n, err := testutil.GatherAndCount(reg, "fleetmeter_kafka_read_bytes_total"); err != nil || n != 0 {
		t.Errorf("a closed client's metrics stay registered: %d series (%v)", n, err)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// A scrape after the consumer's client closed (a service shutting down) reports no lag
// and logs nothing; one that cannot reach Kafka for another reason is logged.
func TestLagAfterCloseIsQuiet(t *testing.T) {
	cfg := testCluster(t)
	var logged strings.Builder
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	lag := newLagCollector(kadm.NewClient(cl), "g", []string{"t"}, logger)
	cl.Close()
	if n := testutil.CollectAndCount(lag); n != 0 {
		t.Errorf("%d lag series from a closed client", n)
	}
	if logged.Len() != 0 {
		t.Errorf("a scrape during shutdown logged: %s", logged.String())
	}

	// An unreachable broker is worth a warning.
	bad, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.RetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	lag = newLagCollector(kadm.NewClient(bad), "g", []string{"t"}, logger)
	testutil.CollectAndCount(lag)
	if !strings.Contains(logged.String(), "kafka consumer lag not measured") {
		t.Errorf("an unreachable broker was not logged: %q", logged.String())
	}
}
