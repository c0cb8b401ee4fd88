package record

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// randomUsage returns n records drawn from few values per column (so dictionaries repeat
// and differ), with nulls, empty and multi-byte strings, and extreme numbers.
func randomUsage(rng *rand.Rand, n int) []Usage {
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	num := func() uint64 { return []uint64{0, 1, rng.Uint64(), math.MaxUint64}[rng.IntN(4)] }
	out := make([]Usage, n)
	for i := range out {
		u := Usage{
			EventID: strings.Repeat("e", rng.IntN(40)) + string(rune('a'+rng.IntN(26))),
			Tenant:  pick("acme", "", "Zürich ⚡", "t-2"), Device: pick("d-1", "датчик", "", "d-2"),
			Source: pick(SourceCoAP, SourceMQTT, SourceHTTP), StartTime: int64(num()),
			EndTime: int64(num()), ReceivedTime: int64(num()), BytesUp: num(), BytesDown: num(),
			DurationMs: num(), Events: num(), RatingGroup: uint32(num()), PLMN: pick("", "262-01"),
			Cell: pick("", "セル", "cell-1"), RAT: pick("", "NR", "NB-IoT"), SliceSD: pick("", "00a1b2"),
		}
		if rng.IntN(3) > 0 {
			u.Lat, u.Lon, u.HasPos = rng.NormFloat64(), -rng.Float64(), true
		}
		if rng.IntN(2) > 0 {
			u.SliceSST, u.HasSlice = uint8(rng.IntN(256)), true
		}
		out[i] = u
	}
	return out
}

func randomRated(rng *rand.Rand, n int) []Rated {
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	out := make([]Rated, n)
	for i, u := range randomUsage(rng, n) {
		out[i] = Rated{Usage: u, RecordID: pick("r1", "", "ü-🚜"), Charge: pick(ChargeUsage, ChargeDeviceFee),
			Zone: pick("", "eu", "world"), Mobility: pick("", "mobile"), Tariff: pick("t", "タリフ"),
			TariffVersion: pick("1", "2"), Offer: pick("", "o"), ActiveDevices: rng.Uint64(),
			Currency: pick("EUR", ""), Amount: Micros(rng.Int64N(2*maxAmount+1) - maxAmount),
			RatedTime: rng.Int64() - rng.Int64()}
	}
	return out
}

// sameStreams checks that got and want, each one IPC stream, read with arrow's own
// reader to equal schemas and equal record batches.
func sameStreams(t *testing.T, got, want []byte) {
	t.Helper()
	rg, err := ipc.NewReader(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("arrow reader: %v", err)
	}
	defer rg.Release()
	rw, err := ipc.NewReader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Release()
	if !rg.Schema().Equal(rw.Schema()) {
		t.Fatalf("schema %v, want %v", rg.Schema(), rw.Schema())
	}
	for rw.Next() {
		if !rg.Next() {
			t.Fatalf("batch missing: %v", rg.Err())
		}
		if g, w := rg.RecordBatch(), rw.RecordBatch(); !array.RecordEqual(g, w) {
			t.Fatalf("batch differs:\n got %v\nwant %v", g, w)
		}
	}
	if rg.Next() || rg.Err() != nil || rw.Err() != nil {
		t.Fatalf("stream does not end with the batch: %v, %v", rg.Err(), rw.Err())
	}
}

// encodeBoth encodes recs with enc (Encode) and with ref's arrow builders and writer
// (encodeArrow), checks arrow's reader reads the two alike, and returns enc's output and
// the reference's.
func encodeBoth[R any](t *testing.T, recs []R, enc, ref func(dst []byte, recs []R) ([]byte, error)) (got, want []byte) {
	t.Helper()
	got, err := enc([]byte("prefix"), recs)
	if err != nil || string(got[:6]) != "prefix" {
		t.Fatalf("%d rows: %v, or dst not appended to", len(recs), err)
	}
	if want, err = ref(nil, recs); err != nil {
		t.Fatal(err)
	}
	sameStreams(t, got[6:], want)
	return got[6:], want
}

// Batches below minLZ4Rows are written without arrow's writer: arrow's reader must read
// them exactly as it reads what arrow's writer makes of the same records, and so must
// DecodeUsage and DecodeRated, message after message of one encoder.
func TestSmallWriterMatchesArrow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ue, ref := NewUsageEncoder(), newUsageEncoder(false)
	re, rref := NewRatedEncoder(), newRatedEncoder(false)
	for i := range 300 {
		n := 1 + i%(minLZ4Rows-1)
		recs := randomUsage(rng, n)
		got, want := encodeBoth(t, recs, ue.Encode, ref.encodeArrow)
		dg, err := DecodeUsage(got, nil)
		if err != nil {
			t.Fatalf("usage batch %d: %v", i, err)
		}
		dw, err := DecodeUsage(want, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(dg, dw) || !reflect.DeepEqual(dg, recs) {
			t.Fatalf("usage batch %d (%d rows) decoded differently:\n got %+v\nwant %+v", i, n, dg, dw)
		}

		rated := randomRated(rng, n)
		got, _ = encodeBoth(t, rated, re.Encode, rref.encodeArrow)
		rg, err := DecodeRated(got, nil)
		if err != nil {
			t.Fatalf("rated batch %d: %v", i, err)
		}
		if !reflect.DeepEqual(rg, rated) {
			t.Fatalf("rated batch %d (%d rows) decoded differently", i, n)
		}
	}
}

// Batches of minLZ4Rows rows and more are written LZ4-compressed the way arrow's writer
// with ipc.WithLZ4 writes them (and uncompressed without it): arrow's reader and
// DecodeUsage/DecodeRated must read them as they read arrow's own output, whether a
// dictionary holds a few values or more than the linear search takes.
func TestLargeBatchesMatchArrow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, lz4 := range []bool{true, false} {
		ue, ref := newUsageEncoder(lz4), newUsageEncoder(lz4)
		re, rref := newRatedEncoder(lz4), newRatedEncoder(lz4)
		for i, n := range []int{minLZ4Rows, minLZ4Rows + 1, 35, 100, 257, 1000, 5000} {
			recs := randomUsage(rng, n)
			if i%2 == 1 {
				for j := range recs { // many distinct tenants: the dictionary's map
					recs[j].Tenant = fmt.Sprint("tenant-", j%(3*dictMemoFrom))
				}
			}
			got, want := encodeBoth(t, recs, ue.Encode, ref.encodeArrow)
			if lz4 && len(got) >= len(want)+len(want)/8 {
				t.Errorf("usage, %d rows: %d bytes, arrow's writer %d", n, len(got), len(want))
			}
			if dg, err := DecodeUsage(got, nil); err != nil || !reflect.DeepEqual(dg, recs) {
				t.Fatalf("usage, %d rows, lz4 %v: decoded differently (%v)", n, lz4, err)
			}

			rated := randomRated(rng, n)
			got, _ = encodeBoth(t, rated, re.Encode, rref.encodeArrow)
			if dg, err := DecodeRated(got, nil); err != nil || !reflect.DeepEqual(dg, rated) {
				t.Fatalf("rated, %d rows, lz4 %v: decoded differently (%v)", n, lz4, err)
			}
		}
	}
}
