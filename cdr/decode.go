package cdr

import (
	"encoding/binary"
	"math"
	"strconv"

	"fleetmeter/record"
)

// DecodeError reports damaged input: the byte offset where decoding stopped and the
// 1-based number of the CDR being read (0 for the file header). Every record before
// that CDR was decoded.
type DecodeError struct {
	Offset int64
	Record int
	Msg    string
}

func (e *DecodeError) Error() string {
	if e.Record == 0 {
		return "decode cdr: offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Msg
	}
	return "decode cdr: offset " + strconv.FormatInt(e.Offset, 10) + ", record " + strconv.Itoa(e.Record) + ": " + e.Msg
}

// Config configures a Decoder.
type Config struct {
	Tenants TenantMap `yaml:"tenants"`
}

// DefaultConfig maps every CDR to no tenant: the pipeline rejects such records, so a
// deployment must set tenants.default or rules.
func DefaultConfig() Config { return Config{} }

// Validate checks the configuration, naming the broken keys.
func (c *Config) Validate() error { return c.Tenants.Validate() }

// Stats counts what a Decoder has seen since it was made.
type Stats struct {
	CDRs        uint64 // CHFRecords decoded
	Records     uint64 // usage records emitted (one per used unit container)
	NoUsage     uint64 // CHFRecords without any used unit container: nothing to emit
	BadLocation uint64 // unreadable userLocationInformation: plmn and cell left empty
}

// Decoder turns CHF CDRs (TS 32.298 CHFRecord, BER) into usage.v1 records. It is pure:
// bytes in, records out. A Decoder reuses internal buffers and is not safe for
// concurrent use; make one per goroutine.
type Decoder struct {
	// ReceivedTime is copied into every record's received_time (ms since the epoch);
	// 0 leaves it for the caller.
	ReceivedTime int64

	tenants  tenantRules
	r        reader
	units    []unit
	strs     []byte    // event ids and devices of records not yet patched
	marks    []strMark // one per record not yet patched
	pending  int       // index in the output of the first record not yet patched
	scratch  []byte
	in       interner
	ulis     uliCache
	consumed int
	stats    Stats
}

// NewDecoder validates cfg and returns a Decoder.
func NewDecoder(cfg Config) (*Decoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Decoder{tenants: compileTenants(&cfg.Tenants)}, nil
}

// Stats returns the counters so far.
func (d *Decoder) Stats() Stats { return d.stats }

// Consumed returns how many bytes of the last Decode input ended in whole, decoded CDRs
// (the file header included): the valid prefix.
func (d *Decoder) Consumed() int { return d.consumed }

// Decode appends the usage records of every CHFRecord in b to into and returns it. b is a
// TS 32.297 CDR file (with free5gc's 52-octet header variant) or raw concatenated
// CHFRecords, told apart by the first octet. On damaged input it returns the records of
// every CDR before the damage and a *DecodeError; those records are exactly what the
// undamaged file gives.
//
// The records' event_id and device strings share one backing allocation per batch of
// CDRs; retaining one record retains its batch (at most a few KiB).
func (d *Decoder) Decode(b []byte, into []record.Usage) ([]record.Usage, error) {
	d.r.reset(b)
	d.consumed = 0
	d.strs, d.marks, d.pending = d.strs[:0], d.marks[:0], len(into)
	var err error
	switch {
	case len(b) == 0:
	case isRawBER(b):
		into, err = d.decodeRaw(b, into)
	default:
		into, err = d.decodeFile(b, into)
	}
	d.patch(into)
	d.r.reset(nil) // do not keep the caller's input alive
	return into, err
}

func (d *Decoder) decodeRaw(b []byte, into []record.Usage) ([]record.Usage, error) {
	for off, n := 0, 1; off < len(b); n++ {
		t := d.r.elem(off, len(b))
		if !d.r.failed {
			into = d.chfRecord(t, into)
		}
		if d.r.failed {
			return into, d.errAt(n)
		}
		off = t.next
		d.consumed = off
	}
	return into, nil
}

