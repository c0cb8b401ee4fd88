package clickhouse

import (
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"fleetmeter/record"
)

// Reading a block's columns instead of scanning row by row.
//
// clickhouse-go decodes each block of a result into typed column slices (ch-go's
// proto.ColStr, ColUInt64, ...), but reads only through Scan, which allocates every
// string and boxes values: for a million rated rows that is seconds of allocation and
// garbage collection, most of an export. It has no public block API, and ch-go's own
// client cannot query ClickHouse 18.16 (it leaves out the client info the server expects
// in the query packet). So a Cursor reaches the block behind the current row and views its
// columns in place: strings are views of the block's buffer (each block is decoded into
// fresh memory and never reused by the driver, so the views stay valid), numbers are read
// from the slices.
//
// The driver's layout is checked with reflect, once per result and once per column per
// block, against the fields this code expects (clickhouse-go v2.51); a column or a result
// whose layout differs is read through ScanRow/Scan instead, slower but the same values,
// and TestRatedCursorReadsBlocks fails so that a driver upgrade that moved them is noticed.

// Cursor walks the rows of a driver.Rows and gives access to the columns of the block
// holding the current row. Use it like rows: for c.Next() { ... c.Row() ... }; Err.
type Cursor struct {
	rows  driver.Rows
	block **proto.Block // the driver's current block, nil when its layout is unknown
	row   *int          // the driver's 1-based row within it
	cur   *proto.Block
	gen   int // counts blocks, so column views know when to rebind
	slow  int // values read through ScanRow
}

type rowsLayout struct {
	typ        reflect.Type
	block, row uintptr
	ok         bool
}

var layout struct {
	sync.Mutex
	l rowsLayout
}

// NewCursor returns a cursor over rows.
func NewCursor(rows driver.Rows) *Cursor {
	c := &Cursor{rows: rows}
	v := reflect.ValueOf(rows)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return c
	}
	l := lookupLayout(v.Elem().Type())
	if !l.ok {
		return c
	}
	base := v.UnsafePointer()
	c.block = (**proto.Block)(unsafe.Add(base, l.block))
	c.row = (*int)(unsafe.Add(base, l.row))
	return c
}

func lookupLayout(t reflect.Type) rowsLayout {
	layout.Lock()
	defer layout.Unlock()
	if layout.l.typ == t {
		return layout.l
	}
	l := rowsLayout{typ: t}
	b, okB := t.FieldByName("block")
	r, okR := t.FieldByName("row")
	if okB && okR && b.Type == reflect.TypeFor[*proto.Block]() && r.Type == reflect.TypeFor[int]() {
		l.block, l.row, l.ok = b.Offset, r.Offset, true
	}
	layout.l = l
	return l
}

// Fast says whether the cursor reads blocks in place (else through Scan).
func (c *Cursor) Fast() bool { return c.block != nil }

// Slow counts the values read through ScanRow so far: those of columns whose layout the
// cursor does not know (a LowCardinality column, a driver upgrade).
func (c *Cursor) Slow() int { return c.slow }

// Next advances to the next row.
func (c *Cursor) Next() bool {
	if !c.rows.Next() {
		return false
	}
	if c.block != nil && *c.block != c.cur {
		c.cur = *c.block
		c.gen++
	}
	return true
}

// Row is the current row's index within its block (valid when Fast).
func (c *Cursor) Row() int { return *c.row - 1 }

// Err is the error that ended the rows, if any.
func (c *Cursor) Err() error { return c.rows.Err() }

// column returns column i of the current block, or nil when not Fast.
func (c *Cursor) column(i int) column.Interface {
	if c.cur == nil || i >= len(c.cur.Columns) {
		return nil
	}
	return c.cur.Columns[i]
}

// fieldOf returns a pointer to the unexported field name of type T in the struct col
// points to, or nil.
func fieldOf[T any](col any, name string) *T {
	v := reflect.ValueOf(col)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName(name)
	if !f.IsValid() || f.Type() != reflect.TypeFor[T]() {
		return nil
	}
	return (*T)(unsafe.Pointer(f.UnsafeAddr()))
}

// StrCol reads a String column of the cursor.
type StrCol struct {
	c   *Cursor
	i   int
	gen int
	s   *chproto.ColStr
	col column.Interface
}

// Str returns a view of column i as strings.
func (c *Cursor) Str(i int) *StrCol { return &StrCol{c: c, i: i, gen: -1} }

