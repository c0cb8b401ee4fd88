package record

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// The schema as docs/design.md lists it, written out by hand.
func TestArrowSchemas(t *testing.T) {
	const dict = "dictionary<values=utf8, indices=int32, ordered=false>"
	const ts = "timestamp[ms, tz=UTC]"
	usage := []string{
		"event_id utf8", "tenant " + dict, "device utf8", "source " + dict,
		"start_time " + ts, "end_time " + ts, "received_time " + ts,
		"bytes_up uint64", "bytes_down uint64", "duration_ms uint64", "events uint64",
		"rating_group uint32", "plmn utf8", "cell utf8", "lat float64 null", "lon float64 null",
		"rat " + dict, "slice_sst uint8 null", "slice_sd utf8",
	}
	rated := append(append([]string(nil), usage...),
		"record_id utf8", "charge "+dict, "zone "+dict, "mobility "+dict, "tariff "+dict,
		"tariff_version "+dict, "offer "+dict, "active_devices uint64", "currency utf8",
		"amount decimal(18, 6)", "rated_time "+ts)
	for _, tc := range []struct {
		s    *arrow.Schema
		name string
		want []string
	}{{UsageArrowSchema(), "usage.v1", usage}, {RatedArrowSchema(), "rated.v1", rated}} {
		var got []string
		for _, f := range tc.s.Fields() {
			line := f.Name + " " + f.Type.String()
			if f.Nullable {
				line += " null"
			}
			got = append(got, line)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s fields:\n got %q\nwant %q", tc.name, got, tc.want)
		}
		if v, _ := tc.s.Metadata().GetValue("schema"); v != tc.name {
			t.Errorf("schema metadata = %q, want %q", v, tc.name)
		}
	}
}

func usageSamples() []Usage {
	return []Usage{
		{
			EventID: "mqtt:acme:meter-1:42", Tenant: "acme", Device: "meter-1", Source: SourceMQTT,
			StartTime: 1764064800000, EndTime: 1764064860000, ReceivedTime: 1764064861234,
			BytesUp: 1200, BytesDown: 34000, DurationMs: 60000, Events: 3, RatingGroup: 10,
			PLMN: "262-01", Cell: "262-01-0x1a2b3c", Lat: 52.520008, Lon: 13.404954, HasPos: true,
			RAT: "NB-IoT", SliceSST: 3, HasSlice: true, SliceSD: "00a1b2",
		},
		// Nulls, empty strings, zero times.
		{EventID: "e2", Tenant: "acme", Device: "meter-2", Source: SourceCoAP},
		// Extremes: max counters, negative time, position at the poles.
		{
			EventID: "cdr:x:imsi-262019876543210:7", Tenant: "farm-coop", Device: "imsi-262019876543210",
			Source: SourceCDR, StartTime: -1, EndTime: math.MaxInt64, ReceivedTime: math.MinInt64,
			BytesUp: math.MaxUint64, BytesDown: math.MaxUint64, DurationMs: math.MaxUint64,
			Events: math.MaxUint64, RatingGroup: math.MaxUint32, Lat: -90, Lon: 180, HasPos: true,
			RAT: "NR", SliceSST: 255, HasSlice: true,
		},
		// Unicode everywhere, slice 0 is a value, not a null.
		{
			EventID: "événement-①", Tenant: "Zürich Energie ⚡", Device: "датчик-7 🚜", Source: SourceHTTP,
			PLMN: "", Cell: "セル", Lat: 0, Lon: 0, HasPos: true, RAT: "", SliceSST: 0, HasSlice: true,
			SliceSD: "ff",
		},
	}
}

