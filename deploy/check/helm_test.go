package check

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// rendered is a chart's output decoded into the Kubernetes API types.
type rendered struct {
	deployments  []*appsv1.Deployment
	statefulsets []*appsv1.StatefulSet
	services     []*corev1.Service
	configmaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	accounts     []*corev1.ServiceAccount
	monitors     []*monitoringv1.ServiceMonitor
	rules        []*monitoringv1.PrometheusRule
}

const release = "fm"

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

func chartDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "helm", "fleetmeter")
}

// render installs the chart client-only (as `helm template` does) with the value files
// (relative to the chart) and --set style overrides, and decodes every object strictly.
func render(t *testing.T, valueFiles []string, set ...string) *rendered {
	t.Helper()
	out, err := renderManifest(t, valueFiles, set...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifest(t, out)
}

func renderManifest(t *testing.T, valueFiles []string, set ...string) (string, error) {
	t.Helper()
	dir := chartDir(t)
	chrt, err := loader.Load(dir)
	if err != nil {
		return "", fmt.Errorf("load chart: %w", err)
	}
	opts := values.Options{Values: set}
	for _, f := range valueFiles {
		opts.ValueFiles = append(opts.ValueFiles, filepath.Join(dir, f))
	}
	vals, err := opts.MergeValues(nil)
	if err != nil {
		return "", err
	}
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.ClientOnly = true, true
	inst.ReleaseName, inst.Namespace = release, "metering"
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}
	inst.APIVersions = chartutil.VersionSet{"monitoring.coreos.com/v1"}
	rel, err := inst.Run(chrt, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

func decodeManifest(t *testing.T, manifest string) *rendered {
	t.Helper()
	r := &rendered{}
	// Split at the separator lines only, so a block scalar ending an object keeps its
	// final line break.
	for _, doc := range docSeparator.Split(manifest, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("object header: %v\n%s", err, doc)
		}
		var into any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 Deployment":
			into = appendNew(&r.deployments)
		case "apps/v1 StatefulSet":
			into = appendNew(&r.statefulsets)
		case "v1 Service":
			into = appendNew(&r.services)
		case "v1 ConfigMap":
			into = appendNew(&r.configmaps)
		case "v1 Secret":
			into = appendNew(&r.secrets)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			into = appendNew(&r.hpas)
		case "policy/v1 PodDisruptionBudget":
			into = appendNew(&r.pdbs)
		case "v1 ServiceAccount":
			into = appendNew(&r.accounts)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			into = appendNew(&r.monitors)
		case "monitoring.coreos.com/v1 PrometheusRule":
			into = appendNew(&r.rules)
		default:
			t.Fatalf("rendered %s %s, which this test does not know how to check\n%s", head.APIVersion, head.Kind, doc)
		}
		// Strict: a field the API type does not have (a typo, a wrong indentation) fails.
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %v\n%s", head.Kind, err, doc)
		}
		checkMeta(t, head.Kind, into.(metav1.Object))
	}
	return r
}

// checkMeta applies the API server's rules for names and labels, which decoding does
// not: a Service's name is a DNS label, others DNS subdomains; label keys and values
// are qualified names and label values.
func checkMeta(t *testing.T, kind string, o metav1.Object) {
	t.Helper()
	var errs []string
	if kind == "Service" {
		errs = validation.IsDNS1035Label(o.GetName())
	} else {
		errs = validation.IsDNS1123Subdomain(o.GetName())
	}
	for k, v := range o.GetLabels() {
		errs = append(errs, validation.IsQualifiedName(k)...)
		errs = append(errs, validation.IsValidLabelValue(v)...)
	}
	if len(errs) > 0 {
		t.Errorf("%s %s: %v", kind, o.GetName(), errs)
	}
}

// valueSets are the value files the chart ships, each rendered by every test.
var valueSets = map[string][]string{
	"default":    nil,
	"production": {"values-production.yaml"},
}

func forEachValueSet(t *testing.T, fn func(t *testing.T, r *rendered)) {
	for name, files := range valueSets {
		t.Run(name, func(t *testing.T) { fn(t, render(t, files)) })
	}
}

