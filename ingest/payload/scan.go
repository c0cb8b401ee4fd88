package payload

import (
	"strconv"
	"unicode/utf8"

	"fleetmeter/record"
)

// scanner is a minimal JSON tokenizer for the flat objects devices send: no reflection,
// no allocation on success. Strings come back as views into the input, or, when they hold
// escapes, into the append-only arena *buf; a view stays valid until the caller truncates
// the arena.
type scanner struct {
	data   []byte
	pos    int
	reason string // bad_json or bad_senml-style code reported on syntax errors
	buf    *[]byte
}

func (s *scanner) fail(msg string) *record.InvalidError {
	return invalid(s.reason, msg+" at offset "+strconv.Itoa(s.pos))
}

func (s *scanner) skipWS() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.skipWS()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// consume skips c if it is the next non-space byte.
func (s *scanner) consume(c byte) bool {
	if s.peek() == c {
		s.pos++
		return true
	}
	return false
}

func (s *scanner) expect(c byte) *record.InvalidError {
	if !s.consume(c) {
		return s.fail("expected '" + string(c) + "'")
	}
	return nil
}

// end checks that only whitespace follows.
func (s *scanner) end() *record.InvalidError {
	s.skipWS()
	if s.pos != len(s.data) {
		return s.fail("trailing data")
	}
	return nil
}

// valueKind classifies the next value without consuming it.
type valueKind uint8

const (
	valEnd valueKind = iota
	valString
	valNumber
	valTrue
	valFalse
	valNull
	valObject
	valArray
	valInvalid
)

func (s *scanner) next() valueKind {
	switch c := s.peek(); {
	case c == '"':
		return valString
	case c == '-' || (c >= '0' && c <= '9'):
		return valNumber
	case c == 't':
		return valTrue
	case c == 'f':
		return valFalse
	case c == 'n':
		return valNull
	case c == '{':
		return valObject
	case c == '[':
		return valArray
	case c == 0 && s.pos == len(s.data):
		return valEnd
	}
	return valInvalid
}

// literal consumes true, false or null.
func (s *scanner) literal(word string) *record.InvalidError {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.pos += len(word)
	return nil
}

// number consumes a number per the JSON grammar and returns its text.
func (s *scanner) number() ([]byte, *record.InvalidError) {
	s.skipWS()
	d := s.data
	start := s.pos
	i := s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, s.fail("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, s.fail("invalid number")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, s.fail("invalid number")
		}
	}
	s.pos = i
	return d[start:i], nil
}

// str consumes a string and returns its decoded bytes.
func (s *scanner) str() ([]byte, *record.InvalidError) {
	if !s.consume('"') {
		return nil, s.fail("expected string")
	}
	d := s.data
	start := s.pos
	i := start
	var high byte // OR of all bytes: UTF-8 checks only when a non-ASCII byte appeared
	for i < len(d) {
		c := d[i]
		high |= c
		switch {
		case c == '"':
			s.pos = i + 1
			if high >= 0x80 && !utf8.Valid(d[start:i]) {
				return nil, s.fail("invalid UTF-8 in string")
			}
			return d[start:i], nil
		case c == '\\':
			s.pos = i
			return s.strEscaped(start)
		case c < 0x20:
			s.pos = i
			return nil, s.fail("control character in string")
		}
		i++
	}
	s.pos = i
	return nil, s.fail("unterminated string")
}

// strEscaped decodes a string holding escapes into the scratch buffer; s.pos is at the
// first backslash, start at the first byte of the string.
func (s *scanner) strEscaped(start int) ([]byte, *record.InvalidError) {
	d := s.data
	mark := len(*s.buf)
	b := append(*s.buf, d[start:s.pos]...)
	i := s.pos
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			s.pos = i + 1
			*s.buf = b
			if !utf8.Valid(b[mark:]) {
				return nil, s.fail("invalid UTF-8 in string")
			}
			return b[mark:], nil
		case c < 0x20:
			s.pos = i
			return nil, s.fail("control character in string")
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(d) {
			break
		}
		i++
		switch d[i] {
		case '"', '\\', '/':
			b = append(b, d[i])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, n := hex4(d[i+1:])
			if n < 0 {
				s.pos = i
				return nil, s.fail("invalid \\u escape")
			}
			i += 4
			if r >= 0xD800 && r < 0xDC00 { // high surrogate: a low one must follow
				if i+2 < len(d) && d[i+1] == '\\' && d[i+2] == 'u' {
					if r2, n2 := hex4(d[i+3:]); n2 == 4 && r2 >= 0xDC00 && r2 < 0xE000 {
						r = (r-0xD800)<<10 + (r2 - 0xDC00) + 0x10000
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			} else if r >= 0xDC00 && r < 0xE000 {
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
		default:
			s.pos = i
			return nil, s.fail("invalid escape")
		}
		i++
	}
	s.pos = i
	*s.buf = b
	return nil, s.fail("unterminated string")
}

func hex4(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, -1
		}
	}
	return r, 4
}
