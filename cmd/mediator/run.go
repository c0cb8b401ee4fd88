package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
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

func defaultMediator() mediatorConfig {
	return mediatorConfig{MediatorConfig: pipeline.DefaultMediatorConfig(), Listen: "127.0.0.1:9464", LogLevel: "info"}
}

// validate checks the whole configuration before anything connects: Kafka and every
// enabled collector.
func (c *mediatorConfig) validate() error {
	errs := []error{c.Kafka.Validate()}
	if c.MQTT.Enabled {
		errs = append(errs, c.MQTT.Validate())
	}
	if c.CoAP.Enabled {
		errs = append(errs, c.CoAP.Validate())
	}
	if c.HTTP.Enabled {
		errs = append(errs, c.HTTP.Validate())
	}
	if c.CDR.Enabled {
		errs = append(errs, c.CDR.Validate())
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log_level: must be debug, info, warn or error, got %q", c.LogLevel))
	}
	return errors.Join(errs...)
}

// mediatorSpec is `mediator run`'s command line: every key of mediatorConfig is a flag
// and a FLEETMETER_* variable. The collectors' sample files document their keys in full.
func mediatorSpec(cfg *mediatorConfig) config.Spec {
	return config.Spec{
		Name:     "mediator run",
		Summary:  "Run the enabled collectors (MQTT, CoAP, HTTP, CDR directory) and produce what they receive to Kafka until SIGTERM, then drain.",
		Skip:     []string{"kafka.instance", "kafka.session_timeout"}, // consumer settings
		Secrets:  []string{"mqtt.password"},
		Help:     mediatorHelp,
		Validate: cfg.validate,
	}
}

var mediatorHelp = map[string]string{
	"listen":                       "address of /metrics, /healthz and /readyz (empty: off)",
	"log_level":                    "debug, info, warn or error",
	"kafka.brokers":                "Kafka seed brokers, comma-separated",
	"kafka.partitions":             "partitions of the topics created on start",
	"kafka.replication_factor":     "replication of the topics created on start (-1: broker default)",
	"kafka.linger":                 "how long a partition batch waits to fill",
	"kafka.batch_records":          "flush a partition batch at this many records",
	"kafka.batch_bytes":            "... or at this estimated size in bytes (at most 921600)",
	"kafka.client_id":              "Kafka client id",
	"mqtt.enabled":                 "run the MQTT collector",
	"mqtt.brokers":                 "MQTT broker URLs (tcp://host:1883, ssl://host:8883), comma-separated",
	"mqtt.client_id":               "MQTT client id (the persistent session is bound to it)",
	"mqtt.topic_prefix":            "topics are PREFIX/<tenant>/<device>/usage",
	"mqtt.shared_group":            "subscribe through $share/GROUP/ so mediators split the load",
	"mqtt.qos":                     "subscription QoS: 0, 1 or 2",
	"mqtt.username":                "MQTT username",
	"mqtt.password":                "MQTT password (prefer mqtt.password_file)",
	"mqtt.ca_file":                 "PEM roots for ssl:// brokers (empty: system roots)",
	"mqtt.cert_file":               "PEM client certificate (mutual TLS)",
	"mqtt.key_file":                "its key",
	"mqtt.insecure_tls":            "skip broker certificate verification",
	"mqtt.keep_alive":              "MQTT keep-alive",
	"mqtt.connect_timeout":         "bound of one connection attempt",
	"mqtt.max_reconnect_interval":  "reconnect backoff doubles from 1s up to this",
	"mqtt.max_in_flight":           "messages awaiting Kafka before the collector stops reading",
	"mqtt.registry_file":           "device registry (strict: unlisted devices rejected)",
	"mqtt.registry_reload":         "device registry poll interval",
	"coap.enabled":                 "run the CoAP collector",
	"coap.listen":                  "CoAP UDP address (empty: no plain UDP)",
	"coap.dtls_listen":             "CoAP DTLS (PSK) address (empty: off)",
	"coap.dev_mode":                "accept POST /usage/<tenant>/<device> on plain UDP, unauthenticated",
	"coap.dev_mode_force":          "allow dev_mode beside DTLS or a strict registry",
	"coap.registry_file":           "device registry (PSK identities); required with dtls_listen",
	"coap.registry_reload":         "device registry poll interval",
	"coap.max_body":                "largest request body in bytes, block-wise included",
	"coap.max_in_flight":           "requests awaiting Kafka before answering 5.03",
	"coap.ack_timeout":             "how long a request waits for Kafka before 5.03",
	"http.enabled":                 "run the HTTP ingest (needs http.keys)",
	"http.listen":                  "HTTP ingest address",
	"http.keys":                    "per-tenant API keys, YAML: [{key_file: FILE, tenant: T}] (key: inline)",
	"http.max_body":                "largest request body in bytes, after decompression",
	"http.max_lines":               "most records per request",
	"http.max_concurrent":          "requests served at once",
	"http.tenant_max_concurrent":   "requests of one tenant served at once",
	"http.tenant_rate":             "request starts per second per tenant (0: unlimited)",
	"http.tenant_burst":            "request starts at once per tenant after a quiet spell",
	"http.ack_timeout":             "how long a request waits for Kafka before 503",
	"http.tls_cert":                "PEM certificate: serve HTTPS (with tls_key)",
	"http.tls_key":                 "its key",
	"http.registry_file":           "device registry (strict: unlisted devices rejected)",
	"cdr.enabled":                  "run the CDR drop-directory collector",
	"cdr.dir":                      "CDR drop directory",
	"cdr.done":                     "where finished files go (default DIR/done)",
	"cdr.failed":                   "where damaged files go (default DIR/failed)",
	"cdr.pattern":                  "glob on file names",
	"cdr.settle":                   "how long a file must stay unchanged before it is taken",
	"cdr.poll":                     "how often the directory is listed",
	"cdr.tenants.default":          "tenant of CDRs no rule matches (empty: rejected)",
	"cdr.tenants.rules":            "tenant rules, YAML (see ingest/cdrdir/cdrdir.sample.yaml)",
	"coap.backpressure_max_age":    "Max-Age of a 5.03 answered at max_in_flight",
	"coap.idle_timeout":            "an endpoint's state and response cache live this long without traffic (cover 93 s of retransmissions)",
	"coap.handshake_timeout":       "bound of a DTLS handshake",
	"coap.max_sessions":            "most sessions per listener",
	"coap.max_unverified_sessions": "most sessions not yet verified (the oldest is evicted)",
	"coap.max_unverified_bytes":    "most bytes held for unverified sessions",
	"coap.unverified_idle_timeout": "a plain UDP session without a valid request is closed after this long",
	"http.read_header_timeout":     "bound of reading a request's headers",
	"http.read_timeout":            "bound of reading a whole request",
	"http.idle_timeout":            "keep-alive connections close after this long idle",
	"http.retry_after":             "Retry-After of a 503",
	"http.shutdown_timeout":        "on SIGTERM, in-flight requests get this long to finish",
	"http.max_past_age":            "records older than this (against received time) are rejected: stale_time",
	"http.max_future_skew":         "records this far in the future are rejected: future_time",
	"http.registry_reload":         "device registry poll interval",
	"cdr.chunk_records":            "records per Kafka hand-over",
	"cdr.max_file_bytes":           "larger files are moved to failed/ unread",
}

// runCollectors is `mediator run`: the collectors until SIGTERM, then a graceful drain.
func runCollectors(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg := defaultMediator()
	spec := mediatorSpec(&cfg)
	if _, err := config.Parse(spec, &cfg, args); err != nil {
		return config.Exit(spec.Name, err, stdout, stderr)
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