func (r *rendered) deployment(t *testing.T, component string) *appsv1.Deployment {
	t.Helper()
	for _, d := range r.deployments {
		if d.Labels["app.kubernetes.io/component"] == component {
			return d
		}
	}
	t.Fatalf("no Deployment of component %s", component)
	return nil
}

func (r *rendered) configMap(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	for _, c := range r.configmaps {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return nil
}

// podSpecs are the pod templates of every workload, by component.
func (r *rendered) podSpecs() map[string]*corev1.PodTemplateSpec {
	m := map[string]*corev1.PodTemplateSpec{}
	for _, d := range r.deployments {
		m[d.Labels["app.kubernetes.io/component"]] = &d.Spec.Template
	}
	for _, s := range r.statefulsets {
		m[s.Labels["app.kubernetes.io/component"]] = &s.Spec.Template
	}
	return m
}

func TestChartRaterIsAStatefulSetNamedByItsPod(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, r *rendered) {
		if len(r.statefulsets) != 1 {
			t.Fatalf("%d StatefulSets, want the rater's only", len(r.statefulsets))
		}
		ss := r.statefulsets[0]
		if ss.Labels["app.kubernetes.io/component"] != "rater" {
			t.Fatalf("StatefulSet %s is not the rater", ss.Name)
		}
		for _, d := range r.deployments {
			if d.Labels["app.kubernetes.io/component"] == "rater" {
				t.Fatalf("the rater is also a Deployment (%s): its pod names would change on restart", d.Name)
			}
		}
		c := ss.Spec.Template.Spec.Containers[0]
		// The instance id is the pod name, which the kubelet substitutes in $(POD_NAME).
		i := slices.Index(c.Args, "--instance")
		if len(c.Args) < 2 || c.Args[0] != "rater" || c.Args[1] != "run" || i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != "$(POD_NAME)" {
			t.Fatalf("rater args %q: want rater run ... --instance $(POD_NAME)", c.Args)
		}
		if e := envVar(c.Env, "POD_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
			e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Fatalf("POD_NAME is not the pod's metadata.name: %+v", e)
		}
		// Pod names of a StatefulSet need its governing headless Service.
		svc := findService(r, ss.Spec.ServiceName)
		if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Fatalf("StatefulSet serviceName %q is not a headless Service of the chart", ss.Spec.ServiceName)
		}
		// No more raters than partitions: the rest would idle.
		cfg := configFile(t, r, "rater.yaml")
		parts := cfg["kafka"].(map[string]any)["partitions"]
		if n := int(*ss.Spec.Replicas); float64(n) > toFloat(parts) {
			t.Fatalf("%d raters for %v partitions", n, parts)
		}
	})
}

func TestChartRefusesMoreRatersThanPartitions(t *testing.T) {
	_, err := renderManifest(t, nil, "rater.replicas=7", "kafka.partitions=6")
	if err == nil || !strings.Contains(err.Error(), "exceeds kafka.partitions") {
		t.Fatalf("7 raters over 6 partitions rendered: err = %v", err)
	}
}

// The mediator refuses an HTTP ingest without keys (exit 2): the chart refuses to render it.
func TestChartRefusesHTTPIngestWithoutKeys(t *testing.T) {
	_, err := renderManifest(t, nil, "mediator.http.enabled=true")
	if err == nil || !strings.Contains(err.Error(), "at least one key") {
		t.Fatalf("HTTP ingest without keys rendered: err = %v", err)
	}
	if _, err := renderManifest(t, nil, "mediator.http.enabled=true", "httpKeyTenants={agrico}"); err != nil {
		t.Fatalf("with a key tenant: %v", err)
	}
}

