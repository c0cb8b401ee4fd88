package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/record"
)

const testdata = "../../testdata/rating"

// TestRulesCheckInvalid runs `rater rules check` on each broken tariff of
// testdata/rating/invalid and compares the problem lines (file, line, key, message).
func TestRulesCheckInvalid(t *testing.T) {
	errs, _ := filepath.Glob(filepath.Join(testdata, "invalid", "*.err"))
	if len(errs) < 10 {
		t.Fatalf("only %d invalid cases", len(errs))
	}
	for _, ef := range errs {
		arg := strings.TrimSuffix(ef, ".err")
		if _, err := os.Stat(arg); err != nil {
			arg += ".yaml"
		}
		t.Run(filepath.Base(arg), func(t *testing.T) {
			want, _ := os.ReadFile(ef)
			var out, errOut bytes.Buffer
			code := runRules([]string{"check", arg}, nil, &out, &errOut)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			got := strings.ReplaceAll(out.String(), arg, "FILE")
			if got != string(want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestRulesCheckExamples keeps the tariffs of deploy/tariffs valid.
func TestRulesCheckExamples(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/tariffs/*.yaml")
	if len(files) < 3 {
		t.Fatalf("example tariffs missing: %v", files)
	}
	var out, errOut bytes.Buffer
	if code := runRules(append([]string{"check"}, files...), nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	if n := strings.Count(out.String(), "ok "); n != len(files) {
		t.Errorf("want %d ok lines:\n%s", len(files), out.String())
	}
}

func TestRulesUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runRules([]string{"lint"}, nil, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}

// TestRateGolden rates every golden case through the CLI with --close.
func TestRateGolden(t *testing.T) {
	ins, _ := filepath.Glob(filepath.Join(testdata, "*", "input.jsonl"))
	for _, in := range ins {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runRate([]string{"--rules", dir, "--in", in, "--close"}, nil, &out, &errOut)
			wantErr, _ := os.ReadFile(filepath.Join(dir, "expected.err"))
			wantCode := 0
			if len(wantErr) > 0 {
				wantCode = 1
				for _, l := range strings.Split(strings.TrimSpace(string(wantErr)), "\n") {
					f := strings.Fields(l)
					if !strings.Contains(errOut.String(), `"reason":"`+f[1]+`"`) {
						t.Errorf("stderr lacks rejection %s:\n%s", l, errOut.String())
					}
				}
			}
			if code != wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, wantCode, errOut.String())
			}
			want, _ := os.ReadFile(filepath.Join(dir, "expected.jsonl"))
			wl := strings.Split(strings.TrimSpace(string(want)), "\n")
			gl := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(wl) != len(gl) {
				t.Fatalf("got %d lines, want %d:\n%s", len(gl), len(wl), out.String())
			}
			for i := range wl {
				w, err1 := record.ParseRatedJSON([]byte(wl[i]))
				g, err2 := record.ParseRatedJSON([]byte(gl[i]))
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				w.RatedTime, g.RatedTime = 0, 0
				if w != g {
					t.Errorf("line %d:\n got %s\nwant %s", i+1, gl[i], wl[i])
				}
			}
		})
	}
}

func TestRateStdinAndBadInput(t *testing.T) {
	in := `{"event_id":"a","tenant":"agrico","device":"s1","source":"mqtt","start_time":"2026-11-20T10:00:00Z","bytes_up":1500,"events":1,"lat":52.52,"lon":13.405}
not json
{"event_id":"b","tenant":"nobody","device":"s1","source":"mqtt","start_time":"2026-11-20T10:00:00Z","events":1}
`
	var out, errOut bytes.Buffer
	code := runRate([]string{"--rules", "../../deploy/tariffs"}, strings.NewReader(in), &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 { // usage + provisional fee
		t.Errorf("got %d rated lines:\n%s", n, out.String())
	}
	for _, want := range []string{`"reason":"bad_json"`, `"reason":"no_tariff"`, "2 record(s) rejected"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %s:\n%s", want, errOut.String())
		}
	}
	if code := runRate([]string{"--in", "x"}, nil, &out, &errOut); code != 2 {
		t.Errorf("missing --rules: exit %d, want 2", code)
	}
}

// A record is priced once: car-1 on cellA at 10:00 (r1), cellB at 11:00 (r2, nomadic),
// cellA two days later (r3), then r2 again, and again after a record five days later:
// each copy leaves r2's first rating (nomadic, 10 KB at 0.0015/MB = 0.000015) the only one.
func TestRatePricesARecordOnce(t *testing.T) {
	rec := func(id, ts, cell string) string {
		return `{"event_id":"` + id + `","tenant":"autoco","device":"car-1","source":"mqtt","start_time":"` + ts +
			`","cell":"` + cell + `","plmn":"262-01","bytes_up":10000}` + "\n"
	}
	r2 := rec("r2", "2026-11-02T11:00:00Z", "cellB")
	in := rec("r1", "2026-11-02T10:00:00Z", "cellA") + r2 + rec("r3", "2026-11-04T10:00:00Z", "cellA") + r2 +
		rec("r4", "2026-11-09T10:00:00Z", "cellA") + r2
	var out, errOut bytes.Buffer
	if code := runRate([]string{"--rules", "../../deploy/tariffs"}, strings.NewReader(in), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var ratings []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(line, `"record_id":"r2"`) {
			ratings = append(ratings, line)
		}
	}
	if len(ratings) != 1 {
		t.Fatalf("r2 rated %d times:\n%s", len(ratings), strings.Join(ratings, "\n"))
	}
	if !strings.Contains(ratings[0], `"mobility":"nomadic"`) || !strings.Contains(ratings[0], `"amount":"0.000015"`) {
		t.Fatalf("r2's rating = %s, want nomadic 0.000015", ratings[0])
	}
	if !strings.Contains(errOut.String(), "2 copie(s)") {
		t.Errorf("stderr does not report the skipped copies: %s", errOut.String())
	}
}
