package cdr

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"fleetmeter/record"
)

// The expectations in this file are written from testdata/MANIFEST.md (its generation
// rules and its tables), not from the decoder's output.

const chfNFID = "5f2a1c3e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"

var manifestSHA256 = map[string]string{
	"chf_small_10.cdr":          "5670125ae0328d54929e8c80e2f8976c335e99e7bd2f3807a7ce351dfdf1ed2c",
	"chf_small_10.ber":          "b1d33a900dcd117541eb995a8c61ef04259580577e7255ec244160ae84cf6534",
	"chf_free5gc_native_3.cdr":  "43032c99669df3eb8d2c2737999dcaa1fed4396e1713bed42f94a97396a526a6",
	"chf_damaged_truncated.cdr": "a270f33465a622600b4aa9eddb9de72fd90942bad277c1c2a6e04f980729c008",
	"chf_damaged_garbage.ber":   "363ca92715c043afacce485d974b9056c7471667ab76d9bbdb400b1fce78fbb9",
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestManifestFilesIntact(t *testing.T) {
	for name, want := range manifestSHA256 {
		sum := sha256.Sum256(readTestdata(t, name))
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, MANIFEST says %s", name, got, want)
		}
	}
}

// manifestContainer is one used unit container as the MANIFEST lists it.
type manifestContainer struct {
	rg       uint32
	seq      int
	up, down uint64
	time     uint64
}

// smallUnits transcribes "Unit usage per record" for chf_small_10.
var smallUnits = [10][]manifestContainer{
	{{10, 1, 1537, 16907, 30}},
	{{20, 1, 3074, 33814, 71}, {20, 2, 3385, 37242, 71}, {300, 1, 6148, 67628, 143}},
	{{300, 1, 4611, 50721, 256}, {1000, 1, 9222, 101442, 128}, {1000, 2, 9533, 104870, 128}, {10, 1, 13833, 152163, 256}},
	{{1000, 1, 6148, 67628, 184}, {1000, 2, 6459, 71056, 184}},
	{{10, 1, 7685, 84535, 482}, {20, 1, 15370, 169070, 241}, {20, 2, 15681, 172498, 241}},
	{{20, 1, 9222, 101442, 297}, {20, 2, 9533, 104870, 297}, {300, 1, 18444, 202884, 595}, {1000, 1, 27666, 304326, 297}, {1000, 2, 27977, 307754, 297}},
	{{300, 1, 10759, 118349, 708}},
	{{1000, 1, 12296, 135256, 410}, {1000, 2, 12607, 138684, 410}, {10, 1, 24592, 270512, 821}},
	{{10, 1, 13833, 152163, 934}, {20, 1, 27666, 304326, 467}, {20, 2, 27977, 307754, 467}, {300, 1, 41499, 456489, 934}},
	{{20, 1, 15370, 169070, 523}, {20, 2, 15681, 172498, 523}},
}

// smallOpening transcribes the recordOpeningTime column (BCD hex) of chf_small_10.
var smallOpening = [10]string{
	"2503140800002b0800", "2503140800372b0800", "2503140801142b0800", "2503140801512b0800", "2503140002282b0000",
	"2503140803052b0800", "2503140803422b0800", "2503140804192b0800", "2503140804562b0800", "2503140005332b0000",
}

// bcdTime converts a TS 32.298 TimeStamp in hex with the time package, independently of
// the decoder's arithmetic.
func bcdTime(t testing.TB, h string) int64 {
	t.Helper()
	var n [9]int
	for i := range 9 {
		if i == 6 {
			continue
		}
		fmt.Sscanf(h[2*i:2*i+2], "%d", &n[i])
	}
	off := (n[7]*60 + n[8]) * 60
	if h[12:14] == "2d" {
		off = -off
	}
	return time.Date(2000+n[0], time.Month(n[1]), n[2], n[3], n[4], n[5], 0, time.FixedZone("", off)).UnixMilli()
}

