package record

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	flatbuffers "github.com/google/flatbuffers/go"
)

// Arrow IPC: every Kafka message on topics usage and rated is one Arrow IPC stream (schema,
// dictionaries, exactly one record batch, end-of-stream marker). The schema travels in
// every message, so a consumer needs no registry and can start at any offset.

// dictString is the type of the low-cardinality string columns. Int32 indices because a
// dictionary's size is bounded by the batch, not by the set of known values: tenants,
// zones and tariffs are data, and an int8 index would fail on the 129th.
var dictString = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}

var (
	tsMillis = arrow.FixedWidthTypes.Timestamp_ms // timestamp[ms, tz=UTC]
	amountDT = &arrow.Decimal128Type{Precision: amountPrecision, Scale: 6}
)

// amountPrecision is the Decimal(18,6) of the ClickHouse column: Micros values beyond
// ±(10^18-1) cannot be written.
const amountPrecision = 18

const maxAmount = 999_999_999_999_999_999

var usageFields = []arrow.Field{
	{Name: "event_id", Type: arrow.BinaryTypes.String},
	{Name: "tenant", Type: dictString},
	{Name: "device", Type: arrow.BinaryTypes.String},
	{Name: "source", Type: dictString},
	{Name: "start_time", Type: tsMillis},
	{Name: "end_time", Type: tsMillis},
	{Name: "received_time", Type: tsMillis},
	{Name: "bytes_up", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "bytes_down", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "duration_ms", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "events", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "rating_group", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "plmn", Type: arrow.BinaryTypes.String},
	{Name: "cell", Type: arrow.BinaryTypes.String},
	{Name: "lat", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "lon", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "rat", Type: dictString},
	{Name: "slice_sst", Type: arrow.PrimitiveTypes.Uint8, Nullable: true},
	{Name: "slice_sd", Type: arrow.BinaryTypes.String},
}

// Column indices of the usage fields; the rated schema starts with the same columns.
const (
	colEventID = iota
	colTenant
	colDevice
	colSource
	colStart
	colEnd
	colReceived
	colBytesUp
	colBytesDown
	colDuration
	colEvents
	colRatingGroup
	colPLMN
	colCell
	colLat
	colLon
	colRAT
	colSliceSST
	colSliceSD
	numUsageCols
)

var ratedExtra = []arrow.Field{
	{Name: "record_id", Type: arrow.BinaryTypes.String},
	{Name: "charge", Type: dictString},
	{Name: "zone", Type: dictString},
	{Name: "mobility", Type: dictString},
	{Name: "tariff", Type: dictString},
	{Name: "tariff_version", Type: dictString},
	{Name: "offer", Type: dictString},
	{Name: "active_devices", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "currency", Type: arrow.BinaryTypes.String},
	{Name: "amount", Type: amountDT},
	{Name: "rated_time", Type: tsMillis},
}

const (
	colRecordID = numUsageCols + iota
	colCharge
	colZone
	colMobility
	colTariff
	colTariffVersion
	colOffer
	colActiveDevices
	colCurrency
	colAmount
	colRatedTime
	numRatedCols
)

var (
	usageSchema = arrow.NewSchema(usageFields, schemaMeta(Schema))
	ratedSchema = arrow.NewSchema(slices.Concat(usageFields, ratedExtra), schemaMeta(RatedSchema))
)

func schemaMeta(name string) *arrow.Metadata {
	md := arrow.NewMetadata([]string{"schema"}, []string{name})
	return &md
}

// UsageArrowSchema returns the Arrow schema of usage.v1. It is shared: do not modify it.
func UsageArrowSchema() *arrow.Schema { return usageSchema }

// RatedArrowSchema returns the Arrow schema of rated.v1. It is shared: do not modify it.
func RatedArrowSchema() *arrow.Schema { return ratedSchema }

// ErrNotArrow is wrapped by every decode error caused by the input bytes (as opposed to a
// bug): callers reject the message.
var ErrNotArrow = errors.New("not a valid arrow ipc stream")

// useLZ4 selects LZ4 frame compression of the body buffers. Measured with bench_test.go
// on the shared 2-core box (go test -bench 'Encode|Decode' ./record/), 1000-row batches:
//
//	usage: 69 B/record with LZ4, 154 without; encode ~0.8 vs ~0.4 µs/record, decode ~0.4 vs ~0.2
//	rated: 101 B/record with LZ4, 242 without
//
// LZ4 halves what Kafka stores and moves for ~0.4 µs/record of encode CPU; the encoder
// still runs above 1M records/s per core, about twice what one Kafka broker takes here
// (BENCHMARKS.md, kfake produce). The
// producer should then leave Kafka compression off for these topics: snappy over LZ4
// costs CPU and saves nothing.
const useLZ4 = true

