package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/api"
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
