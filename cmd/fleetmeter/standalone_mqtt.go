package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/ingest"
	"fleetmeter/ingest/mqtt"
	"fleetmeter/ingest/registry"
	"fleetmeter/pipeline"
	"fleetmeter/sim"
)

// standaloneMQTT is the embedded broker with the devices it admits.
type standaloneMQTT struct {
	broker *embeddedBroker
	creds  *fleetCredentials // the simulated fleet's; nil without --simulate
	// watch reloads mqtt.registry_file until ctx ends (without one, it only waits).
	watch func(ctx context.Context) error
}

// startStandaloneMQTT provisions the devices the embedded broker admits (mqtt.registry_file, and
// the simulated fleet with credentials generated for this run, its registry written to
// DATA/simulated-devices.yaml) and starts the broker on addr, feeding sink.
func startStandaloneMQTT(cfg standaloneConfig, addr string, fleet *sim.Fleet, mcfg pipeline.MediatorConfig,
	sink ingest.Sink, reg prometheus.Registerer, logger *slog.Logger) (*standaloneMQTT, error) {
	out := &standaloneMQTT{watch: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	dir := &deviceDirectory{}
	if file := cfg.MQTT.RegistryFile; file != "" {
		live, err := registry.LoadLive(file)
		if err != nil {
			return nil, fmt.Errorf("mqtt.registry_file: %w", err)
		}
		dir.operator = live
		out.watch = func(ctx context.Context) error {
			_ = live.Watch(ctx, file, cfg.MQTT.RegistryReload, func(r *registry.Registry) {
				logger.Info("device registry reloaded", "file", r.File(), "devices", r.Len(), "stamp", r.Stamp())
			}, func(err error) {
				logger.Error("device registry change refused; the previous registry stays in force", "err", err)
			})
			return nil
		}
	}
	if len(fleet.Devices) > 0 {
		creds, err := newFleetCredentials()
		if err != nil {
			return nil, err
		}
		if dir.simulated, err = creds.provision(fleet, filepath.Join(cfg.Data, "simulated-devices.yaml")); err != nil {
			return nil, err
		}
		out.creds = creds
	}
	b, err := startBroker(brokerConfig{Addr: addr, TopicPrefix: mcfg.MQTT.TopicPrefix, Devices: dir.byUsername,
		Reserved: []string{mcfg.MQTT.ClientID, mqtt.DefaultConfig().ClientID}, Sink: sink,
		MaxInFlight: cfg.MQTT.MaxInFlight, MaxInFlightPerClient: cfg.MQTT.MaxInFlightPerClient, Registerer: reg, Logger: logger})
	if err != nil {
		return nil, err
	}
	out.broker = b
	return out, nil
}
