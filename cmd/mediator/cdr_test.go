package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/record"
)

const cdrTestdata = "../../cdr/testdata"

func runCDRTest(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runCDR(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func jsonLines(t *testing.T, s string) []record.Usage {
	t.Helper()
	var recs []record.Usage
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if l == "" {
			continue
		}
		u, err := record.ParseJSON([]byte(l))
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		recs = append(recs, u)
	}
	return recs
}

func TestCDRDecode(t *testing.T) {
	file := filepath.Join(cdrTestdata, "chf_small_10.cdr")
	code, out, errs := runCDRTest(t, nil, "decode", "--tenant-default", "acme", file)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	recs := jsonLines(t, out)
	if len(recs) != 28 {
		t.Fatalf("%d records, want 28", len(recs))
	}
	// Record 1 of the MANIFEST, written out by hand.
	first := `{"event_id":"cdr:5f2a1c3e-8b7d-4e6f-9a0b-1c2d3e4f5a6b:1:10:1","tenant":"acme","device":"imsi-208930000000001","source":"cdr",` +
		`"start_time":"2025-03-14T00:00:00.000Z","end_time":"2025-03-14T00:00:30.000Z","received_time":"1970-01-01T00:00:00.000Z",` +
		`"bytes_up":1537,"bytes_down":16907,"duration_ms":30000,"events":0,"rating_group":10,"plmn":"208-93","cell":"20893000000010",` +
		`"lat":null,"lon":null,"rat":"NR","slice_sst":1,"slice_sd":"010203"}`
	if got, _, _ := strings.Cut(out, "\n"); got != first {
		t.Errorf("first line\n got %s\nwant %s", got, first)
	}
	var up, down uint64
	for _, r := range recs {
		up += r.BytesUp
		down += r.BytesDown
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", r.EventID, err)
		}
	}
	if up != 397808 || down != 4375951 {
		t.Errorf("totals up %d down %d", up, down)
	}

	// The raw BER form prints the same lines.
	_, outBER, _ := runCDRTest(t, nil, "decode", "--tenant-default", "acme", filepath.Join(cdrTestdata, "chf_small_10.ber"))
	if outBER != out {
		t.Error("raw BER output differs from the TS 32.297 file's")
	}
	// So does stdin.
	b, _ := os.ReadFile(file)
	_, outStdin, _ := runCDRTest(t, b, "decode", "--tenant-default", "acme", "-")
	if outStdin != out {
		t.Error("stdin output differs")
	}
}

func TestCDRDecodeDamaged(t *testing.T) {
	good := filepath.Join(cdrTestdata, "chf_small_10.cdr")
	_, full, _ := runCDRTest(t, nil, "decode", good)
	fullLines := strings.SplitAfter(full, "\n")

	for _, tc := range []struct {
		file   string
		lines  int // records of CDRs 1-6 (truncated) or 1-5 (garbage)
		offset string
	}{
		{"chf_damaged_truncated.cdr", 18, "offset 3825, record 7"},
		{"chf_damaged_garbage.ber", 13, "offset 3021, record 6"},
	} {
		path := filepath.Join(cdrTestdata, tc.file)
		code, out, errs := runCDRTest(t, nil, "decode", path)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", tc.file, code)
		}
		if want := strings.Join(fullLines[:tc.lines], ""); out != want {
			t.Errorf("%s: stdout is not the first %d records of the good file:\n%s", tc.file, tc.lines, out)
		}
		if !strings.Contains(errs, path) || !strings.Contains(errs, tc.offset) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: stderr %q should name the file and %q", tc.file, errs, tc.offset)
		}
	}

	// A damaged file among good ones: every file is printed, the exit code is still 1.
	code, out, errs := runCDRTest(t, nil, "decode", filepath.Join(cdrTestdata, "chf_damaged_garbage.ber"), good)
	if code != 1 || strings.Count(out, "\n") != 13+28 || !strings.Contains(errs, "chf_damaged_garbage.ber") {
		t.Errorf("exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errs)
	}
}

func TestCDRTenants(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tenants.yaml")
	os.WriteFile(cfg, []byte("default: acme\nrules:\n  - tenant: fast\n    slice_sst: 2\n  - tenant: farm\n    supi_range: [imsi-208930000000004, imsi-208930000000005]\n"), 0o644)
	code, out, errs := runCDRTest(t, nil, "decode", "--tenants", cfg, "--received-time", "2025-03-14T01:00:00Z", filepath.Join(cdrTestdata, "chf_small_10.cdr"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	counts := map[string]int{}
	for _, r := range jsonLines(t, out) {
		counts[r.Tenant]++
		if r.ReceivedTime != 1741914000000 {
			t.Fatalf("received_time %d", r.ReceivedTime)
		}
	}
	// SST 2: records 3, 6, 9 (4+5+4 containers); IMSI ...4 and ...5: records 4, 5 (2+3).
	if counts["fast"] != 13 || counts["farm"] != 5 || counts["acme"] != 10 {
		t.Errorf("tenants %v", counts)
	}

	os.WriteFile(cfg, []byte("default: acme\nrulez: []\n"), 0o644)
	if code, _, errs := runCDRTest(t, nil, "decode", "--tenants", cfg, "x"); code != 2 || !strings.Contains(errs, "rulez") {
		t.Errorf("unknown key: exit %d, stderr %q", code, errs)
	}
	os.WriteFile(cfg, []byte("rules:\n  - tenant: x\n"), 0o644)
	if code, _, errs := runCDRTest(t, nil, "decode", "--tenants", cfg, "x"); code != 2 || !strings.Contains(errs, "tenants.rules[0]") {
		t.Errorf("empty rule: exit %d, stderr %q", code, errs)
	}
}

func TestCDRUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"encode"}, {"decode"}, {"decode", "--bogus", "f"}, {"decode", "--received-time", "yesterday", "f"}} {
		if code, _, errs := runCDRTest(t, nil, args...); code != 2 || errs == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
	}
	code, out, errs := runCDRTest(t, nil, "decode", filepath.Join(cdrTestdata, "no-such-file.cdr"))
	if code != 1 || out != "" || !strings.Contains(errs, "no-such-file.cdr") {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
}
