package record

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/pierrec/lz4/v4"
)

// directReader reads the streams this package's writer makes (and arrow's writer makes of
// the same schemas: the same layout) straight into the decoders' columns, without arrow's
// reader. Arrow's reader parses the schema message again for every message, builds an
// array, its data and buffers per column and a dictionary per dictionary column, each an
// allocation: at the pipeline's maximum that was a fifth of the rater's CPU, and much of
// its garbage.
//
// It takes a stream only in exactly the layout the writers make: the schema message byte
// for byte as they write it, then one DictionaryBatch per dictionary column in field
// order (ids 0, 1, ...), one RecordBatch of at least one row, the end-of-stream marker,
// and nothing after it; buffers plain or LZ4 frames as arrow's writer compresses them.
// It accepts no more than arrow's reader and the column checks after it do (lengths,
// nulls only where the schema allows them, offsets and indexes in range): anything else,
// well-formed or not, it leaves to that path, which says what is wrong. A panic on a
// malformed flatbuffer is such a case. TestDirectReaderMatchesArrow and
// FuzzDirectReaderMatchesArrow hold the two paths to the same records.
type directReader struct {
	l      *streamLayout
	zr     *lz4.Reader
	src    bytes.Reader
	one    [1]byte
	arena  []byte  // decompressed buffers of one stream
	budget int     // what decompressing may still take
	nodes  []int64 // length, null count per field of the message being read
	bufs   [][]byte
	cols   []rawCol
	dicts  []strCol // by dictionary id
	rows   int

	ts  [][]arrow.Timestamp // by column, reused: the values the decoders index
	u64 [][]uint64
	u32 [][]uint32
	f64 [][]float64
	u8  [][]uint8
	amt []Micros
	idx [][]int32
}

// rawCol is one column of the record batch as it sits in the (decompressed) body.
type rawCol struct {
	nulls int
	valid []byte // validity bitmap, when nulls > 0
	data  []byte // fixed: values; string: bytes; dictionary: int32 indexes
	offs  []byte // string: int32 offsets
}

// colKind is how a column's buffers are laid out.
type colKind uint8

const (
	kindFixed  colKind = iota // validity, values
	kindString                // validity, int32 offsets, bytes
	kindDict                  // validity, int32 indexes; values in a DictionaryBatch
)

type colSpec struct {
	kind     colKind
	width    int // bytes per value of a fixed column
	nullable bool
}

// streamLayout is what the direct reader expects of one schema's streams.
type streamLayout struct {
	schema []byte // the stream's first message, as the writers write it
	cols   []colSpec
	nbufs  int // buffers of the record batch
	ndict  int
	pool   sync.Pool // *directReader
}

func newStreamLayout(s *arrow.Schema) *streamLayout {
	l := &streamLayout{schema: newSmallWriter(s).schema}
	for _, f := range s.Fields() {
		c := colSpec{nullable: f.Nullable}
		switch t := f.Type.(type) {
		case *arrow.DictionaryType:
			c.kind, l.ndict, l.nbufs = kindDict, l.ndict+1, l.nbufs+2
		case *arrow.StringType:
			c.kind, l.nbufs = kindString, l.nbufs+3
		case arrow.FixedWidthDataType:
			c.kind, c.width, l.nbufs = kindFixed, t.BitWidth()/8, l.nbufs+2
		default:
			panic("record: no direct reading of " + f.Type.String())
		}
		l.cols = append(l.cols, c)
	}
	l.pool.New = func() any {
		n := len(l.cols)
		return &directReader{l: l, cols: make([]rawCol, n), ts: make([][]arrow.Timestamp, n),
			u64: make([][]uint64, n), u32: make([][]uint32, n), f64: make([][]float64, n), u8: make([][]uint8, n),
			idx: make([][]int32, n)}
	}
	return l
}

var (
	usageLayout = newStreamLayout(usageSchema)
	ratedLayout = newStreamLayout(ratedSchema)
)

// getReader returns a reader of l's streams; put it back with putReader once the decoded
// records no longer need its columns.
func (l *streamLayout) getReader() *directReader { return l.pool.Get().(*directReader) }

func (l *streamLayout) putReader(r *directReader) {
	clear(r.bufs)
	clear(r.cols)
	clear(r.dicts)
	r.src.Reset(nil)
	l.pool.Put(r)
}

