package check

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// workflow is the part of a GitHub Actions workflow the test reads. YAML 1.2 decoding
// (yaml/v3): to a YAML 1.1 decoder the key "on" is the boolean true.
type workflow struct {
	On struct {
		Push struct {
			Tags []string `yaml:"tags"`
		} `yaml:"push"`
	} `yaml:"on"`
	Jobs map[string]struct {
		If    string `yaml:"if"`
		Needs any    `yaml:"needs"`
		Steps []struct {
			Uses string         `yaml:"uses"`
			Run  string         `yaml:"run"`
			With map[string]any `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func TestCIWorkflow(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", "ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(w.On.Push.Tags, "v*") {
		t.Errorf("push tags %v: want v*", w.On.Push.Tags)
	}
	tests, images := "", ""
	for name, job := range w.Jobs {
		for _, s := range job.Steps {
			for _, line := range strings.Split(s.Run, "\n") {
				if strings.TrimSpace(line) == "make test" {
					tests = name
				}
			}
			if strings.HasPrefix(s.Uses, "docker/build-push-action@") {
				if push, _ := s.With["push"].(bool); !push {
					t.Errorf("job %s builds the image without pushing it", name)
				}
				if f, _ := s.With["file"].(string); f != "" {
					if _, err := os.Stat(filepath.Join(repoRoot(t), f)); err != nil {
						t.Errorf("job %s builds %s: %v", name, f, err)
					}
				}
				if !strings.Contains(job.If, "refs/tags/v") {
					t.Errorf("job %s pushes images on %q, want only on tags v*", name, job.If)
				}
				images = name
			}
		}
	}
	if tests == "" {
		t.Fatal("no job runs `make test`")
	}
	if images == "" {
		t.Fatal("no job builds and pushes the image")
	}
	// Images are pushed only from a tree whose tests passed.
	needs := w.Jobs[images].Needs
	if needs != tests && !(func() bool { l, _ := needs.([]any); return slices.Contains(l, any(tests)) })() {
		t.Errorf("job %s does not need %s", images, tests)
	}
}
