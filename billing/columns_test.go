package billing_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"fleetmeter/billing"
	"fleetmeter/record"
)

// TestColumnsWriteAsRecords lays 70,000 records out as Columns (more than one Arrow batch
// and many JSON Lines chunks), reads each back, wants the same bytes from WriteColumns as
// from Write in JSON Lines and CSV, and reads the Arrow stream back field by field.
func TestColumnsWriteAsRecords(t *testing.T) {
	const n = 70_000
	recs := make([]billing.Exported, n)
	for i := range recs {
		id := fmt.Sprintf("ev-%x", i*7919)
		r := record.Rated{
			Usage: record.Usage{EventID: id, Tenant: []string{"acme", "zeta-ü"}[i%2], Device: fmt.Sprintf("d%d", i%13),
				StartTime: 1_790_000_000_000 + int64(i), EndTime: 1_790_000_060_000, ReceivedTime: 1_790_000_061_000,
				BytesUp: uint64(i), RatingGroup: uint32(i % 7), Cell: []string{"", "ecgi-1"}[i%2], RAT: "NR"},
			RecordID: id, Charge: record.ChargeUsage, Tariff: "t", Currency: "EUR", Amount: record.Micros(i*31 - 1_000_000),
			RatedTime: 1_790_000_062_000 + int64(i),
		}
		if i%3 == 0 {
			r.Lat, r.Lon, r.HasPos = float64(i)/1000, -13.4, true
		}
		if i%5 == 0 {
			r.SliceSST, r.HasSlice = uint8(i), true
		}
		recs[i] = billing.Exported{Pos: billing.Position{Seen: int64(i), Tenant: r.Tenant, RecordID: id}, Rec: r}
	}
	c := billing.NewColumns(recs, nil)
	if c.N != n || c.Last != recs[n-1].Pos {
		t.Fatalf("columns of %d records, last %v", c.N, c.Last)
	}
	for i, r := range c.Records() {
		if r != recs[i].Rec {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, r, recs[i].Rec)
		}
	}
	enc := func(f billing.Format, write func(billing.RecordWriter) error) []byte {
		var buf bytes.Buffer
		w, err := billing.NewRecordWriter(f, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := write(w); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for _, f := range []billing.Format{billing.JSONLines, billing.CSV} {
		a := enc(f, func(w billing.RecordWriter) error { return w.WriteColumns(c) })
		b := enc(f, func(w billing.RecordWriter) error { return w.Write(recs) })
		if !bytes.Equal(a, b) {
			t.Errorf("%s: %d bytes from the columns, %d from the records, not the same", f, len(a), len(b))
		}
	}
	rd, err := ipc.NewReader(bytes.NewReader(enc(billing.ArrowStream, func(w billing.RecordWriter) error { return w.WriteColumns(c) })))
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rd.Next() {
		b := rd.RecordBatch()
		id, ten, cell := b.Column(0).(*array.String), b.Column(1).(*array.String), b.Column(13).(*array.String)
		lat, sst, amt := b.Column(billing.ColLat).(*array.Float64), b.Column(billing.ColSliceSST).(*array.Uint8), b.Column(billing.ColAmount).(*array.Decimal128)
		for k := 0; k < int(b.NumRows()); k, i = k+1, i+1 {
			r := &recs[i].Rec
			if id.Value(k) != r.EventID || ten.Value(k) != r.Tenant || cell.Value(k) != r.Cell ||
				lat.IsValid(k) != r.HasPos || r.HasPos && lat.Value(k) != r.Lat || sst.IsValid(k) != r.HasSlice ||
				r.HasSlice && sst.Value(k) != r.SliceSST || amt.Value(k).LowBits() != uint64(r.Amount) {
				t.Fatalf("arrow row %d: %s %s %q lat %v/%v sst %v amount %v, want %+v", i, id.Value(k), ten.Value(k), cell.Value(k),
					lat.IsValid(k), lat.Value(k), sst.IsValid(k), amt.Value(k), *r)
			}
		}
	}
	if err := rd.Err(); err != nil || i != n {
		t.Fatalf("arrow: read %d rows of %d: %v", i, n, err)
	}
	// Parquet, read back by arrow-go's reader, holds the Arrow stream's columns: written as
	// one batch (a page) and as batches of 24,000 rows.
	want := arrowTable(t, enc(billing.ArrowStream, func(w billing.RecordWriter) error { return w.WriteColumns(c) }))
	for _, rows := range []int{0, 24_000} {
		pq := enc(billing.Parquet, func(w billing.RecordWriter) error {
			if rows > 0 {
				billing.SetBatchRows(w, rows)
			}
			return w.WriteColumns(c)
		})
		checkParquet(t, pq, want, recs)
	}
}

// TestParquetWritersShareMemory: Parquet writers running at once reuse each other's given
// back buffers (one allocator for the process); each file still reads back as its own
// records, over several rounds, so a buffer handed out while another writer still used it,
// or not cleared, shows as a wrong column.
func TestParquetWritersShareMemory(t *testing.T) {
	const writers, rounds = 4, 3
	for w := range writers {
		n := 20_000 + w*7_000
		recs := make([]billing.Exported, n)
		for i := range recs {
			id := fmt.Sprintf("w%d-%x", w, i*104729)
			r := record.Rated{
				Usage: record.Usage{EventID: id, Tenant: fmt.Sprintf("t%d", w), Device: fmt.Sprintf("d%d", (i*w)%101),
					StartTime: int64(w)<<40 + int64(i), BytesUp: uint64(i * w), Cell: fmt.Sprintf("c%d", i%(w+3))},
				RecordID: id, Charge: record.ChargeUsage, Amount: record.Micros(i*(w+1) - 5_000), RatedTime: int64(i * w),
			}
			if (i+w)%3 == 0 {
				r.Lat, r.Lon, r.HasPos = float64(i*w), float64(-i), true
			}
			recs[i] = billing.Exported{Rec: r}
		}
		c := billing.NewColumns(recs, nil)
		var buf bytes.Buffer
		aw, err := billing.NewRecordWriter(billing.ArrowStream, &buf)
		if err != nil || aw.WriteColumns(c) != nil || aw.Close() != nil {
			t.Fatal("arrow stream", err)
		}
		want := arrowTable(t, buf.Bytes())
		t.Run(fmt.Sprintf("writer=%d", w), func(t *testing.T) {
			t.Parallel()
			for range rounds {
				var pq bytes.Buffer
				pw, err := billing.NewRecordWriter(billing.Parquet, &pq)
				if err != nil {
					t.Fatal(err)
				}
				billing.SetBatchRows(pw, 8_000+w*1_000)
				if err := pw.WriteColumns(c); err != nil {
					t.Fatal(err)
				}
				if err := pw.Close(); err != nil {
					t.Fatal(err)
				}
				checkParquet(t, pq.Bytes(), want, recs)
			}
		})
	}
}

// arrowTable reads an Arrow IPC stream into a table.
func arrowTable(t *testing.T, stream []byte) arrow.Table {
	t.Helper()
	rd, err := ipc.NewReader(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var batches []arrow.RecordBatch
	for rd.Next() {
		b := rd.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	return array.NewTableFromRecords(billing.ExportSchema, batches)
}

// checkParquet reads pq back and wants the columns of want, and the row groups' statistics
// of start_time to bound the records'.
func checkParquet(t *testing.T, pq []byte, want arrow.Table, recs []billing.Exported) {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(pq))
	if err != nil {
		t.Fatal(err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fr.ReadTable(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if got.NumRows() != want.NumRows() || got.NumCols() != want.NumCols() {
		t.Fatalf("parquet: %d rows of %d columns, want %d of %d", got.NumRows(), got.NumCols(), want.NumRows(), want.NumCols())
	}
	for k := range int(want.NumCols()) {
		if g, w := got.Schema().Field(k), want.Schema().Field(k); g.Name != w.Name || !arrow.TypeEqual(g.Type, w.Type) || g.Nullable != w.Nullable {
			t.Fatalf("parquet field %d: %s %v (nullable %v), want %s %v (nullable %v)", k, g.Name, g.Type, g.Nullable, w.Name, w.Type, w.Nullable)
		}
		if !array.ChunkedEqual(got.Column(k).Data(), want.Column(k).Data()) {
			t.Errorf("parquet column %s differs from the arrow stream's", want.Schema().Field(k).Name)
		}
	}
	start := billing.ExportSchema.FieldIndices("start_time")[0]
	row := 0
	for g := range pf.NumRowGroups() {
		rg := pf.MetaData().RowGroup(g)
		cc, err := rg.ColumnChunk(start)
		if err != nil {
			t.Fatal(err)
		}
		st, err := cc.Statistics()
		if err != nil || st == nil || !st.HasMinMax() {
			t.Fatalf("parquet row group %d: no statistics of start_time (%v)", g, err)
		}
		lo, hi := recs[row].Rec.StartTime, recs[row].Rec.StartTime
		for _, r := range recs[row : row+int(rg.NumRows())] {
			lo, hi = min(lo, r.Rec.StartTime), max(hi, r.Rec.StartTime)
		}
		s := st.(*metadata.Int64Statistics)
		if s.Min() != lo || s.Max() != hi {
			t.Errorf("parquet row group %d: start_time statistics %d..%d, want %d..%d", g, s.Min(), s.Max(), lo, hi)
		}
		// The timestamps as deltas (read back above with every value).
		for k, f := range billing.ExportSchema.Fields() {
			cc, err := rg.ColumnChunk(k)
			if err != nil {
				t.Fatal(err)
			}
			if delta := slices.Contains(cc.Encodings(), parquet.Encodings.DeltaBinaryPacked); delta != (f.Type.ID() == arrow.TIMESTAMP) {
				t.Errorf("parquet row group %d column %s: encodings %v", g, f.Name, cc.Encodings())
			}
		}
		row += int(rg.NumRows())
	}
}
