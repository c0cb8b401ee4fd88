package chstore

import (
	"context"
	"fmt"
	"slices"
	"unsafe"

	chproto "github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
)

var _ billing.ColumnStore = (*Store)(nil)

// ExportColumns reads the page Export reads, as columns: the rows of ExportDataQuery stay
// in the driver's decoded blocks, each key keeps the block and row of its first rating,
// and the columns are gathered from the blocks in the keys' order at the end. No record
// is built per row. When the driver's blocks cannot be viewed in place it reads records
// (Export) and lays them out.
//
// On the walk path (a single node) the data read is narrowed to the page's own least and
// greatest record_id, and when rated_usage holds few rows in that range besides the
// page's (RangeCountQuery; record_ids growing with time), it reads them all without the
// set of keys: the walk finds the page's rows exactly and drops the rest, and the server
// neither builds the set nor hashes every row.
func (s *Store) ExportColumns(ctx context.Context, req billing.ExportRequest, into *billing.Columns) (int64, error) {
	into.Reset(0)
	p, err := s.plan(ctx, req)
	if err != nil || p.empty {
		return p.req.UpTo, err
	}
	pk, err := s.pageKeys(ctx, p.req, p.whole, p.keys, p.sizeHint)
	if err != nil || len(pk.page) == 0 {
		return p.req.UpTo, err
	}
	g, err := s.readBlocks(ctx, p.req, p.keys, pk)
	if err == errNotInPlace {
		recs, err := s.export(ctx, p.req, p.whole, p.keys, p.sizeHint, nil)
		if err != nil {
			return 0, err
		}
		billing.NewColumns(recs, into)
		return p.req.UpTo, nil
	}
	if err != nil {
		return 0, err
	}
	g.gather(into)
	into.Last = pk.page[len(pk.page)-1].pos
	return p.req.UpTo, nil
}

// errNotInPlace: the driver's blocks cannot be viewed in place.
var errNotInPlace = fmt.Errorf("billing export: blocks not readable in place")

// block is one data block's columns, viewed in place.
type block struct {
	str     [16]*chproto.ColStr // billing.StrCols order
	u64     [9][]uint64         // billing.U64Cols order
	rg      []uint32
	lat     []float64
	latNull []uint8
	lon     []float64
	lonNull []uint8
	sst     []uint8
	sstNull []uint8
	amt     []int64
	h       []uint64 // the key hash, when read
}

func (b *block) view(c *clickhouse.Cursor, hash bool) bool {
	ok := true
	for k, i := range billing.StrCols {
		b.str[k] = c.BlockStr(i)
		ok = ok && b.str[k] != nil
	}
	var o [7]bool
	for k, i := range billing.U64Cols {
		var oki bool
		b.u64[k], _, oki = clickhouse.BlockNum[uint64](c, i)
		ok = ok && oki
	}
	b.rg, _, o[0] = clickhouse.BlockNum[uint32](c, billing.ColRatingGroup)
	b.lat, b.latNull, o[1] = clickhouse.BlockNum[float64](c, billing.ColLat)
	b.lon, b.lonNull, o[2] = clickhouse.BlockNum[float64](c, billing.ColLon)
	b.sst, b.sstNull, o[3] = clickhouse.BlockNum[uint8](c, billing.ColSliceSST)
	b.amt, _, o[4] = clickhouse.BlockNum[int64](c, billing.ColAmount)
	o[5], o[6] = true, true
	if hash {
		b.h, _, o[5] = clickhouse.BlockNum[uint64](c, len(clickhouse.RecordColumns))
	}
	for _, x := range o {
		ok = ok && x
	}
	return ok
}

// gathered is a page read as blocks: at[i] is where record i of the page lies (block
// index << 32 | row).
type gathered struct {
	blocks []block
	at     []uint64
}

