package chstore

import (
	"context"
	"errors"
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
// neither builds the set nor hashes every row, and the reads overlap. The range is read
// as two halves on two connections (cut where about half the page's copies were stored),
// each decoded and matched on its own goroutine: the driver decodes a result on one, and
// the decoding of a page's data is the export's largest single cost in the client.
func (s *Store) ExportColumns(ctx context.Context, req billing.ExportRequest, into *billing.Columns) (int64, error) {
	into.Reset(0)
	p, err := s.plan(ctx, req)
	if err != nil || p.empty {
		return p.req.UpTo, err
	}
	var early []*earlyRead
	cancel := func() {}
	if s.final && p.dense {
		// The keys and the two halves of the data are read at once: each on one thread
		// of the server (about 5% less server CPU per row than its default, the cores' count
		// each, at ten million rows).
		ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"max_threads": 1}))
		var rctx context.Context
		rctx, cancel = context.WithCancel(ctx)
		defer cancel() // reads not waited for end here
		ranges := []KeyRange{p.keys}
		if lo, hi, ok := p.keys.Split(p.split); ok {
			ranges = []KeyRange{lo, hi}
		}
		for _, kr := range ranges {
			early = append(early, s.startEarly(rctx, ExportColumnsQuery(s.db, p.req.Tenant, kr, "")))
		}
	}
	pk, err := s.pageKeys(ctx, p.req, p.whole, p.keys, p.sizeHint, early == nil)
	if err != nil || len(pk.page) == 0 {
		return p.req.UpTo, err
	}
	var g *gathered
	if early != nil && pk.byKey != nil {
		g, err = finishEarly(pk, early)
	} else {
		cancel() // the keys are not walked: read them by their hashes
		g, err = s.readBlocks(ctx, p.req, p.keys, pk)
	}
	if errors.Is(err, errNotInPlace) {
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

// earlyRead is one part of a page's data read under way beside the keys query (part r of
// n numbers its blocks r, r+n, r+2n, ... among the page's: finishEarly). It keeps its
// blocks until it is given its matcher (once the keys are known), then matches those and
// every later block as it comes.
type earlyRead struct {
	match  chan *matcher
	done   chan error
	blocks []block // its own, in order
}

func (s *Store) startEarly(ctx context.Context, query string) *earlyRead {
	e := &earlyRead{match: make(chan *matcher, 1), done: make(chan error, 1)}
	go func() {
		var m *matcher
		matched := 0
		catchUp := func() {
			for ; matched < len(e.blocks); matched++ {
				m.addBlock(e.blocks, matched)
			}
		}
		err := s.readData(ctx, query, false, func(b block) error {
			e.blocks = append(e.blocks, b)
			if m == nil {
				select {
				case m = <-e.match:
				default:
					return nil
				}
			}
			catchUp()
			return nil
		})
		if err == nil && m == nil {
			select {
			case m = <-e.match:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil {
			catchUp()
		}
		e.done <- err
	}()
	return e
}

// finishEarly hands the keys pk to the parts of the data read and waits for them.
func finishEarly(pk pageKeys, parts []*earlyRead) (*gathered, error) {
	at := newAt(len(pk.page))
	ms := make([]*matcher, len(parts))
	for r, e := range parts {
		ms[r] = newMatcher(pk, at)
		ms[r].stride, ms[r].offset = len(parts), r
		e.match <- ms[r]
	}
	var errs []error
	found, twice, most := 0, 0, 0
	for r, e := range parts {
		errs = append(errs, <-e.done)
		found, twice = found+ms[r].found, twice+ms[r].twice
		most = max(most, len(e.blocks))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if twice > 0 {
		return nil, fmt.Errorf("billing export: %d records of the page read by two parts of its data read", twice)
	}
	// The parts' blocks interleaved, as their matchers numbered them (a part with fewer
	// leaves empty blocks no record points to).
	blocks := make([]block, most*len(parts))
	for r, e := range parts {
		for k, b := range e.blocks {
			blocks[k*len(parts)+r] = b
		}
	}
	return done(blocks, at, found)
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

// rows is how many rows b holds.
func (b *block) rows() int { return len(b.str[0].Pos) }

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

// matcher finds the page's key of each row read and keeps each key's first rating in at:
// at[i] is the block and row of record i of the page (block << 32 | row), the block
// numbered k*stride+offset for the k-th of the blocks it is given. Matchers of disjoint
// record_id ranges may share at: each sets only its own keys'.
type matcher struct {
	pk             pageKeys
	walk           *keyWalker
	index          pageIndex
	at             []uint64
	found          int
	twice          int // keys another matcher found too
	stride, offset int
}

// none is at's value for a key not found yet.
const none = ^uint64(0)

func newAt(n int) []uint64 {
	at := make([]uint64, n)
	for i := range at {
		at[i] = none
	}
	return at
}

func newMatcher(pk pageKeys, at []uint64) *matcher {
	m := &matcher{pk: pk, at: at, stride: 1}
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
	// from the same state and are identical). A key's copies share its record_id, so an
	// earlier one is in a block of this matcher's.
	if prev := m.at[i]; prev == none {
		m.found++
	} else if int(prev>>32)%m.stride != m.offset {
		m.twice++ // the parts' ranges overlap: a broken split
		return
	} else if blocks[(int(prev>>32)-m.offset)/m.stride].u64[8][uint32(prev)] <= b.u64[8][row] {
		return
	}
	m.at[i] = uint64(bi*m.stride+m.offset)<<32 | uint64(row)
}

// addBlock adds every row of blocks[bi].
func (m *matcher) addBlock(blocks []block, bi int) {
	for row := range blocks[bi].rows() {
		m.add(blocks, bi, row)
	}
}

// done checks every key of the page has its record (found of len(at)): a key without one
// would be a hole in the stream (see export).
func done(blocks []block, at []uint64, found int) (*gathered, error) {
	if n := len(at); found != n {
		return nil, fmt.Errorf("billing export: %d of %d records of the page missing from rated_usage", n-found, n)
	}
	return &gathered{blocks: blocks, at: at}, nil
}

// readData runs query (ExportColumnsQuery; hash: with h) and calls each with every block
// as soon as it is decoded.
func (s *Store) readData(ctx context.Context, query string, hash bool, each func(b block) error) error {
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return fmt.Errorf("billing export: %w", err)
	}
	defer rows.Close()
	c := clickhouse.NewCursor(rows)
	if !c.Fast() {
		return errNotInPlace
	}
	gen := -1
	for c.Next() {
		if c.Gen() == gen {
			continue
		}
		gen = c.Gen()
		var b block
		if !b.view(c, hash) {
			return errNotInPlace
		}
		if err := each(b); err != nil {
			return err
		}
	}
	if err := c.Err(); err != nil {
		return fmt.Errorf("billing export: %w", err)
	}
	return nil
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
	m := newMatcher(pk, newAt(len(pk.page)))
	var blocks []block
	err = s.readData(ch.Context(ctx, ch.WithExternalTable(keys)), ExportColumnsQuery(s.db, req.Tenant, keyRange, "page_keys"),
		pk.byKey == nil, func(b block) error {
			blocks = append(blocks, b)
			m.addBlock(blocks, len(blocks)-1)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return done(blocks, m.at, m.found)
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
