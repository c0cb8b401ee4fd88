package record

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/pierrec/lz4/v4"
)

// smallWriter writes a batch as an Arrow IPC stream straight from the records, without
// arrow's builders and ipc.Writer. It was written for batches of a few rows, where those
// were most of what a Kafka message of a CoAP or MQTT collector cost (the builders
// allocate their buffers again for every batch, the writer builds every message's
// flatbuffers through allocations and compares each dictionary with the previous
// batch's); it now writes every batch, LZ4-compressed from minLZ4Rows rows: at the
// pipeline's maximum the rater's rated messages (a few dozen rows each) went through
// arrow's writer, a fifth of the rater's CPU and much of its garbage.
//
// The stream is what ipc.Writer writes: the schema message (arrow's own, written once
// and kept), one DictionaryBatch message per dictionary column in field order with ids
// 0, 1, ... (the ids arrow's writer gives them, which the schema message names), the
// RecordBatch message, the end-of-stream marker. Body buffers are 8-byte aligned; a
// validity bitmap is written only for a column holding nulls (its null count is otherwise
// 0 and readers skip it, as arrow's writer does). Compressed, as arrow's writer with
// ipc.WithLZ4 does it: each non-empty buffer becomes its uncompressed length (int64) and
// one LZ4 frame (64 KiB blocks, no checksum), and each message's RecordBatch names the
// codec. TestSmallWriterMatchesArrow decodes both encoders' output of random batches,
// compressed and not, with arrow's reader and compares them.
type smallWriter struct {
	schema []byte // the schema message, as arrow's writer wrote it
	fb     *flatbuffers.Builder
	n      int      // rows of the batch being written
	body   []byte   // the record batch's body
	nodes  []int64  // length, null count per field
	bufs   []int64  // offset, length per buffer, in the body
	dicts  []dictIn // by dictionary column, in field order
	nd     int      // dictionary columns written so far
	dbody  []byte   // a dictionary message's body, reused

	zw    *lz4.Writer  // nil until a batch is compressed
	zout  appendWriter // where zw writes
	cbody []byte       // a message's compressed body, reused
	cbufs []int64      // its buffers
}

// dictIn is one dictionary column of the batch being written: its distinct values in
// order of first use, and past dictMemoFrom of them an index of those values.
type dictIn struct {
	vals []string
	memo map[string]int32
}

// dictMemoFrom is how many distinct values a dictionary column searches linearly
// before it indexes them in a map: a column's values are few (tenants, sources, zones,
// tariffs), and comparing a handful of strings is cheaper than hashing one.
const dictMemoFrom = 16

func newSmallWriter(schema *arrow.Schema) *smallWriter {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Close(); err != nil { // a fixed schema of ours: cannot fail
		panic("record: writing the arrow schema message: " + err.Error())
	}
	b := buf.Bytes()
	return &smallWriter{schema: bytes.Clone(b[:len(b)-len(eos)]), fb: flatbuffers.NewBuilder(1024)}
}

// eos is the end-of-stream marker: continuation, then a zero metadata length.
var eos = []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}

func (s *smallWriter) begin(n int) {
	s.n, s.nd = n, 0
	s.body, s.nodes, s.bufs = s.body[:0], s.nodes[:0], s.bufs[:0]
}

// buffer ends the body buffer that started at from: records it and pads the body to 8 bytes.
func (s *smallWriter) buffer(from int) { s.body, s.bufs = endBuffer(s.body, s.bufs, from) }

// endBuffer records the buffer of body that started at from in bufs (offset, length) and
// pads body to 8 bytes.
func endBuffer(body []byte, bufs []int64, from int) ([]byte, []int64) {
	bufs = append(bufs, int64(from), int64(len(body)-from))
	for len(body)%8 != 0 {
		body = append(body, 0)
	}
	return body, bufs
}

// field starts a column with nulls null values, and writes its validity bitmap
// (valid(j) for each row) only when it has nulls.
func (s *smallWriter) field(nulls int, valid func(j int) bool) {
	s.nodes = append(s.nodes, int64(s.n), int64(nulls))
	from := len(s.body)
	if nulls > 0 {
		for j := 0; j < s.n; j += 8 {
			var b byte
			for k := j; k < min(j+8, s.n); k++ {
				if valid(k) {
					b |= 1 << (k - j)
				}
			}
			s.body = append(s.body, b)
		}
	}
	s.buffer(from)
}

