package check

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// loadCompose loads deploy/compose/compose.yaml as `docker compose` does, validating it
// against the compose specification and resolving relative paths.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "compose")
	details, err := loader.LoadConfigFiles(context.Background(), []string{filepath.Join(dir, "compose.yaml")}, dir)
	if err != nil {
		t.Fatal(err)
	}
	details.Environment = types.Mapping{}
	p, err := loader.LoadWithContext(context.Background(), *details, func(o *loader.Options) {
		o.SetProjectName("fleetmeter", true)
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// Three Kafka nodes in KRaft mode, each broker and controller, forming one quorum.
func TestComposeKafkaKRaft(t *testing.T) {
	p := loadCompose(t)
	var nodes []types.ServiceConfig
	for _, s := range p.Services {
		if strings.Contains(s.Image, "zookeeper") {
			t.Errorf("service %s runs ZooKeeper; KRaft needs none", s.Name)
		}
		if strings.HasPrefix(s.Image, "apache/kafka:") {
			nodes = append(nodes, s)
		}
	}
	if len(nodes) != 3 {
		t.Fatalf("%d services of apache/kafka, want 3 brokers", len(nodes))
	}
	ids := map[string]string{} // node id -> service
	clusters := map[string]bool{}
	var voters string
	for _, s := range nodes {
		roles := strings.Split(env(s, "KAFKA_PROCESS_ROLES"), ",")
		if !slices.Contains(roles, "broker") || !slices.Contains(roles, "controller") {
			t.Errorf("%s: KAFKA_PROCESS_ROLES %v, want broker,controller", s.Name, roles)
		}
		id := env(s, "KAFKA_NODE_ID")
		if prev, ok := ids[id]; ok || id == "" {
			t.Errorf("%s: node id %q (also %s)", s.Name, id, prev)
		}
		ids[id] = s.Name
		clusters[env(s, "CLUSTER_ID")] = true
		if voters != "" && env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS") != voters {
			t.Errorf("%s: another quorum %s", s.Name, env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS"))
		}
		voters = env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS")
		if env(s, "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR") != "3" {
			t.Errorf("%s: the rater's transactions need the transaction log on all 3 nodes", s.Name)
		}
		// What it advertises inside the stack must be its own name.
		adv := env(s, "KAFKA_ADVERTISED_LISTENERS")
		if !strings.Contains(adv, "://"+s.Name+":") {
			t.Errorf("%s advertises %s", s.Name, adv)
		}
	}
	if len(clusters) != 1 {
		t.Fatalf("the nodes name %d cluster ids", len(clusters))
	}
	for id := range clusters {
		// A KRaft cluster id is a UUID: 16 bytes, base64url without padding.
		if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) != 16 {
			t.Errorf("CLUSTER_ID %q is no base64url UUID: kafka-storage format would refuse it", id)
		}
	}
	vs := strings.Split(voters, ",")
	if len(vs) != 3 {
		t.Fatalf("quorum voters %q: want the 3 nodes", voters)
	}
	for _, v := range vs {
		id, hostport, _ := strings.Cut(v, "@")
		host, _, _ := net.SplitHostPort(hostport)
		if ids[id] != host {
			t.Errorf("voter %s: node %s is service %q", v, id, ids[id])
		}
	}
}

// Every service has an image or a build, every build its Dockerfile, every file it
// mounts or reads as a secret exists in the repository, and every fleetmeter command is
// a binary the Dockerfile builds.
func TestComposeServicesAndFiles(t *testing.T) {
	p := loadCompose(t)
	bins := builtBinaries(t)
	for _, want := range []string{"kafka-1", "clickhouse", "mosquitto", "mediator", "rater", "loader", "api", "prometheus", "grafana"} {
		if _, ok := p.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	for _, s := range p.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", s.Name)
		}
		if s.Build != nil {
			df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s: build %v", s.Name, err)
			}
			if len(s.Command) == 0 || !slices.Contains(bins, s.Command[0]) {
				t.Errorf("%s: command %q runs no binary the Dockerfile builds (%v)", s.Name, s.Command, bins)
			}
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", s.Name, v.Source, err)
			}
		}
	}
	for name, sec := range p.Secrets {
		if _, err := os.Stat(sec.File); err != nil {
			t.Errorf("secret %s: %v", name, err)
		}
	}
}

// composeFile is the repository file a service's container sees at path.
func composeFile(t *testing.T, s types.ServiceConfig, path string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && (v.Target == path || strings.HasPrefix(path, v.Target+"/")) {
			return filepath.Join(v.Source, strings.TrimPrefix(path, v.Target))
		}
	}
	t.Fatalf("%s: nothing mounted at %s", s.Name, path)
	return ""
}

