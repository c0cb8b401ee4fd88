package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/kafka"
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

// topicCounts reads topics usage and rejected to their ends: usage records by event_id,
// and the rejections.
func topicCounts(t *testing.T, broker string) (map[string]int, []record.Rejection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(kafka.TopicUsage, kafka.TopicRejected),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, kafka.TopicUsage, kafka.TopicRejected)
	if err != nil {
		t.Fatal(err)
	}
	type tp struct {
		topic string
		part  int32
	}
	left := map[tp]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[tp{o.Topic, o.Partition}] = o.Offset
		}
	})
	ids := map[string]int{}
	var rejs []record.Rejection
	var recs []record.Usage
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("topics not read to the end: %v", left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == kafka.TopicRejected {
				rj, err := record.ParseRejection(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				rejs = append(rejs, rj)
			} else {
				if recs, err = record.DecodeUsage(r.Value, recs[:0]); err != nil {
					t.Fatal(err)
				}
				for _, u := range recs {
					ids[u.EventID]++
				}
			}
			if k := (tp{r.Topic, r.Partition}); r.Offset+1 >= left[k] {
				delete(left, k)
			}
		})
	}
	return ids, rejs
}

func TestCDRImport(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	broker := cluster.ListenAddrs()[0]

	dir := t.TempDir()
	copyVector := func(vector, name string) {
		b, err := os.ReadFile(filepath.Join(cdrTestdata, vector))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	copyVector("chf_small_10.cdr", "a.cdr")
	copyVector("chf_free5gc_native_3.cdr", "b.cdr")
	copyVector("chf_damaged_truncated.cdr", "c.cdr")
	copyVector("chf_small_10.cdr", ".hidden.cdr")
	copyVector("chf_small_10.cdr", "d.cdr.part")

	// Without --move: files stay; the damaged one is reported and makes the exit code 1.
	code, out, errs := runCDRTest(t, nil, "import", "--kafka.brokers", broker, "--tenant-default", "acme", dir)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errs)
	}
	if !strings.Contains(errs, filepath.Join(dir, "c.cdr")+": decode cdr: offset 3825, record 7") {
		t.Errorf("stderr does not name the damaged file and offset:\n%s", errs)
	}
	summary := regexp.MustCompile(`(?m)^imported 3 of 3 files \(1 damaged, 0 errors\): 54 records, 1 rejected, `)
	if !summary.MatchString(errs) {
		t.Errorf("summary missing:\n%s", errs)
	}
	if strings.Contains(errs, "\r") {
		t.Error("progress redraws on a non-terminal")
	}
	ids, rejs := topicCounts(t, broker)
	// a.cdr's 28 records, b.cdr's 8, c.cdr's 18 (the vectors share event_ids: a.cdr's
	// cover all of them).
	n := 0
	for _, c := range ids {
		n += c
	}
	if n != 28+8+18 || len(ids) != 28 || len(rejs) != 1 || rejs[0].Reason != "cdr_damaged" {
		t.Errorf("%d records, %d distinct event_ids, %d rejections", n, len(ids), len(rejs))
	}
	for _, n := range []string{"a.cdr", "b.cdr", "c.cdr"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s moved without --move", n)
		}
	}

	// --move, naming files: done/ and failed/ beside them.
	code, _, errs = runCDRTest(t, nil, "import", "--kafka.brokers", broker, "--tenant-default", "acme", "--move",
		filepath.Join(dir, "a.cdr"), filepath.Join(dir, "c.cdr"))
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, p := range []string{"done/a.cdr", "failed/c.cdr/c.cdr", "failed/c.cdr/reason.json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// A clean run exits 0.
	if code, _, errs := runCDRTest(t, nil, "import", "--kafka.brokers", broker, "--tenant-default", "acme", "--pattern", "*.cdr", dir); code != 0 ||
		!strings.Contains(errs, "imported 1 of 1 files (0 damaged, 0 errors): 8 records") {
		t.Errorf("exit %d: %s", code, errs)
	}
}

func TestCDRImportUsage(t *testing.T) {
	for _, args := range [][]string{{"import"}, {"import", "--bogus", "d"}, {"import", "--pattern", "[", "d"}} {
		if code, _, errs := runCDRTest(t, nil, args...); code != 2 || errs == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
	}
}