func (s *smallWriter) strings(at func(j int) string) {
	s.field(0, nil)
	s.body, s.bufs = appendStrings(s.body, s.bufs, s.n, at)
}

// appendStrings appends the offsets and the data buffer of a string array of n values
// to body and their positions to bufs.
func appendStrings(body []byte, bufs []int64, n int, at func(j int) string) ([]byte, []int64) {
	from, off := len(body), 0
	body = binary.LittleEndian.AppendUint32(body, 0)
	for j := range n {
		off += len(at(j))
		body = binary.LittleEndian.AppendUint32(body, uint32(off))
	}
	body, bufs = endBuffer(body, bufs, from)
	from = len(body)
	for j := range n {
		body = append(body, at(j)...)
	}
	return endBuffer(body, bufs, from)
}

// dict writes a dictionary-encoded column: the indices here, the values for the
// column's dictionary message. A row equal to the one before takes its index; otherwise
// the values seen are searched, linearly while they are few (dictMemoFrom).
func (s *smallWriter) dict(at func(j int) string) {
	if s.nd == len(s.dicts) {
		s.dicts = append(s.dicts, dictIn{})
	}
	d := &s.dicts[s.nd]
	s.nd++
	clear(d.vals) // the strings belong to the caller
	d.vals = d.vals[:0]
	clear(d.memo)
	s.field(0, nil)
	from := len(s.body)
	var last string
	k := -1
	for j := range s.n {
		v := at(j)
		if k < 0 || v != last {
			k = d.index(v)
			last = v
		}
		s.body = binary.LittleEndian.AppendUint32(s.body, uint32(k))
	}
	s.buffer(from)
}

// index returns v's position among the column's values, adding it if new.
func (d *dictIn) index(v string) int {
	if len(d.vals) <= dictMemoFrom {
		for k, w := range d.vals {
			if w == v {
				return k
			}
		}
		if len(d.vals) < dictMemoFrom {
			d.vals = append(d.vals, v)
			return len(d.vals) - 1
		}
		if d.memo == nil {
			d.memo = make(map[string]int32)
		}
		for k, w := range d.vals {
			d.memo[w] = int32(k)
		}
	} else if k, ok := d.memo[v]; ok {
		return int(k)
	}
	d.memo[v] = int32(len(d.vals))
	d.vals = append(d.vals, v)
	return len(d.vals) - 1
}

func (s *smallWriter) uint64s(at func(j int) uint64) {
	s.fixed(func(j int) { s.body = binary.LittleEndian.AppendUint64(s.body, at(j)) })
}

func (s *smallWriter) uint32s(at func(j int) uint32) {
	s.fixed(func(j int) { s.body = binary.LittleEndian.AppendUint32(s.body, at(j)) })
}

// fixed writes a column without nulls whose values put(j) appends to the body.
func (s *smallWriter) fixed(put func(j int)) {
	s.field(0, nil)
	from := len(s.body)
	for j := range s.n {
		put(j)
	}
	s.buffer(from)
}

// float64s writes a nullable float64 column; a null's slot holds zero.
func (s *smallWriter) float64s(nulls int, valid func(j int) bool, at func(j int) float64) {
	s.field(nulls, valid)
	from := len(s.body)
	for j := range s.n {
		var v float64
		if valid(j) {
			v = at(j)
		}
		s.body = binary.LittleEndian.AppendUint64(s.body, math.Float64bits(v))
	}
	s.buffer(from)
}

// uint8s writes a nullable uint8 column; a null's slot holds zero.
func (s *smallWriter) uint8s(nulls int, valid func(j int) bool, at func(j int) uint8) {
	s.field(nulls, valid)
	from := len(s.body)
	for j := range s.n {
		var v uint8
		if valid(j) {
			v = at(j)
		}
		s.body = append(s.body, v)
	}
	s.buffer(from)
}

// decimals writes a decimal128 column of values that fit an int64.
func (s *smallWriter) decimals(at func(j int) int64) {
	s.fixed(func(j int) {
		v := at(j)
		s.body = binary.LittleEndian.AppendUint64(s.body, uint64(v))
		s.body = binary.LittleEndian.AppendUint64(s.body, uint64(v>>63))
	})
}

// Message header types and the metadata version of the Arrow format (Message.fbs).
const (
	fbHeaderDictionaryBatch = 2
	fbHeaderRecordBatch     = 3
	fbMetadataV5            = 4
)

