// Package prometheus holds the alert rules and scrape example; its tests check them with
// the real promtool (Debian package prometheus, scripts/deps.sh) and check the Grafana
// dashboards beside them.
package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"fleetmeter/deploy/grafana/dashboards"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (scripts/deps.sh)")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The rules and the example configuration load, and the unit tests (alerts firing and
// near misses) pass.
func TestPromtool(t *testing.T) {
	promtool(t, "check", "rules", "alerts.yml")
	promtool(t, "test", "rules", "alerts_test.yml")
	promtool(t, "check", "config", "prometheus.yml")
}

// Every alert says what happened and what to do, with a severity routing can use.
func TestAlertsCarryRunbooks(t *testing.T) {
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			n++
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s", r.Alert, a)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			checkNames(t, r.Alert, r.Expr)
		}
	}
	if n == 0 {
		t.Fatal("no alert rules")
	}
}

// The dashboards are valid provisioned JSON: unique uids and panel ids, every panel on
// the Prometheus (uid prometheus) or ClickHouse (uid clickhouse) data source with a
// query, inside the 24-column grid, and every fleetmeter metric they query exists.
func TestDashboards(t *testing.T) {
	all, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 {
		t.Fatalf("%d dashboards, want the pipeline overview and the per-tenant usage", len(all))
	}
	uids := map[string]string{}
	for _, d := range all {
		file := d.File
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid and title are required", file)
		}
		if o, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %s", file, o, d.UID)
		}
		uids[d.UID] = file
		ids := map[int]bool{}
		for _, p := range d.AllPanels() {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", file, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
				t.Errorf("%s: panel %q outside the grid: %+v", file, p.Title, p.GridPos)
			}
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, q := range p.Targets {
				switch q.DatasourceUID(p) {
				case dashboards.Prometheus:
					if q.Expr == "" {
						t.Errorf("%s: panel %q: Prometheus query without expr", file, p.Title)
					}
					checkNames(t, file+": "+p.Title, q.Expr)
				case dashboards.ClickHouse:
					if q.RawSQL == "" {
						t.Errorf("%s: panel %q: ClickHouse query without rawSql", file, p.Title)
					}
				default:
					t.Errorf("%s: panel %q: data source uid %q, want prometheus or clickhouse", file, p.Title, q.DatasourceUID(p))
				}
			}
		}
	}
}

var metricName = regexp.MustCompile(`\bfleetmeter_[a-z_]+`)

// sources is the text of the repository's Go code, where metric names are defined.
var sources = func() string {
	var sb strings.Builder
	_ = filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, _ := os.ReadFile(p)
			sb.Write(b)
		}
		return nil
	})
	return sb.String()
}()

// checkNames fails for a fleetmeter metric the code does not define. The Kafka clients'
// own metrics (fleetmeter_kafka_* from franz-go's kprom) are named by the plugin, so
// only the end-to-end test, which queries them, can tell.
func checkNames(t *testing.T, where, expr string) {
	t.Helper()
	for _, name := range metricName.FindAllString(expr, -1) {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		if strings.HasPrefix(base, "fleetmeter_kafka_") && base != "fleetmeter_kafka_consumer_lag" {
			continue
		}
		if !strings.Contains(sources, `"`+base+`"`) {
			t.Errorf("%s: metric %s is defined nowhere in the code", where, name)
		}
	}
}

var definedName = regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*)"(fleetmeter_[a-z_]+)"`)

// Every metric the code defines is in the README's table, so operators find them all.
func TestREADMEListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	found := 0
	for _, m := range definedName.FindAllStringSubmatch(sources, -1) {
		found++
		if !strings.Contains(readme, "`"+m[1]+"`") {
			t.Errorf("README.md does not list %s", m[1])
		}
	}
	if found < 20 {
		t.Fatalf("only %d metric definitions found in the code", found)
	}
}