// Get returns the current row's value; on a column it cannot view it scans, and a scan
// error is returned.
func (s *StrCol) Get() (string, error) {
	if s.gen != s.c.gen {
		s.gen, s.col, s.s = s.c.gen, s.c.column(s.i), nil
		if s.col != nil && s.col.Type() == "String" {
			s.s = fieldOf[chproto.ColStr](s.col, "col")
		}
	}
	if s.s != nil {
		p := s.s.Pos[s.c.Row()]
		if p.End == p.Start {
			return "", nil
		}
		return unsafe.String(&s.s.Buf[p.Start], p.End-p.Start), nil
	}
	var v string
	return v, s.scan(&v)
}

func (s *StrCol) scan(dest any) error {
	s.c.slow++
	if s.col != nil {
		return s.col.ScanRow(dest, s.c.Row())
	}
	return fmt.Errorf("column %d: not readable by block", s.i)
}

// NumCol reads a numeric column (UInt8/32/64, Int64, Float64) of the cursor, optionally
// Nullable.
type NumCol[T uint8 | uint32 | uint64 | int64 | float64] struct {
	c     *Cursor
	i     int
	gen   int
	v     *[]T
	nulls *chproto.ColUInt8
	col   column.Interface
}

// Num returns a view of column i as numbers of type T.
func Num[T uint8 | uint32 | uint64 | int64 | float64](c *Cursor, i int) *NumCol[T] {
	return &NumCol[T]{c: c, i: i, gen: -1}
}

func (n *NumCol[T]) bind() {
	n.gen, n.col = n.c.gen, n.c.column(n.i)
	n.v, n.nulls = numView[T](n.col)
}

// numView returns the values (and for a Nullable column the null flags) of col viewed in
// place, or nil when its layout is not the one expected.
func numView[T uint8 | uint32 | uint64 | int64 | float64](col column.Interface) (v *[]T, nulls *chproto.ColUInt8) {
	if col == nil {
		return nil, nil
	}
	base := any(col)
	if nc, ok := col.(*column.Nullable); ok {
		nulls = fieldOf[chproto.ColUInt8](nc, "nulls")
		b := fieldOf[column.Interface](nc, "base")
		if nulls == nil || b == nil {
			return nil, nil
		}
		base = *b
	}
	// The column types' "col" fields are ch-go's slices: ColUInt64 is []uint64, etc.
	switch any(*new(T)).(type) {
	case uint8:
		v = (*[]T)(unsafe.Pointer(fieldOf[chproto.ColUInt8](base, "col")))
	case uint32:
		v = (*[]T)(unsafe.Pointer(fieldOf[chproto.ColUInt32](base, "col")))
	case uint64:
		v = (*[]T)(unsafe.Pointer(fieldOf[chproto.ColUInt64](base, "col")))
	case int64:
		v = (*[]T)(unsafe.Pointer(fieldOf[chproto.ColInt64](base, "col")))
	case float64:
		v = (*[]T)(unsafe.Pointer(fieldOf[chproto.ColFloat64](base, "col")))
	}
	if v == nil {
		return nil, nil
	}
	return v, nulls
}

// Block is how a cursor's current block is read a column at a time: a caller that keeps
// the columns of every block (each is decoded into memory of its own, never reused by the
// driver) can gather rows from them after the cursor has moved on.

// Gen counts the blocks the cursor has entered: it changes when Next enters a new one.
func (c *Cursor) Gen() int { return c.gen }

// BlockStr returns String column i of the current block in place, or nil when the cursor
// is not Fast or the column's layout is not the one expected.
func (c *Cursor) BlockStr(i int) *chproto.ColStr {
	col := c.column(i)
	if col == nil || col.Type() != "String" {
		return nil
	}
	return fieldOf[chproto.ColStr](col, "col")
}

// BlockNum returns numeric column i of the current block in place, with its null flags
// (non-zero: NULL) when Nullable; ok is false when the cursor is not Fast or the column's
// layout is not the one expected.
func BlockNum[T uint8 | uint32 | uint64 | int64 | float64](c *Cursor, i int) (v []T, nulls []uint8, ok bool) {
	pv, pn := numView[T](c.column(i))
	if pv == nil {
		return nil, nil, false
	}
	if pn != nil {
		nulls = *pn
	}
	return *pv, nulls, true
}

