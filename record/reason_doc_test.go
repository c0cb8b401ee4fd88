package record

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestReasonsDocumented: the reason table of docs/validation.md has a row for every code
// of record's table, and no row for a code outside it.
func TestReasonsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "validation.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := bytes.Cut(doc, []byte("\n## Reason codes\n"))
	if !ok {
		t.Fatal(`docs/validation.md has no "## Reason codes" section`)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|").FindAllSubmatch(table, -1) {
		rows[string(m[1])] = true
	}
	for _, r := range Reasons() {
		if !rows[r.Code] {
			t.Errorf("docs/validation.md has no row for %s", r.Code)
		}
	}
	for code := range rows {
		if !KnownReason(code) {
			t.Errorf("docs/validation.md documents %s, which is not in the table", code)
		}
	}
}
