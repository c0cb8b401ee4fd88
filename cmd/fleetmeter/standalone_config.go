package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"fleetmeter/api"
	"fleetmeter/clickhouse"
	"fleetmeter/ingest/cdrdir"
	"fleetmeter/ingest/coap"
	"fleetmeter/ingest/httpin"
	"fleetmeter/internal/config"
	"fleetmeter/internal/obs"
	"fleetmeter/kafka"
)

// standaloneConfig is `fleetmeter standalone`'s configuration: the sections of the
// services (kafka, clickhouse, coap, http, cdr as mediator run and rater take them; mqtt
// for the embedded broker; api) plus the keys of the one-box install. An empty
// kafka.brokers runs the embedded Kafka broker, an empty clickhouse.addr the local
// ClickHouse server, and an empty listen address is the one of the last run on the same
// data directory, else a free loopback port.
type standaloneConfig struct {
	Data       string               `yaml:"data"`
	Rules      string               `yaml:"rules"`
	Reload     time.Duration        `yaml:"reload"`
	Metrics    string               `yaml:"metrics"`
	LogLevel   string               `yaml:"log_level"`
	Kafka      kafka.Config         `yaml:"kafka"`
	ClickHouse clickhouse.Config    `yaml:"clickhouse"`
	MQTT       standaloneMQTTConfig `yaml:"mqtt"`
	CoAP       coap.Config          `yaml:"coap"`
	HTTP       httpin.Config        `yaml:"http"`
	CDR        cdrdir.Config        `yaml:"cdr"`
	API        standaloneAPIConfig  `yaml:"api"`
	// The simulated fleet and the self-check (--for).
	Simulate int           `yaml:"simulate"`
	For      time.Duration `yaml:"for"`
	Interval time.Duration `yaml:"interval"`
	Seed     uint64        `yaml:"seed"`
	Drain    time.Duration `yaml:"drain"`
}

// standaloneMQTTConfig is the embedded MQTT broker's section.
type standaloneMQTTConfig struct {
	Listen               string        `yaml:"listen"`
	TopicPrefix          string        `yaml:"topic_prefix"`
	RegistryFile         string        `yaml:"registry_file"`
	RegistryReload       time.Duration `yaml:"registry_reload"`
	MaxInFlight          int           `yaml:"max_in_flight"`
	MaxInFlightPerClient int           `yaml:"max_in_flight_per_client"`
}

// standaloneAPIConfig is the usage API's section.
type standaloneAPIConfig struct {
	Listen string          `yaml:"listen"`
	Keys   []api.KeyConfig `yaml:"keys"`
}

// localClickHouseUser is the one user of the local ClickHouse server.
const localClickHouseUser = "default"

func defaultStandalone() standaloneConfig {
	c := standaloneConfig{Reload: 2 * time.Second, Metrics: "127.0.0.1:0", LogLevel: "warn",
		Kafka: kafka.DefaultConfig(), ClickHouse: clickhouse.DefaultConfig(),
		MQTT: standaloneMQTTConfig{TopicPrefix: "fleetmeter", RegistryReload: 5 * time.Second, MaxInFlight: 20000,
			MaxInFlightPerClient: 1000},
		CoAP: coap.DefaultConfig(), HTTP: httpin.DefaultConfig(), CDR: cdrdir.DefaultConfig(),
		Interval: time.Second, Seed: 1, Drain: 90 * time.Second}
	c.Kafka.Brokers, c.Kafka.Partitions = nil, 4
	c.ClickHouse.Addr = nil
	// CoAP on plain UDP in dev mode (POST /usage/<tenant>/<device>) and HTTP ingest with a
	// demo key per simulated tenant unless http.keys names the tenants' own.
	c.CoAP.Enabled, c.CoAP.Listen, c.CoAP.DevMode = true, "", true
	c.HTTP.Enabled, c.HTTP.Listen = true, ""
	return c
}

func standaloneSpec(cfg *standaloneConfig) config.Spec {
	return config.Spec{
		Name: "fleetmeter standalone",
		Summary: "Run the whole pipeline on one machine: embedded MQTT and Kafka brokers (or kafka.brokers), " +
			"a local ClickHouse server (or clickhouse.addr), the collectors, rater, loader and usage API; " +
			"with --simulate, a simulated fleet, and with --for, a self-check.",
		Skip:    []string{"kafka.instance"},
		Secrets: []string{"clickhouse.password"},
		Help:    standaloneHelp,
		// The flags of the command lines written before the configuration file existed.
		Aliases: map[string]string{"kafka": "kafka.brokers", "clickhouse": "clickhouse.addr", "partitions": "kafka.partitions",
			"registry": "mqtt.registry_file", "mqtt-addr": "mqtt.listen", "coap-addr": "coap.listen",
			"http-addr": "http.listen", "api-addr": "api.listen"},
		Validate: cfg.validate,
	}
}

