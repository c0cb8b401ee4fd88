package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/internal/config"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dispatch(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Config errors used to exit 2 with no output: each is printed with its key and source,
// before anything connects.
func TestRunPrintsConfigErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("kafka:\n  brokers: [127.0.0.1:1]\nmqtt:\n  qoss: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"missing file", nil, []string{"run", "--config", "/nonexistent.yaml"}, "--config: config: open /nonexistent.yaml: no such file"},
		{"unknown key", nil, []string{"run", "--config", bad}, bad + ":4: mqtt.qoss: unknown key"},
		{"bad qos from env", map[string]string{"FLEETMETER_MQTT_QOS": "5"}, []string{"run"}, "FLEETMETER_MQTT_QOS: mqtt.qos: must be 0, 1 or 2, got 5"},
		{"bad qos flag", nil, []string{"run", "--mqtt.qos", "3"}, "--mqtt.qos: mqtt.qos: must be 0, 1 or 2, got 3"},
		{"not a number", map[string]string{"FLEETMETER_KAFKA_LINGER": "soon"}, []string{"run"}, "FLEETMETER_KAFKA_LINGER: kafka.linger: want a duration"},
		{"collector checked before connecting", nil, []string{"run", "--http.enabled"}, "http.keys: at least one API key is required"},
		{"log level", nil, []string{"run", "--log-level", "loud"}, "--log-level: log_level: must be debug, info, warn or error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, stderr := run(t, c.args...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, c.want)
			}
		})
	}
}

func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"run", "--help"}, {"run", "-h"}, {"cdr", "--help"},
		{"cdr", "decode", "--help"}, {"cdr", "import", "--help"}, {"registry", "--help"}, {"registry", "mosquitto", "--help"}} {
		code, stdout, stderr := run(t, args...)
		if code != 0 || stdout == "" || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and help on stdout only", args, code, stdout, stderr)
		}
	}
	_, stdout, _ := run(t, "run", "--help")
	for _, want := range []string{"--kafka.brokers list", "env FLEETMETER_KAFKA_BROKERS", "--mqtt.password-file FILE",
		"--http.keys yaml", "--cdr.tenants.default string"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("mediator run --help lacks %q", want)
		}
	}
	if strings.Contains(stdout, "kafka.session-timeout") {
		t.Error("mediator run --help lists a consumer setting")
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := run(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "mediator ") || !strings.Contains(stdout, "go1.") {
		t.Fatalf("exit %d, %q", code, stdout)
	}
}

func TestMQTTPasswordFromFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLEETMETER_MQTT_PASSWORD_FILE", pw)
	cfg := defaultMediator()
	spec := mediatorSpec(&cfg)
	spec.Validate = nil
	if _, err := config.Parse(spec, &cfg, nil); err != nil || cfg.MQTT.Password != "s3cret" {
		t.Fatalf("password %q, err %v", cfg.MQTT.Password, err)
	}
}

// The collectors' sample files decode through mediator run's configuration.
func TestSampleConfigsDecode(t *testing.T) {
	for _, f := range []string{"../../ingest/mqtt/mqtt.sample.yaml", "../../ingest/coap/sample.yaml",
		"../../ingest/httpin/httpin.sample.yaml", "../../ingest/cdrdir/cdrdir.sample.yaml"} {
		cfg := defaultMediator()
		spec := mediatorSpec(&cfg)
		spec.Validate = nil // they name files that exist where they are deployed
		if _, err := config.Parse(spec, &cfg, []string{"--config", f}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