// Get returns the current row's value (zero for NULL) and whether it is not NULL.
func (n *NumCol[T]) Get() (T, bool, error) {
	if n.gen != n.c.gen {
		n.bind()
	}
	i := n.c.Row()
	if n.v != nil {
		if n.nulls != nil && (*n.nulls)[i] != 0 {
			return 0, false, nil
		}
		return (*n.v)[i], true, nil
	}
	if n.col == nil {
		return 0, false, fmt.Errorf("column %d: not readable by block", n.i)
	}
	n.c.slow++
	if n.col.Type()[:min(len(n.col.Type()), 9)] == "Nullable(" {
		var p *T
		if err := n.col.ScanRow(&p, i); err != nil || p == nil {
			return 0, false, err
		}
		return *p, true, nil
	}
	var v T
	return v, true, n.col.ScanRow(&v, i)
}

// RatedCursor reads rows of RecordColumns into rated records a block at a time.
type RatedCursor struct {
	*Cursor
	// Extra are the destinations of the columns after RecordColumns, for the rows read
	// through Scan (when not Fast; else read them with Str or Num).
	Extra []any
	str   [16]*StrCol
	u64   [9]*NumCol[uint64]
	rg    *NumCol[uint32]
	lat   *NumCol[float64]
	lon   *NumCol[float64]
	sst   *NumCol[uint8]
	amt   *NumCol[int64]
}

// The positions in RecordColumns of the string and UInt64 columns, in the order Rated
// fills them.
var (
	ratedStrCols = [16]int{0, 1, 2, 3, 12, 13, 16, 18, 19, 20, 21, 22, 23, 24, 25, 27}
	ratedU64Cols = [9]int{4, 5, 6, 7, 8, 9, 10, 26, 29}
)

// NewRatedCursor returns a cursor over rows of RecordColumns (further columns after
// them are left alone).
func NewRatedCursor(rows driver.Rows) *RatedCursor {
	c := &RatedCursor{Cursor: NewCursor(rows)}
	for k, i := range ratedStrCols {
		c.str[k] = c.Str(i)
	}
	for k, i := range ratedU64Cols {
		c.u64[k] = Num[uint64](c.Cursor, i)
	}
	c.rg, c.lat, c.lon, c.sst, c.amt = Num[uint32](c.Cursor, 11), Num[float64](c.Cursor, 14), Num[float64](c.Cursor, 15),
		Num[uint8](c.Cursor, 17), Num[int64](c.Cursor, 28)
	return c
}

// Rated reads the current row into r. Its strings are views of the block, valid for as
// long as they are referenced.
func (c *RatedCursor) Rated(r *record.Rated) error {
	if !c.Fast() {
		v, err := ScanRated(c.rows, c.Extra...)
		*r = v
		return err
	}
	var err error
	str := func(k int) string {
		v, e := c.str[k].Get()
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	u64 := func(k int) uint64 {
		v, _, e := c.u64[k].Get()
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	r.EventID, r.Tenant, r.Device, r.Source = str(0), str(1), str(2), str(3)
	r.PLMN, r.Cell, r.RAT, r.SliceSD = str(4), str(5), str(6), str(7)
	r.RecordID, r.Charge, r.Zone, r.Mobility, r.Tariff, r.TariffVersion, r.Offer, r.Currency =
		str(8), str(9), str(10), str(11), str(12), str(13), str(14), str(15)
	r.StartTime, r.EndTime, r.ReceivedTime = int64(u64(0)), int64(u64(1)), int64(u64(2))
	r.BytesUp, r.BytesDown, r.DurationMs, r.Events, r.ActiveDevices = u64(3), u64(4), u64(5), u64(6), u64(7)
	r.RatedTime = int64(u64(8))
	rg, _, e2 := c.rg.Get()
	lat, hasLat, e3 := c.lat.Get()
	lon, hasLon, e4 := c.lon.Get()
	sst, hasSST, e5 := c.sst.Get()
	amt, _, e6 := c.amt.Get()
	for _, e := range [...]error{e2, e3, e4, e5, e6} {
		if e != nil && err == nil {
			err = e
		}
	}
	r.RatingGroup, r.Amount = rg, record.Micros(amt)
	r.Lat, r.Lon, r.HasPos = 0, 0, false
	if hasLat && hasLon {
		r.Lat, r.Lon, r.HasPos = lat, lon, true
	}
	r.SliceSST, r.HasSlice = sst, hasSST
	return err
}
