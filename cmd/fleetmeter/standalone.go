package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"fleetmeter/api"
	"fleetmeter/clickhouse"
	"fleetmeter/deploy"
	"fleetmeter/ingest/httpin"
	"fleetmeter/internal/chserver"
	"fleetmeter/internal/config"
	"fleetmeter/internal/obs"
	"fleetmeter/kafka"
	"fleetmeter/loadtest"
	"fleetmeter/pipeline"
	"fleetmeter/rules"
	"fleetmeter/sim"
)

type standaloneConfig struct {
	Data       string        `yaml:"data"`
	Rules      string        `yaml:"rules"`
	Simulate   int           `yaml:"simulate"`
	For        time.Duration `yaml:"for"`
	Interval   time.Duration `yaml:"interval"`
	Seed       uint64        `yaml:"seed"`
	Kafka      string        `yaml:"kafka"`
	ClickHouse string        `yaml:"clickhouse"`
	Partitions int32         `yaml:"partitions"`
	Metrics    string        `yaml:"metrics"`
	LogLevel   string        `yaml:"log_level"`
	Drain      time.Duration `yaml:"drain"`
	MQTTAddr   string        `yaml:"mqtt_addr"`
	CoAPAddr   string        `yaml:"coap_addr"`
	HTTPAddr   string        `yaml:"http_addr"`
	APIAddr    string        `yaml:"api_addr"`
	Registry   string        `yaml:"registry"`
}

func defaultStandalone() standaloneConfig {
	return standaloneConfig{Interval: time.Second, Seed: 1, Partitions: 4, Metrics: "127.0.0.1:0",
		LogLevel: "warn", Drain: 90 * time.Second}
}

func (c standaloneConfig) validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("--data: a directory for the embedded brokers' and ClickHouse's data is required"))
	}
	if c.Simulate < 0 {
		errs = append(errs, fmt.Errorf("--simulate: must be >= 0, got %d", c.Simulate))
	}
	if c.For < 0 {
		errs = append(errs, fmt.Errorf("--for: must be >= 0, got %s", c.For))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--interval: must be > 0, got %s", c.Interval))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("--partitions: must be >= 1, got %d", c.Partitions))
	}
	return errors.Join(errs...)
}

