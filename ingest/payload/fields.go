package payload

import (
	"strconv"

	"fleetmeter/record"
)

// field is one usage field a payload may set; recMeta.fields collects them as bits so a
// field set twice is caught without a map.
type field uint32

const (
	fieldBytesUp field = 1 << iota
	fieldBytesDown
	fieldDuration
	fieldEvents
	fieldRatingGroup
	fieldPLMN
	fieldCell
	fieldLat
	fieldLon
	fieldRAT
	fieldSST
	fieldSD
	fieldID
	fieldSeq
	fieldTS
	fieldEnd
)

// mark records that f was set on the record whose metadata is m.
func mark(m *recMeta, f field, name string) *record.InvalidError {
	if m.fields&uint32(f) != 0 {
		return invalid(ReasonDuplicateField, name+" given twice")
	}
	if f&(fieldID|fieldSeq) != 0 && m.fields&uint32(fieldID|fieldSeq) != 0 {
		return invalid(ReasonBadID, "id and seq are exclusive")
	}
	m.fields |= uint32(f)
	return nil
}

// counterFrom converts n (times 10^exp) to a counter within the limits.
func (p *Parser) counterFrom(name string, n num, exp int, round bool) (uint64, *record.InvalidError) {
	s, res := p.scale(n, exp, round)
	return p.checkCounter(name, s, res)
}

func (p *Parser) checkCounter(name string, s scaled, res convResult) (uint64, *record.InvalidError) {
	switch res {
	case convFraction:
		return 0, invalid(ReasonBadCounter, name+" is not an integer")
	case convOverflow:
		if s.neg {
			return 0, invalid(ReasonNegativeCounter, name+" is negative")
		}
		return 0, invalid(ReasonCounterOverflow, name+" does not fit 64 bits")
	case convNotNumber:
		return 0, invalid(ReasonBadField, name+" is not a number")
	}
	if s.neg {
		return 0, invalid(ReasonNegativeCounter, name+" is negative")
	}
	if s.mag > p.lim.MaxCounter {
		return 0, invalid(ReasonAbsurdCounter, name+" "+strconv.FormatUint(s.mag, 10)+" exceeds "+strconv.FormatUint(p.lim.MaxCounter, 10))
	}
	return s.mag, nil
}

// setCounter stores a counter field.
func (p *Parser) setCounter(u *record.Usage, f field, v uint64) {
	switch f {
	case fieldBytesUp:
		u.BytesUp = v
	case fieldBytesDown:
		u.BytesDown = v
	case fieldDuration:
		u.DurationMs = v
	case fieldEvents:
		u.Events = v
	}
}

// smallUint converts n to an integer in [0, max] for rating_group and slice_sst.
func (p *Parser) smallUint(name string, n num, max uint64) (uint64, *record.InvalidError) {
	s, res := p.scale(n, 0, false)
	if res != convOK || s.neg || s.mag > max {
		return 0, invalid(ReasonBadField, name+" must be an integer from 0 to "+strconv.FormatUint(max, 10))
	}
	return s.mag, nil
}

// setString validates and stores one of the string fields.
func (p *Parser) setString(u *record.Usage, f field, v []byte) *record.InvalidError {
	switch f {
	case fieldPLMN:
		if len(v) == 0 {
			return nil
		}
		if !record.ValidPLMN(v) {
			return invalid(ReasonBadField, "plmn "+record.QuoteInput(string(v))+" is not MCC-MNC")
		}
		u.PLMN = intern(&p.lastPLMN, v)
	case fieldCell:
		if !record.ValidCell(v) {
			return invalid(ReasonBadField, "cell must be at most "+strconv.Itoa(record.MaxCellLen)+" printable ASCII characters")
		}
		if len(v) > 0 {
			u.Cell = intern(&p.lastCell, v)
		}
	case fieldRAT:
		r, ok := canonicalRAT(v)
		if !ok {
			return invalid(ReasonBadField, "rat "+record.QuoteInput(string(v))+" is not NR, EUTRA, NB-IoT, LTE-M or WLAN")
		}
		u.RAT = r
	case fieldSD:
		if len(v) == 0 {
			return nil
		}
		// Hex digits in either case, kept in lower case as usage.v1 writes them.
		var lower [6]byte
		if len(v) == len(lower) {
			for i, c := range v {
				if c >= 'A' && c <= 'F' {
					c += 'a' - 'A'
				}
				lower[i] = c
			}
		}
		if len(v) != len(lower) || !record.ValidSliceSD(lower[:]) {
			return invalid(ReasonBadField, "slice_sd must be 6 hex digits")
		}
		u.SliceSD = intern(&p.lastSD, lower[:])
	}
	return nil
}

