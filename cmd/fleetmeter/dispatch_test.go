package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/internal/config"
)

func dispatch(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = config.Dispatch("fleetmeter", commands, args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpAndVersionOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"standalone", "--help"}, {"load", "-h"}} {
		code, stdout, stderr := dispatch(args...)
		if code != 0 || stdout == "" || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and help on stdout only", args, code, stdout, stderr)
		}
	}
	if code, stdout, _ := dispatch("--version"); code != 0 || !strings.HasPrefix(stdout, "fleetmeter ") {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
	if code, _, stderr := dispatch("nonsense"); code != 2 || !strings.Contains(stderr, `unknown command "nonsense"`) {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
}

// fleetmeter standalone used to exit 2 silently on these.
func TestStandaloneConfigErrorsArePrinted(t *testing.T) {
	code, _, stderr := dispatch("standalone", "--config", "/nonexistent.yaml")
	if code != 2 || !strings.Contains(stderr, "/nonexistent.yaml: no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
	t.Setenv("FLEETMETER_SIMULATE", "many")
	code, _, stderr = dispatch("standalone", "--data", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "FLEETMETER_SIMULATE") {
		t.Errorf("bad variable: exit %d, stderr %q", code, stderr)
	}
}

// Every configuration error of the standalone names the key and where its value came
// from: the file and line, the variable, the flag (also an old flag name).
func TestStandaloneConfigErrorsNameKeyAndSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	typo := write("typo.yaml", "data: /tmp/x\nhttp:\n  keyz: []\n")
	pw := write("pw.yaml", "data: /tmp/x\nclickhouse:\n  password: secret\n")
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--config", typo}, nil, typo + ":3: http.keyz: unknown key"},
		{[]string{"--config", pw}, nil, pw + ":3: clickhouse.password: only for a server of your own"},
		{[]string{"--data", dir, "--http-addr", "8080"}, nil, "--http-addr: http.listen: must be host:port"},
		{[]string{"--data", dir, "--mqtt.listen", "nohost"}, nil, "--mqtt.listen: mqtt.listen: must be host:port"},
		{[]string{"--data", dir}, map[string]string{"FLEETMETER_KAFKA_PARTITIONS": "0"}, "FLEETMETER_KAFKA_PARTITIONS: kafka.partitions: must be >= 1"},
		{[]string{"--data", dir, "--coap.dtls-listen", "127.0.0.1:5684"}, nil, "coap.registry_file: required with coap.dtls_listen"},
		{[]string{"--data", dir, "--api.keys", "[{name: k, tenant: acme, sha256: abc}]"}, nil, "--api.keys: api.keys[0].sha256: want 64 hex digits"},
		{[]string{"--simulate", "3"}, nil, "data: a directory"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, stderr := dispatch(append([]string{"standalone"}, c.args...)...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, c.want)
			}
		})
	}
	// A secret given on the command line is never echoed back.
	_, _, stderr := dispatch("standalone", "--config", pw)
	if strings.Contains(stderr, "secret") {
		t.Errorf("the password shows in %q", stderr)
	}
}

// The sections of a deployment reach the standalone's configuration from the file, the
// old flags set the keys they stand for, and flags override the file.
func TestStandaloneConfigLayers(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "fm.yaml")
	body := `data: /var/lib/fleetmeter
http:
  listen: 0.0.0.0:8080
  keys:
    - {key_file: /run/secrets/acme, tenant: acme}
mqtt:
  listen: 0.0.0.0:1883
  registry_file: /etc/fleetmeter/devices.yaml
coap:
  dev_mode: false
  dtls_listen: 0.0.0.0:5684
  registry_file: /etc/fleetmeter/devices.yaml
api:
  listen: 0.0.0.0:8480
kafka:
  brokers: [k1:9092, k2:9092]
`
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLEETMETER_CLICKHOUSE_PASSWORD_FILE", pw)
	cfg := defaultStandalone()
	spec := standaloneSpec(&cfg)
	spec.Validate = nil // the files named do not exist here
	if _, err := config.Parse(spec, &cfg, []string{"--config", conf, "--http-addr", "127.0.0.1:9090", "--clickhouse", "ch:9000",
		"--registry", "/tmp/other.yaml", "--partitions", "6"}); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %s %v %s %s %v %s %s %s %v %v %d", cfg.Data, cfg.HTTP.Listen, cfg.HTTP.Keys, cfg.MQTT.Listen,
		cfg.MQTT.RegistryFile, cfg.CoAP.DevMode, cfg.CoAP.DTLSListen, cfg.CoAP.RegistryFile, cfg.API.Listen, cfg.Kafka.Brokers,
		cfg.ClickHouse.Addr, cfg.Kafka.Partitions)
	want := "/var/lib/fleetmeter 127.0.0.1:9090 [{ /run/secrets/acme acme}] 0.0.0.0:1883 /tmp/other.yaml false 0.0.0.0:5684 " +
		"/etc/fleetmeter/devices.yaml 0.0.0.0:8480 [k1:9092 k2:9092] [ch:9000] 6"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if cfg.ClickHouse.Password != "s3cret" {
		t.Fatalf("FLEETMETER_CLICKHOUSE_PASSWORD_FILE: password %q", cfg.ClickHouse.Password)
	}
}

// Each subcommand lists its own flags: the standalone's keys (and the old flags) but not
// the load test's, and the other way round.
func TestStandaloneHelpListsItsFlags(t *testing.T) {
	_, standalone, _ := dispatch("standalone", "--help")
	_, load, _ := dispatch("load", "--help")
	for _, s := range []string{"--http.keys yaml", "--mqtt.registry-file", "--registry string", "--coap.dtls-listen",
		"--clickhouse.password-file FILE", "env FLEETMETER_CLICKHOUSE_PASSWORD", "--api.keys"} {
		if !strings.Contains(standalone, s) {
			t.Errorf("standalone --help lacks %q", s)
		}
	}
	for _, s := range []string{"-cpuprofile", "-overlap"} {
		if strings.Contains(standalone, s) || !strings.Contains(load, s) {
			t.Errorf("%s: in standalone --help, or missing from load --help", s)
		}
	}
}

// docs/configuration.md's standalone section is generated from standaloneConfig; with
// FLEETMETER_UPDATE_DOCS=1 this test rewrites it, else it fails when it is stale.
func TestConfigurationReference(t *testing.T) {
	cfg := defaultStandalone()
	spec := standaloneSpec(&cfg)
	if err := config.CheckSpec(spec, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := config.SyncReference("../../docs/configuration.md", spec.Name, config.Reference(spec, &cfg)); err != nil {
		t.Fatal(err)
	}
}