// minLZ4Rows is the smallest batch the encoder compresses. Below it LZ4 makes the stream
// larger, not smaller (each body buffer gets its own frame header, and a few values give
// the frame nothing to find: usage, 8 rows, 5000 B with LZ4, 4280 B without; even at 16),
// and its per-buffer frame writers are a fifth of what encoding one small batch costs.
// Small batches are what a collector answering devices one by one produces (a CoAP
// request's record waits in its partition's buffer for the ones of other devices). A
// stream states per batch whether its buffers are compressed, so readers take both.
const minLZ4Rows = 24

// batchEncoder holds what an encoder reuses across calls: builders, dictionary memos and
// the allocator.
type batchEncoder struct {
	schema *arrow.Schema
	mem    memory.Allocator
	plain  []array.Builder // by column; nil for dictionary columns
	dicts  []*dictBuilder  // by column; nil for plain columns
	cols   []arrow.Array
	lz4    bool
	perRow int // bytes per row of the last output, to pre-grow dst
	out    appendWriter
	small  *smallWriter // writes every non-empty batch; nil until one comes
}

// smallBatch returns the writer of a batch of n rows, and whether it compresses it; nil
// for an empty batch, which arrow's writer writes.
func (e *batchEncoder) smallBatch(n int) (*smallWriter, bool) {
	if n == 0 {
		return nil, false
	}
	if e.small == nil {
		e.small = newSmallWriter(e.schema)
	}
	return e.small, e.lz4 && n >= minLZ4Rows
}

func newBatchEncoder(schema *arrow.Schema, lz4 bool) batchEncoder {
	mem := memory.NewGoAllocator()
	n := schema.NumFields()
	e := batchEncoder{schema: schema, mem: mem, lz4: lz4,
		plain: make([]array.Builder, n), dicts: make([]*dictBuilder, n), cols: make([]arrow.Array, n)}
	for i, f := range schema.Fields() {
		if f.Type.ID() == arrow.DICTIONARY {
			e.dicts[i] = newDictBuilder(mem)
		} else {
			e.plain[i] = array.NewBuilder(mem, f.Type)
		}
	}
	return e
}

func (e *batchEncoder) reserve(n int) {
	for i, b := range e.plain {
		if b != nil {
			b.Reserve(n)
		} else {
			e.dicts[i].idx.Reserve(n)
		}
	}
}

// encode writes the built batch as one IPC stream appended to dst.
func (e *batchEncoder) encode(dst []byte, n int) ([]byte, error) {
	for i, b := range e.plain {
		if b != nil {
			e.cols[i] = b.NewArray()
		} else {
			e.cols[i] = e.dicts[i].newArray()
		}
	}
	rec := array.NewRecordBatch(e.schema, e.cols, int64(n))
	for i, c := range e.cols {
		c.Release()
		e.cols[i] = nil
	}
	defer rec.Release()
	est := 1024 + n*max(e.perRow, 64)
	start := len(dst)
	e.out.b = slices.Grow(dst, est)
	opts := []ipc.Option{ipc.WithSchema(e.schema), ipc.WithAllocator(e.mem)}
	if e.lz4 && n >= minLZ4Rows {
		opts = append(opts, ipc.WithLZ4())
	}
	w := ipc.NewWriter(&e.out, opts...)
	err := w.Write(rec)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	out := e.out.b
	e.out.b = nil
	if err != nil {
		return dst, fmt.Errorf("encode arrow: %w", err)
	}
	if n > 0 {
		e.perRow = (len(out) - start) / n
	}
	return out, nil
}

// dictBuilder dictionary-encodes one string column. Arrow's BinaryDictionaryBuilder
// copies every appended string to []byte (one allocation per value) and hashes it; here a
// map lookup by string allocates nothing, and the common run of equal values skips even
// that.
type dictBuilder struct {
	idx     *array.Int32Builder
	vals    *array.StringBuilder
	memo    map[string]int32
	last    string
	lastIdx int32
}

func newDictBuilder(mem memory.Allocator) *dictBuilder {
	return &dictBuilder{idx: array.NewInt32Builder(mem), vals: array.NewStringBuilder(mem),
		memo: make(map[string]int32), lastIdx: -1}
}

