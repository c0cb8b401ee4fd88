package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, USER, ...
	args string
	line int
}

// parseDockerfile reads instructions and keeps those of each stage apart.
func parseDockerfile(t *testing.T, path string) [][]instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var cur strings.Builder
	start := 0
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.cmd)
			}
			return
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(strings.TrimSpace(s) + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

var buildTargets = regexp.MustCompile(`\./cmd/([A-Za-z0-9_-]+)`)

// builtBinaries are the cmd/ packages the Dockerfile's go build compiles.
func builtBinaries(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, stage := range parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile")) {
		for _, in := range stage {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				for _, m := range buildTargets.FindAllStringSubmatch(in.args, -1) {
					out = append(out, m[1])
				}
			}
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	// The build: static binaries of every command.
	bins := builtBinaries(t)
	for _, want := range []string{"mediator", "rater", "api", "fleetmeter"} {
		if !slices.Contains(bins, want) {
			t.Errorf("go build does not build cmd/%s (builds %v)", want, bins)
		}
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(root, "cmd", b, "main.go")); err != nil {
			t.Errorf("go build names ./cmd/%s: %v", b, err)
		}
	}
	static := false
	for _, stage := range stages[:len(stages)-1] {
		for _, in := range stage {
			static = static || (in.cmd == "RUN" && strings.Contains(in.args, "go build") && strings.Contains(in.args, "CGO_ENABLED=0"))
		}
	}
	if !static {
		t.Error("go build does not run with CGO_ENABLED=0: the binaries would need a C library the runtime image lacks")
	}
	// The runtime: distroless static or scratch, a non-root user, every binary copied.
	final := stages[len(stages)-1]
	base := strings.Fields(final[0].args)[0]
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("runtime image %s: want gcr.io/distroless/static or scratch", base)
	}
	user := ""
	copied := ""
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "COPY":
			if strings.Contains(in.args, "--from=") {
				copied += " " + in.args
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("runtime USER %q: want a non-root user", user)
	}
	for _, b := range bins {
		if !strings.Contains(copied, "/"+b+" ") && !strings.HasSuffix(copied, "/"+b) {
			t.Errorf("the runtime stage does not copy %s", b)
		}
	}
}

// The parser splits stages and joins continued lines (so the test above reads what
// Docker reads).
func TestParseDockerfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Dockerfile")
	os.WriteFile(path, []byte("ARG V=1\nFROM golang AS build\n# c\nRUN a \\\n  # inner\n  b\nFROM scratch\nUSER 1:1\n"), 0o644)
	st := parseDockerfile(t, path)
	if len(st) != 2 || len(st[0]) != 2 || st[0][1].args != "a b" || st[0][1].line != 4 || st[1][1].cmd != "USER" {
		t.Fatalf("parsed %+v", st)
	}
}