func runStandalone(args []string, stdout, stderr io.Writer) int {
	cfg := defaultStandalone()
	fset := flag.NewFlagSet("fleetmeter standalone", flag.ContinueOnError)
	fset.SetOutput(stderr)
	_, err := config.Load(fset, args, &cfg, func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.Data, "data", cfg.Data, "directory for all state (Kafka log, ClickHouse data, tariffs)")
		fs.StringVar(&cfg.Rules, "rules", cfg.Rules, "tariff directory or file (default: the example tariffs, copied to DATA/rules)")
		fs.IntVar(&cfg.Simulate, "simulate", cfg.Simulate, "feed the pipeline N simulated devices over MQTT")
		fs.DurationVar(&cfg.For, "for", cfg.For, "stop after this long, drain, and check ClickHouse's totals against what was sent")
		fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "simulated devices report once per interval")
		fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "simulator seed")
		fs.StringVar(&cfg.Kafka, "kafka", cfg.Kafka, "use this Kafka cluster (host:port,...) instead of the embedded broker")
		fs.StringVar(&cfg.ClickHouse, "clickhouse", cfg.ClickHouse, "use this ClickHouse (native host:port) instead of a local server")
		fs.Var(partitionsFlag{&cfg.Partitions}, "partitions", "partitions of the topics created on start")
		fs.StringVar(&cfg.Metrics, "metrics", cfg.Metrics, "listen address of /metrics, /healthz, /readyz (empty: off)")
		fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
		fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "with --for: how long to wait for ClickHouse to hold everything sent")
		fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", cfg.MQTTAddr, "embedded MQTT broker's listen address (default: as last time on this --data, else a free loopback port)")
		fs.StringVar(&cfg.CoAPAddr, "coap-addr", cfg.CoAPAddr, "CoAP (UDP) listen address (default: as last time on this --data, else a free loopback port)")
		fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP ingest listen address (default: as last time on this --data, else a free loopback port)")
		fs.StringVar(&cfg.APIAddr, "api-addr", cfg.APIAddr, "usage API and web page listen address (default: as last time on this --data, else a free loopback port)")
		fs.StringVar(&cfg.Registry, "registry", cfg.Registry, "device registry whose MQTT credentials the embedded broker accepts (reloaded on change)")
	})
	if err != nil {
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	logger, err := obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := standalone(ctx, cfg, logger, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "fleetmeter standalone:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

type partitionsFlag struct{ p *int32 }

func (f partitionsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return fmt.Sprint(*f.p)
}

func (f partitionsFlag) Set(s string) error {
	var v int32
	if _, err := fmt.Sscan(s, &v); err != nil {
		return err
	}
	*f.p = v
	return nil
}

// standalone runs the pipeline. Shutdown order, once ctx ends or --for elapsed: the
// simulator stops publishing; the embedded MQTT broker stops taking messages while the
// mediator stops its collectors and flushes its producer, and the broker closes once
// Kafka's acknowledgements reached the devices (at most 30 s); the rater ends its
// transaction and the loader commits what it inserted; then ClickHouse and the Kafka
// broker stop (deferred).
func standalone(ctx context.Context, cfg standaloneConfig, logger *slog.Logger, stdout io.Writer) (int, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return 1, err
	}
	rulesPath, err := prepareRules(cfg)
	if err != nil {
		return 1, err
	}
	set, err := rules.Load(rulesPath)
	if err != nil {
		return 1, fmt.Errorf("tariffs: %w", err)
	}

	addrs, err := resolveListenAddrs(cfg.Data, listenAddrs{MQTT: cfg.MQTTAddr, CoAP: cfg.CoAPAddr, HTTP: cfg.HTTPAddr,
		API: cfg.APIAddr})
	if err != nil {
		return 1, err
	}
	kafkaAddr := cfg.Kafka
	if kafkaAddr == "" {
		port, err := addrs.kafkaPort()
		if err != nil {
			return 1, err
		}
		kc, addr, err := startKafka(cfg.Data, port, cfg.Partitions)
		if err != nil {
			return 1, err
		}
		defer kc.Close()
		kafkaAddr = addr
	}
	chAddr := cfg.ClickHouse
	if chAddr == "" {
		if err := waitPreviousClickHouse(filepath.Join(cfg.Data, "clickhouse"), time.Minute, logger); err != nil {
			return 1, err
		}
		srv, err := chserver.Start(ctx, filepath.Join(cfg.Data, "clickhouse"), logger)
		if errors.Is(err, chserver.ErrNotInstalled) {
			return 1, fmt.Errorf("%w\n  install it (Debian/Ubuntu: sudo apt-get install clickhouse-server, or run `make deps`)\n  or point --clickhouse at a running server's native port", err)
		}
		if err != nil {
			return 1, err
		}
		defer srv.Stop()
		chAddr = srv.NativeAddr()
	}
	reg := obs.NewRegistry()
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{kafkaAddr}
	kcfg.Partitions = cfg.Partitions
	// Static group membership: a restart on the same --data takes the rater's and the
	// loader's places in their groups at once, instead of waiting for the killed
	// process's members to time out and the groups to rebalance.
	kcfg.Instance = "standalone"
	mcfg := pipeline.DefaultMediatorConfig()
	mcfg.Kafka = kcfg
	// MQTT goes from the embedded broker straight to the producer (mqttingest.go), not
	// through a subscribing collector; the collector's client id stays reserved.
	mcfg.MQTT.Enabled = false
	mcfg.MQTT.ClientID = "fleetmeter-standalone-mediator"
	// CoAP on plain UDP in dev mode (POST /usage/<tenant>/<device>) and HTTP ingest with a
	// demo key per simulated tenant (demo-key-<tenant>-0000).
	mcfg.CoAP.Enabled, mcfg.CoAP.Listen, mcfg.CoAP.DevMode = true, addrs.CoAP, true
	mcfg.HTTP.Enabled, mcfg.HTTP.Listen = true, addrs.HTTP
	for _, t := range sim.Tenants {
		mcfg.HTTP.Keys = append(mcfg.HTTP.Keys, httpin.APIKey{Key: "demo-key-" + t + "-0000", Tenant: t})
	}
	med, err := pipeline.NewMediator(ctx, mcfg, reg, logger.With("component", "mediator"))
	if err != nil {
		return 1, err
	}
	fleet := sim.NewFleet(cfg.Simulate, cfg.Seed)
	mq, err := startStandaloneMQTT(cfg, addrs.MQTT, fleet, mcfg, med.Producer, reg, logger)
	if err != nil {
		return 1, err
	}
	defer mq.broker.Close()

	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr = []string{chAddr}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		return 1, err
	}
	defer store.Close()
	rater, err := pipeline.NewRater(ctx, pipeline.RaterConfig{Kafka: kcfg, Group: "fleetmeter-rater", InstanceID: "standalone"},
		set, reg, logger.With("component", "rater"))
	if err != nil {
		return 1, err
	}
	engine := rater.Engine()
	loader, err := pipeline.NewLoader(ctx, pipeline.LoaderConfig{Kafka: kcfg, Group: "fleetmeter-loader"}, store, reg,
		logger.With("component", "loader"))
	if err != nil {
		return 1, err
	}
	osrv, err := obs.Listen(cfg.Metrics, reg, obs.Check{Name: "mediator", Fn: med.Ready},
		obs.Check{Name: "rater", Fn: rater.Ready}, obs.Check{Name: "loader", Fn: loader.Ready})
	if err != nil {
		return 1, fmt.Errorf("--metrics: %w", err)
	}

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return med.Run(gctx) })
	g.Go(func() error { return mq.broker.Run(gctx, 30*time.Second) })
	g.Go(func() error { return mq.watch(gctx) })
	g.Go(func() error { return rater.Run(gctx) })
	g.Go(func() error { return loader.Run(gctx) })
	g.Go(func() error { return osrv.Run(gctx) })
	// The usage API and web page for the tenants, one demo key each (printed below).
	apiCfg := api.DefaultConfig()
	apiCfg.Listen, apiCfg.ClickHouse, apiCfg.Rules = addrs.API, chcfg, rulesPath
	apiKeys, demoKeys, err := api.DemoKeys(sim.Tenants)
	if err != nil {
		return 1, err
	}
	apiCfg.Keys = apiKeys
	apiReady := make(chan string, 1)
	g.Go(func() error { return api.Run(gctx, apiCfg, logger.With("component", "api"), apiReady) })
	g.Go(func() error {
		rules.Watch(gctx, rulesPath, 2*time.Second, engine.SetRules, func(err error) {
			logger.Error("tariff change refused; the previous tariffs stay in force", "err", err)
		})
		return nil
	})

	if err := waitReady(gctx, med.Ready, 30*time.Second); err != nil {
		cancelRun()
		if werr := g.Wait(); werr != nil && !errors.Is(werr, context.Canceled) {
			err = werr // the stage that stopped, rather than the mediator's closed client
		}
		return 1, fmt.Errorf("pipeline did not become ready: %w", err)
	}
	select {
	case <-med.CoAP.Ready():
	case <-gctx.Done():
	}
	var apiAddr string
	select {
	case apiAddr = <-apiReady:
	case <-gctx.Done():
		cancelRun()
		return 1, fmt.Errorf("api did not start: %w", g.Wait())
	}
	mqttAddr := mq.broker.Addr()
	addrs = listenAddrs{MQTT: mqttAddr, CoAP: med.CoAP.Addr(), HTTP: med.HTTP.Addr(), API: apiAddr}
	if cfg.Kafka == "" {
		addrs.Kafka = kafkaAddr
	}
	if err := addrs.save(cfg.Data); err != nil {
		logger.Error("recording the listen addresses; a restart may listen elsewhere", "err", err)
	}
	ready, _ := json.Marshal(map[string]string{"mqtt": mqttAddr, "kafka": kafkaAddr, "clickhouse": chAddr,
		"coap": med.CoAP.Addr(), "http": med.HTTP.Addr(), "api": apiAddr, "metrics": osrv.Addr()})
	fmt.Fprintf(stdout, "ready %s\n", ready)
	for _, t := range sim.Tenants {
		fmt.Fprintf(stdout, "api key %s: %s  (web page http://%s/)\n", t, demoKeys[t], apiAddr)
	}

	var simDone chan simResult
	if cfg.Simulate > 0 {
		simCtx := gctx
		if cfg.For > 0 {
			var cancel context.CancelFunc
			simCtx, cancel = context.WithTimeout(gctx, cfg.For)
			defer cancel()
		}
		simDone = make(chan simResult, 1)
		go func() {
			sent, err := fleet.Run(simCtx, sim.RunConfig{Broker: "tcp://" + mqttAddr, TopicPrefix: mcfg.MQTT.TopicPrefix,
				Interval: cfg.Interval, QoS: 1, Credentials: mq.creds.of})
			simDone <- simResult{sent, err}
		}()
	}

	code := 0
	if cfg.For > 0 {
		select {
		case <-gctx.Done():
		case <-time.After(cfg.For):
		}
		var sent []sim.Sent
		if simDone != nil {
			res := <-simDone
			if res.err != nil {
				logger.Error("simulator", "err", res.err)
				code = 1
			}
			sent = res.sent
		}
		if gctx.Err() == nil {
			c, err := loadtest.Check(gctx, cfg.Drain, set, fleet, sent, store, loadtest.APIClient{Addr: apiAddr, Keys: demoKeys}, stdout)
			if err != nil {
				logger.Error("check", "err", err)
			}
			code = max(code, c)
		}
		cancelRun()
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return 1, err
	}
	if ctx.Err() == nil && gctx.Err() != nil && cfg.For == 0 {
		return 1, errors.New("a stage stopped unexpectedly")
	}
	return code, nil
}

type simResult struct {
	sent []sim.Sent
	err  error
}

// prepareRules returns the tariff path to load and watch: --rules, or the embedded
// example tariffs written to DATA/rules (existing files there are kept, so an operator's
// edits survive a restart).
func prepareRules(cfg standaloneConfig) (string, error) {
	if cfg.Rules != "" {
		return cfg.Rules, nil
	}
	dir := filepath.Join(cfg.Data, "rules")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	err := fs.WalkDir(deploy.Tariffs, "tariffs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		dst := filepath.Join(dir, d.Name())
		if _, err := os.Stat(dst); err == nil {
			return nil
		}
		b, err := deploy.Tariffs.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	return dir, err
}

func waitReady(ctx context.Context, ready func(context.Context) error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