// append adds s; room for it was reserved.
func (d *dictBuilder) append(s string) {
	if d.lastIdx < 0 || s != d.last {
		k, ok := d.memo[s]
		if !ok {
			k = int32(len(d.memo))
			d.memo[s] = k
			d.vals.Append(s)
		}
		d.last, d.lastIdx = s, k
	}
	d.idx.UnsafeAppend(d.lastIdx)
}

// newArray returns the column built so far and starts an empty dictionary: every message
// is a stream of its own and carries exactly the values it uses.
func (d *dictBuilder) newArray() arrow.Array {
	idx, vals := d.idx.NewArray(), d.vals.NewArray()
	defer idx.Release()
	defer vals.Release()
	clear(d.memo)
	d.last, d.lastIdx = "", -1
	return array.NewDictionaryArray(dictString, idx, vals)
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// usageCols are the typed builders of the usage columns, resolved once per encoder.
type usageCols struct {
	eventID, device, plmn, cell, sliceSD *array.StringBuilder
	tenant, source, rat                  *dictBuilder
	start, end, received                 *array.TimestampBuilder
	bytesUp, bytesDown, duration, events *array.Uint64Builder
	ratingGroup                          *array.Uint32Builder
	lat, lon                             *array.Float64Builder
	sliceSST                             *array.Uint8Builder
}

func newUsageCols(e *batchEncoder) usageCols {
	fs, ds := e.plain, e.dicts
	return usageCols{
		eventID: fs[colEventID].(*array.StringBuilder), tenant: ds[colTenant],
		device: fs[colDevice].(*array.StringBuilder), source: ds[colSource],
		start: fs[colStart].(*array.TimestampBuilder), end: fs[colEnd].(*array.TimestampBuilder),
		received: fs[colReceived].(*array.TimestampBuilder),
		bytesUp:  fs[colBytesUp].(*array.Uint64Builder), bytesDown: fs[colBytesDown].(*array.Uint64Builder),
		duration: fs[colDuration].(*array.Uint64Builder), events: fs[colEvents].(*array.Uint64Builder),
		ratingGroup: fs[colRatingGroup].(*array.Uint32Builder),
		plmn:        fs[colPLMN].(*array.StringBuilder), cell: fs[colCell].(*array.StringBuilder),
		lat: fs[colLat].(*array.Float64Builder), lon: fs[colLon].(*array.Float64Builder),
		rat: ds[colRAT], sliceSST: fs[colSliceSST].(*array.Uint8Builder),
		sliceSD: fs[colSliceSD].(*array.StringBuilder),
	}
}

// append adds u; the caller has reserved room for it in every builder.
func (c *usageCols) append(u *Usage) {
	c.eventID.Append(u.EventID)
	c.tenant.append(u.Tenant)
	c.device.Append(u.Device)
	c.source.append(u.Source)
	c.start.UnsafeAppend(arrow.Timestamp(u.StartTime))
	c.end.UnsafeAppend(arrow.Timestamp(u.EndTime))
	c.received.UnsafeAppend(arrow.Timestamp(u.ReceivedTime))
	c.bytesUp.UnsafeAppend(u.BytesUp)
	c.bytesDown.UnsafeAppend(u.BytesDown)
	c.duration.UnsafeAppend(u.DurationMs)
	c.events.UnsafeAppend(u.Events)
	c.ratingGroup.UnsafeAppend(u.RatingGroup)
	c.plmn.Append(u.PLMN)
	c.cell.Append(u.Cell)
	if u.HasPos {
		c.lat.UnsafeAppend(u.Lat)
		c.lon.UnsafeAppend(u.Lon)
	} else {
		c.lat.UnsafeAppendBoolToBitmap(false)
		c.lon.UnsafeAppendBoolToBitmap(false)
	}
	c.rat.append(u.RAT)
	if u.HasSlice {
		c.sliceSST.UnsafeAppend(u.SliceSST)
	} else {
		c.sliceSST.UnsafeAppendBoolToBitmap(false)
	}
	c.sliceSD.Append(u.SliceSD)
}

// UsageEncoder encodes batches of usage records as Arrow IPC streams. It reuses its
// builders across calls and is not safe for concurrent use.
type UsageEncoder struct {
	e    batchEncoder
	cols usageCols
}

// NewUsageEncoder returns an encoder for usage.v1 batches.
func NewUsageEncoder() *UsageEncoder { return newUsageEncoder(useLZ4) }

func newUsageEncoder(lz4 bool) *UsageEncoder {
	e := &UsageEncoder{e: newBatchEncoder(usageSchema, lz4)}
	e.cols = newUsageCols(&e.e)
	return e
}

// Encode appends one Arrow IPC stream holding recs as one record batch to dst.
func (e *UsageEncoder) Encode(dst []byte, recs []Usage) ([]byte, error) {
	if s, lz4 := e.e.smallBatch(len(recs)); s != nil {
		return s.encodeUsage(dst, recs, lz4)
	}
	return e.encodeArrow(dst, recs)
}

// encodeArrow encodes recs through arrow's builders and ipc.Writer: what an empty batch
// takes, and the reference the tests hold smallWriter to.
func (e *UsageEncoder) encodeArrow(dst []byte, recs []Usage) ([]byte, error) {
	e.e.reserve(len(recs))
	for i := range recs {
		e.cols.append(&recs[i])
	}
	return e.e.encode(dst, len(recs))
}

// RatedEncoder encodes batches of rated records as Arrow IPC streams. It reuses its
// builders across calls and is not safe for concurrent use.
type RatedEncoder struct {
	e                                                batchEncoder
	usage                                            usageCols
	recordID, currency                               *array.StringBuilder
	charge, zone, mobility, tariff, tariffVer, offer *dictBuilder
	activeDevices                                    *array.Uint64Builder
	amount                                           *array.Decimal128Builder
	ratedTime                                        *array.TimestampBuilder
}

// NewRatedEncoder returns an encoder for rated.v1 batches.
func NewRatedEncoder() *RatedEncoder { return newRatedEncoder(useLZ4) }

func newRatedEncoder(lz4 bool) *RatedEncoder {
	e := &RatedEncoder{e: newBatchEncoder(ratedSchema, lz4)}
	fs, ds := e.e.plain, e.e.dicts
	e.usage = newUsageCols(&e.e)
	e.recordID, e.currency = fs[colRecordID].(*array.StringBuilder), fs[colCurrency].(*array.StringBuilder)
	e.charge = ds[colCharge]
	e.zone = ds[colZone]
	e.mobility = ds[colMobility]
	e.tariff = ds[colTariff]
	e.tariffVer = ds[colTariffVersion]
	e.offer = ds[colOffer]
	e.activeDevices = fs[colActiveDevices].(*array.Uint64Builder)
	e.amount = fs[colAmount].(*array.Decimal128Builder)
	e.ratedTime = fs[colRatedTime].(*array.TimestampBuilder)
	return e
}

// Encode appends one Arrow IPC stream holding recs as one record batch to dst. An amount
// outside Decimal(18,6) is an error and nothing is appended.
func (e *RatedEncoder) Encode(dst []byte, recs []Rated) ([]byte, error) {
	for i := range recs {
		if a := recs[i].Amount; a > maxAmount || a < -maxAmount {
			return dst, fmt.Errorf("encode arrow: record %d: amount %s exceeds decimal(18,6)", i, a)
		}
	}
	if s, lz4 := e.e.smallBatch(len(recs)); s != nil {
		return s.encodeRated(dst, recs, lz4)
	}
	return e.encodeArrow(dst, recs)
}

// encodeArrow encodes recs, whose amounts were checked, through arrow's builders and
// ipc.Writer.
func (e *RatedEncoder) encodeArrow(dst []byte, recs []Rated) ([]byte, error) {
	e.e.reserve(len(recs))
	for i := range recs {
		r := &recs[i]
		e.usage.append(&r.Usage)
		e.recordID.Append(r.RecordID)
		e.charge.append(r.Charge)
		e.zone.append(r.Zone)
		e.mobility.append(r.Mobility)
		e.tariff.append(r.Tariff)
		e.tariffVer.append(r.TariffVersion)
		e.offer.append(r.Offer)
		e.activeDevices.UnsafeAppend(r.ActiveDevices)
		e.currency.Append(r.Currency)
		e.amount.UnsafeAppend(decimal128.FromI64(int64(r.Amount)))
		e.ratedTime.UnsafeAppend(arrow.Timestamp(r.RatedTime))
	}
	return e.e.encode(dst, len(recs))
}

// DecodeUsage decodes one usage.v1 Arrow IPC stream (as UsageEncoder writes it) and
// appends its records to into. Strings of one column share one allocation. On error
// into is returned with its original length.
func DecodeUsage(b []byte, into []Usage) ([]Usage, error) {
	r := usageLayout.getReader()
	defer usageLayout.putReader(r)
	if r.read(b) {
		if u, ok := r.usage(); ok {
			out := slices.Grow(into, r.rows)[:len(into)+r.rows]
			for j := range r.rows {
				u.row(j, &out[len(into)+j])
			}
			return out, nil
		}
	}
	return decodeUsageArrow(b, into)
}

// decodeUsageArrow is DecodeUsage through arrow's reader: every stream the direct reader
// does not take, and the errors.
func decodeUsageArrow(b []byte, into []Usage) ([]Usage, error) {
	out := into
	err := readBatch(b, usageSchema, func(rec arrow.RecordBatch) error {
		d := newColDecoder(rec)
		u := d.usage()
		if d.err != nil {
			return d.err
		}
		n := d.n
		out = slices.Grow(into, n)[:len(into)+n]
		for j := range n {
			u.row(j, &out[len(into)+j])
		}
		return nil
	})
	if err != nil {
		return into, err
	}
	return out, nil
}

// DecodeRated decodes one rated.v1 Arrow IPC stream (as RatedEncoder writes it) and
// appends its records to into. On error into is returned with its original length.
func DecodeRated(b []byte, into []Rated) ([]Rated, error) {
	r := ratedLayout.getReader()
	defer ratedLayout.putReader(r)
	if r.read(b) {
		if out, ok := r.rated(into); ok {
			return out, nil
		}
	}
	return decodeRatedArrow(b, into)
}

// decodeRatedArrow is DecodeRated through arrow's reader.
func decodeRatedArrow(b []byte, into []Rated) ([]Rated, error) {
	out := into
	err := readBatch(b, ratedSchema, func(rec arrow.RecordBatch) error {
		d := newColDecoder(rec)
		u := d.usage()
		recordID := d.strings(colRecordID)
		charge := d.dict(colCharge)
		zone := d.dict(colZone)
		mobility := d.dict(colMobility)
		tariff := d.dict(colTariff)
		tariffVer := d.dict(colTariffVersion)
		offer := d.dict(colOffer)
		active := d.uint64s(colActiveDevices)
		currency := d.strings(colCurrency)
		amount := d.amounts(colAmount)
		rated := d.times(colRatedTime)
		if d.err != nil {
			return d.err
		}
		n := d.n
		out = slices.Grow(into, n)[:len(into)+n]
		for j := range n {
			r := &out[len(into)+j]
			u.row(j, &r.Usage)
			r.RecordID = recordID.at(j)
			r.Charge = charge.at(j)
			r.Zone = zone.at(j)
			r.Mobility = mobility.at(j)
			r.Tariff = tariff.at(j)
			r.TariffVersion = tariffVer.at(j)
			r.Offer = offer.at(j)
			r.ActiveDevices = active[j]
			r.Currency = currency.at(j)
			r.Amount = amount[j]
			r.RatedTime = int64(rated[j])
		}
		return nil
	})
	if err != nil {
		return into, err
	}
	return out, nil
}

// readBatch reads the stream in b, checks that its schema is want and that it holds
// exactly one record batch, and calls fn with that batch.
func readBatch(b []byte, want *arrow.Schema, fn func(arrow.RecordBatch) error) (err error) {
	name, _ := want.Metadata().GetValue("schema")
	op := "decode " + name
	// Every stream our encoders write starts with the continuation marker: checking it
	// here keeps arbitrary bytes (JSON, a truncated message) away from the flatbuffer code.
	if len(b) < 8 || b[0] != 0xff || b[1] != 0xff || b[2] != 0xff || b[3] != 0xff {
		return fmt.Errorf("%s: %w: missing ipc stream header", op, ErrNotArrow)
	}
	// Last resort: arrow's array constructors panic on inconsistent buffers, and its
	// reader recovers only part of them.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: %w: %v", op, ErrNotArrow, p)
		}
	}()
	if err := checkSchemaMessage(b); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrNotArrow, err)
	}
	br := bytes.NewReader(b)
	limit := int64(len(b))
	// Through NewMessageReader: ipc.NewReader (arrow-go v18.8.0) builds its message reader
	// without the size limits, so a message length of 2^31 in a later message was a 2 GiB
	// make before the read failed (TestArrowPathBoundsMessageLengths).
	opts := []ipc.Option{ipc.WithAllocator(newBoundedAllocator(len(b))),
		ipc.WithMetadataSizeLimit(limit), ipc.WithBodySizeLimit(limit)}
	r, err := ipc.NewReaderFromMessageReader(ipc.NewMessageReader(br, opts...), opts...)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrNotArrow, err)
	}
	defer r.Release()
	if err := checkSchema(r.Schema(), want); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !r.Next() {
		if err := r.Err(); err != nil {
			return fmt.Errorf("%s: %w: %w", op, ErrNotArrow, err)
		}
		return fmt.Errorf("%s: %w: stream holds no record batch", op, ErrNotArrow)
	}
	if err := fn(r.RecordBatch()); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if r.Next() {
		return fmt.Errorf("%s: %w: stream holds more than one record batch", op, ErrNotArrow)
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrNotArrow, err)
	}
	if br.Len() != 0 {
		return fmt.Errorf("%s: %w: %d bytes after end of stream", op, ErrNotArrow, br.Len())
	}
	return nil
}