func TestChartProbesAndResources(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, r *rendered) {
		pods := r.podSpecs()
		for _, want := range []string{"mediator", "rater", "loader", "api"} {
			if pods[want] == nil {
				t.Fatalf("no workload of component %s", want)
			}
		}
		for component, pod := range pods {
			if pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot {
				t.Errorf("%s: not runAsNonRoot", component)
			}
			listen := listenPort(t, r, component)
			for _, c := range pod.Spec.Containers {
				checkProbe(t, component, "liveness", c.LivenessProbe, "/healthz", c, listen)
				checkProbe(t, component, "readiness", c.ReadinessProbe, "/readyz", c, listen)
				req := c.Resources.Requests
				if req.Cpu().IsZero() || req.Memory().IsZero() {
					t.Errorf("%s: requests %v: want cpu and memory", component, req)
				}
				if c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: no memory limit", component)
				} else if c.Resources.Limits.Memory().Cmp(*req.Memory()) < 0 {
					t.Errorf("%s: memory limit below the request", component)
				}
			}
		}
	})
}

// checkProbe: an HTTP probe on path whose port is a container port, the one the
// component's configuration listens on.
func checkProbe(t *testing.T, component, kind string, p *corev1.Probe, path string, c corev1.Container, listen int) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no HTTP %s probe", component, kind)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: %s probe path %s, want %s", component, kind, p.HTTPGet.Path, path)
	}
	port := int32(-1)
	for _, cp := range c.Ports {
		if cp.Name == p.HTTPGet.Port.StrVal || (p.HTTPGet.Port.StrVal == "" && cp.ContainerPort == p.HTTPGet.Port.IntVal) {
			port = cp.ContainerPort
		}
	}
	if port < 0 {
		t.Errorf("%s: %s probe port %s is no container port", component, kind, p.HTTPGet.Port.String())
	} else if int(port) != listen {
		t.Errorf("%s: %s probe on port %d, but the configuration listens on %d", component, kind, port, listen)
	}
}

// listenPort is the port of the listen key of a component's configuration file.
func listenPort(t *testing.T, r *rendered, component string) int {
	t.Helper()
	var cfg map[string]any
	if component == "api" {
		cfg = apiConfig(t, r)
	} else {
		cfg = configFile(t, r, component+".yaml")
	}
	s, _ := cfg["listen"].(string)
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		t.Fatalf("%s: listen %q: %v", component, s, err)
	}
	var n int
	fmt.Sscan(port, &n)
	return n
}

func configFile(t *testing.T, r *rendered, name string) map[string]any {
	t.Helper()
	cm := r.configMap(t, release+"-fleetmeter-config")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data[name]), &cfg); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if cfg == nil {
		t.Fatalf("ConfigMap has no %s", name)
	}
	return cfg
}

func apiConfig(t *testing.T, r *rendered) map[string]any {
	t.Helper()
	for _, s := range r.secrets {
		if s.Name == release+"-fleetmeter-api-config" {
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(s.StringData["api.yaml"]), &cfg); err != nil {
				t.Fatal(err)
			}
			return cfg
		}
	}
	t.Fatal("no api configuration Secret")
	return nil
}

func TestChartConfigKeysAreDocumented(t *testing.T) {
	med, rat, api := readDocKeys(t, "mediator run"), readDocKeys(t, "rater"), readAPIDocKeys(t)
	forEachValueSet(t, func(t *testing.T, r *rendered) {
		for name, d := range map[string]docKeys{"mediator.yaml": med, "rater.yaml": rat, "loader.yaml": rat} {
			if bad := d.unknownKeys(configFile(t, r, name)); len(bad) > 0 {
				t.Errorf("%s: keys the binary does not know (it would exit 2): %v", name, bad)
			}
		}
		if bad := api.unknownKeys(apiConfig(t, r)); len(bad) > 0 {
			t.Errorf("api.yaml: keys the binary does not know (it would exit 2): %v", bad)
		}
		// Every FLEETMETER_* variable given to a component is a key's.
		for component, pod := range r.podSpecs() {
			d := map[string]docKeys{"mediator": med, "rater": rat, "loader": rat, "api": api}[component]
			for _, c := range pod.Spec.Containers {
				for _, e := range c.Env {
					if strings.HasPrefix(e.Name, "FLEETMETER_") && !d.envs[e.Name] {
						t.Errorf("%s: %s is no documented variable", component, e.Name)
					}
				}
			}
		}
	})
}