// readBlocks runs the data read of the page's keys pk, keeping each key's first rating.
func (s *Store) readBlocks(ctx context.Context, req billing.ExportRequest, keyRange KeyRange, pk pageKeys) (*gathered, error) {
	n := len(pk.page)
	keysTable := "page_keys"
	qctx := ctx
	var walk *keyWalker
	var index pageIndex
	if pk.byKey != nil {
		walk = &keyWalker{keys: pk.byKey, slot: pk.slot}
		// The page's own record_ids.
		lo, hi := pk.page[0].pos.RecordID, pk.page[0].pos.RecordID
		for _, k := range pk.page[1:] {
			lo, hi = min(lo, k.pos.RecordID), max(hi, k.pos.RecordID)
		}
		keyRange = KeyRange{Lo: lo, Hi: hi}
		var rows uint64
		if err := s.conn.QueryRow(ctx, RangeCountQuery(s.db, "rated_usage", req.Tenant, keyRange)).Scan(&rows); err != nil {
			return nil, fmt.Errorf("billing export: %w", err)
		}
		if rows <= uint64(n)+uint64(n)/2 {
			keysTable = ""
		}
	} else {
		index.byHash = make(map[uint64]int, n)
	}
	if keysTable != "" {
		keys, err := ext.NewTable(keysTable, ext.Column("h", "UInt64"))
		if err != nil {
			return nil, err
		}
		for j, k := range pk.page {
			if walk == nil {
				index.add(k.h, k.pos, j)
			}
			if err := keys.Append(k.h); err != nil {
				return nil, err
			}
		}
		qctx = ch.Context(ctx, ch.WithExternalTable(keys))
	}
	drows, err := s.conn.Query(qctx, ExportDataQuery(s.db, req.Tenant, keyRange, keysTable))
	if err != nil {
		return nil, fmt.Errorf("billing export: %w", err)
	}
	defer drows.Close()
	g := &gathered{at: make([]uint64, n)}
	for i := range g.at {
		g.at[i] = ^uint64(0)
	}
	c := clickhouse.NewCursor(drows)
	if !c.Fast() {
		return nil, errNotInPlace
	}
	gen := -1
	var b *block
	found := 0
	for c.Next() {
		if c.Gen() != gen {
			gen = c.Gen()
			g.blocks = append(g.blocks, block{})
			b = &g.blocks[len(g.blocks)-1]
			if !b.view(c, walk == nil) {
				return nil, errNotInPlace
			}
		}
		row := c.Row()
		tp, rp := b.str[1].Pos[row], b.str[8].Pos[row]
		tenant, recordID := viewStr(b.str[1].Buf, tp), viewStr(b.str[8].Buf, rp)
		var i int
		var ok bool
		if walk != nil {
			i, ok = walk.find(tenant, recordID)
		} else {
			i, ok = index.find(b.h[row], pk.page, tenant, recordID)
		}
		if !ok {
			continue // another key's row
		}
		at := uint64(len(g.blocks)-1)<<32 | uint64(row)
		// The first rating: the least rated_time_ms (copies rated at the same instant come
		// from the same state and are identical).
		if prev := g.at[i]; prev == ^uint64(0) {
			found++
		} else if pb := &g.blocks[prev>>32]; pb.u64[8][uint32(prev)] <= b.u64[8][row] {
			continue
		}
		g.at[i] = at
	}
	if err := c.Err(); err != nil {
		return nil, fmt.Errorf("billing export: %w", err)
	}
	// A key without its record would be a hole in the stream (see export).
	if found != n {
		return nil, fmt.Errorf("billing export: %d of %d records of the page missing from rated_usage", n-found, n)
	}
	return g, nil
}

// gather lays the page's records out as columns, in page order.
func (g *gathered) gather(c *billing.Columns) {
	n := len(g.at)
	c.Reset(n)
	for k := range c.Str {
		col := &c.Str[k]
		size := 0
		for _, at := range g.at {
			p := g.blocks[at>>32].str[k].Pos[uint32(at)]
			size += p.End - p.Start
		}
		col.Data = slices.Grow(col.Data[:0], size)
		for i, at := range g.at {
			s := g.blocks[at>>32].str[k]
			p := s.Pos[uint32(at)]
			col.Data = append(col.Data, s.Buf[p.Start:p.End]...)
			col.Offsets[i+1] = int32(len(col.Data))
		}
	}
	for k := range c.U64 {
		dst := c.U64[k]
		for i, at := range g.at {
			dst[i] = g.blocks[at>>32].u64[k][uint32(at)]
		}
	}
	for i, at := range g.at {
		b, r := &g.blocks[at>>32], uint32(at)
		c.RatingGroup[i], c.Amount[i] = b.rg[r], b.amt[r]
		c.Lat[i], c.Lon[i], c.SliceSST[i] = 0, 0, 0
		if (b.latNull == nil || b.latNull[r] == 0) && (b.lonNull == nil || b.lonNull[r] == 0) {
			c.Lat[i], c.Lon[i] = b.lat[r], b.lon[r]
			billing.SetValid(c.PosValid, i)
		}
		if b.sstNull == nil || b.sstNull[r] == 0 {
			c.SliceSST[i] = b.sst[r]
			billing.SetValid(c.SliceValid, i)
		}
	}
}

// viewStr is the string at p of a block's buffer, in place.
func viewStr(buf []byte, p chproto.Position) string {
	if p.End == p.Start {
		return ""
	}
	return unsafe.String(&buf[p.Start], p.End-p.Start)
}