// checkSchemaMessage bounds the vectors of the stream's first (schema) message before
// arrow reads it: arrow sizes slices by the vector lengths it finds, so one flipped byte
// there is a multi-gigabyte make and an unrecoverable out-of-memory. Our schemas are flat:
// a field with children is refused here.
func checkSchemaMessage(b []byte) error {
	n := int(int32(binary.LittleEndian.Uint32(b[4:8])))
	if n < 8 || n > len(b)-8 {
		return fmt.Errorf("schema message length %d out of range", n)
	}
	buf := b[8 : 8+n]
	vec := func(t *flatbuffers.Table, slot int) (start flatbuffers.UOffsetT, l int, err error) {
		o := flatbuffers.UOffsetT(t.Offset(flatbuffers.VOffsetT(4 + 2*slot)))
		if o == 0 {
			return 0, 0, nil
		}
		start, l = t.Vector(o), t.VectorLen(o)
		if l < 0 || int(start)+4*l > len(buf) {
			return 0, 0, fmt.Errorf("schema message: vector of %d elements overruns the message", l)
		}
		return start, l, nil
	}
	msg := flatbuffers.Table{Bytes: buf, Pos: flatbuffers.GetUOffsetT(buf)}
	o := flatbuffers.UOffsetT(msg.Offset(8)) // Message.header
	if o == 0 {
		return errors.New("schema message has no header")
	}
	schema := flatbuffers.Table{Bytes: buf, Pos: msg.Indirect(msg.Pos + o)}
	if _, _, err := vec(&schema, 2); err != nil { // Schema.custom_metadata
		return err
	}
	if _, _, err := vec(&schema, 3); err != nil { // Schema.features
		return err
	}
	start, nf, err := vec(&schema, 1) // Schema.fields
	if err != nil {
		return err
	}
	for i := range nf {
		pos := start + flatbuffers.UOffsetT(4*i)
		f := flatbuffers.Table{Bytes: buf, Pos: schema.Indirect(pos)}
		if _, nc, err := vec(&f, 5); err != nil || nc != 0 { // Field.children
			return cmp.Or(err, fmt.Errorf("schema field %d is nested", i))
		}
		if _, _, err := vec(&f, 6); err != nil { // Field.custom_metadata
			return err
		}
	}
	return nil
}