func ratedSamples() []Rated {
	us := usageSamples()
	return []Rated{
		{Usage: us[0], RecordID: us[0].EventID, Charge: ChargeUsage, Zone: "eu-home", Mobility: "stationary",
			Tariff: "iot-basic", TariffVersion: "2026-11-01", Offer: "", ActiveDevices: 1200, Currency: "EUR",
			Amount: 2, RatedTime: 1764064900000},
		{Usage: us[1], RecordID: "fee:acme:meter-2:2026-11", Charge: ChargeDeviceFee, Zone: "", Mobility: "",
			Tariff: "iot-basic", TariffVersion: "2026-11-01", ActiveDevices: 0, Currency: "EUR",
			Amount: -1_250_000, RatedTime: 0},
		{Usage: us[2], RecordID: "adj", Charge: ChargeAdjustment, Zone: "roam-world", Mobility: "mobile",
			Tariff: "t", TariffVersion: "v", Offer: "match-day", ActiveDevices: math.MaxUint64, Currency: "USD",
			Amount: maxAmount, RatedTime: math.MaxInt64},
		{Usage: us[3], RecordID: "ü-🚜", Charge: "usage", Zone: "Zone ⚡", Mobility: "nomadic", Tariff: "タリフ",
			TariffVersion: "1", Offer: "öffer", ActiveDevices: 1, Currency: "CHF", Amount: -maxAmount,
			RatedTime: -5},
	}
}

// manyUsage returns n distinct records with varied nulls and repeating tenants.
func manyUsage(n int) []Usage {
	out := make([]Usage, n)
	for i := range out {
		u := Usage{
			EventID: fmt.Sprintf("mqtt:t%d:dev-%d:%d", i%7, i%997, i), Tenant: fmt.Sprintf("tenant-%d", i%7),
			Device: fmt.Sprintf("dev-%d", i%997), Source: []string{SourceMQTT, SourceCoAP, SourceCDR}[i%3],
			StartTime: 1764064800000 + int64(i)*1000, ReceivedTime: 1764064900000 + int64(i),
			BytesUp: uint64(i) * 17, BytesDown: uint64(i) * 131, DurationMs: uint64(i % 60000),
			Events: uint64(i % 5), RatingGroup: uint32(i % 3), PLMN: "262-0" + fmt.Sprint(i%3),
			Cell: fmt.Sprintf("cell-%x", i%4096), RAT: []string{"NR", "EUTRA", "NB-IoT", "LTE-M", ""}[i%5],
		}
		u.EndTime = u.StartTime + int64(i%5)*1000
		if i%4 != 0 {
			u.Lat, u.Lon, u.HasPos = 48+float64(i%100)/100, 11+float64(i%50)/50, true
		}
		if i%3 == 0 {
			u.SliceSST, u.HasSlice, u.SliceSD = uint8(1+i%3), true, fmt.Sprintf("%06x", i%256)
		}
		out[i] = u
	}
	return out
}

func manyRated(n int) []Rated {
	us := manyUsage(n)
	out := make([]Rated, n)
	for i, u := range us {
		out[i] = Rated{Usage: u, RecordID: u.EventID, Charge: ChargeUsage, Zone: fmt.Sprintf("zone-%d", i%4),
			Mobility: []string{"stationary", "nomadic", "mobile"}[i%3], Tariff: "iot-basic",
			TariffVersion: "7", Offer: []string{"", "match"}[i%2], ActiveDevices: uint64(1000 + i%7),
			Currency: "EUR", Amount: Micros(int64(i)*12345 - 5_000_000), RatedTime: 1764065000000 + int64(i)}
	}
	return out
}

func TestUsageRoundTrip(t *testing.T) {
	enc := NewUsageEncoder()
	for _, tc := range []struct {
		name string
		recs []Usage
	}{
		{"samples", usageSamples()},
		{"one", usageSamples()[:1]},
		{"one-null", usageSamples()[1:2]},
		{"empty", nil},
		{"10000", manyUsage(10_000)},
		{"samples-again", usageSamples()}, // the encoder is reused: nothing leaks across calls
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("kafka-value:")
			b, err := enc.Encode(append([]byte(nil), prefix...), tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("Encode did not append to dst")
			}
			head := Usage{EventID: "already-there"}
			got, err := DecodeUsage(b[len(prefix):], []Usage{head})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.recs)+1 || got[0] != head {
				t.Fatalf("decoded %d records (first %+v), want %d after the existing one", len(got), got[0], len(tc.recs))
			}
			for i := range tc.recs {
				if got[i+1] != tc.recs[i] {
					t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i+1], tc.recs[i])
				}
			}
		})
	}
}