// read parses b into r's columns; false when b is not a stream the direct reader takes.
func (r *directReader) read(b []byte) (ok bool) {
	defer func() {
		if recover() != nil { // a malformed flatbuffer: arrow's reader will say so
			ok = false
		}
	}()
	l := r.l
	if !bytes.HasPrefix(b, l.schema) {
		return false
	}
	pos := len(l.schema)
	// Half of arrow's path's budget (newBoundedAllocator): whatever this reader takes
	// stays within what that path allows.
	r.budget, r.arena = 128*len(b)+1<<15, r.arena[:0]
	r.dicts = r.dicts[:0]
	for id := range l.ndict {
		hdr, body, next, ok := message(b, pos, fbHeaderDictionaryBatch)
		// DictionaryBatch: id, data, isDelta
		if !ok || hdr.GetInt64Slot(4, 0) != int64(id) || hdr.GetBoolSlot(8, false) {
			return false
		}
		o := flatbuffers.UOffsetT(hdr.Offset(6))
		if o == 0 {
			return false
		}
		k, ok := r.batch(flatbuffers.Table{Bytes: hdr.Bytes, Pos: hdr.Indirect(hdr.Pos + o)}, body, 1, 3)
		if !ok || r.nodes[0] != int64(k) || r.nodes[1] != 0 {
			return false
		}
		var c rawCol
		if !c.strings(k, r.bufs[1], r.bufs[2]) {
			return false
		}
		r.dicts = append(r.dicts, c.strCol(k))
		pos = next
	}
	hdr, body, next, ok := message(b, pos, fbHeaderRecordBatch)
	if !ok {
		return false
	}
	n, ok := r.batch(hdr, body, len(l.cols), l.nbufs)
	if !ok || n < 1 || !bytes.Equal(b[next:], eos) {
		return false
	}
	r.rows = n
	bi := 0
	for i, c := range l.cols {
		length, nulls := r.nodes[2*i], r.nodes[2*i+1]
		if length != int64(n) || nulls < 0 || nulls > length || (nulls > 0 && !c.nullable) {
			return false
		}
		col := rawCol{nulls: int(nulls)}
		if nulls > 0 {
			if len(r.bufs[bi]) < (n+7)/8 {
				return false
			}
			col.valid = r.bufs[bi]
		}
		switch c.kind {
		case kindFixed:
			if col.data = r.bufs[bi+1]; len(col.data) < n*c.width {
				return false
			}
			bi += 2
		case kindDict:
			if col.data = r.bufs[bi+1]; len(col.data) < 4*n {
				return false
			}
			bi += 2
		case kindString:
			if !col.strings(n, r.bufs[bi+1], r.bufs[bi+2]) {
				return false
			}
			bi += 3
		}
		r.cols[i] = col
	}
	return true
}

// message reads the IPC message at b[pos:] whose header is of type want: the header
// table, the body, and where the next message starts.
func message(b []byte, pos int, want byte) (hdr flatbuffers.Table, body []byte, next int, ok bool) {
	if len(b)-pos < 8 || binary.LittleEndian.Uint32(b[pos:]) != 0xffffffff {
		return hdr, nil, 0, false
	}
	n := int(int32(binary.LittleEndian.Uint32(b[pos+4:])))
	if n < 8 || n > len(b)-pos-8 {
		return hdr, nil, 0, false
	}
	meta := b[pos+8 : pos+8+n]
	msg := flatbuffers.Table{Bytes: meta, Pos: flatbuffers.GetUOffsetT(meta)}
	// Message: version, header_type, header, bodyLength, custom_metadata
	if msg.GetInt16Slot(4, 0) != fbMetadataV5 || msg.GetByteSlot(6, 0) != want || msg.Offset(12) != 0 {
		return hdr, nil, 0, false
	}
	o := flatbuffers.UOffsetT(msg.Offset(8))
	if o == 0 {
		return hdr, nil, 0, false
	}
	start := pos + 8 + n
	size := msg.GetInt64Slot(10, 0)
	if size < 0 || size > int64(len(b)-start) {
		return hdr, nil, 0, false
	}
	return flatbuffers.Table{Bytes: meta, Pos: msg.Indirect(msg.Pos + o)}, b[start : start+int(size)], start + int(size), true
}

