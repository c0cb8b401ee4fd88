package coap

import (
	"errors"
	"fmt"
	"net"
	"time"

	"fleetmeter/ingest/registry"
)

// Config of the CoAP collector.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Listen is the plain UDP address (coap://); empty: no plain UDP listener. Without
	// dev_mode it only answers 4.01: devices authenticate over DTLS.
	Listen string `yaml:"listen"`
	// DTLSListen is the DTLS address (coaps://, PSK from the registry); empty: off.
	DTLSListen string `yaml:"dtls_listen"`
	// DevMode accepts POST /usage/<tenant>/<device> on plain UDP, the identity taken from
	// the path unauthenticated. For development and simulators only: it is refused beside
	// a DTLS listener or a strict registry (both mean real devices) unless DevModeForce.
	// Even then the dev path refuses a device the registry gives credentials.
	DevMode      bool `yaml:"dev_mode"`
	DevModeForce bool `yaml:"dev_mode_force"`
	// RegistryFile is the device registry (see ingest/registry), reloaded every
	// RegistryReload. Required with dtls_listen unless Registry is set.
	RegistryFile   string        `yaml:"registry_file"`
	RegistryReload time.Duration `yaml:"registry_reload"`
	// Registry, when set by the caller, is used instead of RegistryFile (the mediator
	// shares one watched registry among its collectors).
	Registry *registry.Live `yaml:"-"`
	// MaxBody bounds a request body, block-wise transfers included (4.13 above it).
	MaxBody int `yaml:"max_body"`
	// MaxInFlight bounds the requests awaiting the sink's acknowledgement; above it a
	// request gets 5.03 with Max-Age = BackpressureMaxAge.
	MaxInFlight        int           `yaml:"max_in_flight"`
	BackpressureMaxAge time.Duration `yaml:"backpressure_max_age"`
	// AckTimeout is how long a request waits for the sink before it gets 5.03.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// IdleTimeout closes an endpoint's state (and its response cache, which answers
	// retransmissions) after this long without traffic. It must cover a CON exchange's
	// retransmissions (MAX_TRANSMIT_WAIT, 93 s) or a late retransmission is processed anew.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HandshakeTimeout bounds a DTLS handshake.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`

	// Per-peer state, per listener (see sessions.go). A session is go-coap's state for one
	// remote address (plain UDP) or one DTLS connection. It is unverified until its first
	// request with an admitted identity (plain UDP, dev mode) or its finished handshake
	// (DTLS); plain UDP without dev mode never verifies. MaxSessions bounds all sessions,
	// MaxUnverifiedSessions and MaxUnverifiedBytes (a fixed charge per session plus what
	// it sent) the unverified ones: a new peer over a bound evicts the oldest unverified
	// session, and is dropped only when every session is verified.
	MaxSessions           int   `yaml:"max_sessions"`
	MaxUnverifiedSessions int   `yaml:"max_unverified_sessions"`
	MaxUnverifiedBytes    int64 `yaml:"max_unverified_bytes"`
	// UnverifiedIdleTimeout closes a plain UDP session that sent no valid request this
	// long after it opened (a DTLS handshake is bounded by HandshakeTimeout).
	UnverifiedIdleTimeout time.Duration `yaml:"unverified_idle_timeout"`
}

// DefaultConfig returns the collector defaults.
func DefaultConfig() Config {
	return Config{
		Listen:             "127.0.0.1:5683",
		RegistryReload:     5 * time.Second,
		MaxBody:            256 << 10,
		MaxInFlight:        4096,
		BackpressureMaxAge: 5 * time.Second,
		AckTimeout:         10 * time.Second,
		IdleTimeout:        95 * time.Second,
		HandshakeTimeout:   15 * time.Second,

		MaxSessions:           20000,
		MaxUnverifiedSessions: 1000,
		MaxUnverifiedBytes:    32 << 20,
		UnverifiedIdleTimeout: 5 * time.Second,
	}
}

// maxDatagram is the largest UDP payload: a single datagram body above MaxBody still
// reaches the handler, which answers 4.13, instead of being dropped unanswered.
const maxDatagram = 65507