func (d *Decoder) decodeFile(b []byte, into []record.Usage) ([]record.Usage, error) {
	var h FileHeader
	if off, msg := parseFileHeader(b, &h); msg != "" {
		return into, &DecodeError{Offset: int64(off), Msg: msg}
	}
	limit := len(b)
	if h.FileLength >= h.HeaderLength && int64(h.FileLength) < int64(limit) {
		limit = int(h.FileLength)
	}
	off, n := int(h.HeaderLength), 0
	d.consumed = off
	for off < limit {
		n++
		ch, msg := parseCDRHeader(b[:limit], off)
		switch {
		case msg != "":
		case ch.format != 1:
			msg = "data record format " + strconv.Itoa(int(ch.format)) + " is not BER (1)"
		case ch.length == 0:
			msg = "empty CDR"
		case ch.length > limit-off-ch.size:
			msg = "CDR length " + strconv.Itoa(ch.length) + " exceeds the " + strconv.Itoa(limit-off-ch.size) + " bytes left"
		}
		if msg != "" {
			return into, &DecodeError{Offset: int64(off), Record: n, Msg: msg}
		}
		body, end := off+ch.size, off+ch.size+ch.length
		t := d.r.elem(body, end)
		if !d.r.failed && t.next != end {
			d.r.fail(t.next, "CDR length "+strconv.Itoa(ch.length)+" but the record takes "+strconv.Itoa(t.next-body))
		}
		if !d.r.failed {
			into = d.chfRecord(t, into)
		}
		if d.r.failed {
			return into, d.errAt(n)
		}
		off = end
		d.consumed = off
	}
	switch fl := int64(h.FileLength); {
	case fl == 0: // not stated
	case fl > int64(len(b)):
		return into, &DecodeError{Offset: int64(len(b)), Record: n + 1, Msg: "truncated file: header says " + strconv.FormatInt(fl, 10) + " bytes"}
	case fl < int64(len(b)):
		return into, &DecodeError{Offset: fl, Record: n + 1, Msg: strconv.Itoa(len(b)-limit) + " bytes after the file length the header states"}
	}
	if h.CDRCount != 0 && h.CDRCount != math.MaxUint32 && int64(h.CDRCount) != int64(n) {
		return into, &DecodeError{Offset: int64(limit), Record: n + 1, Msg: "file header counts " + strconv.FormatUint(uint64(h.CDRCount), 10) + " CDRs, found " + strconv.Itoa(n)}
	}
	return into, nil
}

func (d *Decoder) errAt(n int) error {
	return &DecodeError{Offset: int64(d.r.errOff), Record: n, Msg: d.r.errMsg}
}

// strMark locates a record's event_id and device in Decoder.strs.
type strMark struct{ ev0, ev1, dev0, dev1 int32 }

// patchEvery bounds the shared string block (and what one retained record keeps alive).
const patchEvery = 8 << 10

// patch turns the pending string block into one string and points the pending records'
// event_id and device into it: one allocation per batch instead of two per record.
func (d *Decoder) patch(out []record.Usage) {
	if len(d.marks) == 0 {
		d.strs = d.strs[:0]
		return
	}
	s := string(d.strs)
	recs := out[d.pending:]
	for i := range recs {
		m := d.marks[i]
		recs[i].EventID = s[m.ev0:m.ev1]
		recs[i].Device = s[m.dev0:m.dev1]
	}
	d.strs, d.marks, d.pending = d.strs[:0], d.marks[:0], len(out)
}

// interner hands out one string per distinct low-cardinality value (PLMN, cell, slice
// differentiator) from a small two-way set-associative cache: no map, no allocation on a
// hit. A miss evicts the set's older entry.
type interner struct{ tab [1024][2]string }

func (in *interner) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	set := &in.tab[h%uint32(len(in.tab))]
	if set[0] == string(b) {
		return set[0]
	}
	if set[1] == string(b) {
		set[0], set[1] = set[1], set[0]
		return set[0]
	}
	set[1] = set[0]
	set[0] = string(b)
	return set[0]
}

// uliCache remembers what recent userLocationInformation values read as. A ULI names a
// tracking area and a cell and nothing of the subscriber, so every session in a cell
// carries the same bytes: a hit costs a hash of a few words and one comparison instead
// of reading the JSON (about a tenth of the decoder's time when every ULI is new). It is
// direct-mapped; a miss replaces the slot's entry, copying the ULI.
type uliCache struct{ tab [512]uliEntry }

type uliEntry struct {
	uli        string // the ULI as read
	plmn, cell string
	bad        bool
	set        bool // false: an empty slot, which must not pass for the empty ULI
}

// lookup returns the slot for uli: its entry when e.set && e.uli == string(uli), else
// the one to overwrite.
func (c *uliCache) lookup(uli []byte) *uliEntry {
	// The values sit at the end of the JSON (the cell id last): hash the length and the
	// last 24 bytes, read as words.
	h := uint64(len(uli)) * 0x9E3779B97F4A7C15
	if n := len(uli); n >= 24 {
		for _, o := range [3]int{n - 24, n - 16, n - 8} {
			h = (h ^ binary.LittleEndian.Uint64(uli[o:])) * 0xBF58476D1CE4E5B9
		}
	} else {
		for _, b := range uli {
			h = (h ^ uint64(b)) * 0xBF58476D1CE4E5B9
		}
	}
	return &c.tab[(h>>32)%uint64(len(c.tab))]
}
