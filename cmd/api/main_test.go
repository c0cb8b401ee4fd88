package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/api"
	"fleetmeter/internal/config"
)

// TestConfigErrors: the file is strict and every bad key is named; keys given by flag
// are checked as those of the file.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "api.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		file string
		args []string
		want string
	}{
		{"listen: 127.0.0.1:0\nlistn: x\n", nil, "api.yaml:2: listn: unknown key"},
		{"keys: [{tenant: agrico, sha256: nothex}]\n", nil, "keys[0].sha256: want 64 hex digits"},
		{"limits: {max_buckets: 0}\n", nil, "limits.max_buckets: must be positive"},
		{"listen: 127.0.0.1:0\n", []string{"--keys", "agrico"}, "want TENANT=SHA256"},
		{"listen: 127.0.0.1:0\n", []string{"--keys", "*=" + api.HashKey("k") + ",=" + api.HashKey("j")}, "keys[1].tenant: required"},
	} {
		write(c.file)
		var out, errb bytes.Buffer
		code := run(append([]string{"--config", cfg}, c.args...), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q %v: exit %d, stderr %q; want 2 and %q", c.file, c.args, code, errb.String(), c.want)
		}
	}
}

// TestHashKey prints what a keys entry stores, never the key.
func TestHashKey(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"hash-key", "secret"}, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != api.HashKey("secret") || strings.Contains(got, "secret") {
		t.Errorf("hash-key printed %q", got)
	}
}

// Help goes to stdout with status 0 (it used to exit 2 on stderr); a bad variable is
// named with its key.
func TestHelpAndSources(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 || errb.Len() != 0 ||
		!strings.Contains(out.String(), "--clickhouse.password-file FILE") || !strings.Contains(out.String(), "--keys") {
		t.Fatalf("--help: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "api ") {
		t.Fatalf("--version: exit %d, %q", code, out.String())
	}
	t.Setenv("FLEETMETER_LIMITS_MAX_BUCKETS", "0")
	errb.Reset()
	if code := run(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "FLEETMETER_LIMITS_MAX_BUCKETS: limits.max_buckets: must be positive") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// The secrets a deployment passes by environment (the chart and the compose file do)
// reach the configuration: the ClickHouse password and the billing cursor key, each also
// from a file. The api had no variable for either.
func TestSecretsFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cursor")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func() api.Config {
		t.Helper()
		cfg := api.DefaultConfig()
		if _, err := config.Parse(apiSpec(&cfg), &cfg, nil); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Setenv("FLEETMETER_CLICKHOUSE_PASSWORD", "pw")
	t.Setenv("FLEETMETER_BILLING_CURSOR_KEY_FILE", key)
	cfg := parse()
	if cfg.ClickHouse.Password != "pw" || cfg.Billing.CursorKey != strings.Repeat("k", 32) {
		t.Fatalf("password %q, cursor key %q", cfg.ClickHouse.Password, cfg.Billing.CursorKey)
	}
	os.Unsetenv("FLEETMETER_CLICKHOUSE_PASSWORD")
	t.Setenv("FLEETMETER_CLICKHOUSE_PASSWORD_FILE", key)
	if got := parse().ClickHouse.Password; got != strings.Repeat("k", 32) {
		t.Fatalf("FLEETMETER_CLICKHOUSE_PASSWORD_FILE: %q", got)
	}
}

// docs/configuration.md's api section is generated from api.Config; with
// FLEETMETER_UPDATE_DOCS=1 this test rewrites it, else it fails when it is stale.
func TestConfigurationReference(t *testing.T) {
	cfg := api.DefaultConfig()
	spec := apiSpec(&cfg)
	if err := config.CheckSpec(spec, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := config.SyncReference("../../docs/configuration.md", spec.Name, config.Reference(spec, &cfg)); err != nil {
		t.Fatal(err)
	}
}