// checkSchema accepts got if it has want's schema name and want's field names and types in
// order. Nullability is not compared: writers such as pyarrow mark every field nullable;
// nulls where want forbids them are refused when the columns are read.
func checkSchema(got, want *arrow.Schema) error {
	wantName, _ := want.Metadata().GetValue("schema")
	if gotName, _ := got.Metadata().GetValue("schema"); gotName != wantName {
		return fmt.Errorf("%w: schema metadata %q, want %q", ErrNotArrow, gotName, wantName)
	}
	if got.NumFields() != want.NumFields() {
		return fmt.Errorf("%w: %d fields, want %d", ErrNotArrow, got.NumFields(), want.NumFields())
	}
	for i := range want.NumFields() {
		g, w := got.Field(i), want.Field(i)
		if g.Name != w.Name || !arrow.TypeEqual(g.Type, w.Type) {
			return fmt.Errorf("%w: field %d is %s %s, want %s %s", ErrNotArrow, i, g.Name, g.Type, w.Name, w.Type)
		}
	}
	return nil
}

// boundedAllocator caps what one decode may allocate. LZ4 frames expand at most ~255
// times, so an honest stream never needs more than 256 times its size; a forged
// uncompressed-length prefix would otherwise make arrow allocate whatever it claims.
type boundedAllocator struct {
	mem  memory.Allocator
	left int
}

