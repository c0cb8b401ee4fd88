package billing

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

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

// RecordWriter writes rated records in one format. Close ends the stream (Arrow's
// end-of-stream marker, Parquet's footer) without closing the underlying writer.
type RecordWriter interface {
	Write(recs []Exported) error
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
		j.buf = record.AppendRatedJSON(j.buf[:0], &recs[i].Rec)
		j.buf = append(j.buf, '\n')
		if _, err := j.w.Write(j.buf); err != nil {
			return err
		}
	}
	return nil
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
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for i := range recs {
		r := &recs[i].Rec
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
		if err := c.w.Write(c.row[:]); err != nil {
			return err
		}
	}
	return nil
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

// arrowBatch is the most rows per Arrow record batch (Parquet row group).
const arrowBatch = 64 << 10

type arrowWriter struct {
	b   *array.RecordBuilder
	ipc *ipc.Writer
	pq  *pqarrow.FileWriter
}

func newArrowWriter(w io.Writer, parquetOut bool) (*arrowWriter, error) {
	a := &arrowWriter{b: array.NewRecordBuilder(memory.DefaultAllocator, ExportSchema)}
	if !parquetOut {
		a.ipc = ipc.NewWriter(w, ipc.WithSchema(ExportSchema))
		return a, nil
	}
	// No dictionaries: building them (a lookup and an allocation per value in arrow-go)
	// cost five times the rest of the encoding, and Snappy takes most of what they save
	// on the columns whose values repeat.
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(1<<20),
		parquet.WithDictionaryDefault(false))
	pw, err := pqarrow.NewFileWriter(ExportSchema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, fmt.Errorf("billing parquet: %w", err)
	}
	a.pq = pw
	return a, nil
}

func (a *arrowWriter) Write(recs []Exported) error {
	for len(recs) > 0 {
		n := min(len(recs), arrowBatch)
		rec := a.batch(recs[:n])
		var err error
		if a.ipc != nil {
			err = a.ipc.Write(rec)
		} else {
			err = a.pq.WriteBuffered(rec)
		}
		rec.Release()
		if err != nil {
			return fmt.Errorf("billing %s: %w", map[bool]string{true: "arrow", false: "parquet"}[a.ipc != nil], err)
		}
		recs = recs[n:]
	}
	return nil
}

// exportStrings are the string columns of ExportSchema, by index, with their fields.
var exportStrings = []struct {
	col   int
	field func(*record.Rated) string
}{
	{0, func(r *record.Rated) string { return r.EventID }}, {1, func(r *record.Rated) string { return r.Tenant }},
	{2, func(r *record.Rated) string { return r.Device }}, {3, func(r *record.Rated) string { return r.Source }},
	{12, func(r *record.Rated) string { return r.PLMN }}, {13, func(r *record.Rated) string { return r.Cell }},
	{16, func(r *record.Rated) string { return r.RAT }}, {18, func(r *record.Rated) string { return r.SliceSD }},
	{19, func(r *record.Rated) string { return r.RecordID }}, {20, func(r *record.Rated) string { return r.Charge }},
	{21, func(r *record.Rated) string { return r.Zone }}, {22, func(r *record.Rated) string { return r.Mobility }},
	{23, func(r *record.Rated) string { return r.Tariff }}, {24, func(r *record.Rated) string { return r.TariffVersion }},
	{25, func(r *record.Rated) string { return r.Offer }}, {27, func(r *record.Rated) string { return r.Currency }},
}

// batch builds one record batch of recs. String columns are laid out directly (offsets,
// then bytes): the builder's per-value Append was half the encoding.
func (a *arrowWriter) batch(recs []Exported) arrow.RecordBatch {
	a.append(recs)
	cols := make([]arrow.Array, len(ExportSchema.Fields()))
	for _, sc := range exportStrings {
		size := 0
		for i := range recs {
			size += len(sc.field(&recs[i].Rec))
		}
		offsets := make([]int32, len(recs)+1)
		data := make([]byte, 0, size)
		for i := range recs {
			data = append(data, sc.field(&recs[i].Rec)...)
			offsets[i+1] = int32(len(data))
		}
		cols[sc.col] = array.NewStringData(array.NewData(arrow.BinaryTypes.String, len(recs),
			[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets)), memory.NewBufferBytes(data)}, nil, 0, 0))
	}
	for i, f := range a.b.Fields() {
		if cols[i] == nil {
			cols[i] = f.NewArray()
		}
	}
	rec := array.NewRecordBatch(ExportSchema, cols, int64(len(recs)))
	for _, c := range cols {
		c.Release()
	}
	return rec
}

// append appends the columns of recs other than the strings (batch lays those out).
func (a *arrowWriter) append(recs []Exported) {
	fs := a.b.Fields()
	for _, f := range fs {
		if _, ok := f.(*array.StringBuilder); !ok {
			f.Reserve(len(recs))
		}
	}
	u64 := func(i int) *array.Uint64Builder { return fs[i].(*array.Uint64Builder) }
	tsb := func(i int) *array.TimestampBuilder { return fs[i].(*array.TimestampBuilder) }
	lat, lon := fs[14].(*array.Float64Builder), fs[15].(*array.Float64Builder)
	sst := fs[17].(*array.Uint8Builder)
	rg := fs[11].(*array.Uint32Builder)
	amt := fs[28].(*array.Decimal128Builder)
	for i := range recs {
		r := &recs[i].Rec
		tsb(4).UnsafeAppend(arrow.Timestamp(r.StartTime))
		tsb(5).UnsafeAppend(arrow.Timestamp(r.EndTime))
		tsb(6).UnsafeAppend(arrow.Timestamp(r.ReceivedTime))
		u64(7).UnsafeAppend(r.BytesUp)
		u64(8).UnsafeAppend(r.BytesDown)
		u64(9).UnsafeAppend(r.DurationMs)
		u64(10).UnsafeAppend(r.Events)
		rg.UnsafeAppend(r.RatingGroup)
		if r.HasPos {
			lat.UnsafeAppend(r.Lat)
			lon.UnsafeAppend(r.Lon)
		} else {
			lat.AppendNull()
			lon.AppendNull()
		}
		if r.HasSlice {
			sst.UnsafeAppend(r.SliceSST)
		} else {
			sst.AppendNull()
		}
		u64(26).UnsafeAppend(r.ActiveDevices)
		amt.UnsafeAppend(decimal128.FromI64(int64(r.Amount)))
		tsb(29).UnsafeAppend(arrow.Timestamp(r.RatedTime))
	}
}

func (a *arrowWriter) Close() error {
	defer a.b.Release()
	if a.ipc != nil {
		return a.ipc.Close()
	}
	return a.pq.Close()
}
