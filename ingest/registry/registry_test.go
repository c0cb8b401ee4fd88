package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fleetmeter/record"
)

func TestLoadLookups(t *testing.T) {
	r, err := Load("testdata/registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Strict() || r.Len() != 3 || r.File() != "testdata/registry.yaml" || len(r.Stamp()) != 16 {
		t.Fatalf("strict=%v len=%d file=%q stamp=%q", r.Strict(), r.Len(), r.File(), r.Stamp())
	}
	d, ok := r.ByPSKIdentity("car-0001@acme-auto")
	if !ok || d.Tenant != "acme-auto" || d.Device != "car-0001" || string(d.CoAPPSK) != "secret-car-0001" || d.MQTTUsername != "acme-car-0001" {
		t.Fatalf("by identity: %+v %v", d, ok)
	}
	d, ok = r.ByPSKIdentity("car-0002@acme-auto")
	want := []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	if !ok || !bytes.Equal(d.CoAPPSK, want) {
		t.Fatalf("hex psk: %x %v", d.CoAPPSK, ok)
	}
	if _, ok := r.ByPSKIdentity("nobody"); ok {
		t.Fatal("unknown identity found")
	}
	if d, ok := r.Lookup("greenfield", "meter-17"); !ok || d.CoAPPSKIdentity != "" || d.CoAPPSK != nil {
		t.Fatalf("lookup: %+v %v", d, ok)
	}
	if _, ok := r.Lookup("greenfield", "car-0001"); ok {
		t.Fatal("device found under the wrong tenant")
	}
	if d, ok := r.ByMQTTUsername("gf-meter-17"); !ok || d.Device != "meter-17" {
		t.Fatalf("by mqtt username: %+v %v", d, ok)
	}
}