// Secrets reach the pods only through Secrets: values given as secrets never appear in a
// ConfigMap, and every file a configuration reads from the secrets volume is a key of
// the Secret.
func TestChartSecretsStayInSecrets(t *testing.T) {
	sentinels := map[string]string{
		"secrets.clickhousePassword":   "sentinel-clickhouse-0f3a",
		"secrets.billingCursorKey":     "sentinel-cursor-key-0123456789abcdef0123456789",
		"secrets.mqttPassword":         "sentinel-mqtt-77ab",
		"secrets.httpKeys.agrico":      "sentinel-http-agrico-91c2",
		"mediator.mqtt.enabled":        "true",
		"api.keys[0].name":             "ops",
		"api.keys[0].operator":         "true",
		"api.keys[0].sha256":           strings.Repeat("ab", 32),
		"secrets.httpKeys.utilico":     "sentinel-http-utilico-5d1e",
		"mediator.autoscaling.enabled": "false",
		"mediator.http.enabled":        "true",
		"api.billing.enabled":          "true",
	}
	var set []string
	for k, v := range sentinels {
		set = append(set, k+"="+v)
	}
	r := render(t, nil, set...)
	for _, cm := range r.configmaps {
		for file, content := range cm.Data {
			for k, v := range sentinels {
				if strings.HasPrefix(k, "secrets.") && strings.Contains(content, v) {
					t.Errorf("ConfigMap %s %s holds the value of %s", cm.Name, file, k)
				}
			}
			if strings.Contains(content, strings.Repeat("ab", 32)) {
				t.Errorf("ConfigMap %s %s holds an API key hash", cm.Name, file)
			}
		}
	}
	var main *corev1.Secret
	for _, s := range r.secrets {
		if s.Name == release+"-fleetmeter" {
			main = s
		}
	}
	if main == nil {
		t.Fatal("secrets.create: no Secret rendered")
	}
	for k, v := range sentinels {
		if !strings.HasPrefix(k, "secrets.") {
			continue
		}
		found := false
		for _, got := range main.StringData {
			found = found || got == v
		}
		if !found {
			t.Errorf("the Secret lacks the value of %s", k)
		}
	}
	// Every *_file of the configurations names a key of the Secret, mounted where it reads.
	for _, name := range []string{"mediator.yaml", "loader.yaml", "api.yaml"} {
		cfg := apiConfig(t, r)
		if name != "api.yaml" {
			cfg = configFile(t, r, name)
		}
		files := secretFiles(cfg)
		if len(files) == 0 {
			t.Errorf("%s reads no secret file", name)
		}
		for _, path := range files {
			key, ok := strings.CutPrefix(path, "/etc/fleetmeter/secrets/")
			if !ok {
				t.Errorf("%s reads %s, outside the secrets volume", name, path)
			} else if _, ok := main.StringData[key]; !ok {
				t.Errorf("%s reads %s, which the Secret has no key %s for", name, path, key)
			}
		}
	}
	cfg := configFile(t, r, "mediator.yaml")
	keys := cfg["http"].(map[string]any)["keys"].([]any)
	if len(keys) != 2 {
		t.Errorf("mediator http.keys = %v, want one per tenant of secrets.httpKeys", keys)
	}
	if cfg["mqtt"].(map[string]any)["password"] != nil {
		t.Error("mediator.yaml holds mqtt.password inline")
	}
	// The api's keys are in its configuration Secret.
	if k := apiConfig(t, r)["keys"].([]any); len(k) != 1 {
		t.Errorf("api keys = %v", k)
	}
	for component, pod := range r.podSpecs() {
		for _, v := range pod.Spec.Volumes {
			if v.Name == "secrets" && (v.Secret == nil || v.Secret.SecretName != main.Name) {
				t.Errorf("%s: volume secrets is not Secret %s", component, main.Name)
			}
		}
		for _, c := range pod.Spec.Containers {
			for _, e := range c.Env {
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
					_, ok := main.StringData[ref.SecretKeyRef.Key]
					if ref.SecretKeyRef.Name != main.Name || !ok {
						t.Errorf("%s: %s reads key %s of Secret %s, which the chart's Secret %s does not have",
							component, e.Name, ref.SecretKeyRef.Key, ref.SecretKeyRef.Name, main.Name)
					}
				}
				for k, v := range sentinels {
					if strings.HasPrefix(k, "secrets.") && e.Value == v {
						t.Errorf("%s: variable %s holds %s inline", component, e.Name, k)
					}
				}
			}
		}
	}
}

