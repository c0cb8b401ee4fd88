package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sync/errgroup"

	"fleetmeter/internal/config"
	"fleetmeter/internal/obs"
	"fleetmeter/pipeline"
)

type mediatorConfig struct {
	pipeline.MediatorConfig `yaml:",inline"`
	Listen                  string `yaml:"listen"` // /metrics, /healthz, /readyz
	LogLevel                string `yaml:"log_level"`
}

// runCollectors is `mediator run`: the collectors until SIGTERM, then a graceful drain.
func runCollectors(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg := mediatorConfig{MediatorConfig: pipeline.DefaultMediatorConfig(), Listen: "127.0.0.1:9464", LogLevel: "info"}
	fset := flag.NewFlagSet("mediator run", flag.ContinueOnError)
	fset.SetOutput(stderr)
	if _, err := config.Load(fset, args, &cfg, func(fs *flag.FlagSet) {
		fs.Var(config.StringList{P: &cfg.Kafka.Brokers}, "kafka.brokers", "Kafka seed brokers, comma-separated")
		fs.Var(config.StringList{P: &cfg.MQTT.Brokers}, "mqtt.brokers", "MQTT broker URLs (tcp://host:1883), comma-separated")
		fs.BoolVar(&cfg.MQTT.Enabled, "mqtt.enabled", cfg.MQTT.Enabled, "run the MQTT collector")
		fs.StringVar(&cfg.MQTT.ClientID, "mqtt.client-id", cfg.MQTT.ClientID, "MQTT client id (the persistent session is bound to it)")
		fs.StringVar(&cfg.MQTT.SharedGroup, "mqtt.shared-group", cfg.MQTT.SharedGroup, "subscribe through $share/GROUP/ so mediators split the load")
		fs.StringVar(&cfg.MQTT.TopicPrefix, "mqtt.topic-prefix", cfg.MQTT.TopicPrefix, "topics are PREFIX/<tenant>/<device>/usage")
		fs.StringVar(&cfg.MQTT.Username, "mqtt.username", cfg.MQTT.Username, "MQTT username")
		fs.StringVar(&cfg.MQTT.Password, "mqtt.password", cfg.MQTT.Password, "MQTT password (prefer FLEETMETER_MQTT_PASSWORD)")
		fs.Func("mqtt.qos", "subscription QoS: 0, 1 or 2 (default 1)", func(v string) error {
			q, err := strconv.ParseUint(v, 10, 8)
			if err != nil || q > 2 {
				return fmt.Errorf("qos value must be 0, 1, or 2, got %q", v)
			}
			cfg.MQTT.QoS = byte(q)
			return nil
		})
		fs.StringVar(&cfg.MQTT.CAFile, "mqtt.ca-file", cfg.MQTT.CAFile, "PEM roots for ssl:// brokers")
		fs.StringVar(&cfg.MQTT.CertFile, "mqtt.cert-file", cfg.MQTT.CertFile, "PEM client certificate (mutual TLS)")
		fs.StringVar(&cfg.MQTT.KeyFile, "mqtt.key-file", cfg.MQTT.KeyFile, "its key")
		fs.BoolVar(&cfg.MQTT.InsecureTLS, "mqtt.insecure-tls", cfg.MQTT.InsecureTLS, "skip broker certificate verification")
		fs.IntVar(&cfg.MQTT.MaxInFlight, "mqtt.max-in-flight", cfg.MQTT.MaxInFlight, "messages awaiting Kafka before the collector stops reading")
		fs.StringVar(&cfg.MQTT.RegistryFile, "mqtt.registry-file", cfg.MQTT.RegistryFile, "device registry (strict: unlisted devices rejected)")
		fs.DurationVar(&cfg.MQTT.RegistryReload, "mqtt.registry-reload", cfg.MQTT.RegistryReload, "device registry poll interval")
		fs.BoolVar(&cfg.CoAP.Enabled, "coap.enabled", cfg.CoAP.Enabled, "run the CoAP collector")
		fs.StringVar(&cfg.CoAP.Listen, "coap.listen", cfg.CoAP.Listen, "CoAP UDP address (empty: no plain UDP)")
		fs.StringVar(&cfg.CoAP.DTLSListen, "coap.dtls-listen", cfg.CoAP.DTLSListen, "CoAP DTLS (PSK) address (empty: off)")
		fs.BoolVar(&cfg.CoAP.DevMode, "coap.dev-mode", cfg.CoAP.DevMode, "accept POST /usage/<tenant>/<device> on plain UDP")
		fs.StringVar(&cfg.CoAP.RegistryFile, "coap.registry-file", cfg.CoAP.RegistryFile, "device registry (PSK identities)")
		fs.BoolVar(&cfg.HTTP.Enabled, "http.enabled", cfg.HTTP.Enabled, "run the HTTP ingest (keys come from the config file)")
		fs.StringVar(&cfg.HTTP.Listen, "http.listen", cfg.HTTP.Listen, "HTTP ingest address")
		fs.BoolVar(&cfg.CDR.Enabled, "cdr.enabled", cfg.CDR.Enabled, "run the CDR drop-directory collector")
		fs.StringVar(&cfg.CDR.Dir, "cdr.dir", cfg.CDR.Dir, "CDR drop directory (done/ and failed/ beneath it)")
		fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /metrics, /healthz and /readyz (empty: off)")
		fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	}); err != nil {
		return 2
	}
	logger, err := obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := obs.NewRegistry()
	med, err := pipeline.NewMediator(ctx, cfg.MediatorConfig, reg, logger)
	if err != nil {
		logger.Error("mediator start", "err", err)
		return 1
	}
	srv, err := obs.Listen(cfg.Listen, reg, obs.Check{Name: "mediator", Fn: med.Ready})
	if err != nil {
		logger.Error("listen", "err", err)
		return 1
	}
	logger.Info("mediator running", "listen", srv.Addr(), "kafka", cfg.Kafka.Brokers, "mqtt", cfg.MQTT.Brokers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return med.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	if err := g.Wait(); err != nil {
		logger.Error("mediator stopped", "err", err)
		return 1
	}
	return 0
}
