package cdrdir

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/cdr"
	"fleetmeter/kafka"
	"fleetmeter/record"
)

// nfID is the recordingNetworkFunctionID every CHFRecord of the shared test vectors
// carries (an IA5String, 36 octets). The decoder builds event_id from it and the record
// sequence numbers, so copies of one vector repeat their event_ids. The crash test makes
// copies distinct by overwriting it in place with another 36-octet id: same length, so no
// BER or TS 32.297 length changes, and the files stay valid CHF output. The test checks
// that every generated event_id is unique before relying on it.
const nfID = "5f2a1c3e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"

func patchedID(file, block int) []byte {
	return fmt.Appendf(nil, "5f2a1c3e-8b7d-4e6f-9a0b-%012d", file*10000+block)
}

// crashFiles writes n CDR files into dir: most are raw BER made of many copies of the
// 10-record vector (each copy with its own NF id, so the file is large enough to be
// killed in the middle of), every sixth is the TS 32.297 framed vector.
func crashFiles(t *testing.T, dir string, n int) (names []string, want map[string]int) {
	t.Helper()
	ber, err := os.ReadFile(filepath.Join(testdata, "chf_small_10.ber"))
	if err != nil {
		t.Fatal(err)
	}
	framed, err := os.ReadFile(filepath.Join(testdata, "chf_small_10.cdr"))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := cdr.NewDecoder(cdr.Config{Tenants: cdr.TenantMap{Default: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]int{}
	total := 0
	var recs []record.Usage
	for f := range n {
		var b []byte
		if f%6 == 5 {
			b = bytes.ReplaceAll(framed, []byte(nfID), patchedID(f, 0))
		} else {
			for k := range 40 {
				b = append(b, bytes.ReplaceAll(ber, []byte(nfID), patchedID(f, k))...)
			}
		}
		recs, err = dec.Decode(b, recs[:0])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			want[r.EventID]++
		}
		total += len(recs)
		name := fmt.Sprintf("chf_%03d.cdr", f)
		tmp := filepath.Join(dir, "."+name+".part")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if len(want) != total {
		t.Fatalf("generated event_ids are not distinct: %d ids for %d records", len(want), total)
	}
	return names, want
}

// TestCrashSafety runs the collector with the real Kafka producer against kfake in a
// child process, SIGKILLs it (every fourth time: SIGTERM) at random moments while it works
// through 30 files, restarts it, and then checks topic usage: every record is there, and any duplicate is an exact
// copy (same event_id, same content), which downstream collapses.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a child process")
	}
	start := time.Now()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain to build the crash program")
	}
	tmp := t.TempDir()
	prog := filepath.Join(tmp, "crashprog")
	build := exec.Command(goBin, "build", "-o", prog, "./testdata/crashprog")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build crash program: %v\n%s", err, out)
	}
	built := time.Now()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	broker := cluster.ListenAddrs()[0]

	drop := filepath.Join(tmp, "drop")
	os.MkdirAll(drop, 0o755)
	names, want := crashFiles(t, drop, 30)

	remaining := func() int {
		files, err := ListFiles(drop, "*")
		if err != nil {
			t.Fatal(err)
		}
		return len(files)
	}
	logf, err := os.Create(filepath.Join(tmp, "crashprog.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	run := func() (*exec.Cmd, error) {
		cmd := exec.Command(prog, "--dir", drop, "--brokers", broker, "--chunk", "200")
		cmd.Stderr = logf
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "started\n" {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("crash program did not start (%q, %v); see %s", line, err, logf.Name())
		}
		return cmd, nil
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills, killedMidway, terms := 0, 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for remaining() > 0 && kills < 40 && time.Now().Before(deadline) {
		cmd, err := run()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(150_000)) * time.Microsecond)
		before := remaining()
		if kills%4 == 3 {
			// Now and then a graceful stop instead: it must leave things as consistent.
			cmd.Process.Signal(os.Interrupt)
			if err := cmd.Wait(); err != nil {
				t.Errorf("graceful stop: %v (log %s)", err, logf.Name())
			}
			terms++
		} else {
			cmd.Process.Kill() // SIGKILL
			cmd.Wait()
		}
		kills++
		if before > 0 {
			killedMidway++
		}
	}
	// Whatever is left: one last run, stopped by SIGTERM once the directory is empty.
	leftForClean := remaining()
	cmd, err := run()
	if err != nil {
		t.Fatal(err)
	}
	for remaining() > 0 && time.Now().Before(deadline.Add(15*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("final run: %v (log %s)", err, logf.Name())
	}
	if n := remaining(); n != 0 {
		t.Fatalf("%d files never left the drop directory", n)
	}
	done, _ := ListFiles(filepath.Join(drop, "done"), "*")
	var doneNames []string
	for _, p := range done {
		doneNames = append(doneNames, filepath.Base(p))
	}
	sort.Strings(doneNames)
	if fmt.Sprint(doneNames) != fmt.Sprint(names) {
		t.Errorf("done/ holds %v, want %v", doneNames, names)
	}
	if failed, _ := os.ReadDir(filepath.Join(drop, "failed")); len(failed) != 0 {
		t.Errorf("failed/ holds %v", failed) // quarantine folders included
	}

	got := readUsage(t, broker)
	var dups int
	for id, copies := range got {
		if want[id] == 0 {
			t.Fatalf("unexpected event_id %s", id)
		}
		for _, c := range copies[1:] {
			if c != copies[0] {
				t.Fatalf("event_id %s produced twice with different content:\n%+v\n%+v", id, copies[0], c)
			}
		}
		dups += len(copies) - 1
	}
	missing := 0
	for id := range want {
		if len(got[id]) == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d records lost", missing, len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(broker))
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, kafka.TopicRejected)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("topic rejected partition %d has %d messages", o.Partition, o.Offset)
		}
	})
	t.Logf("%d files, %d records; %d stops (%d of them SIGTERM, %d with files left), then a clean run for the last %d files; %d records produced twice "+
		"(identical copies); build %s, test %s",
		len(names), len(want), kills, terms, killedMidway, leftForClean, dups, built.Sub(start).Round(time.Millisecond), time.Since(built).Round(time.Millisecond))
}

// readUsage reads all of topic usage and groups the records by event_id.
func readUsage(t *testing.T, broker string) map[string][]record.Usage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(kafka.TopicUsage),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, kafka.TopicUsage)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	got := map[string][]record.Usage{}
	var recs []record.Usage
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading topic usage: %v; partitions not read to the end: %v", err, left)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			recs, err = record.DecodeUsage(r.Value, recs[:0])
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
			}
			for _, u := range recs {
				got[u.EventID] = append(got[u.EventID], u)
			}
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return got
}