func newBoundedAllocator(inputLen int) *boundedAllocator {
	return &boundedAllocator{mem: memory.DefaultAllocator, left: 256*inputLen + 1<<16}
}

func (a *boundedAllocator) take(n int) {
	if n < 0 || n > a.left {
		panic(fmt.Sprintf("allocation of %d bytes exceeds the decode budget", n))
	}
	a.left -= n
}

func (a *boundedAllocator) Allocate(size int) []byte {
	a.take(size)
	return a.mem.Allocate(size)
}

func (a *boundedAllocator) Reallocate(size int, b []byte) []byte {
	if size > len(b) {
		a.take(size - len(b))
	}
	return a.mem.Reallocate(size, b)
}

func (a *boundedAllocator) Free(b []byte) { a.mem.Free(b) }

// colDecoder reads typed columns of one record batch; the first problem sticks in err and
// later calls return empty columns, so a decode checks once at the end.
type colDecoder struct {
	rec arrow.RecordBatch
	n   int
	err error
}

func newColDecoder(rec arrow.RecordBatch) *colDecoder {
	return &colDecoder{rec: rec, n: int(rec.NumRows())}
}

func (d *colDecoder) fail(i int, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: column %s: %s", ErrNotArrow, d.rec.Schema().Field(i).Name, fmt.Sprintf(format, args...))
	}
}

