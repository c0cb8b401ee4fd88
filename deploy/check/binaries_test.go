package check

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The binaries themselves judge the configurations the chart renders and the compose
// stack mounts: each runs with its file, variables and arguments as deployed (secrets
// and tariffs at local paths), and must not exit 2, the exit of a configuration error
// (an unknown key, a missing key, a value out of range). Past validation it tries to
// reach Kafka or ClickHouse, which do not resolve here: it exits 1 or is stopped after a
// few seconds, and either means the configuration was accepted. The build primes the
// cache the e2e tests build the same binaries from.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleetmeter-deploy-check-")
		if err != nil {
			binErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/mediator", "./cmd/rater", "./cmd/api")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
		binDir = dir
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// accepts runs args[0] from the built binaries with env and fails the test if it exits 2.
func accepts(t *testing.T, name string, args []string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), args[0]), args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case strings.Contains(stderr.String(), "unknown key"),
		ctx.Err() == nil && errors.As(err, &exit) && exit.ExitCode() == 2:
		t.Errorf("%s: %q refused its configuration:\n%s", name, args, stderr.String())
	case ctx.Err() != nil:
		// Still running at the deadline: past validation, waiting for its services.
	case err != nil && !errors.As(err, &exit):
		t.Fatalf("%s: %v", name, err)
	}
}

// localize rewrites the deployed paths of a configuration, argument or variable to the
// local ones.
func localize(s string, paths map[string]string) string {
	for from, to := range paths {
		s = strings.ReplaceAll(s, from, to)
	}
	return s
}

func TestBinariesAcceptChartConfigs(t *testing.T) {
	root := repoRoot(t)
	for set, files := range valueSets {
		t.Run(set, func(t *testing.T) {
			t.Parallel()
			r := render(t, files, "mediator.http.enabled=true", "httpKeyTenants={agrico,autoco}", "api.billing.enabled=true",
				"mediator.mqtt.enabled=true", "api.keys[0].name=ops", "api.keys[0].operator=true",
				"api.keys[0].sha256="+strings.Repeat("ab", 32))
			dir := t.TempDir()
			secrets := filepath.Join(dir, "secrets")
			os.MkdirAll(secrets, 0o700)
			for _, key := range []string{"clickhouse-password", "mqtt-password", "http-key-agrico", "http-key-autoco", "billing-cursor-key"} {
				os.WriteFile(filepath.Join(secrets, key), []byte("secret-of-"+key+"-0123456789abcdef0123456789abcdef"), 0o600)
			}
			paths := map[string]string{
				"/etc/fleetmeter/secrets": secrets,
				"/etc/fleetmeter/tariffs": filepath.Join(root, "deploy", "tariffs"),
				"/etc/fleetmeter/config":  dir,
				"/etc/fleetmeter/api":     dir,
			}
			cm := r.configMap(t, release+"-fleetmeter-config")
			for name, content := range cm.Data {
				os.WriteFile(filepath.Join(dir, name), []byte(localize(content, paths)), 0o600)
			}
			for _, s := range r.secrets {
				if c, ok := s.StringData["api.yaml"]; ok {
					os.WriteFile(filepath.Join(dir, "api.yaml"), []byte(localize(c, paths)), 0o600)
				}
			}
			for component, pod := range r.podSpecs() {
				c := pod.Spec.Containers[0]
				var args []string
				for _, a := range c.Args {
					args = append(args, strings.ReplaceAll(localize(a, paths), "$(POD_NAME)", component+"-0"))
				}
				t.Run(component, func(t *testing.T) {
					t.Parallel()
					accepts(t, component, args, podEnv(c.Env, component+"-0"))
				})
			}
		})
	}
}

// podEnv is a container's FLEETMETER_* environment as the kubelet would give it: values
// with $(POD_NAME) expanded, and stand-ins for the Secret's keys.
func podEnv(env []corev1.EnvVar, pod string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e.Name, "FLEETMETER_") {
			continue
		}
		v := strings.ReplaceAll(e.Value, "$(POD_NAME)", pod)
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			v = "stand-in-for-" + e.ValueFrom.SecretKeyRef.Key + "-0123456789abcdef0123456789abcdef"
		}
		out = append(out, e.Name+"="+v)
	}
	return out
}

func TestBinariesAcceptComposeConfigs(t *testing.T) {
	p := loadCompose(t)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	os.MkdirAll(secrets, 0o700)
	for name, sec := range p.Secrets {
		os.Symlink(sec.File, filepath.Join(secrets, name))
	}
	for _, name := range []string{"mediator", "rater", "loader", "api"} {
		s := p.Services[name]
		paths := map[string]string{"/run/secrets": secrets}
		for _, v := range s.Volumes {
			if v.Bind != nil || v.Type == "bind" {
				paths[v.Target] = v.Source
			}
		}
		// The configuration file is rewritten (its secret paths), the rest read in place.
		cfgPath := flagValue(s.Command, "--config")
		b, err := os.ReadFile(composeFile(t, s, cfgPath))
		if err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(dir, name+".yaml")
		os.WriteFile(local, []byte(localize(string(b), paths)), 0o600)
		var args []string
		for _, a := range s.Command {
			if a == cfgPath {
				a = local
			}
			args = append(args, localize(a, paths))
		}
		var env []string
		for k, v := range s.Environment {
			if v != nil {
				env = append(env, k+"="+localize(*v, paths))
			}
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			accepts(t, name, args, env)
		})
	}
}