func TestRatedRoundTrip(t *testing.T) {
	enc := NewRatedEncoder()
	for _, tc := range []struct {
		name string
		recs []Rated
	}{
		{"samples", ratedSamples()},
		{"one", ratedSamples()[1:2]},
		{"empty", nil},
		{"10000", manyRated(10_000)},
		{"samples-again", ratedSamples()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := enc.Encode(nil, tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeRated(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.recs) {
				t.Fatalf("decoded %d records, want %d", len(got), len(tc.recs))
			}
			for i := range tc.recs {
				if got[i] != tc.recs[i] {
					t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i], tc.recs[i])
				}
			}
		})
	}
}

func TestRatedAmountOutOfRange(t *testing.T) {
	enc := NewRatedEncoder()
	for _, a := range []Micros{maxAmount + 1, -maxAmount - 1, math.MaxInt64, math.MinInt64} {
		r := ratedSamples()[:1]
		r[0].Amount = a
		b, err := enc.Encode([]byte("x"), r)
		if err == nil || !strings.Contains(err.Error(), "decimal(18,6)") {
			t.Errorf("amount %s: err = %v, want decimal(18,6) error", a, err)
		}
		if string(b) != "x" {
			t.Errorf("amount %s: dst changed to %q", a, b)
		}
	}
	// The encoder still works after refusing a batch.
	b, err := enc.Encode(nil, ratedSamples())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeRated(b, nil); err != nil || len(got) != 4 || got[1].Amount != -1_250_000 {
		t.Fatalf("after refusal: %d records, err %v", len(got), err)
	}
}

// The values as a generic Arrow reader sees them, written out by hand: proves the column
// contents, not just that our decoder undoes our encoder.
func TestRatedEncodeSeenByArrowReader(t *testing.T) {
	b, err := NewRatedEncoder().Encode(nil, ratedSamples()[:2])
	if err != nil {
		t.Fatal(err)
	}
	r, err := ipc.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if !r.Next() {
		t.Fatalf("no batch: %v", r.Err())
	}
	rec := r.RecordBatch()
	want := map[string]string{
		"event_id":   `["mqtt:acme:meter-1:42" "e2"]`,
		"tenant":     "{ dictionary: [\"acme\"]\n  indices: [0 0] }",
		"start_time": "[1764064800000 0]",
		"bytes_down": "[34000 0]",
		"lat":        "[52.520008 (null)]",
		"slice_sst":  "[3 (null)]",
		"charge":     "{ dictionary: [\"usage\" \"device_fee\"]\n  indices: [0 1] }",
		"amount":     "[0.000002 -1.250000]",
		"rated_time": "[1764064900000 0]",
	}
	for name, w := range want {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) != 1 {
			t.Fatalf("no column %s", name)
		}
		col := rec.Column(idx[0])
		got := col.String()
		if name == "amount" {
			d := col.(*array.Decimal128)
			got = "[" + d.Value(0).ToString(6) + " " + d.Value(1).ToString(6) + "]"
		}
		if got != w {
			t.Errorf("column %s = %s, want %s", name, got, w)
		}
	}
	if r.Next() {
		t.Error("more than one batch")
	}
}