// secretFiles are the values of every *_file key of a configuration.
func secretFiles(cfg map[string]any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, v := range x {
				if s, ok := v.(string); ok && strings.HasSuffix(k, "_file") {
					out = append(out, s)
				} else {
					walk(v)
				}
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		}
	}
	walk(cfg)
	slices.Sort(out)
	return out
}

func TestChartProductionUsesAnExistingSecret(t *testing.T) {
	r := render(t, valueSets["production"])
	for _, s := range r.secrets {
		if s.Name == release+"-fleetmeter" {
			t.Fatal("production values render the Secret from values; they name an existing one")
		}
	}
	for component, pod := range r.podSpecs() {
		for _, v := range pod.Spec.Volumes {
			if v.Secret != nil && v.Name == "secrets" && v.Secret.SecretName != "fleetmeter-secrets" {
				t.Errorf("%s mounts Secret %s, want the existing fleetmeter-secrets", component, v.Secret.SecretName)
			}
		}
	}
	if len(r.monitors) != 4 {
		t.Fatalf("%d ServiceMonitors, want one per component", len(r.monitors))
	}
	for _, m := range r.monitors {
		sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range r.services {
			if sel.Matches(labels.Set(s.Labels)) {
				n++
				ports := []string{}
				for _, p := range s.Spec.Ports {
					ports = append(ports, p.Name)
				}
				if !slices.Contains(ports, m.Spec.Endpoints[0].Port) {
					t.Errorf("ServiceMonitor %s scrapes port %s, Service %s has %v", m.Name, m.Spec.Endpoints[0].Port, s.Name, ports)
				}
			}
		}
		if n != 1 {
			t.Errorf("ServiceMonitor %s selects %d Services, want 1", m.Name, n)
		}
	}
}

// The tariffs are a ConfigMap mounted as a directory (a subPath mount would never see
// the kubelet's update) where the rules key points, and the chart's default tariffs are
// the repository's examples.
func TestChartTariffsMountedAsADirectory(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, r *rendered) {
		for _, component := range []string{"rater", "loader", "api"} {
			pod := r.podSpecs()[component]
			var cfg map[string]any
			if component == "api" {
				cfg = apiConfig(t, r)
			} else {
				cfg = configFile(t, r, component+".yaml")
			}
			rules, _ := cfg["rules"].(string)
			var vol string
			for _, m := range pod.Spec.Containers[0].VolumeMounts {
				if m.MountPath == rules {
					if m.SubPath != "" {
						t.Errorf("%s: tariffs mounted with subPath %s: no hot reload", component, m.SubPath)
					}
					vol = m.Name
				}
			}
			if vol == "" {
				t.Fatalf("%s: nothing mounted at rules %q", component, rules)
			}
			for _, v := range pod.Spec.Volumes {
				if v.Name == vol && v.ConfigMap == nil {
					t.Errorf("%s: tariffs volume %s is not a ConfigMap", component, vol)
				}
			}
			// No checksum of the tariffs in the pod template: a change reloads, not restarts.
			for k := range pod.Annotations {
				if strings.Contains(k, "tariff") {
					t.Errorf("%s: annotation %s restarts pods on a tariff change", component, k)
				}
			}
		}
	})
	r := render(t, nil)
	cm := r.configMap(t, release+"-fleetmeter-tariffs")
	dir := filepath.Join(repoRoot(t), "deploy", "tariffs")
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 || len(cm.Data) != len(files) {
		t.Fatalf("tariffs ConfigMap has %d files, deploy/tariffs %d", len(cm.Data), len(files))
	}
	for _, f := range files {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := cm.Data[filepath.Base(f)]; got != string(want) {
			t.Errorf("tariffs ConfigMap %s differs from deploy/tariffs", filepath.Base(f))
		}
	}
}

