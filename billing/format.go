package billing

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/klauspost/compress/s2"

	"fleetmeter/record"
)

// Format is an export encoding.
type Format int

const (
	JSONLines Format = iota
	CSV
	ArrowStream
	Parquet
)

var formats = []struct {
	name, mime string
	aliases    []string
}{
	JSONLines:   {"jsonl", "application/x-ndjson", []string{"application/jsonl", "application/json", "ndjson"}},
	CSV:         {"csv", "text/csv", nil},
	ArrowStream: {"arrow", "application/vnd.apache.arrow.stream", []string{"arrows"}},
	Parquet:     {"parquet", "application/vnd.apache.parquet", []string{"application/x-parquet"}},
}

func (f Format) String() string { return formats[f].name }

// ContentType is the media type a response in f carries.
func (f Format) ContentType() string {
	if f == CSV {
		return "text/csv; charset=utf-8"
	}
	return formats[f].mime
}

// NegotiateFormat picks the format of format= (a name or media type) or else of Accept
// (first listed that is known); JSON Lines when neither names one. ok is false when
// format= names none.
func NegotiateFormat(param, accept string) (Format, bool) {
	if param != "" {
		return lookupFormat(param)
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if f, ok := lookupFormat(mt); ok {
			return f, true
		}
	}
	return JSONLines, true
}