// A stream from a generic Arrow writer (nullable flags everywhere, as pyarrow writes)
// decodes to the records written out by hand.
func TestDecodeUsageFromGenericWriter(t *testing.T) {
	fields := UsageArrowSchema().Fields()
	for i := range fields {
		fields[i].Nullable = true
	}
	md := UsageArrowSchema().Metadata()
	schema := arrow.NewSchema(fields, &md)
	const rows = `[
	{"event_id":"a","tenant":"acme","device":"d1","source":"mqtt","start_time":1000,"end_time":2000,
	 "received_time":3000,"bytes_up":1,"bytes_down":2,"duration_ms":3,"events":4,"rating_group":5,
	 "plmn":"262-01","cell":"c","lat":1.5,"lon":-2.5,"rat":"NR","slice_sst":null,"slice_sd":""},
	{"event_id":"b","tenant":"beta","device":"d2","source":"cdr","start_time":0,"end_time":0,
	 "received_time":0,"bytes_up":18446744073709551615,"bytes_down":0,"duration_ms":0,"events":0,
	 "rating_group":0,"plmn":"","cell":"","lat":null,"lon":null,"rat":"","slice_sst":2,"slice_sd":"01"}]`
	rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, schema, strings.NewReader(rows))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeUsage(buf.Bytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Usage{
		{EventID: "a", Tenant: "acme", Device: "d1", Source: "mqtt", StartTime: 1000, EndTime: 2000,
			ReceivedTime: 3000, BytesUp: 1, BytesDown: 2, DurationMs: 3, Events: 4, RatingGroup: 5,
			PLMN: "262-01", Cell: "c", Lat: 1.5, Lon: -2.5, HasPos: true, RAT: "NR"},
		{EventID: "b", Tenant: "beta", Device: "d2", Source: "cdr", BytesUp: math.MaxUint64,
			SliceSST: 2, HasSlice: true, SliceSD: "01"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}

	// The same writer with a null in a non-nullable column, or lat without lon.
	for _, bad := range []struct{ from, to, msg string }{
		{`"device":"d2"`, `"device":null`, "column device: 1 nulls"},
		{`"lat":null,"lon":null`, `"lat":null,"lon":3`, "lat and lon differ"},
	} {
		rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, schema,
			strings.NewReader(strings.Replace(rows, bad.from, bad.to, 1)))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		w.Close()
		rec.Release()
		if _, err := DecodeUsage(buf.Bytes(), nil); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%s: err = %v, want %q", bad.to, err, bad.msg)
		}
	}
}

func TestDecodeGarbage(t *testing.T) {
	usage, err := NewUsageEncoder().Encode(nil, usageSamples())
	if err != nil {
		t.Fatal(err)
	}
	rated, err := NewRatedEncoder().Encode(nil, ratedSamples())
	if err != nil {
		t.Fatal(err)
	}
	twoBatches := func() []byte {
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(UsageArrowSchema()))
		rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, UsageArrowSchema(), strings.NewReader("[]"))
		if err != nil {
			t.Fatal(err)
		}
		defer rec.Release()
		w.Write(rec)
		w.Write(rec)
		w.Close()
		return buf.Bytes()
	}()
	otherSchema := func() []byte {
		s := arrow.NewSchema([]arrow.Field{{Name: "event_id", Type: arrow.BinaryTypes.String}}, nil)
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(s))
		w.Close()
		return buf.Bytes()
	}()
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, "missing ipc stream header"},
		{"json", []byte(`{"event_id":"x","tenant":"acme"}`), "missing ipc stream header"},
		{"marker-only", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, "schema"},
		{"huge-metadata-length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2}, "length 2147483647"},
		{"rated-as-usage", rated, `schema metadata "rated.v1", want "usage.v1"`},
		{"other-schema", otherSchema, "schema metadata"},
		{"truncated", usage[:len(usage)-9], ""},
		{"trailing", append(append([]byte(nil), usage...), 0xff), "after end of stream"},
		{"two-batches", twoBatches, "more than one record batch"},
		{"no-batch", otherSchemaNoBatch(t), "no record batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeUsage(tc.in, make([]Usage, 1, 4))
			if err == nil {
				t.Fatalf("no error, decoded %d records", len(got))
			}
			if !errors.Is(err, ErrNotArrow) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrNotArrow mentioning %q", err, tc.want)
			}
			if len(got) != 1 {
				t.Fatalf("into grew to %d on error", len(got))
			}
			if !strings.HasPrefix(err.Error(), "decode usage.v1: ") {
				t.Fatalf("err %q lacks the operation prefix", err)
			}
		})
	}
	if _, err := DecodeRated(usage, nil); err == nil || !strings.Contains(err.Error(), `want "rated.v1"`) {
		t.Fatalf("usage bytes as rated: err = %v", err)
	}
}

