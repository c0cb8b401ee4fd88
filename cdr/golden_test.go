package cdr

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fleetmeter/record"
)

// Golden cases live in testdata/golden/<case>/{input.cdr, expected.jsonl, expected.err}.
// The inputs are built by the test-only encoder from the models below and the expected
// records from the same models by the mapping in doc.go, written independently of the
// decoder (ULI through encoding/json, event ids through hash/fnv). Regenerate with
//
//	go test ./cdr -run TestGolden -update
var update = flag.Bool("update", false, "rewrite testdata/golden from the case models")

// goldenTenants is the tenant map every golden case is decoded with.
var goldenTenants = TenantMap{Default: "golden", Rules: []TenantRule{{Tenant: "iot-co", DNN: "iot.example"}}}

const none = -1 // leave an optional field out

type gContainer struct {
	seq, time     int64 // none: left out
	up, down, ssu uint64
	first, last   time.Time // zero: left out
	rat           int64     // none: left out
	uli           string
	extra         []node
}

type gMUU struct {
	rg    uint32
	cs    []gContainer
	extra []node
}

type gCHF struct {
	nfID      string
	subType   int64
	subData   string
	opening   time.Time
	duration  int64
	lrsn      int64 // none: left out
	dnn       string
	sst       int64 // none: no slice
	sd        []byte
	rat       int64 // none
	uli       string
	muus      []gMUU
	extra     []node // unknown record fields, appended after the known ones
	pduExtra  []node
	outerTag  uint32 // 0: 200
	indef     bool
	lenLenTop int
}

func (c gCHF) node() node {
	kids := []node{intNode(0, 200), str(1, c.nfID), ctx(2, intNode(0, c.subType), str(1, c.subData))}
	var list []node
	for _, m := range c.muus {
		var cs []node
		for _, x := range m.cs {
			var f []node
			if x.time != none {
				f = append(f, intNode(1, x.time))
			}
			f = append(f, uintNode(4, x.up+x.down), uintNode(5, x.up), uintNode(6, x.down), uintNode(7, x.ssu))
			if x.seq != none {
				f = append(f, intNode(9, x.seq))
			}
			var info []node
			if !x.first.IsZero() {
				info = append(info, prim(2, bcd(x.first)))
			}
			if !x.last.IsZero() {
				info = append(info, prim(3, bcd(x.last)))
			}
			if x.uli != "" {
				info = append(info, str(5, x.uli))
			}
			if x.rat != none {
				info = append(info, intNode(7, x.rat))
			}
			if info != nil {
				f = append(f, ctx(11, info...))
			}
			cs = append(cs, seq(append(f, x.extra...)...))
		}
		mk := []node{uintNode(0, uint64(m.rg)), ctx(1, cs...), str(2, "9d3e4f5a-6b7c-4d8e-9f0a-000000000001")}
		list = append(list, seq(append(mk, m.extra...)...))
	}
	kids = append(kids, ctx(5, list...), prim(6, bcd(c.opening)), intNode(7, c.duration), intNode(9, 0))
	if c.lrsn != none {
		kids = append(kids, intNode(11, c.lrsn))
	}
	var pdu []node
	pdu = append(pdu, intNode(0, 4242))
	if c.uli != "" {
		pdu = append(pdu, str(3, c.uli))
	}
	pdu = append(pdu, intNode(6, 5))
	if c.sst != none {
		pdu = append(pdu, ctx(7, intNode(0, c.sst), prim(1, c.sd)))
	}
	if c.rat != none {
		pdu = append(pdu, intNode(12, c.rat))
	}
	pdu = append(pdu, str(13, c.dnn))
	kids = append(kids, ctx(13, append(pdu, c.pduExtra...)...), intNode(27, 4242))
	kids = append(kids, c.extra...)
	tag := c.outerTag
	if tag == 0 {
		tag = 200
	}
	n := ctx(tag, kids...)
	n.lenLen = c.lenLenTop
	if c.indef {
		n = indefAll(n)
	}
	return n
}

func (c gCHF) encode() []byte { return c.node().encode(nil) }

