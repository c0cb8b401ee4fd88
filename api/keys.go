package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"fleetmeter/record"
)

// KeyConfig is one API key as configured: only its SHA-256 is stored.
type KeyConfig struct {
	Name     string `yaml:"name"`     // shown in logs instead of the key
	Tenant   string `yaml:"tenant"`   // the tenant it sees; empty for an operator key
	Operator bool   `yaml:"operator"` // sees every tenant (must name one per request)
	SHA256   string `yaml:"sha256"`   // hex SHA-256 of the key: `printf %s KEY | sha256sum`
}

// Principal is who a request authenticated as.
type Principal struct {
	Name     string
	Tenant   string // "" for operators
	Operator bool
}

// Keys is the key store: hashes only, compared in constant time.
type Keys struct {
	entries []keyEntry
}

type keyEntry struct {
	hash [sha256.Size]byte
	p    Principal
}

// HashKey returns the hex SHA-256 a KeyConfig stores for key.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// NewKeys validates the configured keys (messages name the key's position and field).
func NewKeys(cfgs []KeyConfig) (*Keys, error) {
	k := &Keys{}
	var errs []error
	for i, c := range cfgs {
		at := fmt.Sprintf("keys[%d]", i)
		raw, err := hex.DecodeString(c.SHA256)
		if err != nil || len(raw) != sha256.Size {
			errs = append(errs, fmt.Errorf("%s.sha256: want 64 hex digits (sha256 of the key)", at))
			continue
		}
		switch {
		case c.Operator && c.Tenant != "":
			errs = append(errs, fmt.Errorf("%s: an operator key has no tenant", at))
		case !c.Operator && c.Tenant == "":
			errs = append(errs, fmt.Errorf("%s.tenant: required (or operator: true)", at))
		case c.Tenant != "" && record.CheckTenantID(c.Tenant) != nil:
			errs = append(errs, fmt.Errorf("%s.tenant: %v", at, record.CheckTenantID(c.Tenant)))
		}
		e := keyEntry{p: Principal{Name: c.Name, Tenant: c.Tenant, Operator: c.Operator}}
		copy(e.hash[:], raw)
		k.entries = append(k.entries, e)
	}
	return k, errors.Join(errs...)
}

// Lookup returns the principal of key. Every entry is compared, in constant time, so the
// time taken says nothing about which key (or how much of one) matched.
func (k *Keys) Lookup(key string) (Principal, bool) {
	h := sha256.Sum256([]byte(key))
	var found Principal
	ok := 0
	for i := range k.entries {
		if subtle.ConstantTimeCompare(h[:], k.entries[i].hash[:]) == 1 {
			found, ok = k.entries[i].p, 1
		}
	}
	return found, ok == 1
}

type principalKey struct{}

// TenantFrom returns the principal Auth attached to ctx.
func TenantFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (tests of mounted handlers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// keyOf reads the key from "Authorization: Bearer KEY" or "X-API-Key: KEY".
func keyOf(r *http.Request) string {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// Auth admits requests with a known key and attaches its Principal; others get 401.
func (k *Keys) Auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := keyOf(r)
		p, ok := k.Lookup(key)
		if key == "" || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleetmeter"`)
			writeError(w, http.StatusUnauthorized, "missing or unknown API key")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// ResolveTenant returns the tenant a request is about: a tenant key's own tenant (it may
// repeat it in ?tenant= but not name another), or the ?tenant= an operator key must give.
func ResolveTenant(r *http.Request) (string, error) {
	p, ok := TenantFrom(r.Context())
	if !ok {
		return "", errors.New("not authenticated")
	}
	q := r.URL.Query().Get("tenant")
	if p.Operator {
		if q == "" {
			return "", errors.New("tenant: required with an operator key")
		}
		if err := record.CheckTenantID(q); err != nil {
			return "", fmt.Errorf("tenant: %v", err)
		}
		return q, nil
	}
	if q != "" && q != p.Tenant {
		return "", errors.New("tenant: a tenant key sees only its own tenant; omit tenant")
	}
	return p.Tenant, nil
}

// DemoKeys makes one random key per tenant (fleetmeter standalone prints them): the
// entries to configure, which hold only hashes, and the keys themselves by tenant.
func DemoKeys(tenants []string) ([]KeyConfig, map[string]string, error) {
	var cfgs []KeyConfig
	plain := map[string]string{}
	for _, t := range tenants {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, fmt.Errorf("demo keys: %w", err)
		}
		key := "fm-" + t + "-" + hex.EncodeToString(b)
		plain[t] = key
		cfgs = append(cfgs, KeyConfig{Name: "demo-" + t, Tenant: t, SHA256: HashKey(key)})
	}
	return cfgs, plain, nil
}