func otherSchemaNoBatch(t *testing.T) []byte {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(UsageArrowSchema()))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Prefixes and single-byte corruptions of valid streams must decode or fail cleanly:
// never panic, never allocate without bound. Every byte of the metadata-heavy head is
// corrupted; in the rest, a stride keeps the test fast under -race.
func TestDecodeCorruptedNeverPanics(t *testing.T) {
	usage, err := NewUsageEncoder().Encode(nil, usageSamples()[:2])
	if err != nil {
		t.Fatal(err)
	}
	rated, err := NewRatedEncoder().Encode(nil, ratedSamples()[:2])
	if err != nil {
		t.Fatal(err)
	}
	const head, stride = 400, 31
	decoded := 0
	for _, tc := range []struct {
		valid  []byte
		decode func([]byte) error
	}{
		{usage, func(b []byte) error { _, err := DecodeUsage(b, nil); return err }},
		{rated, func(b []byte) error { _, err := DecodeRated(b, nil); return err }},
	} {
		if err := tc.decode(tc.valid); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(tc.valid); n += stride {
			if tc.decode(tc.valid[:n]) == nil {
				t.Errorf("prefix of %d bytes decoded without error", n)
			}
		}
		buf := make([]byte, len(tc.valid))
		for i := 0; i < len(tc.valid); i++ {
			if i > head && i%stride != 0 {
				continue
			}
			copy(buf, tc.valid)
			buf[i] ^= 0xff
			if tc.decode(buf) == nil {
				decoded++
			}
		}
	}
	t.Logf("%d corrupted inputs still decoded (flipped padding or values)", decoded)
}

func FuzzDecodeUsage(f *testing.F) {
	b, err := NewUsageEncoder().Encode(nil, usageSamples())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeUsage(b, nil)
		if err != nil && len(got) != 0 {
			t.Fatalf("error with %d records", len(got))
		}
	})
}

// One encoder, many messages: small batches (written without arrow's writer) with
// dictionaries the same as the batch before, different, or the same after a large batch
// in between; each message must decode alone to exactly its batch, for usage and for
// rated.
func TestEncoderManyMessages(t *testing.T) {
	all := manyUsage(200)
	var batches [][]Usage
	for _, r := range [][2]int{{0, 1}, {0, 1}, {1, 5}, {1, 5}, {5, 6}, {0, 100}, {1, 5}, {6, 29}, {6, 29}, {30, 31}, {0, 0}, {30, 31}} {
		batches = append(batches, all[r[0]:r[1]])
	}
	batches = append(batches, usageSamples(), usageSamples()[1:2], usageSamples())
	ue := NewUsageEncoder()
	for i, b := range batches {
		msg, err := ue.Encode(nil, b)
		if err != nil {
			t.Fatalf("usage batch %d: %v", i, err)
		}
		got, err := DecodeUsage(msg, nil)
		if err != nil {
			t.Fatalf("usage batch %d (%d rows): %v", i, len(b), err)
		}
		if len(b) == 0 && len(got) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("usage batch %d (%d rows) decoded differently:\n got %+v\nwant %+v", i, len(b), got, b)
		}
	}
	rated := manyRated(60)
	re := NewRatedEncoder()
	for i, r := range [][2]int{{0, 1}, {0, 1}, {1, 4}, {2, 50}, {1, 4}, {4, 5}} {
		b := rated[r[0]:r[1]]
		msg, err := re.Encode(nil, b)
		if err != nil {
			t.Fatalf("rated batch %d: %v", i, err)
		}
		got, err := DecodeRated(msg, nil)
		if err != nil {
			t.Fatalf("rated batch %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("rated batch %d (%d rows) decoded differently", i, len(b))
		}
	}
}
