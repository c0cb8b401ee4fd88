package cdr

import "encoding/binary"

// location is what the decoder takes from a TS 29.571 UserLocation (JSON): the cell
// global id (NCGI or ECGI) with its PLMN, and the TAI. Byte slices alias the input.
type location struct {
	cgiMCC, cgiMNC, cellID []byte
	taiMCC, taiMNC, tac    []byte
}

// Keys of interest, by nesting level of the UserLocation object.
const (
	keyOther = iota
	keyNR    // nrLocation
	keyEUTRA // eutraLocation
	keyN3GA  // n3gaLocation
	keyTAI   // tai, n3gppTai
	keyCGI   // ncgi, ecgi
	keyPLMN  // plmnId
	keyMCC
	keyMNC
	keyTAC
	keyCell // nrCellId, eutraCellId
)

func classifyKey(level int, k []byte) int {
	switch level {
	case 0:
		switch string(k) {
		case "nrLocation":
			return keyNR
		case "eutraLocation":
			return keyEUTRA
		case "n3gaLocation":
			return keyN3GA
		}
	case 1:
		switch string(k) {
		case "tai", "n3gppTai":
			return keyTAI
		case "ncgi", "ecgi":
			return keyCGI
		}
	case 2:
		switch string(k) {
		case "plmnId":
			return keyPLMN
		case "tac":
			return keyTAC
		case "nrCellId", "eutraCellId":
			return keyCell
		}
	case 3:
		switch string(k) {
		case "mcc":
			return keyMCC
		case "mnc":
			return keyMNC
		}
	}
	return keyOther
}

// jsonLoc is a minimal JSON scanner for UserLocation: it validates the syntax, walks
// every value and keeps only the strings on the paths above. No allocation, no
// reflection; nesting is bounded.
type jsonLoc struct {
	b    []byte
	i    int
	bad  bool
	path [4]int
	out  location // not a pointer to the caller's: the walk is recursive, so that would put it on the heap
}

const maxJSONDepth = 32

// parseLocation fills loc from the UserLocation JSON in b. It reports false when b is
// not valid JSON or a location field is malformed; loc is then left empty.
func parseLocation(b []byte, loc *location) bool {
	*loc = location{}
	if !templateLocation(b, loc) && !walkLocation(b, loc) || !loc.valid() {
		*loc = location{}
		return false
	}
	return true
}

// walkLocation reads the location fields of the JSON in b by walking it; false when b is
// not valid JSON or a field of interest holds an escape.
func walkLocation(b []byte, loc *location) bool {
	s := jsonLoc{b: b}
	s.ws()
	s.value(0)
	s.ws()
	*loc = s.out
	return !s.bad && s.i == len(b)
}

// locationTemplates are the UserLocation layouts free5gc's CHF writes (NR, E-UTRA), as
// the literal text between the six values: TAI MCC, MNC and TAC, cell MCC, MNC and id.
var locationTemplates = [...][7]string{
	{`{"nrLocation":{"tai":{"plmnId":{"mcc":"`, `","mnc":"`, `"},"tac":"`, `"},"ncgi":{"plmnId":{"mcc":"`,
		`","mnc":"`, `"},"nrCellId":"`, `"}}}`},
	{`{"eutraLocation":{"tai":{"plmnId":{"mcc":"`, `","mnc":"`, `"},"tac":"`, `"},"ecgi":{"plmnId":{"mcc":"`,
		`","mnc":"`, `"},"eutraCellId":"`, `"}}}`},
}

// templateLocation reads b when it is exactly one of locationTemplates with plain values
// (no escape, no control character), as most ULIs are: a few comparisons instead of a
// JSON walk. Anything else (other keys, order, spacing, escapes) reports false and is
// left to the walk, which reads a template's text to the same six values.
func templateLocation(b []byte, loc *location) bool {
	for t := range locationTemplates {
		tm := &locationTemplates[t]
		if len(b) < len(tm[0]) || string(b[:len(tm[0])]) != tm[0] {
			continue
		}
		var vals [6][]byte
		p := len(tm[0])
		for i := range vals {
			j := p
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' || b[j] < 0x20 {
					return false
				}
				j++
			}
			lit := tm[i+1]
			if len(b)-j < len(lit) || string(b[j:j+len(lit)]) != lit {
				return false
			}
			vals[i] = b[p:j:j]
			p = j + len(lit)
		}
		if p != len(b) {
			return false
		}
		*loc = location{taiMCC: vals[0], taiMNC: vals[1], tac: vals[2], cgiMCC: vals[3], cgiMNC: vals[4], cellID: vals[5]}
		return true
	}
	return false
}

func (l *location) valid() bool {
	if l.cgiMCC != nil || l.cgiMNC != nil || l.cellID != nil {
		if !isDigits(l.cgiMCC, 3, 3) || !isDigits(l.cgiMNC, 2, 3) || !isHex(l.cellID, 7, 9) {
			return false
		}
	}
	if l.taiMCC != nil || l.taiMNC != nil || l.tac != nil {
		if !isDigits(l.taiMCC, 3, 3) || !isDigits(l.taiMNC, 2, 3) || !isHex(l.tac, 4, 6) {
			return false
		}
	}
	return true
}