func flagValue(cmd []string, name string) string {
	if i := slices.Index(cmd, name); i >= 0 && i+1 < len(cmd) {
		return cmd[i+1]
	}
	return ""
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// The fleetmeter services' files hold only keys the binaries know, their variables are
// documented ones, and Prometheus scrapes each service where it listens.
func TestComposeFleetmeterConfiguration(t *testing.T) {
	p := loadCompose(t)
	med, rat, api := readDocKeys(t, "mediator run"), readDocKeys(t, "rater"), readAPIDocKeys(t)
	listens := map[string]string{} // service -> port of /metrics
	for _, name := range []string{"mediator", "rater", "loader", "api"} {
		s := p.Services[name]
		cfg := readYAML(t, composeFile(t, s, flagValue(s.Command, "--config")))
		d := map[string]docKeys{"mediator": med, "rater": rat, "loader": rat, "api": api}[name]
		if bad := d.unknownKeys(cfg); len(bad) > 0 {
			t.Errorf("%s: keys the binary does not know: %v", name, bad)
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "FLEETMETER_") && !d.envs[k] {
				t.Errorf("%s: %s is no documented variable", name, k)
			}
		}
		listen, _ := cfg["listen"].(string)
		if l := flagValue(s.Command, "--listen"); l != "" {
			listen = l
		}
		host, port, err := net.SplitHostPort(listen)
		if err != nil || (host != "0.0.0.0" && host != "") {
			t.Errorf("%s: listens on %q, unreachable from Prometheus", name, listen)
		}
		listens[name] = port
		// Files named by *_file keys and variables are mounted secrets.
		files := secretFiles(cfg)
		for k, v := range s.Environment {
			if strings.HasSuffix(k, "_FILE") && v != nil {
				files = append(files, *v)
			}
		}
		for _, f := range files {
			ok := false
			for _, sec := range s.Secrets {
				target := sec.Target
				if target == "" {
					target = "/run/secrets/" + sec.Source
				}
				ok = ok || target == f
			}
			if !ok {
				t.Errorf("%s reads %s, which is none of its secrets", name, f)
			}
		}
		if name == "rater" || name == "loader" {
			if flagValue(s.Command, "--instance") == "" {
				t.Errorf("%s: no --instance: its id would be the container's random host name", name)
			}
		}
	}
	if flagValue(p.Services["rater"].Command, "--instance") == flagValue(p.Services["loader"].Command, "--instance") {
		t.Error("rater and loader share an instance id")
	}
	prom := p.Services["prometheus"]
	pcfg := readYAML(t, composeFile(t, prom, "/etc/prometheus/prometheus.yml"))
	scraped := map[string]string{}
	for _, sc := range pcfg["scrape_configs"].([]any) {
		for _, st := range sc.(map[string]any)["static_configs"].([]any) {
			for _, target := range st.(map[string]any)["targets"].([]any) {
				host, port, _ := net.SplitHostPort(target.(string))
				scraped[host] = port
			}
		}
	}
	for name, port := range listens {
		if scraped[name] != port {
			t.Errorf("Prometheus scrapes %s on %q, it listens on %s", name, scraped[name], port)
		}
	}
	// The alert rules are mounted where rule_files finds them.
	rules := composeFile(t, prom, "/etc/prometheus/rules/fleetmeter.yml")
	if filepath.Base(rules) != "alerts.yml" {
		t.Errorf("rules mounted from %s", rules)
	}
}

// Grafana's provisioned data sources are the ones the dashboards name, and both
// Prometheus and ClickHouse (its plugin installed at start) are there.
func TestComposeGrafanaProvisioning(t *testing.T) {
	p := loadCompose(t)
	g := p.Services["grafana"]
	dir := composeFile(t, g, "/etc/grafana/provisioning")
	ds := readYAML(t, filepath.Join(dir, "datasources", "fleetmeter.yaml"))
	uids := map[string]string{}
	for _, d := range ds["datasources"].([]any) {
		m := d.(map[string]any)
		uids[m["uid"].(string)] = m["type"].(string)
	}
	if uids["prometheus"] != "prometheus" || uids["clickhouse"] != "grafana-clickhouse-datasource" {
		t.Fatalf("data sources %v: want prometheus and clickhouse", uids)
	}
	if !strings.Contains(env(g, "GF_PLUGINS_PREINSTALL_SYNC"), "grafana-clickhouse-datasource") {
		t.Error("the ClickHouse data source's plugin is not installed")
	}
	prov := readYAML(t, filepath.Join(dir, "dashboards", "fleetmeter.yaml"))
	path := prov["providers"].([]any)[0].(map[string]any)["options"].(map[string]any)["path"].(string)
	dashDir := composeFile(t, g, path)
	files, _ := filepath.Glob(filepath.Join(dashDir, "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash any
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, uid := range datasourceUIDs(dash) {
			if _, ok := uids[uid]; !ok && !strings.HasPrefix(uid, "$") && !strings.HasPrefix(uid, "-- ") {
				t.Errorf("%s names data source uid %q, which is not provisioned (%v)", filepath.Base(f), uid, uids)
			}
		}
	}
}

// datasourceUIDs are the uids of every "datasource": {"uid": ...} in a dashboard.
func datasourceUIDs(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, v := range x {
			if ds, ok := v.(map[string]any); ok && k == "datasource" {
				if uid, ok := ds["uid"].(string); ok {
					out = append(out, uid)
				}
			}
			out = append(out, datasourceUIDs(v)...)
		}
	case []any:
		for _, v := range x {
			out = append(out, datasourceUIDs(v)...)
		}
	}
	return out
}