// generatedContainers applies the MANIFEST generation rules for record index i.
func generatedContainers(i int) []manifestContainer {
	var out []manifestContainer
	dur := uint64(30 + (113*i)%3571)
	k := i%3 + 1
	for m := range k {
		rg := []uint32{10, 20, 300, 1000}[(i+m)%4]
		c := 1 + (i+m)%2
		for j := range c {
			up := uint64((i+1)*1537*(m+1) + 311*j)
			down := 11*up + uint64(7*j)
			if i%25 == 24 && m == k-1 {
				up, down = 0, 0
			}
			if i%50 == 49 && m == 0 && j == 0 {
				down = 5000000000 + uint64(i)
			}
			out = append(out, manifestContainer{rg: rg, seq: j + 1, up: up, down: down, time: dur / uint64(c)})
		}
	}
	return out
}

// smallExpected builds the canonical records of chf_small_10 record index i from the
// generation rules and the mapping documented in doc.go.
func smallExpected(t testing.TB, i int, tenant string) []record.Usage {
	start := time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC).UnixMilli() + int64(37*i)*1000
	if got := bcdTime(t, smallOpening[i]); got != start {
		t.Fatalf("record %d: opening time table %d, rule %d", i+1, got, start)
	}
	rat, cell := "NR", fmt.Sprintf("20893%09x", 0x10+i%16)
	if i%4 == 3 {
		rat, cell = "EUTRA", fmt.Sprintf("20893%07x", 0x100+i%16)
	}
	sst, sd := uint8(1), []string{"010203", "112233", "a0b0c0"}[i%3]
	if i%3 == 2 {
		sst = 2
	}
	var out []record.Usage
	for _, c := range generatedContainers(i) {
		out = append(out, record.Usage{
			EventID:     fmt.Sprintf("cdr:%s:%d:%d:%d", chfNFID, i+1, c.rg, c.seq),
			Tenant:      tenant,
			Device:      fmt.Sprintf("imsi-20893%010d", i%25+1),
			Source:      "cdr",
			StartTime:   start,
			EndTime:     start + int64(c.time)*1000,
			BytesUp:     c.up,
			BytesDown:   c.down,
			DurationMs:  c.time * 1000,
			RatingGroup: c.rg,
			PLMN:        "208-93",
			Cell:        cell,
			RAT:         rat,
			SliceSST:    sst,
			HasSlice:    true,
			SliceSD:     sd,
		})
	}
	return out
}

func smallAll(t testing.TB, cdrs int) []record.Usage {
	var out []record.Usage
	for i := range cdrs {
		out = append(out, smallExpected(t, i, "acme")...)
	}
	return out
}

// The generation rules reproduce the MANIFEST's own tables and totals.
func TestManifestRulesMatchTables(t *testing.T) {
	var muu, containers int
	var up, down uint64
	for i := range 10 {
		got := generatedContainers(i)
		if !reflect.DeepEqual(got, smallUnits[i]) {
			t.Errorf("record %d: rules give %v, table lists %v", i+1, got, smallUnits[i])
		}
		muu += i%3 + 1
		containers += len(got)
		for _, c := range got {
			up += c.up
			down += c.down
		}
	}
	if muu != 19 || containers != 28 || up != 397808 || down != 4375951 {
		t.Errorf("totals: %d entries, %d containers, up %d, down %d; MANIFEST: 19, 28, 397808, 4375951", muu, containers, up, down)
	}
}

func decodeFile(t testing.TB, name string) ([]record.Usage, error) {
	t.Helper()
	d, err := NewDecoder(Config{Tenants: TenantMap{Default: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	b := readTestdata(t, name)
	recs, derr := d.Decode(b, nil)
	if d.Consumed() > len(b) {
		t.Errorf("%s: consumed %d > %d", name, d.Consumed(), len(b))
	}
	return recs, derr
}

func diffRecords(t *testing.T, name string, got, want []record.Usage) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d records, want %d", name, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: record %d:\n got %s\nwant %s", name, i, record.AppendJSON(nil, &got[i]), record.AppendJSON(nil, &want[i]))
		}
	}
}

