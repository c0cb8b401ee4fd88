package clickhouse

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/clickhouse/schema.sql from the migrations")

// modern is a current server (what ch-modern-check runs).
var modern = Version{Major: 26, Minor: 7}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{"18.16.1": {18, 16, 1}, "26.7.2.1": {26, 7, 2}, "19.3": {19, 3, 0}} {
		got, err := ParseVersion(in)
		if err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x.y", "18"} {
		if _, err := ParseVersion(in); err == nil {
			t.Errorf("ParseVersion(%q): expected an error", in)
		}
	}
	if FeaturesFor(Version{18, 16, 1}).LowCardinality || !FeaturesFor(modern).LowCardinality {
		t.Error("LowCardinality must be off on 18.16 and on on current servers")
	}
}

func TestRenderVariants(t *testing.T) {
	old := Schema{Database: "fm", Features: FeaturesFor(Version{18, 16, 1})}
	sql, err := old.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"LowCardinality", "ON CLUSTER", "Replicated", "Distributed", "{{", "_local"} {
		if strings.Contains(sql, bad) {
			t.Errorf("18.16 single-node schema contains %q", bad)
		}
	}
	cl := Schema{Database: "fm", Cluster: "c1", Features: FeaturesFor(modern)}
	sql, err = cl.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CREATE TABLE IF NOT EXISTS fm.rated_usage_local ON CLUSTER c1",
		"ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fm/rated_usage_local', '{replica}', keep_first)",
		"ENGINE = Distributed(c1, fm, rated_usage_local, cityHash64(tenant, record_id))",
		"TO fm.rated_daily_device_local",
		"FROM fm.rated_usage_local",
		"LowCardinality(String)",
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("cluster schema lacks %q", want)
		}
	}
	// Optional: write every variant for ch-modern-check.
	if dir := os.Getenv("CH_RENDER_DIR"); dir != "" {
		for name, s := range map[string]Schema{
			"single-18.16.sql":   old,
			"single-modern.sql":  {Database: "fm", Features: FeaturesFor(modern)},
			"cluster-modern.sql": cl,
		} {
			out, err := s.Render()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// deploy/clickhouse/schema.sql is the clustered schema for operators; it must stay what
// the store itself would apply. Regenerate with: go test ./clickhouse -run Deploy -update
func TestDeploySchemaUpToDate(t *testing.T) {
	s := Schema{Database: "fleetmeter", Cluster: "fleetmeter", Features: FeaturesFor(modern)}
	body, err := s.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := "-- Generated from clickhouse/migrations by `go test ./clickhouse -run Deploy -update`; do not edit.\n" +
		"-- Clustered schema: database fleetmeter, cluster fleetmeter (see README.md).\n\n" + body
	path := filepath.Join("..", "deploy", "clickhouse", "schema.sql")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date: go test ./clickhouse -run Deploy -update", path)
	}
}

func TestSplitStatements(t *testing.T) {
	got := SplitStatements("-- c;\nSELECT 1;\n\nSELECT\n  2 ;  \n-- tail\nSELECT 3")
	want := []string{"SELECT 1", "SELECT\n  2", "SELECT 3"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}
