package coap

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// A dev-mode request naming a device the registry gives credentials is refused 4.01 and
// only counted: the path is not proof of identity. Devices without credentials report.
func TestDevPathRefusesCredentialedDevice(t *testing.T) {
	sink := &recSink{}
	cfg := devConfig()
	cfg.Registry = testRegistry(t, false)
	c := start(t, cfg, sink)
	for _, tc := range []struct {
		path string
		want codes.Code
	}{
		{"/usage/acme/car-1", codes.Unauthorized}, // DTLS PSK
		{"/usage/farm/gw-1", codes.Unauthorized},  // MQTT username
		{"/usage/farm/meter-7", codes.Changed},    // listed, no credentials
		{"/usage/farm/meter-99", codes.Changed},   // not listed, registry not strict
	} {
		if got := post(t, c.Addr(), tc.path, "cred-1"); got != tc.want {
			t.Errorf("%s: got %v want %v", tc.path, got, tc.want)
		}
	}
	if b, rej := sink.snapshot(); len(b) != 2 || len(rej) != 0 {
		t.Fatalf("batches %d rejects %+v", len(b), rej)
	}
	if udp, _ := c.Sessions(); udp.Verified != 2 {
		t.Fatalf("verified sessions %+v: refused paths must not verify", udp)
	}
}

// Dev mode beside a DTLS listener or a strict registry is refused unless forced, with an
// error naming the keys.
func TestDevModeRefusal(t *testing.T) {
	dir := t.TempDir()
	strictFile, laxFile := dir+"/strict.yaml", dir+"/lax.yaml"
	for file, strict := range map[string]bool{strictFile: true, laxFile: false} {
		data := fmt.Appendf(nil, "strict: %v\ndevices: [{tenant: farm, device: meter-7}]\n", strict)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	strict, lax := testRegistry(t, true), testRegistry(t, false)
	const (
		dtlsErr   = "coap.dev_mode: refused with coap.dtls_listen"
		strictErr = "coap.dev_mode: refused with a strict device registry (coap.registry_file)"
	)
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"dev mode alone", func(*Config) {}, ""},
		{"dev mode, dtls", func(c *Config) { c.DTLSListen, c.RegistryFile = "127.0.0.1:0", laxFile }, dtlsErr},
		{"dev mode, dtls, forced", func(c *Config) { c.DTLSListen, c.RegistryFile, c.DevModeForce = "127.0.0.1:0", laxFile, true }, ""},
		{"dev mode, strict registry_file", func(c *Config) { c.RegistryFile = strictFile }, strictErr},
		{"dev mode, strict registry", func(c *Config) { c.Registry = strict }, strictErr},
		{"dev mode, strict registry, forced", func(c *Config) { c.Registry, c.DevModeForce = strict, true }, ""},
		{"dev mode, lax registry_file", func(c *Config) { c.RegistryFile = laxFile }, ""},
		{"dev mode, lax registry", func(c *Config) { c.Registry = lax }, ""},
		{"no dev mode, strict, dtls", func(c *Config) { c.DevMode, c.DTLSListen, c.Registry = false, "127.0.0.1:0", strict }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := devConfig()
			tc.edit(&cfg)
			_, err := New(cfg, &recSink{}, nil, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "coap.dev_mode_force: true")):
				t.Fatalf("want %q naming coap.dev_mode_force, got %v", tc.wantErr, err)
			}
		})
	}
}
