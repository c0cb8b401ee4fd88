package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var repoPath = regexp.MustCompile("(?:deploy|docs|ingest|\\.github)/[A-Za-z0-9_.*/-]+")

// Every repository path docs/operations.md names exists, so the operations guide does
// not drift from the files it sends a reader to.
func TestOperationsDocPaths(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range repoPath.FindAllString(string(b), -1) {
		p = strings.TrimRight(p, ".,/")
		matches, err := filepath.Glob(filepath.Join(root, p))
		if err != nil || len(matches) == 0 {
			t.Errorf("docs/operations.md names %s, which is not in the repository", p)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d paths found: the pattern no longer matches the guide", n)
	}
}