func TestChartMediatorScalesAndDisruptionBudgets(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, r *rendered) {
		med := r.deployment(t, "mediator")
		if len(r.hpas) != 1 || r.hpas[0].Spec.ScaleTargetRef.Kind != "Deployment" || r.hpas[0].Spec.ScaleTargetRef.Name != med.Name {
			t.Fatalf("HPA does not scale the mediator Deployment %s", med.Name)
		}
		if med.Spec.Replicas != nil {
			t.Error("the mediator sets replicas beside its HPA: each upgrade would reset the HPA's count")
		}
		for component, pod := range r.podSpecs() {
			n := 0
			for _, p := range r.pdbs {
				sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				if err != nil {
					t.Fatal(err)
				}
				if sel.Matches(labels.Set(pod.Labels)) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", component, n)
			}
		}
		// Every Service selects the pods of exactly one component, and one exposed
		// outside the cluster carries no /metrics (except the api's, on its one port).
		for _, s := range r.services {
			if s.Spec.Type == corev1.ServiceTypeLoadBalancer || s.Spec.Type == corev1.ServiceTypeNodePort {
				for _, p := range s.Spec.Ports {
					if p.Name == "metrics" {
						t.Errorf("Service %s of type %s exposes its metrics port", s.Name, s.Spec.Type)
					}
				}
			}
			n := 0
			for _, pod := range r.podSpecs() {
				if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("Service %s selects %d workloads", s.Name, n)
			}
		}
	})
}

// appendNew appends a new zero object to list and returns it, to be decoded into.
func appendNew[T any](list *[]*T) *T {
	x := new(T)
	*list = append(*list, x)
	return x
}

func envVar(env []corev1.EnvVar, name string) *corev1.EnvVar {
	for i := range env {
		if env[i].Name == name {
			return &env[i]
		}
	}
	return nil
}

func findService(r *rendered, name string) *corev1.Service {
	for _, s := range r.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	}
	return -1
}

// The alert rules and dashboards the chart installs are the repository's, unchanged.
func TestChartAlertRulesAndDashboards(t *testing.T) {
	root := repoRoot(t)
	if r := render(t, nil); len(r.rules) != 0 {
		t.Fatal("a PrometheusRule by default, which needs the Prometheus Operator's CRD")
	}
	r := render(t, valueSets["production"])
	if len(r.rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(r.rules))
	}
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &file); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	got, want := r.rules[0].Spec.Groups, file.Groups
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("PrometheusRule has %d groups, alerts.yml %d", len(got), len(want))
	}
	for i := range want {
		if len(got[i].Rules) != len(want[i].Rules) {
			t.Fatalf("group %s: %d rules, alerts.yml %d", want[i].Name, len(got[i].Rules), len(want[i].Rules))
		}
		for j, rule := range want[i].Rules {
			g := got[i].Rules[j]
			if g.Alert != rule.Alert || g.Expr.String() != rule.Expr.String() || g.Annotations["runbook"] != rule.Annotations["runbook"] {
				t.Errorf("rule %s differs from alerts.yml", rule.Alert)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "grafana", "dashboards", "*.json"))
	n := 0
	for _, cm := range r.configmaps {
		if cm.Labels["grafana_dashboard"] != "1" {
			continue
		}
		for name, content := range cm.Data {
			want, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "dashboards", name))
			if err != nil || content != string(want) {
				t.Errorf("dashboard ConfigMap %s: %s differs from deploy/grafana/dashboards (%v)", cm.Name, name, err)
			}
			n++
		}
	}
	if len(files) == 0 || n != len(files) {
		t.Errorf("%d dashboards in ConfigMaps, %d in deploy/grafana/dashboards", n, len(files))
	}
}