// batch reads a RecordBatch table with nodes field nodes and nbufs buffers into r.nodes
// and r.bufs (decompressed when the batch says so) and returns its rows.
func (r *directReader) batch(rb flatbuffers.Table, body []byte, nodes, nbufs int) (int, bool) {
	// RecordBatch: length, nodes, buffers, compression, variadicBufferCounts
	rows := rb.GetInt64Slot(4, 0)
	if rows < 0 || rows > math.MaxInt32 || rb.Offset(12) != 0 {
		return 0, false
	}
	compressed := false
	if o := flatbuffers.UOffsetT(rb.Offset(10)); o != 0 {
		c := flatbuffers.Table{Bytes: rb.Bytes, Pos: rb.Indirect(rb.Pos + o)}
		if c.GetInt8Slot(4, 0) != 0 || c.GetInt8Slot(6, 0) != 0 { // LZ4_FRAME, BUFFER
			return 0, false
		}
		compressed = true
	}
	nv, ok := structs(rb, 6, nodes)
	if !ok {
		return 0, false
	}
	r.nodes = r.nodes[:0]
	for i := range 2 * nodes {
		r.nodes = append(r.nodes, int64(binary.LittleEndian.Uint64(nv[8*i:])))
	}
	bv, ok := structs(rb, 8, nbufs)
	if !ok {
		return 0, false
	}
	r.bufs = r.bufs[:0]
	for i := range nbufs {
		off, size := int64(binary.LittleEndian.Uint64(bv[16*i:])), int64(binary.LittleEndian.Uint64(bv[16*i+8:]))
		if off < 0 || size < 0 || off > int64(len(body)) || size > int64(len(body))-off {
			return 0, false
		}
		buf := body[off : off+size]
		if compressed {
			if buf, ok = r.decompress(buf); !ok {
				return 0, false
			}
		}
		r.bufs = append(r.bufs, buf)
	}
	return int(rows), true
}

// structs returns the bytes of the vector of n 16-byte structs at vtable offset slot of t.
func structs(t flatbuffers.Table, slot flatbuffers.VOffsetT, n int) ([]byte, bool) {
	o := flatbuffers.UOffsetT(t.Offset(slot))
	if o == 0 || t.VectorLen(o) != n {
		return nil, false
	}
	start := int(t.Vector(o))
	if start < 0 || start+16*n > len(t.Bytes) {
		return nil, false
	}
	return t.Bytes[start : start+16*n], true
}

// decompress returns buffer b as arrow's LZ4 codec wrote it: empty; its uncompressed
// length, then an LZ4 frame of exactly that length; or -1, then the bytes as they are.
func (r *directReader) decompress(b []byte) ([]byte, bool) {
	if len(b) == 0 {
		return b, true
	}
	if len(b) < 8 {
		return nil, false
	}
	n := int64(binary.LittleEndian.Uint64(b))
	if n == -1 {
		return b[8:], true
	}
	if n < 0 || n > int64(r.budget) {
		return nil, false
	}
	r.budget -= int(n)
	if r.zr == nil {
		r.zr = lz4.NewReader(nil)
	}
	// Earlier buffers keep the array they were decompressed into if this one grows it.
	from := len(r.arena)
	r.arena = slices.Grow(r.arena, int(n))[:from+int(n)]
	dst := r.arena[from:]
	r.src.Reset(b[8:])
	r.zr.Reset(&r.src)
	if _, err := io.ReadFull(r.zr, dst); err != nil {
		return nil, false
	}
	if k, err := r.zr.Read(r.one[:]); k != 0 || err != io.EOF {
		return nil, false // more than the length said
	}
	return dst, true
}

// strings checks a string column of n values: offsets within data and not descending.
func (c *rawCol) strings(n int, offs, data []byte) bool {
	if len(offs) < 4*(n+1) {
		return false
	}
	prev := int32(binary.LittleEndian.Uint32(offs))
	if prev < 0 {
		return false
	}
	for j := 1; j <= n; j++ {
		o := int32(binary.LittleEndian.Uint32(offs[4*j:]))
		if o < prev {
			return false
		}
		prev = o
	}
	if int(prev) > len(data) {
		return false
	}
	c.offs, c.data = offs, data
	return true
}

// strCol copies the checked string column of n values out of the stream.
func (c *rawCol) strCol(n int) strCol {
	base := int32(binary.LittleEndian.Uint32(c.offs))
	end := int32(binary.LittleEndian.Uint32(c.offs[4*n:]))
	s := strCol{s: string(c.data[base:end]), offs: make([]int32, n+1)}
	for j := range s.offs {
		s.offs[j] = int32(binary.LittleEndian.Uint32(c.offs[4*j:])) - base
	}
	return s
}

// dict returns dictionary column i, its dictionary the next of the stream's; ok false
// when an index is out of range.
func (r *directReader) dict(i, id int) (dictCol, bool) {
	c := &r.cols[i]
	vals := make([]string, len(r.dicts[id].offs)-1)
	for k := range vals {
		vals[k] = r.dicts[id].at(k)
	}
	ix := slices.Grow(r.idx[i][:0], r.rows)[:r.rows]
	r.idx[i] = ix
	for j := range ix {
		k := int32(binary.LittleEndian.Uint32(c.data[4*j:]))
		if k < 0 || int(k) >= len(vals) {
			return dictCol{}, false
		}
		ix[j] = k
	}
	return dictCol{vals: vals, idx: ix}, true
}

