package payload

import (
	"bytes"
	"strconv"

	"fleetmeter/record"
)

// label is a SenML field (RFC 8428 section 4, CBOR labels in section 6).
type label uint8

const (
	labelUnknown label = iota
	labelBN
	labelBT
	labelBU
	labelBV
	labelBS
	labelBVer
	labelN
	labelU
	labelV
	labelVS
	labelVB
	labelVD
	labelS
	labelT
	labelUT
)

var labelNames = [...]string{"?", "bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}

func senmlJSONLabel(k []byte) label {
	switch string(k) {
	case "bn":
		return labelBN
	case "bt":
		return labelBT
	case "bu":
		return labelBU
	case "bv":
		return labelBV
	case "bs":
		return labelBS
	case "bver":
		return labelBVer
	case "n":
		return labelN
	case "u":
		return labelU
	case "v":
		return labelV
	case "vs":
		return labelVS
	case "vb":
		return labelVB
	case "vd":
		return labelVD
	case "s":
		return labelS
	case "t":
		return labelT
	case "ut":
		return labelUT
	}
	return labelUnknown
}

func senmlCBORLabel(k int64) label {
	switch k {
	case -2:
		return labelBN
	case -3:
		return labelBT
	case -4:
		return labelBU
	case -5:
		return labelBV
	case -6:
		return labelBS
	case -1:
		return labelBVer
	case 0:
		return labelN
	case 1:
		return labelU
	case 2:
		return labelV
	case 3:
		return labelVS
	case 4:
		return labelVB
	case 8:
		return labelVD
	case 5:
		return labelS
	case 6:
		return labelT
	case 7:
		return labelUT
	}
	return labelUnknown
}

// senmlRec is one SenML record as decoded, before base fields are applied. Byte slices
// are views into the payload or the Parser's string arena.
type senmlRec struct {
	has                  uint32 // 1<<label for each label present
	bn, bu, n, u, vs, vd []byte
	bt, bv, bs, bver     num
	v, s, t, ut          num
	vb                   bool
}

func (r *senmlRec) set(l label) bool {
	if r.has&(1<<l) != 0 {
		return false
	}
	r.has |= 1 << l
	return true
}

func (r *senmlRec) is(l label) bool { return r.has&(1<<l) != 0 }

// senmlState is what earlier records of a pack leave for later ones: the base fields.
type senmlState struct {
	bn, bu []byte // copies: the arena holding the originals is reset per record
	btMs   int64
	bv     num // views into the payload only (numbers are never unescaped)
}

func (p *Parser) senmlReset() {
	p.sm.bn = p.sm.bn[:0]
	p.sm.bu = p.sm.bu[:0]
	p.sm.btMs = 0
	p.sm.bv = num{}
}

// senmlMeasure describes one name of the fleetmeter SenML profile.
type senmlMeasure struct {
	f     field
	name  string
	str   bool     // value in vs, not v
	units []string // accepted units; "" is no unit
}

// baseUnit reports whether the pack's base unit applies: only to the names measured in a
// physical unit. Counts, codes, strings and positions take only an explicit u.
func (m senmlMeasure) baseUnit() bool {
	return m.f&(fieldBytesUp|fieldBytesDown|fieldDuration) != 0
}

// senmlProfile lists the names of the fleetmeter SenML profile (README.md).
func senmlName(n []byte) (senmlMeasure, bool) {
	switch string(n) {
	case "bytes_up":
		return senmlMeasure{fieldBytesUp, "bytes_up", false, unitsBytes}, true
	case "bytes_down":
		return senmlMeasure{fieldBytesDown, "bytes_down", false, unitsBytes}, true
	case "duration":
		return senmlMeasure{fieldDuration, "duration", false, unitsDuration}, true
	case "events":
		return senmlMeasure{fieldEvents, "events", false, unitsCount}, true
	case "rating_group":
		return senmlMeasure{fieldRatingGroup, "rating_group", false, unitsNone}, true
	case "slice_sst":
		return senmlMeasure{fieldSST, "slice_sst", false, unitsNone}, true
	case "lat":
		return senmlMeasure{fieldLat, "lat", false, unitsLat}, true
	case "lon":
		return senmlMeasure{fieldLon, "lon", false, unitsLon}, true
	case "plmn":
		return senmlMeasure{fieldPLMN, "plmn", true, unitsNone}, true
	case "cell":
		return senmlMeasure{fieldCell, "cell", true, unitsNone}, true
	case "rat":
		return senmlMeasure{fieldRAT, "rat", true, unitsNone}, true
	case "slice_sd":
		return senmlMeasure{fieldSD, "slice_sd", true, unitsNone}, true
	case "id":
		return senmlMeasure{fieldID, "id", true, unitsNone}, true
	case "seq":
		return senmlMeasure{fieldSeq, "seq", false, unitsNone}, true
	}
	return senmlMeasure{}, false
}

var (
	unitsNone     = []string{""}
	unitsBytes    = []string{"", "B"}
	unitsCount    = []string{"", "count"}
	unitsDuration = []string{"s", "ms"}
	unitsLat      = []string{"", "lat"}
	unitsLon      = []string{"", "lon"}
)

// relativeLimitMs: RFC 8428 section 4.5.3, resolved times below 2^28 s are relative to now.
const relativeLimitMs = (1 << 28) * 1000

// senmlApply resolves one record against the pack's base fields and merges it into the
// usage record of its resolved time.
func (p *Parser) senmlApply(r *senmlRec, into []record.Usage) ([]record.Usage, *record.InvalidError) {
	st := &p.sm
	if r.is(labelBVer) {
		s, res := p.scale(r.bver, 0, false)
		if res != convOK || s.neg || s.mag == 0 || s.mag > 10 {
			return into, invalid(ReasonBadSenML, "bver must be an integer from 1 to 10")
		}
	}
	if r.is(labelBN) {
		if len(r.bn) > 0 && !p.devicePrefix(r.bn) {
			return into, invalid(ReasonDeviceMismatch, "base name "+record.QuoteInput(string(r.bn))+" does not name device "+record.QuoteInput(p.id.Device))
		}
		st.bn = append(st.bn[:0], r.bn...)
	}
	if r.is(labelBT) {
		t, err := p.timeFromNum("bt", r.bt, 3)
		if err != nil {
			return into, err
		}
		st.btMs = t
	}
	if r.is(labelBU) {
		st.bu = append(st.bu[:0], r.bu...)
	}
	if r.is(labelBV) {
		if _, ok := p.float(r.bv); !ok {
			return into, invalid(ReasonBadSenML, "bv is not a finite number")
		}
		st.bv = r.bv
	}
	if r.is(labelBS) {
		if _, ok := p.float(r.bs); !ok {
			return into, invalid(ReasonBadSenML, "bs is not a finite number")
		}
	}
	if r.is(labelUT) {
		if _, ok := p.float(r.ut); !ok {
			return into, invalid(ReasonBadSenML, "ut is not a finite number")
		}
	}
	values := 0
	for _, l := range [...]label{labelV, labelVS, labelVB, labelVD} {
		if r.is(l) {
			values++
		}
	}
	if r.is(labelS) {
		return into, invalid(ReasonBadSenML, "sum (s) is not part of the fleetmeter profile")
	}
	if values == 0 {
		if r.is(labelN) || r.is(labelU) || r.is(labelT) {
			return into, invalid(ReasonBadSenML, "record has no value")
		}
		return into, nil // base fields only
	}
	if values > 1 {
		return into, invalid(ReasonBadSenML, "record has more than one value")
	}

	// Name.
	name := r.n
	if len(st.bn) == 0 {
		if i := bytes.LastIndexAny(name, ":/"); i >= 0 {
			if !p.devicePrefix(name[:i+1]) {
				return into, invalid(ReasonDeviceMismatch, "name "+record.QuoteInput(string(name))+" does not name device "+record.QuoteInput(p.id.Device))
			}
			name = name[i+1:]
		}
	}
	if len(name) == 0 {
		return into, invalid(ReasonBadSenML, "record has no name")
	}
	ms, ok := senmlName(name)
	if !ok {
		return into, invalid(ReasonUnknownField, "name "+record.QuoteInput(string(name))+" is not in the fleetmeter SenML profile")
	}
	var unit []byte
	if ms.baseUnit() {
		unit = st.bu
	}
	if r.is(labelU) {
		unit = r.u
	}
	if !acceptsUnit(ms.units, unit) {
		return into, invalid(ReasonBadUnit, ms.name+" does not take unit "+record.QuoteInput(string(unit)))
	}

	// Time, and the usage record of that time.
	var tMs int64
	if r.is(labelT) {
		var err *record.InvalidError
		if tMs, err = p.timeFromNum("t", r.t, 3); err != nil {
			return into, err
		}
	}
	at := st.btMs + tMs
	if at < relativeLimitMs {
		at += p.received
	}
	into, i := p.senmlRecord(into, at)
	u, m := &into[i], &p.meta[i-p.base]
	if err := mark(m, ms.f, ms.name); err != nil {
		return into, err
	}

	// Value.
	if ms.f == fieldID && r.is(labelV) {
		s, res := p.senmlNum(r, 0, false)
		if res != convOK || s.neg {
			return into, invalid(ReasonBadID, "id must be a non-negative integer or a string")
		}
		return into, p.setIDNum(m, "id", num{kind: numInt, u: s.mag})
	}
	if ms.str != r.is(labelVS) {
		want := "a number (v)"
		if ms.str {
			want = "a string (vs)"
		}
		return into, wrongTypeMsg(ms.f, ms.name+" must be "+want)
	}
	switch ms.f {
	case fieldBytesUp, fieldBytesDown, fieldEvents, fieldDuration:
		exp, round := 0, false
		if ms.f == fieldDuration {
			round = true // durations are rounded to the millisecond
			if string(unit) == "s" {
				exp = 3
			}
		}
		s, res := p.senmlNum(r, exp, round)
		v, err := p.checkCounter(ms.name, s, res)
		if err != nil {
			return into, err
		}
		p.setCounter(u, ms.f, v)
	case fieldRatingGroup, fieldSST:
		max := uint64(1<<32 - 1)
		if ms.f == fieldSST {
			max = 255
		}
		s, res := p.senmlNum(r, 0, false)
		if res != convOK || s.neg || s.mag > max {
			return into, invalid(ReasonBadField, ms.name+" must be an integer from 0 to "+strconv.FormatUint(max, 10))
		}
		if ms.f == fieldSST {
			u.SliceSST, u.HasSlice = uint8(s.mag), true
		} else {
			u.RatingGroup = uint32(s.mag)
		}
	case fieldLat, fieldLon:
		return into, p.setCoord(u, ms.f, r.v, st.bv)
	case fieldSeq:
		s, res := p.senmlNum(r, 0, false)
		if res != convOK || s.neg {
			return into, invalid(ReasonBadID, "seq must be a non-negative integer")
		}
		return into, p.setIDNum(m, "seq", num{kind: numInt, u: s.mag})
	case fieldID:
		return into, p.setID(m, r.vs)
	default:
		return into, p.setString(u, ms.f, r.vs)
	}
	return into, nil
}

// senmlNum returns bv + v, times 10^exp.
func (p *Parser) senmlNum(r *senmlRec, exp int, round bool) (scaled, convResult) {
	s, res := p.scale(r.v, exp, round)
	if res != convOK || p.sm.bv.kind == numNone {
		return s, res
	}
	b, res := p.scale(p.sm.bv, exp, round)
	if res != convOK {
		return b, res
	}
	sum, ok := s.add(b)
	if !ok {
		return scaled{neg: s.neg}, convOverflow
	}
	return sum, convOK
}

// senmlRecord returns the index in into of the usage record at time at, adding it if
// this pack has none yet. Packs usually list a time's records together, so the search
// runs from the newest record.
func (p *Parser) senmlRecord(into []record.Usage, at int64) ([]record.Usage, int) {
	for j := len(p.meta) - 1; j >= 0; j-- {
		if p.meta[j].timeKey == at {
			return into, p.base + j
		}
	}
	into, i := p.newRecord(into)
	m := &p.meta[i-p.base]
	m.timeKey = at
	m.fields |= uint32(fieldTS)
	into[i].StartTime = at
	return into, i
}

// devicePrefix reports whether b names the transport's device as a SenML base name:
// "<device>", "<device>:", "<device>/" or "urn:dev:<type>:<device>:".
func (p *Parser) devicePrefix(b []byte) bool {
	d := p.id.Device
	switch {
	case string(b) == d:
		return true
	case len(b) == len(d)+1 && string(b[:len(d)]) == d && (b[len(d)] == ':' || b[len(d)] == '/'):
		return true
	}
	const urn = "urn:dev:"
	if len(b) < len(urn)+len(d)+3 || string(b[:len(urn)]) != urn || b[len(b)-1] != ':' {
		return false
	}
	rest := b[len(urn) : len(b)-1] // "<type>:<device>"
	k := len(rest) - len(d)
	return string(rest[k:]) == d && rest[k-1] == ':' && k-1 > 0
}

func acceptsUnit(units []string, u []byte) bool {
	for _, a := range units {
		if string(u) == a {
			return true
		}
	}
	return false
}

func wrongTypeMsg(f field, msg string) *record.InvalidError {
	e := wrongType(f, "")
	e.Msg = msg
	return e
}