func TestManifestSmall(t *testing.T) {
	for _, name := range []string{"chf_small_10.cdr", "chf_small_10.ber"} {
		got, err := decodeFile(t, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		diffRecords(t, name, got, smallAll(t, 10))
	}
}

func TestManifestNative(t *testing.T) {
	start := time.Date(2026, 11, 25, 18, 22, 6, 0, time.UTC).UnixMilli()
	if bcdTime(t, "2611251822062b0000") != start {
		t.Fatal("opening time")
	}
	type c struct {
		lrsn     int
		rg       uint32
		seq      int
		up, down uint64
		sst      uint8
		sd       string
	}
	// From the MANIFEST's CDR 1-3 lines and the sD quirk list.
	list := []c{
		{1, 10, 1, 1537, 16907, 1, "010203"},
		{2, 20, 1, 39962, 439582, 1, "112233"},
		{2, 20, 2, 40273, 443010, 1, "112233"},
		{2, 300, 1, 79924, 879164, 1, "112233"},
		{3, 300, 1, 78387, 862257, 2, "a0b0c0"},
		{3, 1000, 1, 156774, 1724514, 2, "a0b0c0"},
		{3, 1000, 2, 157085, 1727942, 2, "a0b0c0"},
		{3, 10, 1, 235161, 2586771, 2, "a0b0c0"},
	}
	var want []record.Usage
	for _, e := range list {
		want = append(want, record.Usage{
			EventID: fmt.Sprintf("cdr:%s:%d:%d:%d", chfNFID, e.lrsn, e.rg, e.seq), Tenant: "acme",
			Device: "imsi-208930000000001", Source: "cdr", StartTime: start, EndTime: start,
			BytesUp: e.up, BytesDown: e.down, RatingGroup: e.rg, SliceSST: e.sst, HasSlice: true, SliceSD: e.sd,
		})
	}
	got, err := decodeFile(t, "chf_free5gc_native_3.cdr")
	if err != nil {
		t.Fatal(err)
	}
	diffRecords(t, "native", got, want)
}

func wantDecodeError(t *testing.T, name string, err error, off int64, rec int) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("%s: error %v, want a *DecodeError", name, err)
	}
	if de.Offset != off || de.Record != rec {
		t.Errorf("%s: error at offset %d record %d, want offset %d record %d (%v)", name, de.Offset, de.Record, off, rec, err)
	}
}

func TestManifestDamaged(t *testing.T) {
	// Truncated in record 7, whose CDR header is at 3825: records 1-6, then the error.
	got, err := decodeFile(t, "chf_damaged_truncated.cdr")
	wantDecodeError(t, "truncated", err, 3825, 7)
	diffRecords(t, "truncated", got, smallAll(t, 6))

	// 64 garbage bytes at 3021, between records 5 and 6: records 1-5, then the error.
	got, err = decodeFile(t, "chf_damaged_garbage.ber")
	wantDecodeError(t, "garbage", err, 3021, 6)
	diffRecords(t, "garbage", got, smallAll(t, 5))
}

func TestFileHeader(t *testing.T) {
	h, err := ParseFileHeader(readTestdata(t, "chf_small_10.cdr"))
	if err != nil {
		t.Fatal(err)
	}
	if h.FileLength != 6230 || h.HeaderLength != 54 || h.HighRelease != 7 || h.HighVersion != 5 ||
		h.LowRelease != 7 || h.LowVersion != 5 || h.CDRCount != 10 || h.Sequence != 1 || h.ClosureReason != 0 ||
		h.LostCDR != 0 || len(h.RouteFilter) != 0 || len(h.PrivateExt) != 0 ||
		!h.HasReleaseExt || h.HighReleaseExt != 6 || h.LowReleaseExt != 6 {
		t.Errorf("small header: %+v", h)
	}
	if s := h.Opened.String(); s != "03-14 08:00 +08:00" {
		t.Errorf("opened %s", s)
	}
	if s := h.LastAppended.String(); s != "03-14 08:05 +08:00" {
		t.Errorf("last appended %s", s)
	}
	if a := h.NodeAddr().String(); a != "10.100.200.113" {
		t.Errorf("node %s", a)
	}

	h, err = ParseFileHeader(readTestdata(t, "chf_free5gc_native_3.cdr"))
	if err != nil {
		t.Fatal(err)
	}
	if h.FileLength != 1297 || h.HeaderLength != 52 || h.CDRCount != 3 || h.HighRelease != 0 || h.HasReleaseExt {
		t.Errorf("native header: %+v", h)
	}
}