type uliJSON struct {
	Nr *struct {
		Tai  *taiJSON `json:"tai"`
		Ncgi *struct {
			Plmn plmnJSON `json:"plmnId"`
			Cell string   `json:"nrCellId"`
		} `json:"ncgi"`
	} `json:"nrLocation"`
	Eutra *struct {
		Tai  *taiJSON `json:"tai"`
		Ecgi *struct {
			Plmn plmnJSON `json:"plmnId"`
			Cell string   `json:"eutraCellId"`
		} `json:"ecgi"`
	} `json:"eutraLocation"`
	N3ga *struct {
		Tai *taiJSON `json:"n3gppTai"`
	} `json:"n3gaLocation"`
}
type plmnJSON struct{ Mcc, Mnc string }
type taiJSON struct {
	Plmn plmnJSON `json:"plmnId"`
	Tac  string   `json:"tac"`
}

func expectLocation(uli string) (plmn, cell string) {
	var u uliJSON
	if uli == "" || json.Unmarshal([]byte(uli), &u) != nil {
		return "", ""
	}
	var p plmnJSON
	var id string
	var tai *taiJSON
	switch {
	case u.Nr != nil && u.Nr.Ncgi != nil:
		p, id = u.Nr.Ncgi.Plmn, u.Nr.Ncgi.Cell
	case u.Eutra != nil && u.Eutra.Ecgi != nil:
		p, id = u.Eutra.Ecgi.Plmn, u.Eutra.Ecgi.Cell
	case u.Nr != nil:
		tai = u.Nr.Tai
	case u.Eutra != nil:
		tai = u.Eutra.Tai
	case u.N3ga != nil:
		tai = u.N3ga.Tai
	}
	if tai != nil {
		p, id = tai.Plmn, tai.Tac
	}
	if p.Mcc == "" {
		return "", ""
	}
	return p.Mcc + "-" + p.Mnc, p.Mcc + p.Mnc + strings.ToLower(id)
}

var expectRAT = map[int64]string{3: "WLAN", 6: "EUTRA", 8: "NB-IoT", 9: "LTE-M", 10: "NR", 1: "", 7: ""}

// expect maps the model to records; enc is the record's BER (for the hash event id).
func (c gCHF) expect(enc []byte) []record.Usage {
	device := c.subData
	if p := map[int64]string{1: "imsi-", 3: "nai-", 0: "msisdn-"}[c.subType]; p != "" && !strings.HasPrefix(device, p) {
		device = p + device
	}
	tenant := "golden"
	if strings.EqualFold(c.dnn, "iot.example") {
		tenant = "iot-co"
	}
	sd := hex.EncodeToString(c.sd)
	if len(c.sd) == 6 {
		if _, err := hex.DecodeString(string(c.sd)); err == nil {
			sd = strings.ToLower(string(c.sd))
		}
	}
	recID := fmt.Sprint(c.lrsn)
	if c.lrsn == none {
		h := fnv.New64a()
		h.Write(enc)
		recID = fmt.Sprintf("h%016x", h.Sum64())
	}
	var out []record.Usage
	for _, m := range c.muus {
		for pos, x := range m.cs {
			u := record.Usage{Tenant: tenant, Device: device, Source: "cdr", BytesUp: x.up, BytesDown: x.down, Events: x.ssu, RatingGroup: m.rg}
			seqID := fmt.Sprint(x.seq)
			if x.seq == none {
				seqID = fmt.Sprintf("p%d", pos+1)
			}
			u.EventID = fmt.Sprintf("cdr:%s:%s:%d:%s", c.nfID, recID, m.rg, seqID)
			u.StartTime = c.opening.UnixMilli()
			if !x.first.IsZero() {
				u.StartTime = x.first.UnixMilli()
			}
			if x.time != none {
				u.DurationMs = uint64(x.time) * 1000
			}
			u.EndTime = u.StartTime + int64(u.DurationMs)
			if !x.last.IsZero() {
				u.EndTime = x.last.UnixMilli()
			}
			u.PLMN, u.Cell = expectLocation(c.uli)
			if x.uli != "" {
				u.PLMN, u.Cell = expectLocation(x.uli)
			}
			if c.rat != none {
				u.RAT = expectRAT[c.rat]
			}
			if x.rat != none {
				u.RAT = expectRAT[x.rat]
			}
			if c.sst != none {
				u.SliceSST, u.HasSlice, u.SliceSD = uint8(c.sst), true, sd
			}
			out = append(out, u)
		}
	}
	return out
}