func TestAdmit(t *testing.T) {
	strict, err := New(true, []Device{{Tenant: "t", Device: "d"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := strict.Admit("t", "d"); err != nil {
		t.Fatal(err)
	}
	err = strict.Admit("t", "other")
	var inv *record.InvalidError
	if !errors.As(err, &inv) || inv.Reason != ReasonUnknownDevice || !strings.Contains(inv.Msg, "t/other") {
		t.Fatalf("strict unknown: %v", err)
	}
	lax, _ := New(false, []Device{{Tenant: "t", Device: "d"}})
	if err := lax.Admit("t", "other"); err != nil {
		t.Fatalf("non-strict: %v", err)
	}
	var none *Registry
	if err := none.Admit("t", "other"); err != nil {
		t.Fatalf("nil registry: %v", err)
	}
	if _, ok := none.ByPSKIdentity("x"); ok {
		t.Fatal("nil registry found an identity")
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load("testdata/bad_unknown_key.yaml")
	if err == nil || err.Error() != `testdata/bad_unknown_key.yaml:5: coap_psk_id: unknown field "coap_psk_id"` {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = Load("testdata/bad_semantics.yaml")
	if err == nil {
		t.Fatal("want errors")
	}
	want := []string{
		`testdata/bad_semantics.yaml:8: devices[1].device: device acme-auto/car-0001 is listed twice`,
		`testdata/bad_semantics.yaml:11: devices[2].coap_psk_identity: identity "shared" is already used by another device`,
		`testdata/bad_semantics.yaml:16: devices[3].coap_psk: must be a quoted string ("0x..." for hex)`,
		`testdata/bad_semantics.yaml:20: devices[4].coap_psk: bad hex after 0x: encoding/hex: invalid byte: U+007A 'z'`,
		`testdata/bad_semantics.yaml:23: devices[5].coap_psk_identity: needs coap_psk`,
		`testdata/bad_semantics.yaml:24: devices[6].tenant: required`,
		`testdata/bad_semantics.yaml:25: devices[6].device: "a/b": only printable ASCII without spaces, '/', '+' or '#'`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	var es Errors
	var e *Error
	if !errors.As(err, &es) || len(es) != len(want) || !errors.As(err, &e) || e.Line != 8 {
		t.Fatalf("typed errors: %#v", err)
	}
	if _, err := Load("testdata/missing.yaml"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Parse("x.yaml", []byte("strict: maybe\n")); err == nil || !strings.HasPrefix(err.Error(), "x.yaml:1: ") {
		t.Fatalf("bad bool: %v", err)
	}
	if r, err := Parse("empty.yaml", nil); err != nil || r.Len() != 0 || r.Strict() {
		t.Fatalf("empty file: %v", err)
	}
}

func TestWatchSwapsAndRefusesInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "devices.yaml")
	write := func(s string) {
		t.Helper()
		// Write and rename, as an operator's tooling (or a ConfigMap) replaces a file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("strict: true\ndevices:\n  - {tenant: t, device: d1}\n")
	live, err := LoadLive(path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes int
	var errs []error
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- live.Watch(ctx, path, 5*time.Millisecond, func(*Registry) {
			mu.Lock()
			changes++
			mu.Unlock()
		}, func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	write("strict: true\ndevices:\n  - {tenant: t, device: d1}\n  - {tenant: t, device: d2}\n")
	waitFor("reload", func() bool { _, ok := live.Load().Lookup("t", "d2"); return ok })

	write("strict: true\ndevices:\n  - {tenant: t, device: d3, colour: red}\n")
	waitFor("refusal", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 1 })
	if _, ok := live.Load().Lookup("t", "d2"); !ok {
		t.Fatal("invalid file replaced the registry")
	}
	mu.Lock()
	if !strings.Contains(errs[0].Error(), "colour") || !strings.Contains(errs[0].Error(), "keeping the registry in force") {
		t.Fatalf("refusal error: %v", errs[0])
	}
	mu.Unlock()

	// The same content rewritten is no change; a missing file is reported once.
	write("strict: true\ndevices:\n  - {tenant: t, device: d3, colour: red}\n")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor("missing file", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 2 })
	time.Sleep(30 * time.Millisecond)
	write("strict: false\ndevices: []\n")
	waitFor("recovery", func() bool { return !live.Load().Strict() })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch returned %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if changes != 2 || len(errs) != 2 {
		t.Fatalf("changes=%d errs=%v", changes, errs)
	}
}

func TestWatchBadInterval(t *testing.T) {
	if err := Watch(context.Background(), "x", 0, func(*Registry) {}, nil); err == nil {
		t.Fatal("want error")
	}
}

// The admission rule every collector applies: a listed id is claimed by its tenants, a
// strict registry refuses what it does not list, and wrong_tenant says who claims it.
func TestAdmission(t *testing.T) {
	for _, strict := range []bool{false, true} {
		r, err := Parse("r.yaml", []byte(fmt.Sprintf("strict: %t\ndevices:\n  - {tenant: acme, device: car-1}\n  - {tenant: bolt, device: car-1}\n  - {tenant: acme, device: car-2}\n", strict)))
		if err != nil {
			t.Fatal(err)
		}
		a := NewAdmission(r)
		for _, c := range []struct{ tenant, device, reason, owners string }{
			{"acme", "car-1", "", ""},
			{"bolt", "car-1", "", ""},
			{"acme", "car-2", "", ""},
			{"bolt", "car-2", record.ReasonWrongTenant, "acme"},
			{"crook", "car-1", record.ReasonWrongTenant, "acme, bolt"},
			{"acme", "ghost", map[bool]string{true: record.ReasonUnknownDevice}[strict], ""},
		} {
			reason, owners := a.Check(c.tenant, c.device)
			if reason != c.reason || owners != c.owners {
				t.Errorf("strict %t: Check(%s, %s) = %q %q, want %q %q", strict, c.tenant, c.device, reason, owners, c.reason, c.owners)
			}
		}
	}
	var ad Admitter
	if ad.Current() != nil {
		t.Fatal("an admitter without a registry returned an admission")
	}
}

// Admit applies the whole rule, wrong_tenant included, for collectors that call it per
// record (CoAP's dev path).
func TestAdmitWrongTenant(t *testing.T) {
	lax, _ := New(false, []Device{{Tenant: "t", Device: "d"}})
	var inv *record.InvalidError
	if err := lax.Admit("u", "d"); !errors.As(err, &inv) || inv.Reason != record.ReasonWrongTenant || strings.Contains(inv.Msg, `"t"`) {
		t.Fatalf("a device claimed by another tenant: %v", err)
	}
}