// validate checks the whole configuration before anything starts. Addresses left empty
// are resolved later; a placeholder stands in for them here.
func (c *standaloneConfig) validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("data: a directory for the embedded brokers' and ClickHouse's data is required"))
	}
	if c.Reload <= 0 {
		errs = append(errs, fmt.Errorf("reload: must be positive (how often the tariffs are polled), got %s", c.Reload))
	}
	if _, err := obs.ParseLogger(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log_level: must be debug, info, warn or error, got %q", c.LogLevel))
	}
	const placeholder = "127.0.0.1:0"
	k := c.Kafka
	if len(k.Brokers) == 0 {
		k.Brokers = []string{placeholder}
	}
	errs = append(errs, k.Validate())
	ch := c.ClickHouse
	if len(ch.Addr) == 0 {
		ch.Addr = []string{placeholder}
		if ch.Password != "" {
			errs = append(errs, errors.New("clickhouse.password: only for a server of your own (clickhouse.addr); "+
				"the local server's password is generated under the data directory"))
		}
		if ch.Username != localClickHouseUser {
			errs = append(errs, fmt.Errorf("clickhouse.username: the local server's user is %s, got %q", localClickHouseUser, ch.Username))
		}
	}
	errs = append(errs, ch.Validate())
	for _, a := range []struct{ key, v string }{{"mqtt.listen", c.MQTT.Listen}, {"api.listen", c.API.Listen}} {
		if _, _, err := net.SplitHostPort(a.v); a.v != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s: must be host:port, got %q", a.key, a.v))
		}
	}
	if c.MQTT.RegistryReload <= 0 {
		errs = append(errs, fmt.Errorf("mqtt.registry_reload: must be positive, got %s", c.MQTT.RegistryReload))
	}
	if c.MQTT.MaxInFlight < 1 || c.MQTT.MaxInFlightPerClient < 1 {
		errs = append(errs, fmt.Errorf("mqtt.max_in_flight, mqtt.max_in_flight_per_client: must be >= 1, got %d and %d",
			c.MQTT.MaxInFlight, c.MQTT.MaxInFlightPerClient))
	}
	if c.CoAP.Enabled {
		cc := c.CoAP
		if cc.Listen == "" {
			cc.Listen = placeholder
		}
		errs = append(errs, cc.Validate())
	}
	if c.HTTP.Enabled {
		hc := c.HTTP
		if hc.Listen == "" {
			hc.Listen = placeholder
		}
		if len(hc.Keys) == 0 {
			hc.Keys = demoHTTPKeys()
		}
		errs = append(errs, hc.Validate())
	}
	if c.CDR.Enabled {
		errs = append(errs, c.CDR.Validate())
	}
	if _, err := api.NewKeys(c.API.Keys); err != nil {
		for _, e := range leaves(err) {
			errs = append(errs, fmt.Errorf("api.%w", e))
		}
	}
	if c.Simulate < 0 {
		errs = append(errs, fmt.Errorf("simulate: must be >= 0, got %d", c.Simulate))
	}
	if c.For < 0 {
		errs = append(errs, fmt.Errorf("for: must be >= 0, got %s", c.For))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval: must be > 0, got %s", c.Interval))
	}
	return errors.Join(errs...)
}

func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// standaloneHelp is the standalone's own keys; the sections it shares with the services
// take their text from config.SharedHelp.
var standaloneHelp = map[string]string{
	"data":                          "directory for all state: Kafka log, ClickHouse data and password, tariffs, listen addresses (required)",
	"rules":                         "tariff directory or file (default: the example tariffs, copied to DATA/rules; reloaded on change)",
	"metrics":                       "address of /metrics, /healthz and /readyz (empty: off)",
	"kafka.brokers":                 "a Kafka cluster of your own, comma-separated (empty: the embedded broker, its log under DATA/kafka)",
	"clickhouse.addr":               "a ClickHouse of your own, native host:port (empty: a local clickhouse-server under DATA/clickhouse, user default with a generated password in DATA/clickhouse-password)",
	"clickhouse.username":           "ClickHouse user (the local server's: default)",
	"clickhouse.password":           "password of a ClickHouse of your own (prefer clickhouse.password_file; the local server's is generated)",
	"mqtt.listen":                   "embedded MQTT broker's address (empty: as last time on this data directory, else a free loopback port)",
	"mqtt.topic_prefix":             "devices publish to PREFIX/<tenant>/<device>/usage",
	"mqtt.registry_file":            "device registry whose MQTT credentials the embedded broker accepts",
	"mqtt.max_in_flight":            "messages awaiting Kafka, all connections, before the broker stops reading",
	"mqtt.max_in_flight_per_client": "... and per connection",
	"coap.listen":                   "CoAP UDP address (empty: as last time on this data directory, else a free loopback port)",
	"http.listen":                   "HTTP ingest address (empty: as last time on this data directory, else a free loopback port)",
	"http.keys":                     "per-tenant API keys, YAML: [{key_file: FILE, tenant: T}] (empty: demo-key-<tenant>-0000 for the simulated tenants)",
	"api.listen":                    "usage API and web page address (empty: as last time on this data directory, else a free loopback port)",
	"api.keys":                      "usage API keys, YAML: [{name: N, tenant: T, sha256: HEX}] (the simulated tenants also get a new key each run, printed)",
	"simulate":                      "feed the pipeline N simulated devices: smart meters over CoAP, trackers over MQTT, trucks behind HTTP gateways, 5G slices as CHF CDR files",
	"for":                           "stop after this long, drain, and check ClickHouse's totals against what was sent (0: run until SIGTERM)",
	"interval":                      "one tick of the simulated fleet: trackers report every tick, trucks and 5G sessions every 2nd, meters every 4th",
	"seed":                          "simulator seed",
	"drain":                         "with --for: how long to wait for ClickHouse to hold everything sent",
}
