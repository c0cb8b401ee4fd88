package payload

import (
	"strconv"

	"fleetmeter/record"
)

// jsonKeys maps the plain JSON keys to fields. A switch on the key compiles to
// comparisons without allocation.
func jsonKey(k []byte) (field, string) {
	switch string(k) {
	case "id":
		return fieldID, "id"
	case "seq":
		return fieldSeq, "seq"
	case "ts":
		return fieldTS, "ts"
	case "end":
		return fieldEnd, "end"
	case "bytes_up":
		return fieldBytesUp, "bytes_up"
	case "bytes_down":
		return fieldBytesDown, "bytes_down"
	case "duration_ms":
		return fieldDuration, "duration_ms"
	case "events":
		return fieldEvents, "events"
	case "rating_group":
		return fieldRatingGroup, "rating_group"
	case "plmn":
		return fieldPLMN, "plmn"
	case "cell":
		return fieldCell, "cell"
	case "lat":
		return fieldLat, "lat"
	case "lon":
		return fieldLon, "lon"
	case "rat":
		return fieldRAT, "rat"
	case "slice_sst":
		return fieldSST, "slice_sst"
	case "slice_sd":
		return fieldSD, "slice_sd"
	}
	return 0, ""
}

// parseJSON decodes a plain JSON payload: one object or an array of objects.
func (p *Parser) parseJSON(data []byte, into []record.Usage) ([]record.Usage, *record.InvalidError) {
	s := scanner{data: data, reason: ReasonBadJSON, buf: &p.buf}
	p.buf = p.buf[:0]
	var err *record.InvalidError
	switch s.next() {
	case valObject:
		into, err = p.jsonObject(&s, into)
	case valArray:
		s.pos++
		if !s.consume(']') {
			for n := 1; ; n++ {
				if n > p.lim.MaxRecords {
					return into, invalid(ReasonTooManyRecords, "more than "+strconv.Itoa(p.lim.MaxRecords)+" records")
				}
				if s.next() != valObject {
					return into, s.fail("expected object")
				}
				if into, err = p.jsonObject(&s, into); err != nil {
					return into, err
				}
				if s.consume(']') {
					break
				}
				if err := s.expect(','); err != nil {
					return into, err
				}
			}
		}
	default:
		return into, s.fail("expected object or array")
	}
	if err != nil {
		return into, err
	}
	return into, s.end()
}

// jsonObject decodes one object into a new record.
func (p *Parser) jsonObject(s *scanner, into []record.Usage) ([]record.Usage, *record.InvalidError) {
	s.pos++ // '{'
	into, i := p.newRecord(into)
	u := &into[i]
	m := &p.meta[len(p.meta)-1]
	if s.consume('}') {
		return into, nil
	}
	for {
		p.buf = p.buf[:0]
		key, err := s.str()
		if err != nil {
			return into, err
		}
		f, name := jsonKey(key)
		if f == 0 {
			return into, invalid(ReasonUnknownField, "unknown key "+record.QuoteInput(string(key)))
		}
		if err := s.expect(':'); err != nil {
			return into, err
		}
		if err := p.jsonValue(s, u, m, f, name); err != nil {
			return into, err
		}
		if s.consume('}') {
			return into, nil
		}
		if err := s.expect(','); err != nil {
			return into, err
		}
	}
}

// jsonValue decodes the value of key name into field f. null means absent.
func (p *Parser) jsonValue(s *scanner, u *record.Usage, m *recMeta, f field, name string) *record.InvalidError {
	var n num
	var str []byte
	switch s.next() {
	case valNull:
		return s.literal("null")
	case valNumber:
		raw, err := s.number()
		if err != nil {
			return err
		}
		n = num{kind: numDec, raw: raw}
	case valString:
		v, err := s.str()
		if err != nil {
			return err
		}
		str = v
	case valTrue, valFalse, valObject, valArray:
		return wrongType(f, name)
	default:
		return s.fail("expected value")
	}
	if err := mark(m, f, name); err != nil {
		return err
	}
	isNum := n.kind != numNone
	switch f {
	case fieldBytesUp, fieldBytesDown, fieldDuration, fieldEvents:
		if !isNum {
			return invalid(ReasonBadField, name+" must be a number")
		}
		v, err := p.counterFrom(name, n, 0, false)
		if err != nil {
			return err
		}
		p.setCounter(u, f, v)
	case fieldRatingGroup:
		if !isNum {
			return invalid(ReasonBadField, name+" must be a number")
		}
		v, err := p.smallUint(name, n, 1<<32-1)
		if err != nil {
			return err
		}
		u.RatingGroup = uint32(v)
	case fieldSST:
		if !isNum {
			return invalid(ReasonBadField, name+" must be a number")
		}
		v, err := p.smallUint(name, n, 255)
		if err != nil {
			return err
		}
		u.SliceSST, u.HasSlice = uint8(v), true
	case fieldPLMN, fieldCell, fieldRAT, fieldSD:
		if isNum {
			return invalid(ReasonBadField, name+" must be a string")
		}
		return p.setString(u, f, str)
	case fieldLat, fieldLon:
		if !isNum {
			return invalid(ReasonBadPosition, name+" must be a number")
		}
		return p.setCoord(u, f, n, num{})
	case fieldID:
		if isNum {
			return p.setIDNum(m, name, n)
		}
		return p.setID(m, str)
	case fieldSeq:
		if !isNum {
			return invalid(ReasonBadID, "seq must be a number")
		}
		return p.setIDNum(m, name, n)
	case fieldTS, fieldEnd:
		var t int64
		if isNum {
			var err *record.InvalidError
			if t, err = p.timeFromNum(name, n, 0); err != nil {
				return err
			}
		} else {
			var ok bool
			if t, ok = record.ParseRFC3339(str); !ok {
				return invalid(ReasonBadTime, name+" "+record.QuoteInput(string(str))+" is neither RFC 3339 nor epoch ms")
			}
		}
		if f == fieldTS {
			u.StartTime = t
		} else {
			u.EndTime = t
		}
	}
	return nil
}

// wrongType reports a value of the wrong JSON type under the reason of its field family.
func wrongType(f field, name string) *record.InvalidError {
	reason := ReasonBadField
	switch f {
	case fieldTS, fieldEnd:
		reason = ReasonBadTime
	case fieldLat, fieldLon:
		reason = ReasonBadPosition
	case fieldID, fieldSeq:
		reason = ReasonBadID
	}
	return invalid(reason, name+" has the wrong type")
}