func lookupFormat(s string) (Format, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, f := range formats {
		if s == f.name || s == f.mime || containsStr(f.aliases, s) {
			return Format(i), true
		}
	}
	return 0, false
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// RecordWriter writes rated records in one format: as records (Write) or as a page's
// columns (WriteColumns), the same bytes for the same records. Close ends the stream
// (Arrow's end-of-stream marker, Parquet's footer) without closing the underlying writer.
type RecordWriter interface {
	Write(recs []Exported) error
	WriteColumns(c *Columns) error
	Close() error
}

// NewRecordWriter returns a writer of f onto w.
func NewRecordWriter(f Format, w io.Writer) (RecordWriter, error) {
	switch f {
	case JSONLines:
		return &jsonlWriter{w: bufio.NewWriterSize(w, 64<<10)}, nil
	case CSV:
		cw := &csvWriter{w: csv.NewWriter(w)}
		return cw, cw.w.Write(csvHeader)
	case ArrowStream:
		return newArrowWriter(w, false)
	case Parquet:
		return newArrowWriter(w, true)
	}
	return nil, fmt.Errorf("billing: unknown format %d", f)
}

type jsonlWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (j *jsonlWriter) Write(recs []Exported) error {
	for i := range recs {
		if err := j.write(&recs[i].Rec); err != nil {
			return err
		}
	}
	return nil
}

// jsonlChunk is how many rows WriteColumns encodes at a time on each of two goroutines.
const jsonlChunk = 4096

// WriteColumns encodes chunks of rows two at a time, the second on another goroutine,
// and writes them in order: the encoding is most of a JSON Lines export's work.
func (j *jsonlWriter) WriteColumns(c *Columns) error {
	var other []byte
	for from := 0; from < c.N; from += 2 * jsonlChunk {
		mid, to := min(c.N, from+jsonlChunk), min(c.N, from+2*jsonlChunk)
		var wg sync.WaitGroup
		if mid < to {
			wg.Go(func() { other = appendJSONLines(other[:0], c, mid, to) })
		}
		j.buf = appendJSONLines(j.buf[:0], c, from, mid)
		wg.Wait()
		if _, err := j.w.Write(j.buf); err != nil {
			return err
		}
		if mid == to {
			break
		}
		if _, err := j.w.Write(other); err != nil {
			return err
		}
	}
	return nil
}

// appendJSONLines appends records [from, to) of c as JSON Lines.
func appendJSONLines(buf []byte, c *Columns, from, to int) []byte {
	var r record.Rated
	for i := from; i < to; i++ {
		c.Record(i, &r)
		buf = record.AppendRatedJSON(buf, &r)
		buf = append(buf, '\n')
	}
	return buf
}

func (j *jsonlWriter) write(r *record.Rated) error {
	j.buf = record.AppendRatedJSON(j.buf[:0], r)
	j.buf = append(j.buf, '\n')
	_, err := j.w.Write(j.buf)
	return err
}

func (j *jsonlWriter) Close() error { return j.w.Flush() }

var csvHeader = []string{
	"event_id", "tenant", "device", "source", "start_time", "end_time", "received_time",
	"bytes_up", "bytes_down", "duration_ms", "events", "rating_group", "plmn", "cell", "lat", "lon",
	"rat", "slice_sst", "slice_sd", "record_id", "charge", "zone", "mobility", "tariff",
	"tariff_version", "offer", "active_devices", "currency", "amount", "rated_time",
}

type csvWriter struct {
	w   *csv.Writer
	row [30]string
}

func (c *csvWriter) Write(recs []Exported) error {
	for i := range recs {
		if err := c.write(&recs[i].Rec); err != nil {
			return err
		}
	}
	return nil
}

func (c *csvWriter) WriteColumns(cols *Columns) error { return cols.Each(c.write) }

func (c *csvWriter) write(r *record.Rated) error {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	lat, lon, sst := "", "", ""
	if r.HasPos {
		lat, lon = strconv.FormatFloat(r.Lat, 'g', -1, 64), strconv.FormatFloat(r.Lon, 'g', -1, 64)
	}
	if r.HasSlice {
		sst = u(uint64(r.SliceSST))
	}
	c.row = [30]string{r.EventID, r.Tenant, r.Device, r.Source, record.FormatTime(r.StartTime), record.FormatTime(r.EndTime), record.FormatTime(r.ReceivedTime),
		u(r.BytesUp), u(r.BytesDown), u(r.DurationMs), u(r.Events), u(uint64(r.RatingGroup)), r.PLMN, r.Cell, lat, lon,
		r.RAT, sst, r.SliceSD, r.RecordID, r.Charge, r.Zone, r.Mobility, r.Tariff,
		r.TariffVersion, r.Offer, u(r.ActiveDevices), r.Currency, r.Amount.String(), record.FormatTime(r.RatedTime)}
	return c.w.Write(c.row[:])
}

func (c *csvWriter) Close() error { c.w.Flush(); return c.w.Error() }

// ExportSchema is the Arrow (and Parquet) schema of an export: the rated record's
// fields, plain (no dictionaries, so every batch stands alone), amount Decimal(18,6).
var ExportSchema = func() *arrow.Schema {
	ts := &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	str, u64 := arrow.BinaryTypes.String, arrow.PrimitiveTypes.Uint64
	f := func(name string, t arrow.DataType) arrow.Field { return arrow.Field{Name: name, Type: t} }
	return arrow.NewSchema([]arrow.Field{
		f("event_id", str), f("tenant", str), f("device", str), f("source", str),
		f("start_time", ts), f("end_time", ts), f("received_time", ts),
		f("bytes_up", u64), f("bytes_down", u64), f("duration_ms", u64), f("events", u64),
		f("rating_group", arrow.PrimitiveTypes.Uint32), f("plmn", str), f("cell", str),
		{Name: "lat", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "lon", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		f("rat", str), {Name: "slice_sst", Type: arrow.PrimitiveTypes.Uint8, Nullable: true}, f("slice_sd", str),
		f("record_id", str), f("charge", str), f("zone", str), f("mobility", str), f("tariff", str),
		f("tariff_version", str), f("offer", str), f("active_devices", u64), f("currency", str),
		f("amount", &arrow.Decimal128Type{Precision: 18, Scale: 6}), f("rated_time", ts),
	}, nil)
}()

// arrowBatch is the most rows per Arrow record batch; parquetBatch per batch handed to the
// Parquet writer (a page of a million rows in one: each call costs a pass over the columns'
// writers) and per row group.
const (
	arrowBatch   = 64 << 10
	parquetBatch = 1 << 20
)

// parquetProps are the export's Parquet writer properties, chosen for the cost of writing
// (measured by BenchmarkRecordWriter) with a file any reader takes (version 1 data pages,
// Snappy):
//   - no dictionaries: building them (a lookup and an allocation per value in arrow-go)
//     cost five times the rest of the encoding, and Snappy takes most of what they save on
//     the columns whose values repeat;
//   - no statistics on the string columns: a comparison of every value with the page's
//     least and greatest was a fifth of the write, and a min/max of ids says little; the
//     numeric columns (times, quantities, amount) keep theirs, for readers that skip row
//     groups by time or amount.
//   - data pages of 96 KiB rather than arrow-go's 1 MiB: its page buffers grow by
//     reallocation to a power of two and are cleared over their whole capacity when
//     given back, so a large page costs more than its bytes (a fifth less CPU for an
//     export page of 200,000 rows at 128 KiB, about the same at 10,000 and at a million;
//     files 5% larger: 49.6 bytes a row against 46.9). 96 KiB rather than 128: a page is
//     cut after the batch of values (1024) that reaches its size, so a 128 KiB page
//     overshoots into a 256 KiB buffer, cleared whole; a 96 KiB one fits 128 KiB with its
//     batch (BenchmarkRecordWriter: encoding 5-10% cheaper).
//   - parquetMem, so the pages' buffers are used again rather than collected (15% less
//     CPU at 200,000 rows a writer);
//   - amount as DECIMAL(18,6) on INT64 (Parquet's own form for a precision up to 18)
//     rather than on 16-byte fixed-length arrays: 5-10% less CPU, 8 bytes a value.
//   - the four timestamps DELTA_BINARY_PACKED (Parquet's encoding for sorted or
//     clustered integers; every current reader takes it): plain, Snappy left them at
//     five eighths of their size; as deltas a page of random start times within an
//     hour is a tenth smaller in all and 5% cheaper to write (8% where they grow
//     steadily, as in BenchmarkRecordWriter).
func parquetProps(mem memory.Allocator) *parquet.WriterProperties {
	opts := []parquet.WriterProperty{parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(parquetBatch),
		parquet.WithDictionaryDefault(false), parquet.WithDataPageSize(96 << 10), parquet.WithAllocator(mem), parquet.WithStoreDecimalAsInteger(true)}
	for _, k := range StrCols {
		opts = append(opts, parquet.WithStatsFor(ExportSchema.Field(k).Name, false))
	}
	for _, f := range ExportSchema.Fields() {
		if f.Type.ID() == arrow.TIMESTAMP {
			opts = append(opts, parquet.WithEncodingFor(f.Name, parquet.Encodings.DeltaBinaryPacked))
		}
	}
	return parquet.NewWriterProperties(opts...)
}

// fastSnappy is arrow-go's Snappy codec with its block encoder swapped for s2's standard
// Snappy mode: arrow-go registers s2's "better" mode, which cost 30% of writing an export
// page (BenchmarkRecordWriter) for a few percent smaller pages. The blocks are plain Snappy
// either way, so every reader takes them; decoding and streams stay arrow-go's.
type fastSnappy struct{ snappyCodec }

type snappyCodec interface {
	compress.StreamingCodec
	compress.ErrorCodec
}

func (fastSnappy) Encode(dst, src []byte) []byte             { return s2.EncodeSnappy(dst, src) }
func (fastSnappy) EncodeLevel(dst, src []byte, _ int) []byte { return s2.EncodeSnappy(dst, src) }

// The codec registry is arrow-go's, for the whole process: only the export writes Parquet.
func init() {
	if c, err := compress.GetCodec(compress.Codecs.Snappy); err == nil {
		if sc, ok := c.(snappyCodec); ok {
			compress.RegisterCodec(compress.Codecs.Snappy, fastSnappy{sc})
		}
	}
}

var parquetMem reuseAllocator

type arrowWriter struct {
	ipc     *ipc.Writer
	pq      *pqarrow.FileWriter
	rows    int              // the most rows per batch: arrowBatch or parquetBatch
	recs    Columns          // Write's records as columns
	offsets [16][]int32      // a batch's string offsets, from 0
	amount  []decimal128.Num // a batch's amounts
	cols    [30]arrow.Array
}

func newArrowWriter(w io.Writer, parquetOut bool) (*arrowWriter, error) {
	a := &arrowWriter{rows: arrowBatch}
	if !parquetOut {
		a.ipc = ipc.NewWriter(w, ipc.WithSchema(ExportSchema))
		return a, nil
	}
	pw, err := pqarrow.NewFileWriter(ExportSchema, w, parquetProps(&parquetMem), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(&parquetMem)))
	if err != nil {
		return nil, fmt.Errorf("billing parquet: %w", err)
	}
	a.pq, a.rows = pw, parquetBatch
	return a, nil
}

func (a *arrowWriter) Write(recs []Exported) error {
	return a.WriteColumns(NewColumns(recs, &a.recs))
}

func (a *arrowWriter) WriteColumns(c *Columns) error {
	for from := 0; from < c.N; from += a.rows {
		rec := a.batch(c, from, min(c.N, from+a.rows))
		var err error
		if a.ipc != nil {
			err = a.ipc.Write(rec)
		} else {
			err = a.pq.Write(rec)
		}
		rec.Release()
		if err != nil {
			return fmt.Errorf("billing %s: %w", map[bool]string{true: "arrow", false: "parquet"}[a.ipc != nil], err)
		}
	}
	return nil
}

// batch lays out rows [from, to) of c as a record batch over c's memory: only the string
// offsets (rebased to 0) and the amounts (widened to Decimal128) are copied. from is a
// multiple of 8, so the validity bitmaps are sliced at a byte.
func (a *arrowWriter) batch(c *Columns, from, to int) arrow.RecordBatch {
	n := to - from
	buf := memory.NewBufferBytes
	for k, col := range StrCols {
		off := c.Str[k].Offsets[from : to+1]
		base := off[0]
		if base != 0 {
			a.offsets[k] = resize(a.offsets[k], n+1)
			for i, o := range off {
				a.offsets[k][i] = o - base
			}
			off = a.offsets[k]
		}
		data := c.Str[k].Data[base:c.Str[k].Offsets[to]]
		a.cols[col] = array.NewStringData(array.NewData(arrow.BinaryTypes.String, n,
			[]*memory.Buffer{nil, buf(arrow.Int32Traits.CastToBytes(off)), buf(data)}, nil, 0, 0))
	}
	for k, col := range U64Cols {
		a.cols[col] = array.MakeFromData(array.NewData(ExportSchema.Field(col).Type, n,
			[]*memory.Buffer{nil, buf(arrow.Uint64Traits.CastToBytes(c.U64[k][from:to]))}, nil, 0, 0))
	}
	a.cols[ColRatingGroup] = array.MakeFromData(array.NewData(arrow.PrimitiveTypes.Uint32, n,
		[]*memory.Buffer{nil, buf(arrow.Uint32Traits.CastToBytes(c.RatingGroup[from:to]))}, nil, 0, 0))
	posValid := c.PosValid[from/8 : (to+7)/8]
	posNulls := n - bitutil.CountSetBits(posValid, 0, n)
	for _, f := range [...]struct {
		col int
		v   []float64
	}{{ColLat, c.Lat}, {ColLon, c.Lon}} {
		a.cols[f.col] = array.MakeFromData(array.NewData(arrow.PrimitiveTypes.Float64, n,
			[]*memory.Buffer{buf(posValid), buf(arrow.Float64Traits.CastToBytes(f.v[from:to]))}, nil, posNulls, 0))
	}
	sliceValid := c.SliceValid[from/8 : (to+7)/8]
	a.cols[ColSliceSST] = array.MakeFromData(array.NewData(arrow.PrimitiveTypes.Uint8, n,
		[]*memory.Buffer{buf(sliceValid), buf(c.SliceSST[from:to])}, nil, n-bitutil.CountSetBits(sliceValid, 0, n), 0))
	a.amount = resize(a.amount, n)
	for i, v := range c.Amount[from:to] {
		a.amount[i] = decimal128.FromI64(v)
	}
	a.cols[ColAmount] = array.MakeFromData(array.NewData(ExportSchema.Field(ColAmount).Type, n,
		[]*memory.Buffer{nil, buf(arrow.Decimal128Traits.CastToBytes(a.amount))}, nil, 0, 0))
	rec := array.NewRecordBatch(ExportSchema, a.cols[:], int64(n))
	for i, col := range a.cols {
		col.Release()
		a.cols[i] = nil
	}
	return rec
}

func (a *arrowWriter) Close() error {
	if a.ipc != nil {
		return a.ipc.Close()
	}
	return a.pq.Close()
}