// column returns column i as T after checking its length, that it has no nulls unless
// nullable, and that its validity bitmap covers it.
func column[T arrow.Array](d *colDecoder, i int, nullable bool) (T, bool) {
	var zero T
	if d.err != nil {
		return zero, false
	}
	a, ok := d.rec.Column(i).(T)
	switch {
	case !ok:
		d.fail(i, "unexpected array type %T", d.rec.Column(i))
	case a.Len() != d.n:
		d.fail(i, "%d values for %d rows", a.Len(), d.n)
	case a.NullN() != 0 && !nullable:
		d.fail(i, "%d nulls in a column that allows none", a.NullN())
	case a.NullN() != 0 && len(a.NullBitmapBytes()) < (a.Data().Offset()+d.n+7)/8:
		d.fail(i, "validity bitmap too short")
	default:
		return a, true
	}
	return zero, false
}

// strCol is a string column copied out of arrow memory: one string for all values.
type strCol struct {
	s    string
	offs []int32
}

func (c strCol) at(j int) string { return c.s[c.offs[j]:c.offs[j+1]] }

// strings copies column i into one Go string; rows slice it, so decoded records keep no
// reference to arrow buffers.
func (d *colDecoder) strings(i int) strCol {
	a, ok := column[*array.String](d, i, false)
	if !ok {
		return strCol{offs: make([]int32, d.n+1)}
	}
	return d.copyStrings(i, a)
}

func (d *colDecoder) copyStrings(i int, a *array.String) strCol {
	empty := strCol{offs: make([]int32, d.n+1)}
	if err := a.Validate(); err != nil {
		d.fail(i, "%v", err)
		return empty
	}
	offs := a.ValueOffsets()
	if a.Len() == 0 {
		return empty
	}
	base := offs[0]
	rebased := make([]int32, len(offs))
	for j, o := range offs {
		if o < base || (j > 0 && o < offs[j-1]) {
			d.fail(i, "offsets not ascending at %d", j)
			return empty
		}
		rebased[j] = o - base
	}
	return strCol{s: string(a.ValueBytes()), offs: rebased}
}

// dictCol is a dictionary-encoded string column: distinct values and one index per row.
type dictCol struct {
	vals []string
	idx  []int32
}

func (c dictCol) at(j int) string { return c.vals[c.idx[j]] }

func (d *colDecoder) dict(i int) dictCol {
	a, ok := column[*array.Dictionary](d, i, false)
	empty := dictCol{vals: []string{""}, idx: make([]int32, d.n)}
	if !ok {
		return empty
	}
	dict, ok1 := a.Dictionary().(*array.String)
	idx, ok2 := a.Indices().(*array.Int32)
	if !ok1 || !ok2 {
		d.fail(i, "unexpected dictionary arrays %T, %T", a.Dictionary(), a.Indices())
		return empty
	}
	if d.n == 0 {
		return empty
	}
	if dict.NullN() != 0 {
		d.fail(i, "null in dictionary")
		return empty
	}
	values := d.copyStrings(i, dict)
	if d.err != nil {
		return empty
	}
	vals := make([]string, dict.Len())
	for k := range vals {
		vals[k] = values.at(k)
	}
	ix := idx.Int32Values()
	for j, k := range ix {
		if k < 0 || int(k) >= len(vals) {
			d.fail(i, "dictionary index %d out of range at row %d", k, j)
			return empty
		}
	}
	return dictCol{vals: vals, idx: ix}
}

