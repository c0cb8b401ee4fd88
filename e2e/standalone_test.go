package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStandaloneSelfCheck runs the main job as `make demo` does, shorter: the standalone
// pipeline with a simulated fleet must print a ready line naming its endpoints, then a
// per-tenant comparison that matches, and exit 0.
func TestStandaloneSelfCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "fleetmeter"), "standalone", "--data", t.TempDir(),
		"--simulate", "12", "--for", "6s", "--interval", "200ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	err = cmd.Wait()
	out := strings.Join(lines, "\n")
	if err != nil {
		t.Fatalf("standalone: %v\nstdout:\n%s\nstderr:\n%s", err, out, tail(stderr.String()))
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ready {") {
		t.Fatalf("first line is not the ready line:\n%s", out)
	}
	var ready map[string]string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[0], "ready ")), &ready); err != nil {
		t.Fatalf("ready line: %v", err)
	}
	for _, k := range []string{"mqtt", "kafka", "clickhouse", "coap", "http", "api"} {
		if !strings.HasPrefix(ready[k], "127.0.0.1:") {
			t.Errorf("ready line: %s = %q, want a loopback host:port", k, ready[k])
		}
	}
	for _, tenant := range []string{"agrico", "autoco", "utilico"} {
		if !strings.Contains(out, tenant) {
			t.Errorf("no totals for tenant %s:\n%s", tenant, out)
		}
	}
	for _, tenant := range []string{"agrico", "autoco", "utilico"} {
		if !strings.Contains(out, "api key "+tenant+": ") {
			t.Errorf("no demo api key printed for %s:\n%s", tenant, out)
		}
	}
	// The simulated fleet is the mixed one: meters over CoAP, trackers over MQTT, trucks
	// behind HTTP gateways and 5G sessions as CDR files all carried records.
	m := regexp.MustCompile(`sent usage records: mqtt (\d+), coap (\d+), http (\d+), cdr (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no per-protocol count of the sent records:\n%s", out)
	}
	for i, proto := range []string{"mqtt", "coap", "http", "cdr"} {
		if m[i+1] == "0" {
			t.Errorf("no records sent over %s:\n%s", proto, out)
		}
	}
	// The self-check compares what was sent with ClickHouse and with the usage api read
	// with each tenant's printed key.
	if !strings.Contains(out, "check ok") || !strings.Contains(out, "the usage api agrees") || strings.Contains(out, "MISMATCH") {
		t.Fatalf("totals do not match:\n%s", out)
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}
