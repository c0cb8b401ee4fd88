package loadtest

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestLoad runs the load command end to end on an embedded Kafka and a local ClickHouse
// (which `make test` installs) with a small input.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse and Kafka: runs in make test, not with -short")
	}
	var stdout, stderr bytes.Buffer
	code := RunLoad([]string{"--records", "20000", "--devices", "1000", "--stall", "30s"}, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout.String(), "clickhouse holds 20000 usage records, want 20000; amounts per tenant match offline rating: true") {
		t.Errorf("no matching count and amounts in the report")
	}
	// The rater's state figures: changelog bytes per record, its process's memory, a restore.
	for _, re := range []string{`rater state: 1000 devices tracked, changelog \d+\.\d bytes per rated record`,
		`rater process: peak RSS \d+\.\d MB`, `restore of partition 0: \d+ changelog entries, \d+ devices in \d+\.\d\ds`} {
		if !regexp.MustCompile(re).MatchString(stdout.String()) {
			t.Errorf("report lacks %q", re)
		}
	}
	for _, stage := range []string{"raw insert", "produce to topic usage", "rater+loader"} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(stage) + `.*\s20000\s+\d+\.\d\d\s+\d+\s`)
		if !re.MatchString(stdout.String()) {
			t.Errorf("no table line for %q with 20000 records", stage)
		}
	}
}
