package billing

import (
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"

	"fleetmeter/record"
)

// Columns is an export page column by column, in position order: the Arrow and Parquet
// writers lay its slices out as they are, JSON Lines and CSV read it a row at a time into
// one reused record. A store that reads ClickHouse's column blocks fills it by gathering
// from them (ColumnStore), without a record per row: a page of a million records as
// []Exported is half a gigabyte of structs the garbage collector scans, as Columns it is a
// few dozen pointer-free slices. The column indexes are ExportSchema's (and
// clickhouse.RecordColumns').
type Columns struct {
	N    int
	Last Position // the position of the page's last record (zero when N is 0)

	// Str are the string columns, in StrCols order, in Arrow's layout: value i is
	// Data[Offsets[i]:Offsets[i+1]], Offsets has N+1 entries from 0.
	Str [16]StrColumn
	// U64 are the UInt64 columns, in U64Cols order (times in Unix milliseconds).
	U64         [9][]uint64
	RatingGroup []uint32
	// Lat and Lon are 0 where the record has no position; PosValid has bit i set (least
	// significant first, Arrow's validity bitmap) where it has one.
	Lat, Lon []float64
	PosValid []byte
	// SliceSST is 0 where the record has no slice; SliceValid as PosValid.
	SliceSST   []uint8
	SliceValid []byte
	Amount     []int64 // micros
}

// StrColumn is a string column in Arrow's layout.
type StrColumn struct {
	Offsets []int32
	Data    []byte
}

// The export's columns by type, read off ExportSchema (whose order clickhouse.RecordColumns
// shares): the indexes of its string columns and of its UInt64 and timestamp (Unix
// milliseconds) columns, in the order of Columns.Str and Columns.U64.
var StrCols, U64Cols = columnsByType()

// The remaining columns' indexes.
var (
	ColRatingGroup = fieldIndex("rating_group")
	ColLat         = fieldIndex("lat")
	ColLon         = fieldIndex("lon")
	ColSliceSST    = fieldIndex("slice_sst")
	ColAmount      = fieldIndex("amount")
)

func columnsByType() (str [16]int, u64 [9]int) {
	ns, nu := 0, 0
	for i, f := range ExportSchema.Fields() {
		switch f.Type.ID() {
		case arrow.STRING:
			str[ns] = i // an index out of range here: Columns.Str no longer fits the schema
			ns++
		case arrow.UINT64, arrow.TIMESTAMP:
			u64[nu] = i
			nu++
		}
	}
	if ns != len(str) || nu != len(u64) {
		panic("billing: ExportSchema's string or UInt64 columns no longer fit Columns")
	}
	return str, u64
}

func fieldIndex(name string) int {
	is := ExportSchema.FieldIndices(name)
	if len(is) != 1 {
		panic("billing: ExportSchema has no column " + name)
	}
	return is[0]
}

// Reset empties c for n records, keeping its memory: every column has length n (strings:
// offsets of n+1, data empty), the validity bitmaps are cleared.
func (c *Columns) Reset(n int) {
	c.N, c.Last = n, Position{}
	for k := range c.Str {
		c.Str[k].Offsets = resize(c.Str[k].Offsets, n+1)
		c.Str[k].Offsets[0] = 0
		c.Str[k].Data = c.Str[k].Data[:0]
	}
	for k := range c.U64 {
		c.U64[k] = resize(c.U64[k], n)
	}
	c.RatingGroup = resize(c.RatingGroup, n)
	c.Lat, c.Lon = resize(c.Lat, n), resize(c.Lon, n)
	c.SliceSST, c.Amount = resize(c.SliceSST, n), resize(c.Amount, n)
	c.PosValid, c.SliceValid = resize(c.PosValid, (n+7)/8), resize(c.SliceValid, (n+7)/8)
	clear(c.PosValid)
	clear(c.SliceValid)
}

// resize returns s with length n, reusing its array when large enough. The values are
// not cleared: every caller sets all n.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n, n+n/8)
}

// Valid says whether bit i of a validity bitmap is set.
func Valid(bitmap []byte, i int) bool { return bitmap[i>>3]&(1<<(i&7)) != 0 }