const (
	nrULI = `{"nrLocation":{"tai":{"plmnId":{"mcc":"262","mnc":"01"},"tac":"00a1b2"},"ncgi":{"plmnId":{"mcc":"262","mnc":"01"},"nrCellId":"0000ABC01"}}}`
	euULI = `{"eutraLocation":{"tai":{"plmnId":{"mcc":"310","mnc":"410"},"tac":"1a2b"},"ecgi":{"plmnId":{"mcc":"310","mnc":"410"},"eutraCellId":"00B1C2D"},"ageOfLocationInformation":5,"ueLocationTimestamp":"2025-06-01T10:00:00Z","geographicalInformation":"\u0041BC","extra":[1,2,{"tai":{"tac":"zz"}}],"x":null,"y":true,"z":-1.5e3}}`
	tiULI = `{"n3gaLocation":{"n3gppTai":{"plmnId":{"mcc":"208","mnc":"93"},"tac":"000007"},"ueIpv4Addr":"10.1.2.3"}}`
	badUL = `{"nrLocation":{"ncgi":{"plmnId":{"mcc":"262","mnc":"01"},"nrCellId":"0000ABC01"}}` // unbalanced
)

var (
	cet = time.FixedZone("", 3600)
	est = time.FixedZone("", -5*3600)
	ist = time.FixedZone("", 5*3600+30*60)
)

// baseCHF is a complete, ordinary record the cases vary.
func baseCHF(lrsn int64) gCHF {
	return gCHF{
		nfID: "chf-1", subType: 1, subData: "262019876543210", opening: time.Date(2025, 6, 1, 12, 0, 0, 0, cet),
		duration: 600, lrsn: lrsn, dnn: "internet", sst: 1, sd: []byte{0xAB, 0xCD, 0xEF}, rat: 10, uli: nrULI,
		muus: []gMUU{{rg: 100, cs: []gContainer{{seq: 1, time: 600, up: 1000, down: 20000, rat: none}}}},
	}
}

type goldenCase struct {
	name  string
	build func() (input []byte, want []record.Usage, wantErr string)
}

func raw(recs ...gCHF) ([]byte, []record.Usage) {
	var in []byte
	var want []record.Usage
	for _, r := range recs {
		enc := r.encode()
		in = append(in, enc...)
		want = append(want, r.expect(enc)...)
	}
	return in, want
}

func file(mutate func([]byte), recs ...gCHF) ([]byte, []record.Usage) {
	var bodies [][]byte
	var want []record.Usage
	for _, r := range recs {
		enc := r.encode()
		bodies = append(bodies, enc)
		want = append(want, r.expect(enc)...)
	}
	return buildFile(bodies, mutate), want
}

func errf(off int, rec int, msg string) string {
	return fmt.Sprintf("decode cdr: offset %d, record %d: %s", off, rec, msg)
}

