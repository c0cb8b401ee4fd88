package record

import (
	"bytes"
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
		got, err := ue.Encode([]byte("prefix"), recs)
		if err != nil || string(got[:6]) != "prefix" {
			t.Fatalf("usage batch %d: %v, or dst not appended to", i, err)
		}
		got = got[6:]
		want, err := ref.encodeArrow(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		sameStreams(t, got, want)
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
		got, err = re.Encode(nil, rated)
		if err != nil {
			t.Fatal(err)
		}
		want, err = rref.encodeArrow(nil, rated)
		if err != nil {
			t.Fatal(err)
		}
		sameStreams(t, got, want)
		rg, err := DecodeRated(got, nil)
		if err != nil {
			t.Fatalf("rated batch %d: %v", i, err)
		}
		if !reflect.DeepEqual(rg, rated) {
			t.Fatalf("rated batch %d (%d rows) decoded differently", i, n)
		}
	}
}
