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
	"time"

	"fleetmeter/internal/config"
	"fleetmeter/internal/lifecycle"
	"fleetmeter/internal/obs"
	"fleetmeter/pipeline"
)

type mediatorConfig struct {
	pipeline.MediatorConfig `yaml:",inline"`
	Listen                  string `yaml:"listen"` // /metrics, /healthz, /readyz
	LogLevel                string `yaml:"log_level"`
	Pprof                   bool   `yaml:"pprof"` // /debug/pprof/ on listen
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
		Validate: cfg.validate,
	}
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
	// Shutdown order, once SIGTERM came:
	stages := []lifecycle.Stage{
		// 1. The collectors stop taking input and answer what they hold once Kafka
		// acknowledged it, or refuse it; then the producer flushes (30 s at most).
		{Name: "collectors", Drain: time.Minute, Components: []lifecycle.Component{
			{Name: "mediator", Run: med.Run, Ready: med.Ready}}},
		// 2. /metrics, /healthz and /readyz, which answered until here.
		{Name: "observability", Drain: 5 * time.Second},
	}
	srv, err := obs.Listen(cfg.Listen, reg, lifecycle.Checks(stages...)...)
	if err != nil {
		logger.Error("listen", "err", err)
		return 1
	}
	if cfg.Pprof {
		srv.Pprof()
	}
	stages[1].Components = []lifecycle.Component{{Name: "metrics", Run: srv.Run}}
	logger.Info("mediator running", "listen", srv.Addr(), "kafka", cfg.Kafka.Brokers, "mqtt", cfg.MQTT.Brokers)
	if err := lifecycle.Run(ctx, logger, stages...); err != nil {
		logger.Error("mediator stopped", "err", err)
		return 1
	}
	return 0
}