// Validate reports every problem, naming the key.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" && c.DTLSListen == "" {
		errs = append(errs, errors.New("coap.listen, coap.dtls_listen: at least one is required"))
	}
	for _, a := range []struct{ key, v string }{{"coap.listen", c.Listen}, {"coap.dtls_listen", c.DTLSListen}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: must be host:port, got %q", a.key, a.v))
		}
	}
	if _, port, _ := net.SplitHostPort(c.Listen); c.Listen != "" && c.Listen == c.DTLSListen && port != "0" {
		errs = append(errs, fmt.Errorf("coap.dtls_listen: must differ from coap.listen (%s)", c.Listen))
	}
	if c.DTLSListen != "" && c.Registry == nil && c.RegistryFile == "" {
		errs = append(errs, errors.New("coap.registry_file: required with coap.dtls_listen (it holds the devices' PSKs)"))
	}
	if c.RegistryFile != "" && c.RegistryReload <= 0 {
		errs = append(errs, fmt.Errorf("coap.registry_reload: must be positive, got %v", c.RegistryReload))
	}
	if c.MaxBody <= 0 || c.MaxBody > 16<<20 {
		errs = append(errs, fmt.Errorf("coap.max_body: must be 1..16777216 bytes, got %d", c.MaxBody))
	}
	if c.MaxInFlight <= 0 {
		errs = append(errs, fmt.Errorf("coap.max_in_flight: must be positive, got %d", c.MaxInFlight))
	}
	if c.BackpressureMaxAge < time.Second || c.BackpressureMaxAge > time.Hour {
		errs = append(errs, fmt.Errorf("coap.backpressure_max_age: must be 1s..1h (Max-Age is whole seconds), got %v", c.BackpressureMaxAge))
	}
	if c.AckTimeout <= 0 {
		errs = append(errs, fmt.Errorf("coap.ack_timeout: must be positive, got %v", c.AckTimeout))
	}
	if c.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("coap.idle_timeout: must be positive, got %v", c.IdleTimeout))
	}
	if c.DTLSListen != "" && c.HandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("coap.handshake_timeout: must be positive, got %v", c.HandshakeTimeout))
	}
	if c.MaxSessions <= 0 {
		errs = append(errs, fmt.Errorf("coap.max_sessions: must be positive, got %d", c.MaxSessions))
	}
	if c.MaxUnverifiedSessions <= 0 || c.MaxUnverifiedSessions > max(c.MaxSessions, 1) {
		errs = append(errs, fmt.Errorf("coap.max_unverified_sessions: must be 1..coap.max_sessions (%d), got %d", c.MaxSessions, c.MaxUnverifiedSessions))
	}
	if c.MaxUnverifiedBytes < minUnverifiedBytes {
		errs = append(errs, fmt.Errorf("coap.max_unverified_bytes: must be at least %d (one session and one largest datagram), got %d", minUnverifiedBytes, c.MaxUnverifiedBytes))
	}
	if c.UnverifiedIdleTimeout <= 0 || c.UnverifiedIdleTimeout > c.IdleTimeout {
		errs = append(errs, fmt.Errorf("coap.unverified_idle_timeout: must be positive and at most coap.idle_timeout (%v), got %v", c.IdleTimeout, c.UnverifiedIdleTimeout))
	}
	if c.DevMode && c.DTLSListen != "" && !c.DevModeForce {
		errs = append(errs, errors.New("coap.dev_mode: refused with coap.dtls_listen: devices that authenticate could be impersonated on the unauthenticated path; set coap.dev_mode_force: true to run both"))
	}
	if c.DevMode && !c.DevModeForce && c.Registry != nil {
		if r := c.Registry.Load(); r != nil && r.Strict() {
			errs = append(errs, errStrictDevMode)
		}
	}
	return errors.Join(errs...)
}

// errStrictDevMode: a strict registry means real devices; New checks a registry_file's
// once loaded, Validate a registry the caller set.
var errStrictDevMode = errors.New("coap.dev_mode: refused with a strict device registry (coap.registry_file): " +
	"dev mode takes identities from the path unauthenticated; set coap.dev_mode_force: true to run both")
