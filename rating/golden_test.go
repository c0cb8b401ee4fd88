package rating

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"fleetmeter/record"
	"fleetmeter/rules"
)

var update = flag.Bool("update", false, "rewrite testdata/rating/*/expected.jsonl and expected.err")

const goldenDir = "../testdata/rating"

// TestGolden runs each folder of testdata/rating: every *.yaml there is the rule set,
// input.jsonl is rated in order with one State, every period seen is then closed, and
// the rated records must equal expected.jsonl ignoring rated_time. Rejected inputs are
// listed in expected.err as "<event_id> <reason>". README.md in each folder works every
// amount out by hand.
func TestGolden(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(goldenDir, "*", "input.jsonl"))
	if len(dirs) == 0 {
		t.Fatal("no golden cases")
	}
	for _, in := range dirs {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			set, err := rules.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			got, rejected := rateFile(t, set, in)
			var gotB, errB bytes.Buffer
			for i := range got {
				got[i].RatedTime = 0
				gotB.Write(record.AppendRatedJSON(nil, &got[i]))
				gotB.WriteByte('\n')
			}
			for _, r := range rejected {
				errB.WriteString(r + "\n")
			}
			if *update {
				os.WriteFile(filepath.Join(dir, "expected.jsonl"), gotB.Bytes(), 0o644)
				if errB.Len() > 0 {
					os.WriteFile(filepath.Join(dir, "expected.err"), errB.Bytes(), 0o644)
				}
				return
			}
			want := readRated(t, filepath.Join(dir, "expected.jsonl"))
			if len(want) != len(got) {
				t.Fatalf("got %d records, want %d:\n%s", len(got), len(want), gotB.String())
			}
			for i := range want {
				want[i].RatedTime = 0
				if want[i] != got[i] {
					t.Errorf("record %d:\n got %s\nwant %s", i, record.AppendRatedJSON(nil, &got[i]), record.AppendRatedJSON(nil, &want[i]))
				}
			}
			wantErr, _ := os.ReadFile(filepath.Join(dir, "expected.err"))
			if string(wantErr) != errB.String() {
				t.Errorf("rejections:\n got %q\nwant %q", errB.String(), wantErr)
			}
		})
	}
}

func rateFile(t *testing.T, set *rules.Set, path string) ([]record.Rated, []string) {
	t.Helper()
	e := NewEngine(set, Options{Now: func() int64 { return 0 }})
	st := NewState()
	var out []record.Rated
	var rejected []string
	periods := map[string]bool{}
	for _, u := range readUsage(t, path) {
		var err error
		out, err = e.Rate(st, &u, out)
		var ie *record.InvalidError
		if errors.As(err, &ie) {
			rejected = append(rejected, u.EventID+" "+ie.Reason)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		periods[monthOf(u.StartTime).String()] = true
	}
	ps := make([]string, 0, len(periods))
	for p := range periods {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	for _, p := range ps {
		var err error
		if out, err = e.Close([]*State{st}, p, out); err != nil {
			t.Fatal(err)
		}
	}
	return out, rejected
}

func readUsage(t testing.TB, path string) []record.Usage {
	var us []record.Usage
	eachLine(t, path, func(l []byte) {
		u, err := record.ParseJSON(l)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		us = append(us, u)
	})
	return us
}

func readRated(t testing.TB, path string) []record.Rated {
	var rs []record.Rated
	eachLine(t, path, func(l []byte) {
		r, err := record.ParseRatedJSON(l)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		rs = append(rs, r)
	})
	return rs
}

func eachLine(t testing.TB, path string, fn func([]byte)) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			fn([]byte(l))
		}
	}
}
