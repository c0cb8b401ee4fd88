package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/ingest/registry"
)

const mosquittoExample = "../../deploy/mosquitto"

// The example files in deploy/mosquitto are what the command writes for its registry.
func TestRegistryMosquittoExampleIsCurrent(t *testing.T) {
	r, err := registry.Load(filepath.Join(mosquittoExample, "devices.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	passwd, acl, n, warnings, err := mosquittoFiles(r, "fleetmeter", []string{"fleetmeter-mediator"}, "")
	if err != nil || len(warnings) != 0 || n != 3 {
		t.Fatalf("devices %d, warnings %v, err %v", n, warnings, err)
	}
	for name, got := range map[string][]byte{"passwd": passwd, "acl": acl} {
		want, err := os.ReadFile(filepath.Join(mosquittoExample, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/mosquitto/%s is stale: run `go run ./cmd/mediator registry mosquitto --registry deploy/mosquitto/devices.yaml --out deploy/mosquitto`\ngot:\n%s", name, got)
		}
	}
}

func TestRegistryMosquitto(t *testing.T) {
	dir := t.TempDir()
	h, err := registry.HashPassword("pw-1")
	if err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(dir, "devices.yaml")
	if err := os.WriteFile(reg, registry.Format(true, []registry.Device{
		{Tenant: "acme", Device: "d-1", MQTTUsername: "acme.d-1", MQTTPasswordHash: h},
		{Tenant: "acme", Device: "d-2", MQTTUsername: "acme.d-2"},
		{Tenant: "acme", Device: "d-3"},
	}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLEETMETER_MQTT_PASSWORD", "mediator-secret")
	var out, errb bytes.Buffer
	code := dispatch([]string{"registry", "mosquitto", "--registry", reg, "--out", dir, "--mediator-username", "med-1,med-2"},
		nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), `device acme/d-2: mqtt_username "acme.d-2" has no mqtt_password_hash`) {
		t.Errorf("no warning for a username without a password: %s", errb.String())
	}
	passwd, _ := os.ReadFile(filepath.Join(dir, "passwd"))
	acl, _ := os.ReadFile(filepath.Join(dir, "acl"))
	users := map[string]registry.PasswordHash{}
	for _, line := range strings.Split(strings.TrimSpace(string(passwd)), "\n") {
		u, hash, _ := strings.Cut(line, ":")
		users[u] = registry.PasswordHash(hash)
	}
	if len(users) != 3 || !users["acme.d-1"].Check("pw-1") || !users["med-1"].Check("mediator-secret") ||
		!users["med-2"].Check("mediator-secret") {
		t.Fatalf("passwd:\n%s", passwd)
	}
	for _, want := range []string{
		"\nuser med-1\ntopic read fleetmeter/+/+/usage/#\n", "\nuser med-2\ntopic read fleetmeter/+/+/usage/#\n",
		"\nuser acme.d-1\ntopic write fleetmeter/acme/d-1/usage\ntopic write fleetmeter/acme/d-1/usage/+\n",
	} {
		if !strings.Contains(string(acl), want) {
			t.Errorf("acl lacks %q:\n%s", want, acl)
		}
	}
	if strings.Contains(string(acl), "acme/d-2") || strings.Contains(string(acl), "acme/d-3") {
		t.Errorf("acl names a device that cannot log in:\n%s", acl)
	}
}

func TestRegistryMosquittoRefuses(t *testing.T) {
	h, _ := registry.HashPassword("pw")
	for _, c := range []struct {
		user, want string
	}{
		{"acme:d-1", `mqtt_username "acme:d-1": Mosquitto's password file and ACL take no ':'`},
		{"fleetmeter-mediator", `mqtt_username "fleetmeter-mediator" is a mediator's`},
	} {
		r, err := registry.New(true, []registry.Device{{Tenant: "acme", Device: "d-1", MQTTUsername: c.user, MQTTPasswordHash: h}})
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, _, err = mosquittoFiles(r, "fleetmeter", []string{"fleetmeter-mediator"}, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.user, err, c.want)
		}
	}
}
