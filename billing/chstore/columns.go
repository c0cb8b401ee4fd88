package chstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	chproto "github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
)

var _ billing.ColumnStore = (*Store)(nil)

// ExportColumns reads the page Export reads, as columns: the rows of ExportColumnsQuery stay
// in the driver's decoded blocks, each key keeps the block and row of its first rating,
// and the columns are gathered from the blocks in the keys' order at the end. No record
// is built per row. When the driver's blocks cannot be viewed in place it reads records
// (Export) and lays them out.
//
// Where the page's record_id range holds few rows besides the page's (plan: dense;
// record_ids growing with time), on a single node, the data read does not wait for the
// keys: it reads every row of the range, without a set of keys, while the keys query
// runs, and the walk then finds the page's rows exactly and drops the rest. The server
// neither builds the set nor hashes every row, and the two reads overlap.
func (s *Store) ExportColumns(ctx context.Context, req billing.ExportRequest, into *billing.Columns) (int64, error) {
	into.Reset(0)
	p, err := s.plan(ctx, req)
	if err != nil || p.empty {
		return p.req.UpTo, err
	}
	// early: the data read under way beside the keys query; its blocks arrive on arrived
	// as they come and are matched once the keys are known.
	var early chan error
	var arrived chan block
	cancel := func() {}
	if s.final && p.dense {
		var rctx context.Context
		rctx, cancel = context.WithCancel(ctx)
		defer cancel() // a read not waited for ends here
		early, arrived = make(chan error, 1), make(chan block, 64)
		go func() {
			defer close(arrived)
			_, err := s.readData(rctx, ExportColumnsQuery(s.db, p.req.Tenant, p.keys, ""), false, nil, arrived)
			early <- err
		}()
	}
	pk, err := s.pageKeys(ctx, p.req, p.whole, p.keys, p.sizeHint, early == nil)
	if err != nil || len(pk.page) == 0 {
		return p.req.UpTo, err
	}
	var g *gathered
	if early != nil && pk.byKey != nil {
		m := newMatcher(pk)
		var blocks []block
		for b := range arrived {
			blocks = append(blocks, b)
			for row := range len(b.str[0].Pos) {
				m.add(blocks, len(blocks)-1, row)
			}
		}
		if err = <-early; err == nil {
			g, err = m.done(blocks)
		}
	} else {
		cancel() // the keys are not walked: read them by their hashes
		g, err = s.readBlocks(ctx, p.req, p.keys, pk)
	}
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

// block is one block of ExportColumnsQuery, viewed in place.
type block struct {
	str     [2]*chproto.ColStr // a row's strings, concatenated: the first 8, the last 8
	lens    [15][]uint32       // the lengths of the first 15 (the last is what remains)
	u64     [9][]uint64        // billing.U64Cols order
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

// strSplit is how many string columns the first concatenation of ExportColumnsQuery holds.
const strSplit = 8

// The columns of ExportColumnsQuery.
const (
	qStr  = 0 // and 1
	qLens = 2
	qU64  = qLens + 15
	qRG   = qU64 + 9
	qLat  = qRG + 1
	qLon  = qLat + 1
	qSST  = qLon + 1
	qAmt  = qSST + 1
	qHash = qAmt + 1
)

func (b *block) view(c *clickhouse.Cursor, hash bool) bool {
	b.str[0], b.str[1] = c.BlockStr(qStr), c.BlockStr(qStr+1)
	ok := b.str[0] != nil && b.str[1] != nil
	var oki bool
	for k := range b.lens {
		b.lens[k], _, oki = clickhouse.BlockNum[uint32](c, qLens+k)
		ok = ok && oki
	}
	for k := range b.u64 {
		b.u64[k], _, oki = clickhouse.BlockNum[uint64](c, qU64+k)
		ok = ok && oki
	}
	var o [6]bool
	b.rg, _, o[0] = clickhouse.BlockNum[uint32](c, qRG)
	b.lat, b.latNull, o[1] = clickhouse.BlockNum[float64](c, qLat)
	b.lon, b.lonNull, o[2] = clickhouse.BlockNum[float64](c, qLon)
	b.sst, b.sstNull, o[3] = clickhouse.BlockNum[uint8](c, qSST)
	b.amt, _, o[4] = clickhouse.BlockNum[int64](c, qAmt)
	o[5] = true
	if hash {
		b.h, _, o[5] = clickhouse.BlockNum[uint64](c, qHash)
	}
	for _, x := range o {
		ok = ok && x
	}
	return ok
}

// key returns row's tenant and record_id (billing.StrCols 1 and 8), in place.
func (b *block) key(row int) (tenant, recordID string) {
	t := b.str[0].Pos[row].Start + int(b.lens[0][row])
	return viewStr(b.str[0].Buf, t, int(b.lens[1][row])), viewStr(b.str[1].Buf, b.str[1].Pos[row].Start, int(b.lens[8][row]))
}

// gathered is a page read as blocks: at[i] is where record i of the page lies (block
// index << 32 | row).
type gathered struct {
	blocks []block
	at     []uint64
}

// matcher finds the page's key of each row read and keeps each key's first rating.
type matcher struct {
	pk    pageKeys
	walk  *keyWalker
	index pageIndex
	at    []uint64
	found int
}

func newMatcher(pk pageKeys) *matcher {
	m := &matcher{pk: pk, at: make([]uint64, len(pk.page))}
	for i := range m.at {
		m.at[i] = ^uint64(0)
	}
	if pk.byKey != nil {
		m.walk = &keyWalker{keys: pk.byKey, slot: pk.slot}
		return m
	}
	m.index.byHash = make(map[uint64]int, len(pk.page))
	for j, k := range pk.page {
		m.index.add(k.h, k.pos, j)
	}
	return m
}

// add matches row of blocks[bi].
func (m *matcher) add(blocks []block, bi, row int) {
	b := &blocks[bi]
	tenant, recordID := b.key(row)
	var i int
	var ok bool
	if m.walk != nil {
		i, ok = m.walk.find(tenant, recordID)
	} else {
		i, ok = m.index.find(b.h[row], m.pk.page, tenant, recordID)
	}
	if !ok {
		return // another key's row
	}
	// The first rating: the least rated_time_ms (copies rated at the same instant come
	// from the same state and are identical).
	if prev := m.at[i]; prev == ^uint64(0) {
		m.found++
	} else if blocks[prev>>32].u64[8][uint32(prev)] <= b.u64[8][row] {
		return
	}
	m.at[i] = uint64(bi)<<32 | uint64(row)
}

// done checks every key of the page has its record: a key without one would be a hole in
// the stream (see export).
func (m *matcher) done(blocks []block) (*gathered, error) {
	if n := len(m.at); m.found != n {
		return nil, fmt.Errorf("billing export: %d of %d records of the page missing from rated_usage", n-m.found, n)
	}
	return &gathered{blocks: blocks, at: m.at}, nil
}

// readData runs query (ExportColumnsQuery; hash: with h) and returns its blocks, calling
// each (if not nil) with every row as it comes, and sending each block (if out is not nil)
// as soon as it is decoded.
func (s *Store) readData(ctx context.Context, query string, hash bool, each func(blocks []block, bi, row int), out chan<- block) ([]block, error) {
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("billing export: %w", err)
	}
	defer rows.Close()
	c := clickhouse.NewCursor(rows)
	if !c.Fast() {
		return nil, errNotInPlace
	}
	var blocks []block
	gen := -1
	for c.Next() {
		if c.Gen() != gen {
			gen = c.Gen()
			blocks = append(blocks, block{})
			if !blocks[len(blocks)-1].view(c, hash) {
				return nil, errNotInPlace
			}
			if out != nil {
				select {
				case out <- blocks[len(blocks)-1]:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
		if each != nil {
			each(blocks, len(blocks)-1, c.Row())
		}
	}
	if err := c.Err(); err != nil {
		return nil, fmt.Errorf("billing export: %w", err)
	}
	return blocks, nil
}

// readBlocks reads the rows of the page's keys pk, with a set of their hashes (on the walk
// path narrowed to the page's own record_ids), matching them as they come.
func (s *Store) readBlocks(ctx context.Context, req billing.ExportRequest, keyRange KeyRange, pk pageKeys) (*gathered, error) {
	if pk.byKey != nil {
		lo, hi := pk.page[0].pos.RecordID, pk.page[0].pos.RecordID
		for _, k := range pk.page[1:] {
			lo, hi = min(lo, k.pos.RecordID), max(hi, k.pos.RecordID)
		}
		keyRange = KeyRange{Lo: lo, Hi: hi}
	}
	keys, err := ext.NewTable("page_keys", ext.Column("h", "UInt64"))
	if err != nil {
		return nil, err
	}
	for _, k := range pk.page {
		if err := keys.Append(k.h); err != nil {
			return nil, err
		}
	}
	m := newMatcher(pk)
	blocks, err := s.readData(ch.Context(ctx, ch.WithExternalTable(keys)), ExportColumnsQuery(s.db, req.Tenant, keyRange, "page_keys"),
		pk.byKey == nil, m.add, nil)
	if err != nil {
		return nil, err
	}
	return m.done(blocks)
}

// gather lays the page's records out as columns, in page order: two halves of the rows
// at once (the second starts at a multiple of 8, so the halves share no byte of a
// validity bitmap).
func (g *gathered) gather(c *billing.Columns) {
	n := len(g.at)
	c.Reset(n)
	// Size the string columns first: growing them as they fill copied each several times.
	mid := n / 2 &^ 7
	var size [2][16]int
	for i, at := range g.at {
		h := &size[0]
		if i >= mid {
			h = &size[1]
		}
		b, r := &g.blocks[at>>32], uint32(at)
		p := b.str[1].Pos[r]
		rest := p.End - p.Start
		for k := range b.lens {
			h[k] += int(b.lens[k][r])
			if k >= strSplit {
				rest -= int(b.lens[k][r])
			}
		}
		h[15] += rest
	}
	for k := range c.Str {
		c.Str[k].Data = slices.Grow(c.Str[k].Data[:0], size[0][k]+size[1][k])[:size[0][k]+size[1][k]]
	}
	var wg sync.WaitGroup
	wg.Go(func() { g.gatherRows(c, mid, n, size[0]) })
	g.gatherRows(c, 0, mid, [16]int{})
	wg.Wait()
}

// gatherRows lays out records [from, to), whose strings start at data[k] of each string
// column k.
func (g *gathered) gatherRows(c *billing.Columns, from, to int, data [16]int) {
	for i := from; i < to; i++ {
		at := g.at[i]
		b, r := &g.blocks[at>>32], uint32(at)
		for half, str := range b.str {
			p := str.Pos[r]
			start := p.Start
			for k := half * strSplit; k < (half+1)*strSplit; k++ {
				n := p.End - start
				if k < len(b.lens) {
					n = int(b.lens[k][r])
				}
				d := &c.Str[k]
				data[k] += copy(d.Data[data[k]:], str.Buf[start:start+n])
				d.Offsets[i+1] = int32(data[k])
				start += n
			}
		}
	}
	for k := range c.U64 {
		dst := c.U64[k]
		for i := from; i < to; i++ {
			at := g.at[i]
			dst[i] = g.blocks[at>>32].u64[k][uint32(at)]
		}
	}
	for i := from; i < to; i++ {
		at := g.at[i]
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

// viewStr is the n bytes at start of a block's buffer, in place.
func viewStr(buf []byte, start, n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&buf[start], n)
}
