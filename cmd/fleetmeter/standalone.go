package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"fleetmeter/api"
	"fleetmeter/clickhouse"
	"fleetmeter/deploy"
	"fleetmeter/ingest/httpin"
	"fleetmeter/ingest/mqtt"
	"fleetmeter/internal/chserver"
	"fleetmeter/internal/config"
	"fleetmeter/internal/lifecycle"
	"fleetmeter/internal/localkafka"
	"fleetmeter/internal/obs"
	"fleetmeter/loadtest"
	"fleetmeter/pipeline"
	"fleetmeter/rules"
	"fleetmeter/sim"
)

func runStandalone(args []string, stdout, stderr io.Writer) int {
	cfg := defaultStandalone()
	spec := standaloneSpec(&cfg)
	if _, err := config.Parse(spec, &cfg, args); err != nil {
		return config.Exit(spec.Name, err, stdout, stderr)
	}
	logger, err := obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		return config.Exit(spec.Name, err, stdout, stderr)
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

// clickHousePasswordFile holds the local ClickHouse server's generated password.
const clickHousePasswordFile = "clickhouse-password"

// standalone starts the pipeline's parts, runs them until ctx ends (or --for elapsed and
// the self-check ran) and stops them in the order of the stages below.
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
	addrs, err := resolveListenAddrs(cfg.Data, listenAddrs{MQTT: cfg.MQTT.Listen, CoAP: cfg.CoAP.Listen,
		HTTP: cfg.HTTP.Listen, API: cfg.API.Listen})
	if err != nil {
		return 1, err
	}

	// What the pipeline stands on, closed last and in reverse order of start: the
	// ClickHouse clients, then the ClickHouse server, then the Kafka broker.
	storage := lifecycle.Stage{Name: "storage"}
	onStorage := func(c lifecycle.Component) {
		storage.Components = append([]lifecycle.Component{c}, storage.Components...)
	}
	handedOver := false
	defer func() {
		if !handedOver { // a start that failed half-way
			_ = lifecycle.Close(storage)
		}
	}()

	kcfg := cfg.Kafka
	if len(kcfg.Brokers) == 0 {
		port, err := addrs.kafkaPort()
		if err != nil {
			return 1, err
		}
		kc, addr, err := localkafka.Start(cfg.Data, port, kcfg.Partitions)
		if err != nil {
			return 1, err
		}
		onStorage(lifecycle.Component{Name: "kafka", Close: func(context.Context) error { kc.Close(); return nil }})
		kcfg.Brokers = []string{addr}
		addrs.Kafka = addr
	} else {
		addrs.Kafka = "" // recorded for the embedded broker only
	}
	// Static group membership: a restart on the same --data takes the rater's and the
	// loader's places in their groups at once, instead of waiting for the killed
	// process's members to time out and the groups to rebalance.
	kcfg.Instance = "standalone"

	chcfg := cfg.ClickHouse
	chPasswordFile := ""
	if len(chcfg.Addr) == 0 {
		srv, pwFile, err := startClickHouse(ctx, cfg.Data, logger)
		if err != nil {
			return 1, err
		}
		onStorage(lifecycle.Component{Name: "clickhouse server", Close: func(context.Context) error { return srv.Stop() }})
		chcfg.Addr, chcfg.Password, chPasswordFile = []string{srv.NativeAddr()}, srv.Password(), pwFile
	}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		return 1, err
	}
	onStorage(lifecycle.Component{Name: "clickhouse client", Close: func(context.Context) error { return store.Close() }})

	reg := obs.NewRegistry()
	mcfg := pipeline.MediatorConfig{Kafka: kcfg, MQTT: mqtt.DefaultConfig(), CoAP: cfg.CoAP, HTTP: cfg.HTTP, CDR: cfg.CDR}
	// MQTT goes from the embedded broker straight to the producer (mqttingest.go), not
	// through a subscribing collector; the collector's client id stays reserved.
	mcfg.MQTT.Enabled = false
	mcfg.MQTT.ClientID = "fleetmeter-standalone-mediator"
	mcfg.MQTT.TopicPrefix = cfg.MQTT.TopicPrefix
	mcfg.CoAP.Listen, mcfg.HTTP.Listen = addrs.CoAP, addrs.HTTP
	if len(mcfg.HTTP.Keys) == 0 {
		mcfg.HTTP.Keys = demoHTTPKeys()
	}
	// The simulated fleet's gateways post with keys of their own, new each run, and its
	// 5G slices' CDR files land in DATA/cdr-drop unless cdr.dir names a drop directory.
	var gatewayKeys map[string]string
	if cfg.Simulate > 0 {
		var keys []httpin.APIKey
		if keys, gatewayKeys, err = simulatedGatewayKeys(); err != nil {
			return 1, err
		}
		mcfg.HTTP.Keys = append(mcfg.HTTP.Keys, keys...)
		if !mcfg.CDR.Enabled {
			mcfg.CDR.Enabled, mcfg.CDR.Dir = true, filepath.Join(cfg.Data, "cdr-drop")
			mcfg.CDR.Decoder.Tenants = loadtest.SimulatedSlices()
			if err := os.MkdirAll(mcfg.CDR.Dir, 0o700); err != nil {
				return 1, err
			}
		}
	}
	med, err := pipeline.NewMediator(ctx, mcfg, reg, logger.With("component", "mediator"))
	if err != nil {
		return 1, err
	}
	fleet := sim.NewMixedFleet(cfg.Simulate, sim.DefaultMix, cfg.Seed)
	mq, err := startStandaloneMQTT(cfg, addrs.MQTT, fleet, mcfg, med.Producer, reg, logger)
	if err != nil {
		return 1, err
	}
	instance := "standalone"
	if addrs.Kafka != "" { // the embedded broker: see raterInstance
		if instance, err = raterInstance(ctx, cfg.Data, kcfg, logger); err != nil {
			mq.broker.Close()
			return 1, err
		}
	}
	rater, err := pipeline.NewRater(ctx, pipeline.RaterConfig{Kafka: kcfg, Group: "fleetmeter-rater", InstanceID: instance},
		set, reg, logger.With("component", "rater"))
	if err != nil {
		mq.broker.Close()
		return 1, err
	}
	engine := rater.Engine()
	loader, err := pipeline.NewLoader(ctx, pipeline.LoaderConfig{Kafka: kcfg, Group: "fleetmeter-loader"}, store, reg,
		logger.With("component", "loader"))
	if err != nil {
		mq.broker.Close()
		return 1, err
	}
	// The usage API and web page, with the configured keys; a simulated fleet's tenants
	// get a new key each run (printed below) so they and the self-check can read.
	apiCfg := api.DefaultConfig()
	apiCfg.Listen, apiCfg.ClickHouse, apiCfg.Rules, apiCfg.Keys = addrs.API, chcfg, rulesPath, cfg.API.Keys
	var demoKeys map[string]string
	if len(cfg.API.Keys) == 0 || cfg.Simulate > 0 {
		var keys []api.KeyConfig
		if keys, demoKeys, err = api.DemoKeys(sim.Tenants); err != nil {
			mq.broker.Close()
			return 1, err
		}
		apiCfg.Keys = append(apiCfg.Keys, keys...)
	}
	apiReady := make(chan string, 1)

	// Shutdown order, once ctx ends or --for elapsed and the check ran (the simulator
	// has stopped publishing by then):
	stages := []lifecycle.Stage{
		// 1. The edge: the embedded MQTT broker stops taking messages while the mediator
		// stops its collectors and flushes its producer (30 s at most), and the broker
		// closes once Kafka's acknowledgements reached the devices (30 s at most).
		{Name: "ingest", Drain: time.Minute, Components: []lifecycle.Component{
			{Name: "mediator", Run: med.Run, Ready: med.Ready},
			{Name: "mqtt broker", Run: func(ctx context.Context) error { return mq.broker.Run(ctx, 30*time.Second) },
				Close: func(context.Context) error { mq.broker.Close(); return nil }},
			{Name: "device registry", Run: mq.watch},
		}},
		// 2. The rater ends or aborts its transaction: what the mediator handed to Kafka
		// is rated now or on the next start.
		{Name: "rating", Drain: time.Minute, Components: []lifecycle.Component{
			{Name: "rater", Run: rater.Run, Ready: rater.Ready},
			{Name: "tariffs", Run: pipeline.NewTariffWatch(rulesPath, cfg.Reload, engine, reg, logger).Run},
		}},
		// 3. The loader inserts and commits what it holds.
		{Name: "loading", Drain: time.Minute, Components: []lifecycle.Component{
			{Name: "loader", Run: loader.Run, Ready: loader.Ready},
		}},
		// 4. The usage API, and /metrics, /healthz and /readyz, which answered until here.
		{Name: "serving", Drain: 10 * time.Second, Components: []lifecycle.Component{
			{Name: "api", Run: func(ctx context.Context) error {
				return api.Run(ctx, apiCfg, logger.With("component", "api"), apiReady)
			}},
		}},
		// 5. Then the ClickHouse clients, the ClickHouse server and the Kafka broker.
		storage,
	}
	osrv, err := obs.Listen(cfg.Metrics, reg, lifecycle.Checks(stages...)...)
	if err != nil {
		mq.broker.Close()
		return 1, fmt.Errorf("metrics: %w", err)
	}
	stages[3].Components = append(stages[3].Components, lifecycle.Component{Name: "metrics", Run: osrv.Run})

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	// live ends when the pipeline stops, whatever the cause.
	live, endLive := context.WithCancel(runCtx)
	done := make(chan error, 1)
	handedOver = true
	go func() {
		done <- lifecycle.Run(runCtx, logger, stages...)
		endLive()
	}()
	stopped := func(err error) (int, error) {
		cancelRun()
		if rerr := <-done; rerr != nil {
			err = fmt.Errorf("%w (%w)", err, rerr) // the stage that stopped, beside the symptom
		}
		return 1, err
	}

	if err := waitReady(live, med.Ready, 30*time.Second); err != nil {
		return stopped(fmt.Errorf("pipeline did not become ready: %w", err))
	}
	select {
	case <-med.CoAP.Ready():
	case <-live.Done():
	}
	var apiAddr string
	select {
	case apiAddr = <-apiReady:
	case <-live.Done():
		return stopped(errors.New("api did not start"))
	}
	mqttAddr := mq.broker.Addr()
	saved := listenAddrs{MQTT: mqttAddr, CoAP: med.CoAP.Addr(), HTTP: med.HTTP.Addr(), API: apiAddr, Kafka: addrs.Kafka}
	if err := saved.save(cfg.Data); err != nil {
		logger.Error("recording the listen addresses; a restart may listen elsewhere", "err", err)
	}
	ready := map[string]string{"mqtt": mqttAddr, "kafka": strings.Join(kcfg.Brokers, ","), "clickhouse": strings.Join(chcfg.Addr, ","),
		"coap": med.CoAP.Addr(), "http": med.HTTP.Addr(), "api": apiAddr, "metrics": osrv.Addr()}
	if chPasswordFile != "" {
		ready["clickhouse_password_file"] = chPasswordFile
	}
	line, _ := json.Marshal(ready)
	fmt.Fprintf(stdout, "ready %s\n", line)
	if chPasswordFile != "" {
		fmt.Fprintf(stdout, "clickhouse %s: user %s, password in %s\n", chcfg.Addr[0], localClickHouseUser, chPasswordFile)
	}
	for _, t := range sim.Tenants {
		if k, ok := demoKeys[t]; ok {
			fmt.Fprintf(stdout, "api key %s: %s  (web page http://%s/)\n", t, k, apiAddr)
		}
	}

	var simDone chan simResult
	if cfg.Simulate > 0 {
		simCtx := live
		if cfg.For > 0 {
			var cancel context.CancelFunc
			simCtx, cancel = context.WithTimeout(live, cfg.For)
			defer cancel()
		}
		simDone = make(chan simResult, 1)
		go func() {
			sent, err := fleet.RunMixed(simCtx, sim.MixedRunConfig{MQTT: "tcp://" + mqttAddr, TopicPrefix: cfg.MQTT.TopicPrefix,
				QoS: 1, Credentials: mq.creds.of, CoAP: med.CoAP.Addr(), HTTP: med.HTTP.Addr(),
				HTTPKey: func(t string) string { return gatewayKeys[t] }, CDRDir: mcfg.CDR.Dir, Interval: cfg.Interval})
			simDone <- simResult{sent, err}
		}()
	}

	code := 0
	if cfg.For > 0 {
		select {
		case <-live.Done():
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
		if live.Err() == nil {
			c, err := loadtest.Check(live, cfg.Drain, set, fleet, sent, store, loadtest.APIClient{Addr: apiAddr, Keys: demoKeys}, stdout)
			if err != nil {
				logger.Error("check", "err", err)
			}
			code = max(code, c)
		}
		cancelRun()
	}
	if err := <-done; err != nil {
		return 1, err
	}
	return code, nil
}

