package payload

import (
	"strconv"

	"fleetmeter/record"
)

// parseSenMLJSON decodes a SenML JSON pack (RFC 8428 section 5): an array of records.
func (p *Parser) parseSenMLJSON(data []byte, into []record.Usage) ([]record.Usage, *record.InvalidError) {
	s := scanner{data: data, reason: ReasonBadSenML, buf: &p.buf}
	p.senmlReset()
	if s.next() != valArray {
		return into, s.fail("a SenML pack is an array")
	}
	s.pos++
	if s.consume(']') {
		return into, s.end()
	}
	var r senmlRec
	for n := 1; ; n++ {
		if n > p.lim.MaxRecords {
			return into, invalid(ReasonTooManyRecords, "more than "+strconv.Itoa(p.lim.MaxRecords)+" records")
		}
		p.buf = p.buf[:0]
		r = senmlRec{}
		if err := p.senmlJSONRecord(&s, &r); err != nil {
			return into, err
		}
		var err *record.InvalidError
		if into, err = p.senmlApply(&r, into); err != nil {
			return into, err
		}
		if s.consume(']') {
			break
		}
		if err := s.expect(','); err != nil {
			return into, err
		}
	}
	return into, s.end()
}

// senmlJSONRecord decodes one record object.
func (p *Parser) senmlJSONRecord(s *scanner, r *senmlRec) *record.InvalidError {
	if !s.consume('{') {
		return s.fail("a SenML record is an object")
	}
	if s.consume('}') {
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		l := senmlJSONLabel(key)
		if l == labelUnknown {
			return invalid(ReasonUnknownField, "unknown SenML field "+record.QuoteInput(string(key)))
		}
		if !r.set(l) {
			return invalid(ReasonDuplicateField, "SenML field "+labelNames[l]+" given twice")
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		switch l {
		case labelBN, labelBU, labelN, labelU, labelVS, labelVD:
			if s.next() != valString {
				return invalid(ReasonBadSenML, labelNames[l]+" must be a string")
			}
			v, err := s.str()
			if err != nil {
				return err
			}
			switch l {
			case labelBN:
				r.bn = v
			case labelBU:
				r.bu = v
			case labelN:
				r.n = v
			case labelU:
				r.u = v
			case labelVS:
				r.vs = v
			case labelVD:
				r.vd = v
			}
		case labelVB:
			switch s.next() {
			case valTrue:
				r.vb = true
				err = s.literal("true")
			case valFalse:
				err = s.literal("false")
			default:
				return invalid(ReasonBadSenML, "vb must be a boolean")
			}
			if err != nil {
				return err
			}
		default:
			if s.next() != valNumber {
				return invalid(ReasonBadSenML, labelNames[l]+" must be a number")
			}
			raw, err := s.number()
			if err != nil {
				return err
			}
			n := num{kind: numDec, raw: raw}
			switch l {
			case labelBT:
				r.bt = n
			case labelBV:
				r.bv = n
			case labelBS:
				r.bs = n
			case labelBVer:
				r.bver = n
			case labelV:
				r.v = n
			case labelS:
				r.s = n
			case labelT:
				r.t = n
			case labelUT:
				r.ut = n
			}
		}
		if s.consume('}') {
			return nil
		}
		if err := s.expect(','); err != nil {
			return err
		}
	}
}
