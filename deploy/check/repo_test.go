package check

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// repoRoot is the repository's root: two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// docKeys are the configuration keys of one table of docs/configuration.md (begin/end
// markers named section) and their environment variables.
type docKeys struct {
	keys map[string]bool
	envs map[string]bool
}

func readDocKeys(t *testing.T, section string) docKeys {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := docKeys{keys: map[string]bool{}, envs: map[string]bool{}}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch strings.TrimSpace(line) {
		case "<!-- begin " + section + " -->":
			in = true
			continue
		case "<!-- end " + section + " -->":
			in = false
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		d.keys[strings.Trim(strings.TrimSpace(cells[1]), "`")] = true
		d.envs[strings.Trim(strings.TrimSpace(cells[3]), "`")] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(d.keys) < 10 {
		t.Fatalf("docs/configuration.md: section %q has %d keys; the markers moved?", section, len(d.keys))
	}
	return d
}

// readAPIDocKeys is the api's table, plus keys, the list of key hashes its section
// describes in prose (a structured key with no variable of its own).
func readAPIDocKeys(t *testing.T) docKeys {
	t.Helper()
	d := readDocKeys(t, "api")
	d.keys["keys"] = true
	return d
}

// unknownKeys returns the dotted keys of a decoded YAML configuration that the table
// does not list. A documented key holding a map or list is a leaf (http.keys).
func (d docKeys) unknownKeys(cfg map[string]any) []string {
	var bad []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			if d.keys[key] {
				continue
			}
			if sub, ok := v.(map[string]any); ok {
				walk(key+".", sub)
				continue
			}
			bad = append(bad, key)
		}
	}
	walk("", cfg)
	sort.Strings(bad)
	return bad
}

func TestDocKeysCatchAnUnknownKey(t *testing.T) {
	d := readDocKeys(t, "mediator run")
	bad := d.unknownKeys(map[string]any{
		"listen": "0.0.0.0:9464",
		"mqtt":   map[string]any{"qoss": 1, "password_file": "/x"},
		"http":   map[string]any{"keys": []any{map[string]any{"tenant": "a", "key_file": "/k"}}},
	})
	if len(bad) != 1 || bad[0] != "mqtt.qoss" {
		t.Fatalf("unknown keys = %v, want [mqtt.qoss]", bad)
	}
}
