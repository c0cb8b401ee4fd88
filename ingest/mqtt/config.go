package mqtt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"fleetmeter/ingest/registry"
)

// Config of the MQTT collector.
type Config struct {
	Enabled     bool     `yaml:"enabled"`
	Brokers     []string `yaml:"brokers"`      // tcp://host:1883, ssl://host:8883
	ClientID    string   `yaml:"client_id"`    // stable: the persistent session hangs on it
	TopicPrefix string   `yaml:"topic_prefix"` // topics are <prefix>/<tenant>/<device>/usage[/<format>]
	SharedGroup string   `yaml:"shared_group"` // non-empty: subscribe via $share/<group>/ to split load
	QoS         byte     `yaml:"qos"`
	Username    string   `yaml:"username"`
	Password    string   `yaml:"password"`
	CAFile      string   `yaml:"ca_file"`   // PEM roots for ssl:// brokers (empty: system roots)
	CertFile    string   `yaml:"cert_file"` // PEM client certificate for mutual TLS
	KeyFile     string   `yaml:"key_file"`  // its key
	InsecureTLS bool     `yaml:"insecure_tls"`

	// Zero durations and MaxInFlight take their DefaultConfig values.
	KeepAlive            time.Duration `yaml:"keep_alive"`
	ConnectTimeout       time.Duration `yaml:"connect_timeout"`
	MaxReconnectInterval time.Duration `yaml:"max_reconnect_interval"` // reconnect backoff doubles from 1s up to this
	// MaxInFlight bounds the messages handed to Kafka and not yet acknowledged. At the
	// bound the collector stops reading from the broker, which keeps holding the rest in
	// the session: memory stays bounded while Kafka is slow or down.
	MaxInFlight int `yaml:"max_in_flight"`

	// RegistryFile is the device registry (see ingest/registry), reloaded every
	// RegistryReload. With a registry, a strict one refuses devices it does not list
	// (unknown_device), and any refuses a device id it lists only under other tenants
	// (wrong_tenant). Empty and Registry nil: no registry, every device is admitted.
	RegistryFile   string        `yaml:"registry_file"`
	RegistryReload time.Duration `yaml:"registry_reload"`
	// Registry, when set by the caller, is used instead of RegistryFile (the mediator
	// shares one watched registry among its collectors); the collector does not watch it.
	Registry *registry.Live `yaml:"-"`
}

// DefaultConfig returns the collector defaults.
func DefaultConfig() Config {
	return Config{Brokers: []string{"tcp://127.0.0.1:1883"}, ClientID: "fleetmeter-mediator",
		TopicPrefix: "fleetmeter", QoS: 1, KeepAlive: 30 * time.Second, ConnectTimeout: 10 * time.Second,
		MaxReconnectInterval: 30 * time.Second, MaxInFlight: 20000, RegistryReload: 5 * time.Second}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.KeepAlive == 0 {
		c.KeepAlive = d.KeepAlive
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	if c.MaxReconnectInterval == 0 {
		c.MaxReconnectInterval = d.MaxReconnectInterval
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.RegistryReload == 0 {
		c.RegistryReload = d.RegistryReload
	}
	return c
}

// Validate reports every problem, naming the key.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("mqtt.brokers: at least one broker URL is required"))
	}
	for _, b := range c.Brokers {
		u, err := url.Parse(b)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("mqtt.brokers: %q: %w", b, err))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("mqtt.brokers: %q: want scheme://host:port", b))
		default:
			switch u.Scheme {
			case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
			default:
				errs = append(errs, fmt.Errorf("mqtt.brokers: %q: scheme must be tcp, mqtt, ssl, tls, mqtts, ws or wss", b))
			}
		}
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("mqtt.client_id: required (the persistent session is bound to it)"))
	}
	if c.QoS > 2 {
		errs = append(errs, fmt.Errorf("mqtt.qos: must be 0, 1 or 2, got %d", c.QoS))
	}
	if c.TopicPrefix == "" || strings.ContainsAny(c.TopicPrefix, "+#") || strings.HasPrefix(c.TopicPrefix, "$") {
		errs = append(errs, fmt.Errorf("mqtt.topic_prefix: must be non-empty without wildcards or a leading $, got %q", c.TopicPrefix))
	}
	if c.SharedGroup != "" && strings.ContainsAny(c.SharedGroup, "/+#") {
		errs = append(errs, fmt.Errorf("mqtt.shared_group: must not contain /, + or #, got %q", c.SharedGroup))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("mqtt.cert_file, mqtt.key_file: give both or neither"))
	}
	if c.KeepAlive < 0 {
		errs = append(errs, fmt.Errorf("mqtt.keep_alive: must be >= 0, got %s", c.KeepAlive))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("mqtt.connect_timeout: must be >= 0, got %s", c.ConnectTimeout))
	}
	if c.MaxReconnectInterval != 0 && c.MaxReconnectInterval < time.Second {
		errs = append(errs, fmt.Errorf("mqtt.max_reconnect_interval: must be >= 1s, got %s", c.MaxReconnectInterval))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("mqtt.max_in_flight: must be >= 0, got %d", c.MaxInFlight))
	}
	if c.RegistryReload < 0 {
		errs = append(errs, fmt.Errorf("mqtt.registry_reload: must be positive, got %s", c.RegistryReload))
	}
	return errors.Join(errs...)
}

// Filter is the subscription filter the config implies. The trailing multi-level wildcard
// matches both <prefix>/<tenant>/<device>/usage (payload format sniffed) and
// .../usage/<format>; deeper topics match too and are rejected as bad_topic rather than
// never delivered.
func (c Config) Filter() string {
	f := c.TopicPrefix + "/+/+/usage/#"
	if c.SharedGroup != "" {
		f = "$share/" + c.SharedGroup + "/" + f
	}
	return f
}