// finish appends the stream to dst: schema, dictionaries, the batch, end of stream;
// with compress, every message's body buffers LZ4-compressed.
func (s *smallWriter) finish(dst []byte, compress bool) (out []byte, err error) {
	start := len(dst)
	defer func() {
		if err != nil {
			out = dst[:start] // nothing appended
		}
	}()
	dst = append(dst, s.schema...)
	var nodes [2]int64
	var bufs [6]int64
	for id := range s.nd {
		vals := s.dicts[id].vals
		nodes[0], nodes[1] = int64(len(vals)), 0
		s.dbody = s.dbody[:0]
		var b []int64
		s.dbody, b = appendStrings(s.dbody, append(bufs[:0], 0, 0), len(vals), func(k int) string { return vals[k] })
		body := s.dbody
		if compress {
			if body, b, err = s.compress(body, b); err != nil {
				return dst, err
			}
		}
		dst = s.message(dst, fbHeaderDictionaryBatch, int64(id), int64(len(vals)), nodes[:], b, body, compress)
	}
	body, b := s.body, s.bufs
	if compress {
		if body, b, err = s.compress(body, b); err != nil {
			return dst, err
		}
	}
	dst = s.message(dst, fbHeaderRecordBatch, 0, int64(s.n), s.nodes, b, body, compress)
	return append(dst, eos...), nil
}

// compress returns body with each of its buffers (bufs: offset, length pairs) as arrow's
// LZ4 codec writes one: empty stays empty, else the uncompressed length as an int64 and
// an LZ4 frame; each padded to 8 bytes. The result is valid until the next call.
func (s *smallWriter) compress(body []byte, bufs []int64) ([]byte, []int64, error) {
	if s.zw == nil {
		s.zw = lz4.NewWriter(nil)
		// arrow's writer's settings (ipc/compression.go)
		if err := s.zw.Apply(lz4.ChecksumOption(false), lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
			return nil, nil, err
		}
	}
	s.cbody, s.cbufs = s.cbody[:0], s.cbufs[:0]
	for i := 0; i < len(bufs); i += 2 {
		off, n := bufs[i], bufs[i+1]
		from := len(s.cbody)
		if n > 0 {
			s.zout.b = binary.LittleEndian.AppendUint64(s.cbody, uint64(n))
			s.zw.Reset(&s.zout)
			_, err := s.zw.Write(body[off : off+n])
			if cerr := s.zw.Close(); err == nil {
				err = cerr
			}
			s.cbody, s.zout.b = s.zout.b, nil
			if err != nil {
				return nil, nil, err
			}
		}
		s.cbody, s.cbufs = endBuffer(s.cbody, s.cbufs, from)
	}
	return s.cbody, s.cbufs, nil
}

// message appends one IPC message: continuation, metadata length, the Message
// flatbuffer padded to 8 bytes, the body. nodes and bufs are pairs (length, null count;
// offset, length). A DictionaryBatch carries id; a RecordBatch ignores it. With
// compressed, the batch names LZ4 frames per buffer as its body's codec.
func (s *smallWriter) message(dst []byte, header byte, id, rows int64, nodes, bufs []int64, body []byte, compressed bool) []byte {
	b := s.fb
	b.Reset()
	b.StartVector(16, len(bufs)/2, 8) // RecordBatch.buffers: struct Buffer {offset, length}
	for i := len(bufs) - 2; i >= 0; i -= 2 {
		b.Prep(8, 16)
		b.PrependInt64(bufs[i+1])
		b.PrependInt64(bufs[i])
	}
	bufsV := b.EndVector(len(bufs) / 2)
	b.StartVector(16, len(nodes)/2, 8) // RecordBatch.nodes: struct FieldNode {length, null_count}
	for i := len(nodes) - 2; i >= 0; i -= 2 {
		b.Prep(8, 16)
		b.PrependInt64(nodes[i+1])
		b.PrependInt64(nodes[i])
	}
	nodesV := b.EndVector(len(nodes) / 2)
	var codec flatbuffers.UOffsetT
	if compressed {
		// BodyCompression {codec: LZ4_FRAME, method: BUFFER}: both the schema's
		// defaults (0), so the table is present and empty, as arrow writes it.
		b.StartObject(2)
		codec = b.EndObject()
	}
	b.StartObject(5) // RecordBatch: length, nodes, buffers, compression, variadicBufferCounts
	b.PrependInt64Slot(0, rows, 0)
	b.PrependUOffsetTSlot(1, nodesV, 0)
	b.PrependUOffsetTSlot(2, bufsV, 0)
	if compressed {
		b.PrependUOffsetTSlot(3, codec, 0)
	}
	hdr := b.EndObject()
	if header == fbHeaderDictionaryBatch {
		b.StartObject(3) // DictionaryBatch: id, data, isDelta
		b.PrependInt64Slot(0, id, 0)
		b.PrependUOffsetTSlot(1, hdr, 0)
		hdr = b.EndObject()
	}
	b.StartObject(5) // Message: version, header_type, header, bodyLength, custom_metadata
	b.PrependInt64Slot(3, int64(len(body)), 0)
	b.PrependUOffsetTSlot(2, hdr, 0)
	b.PrependInt16Slot(0, fbMetadataV5, 0)
	b.PrependByteSlot(1, header, 0)
	b.Finish(b.EndObject())
	meta := b.FinishedBytes()
	padded := (len(meta) + 7) &^ 7
	dst = append(dst, 0xff, 0xff, 0xff, 0xff)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(padded))
	dst = append(dst, meta...)
	for range padded - len(meta) {
		dst = append(dst, 0)
	}
	return append(dst, body...)
}

