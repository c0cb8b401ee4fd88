package cdrdir

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"fleetmeter/record"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readReason decodes dir/reason.json strictly: a forged or unknown key fails.
func readReason(t *testing.T, dir string) Reason {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ReasonFile))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var q Reason
	if err := dec.Decode(&q); err != nil {
		t.Fatalf("%s: %v\n%s", dir, err, b)
	}
	return q
}

// wantQuarantined checks failed/<folder>/ holds exactly data under its name and a
// reason.json naming it.
func wantQuarantined(t *testing.T, f *fixture, folder, name string, data []byte) Reason {
	t.Helper()
	dir := filepath.Join(f.dir, "failed", folder)
	got, err := os.ReadFile(filepath.Join(dir, dataName(name)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("failed/%s/%s: %v (%d bytes, want %d)", folder, dataName(name), err, len(got), len(data))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("failed/%s holds %d entries, want the data file and %s", folder, len(ents), ReasonFile)
	}
	q := readReason(t, dir)
	if q.File != name || q.Data != dataName(name) || q.Path != filepath.Join(f.dir, name) ||
		q.Size != int64(len(data)) || q.SHA256 != sha(data) || q.Reason != record.ReasonCDRDamaged || q.FailedAt == "" {
		t.Errorf("failed/%s/%s: %+v", folder, ReasonFile, q)
	}
	return q
}

// A damaged file named z.reason, then a damaged file named z: under the old layout
// (failed/<name> beside failed/<name>.reason) the second file's reason text overwrote the
// first file's data. Each now has a folder of its own.
func TestQuarantineNamesCannotCollide(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	first := f.drop("chf_damaged_truncated.cdr", "z.reason")
	f.poll()
	second := f.drop("chf_damaged_garbage.ber", "z")
	f.poll()
	wantQuarantined(t, f, "z.reason", "z.reason", first)
	wantQuarantined(t, f, "z", "z", second)
}

// A newline in a file name cannot forge a field of the reason: the name travels as a
// JSON string.
func TestQuarantineNewlineInName(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	name := "x.cdr\nreason: cdr_too_large\noffset: 0"
	data := f.drop("chf_damaged_truncated.cdr", name)
	f.poll()
	q := wantQuarantined(t, f, name, name, data)
	if q.Offset == nil || *q.Offset != 3825 {
		t.Errorf("offset %v, want 3825", q.Offset)
	}
}

// The same name failing twice: the second gets name.1/, the first stays as it was.
func TestQuarantineSameNameTwice(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	first := f.drop("chf_damaged_truncated.cdr", "t.cdr")
	f.poll()
	before, _ := os.ReadFile(filepath.Join(f.dir, "failed", "t.cdr", ReasonFile))
	second := f.drop("chf_damaged_garbage.ber", "t.cdr")
	f.poll()
	wantQuarantined(t, f, "t.cdr", "t.cdr", first)
	wantQuarantined(t, f, "t.cdr.1", "t.cdr", second)
	if after, _ := os.ReadFile(filepath.Join(f.dir, "failed", "t.cdr", ReasonFile)); !bytes.Equal(before, after) {
		t.Error("the first reason.json changed")
	}
	// A file in failed/ from the old layout holds its name too.
	os.WriteFile(filepath.Join(f.dir, "failed", "old.cdr"), []byte("old"), 0o644)
	third := f.drop("chf_damaged_garbage.ber", "old.cdr")
	f.poll()
	wantQuarantined(t, f, "old.cdr.1", "old.cdr", third)
	if b, _ := os.ReadFile(filepath.Join(f.dir, "failed", "old.cdr")); string(b) != "old" {
		t.Error("old-layout file overwritten")
	}
}

// A data file named like the reason file keeps both.
func TestQuarantineFileNamedReasonJSON(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	data := f.drop("chf_damaged_truncated.cdr", ReasonFile)
	f.poll()
	wantQuarantined(t, f, ReasonFile, ReasonFile, data)
}

// A crash while a quarantine folder is assembled: with only its reason written, the data
// file is still in the drop directory, so the restart removes the folder and sends the
// file again; with the data file moved in, the restart finishes the move.
func TestQuarantineCrashRecovery(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Settle = 0 })
	failed := filepath.Join(f.dir, "failed")
	data := f.drop("chf_damaged_truncated.cdr", "a.cdr")
	res, err := f.col.proc.Send(t.Context(), filepath.Join(f.dir, "a.cdr"))
	if err != nil || res.Damage == nil {
		t.Fatal(err, res.Damage)
	}
	assemble := func(withData bool) string {
		tmp, err := os.MkdirTemp(failed, quarantinePrefix+"*"+tmpSuffix)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(res.reason(f.clock))
		if err := writeSynced(filepath.Join(tmp, ReasonFile), b); err != nil {
			t.Fatal(err)
		}
		if withData {
			if err := os.Rename(res.Path, filepath.Join(tmp, "a.cdr")); err != nil {
				t.Fatal(err)
			}
		}
		return tmp
	}
	// Crash after step 1.
	reasonOnly := assemble(false)
	f.col.prepare()
	if exists(reasonOnly) || !exists(res.Path) {
		t.Fatal("restart did not drop the folder without data, or lost the data file")
	}
	f.poll()
	wantQuarantined(t, f, "a.cdr", "a.cdr", data)

	// Crash after step 2, with a.cdr/ taken already.
	f.drop("chf_damaged_truncated.cdr", "a.cdr")
	withData := assemble(true)
	f.col.prepare()
	if exists(withData) {
		t.Fatal("folder in progress left")
	}
	wantQuarantined(t, f, "a.cdr.1", "a.cdr", data)
	if ents, _ := os.ReadDir(failed); !slices.EqualFunc(ents, []string{"a.cdr", "a.cdr.1"},
		func(e os.DirEntry, n string) bool { return e.Name() == n }) {
		t.Errorf("failed/ holds %v", ents)
	}
}

// Names near NAME_MAX still get a free folder.
func TestFreeDirLongName(t *testing.T) {
	dir := t.TempDir()
	name := string(bytes.Repeat([]byte{'n'}, 255))
	p, err := freeDir(dir, name)
	if err != nil || filepath.Base(p) != name {
		t.Fatal(p, err)
	}
	os.Mkdir(p, 0o755)
	p, err = freeDir(dir, name)
	if err != nil || len(filepath.Base(p)) != 255 || filepath.Ext(p) != ".1" {
		t.Fatal(p, err)
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}
