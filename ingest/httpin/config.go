package httpin

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// MinKeyLength is the shortest API key accepted: shorter keys are guessable.
const MinKeyLength = 16

// Config of the HTTP collector. Keys are in the YAML section `http` of the mediator
// config; validation messages name them so.
type Config struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"` // host:port; port 0 picks a free one (see Server.Addr)
	// Keys are the per-tenant API keys (Authorization: Bearer <key>); at least one when
	// enabled. A tenant may have several (rotation).
	Keys []APIKey `yaml:"keys"`
	// MaxBody bounds a request body in bytes, after gzip decompression too (413).
	MaxBody int64 `yaml:"max_body"`
	// MaxLines bounds the records of one request: JSON Lines lines, CloudEvents in a
	// batch, plain JSON objects or SenML records (413).
	MaxLines int `yaml:"max_lines"`
	// MaxConcurrent bounds the requests served at once; more get 503 at once. With
	// MaxBody it bounds the memory the collector holds (about 3 x MaxBody each).
	MaxConcurrent int `yaml:"max_concurrent"`
	// TenantMaxConcurrent bounds the requests of one tenant (all its keys) served at
	// once, so one tenant's slow uploads cannot take every MaxConcurrent slot; more get
	// 429 at once. A value above MaxConcurrent acts as MaxConcurrent.
	TenantMaxConcurrent int `yaml:"tenant_max_concurrent"`
	// TenantRate and TenantBurst are a token bucket of request starts per tenant:
	// TenantRate requests per second on average, TenantBurst at once after a quiet spell;
	// more get 429 with the Retry-After that frees a token. TenantRate 0 disables it.
	TenantRate  float64 `yaml:"tenant_rate"`
	TenantBurst int     `yaml:"tenant_burst"`
	// ReadHeaderTimeout and ReadTimeout bound reading the headers and the whole request.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"` // keep-alive connections
	// AckTimeout is how long a request waits for the sink (Kafka) to acknowledge its
	// records before answering 503; the records may still land, and the client's retry
	// is deduplicated by event_id.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// RetryAfter is the Retry-After of a 503 (whole seconds, rounded up).
	RetryAfter time.Duration `yaml:"retry_after"`
	// ShutdownTimeout bounds the graceful shutdown: in-flight requests get this long to
	// finish (it should exceed AckTimeout), then connections are closed.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxPastAge and MaxFutureSkew bound record times against the received time
	// (stale_time, future_time), for every body kind.
	MaxPastAge    time.Duration `yaml:"max_past_age"`
	MaxFutureSkew time.Duration `yaml:"max_future_skew"`
	// TLSCert and TLSKey (PEM files, both or neither) switch the listener to HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// RegistryFile is the device registry (see ingest/registry), reloaded every
	// RegistryReload. With a registry, a strict one refuses devices it does not list
	// (unknown_device), and any refuses a device id it lists only under other tenants
	// (wrong_tenant). Empty and Registry nil: no registry, every device is admitted.
	RegistryFile   string        `yaml:"registry_file"`
	RegistryReload time.Duration `yaml:"registry_reload"`
	// Registry, when set by the caller, is used instead of RegistryFile (a mediator
	// sharing one watched registry among its collectors); the collector does not watch it.
	Registry *registry.Live `yaml:"-"`
}

// APIKey maps one bearer key to its tenant. The key is given inline or read from
// KeyFile (one key, surrounding whitespace trimmed), never both.
type APIKey struct {
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
	Tenant  string `yaml:"tenant"`
}

// DefaultConfig returns the collector defaults (disabled: it needs keys).
func DefaultConfig() Config {
	return Config{
		Listen:        "127.0.0.1:8080",
		MaxBody:       4 << 20,
		MaxLines:      10000,
		MaxConcurrent: 64,
		// A quarter of the slots: one tenant's uploads, however slow, leave 48 to others.
		TenantMaxConcurrent: 16,
		TenantRate:          200,
		TenantBurst:         400,
		ReadHeaderTimeout:   10 * time.Second,
		ReadTimeout:         60 * time.Second,
		IdleTimeout:         120 * time.Second,
		AckTimeout:          10 * time.Second,
		RetryAfter:          5 * time.Second,
		ShutdownTimeout:     30 * time.Second,
		MaxPastAge:          35 * 24 * time.Hour,
		MaxFutureSkew:       5 * time.Minute,
		RegistryReload:      5 * time.Second,
	}
}

// Validate reports every problem, naming the key.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("http.listen: must be host:port, got %q", c.Listen))
	}
	if c.Enabled && len(c.Keys) == 0 {
		errs = append(errs, errors.New("http.keys: at least one API key is required when enabled"))
	}
	for i, k := range c.Keys {
		p := fmt.Sprintf("http.keys[%d]", i)
		switch {
		case k.Key != "" && k.KeyFile != "":
			errs = append(errs, fmt.Errorf("%s: set key or key_file, not both", p))
		case k.Key == "" && k.KeyFile == "":
			errs = append(errs, fmt.Errorf("%s: key or key_file is required", p))
		case k.Key != "":
			if err := checkKey(k.Key); err != nil {
				errs = append(errs, fmt.Errorf("%s.key: %w", p, err))
			}
		}
		if k.Tenant == "" {
			errs = append(errs, fmt.Errorf("%s.tenant: required", p))
		} else if err := record.CheckTenantID(k.Tenant); err != nil {
			errs = append(errs, fmt.Errorf("%s.tenant: %w", p, err))
		}
	}
	positive := func(key string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("http.%s: must be positive, got %d", key, v))
		}
	}
	positive("max_body", c.MaxBody)
	positive("max_lines", int64(c.MaxLines))
	positive("max_concurrent", int64(c.MaxConcurrent))
	positive("tenant_max_concurrent", int64(c.TenantMaxConcurrent))
	switch {
	case c.TenantRate < 0 || c.TenantRate != c.TenantRate || c.TenantRate > 1e9:
		errs = append(errs, fmt.Errorf("http.tenant_rate: must be within [0, 1e9] requests per second (0: no limit), got %v", c.TenantRate))
	case c.TenantRate > 0 && c.TenantBurst < 1:
		errs = append(errs, fmt.Errorf("http.tenant_burst: must be at least 1 when http.tenant_rate is set, got %d", c.TenantBurst))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", c.ReadHeaderTimeout}, {"read_timeout", c.ReadTimeout},
		{"idle_timeout", c.IdleTimeout}, {"ack_timeout", c.AckTimeout}, {"retry_after", c.RetryAfter},
		{"shutdown_timeout", c.ShutdownTimeout}, {"max_past_age", c.MaxPastAge}, {"max_future_skew", c.MaxFutureSkew},
		{"registry_reload", c.RegistryReload}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("http.%s: must be a positive duration, got %s", d.key, d.v))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("http.tls_cert, http.tls_key: set both or neither"))
	}
	return errors.Join(errs...)
}

// limits are the payload limits every body kind is held to.
func (c Config) limits() payload.Limits {
	return payload.Limits{MaxRecords: c.MaxLines, MaxPastAge: c.MaxPastAge, MaxFutureSkew: c.MaxFutureSkew,
		MaxCounter: payload.DefaultLimits().MaxCounter}
}

func checkKey(k string) error {
	if len(k) < MinKeyLength {
		return fmt.Errorf("must be at least %d characters", MinKeyLength)
	}
	if strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return errors.New("must be printable ASCII without spaces")
	}
	return nil
}