func (d *colDecoder) times(i int) []arrow.Timestamp {
	if a, ok := column[*array.Timestamp](d, i, false); ok {
		return a.TimestampValues()
	}
	return make([]arrow.Timestamp, d.n)
}

func (d *colDecoder) uint64s(i int) []uint64 {
	if a, ok := column[*array.Uint64](d, i, false); ok {
		return a.Uint64Values()
	}
	return make([]uint64, d.n)
}

func (d *colDecoder) uint32s(i int) []uint32 {
	if a, ok := column[*array.Uint32](d, i, false); ok {
		return a.Uint32Values()
	}
	return make([]uint32, d.n)
}

// float64s returns column i and its validity (nil when every value is set).
func (d *colDecoder) float64s(i int) ([]float64, nullable) {
	if a, ok := column[*array.Float64](d, i, true); ok {
		return a.Float64Values(), a
	}
	return make([]float64, d.n), nil
}

func (d *colDecoder) uint8s(i int) ([]uint8, nullable) {
	if a, ok := column[*array.Uint8](d, i, true); ok {
		return a.Uint8Values(), a
	}
	return make([]uint8, d.n), nil
}

// amounts converts the decimal(18,6) column back to Micros, refusing values beyond it.
func (d *colDecoder) amounts(i int) []Micros {
	out := make([]Micros, d.n)
	a, ok := column[*array.Decimal128](d, i, false)
	if !ok {
		return out
	}
	for j, v := range a.Values() {
		lo := int64(v.LowBits())
		if v.HighBits() != lo>>63 || lo > maxAmount || lo < -maxAmount {
			d.fail(i, "value %s at row %d exceeds decimal(18,6)", v.ToString(6), j)
			return out
		}
		out[j] = Micros(lo)
	}
	return out
}

// usageColumns are the decoded usage columns of one batch.
type usageColumns struct {
	eventID, device, plmn, cell, sliceSD strCol
	tenant, source, rat                  dictCol
	start, end, received                 []arrow.Timestamp
	bytesUp, bytesDown, duration, events []uint64
	ratingGroup                          []uint32
	lat, lon                             []float64
	latA, lonA, sstA                     nullable // validity; nil after a decode error
	sst                                  []uint8
}

func (d *colDecoder) usage() *usageColumns {
	c := &usageColumns{
		eventID: d.strings(colEventID), tenant: d.dict(colTenant), device: d.strings(colDevice),
		source: d.dict(colSource), start: d.times(colStart), end: d.times(colEnd),
		received: d.times(colReceived), bytesUp: d.uint64s(colBytesUp),
		bytesDown: d.uint64s(colBytesDown), duration: d.uint64s(colDuration),
		events: d.uint64s(colEvents), ratingGroup: d.uint32s(colRatingGroup),
		plmn: d.strings(colPLMN), cell: d.strings(colCell), rat: d.dict(colRAT),
		sliceSD: d.strings(colSliceSD),
	}
	c.lat, c.latA = d.float64s(colLat)
	c.lon, c.lonA = d.float64s(colLon)
	c.sst, c.sstA = d.uint8s(colSliceSST)
	if d.err == nil {
		for j := range d.n {
			if valid(c.latA, j) != valid(c.lonA, j) {
				d.fail(colLat, "lat and lon differ in nullness at row %d", j)
				break
			}
		}
	}
	return c
}

// nullable is a column's validity: an arrow array, or the direct reader's bitmap.
type nullable interface {
	NullN() int
	IsValid(j int) bool
}

func valid(a nullable, j int) bool { return a == nil || a.NullN() == 0 || a.IsValid(j) }

func (c *usageColumns) row(j int, u *Usage) {
	*u = Usage{
		EventID: c.eventID.at(j), Tenant: c.tenant.at(j), Device: c.device.at(j),
		Source: c.source.at(j), StartTime: int64(c.start[j]), EndTime: int64(c.end[j]),
		ReceivedTime: int64(c.received[j]), BytesUp: c.bytesUp[j], BytesDown: c.bytesDown[j],
		DurationMs: c.duration[j], Events: c.events[j], RatingGroup: c.ratingGroup[j],
		PLMN: c.plmn.at(j), Cell: c.cell.at(j), RAT: c.rat.at(j), SliceSD: c.sliceSD.at(j),
	}
	if valid(c.latA, j) {
		u.Lat, u.Lon, u.HasPos = c.lat[j], c.lon[j], true
	}
	if valid(c.sstA, j) {
		u.SliceSST, u.HasSlice = c.sst[j], true
	}
}
