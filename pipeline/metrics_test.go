package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/api"
	"fleetmeter/deploy"
	"fleetmeter/ingest/httpin"
	"fleetmeter/internal/obs"
	"fleetmeter/kafka"
	"fleetmeter/period"
	"fleetmeter/pipeline"
	"fleetmeter/record"
	"fleetmeter/rules"
)

type nopStore struct{}

func (nopStore) InsertRated(context.Context, []record.Rated) error        { return nil }
func (nopStore) InsertRejected(context.Context, []record.Rejection) error { return nil }
func (nopStore) Ping(context.Context) error                               { return nil }

// Every metric a binary registers (the mediator's collectors, the rater, the loader,
// their Kafka clients and lag, the tariff watch, the period close, the API, the
// process's own) passes promlint with no problem, gathered from one registry as the
// standalone holds them.
func TestMetricsPassPromlint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = cluster.ListenAddrs()
	kcfg.Partitions = 2

	dir := t.TempDir()
	b, err := deploy.Tariffs.ReadFile("tariffs/agrico.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "agrico.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load(dir)
	if err != nil {
		t.Fatal(err)
	}

	reg := obs.NewRegistry()
	mcfg := pipeline.DefaultMediatorConfig()
	mcfg.Kafka = kcfg
	mcfg.MQTT.Enabled = false
	mcfg.CoAP.Enabled, mcfg.CoAP.Listen, mcfg.CoAP.DevMode = true, "127.0.0.1:0", true
	mcfg.HTTP.Enabled, mcfg.HTTP.Listen = true, "127.0.0.1:0"
	mcfg.HTTP.Keys = []httpin.APIKey{{Key: "lint-key-0000000000000000", Tenant: "agrico"}}
	med, err := pipeline.NewMediator(ctx, mcfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rater, err := pipeline.NewRater(ctx, pipeline.RaterConfig{Kafka: kcfg, Group: "lint-rater", InstanceID: "lint"}, set, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	loader, err := pipeline.NewLoader(ctx, pipeline.LoaderConfig{Kafka: kcfg, Group: "lint-loader"}, nopStore{}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pipeline.NewTariffWatch(dir, time.Second, rater.Engine(), reg, nil)
	period.NewMetrics(reg)
	api.New(nil, "default", nil, api.Limits{}, nil, reg, nil)
	srv, err := obs.Listen("127.0.0.1:0", reg, obs.Check{Name: "mediator", Fn: med.Ready},
		obs.Check{Name: "rater", Fn: rater.Ready}, obs.Check{Name: "loader", Fn: loader.Ready})
	if err != nil {
		t.Fatal(err)
	}

	// The consumer lag is reported once the groups' coordinator answers.
	var families []*dto.MetricFamily
	var missing []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if families, err = reg.Gather(); err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, f := range families {
			names[f.GetName()] = true
		}
		missing = missing[:0]
		for _, want := range []string{"fleetmeter_build_info", "fleetmeter_ready", "fleetmeter_mediator_accepted_total",
			"fleetmeter_rater_tenant_records_total", "fleetmeter_loader_insert_seconds", "fleetmeter_kafka_consumer_lag",
			"fleetmeter_kafka_connects_total", "fleetmeter_tariff_info", "fleetmeter_period_close_overdue"} {
			if !names[want] {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("not gathered: %v", missing)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	stopped, stop := context.WithCancel(ctx)
	stop()
	_ = med.Run(stopped)
	_ = rater.Run(stopped)
	_ = loader.Run(stopped)
	_ = srv.Run(stopped)
}
