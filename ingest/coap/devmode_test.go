package coap

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"fleetmeter/record"
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

// Tenant and device ids on the dev path are record's ids: anything else is refused 4.00
// with its reason, written to rejected, and does not verify the session.
func TestDevPathIDs(t *testing.T) {
	sink := &recSink{}
	c := start(t, devConfig(), sink)
	long := strings.Repeat("d", record.MaxIDLen+1)
	for i, tc := range []struct{ tenant, device, reason string }{
		{"farm", "bad id", record.ReasonBadDevice},
		{"farm", long, record.ReasonBadDevice},
		{"fa\x1b[31mrm", "meter-7", record.ReasonBadTenant},
		{"farm", "", record.ReasonMissingIdentity},
	} {
		conn, err := net.Dial("udp", c.Addr())
		if err != nil {
			t.Fatal(err)
		}
		m := pool.NewMessage(context.Background())
		if err := m.SetupPost("/usage", []byte{byte(i)}, message.AppJSON, bytes.NewReader(jsonBody("id-1"))); err != nil {
			t.Fatal(err)
		}
		m.AddOptionString(message.URIPath, tc.tenant)
		m.AddOptionString(message.URIPath, tc.device)
		m.SetType(message.Confirmable)
		m.SetMessageID(int32(100 + i))
		pkt, err := m.MarshalWithEncoder(coder.DefaultCoder)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		resp, ok := readResp(t, conn, 5*time.Second)
		_ = conn.Close()
		if !ok || resp.code != codes.BadRequest || !strings.HasPrefix(resp.payload, tc.reason+": ") {
			t.Fatalf("%q/%q: %+v", tc.tenant, tc.device, resp)
		}
		_, rejects := sink.snapshot()
		if r := rejects[len(rejects)-1]; r.Reason != tc.reason || r.Tenant != tc.tenant || r.Device != tc.device || !record.KnownReason(r.Reason) {
			t.Fatalf("rejection %+v", r)
		}
	}
	if b, rej := sink.snapshot(); len(b) != 0 || len(rej) != 4 {
		t.Fatalf("batches %d rejects %d", len(b), len(rej))
	}
	if udp, _ := c.Sessions(); udp.Verified != 0 {
		t.Fatalf("invalid ids verified a session: %+v", udp)
	}
}