// usage writes the usage columns of recs, whose element i is at(i).
func (s *smallWriter) usage(at func(j int) *Usage) {
	s.strings(func(j int) string { return at(j).EventID })
	s.dict(func(j int) string { return at(j).Tenant })
	s.strings(func(j int) string { return at(j).Device })
	s.dict(func(j int) string { return at(j).Source })
	s.uint64s(func(j int) uint64 { return uint64(at(j).StartTime) })
	s.uint64s(func(j int) uint64 { return uint64(at(j).EndTime) })
	s.uint64s(func(j int) uint64 { return uint64(at(j).ReceivedTime) })
	s.uint64s(func(j int) uint64 { return at(j).BytesUp })
	s.uint64s(func(j int) uint64 { return at(j).BytesDown })
	s.uint64s(func(j int) uint64 { return at(j).DurationMs })
	s.uint64s(func(j int) uint64 { return at(j).Events })
	s.uint32s(func(j int) uint32 { return at(j).RatingGroup })
	s.strings(func(j int) string { return at(j).PLMN })
	s.strings(func(j int) string { return at(j).Cell })
	noPos, noSlice := 0, 0
	for j := range s.n {
		u := at(j)
		if !u.HasPos {
			noPos++
		}
		if !u.HasSlice {
			noSlice++
		}
	}
	hasPos := func(j int) bool { return at(j).HasPos }
	s.float64s(noPos, hasPos, func(j int) float64 { return at(j).Lat })
	s.float64s(noPos, hasPos, func(j int) float64 { return at(j).Lon })
	s.dict(func(j int) string { return at(j).RAT })
	s.uint8s(noSlice, func(j int) bool { return at(j).HasSlice }, func(j int) uint8 { return at(j).SliceSST })
	s.strings(func(j int) string { return at(j).SliceSD })
}

// encodeUsage appends recs as one stream to dst.
func (s *smallWriter) encodeUsage(dst []byte, recs []Usage, compress bool) ([]byte, error) {
	s.begin(len(recs))
	s.usage(func(j int) *Usage { return &recs[j] })
	return s.finish(dst, compress)
}

// encodeRated appends recs as one stream to dst; the amounts were checked.
func (s *smallWriter) encodeRated(dst []byte, recs []Rated, compress bool) ([]byte, error) {
	s.begin(len(recs))
	s.usage(func(j int) *Usage { return &recs[j].Usage })
	s.strings(func(j int) string { return recs[j].RecordID })
	s.dict(func(j int) string { return recs[j].Charge })
	s.dict(func(j int) string { return recs[j].Zone })
	s.dict(func(j int) string { return recs[j].Mobility })
	s.dict(func(j int) string { return recs[j].Tariff })
	s.dict(func(j int) string { return recs[j].TariffVersion })
	s.dict(func(j int) string { return recs[j].Offer })
	s.uint64s(func(j int) uint64 { return recs[j].ActiveDevices })
	s.strings(func(j int) string { return recs[j].Currency })
	s.decimals(func(j int) int64 { return int64(recs[j].Amount) })
	s.uint64s(func(j int) uint64 { return uint64(recs[j].RatedTime) })
	return s.finish(dst, compress)
}