// startClickHouse starts the local ClickHouse server under dataDir/clickhouse, its user
// default with the password kept in dataDir (generated on the first start).
func startClickHouse(ctx context.Context, dataDir string, logger *slog.Logger) (*chserver.Server, string, error) {
	dir := filepath.Join(dataDir, "clickhouse")
	if err := waitPreviousClickHouse(dir, time.Minute, logger); err != nil {
		return nil, "", err
	}
	pwFile := filepath.Join(dataDir, clickHousePasswordFile)
	pw, err := chserver.LoadOrCreatePassword(pwFile)
	if err != nil {
		return nil, "", fmt.Errorf("clickhouse password: %w", err)
	}
	srv, err := chserver.Start(ctx, dir, logger, chserver.WithPassword(pw))
	if errors.Is(err, chserver.ErrNotInstalled) {
		return nil, "", fmt.Errorf("%w\n  install it (Debian/Ubuntu: sudo apt-get install clickhouse-server, or run `make deps`)\n  or point --clickhouse at a running server's native port", err)
	}
	return srv, pwFile, err
}

// demoHTTPKeys are the HTTP ingest keys of the simulated tenants when http.keys names none.
func demoHTTPKeys() []httpin.APIKey {
	var keys []httpin.APIKey
	for _, t := range sim.Tenants {
		keys = append(keys, httpin.APIKey{Key: "demo-key-" + t + "-0000", Tenant: t})
	}
	return keys
}

// simulatedGatewayKeys are HTTP ingest keys for the simulated tenants' gateways, drawn
// for this run: the simulator runs in this process, so they are never written anywhere.
func simulatedGatewayKeys() ([]httpin.APIKey, map[string]string, error) {
	var keys []httpin.APIKey
	byTenant := map[string]string{}
	for _, t := range sim.Tenants {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, fmt.Errorf("simulated gateway keys: %w", err)
		}
		k := "sim-" + t + "-" + hex.EncodeToString(b)
		keys = append(keys, httpin.APIKey{Key: k, Tenant: t})
		byTenant[t] = k
	}
	return keys, byTenant, nil
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