func isDigits(b []byte, min, max int) bool {
	if len(b) < min || len(b) > max {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isHex(b []byte, min, max int) bool {
	if len(b) < min || len(b) > max {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Eight-byte lanes of str's word test.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func (s *jsonLoc) ws() {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return // the common case: no whitespace at all
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonLoc) value(depth int) {
	if s.bad {
		return
	}
	if s.i >= len(s.b) || depth > maxJSONDepth {
		s.bad = true
		return
	}
	switch c := s.b[s.i]; {
	case c == '{':
		s.object(depth)
	case c == '[':
		s.array(depth)
	case c == '"':
		v, esc := s.str()
		if !s.bad && depth >= 1 && depth <= 4 {
			s.keep(depth, v, esc)
		}
	case c == '-' || c >= '0' && c <= '9':
		s.number()
	case c == 't':
		s.lit("true")
	case c == 'f':
		s.lit("false")
	case c == 'n':
		s.lit("null")
	default:
		s.bad = true
	}
}

// keep stores a string value found at the path s.path[:depth].
func (s *jsonLoc) keep(depth int, v []byte, esc bool) {
	p := s.path
	if p[0] != keyNR && p[0] != keyEUTRA && p[0] != keyN3GA {
		return
	}
	var dst *[]byte
	switch {
	case depth == 4 && p[1] == keyTAI && p[2] == keyPLMN && p[3] == keyMCC:
		dst = &s.out.taiMCC
	case depth == 4 && p[1] == keyTAI && p[2] == keyPLMN && p[3] == keyMNC:
		dst = &s.out.taiMNC
	case depth == 3 && p[1] == keyTAI && p[2] == keyTAC:
		dst = &s.out.tac
	case depth == 4 && p[1] == keyCGI && p[2] == keyPLMN && p[3] == keyMCC:
		dst = &s.out.cgiMCC
	case depth == 4 && p[1] == keyCGI && p[2] == keyPLMN && p[3] == keyMNC:
		dst = &s.out.cgiMNC
	case depth == 3 && p[1] == keyCGI && p[2] == keyCell:
		dst = &s.out.cellID
	default:
		return
	}
	if esc { // digits and hex never need escapes: an escaped one is malformed
		s.bad = true
		return
	}
	*dst = v // non-nil even when empty, so valid() rejects an empty value
}

func (s *jsonLoc) object(depth int) {
	s.i++ // {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return
	}
	for !s.bad {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			s.bad = true
			return
		}
		k, _ := s.str()
		s.ws()
		if s.bad || s.i >= len(s.b) || s.b[s.i] != ':' {
			s.bad = true
			return
		}
		s.i++
		s.ws()
		if depth < len(s.path) {
			s.path[depth] = classifyKey(depth, k)
		}
		s.value(depth + 1)
		if depth < len(s.path) {
			s.path[depth] = keyOther
		}
		s.ws()
		if s.bad || s.i >= len(s.b) {
			s.bad = true
			return
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.bad = true
			return
		}
	}
}

func (s *jsonLoc) array(depth int) {
	s.i++ // [
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return
	}
	// Array elements are off every path of interest: they are walked at a depth no path
	// reaches.
	for !s.bad {
		s.ws()
		s.value(depth + len(s.path)) // deeper than any path: nothing is kept
		s.ws()
		if s.bad || s.i >= len(s.b) {
			s.bad = true
			break
		}
		if s.b[s.i] == ',' {
			s.i++
			continue
		}
		if s.b[s.i] == ']' {
			s.i++
			break
		}
		s.bad = true
	}
}

// str reads a string at s.i and returns its raw content and whether it holds escapes.
func (s *jsonLoc) str() ([]byte, bool) {
	s.i++ // opening quote
	start := s.i
	esc := false
	// Eight bytes at a time while none is a quote, a backslash or a control character
	// (each test is exact about presence); the byte loop takes the word holding one.
	for s.i+8 <= len(s.b) {
		w := binary.LittleEndian.Uint64(s.b[s.i:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		if ((q-ones)&^q|(bs-ones)&^bs|(w-ones*0x20)&^w)&highs != 0 {
			break
		}
		s.i += 8
	}
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, esc
		case c == '\\':
			esc = true
			s.i += 2
		case c < 0x20:
			s.bad = true
			return nil, false
		default:
			s.i++
		}
	}
	s.bad = true
	return nil, false
}

func (s *jsonLoc) number() {
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	if s.i == start {
		s.bad = true
	}
}

func (s *jsonLoc) lit(w string) {
	if len(s.b)-s.i < len(w) || string(s.b[s.i:s.i+len(w)]) != w {
		s.bad = true
		return
	}
	s.i += len(w)
}