// intern returns v as a string, reusing *last when it holds the same bytes.
func intern(last *string, v []byte) string {
	if string(v) != *last {
		*last = string(v)
	}
	return *last
}

// canonicalRAT maps a radio access type, compared without case, '-' and '_', to its
// usage.v1 spelling. "LTE" is EUTRA.
func canonicalRAT(v []byte) (string, bool) {
	var k [8]byte
	n := 0
	for _, c := range v {
		if c == '-' || c == '_' {
			continue
		}
		if n == len(k) {
			return "", false
		}
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		k[n] = c
		n++
	}
	switch string(k[:n]) {
	case "":
		return "", true
	case "NR":
		return "NR", true
	case "EUTRA", "LTE":
		return "EUTRA", true
	case "NBIOT":
		return "NB-IoT", true
	case "LTEM":
		return "LTE-M", true
	case "WLAN":
		return "WLAN", true
	}
	return "", false
}

// setID stores a device-supplied string id: 1 to 64 of [A-Za-z0-9._-], so it can never
// look like the '#' hash ids nor split the ':'-joined event id.
func (p *Parser) setID(m *recMeta, v []byte) *record.InvalidError {
	if len(v) == 0 || len(v) > 64 {
		return invalid(ReasonBadID, "id must be 1 to 64 characters")
	}
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c == '-') {
			return invalid(ReasonBadID, "id may hold only letters, digits, '.', '_' and '-'")
		}
	}
	m.idStart = len(p.ids)
	p.ids = append(p.ids, v...)
	m.idEnd = len(p.ids)
	return nil
}

// setIDNum stores a numeric id or seq: a non-negative integer, written in decimal.
func (p *Parser) setIDNum(m *recMeta, name string, n num) *record.InvalidError {
	s, res := p.scale(n, 0, false)
	if res != convOK || s.neg {
		return invalid(ReasonBadID, name+" must be a non-negative integer")
	}
	m.idStart = len(p.ids)
	p.ids = strconv.AppendUint(p.ids, s.mag, 10)
	m.idEnd = len(p.ids)
	return nil
}

// setCoord stores lat or lon; the pair and the range are checked when the record is done.
func (p *Parser) setCoord(u *record.Usage, f field, n num, bv num) *record.InvalidError {
	v, ok := p.float(n)
	if ok && bv.kind != numNone {
		var b float64
		b, ok = p.float(bv)
		v += b
	}
	if !ok {
		return invalid(ReasonBadPosition, "position is not a finite number")
	}
	if f == fieldLat {
		u.Lat = v
	} else {
		u.Lon = v
	}
	return nil
}

// ms limits for times: about year 33658, far beyond any stale or future check, small
// enough that received +- the limits never overflows.
const maxTimeMs = 1e15

// timeFromNum reads a time as ms: exp is the power of ten that turns the value into ms
// (0 for ms, 3 for seconds); sub-millisecond parts are rounded.
func (p *Parser) timeFromNum(name string, n num, exp int) (int64, *record.InvalidError) {
	s, res := p.scale(n, exp, true)
	if res != convOK {
		return 0, invalid(ReasonBadTime, name+" is not a number in range")
	}
	t, ok := s.int64(maxTimeMs)
	if !ok {
		return 0, invalid(ReasonBadTime, name+" is out of range")
	}
	return t, nil
}