var goldenCases = []goldenCase{
	{"indefinite_lengths", func() ([]byte, []record.Usage, string) {
		a, b := baseCHF(1), baseCHF(2)
		a.indef = true
		b.muus = append(b.muus, gMUU{rg: 200, cs: []gContainer{{seq: 1, time: 60, up: 5, down: 6, rat: none}, {seq: 2, time: 60, up: 7, down: 8, rat: none}}})
		b.indef = true
		in, want := raw(a, b)
		return in, want, ""
	}},
	{"multibyte_tags_unknown_fields", func() ([]byte, []record.Usage, string) {
		a := baseCHF(10)
		a.lenLenTop = 4
		a.extra = []node{
			str(31, "high-tag-form context 31"),
			str(12345, "context 12345"),
			{class: classPrivate, cons: true, tag: 300, kids: []node{str(1, "x"), {class: classApplication, tag: 2_000_000, val: []byte{1}}}},
			{class: classApplication, tag: 5, val: []byte("app")},
			{class: classUniversal, tag: 5}, // NULL
			{class: classContext, cons: true, tag: 4, kids: []node{str(0, "triggers, unknown here")}, indef: true},
			{class: classContext, tag: 16, val: []byte("chargingSessionIdentifier"), lenLen: 3},
		}
		a.pduExtra = []node{str(36, "pdu 36"), str(1000, "pdu 1000")}
		a.muus[0].extra = []node{str(99, "muu 99")}
		a.muus[0].cs[0].extra = []node{prim(12, []byte{0xFF}), str(300, "container 300"), ctx(14, str(0, "nspa"))}
		in, want := file(nil, a, baseCHF(11))
		return in, want, ""
	}},
	{"multiple_rating_groups", func() ([]byte, []record.Usage, string) {
		a := baseCHF(4294967295)
		a.opening = time.Date(2025, 12, 31, 22, 30, 0, 0, est) // next year in UTC
		a.muus = []gMUU{
			{rg: 1, cs: []gContainer{
				{seq: 1, time: 30, up: 1 << 32, down: 1<<63 + 5, ssu: 3, rat: none},
				{seq: 2, time: 45, up: 0, down: 1, ssu: 0, rat: 6, uli: euULI,
					first: time.Date(2026, 1, 1, 3, 31, 0, 0, time.UTC), last: time.Date(2026, 1, 1, 9, 2, 30, 0, ist)},
			}},
			{rg: 4294967295, cs: []gContainer{{seq: 7, time: 0, up: 10, down: 10, ssu: 12, rat: 8, first: time.Date(2026, 1, 1, 3, 40, 0, 0, time.UTC)}}},
			{rg: 0, cs: []gContainer{{seq: 1, time: 1, up: 1, down: 1, rat: 9}, {seq: 2, time: 1, up: 2, down: 2, rat: 3}, {seq: 3, time: 1, up: 3, down: 3, rat: 7}}},
		}
		in, want := file(nil, a)
		return in, want, ""
	}},
	{"nai_supi_no_sequence_numbers", func() ([]byte, []record.Usage, string) {
		a := baseCHF(none)
		a.subType, a.subData = 3, "sensor-17@iot.example.com"
		a.dnn, a.sst = "IOT.Example", none
		a.muus[0].cs = []gContainer{{seq: none, time: 5, up: 1, down: 2, rat: none}, {seq: none, time: 5, up: 3, down: 4, rat: none}}
		b := baseCHF(2)
		b.subType, b.subData = 3, "nai-meter-9@utility.example"
		c := baseCHF(3)
		c.subType, c.subData = 0, "4915112345678"
		d := baseCHF(4)
		d.subData = "imsi-262019876543211"
		in, want := raw(a, b, c, d)
		return in, want, ""
	}},
	{"eutra_location", func() ([]byte, []record.Usage, string) {
		a := baseCHF(1)
		a.uli, a.rat = euULI, 6
		b := baseCHF(2)
		b.uli, b.rat = tiULI, 3
		c := baseCHF(3)
		c.uli = badUL
		d := baseCHF(4)
		d.sd = []byte("A0B0C0") // free5gc's ASCII form
		in, want := file(nil, a, b, c, d)
		return in, want, ""
	}},
	{"empty_input", func() ([]byte, []record.Usage, string) { return []byte{}, nil, "" }},
	{"damaged_raw_truncated", func() ([]byte, []record.Usage, string) {
		in, want := raw(baseCHF(1), baseCHF(2))
		third := baseCHF(3).encode()
		off := len(in)
		in = append(in, third[:len(third)/2]...)
		return in, want, errf(off, 3, fmt.Sprintf("length %d exceeds the %d bytes left", len(third)-6, len(third)/2-6)) // 3-octet tag, 3-octet length
	}},
	{"damaged_not_a_chf_record", func() ([]byte, []record.Usage, string) {
		b := baseCHF(2)
		b.outerTag = 201
		in, want := raw(baseCHF(1))
		off := len(in)
		in = append(in, b.encode()...)
		return in, want, errf(off, 2, "not a CHFRecord chargingFunctionRecord [200]: context constructed tag 201")
	}},
	{"damaged_negative_volume", func() ([]byte, []record.Usage, string) {
		in, want := raw(baseCHF(1))
		b := baseCHF(2).encode()
		i := bytes.Index(b, []byte{0x85, 0x02, 0x03, 0xE8}) // dataVolumeUplink 1000
		b[i+2] = 0xF3                                       // now negative
		off := len(in) + i
		in = append(in, b...)
		return in, want, errf(off, 2, "dataVolumeUplink: not a non-negative INTEGER")
	}},
	{"damaged_bad_timestamp", func() ([]byte, []record.Usage, string) {
		in, want := file(nil, baseCHF(1))
		b := baseCHF(2).encode()
		i := bytes.Index(b, []byte{0x86, 0x09, 0x25, 0x06})
		b[i+3] = 0x13 // month 13
		off := len(in) + 5 + i
		bodies := [][]byte{baseCHF(1).encode(), b}
		return buildFile(bodies, nil), want, errf(off, 2, "recordOpeningTime: TimeStamp out of range")
	}},
	{"damaged_per_format", func() ([]byte, []record.Usage, string) {
		in, _ := file(func(b []byte) { b[54+3] = 0x54 }, baseCHF(1)) // format 2, TS 20
		return in, nil, errf(54, 1, "data record format 2 is not BER (1)")
	}},
	{"damaged_cdr_length_mismatch", func() ([]byte, []record.Usage, string) {
		one := baseCHF(1).encode()
		two := append(baseCHF(2).encode(), 0, 0)
		in := buildFile([][]byte{one, two}, nil)
		want := baseCHF(1).expect(one)
		off := 54 + 5 + len(one) + 5 + len(two) - 2
		return in, want, errf(off, 2, fmt.Sprintf("CDR length %d but the record takes %d", len(two), len(two)-2))
	}},
	{"damaged_trailing_bytes", func() ([]byte, []record.Usage, string) {
		in, want := file(nil, baseCHF(1), baseCHF(2))
		n := len(in)
		in = append(in, 0xFF, 0xFF, 0xFF)
		return in, want, errf(n, 3, "3 bytes after the file length the header states")
	}},
	{"damaged_cdr_count", func() ([]byte, []record.Usage, string) {
		in, want := file(func(b []byte) { binary.BigEndian.PutUint32(b[18:], 3) }, baseCHF(1), baseCHF(2))
		return in, want, errf(len(in), 3, "file header counts 3 CDRs, found 2")
	}},
	{"damaged_indefinite_without_eoc", func() ([]byte, []record.Usage, string) {
		in, want := raw(baseCHF(1))
		b := baseCHF(2)
		b.indef = true
		enc := b.encode()
		off := len(in)
		in = append(in, enc[:len(enc)-2]...)
		return in, want, errf(off, 2, "indefinite length without end-of-contents")
	}},
}