// fixed decodes fixed column i into the reused slice *into, get reading one value.
func fixed[T any](r *directReader, into *[]T, i, width int, get func([]byte) T) []T {
	data := r.cols[i].data
	v := slices.Grow((*into)[:0], r.rows)[:r.rows]
	for j := range v {
		v[j] = get(data[width*j:])
	}
	*into = v
	return v
}

func (r *directReader) times(i int) []arrow.Timestamp {
	return fixed(r, &r.ts[i], i, 8, func(b []byte) arrow.Timestamp { return arrow.Timestamp(binary.LittleEndian.Uint64(b)) })
}

func (r *directReader) uint64s(i int) []uint64 {
	return fixed(r, &r.u64[i], i, 8, binary.LittleEndian.Uint64)
}

// bitmap is a decoded column's validity, as the decoders ask it.
type bitmap struct {
	bits  []byte
	nulls int
}

func (m bitmap) NullN() int         { return m.nulls }
func (m bitmap) IsValid(j int) bool { return m.bits[j>>3]&(1<<(j&7)) != 0 }
func (r *directReader) validity(i int) bitmap {
	return bitmap{bits: r.cols[i].valid, nulls: r.cols[i].nulls}
}

// usage returns the usage columns; ok false when a check of arrow's path fails.
func (r *directReader) usage() (*usageColumns, bool) {
	str := func(i int) strCol { return r.cols[i].strCol(r.rows) }
	c := &usageColumns{
		eventID: str(colEventID), device: str(colDevice), plmn: str(colPLMN), cell: str(colCell), sliceSD: str(colSliceSD),
		start: r.times(colStart), end: r.times(colEnd), received: r.times(colReceived),
		bytesUp: r.uint64s(colBytesUp), bytesDown: r.uint64s(colBytesDown), duration: r.uint64s(colDuration),
		events:      r.uint64s(colEvents),
		ratingGroup: fixed(r, &r.u32[colRatingGroup], colRatingGroup, 4, binary.LittleEndian.Uint32),
		lat:         fixed(r, &r.f64[colLat], colLat, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }),
		lon:         fixed(r, &r.f64[colLon], colLon, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }),
		sst:         fixed(r, &r.u8[colSliceSST], colSliceSST, 1, func(b []byte) uint8 { return b[0] }),
		latA:        r.validity(colLat), lonA: r.validity(colLon), sstA: r.validity(colSliceSST),
	}
	var ok [3]bool
	c.tenant, ok[0] = r.dict(colTenant, 0)
	c.source, ok[1] = r.dict(colSource, 1)
	c.rat, ok[2] = r.dict(colRAT, 2)
	if ok != [3]bool{true, true, true} {
		return nil, false
	}
	for j := range r.rows {
		if valid(c.latA, j) != valid(c.lonA, j) {
			return nil, false
		}
	}
	return c, true
}

// amounts decodes the decimal(18,6) column; ok false on a value beyond it.
func (r *directReader) amounts(i int) ([]Micros, bool) {
	data := r.cols[i].data
	out := slices.Grow(r.amt[:0], r.rows)[:r.rows]
	r.amt = out
	for j := range out {
		lo := int64(binary.LittleEndian.Uint64(data[16*j:]))
		hi := int64(binary.LittleEndian.Uint64(data[16*j+8:]))
		if hi != lo>>63 || lo > maxAmount || lo < -maxAmount {
			return nil, false
		}
		out[j] = Micros(lo)
	}
	return out, true
}

// rated appends the rated records of the stream read to into; ok false when a check of
// arrow's path fails.
func (r *directReader) rated(into []Rated) ([]Rated, bool) {
	u, ok := r.usage()
	if !ok {
		return into, false
	}
	var dicts [6]dictCol
	for k, i := range []int{colCharge, colZone, colMobility, colTariff, colTariffVersion, colOffer} {
		if dicts[k], ok = r.dict(i, 3+k); !ok {
			return into, false
		}
	}
	amount, ok := r.amounts(colAmount)
	if !ok {
		return into, false
	}
	recordID, currency := r.cols[colRecordID].strCol(r.rows), r.cols[colCurrency].strCol(r.rows)
	active, rated := r.uint64s(colActiveDevices), r.times(colRatedTime)
	out := slices.Grow(into, r.rows)[:len(into)+r.rows]
	for j := range r.rows {
		o := &out[len(into)+j]
		u.row(j, &o.Usage)
		o.RecordID, o.Currency = recordID.at(j), currency.at(j)
		o.Charge, o.Zone, o.Mobility = dicts[0].at(j), dicts[1].at(j), dicts[2].at(j)
		o.Tariff, o.TariffVersion, o.Offer = dicts[3].at(j), dicts[4].at(j), dicts[5].at(j)
		o.ActiveDevices, o.Amount, o.RatedTime = active[j], amount[j], int64(rated[j])
	}
	return out, true
}