// SetValid sets bit i of a validity bitmap.
func SetValid(bitmap []byte, i int) { bitmap[i>>3] |= 1 << (i & 7) }

// NewColumns returns the columns of recs (the page of a store that reads records).
func NewColumns(recs []Exported, into *Columns) *Columns {
	if into == nil {
		into = new(Columns)
	}
	into.Reset(len(recs))
	for i := range recs {
		into.set(i, &recs[i].Rec)
	}
	if len(recs) > 0 {
		into.Last = recs[len(recs)-1].Pos
	}
	return into
}

// set writes r as record i; the string columns must hold records 0..i-1 exactly.
func (c *Columns) set(i int, r *record.Rated) {
	for k, s := range [16]string{r.EventID, r.Tenant, r.Device, r.Source, r.PLMN, r.Cell, r.RAT, r.SliceSD,
		r.RecordID, r.Charge, r.Zone, r.Mobility, r.Tariff, r.TariffVersion, r.Offer, r.Currency} {
		col := &c.Str[k]
		col.Data = append(col.Data, s...)
		col.Offsets[i+1] = int32(len(col.Data))
	}
	for k, v := range [9]uint64{uint64(r.StartTime), uint64(r.EndTime), uint64(r.ReceivedTime), r.BytesUp, r.BytesDown,
		r.DurationMs, r.Events, r.ActiveDevices, uint64(r.RatedTime)} {
		c.U64[k][i] = v
	}
	c.RatingGroup[i], c.Amount[i] = r.RatingGroup, int64(r.Amount)
	c.Lat[i], c.Lon[i], c.SliceSST[i] = 0, 0, 0
	if r.HasPos {
		c.Lat[i], c.Lon[i] = r.Lat, r.Lon
		SetValid(c.PosValid, i)
	}
	if r.HasSlice {
		c.SliceSST[i] = r.SliceSST
		SetValid(c.SliceValid, i)
	}
}

// Record reads record i into r. Its strings are views of c: valid until c is reset.
func (c *Columns) Record(i int, r *record.Rated) {
	s := func(k int) string {
		col := &c.Str[k]
		a, b := col.Offsets[i], col.Offsets[i+1]
		if a == b {
			return ""
		}
		return unsafe.String(&col.Data[a], int(b-a))
	}
	r.EventID, r.Tenant, r.Device, r.Source, r.PLMN, r.Cell, r.RAT, r.SliceSD = s(0), s(1), s(2), s(3), s(4), s(5), s(6), s(7)
	r.RecordID, r.Charge, r.Zone, r.Mobility, r.Tariff, r.TariffVersion, r.Offer, r.Currency =
		s(8), s(9), s(10), s(11), s(12), s(13), s(14), s(15)
	u := &c.U64
	r.StartTime, r.EndTime, r.ReceivedTime = int64(u[0][i]), int64(u[1][i]), int64(u[2][i])
	r.BytesUp, r.BytesDown, r.DurationMs, r.Events, r.ActiveDevices = u[3][i], u[4][i], u[5][i], u[6][i], u[7][i]
	r.RatedTime = int64(u[8][i])
	r.RatingGroup, r.Amount = c.RatingGroup[i], record.Micros(c.Amount[i])
	r.Lat, r.Lon, r.HasPos = c.Lat[i], c.Lon[i], Valid(c.PosValid, i)
	r.SliceSST, r.HasSlice = c.SliceSST[i], Valid(c.SliceValid, i)
}

// Each calls f with each record in turn, read into one reused record (its strings views
// of c), until f fails.
func (c *Columns) Each(f func(r *record.Rated) error) error {
	var r record.Rated
	for i := range c.N {
		c.Record(i, &r)
		if err := f(&r); err != nil {
			return err
		}
	}
	return nil
}

// Records returns the records of c (for tests and callers that want records).
func (c *Columns) Records() []record.Rated {
	out := make([]record.Rated, c.N)
	for i := range out {
		c.Record(i, &out[i])
	}
	return out
}