func goldenDecoder(t testing.TB) *Decoder {
	d, err := NewDecoder(Config{Tenants: goldenTenants})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func jsonl(recs []record.Usage) []byte {
	var b []byte
	for i := range recs {
		b = append(record.AppendJSON(b, &recs[i]), '\n')
	}
	return b
}

func TestGolden(t *testing.T) {
	root := filepath.Join("testdata", "golden")
	// The committed files are what the models build.
	for _, c := range goldenCases {
		in, want, wantErr := c.build()
		dir := filepath.Join(root, c.name)
		files := map[string][]byte{"input.cdr": in, "expected.jsonl": jsonl(want), "expected.err": []byte(wantErr)}
		if wantErr != "" {
			files["expected.err"] = append(files["expected.err"], '\n')
		}
		for name, content := range files {
			p := filepath.Join(dir, name)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, content, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, content) {
				t.Errorf("%s is stale or missing (%v): run go test ./cdr -run TestGolden -update", p, err)
			}
		}
	}

	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		t.Run(dir.Name(), func(t *testing.T) {
			p := filepath.Join(root, dir.Name())
			in := readFile(t, filepath.Join(p, "input.cdr"))
			d := goldenDecoder(t)
			recs, err := d.Decode(in, nil)
			if got, want := jsonl(recs), readFile(t, filepath.Join(p, "expected.jsonl")); !bytes.Equal(got, want) {
				t.Errorf("records:\n got:\n%s\nwant:\n%s", got, want)
			}
			gotErr := ""
			if err != nil {
				gotErr = err.Error() + "\n"
			}
			if wantErr := string(readFile(t, filepath.Join(p, "expected.err"))); gotErr != wantErr {
				t.Errorf("error:\n got %q\nwant %q", gotErr, wantErr)
			}
		})
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
