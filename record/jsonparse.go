package record

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"fleetmeter/internal/swar"
)

// A hand-written decoder for one usage.v1 JSON object. It accepts and rejects exactly what
// the encoding/json version did (json.Decoder with DisallowUnknownFields, then a More()
// check for trailing data), and yields the same records:
//
//   - field names match case-insensitively (encoding/json's folding, so "ſ" matches 's'),
//     also when written with escapes; a repeated field overrides the earlier value;
//   - null leaves a string or integer field as it was, and clears lat, lon and slice_sst;
//   - strings are unquoted as encoding/json does: \u escapes, surrogate pairs, U+FFFD for
//     invalid UTF-8 and lone surrogates;
//   - integers reject signs, fractions, exponents and values out of range;
//   - after the object, whitespace is fine, and so is anything that starts with '}' or ']'
//     (what Decoder.More reports as no more values);
//   - times are read by ParseRFC3339 in both, the project's one RFC 3339 reader.
//
// No field takes an object or an array, so any nested value is an error and the parser never
// needs to descend. All string fields of a record share one allocation (a canonical line
// costs that one allocation in all).
//
// Errors read as they did: wrong types and unknown fields are worded as encoding/json words
// them, and a refused line is scanned once more by encoding/json (jsonSyntaxError), so that
// a syntax error anywhere in the object is reported first, with encoding/json's message, as
// before. Only refused lines pay for that.

// Usage field indexes, in usage.v1 order.
const (
	fEventID = iota
	fTenant
	fDevice
	fSource
	fStartTime
	fEndTime
	fReceivedTime
	fBytesUp
	fBytesDown
	fDurationMs
	fEvents
	fRatingGroup
	fPLMN
	fCell
	fLat
	fLon
	fRAT
	fSliceSST
	fSliceSD
	numUsageFields
)

var usageFieldNames = [numUsageFields]string{
	"event_id", "tenant", "device", "source", "start_time", "end_time", "received_time",
	"bytes_up", "bytes_down", "duration_ms", "events", "rating_group", "plmn", "cell",
	"lat", "lon", "rat", "slice_sst", "slice_sd",
}

// UsageJSONFields returns the usage.v1 JSON field names in the order of the fields of
// the canonical line (event_id first, slice_sd last).
func UsageJSONFields() [numUsageFields]string { return usageFieldNames }

// goTypeOf is the Go type of each integer field in usageJSON, for error messages.
var goTypeOf = [numUsageFields]string{fBytesUp: "uint64", fBytesDown: "uint64", fDurationMs: "uint64",
	fEvents: "uint64", fRatingGroup: "uint32", fSliceSST: "uint8"}

// usageFieldExact finds the field an unescaped key names exactly.
func usageFieldExact(key []byte) int {
	switch string(key) {
	case "event_id":
		return fEventID
	case "tenant":
		return fTenant
	case "device":
		return fDevice
	case "source":
		return fSource
	case "start_time":
		return fStartTime
	case "end_time":
		return fEndTime
	case "received_time":
		return fReceivedTime
	case "bytes_up":
		return fBytesUp
	case "bytes_down":
		return fBytesDown
	case "duration_ms":
		return fDurationMs
	case "events":
		return fEvents
	case "rating_group":
		return fRatingGroup
	case "plmn":
		return fPLMN
	case "cell":
		return fCell
	case "lat":
		return fLat
	case "lon":
		return fLon
	case "rat":
		return fRAT
	case "slice_sst":
		return fSliceSST
	case "slice_sd":
		return fSliceSD
	}
	return -1
}

// keyNames holds each usage.v1 field name by the slot of a perfect hash (keySlot), as
// two little-endian words (bytes 0-7 and 8-15, zero beyond the name) and a length: what
// plainKey compares a key with. n is 0 in the slots no name takes.
var keyNames = func() (t [32]struct {
	lo, hi uint64
	n      int
	f      int
	// the name followed by `":`, as lo and hi: what keyColonAt compares
	loColon, hiColon uint64
}) {
	for f, name := range usageFieldNames {
		var b, c [16]byte
		copy(b[:], name)
		copy(c[:], name+`":`)
		k := &t[keySlot(len(name), name[0], name[len(name)-1])] // no two names share one: TestKeySlots
		k.lo, k.hi = binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
		k.loColon, k.hiColon = binary.LittleEndian.Uint64(c[:8]), binary.LittleEndian.Uint64(c[8:])
		k.n, k.f = len(name), f
	}
	return t
}()

func keySlot(n int, first, last byte) int {
	return (n*14 + int(first) + int(last)*6) & 31
}

// keySlots is the slot of each field's name in keyNames.
var keySlots = func() (t [numUsageFields]uint8) {
	for f, name := range usageFieldNames {
		t[f] = uint8(keySlot(len(name), name[0], name[len(name)-1]))
	}
	return t
}()

// keyOrder is the order in which the last line a JSONLineReader read named its fields
// (the first numUsageFields keys of it).
type keyOrder struct {
	f [numUsageFields]int8
	n int
}

// keyColonAt reports whether d holds, from its opening quote at d[i], the name of field
// f as is, its closing quote and the colon right after it.
func keyColonAt(d []byte, i int, f int8) bool {
	if i+17 > len(d) {
		return false
	}
	k := &keyColons[f]
	return binary.LittleEndian.Uint64(d[i+1:])&k.mlo == k.lo && binary.LittleEndian.Uint64(d[i+9:])&k.mhi == k.hi
}

// keyColons is, by field, its name followed by `":` as two little-endian words and the
// masks of the bytes they hold: what keyColonAt compares.
var keyColons = func() (t [numUsageFields]struct{ lo, hi, mlo, mhi uint64 }) {
	for f := range t {
		k := &keyNames[keySlots[f]]
		t[f].lo, t[f].hi = k.loColon, k.hiColon
		t[f].mlo, t[f].mhi = swar.LowBytes(k.n+2), swar.LowBytes(k.n-6)
	}
	return t
}()

// plainKey reads the key whose opening quote is at d[i] when it is a field name written
// as is: its field and the index past its closing quote. Any other key gives -1 and is
// read by the general path (scanString, usageFieldExact, the folding match), which finds
// the same field for a plain name. The closing quote is the first quote byte after
// d[i]: a key holding an escaped quote has a backslash before it, so it is no name.
func plainKey(d []byte, i int) (f, end int) {
	if i+9 > len(d) {
		return -1, 0 // at the end of the line: the general path
	}
	var n int
	var w1 uint64
	w0 := binary.LittleEndian.Uint64(d[i+1:])
	if q := w0 ^ (ones * '"'); (q-ones)&^q&highs != 0 {
		n = bits.TrailingZeros64((q-ones)&^q&highs) / 8 // the lowest flagged byte is exact
	} else {
		if i+17 > len(d) {
			return -1, 0
		}
		w1 = binary.LittleEndian.Uint64(d[i+9:])
		q := w1 ^ (ones * '"')
		if (q-ones)&^q&highs == 0 {
			return -1, 0
		}
		n = 8 + bits.TrailingZeros64((q-ones)&^q&highs)/8
	}
	if n == 0 {
		return -1, 0
	}
	k := &keyNames[keySlot(n, byte(w0), d[i+n])]
	if k.n != n || w0&swar.LowBytes(n) != k.lo || (n > 8 && w1&swar.LowBytes(n-8) != k.hi) {
		return -1, 0
	}
	return k.f, i + n + 2
}

// usageFieldFolded finds the field a decoded key names under encoding/json's case folding.
func usageFieldFolded(key []byte) int {
	var arr [32]byte
	folded := appendFoldedName(arr[:0], key)
	for i, name := range usageFieldNames {
		if len(name) != len(folded) {
			continue
		}
		j := 0
		for j < len(name) {
			c := name[j]
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			if folded[j] != c {
				break
			}
			j++
		}
		if j == len(name) {
			return i
		}
	}
	return -1
}

// appendFoldedName is encoding/json's key folding: ASCII letters upper case, other runes
// the smallest rune of their fold set.
func appendFoldedName(out, in []byte) []byte {
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

type jsonParser struct {
	data []byte
	pos  int
}

func (p *jsonParser) skipWS() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) syntaxErr(msg string) error {
	if p.pos >= len(p.data) {
		return errors.New("decode json: unexpected end of JSON input")
	}
	return fmt.Errorf("decode json: %s at offset %d", msg, p.pos)
}

// typeErr is encoding/json's error for a value of the wrong kind for field f.
func typeErr(f int, value, goType string) error {
	return errors.New("decode json: json: cannot unmarshal " + value + " into Go struct field usageJSON." +
		usageFieldNames[f] + " of type " + goType)
}

// jsonSyntaxError returns, for a line the parser refuses, the syntax error encoding/json
// reports for it if there is one: encoding/json checks the syntax of the whole value before
// it reports a wrong field or type, and its messages (unexpected EOF, invalid character ...
// at offset) are what clients have seen. Only refused lines pay for this; err otherwise.
func jsonSyntaxError(line []byte, err error) error {
	var raw json.RawMessage
	if serr := json.NewDecoder(bytes.NewReader(line)).Decode(&raw); serr != nil {
		return fmt.Errorf("decode json: %w", serr)
	}
	return err
}

// Eight-byte lanes of scanString's word test.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// String scan flags.
const (
	strEscaped  = 1 << iota // holds a backslash escape
	strNonASCII             // holds a byte >= 0x80
)

// scanString checks the string at p.pos (its opening quote) and moves past it. It returns
// the bytes between the quotes and what unquoting they need.
func (p *jsonParser) scanString() (raw []byte, flags int, err error) {
	d := p.data
	start := p.pos + 1
	i := start
	// Eight bytes at a time while none is a quote, a backslash or a control character
	// (each test below is exact about presence); the byte loop takes the word holding one.
	for i+8 <= len(d) {
		w := binary.LittleEndian.Uint64(d[i:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		if ((q-ones)&^q|(bs-ones)&^bs|(w-ones*0x20)&^w)&highs != 0 {
			break
		}
		if w&highs != 0 {
			flags |= strNonASCII
		}
		i += 8
	}
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return d[start:i], flags, nil
		case c == '\\':
			flags |= strEscaped
			i++
			if i >= len(d) {
				p.pos = i
				return nil, 0, p.syntaxErr("unterminated string")
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(d) {
					p.pos = len(d)
					return nil, 0, p.syntaxErr("unterminated string")
				}
				for _, h := range d[i+1 : i+5] {
					if unhex(h) < 0 {
						p.pos = i
						return nil, 0, p.syntaxErr("invalid \\u escape")
					}
				}
				i += 5
			default:
				p.pos = i
				return nil, 0, p.syntaxErr("invalid escape in string")
			}
		case c < 0x20:
			p.pos = i
			return nil, 0, p.syntaxErr("control character in string")
		default:
			if c >= utf8.RuneSelf {
				flags |= strNonASCII
			}
			i++
		}
	}
	p.pos = i
	return nil, 0, p.syntaxErr("unterminated string")
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		h := unhex(c)
		if h < 0 {
			return -1
		}
		r = r<<4 | h
	}
	return r
}

// appendUnquoted appends the string raw (checked by scanString) decoded as encoding/json
// decodes it.
func appendUnquoted(b, raw []byte) []byte {
	for r := 0; r < len(raw); {
		c := raw[r]
		switch {
		case c == '\\':
			switch raw[r+1] {
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
				rr := getu4(raw[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(raw[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, raw[r+1])
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(raw[r:])
			b = utf8.AppendRune(b, rr)
			r += size
		}
	}
	return b
}

// plainString reports whether raw reads as itself: no escapes, valid UTF-8.
func plainString(raw []byte, flags int) bool {
	return flags == 0 || (flags == strNonASCII && utf8.Valid(raw))
}

// literal consumes the literal word at p.pos.
func (p *jsonParser) literal(word string) bool {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return false
	}
	p.pos += len(word)
	return true
}

// nullOrTypeErr consumes a null at p.pos, or returns the type error for field f.
func (p *jsonParser) nullOrTypeErr(f int, goType string) error {
	switch c := p.data[p.pos]; {
	case c == 'n':
		if p.literal("null") {
			return nil
		}
	case c == '"':
		return typeErr(f, "string", goType)
	case c == 't' || c == 'f':
		return typeErr(f, "bool", goType)
	case c == '{':
		return typeErr(f, "object", goType)
	case c == '[':
		return typeErr(f, "array", goType)
	case c == '-' || ('0' <= c && c <= '9'):
		return typeErr(f, "number", goType)
	}
	return p.syntaxErr("invalid value")
}

// parseUint reads an integer of at most max for field f; p.pos is at its first byte.
func (p *jsonParser) parseUint(f int, max uint64, goType string) (uint64, error) {
	d := p.data
	i := p.pos
	if d[i] == '-' {
		return 0, p.numberErr(f, goType)
	}
	var n uint64
	if d[i] == '0' {
		i++
	} else {
		for ; i < len(d) && '0' <= d[i] && d[i] <= '9'; i++ {
			digit := uint64(d[i] - '0')
			if n > (math.MaxUint64-digit)/10 {
				return 0, p.numberErr(f, goType)
			}
			n = n*10 + digit
		}
	}
	if i < len(d) && (d[i] == '.' || d[i] == 'e' || d[i] == 'E') {
		return 0, p.numberErr(f, goType)
	}
	if n > max {
		return 0, p.numberErr(f, goType)
	}
	p.pos = i
	return n, nil
}

// numberErr is the error for the number at p.pos that field f cannot hold.
func (p *jsonParser) numberErr(f int, goType string) error {
	q := jsonParser{data: p.data, pos: p.pos}
	if _, err := q.parseFloat(f, goType); err != nil {
		return err // not a JSON number
	}
	return typeErr(f, "number "+string(p.data[p.pos:q.pos]), goType)
}

var float64pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFloat reads a JSON number for field f; p.pos is at its first byte.
// parseFloat reads a number for field f; goType names the field's type in a range error
// (a uint field given 1E700 is reported as uint64, as encoding/json does).
func (p *jsonParser) parseFloat(f int, goType string) (float64, error) {
	d := p.data
	start := p.pos
	i := start
	neg := i < len(d) && d[i] == '-'
	if neg {
		i++
	}
	// Exact fast path (as strconv's): at most 15 digits, no exponent, so the mantissa and
	// the power of ten are exact and the one division rounds correctly.
	var mant uint64
	digits, frac := 0, 0
	switch {
	case i < len(d) && d[i] == '0':
		i++
		digits++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for ; i < len(d) && '0' <= d[i] && d[i] <= '9'; i++ {
			mant = mant*10 + uint64(d[i]-'0')
			digits++ // past 15 digits mant may wrap: the fast path is off then
		}
	default:
		p.pos = i
		return 0, p.syntaxErr("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		for ; i < len(d) && '0' <= d[i] && d[i] <= '9'; i++ {
			mant = mant*10 + uint64(d[i]-'0')
			digits++
		}
		if i == j {
			p.pos = i
			return 0, p.syntaxErr("invalid number")
		}
		frac = i - j
	}
	exact := digits <= 15 && frac <= 22
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		exact = false
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == j {
			p.pos = i
			return 0, p.syntaxErr("invalid number")
		}
	}
	p.pos = i
	if exact {
		v := float64(mant) / float64pow10[frac]
		if neg {
			v = -v
		}
		return v, nil
	}
	v, err := strconv.ParseFloat(string(d[start:i]), 64)
	if err != nil {
		return 0, typeErr(f, "number "+string(d[start:i]), goType)
	}
	return v, nil
}

type strSpan struct{ off, end int }

// parseJSONUsage is ParseJSON, with JSONLineReader's namespace (idPrefix), chunk and
// field order when they are set.
func parseJSONUsage(line []byte, idPrefix string, chunk *[]byte, order *keyOrder) (Usage, error) {
	var u Usage
	if err := parseJSONInto(line, idPrefix, chunk, order, &u); err != nil {
		return Usage{}, err
	}
	return u, nil
}

// parseJSONInto is parseJSONUsage decoding into *u, which it zeroes first (a record
// built in place, in the caller's slice, is not copied twice). On an error *u holds no
// meaningful record.
func parseJSONInto(line []byte, idPrefix string, chunk *[]byte, order *keyOrder, u *Usage) error {
	*u = Usage{}
	var seq [numUsageFields]int8 // the fields in the order this line names them
	nkeys := 0
	var arr [256]byte
	buf := arr[:0] // decoded string field values; a local, not in p, to stay on the stack
	free := 0      // with a chunk: the room buf started with in it
	if chunk != nil {
		// Decoded straight into the chunk's free room: the bytes past its length are no
		// string's yet, and become the record's only once the line is good.
		if cap(*chunk)-len(*chunk) < len(arr) {
			*chunk = make([]byte, 0, chunkBytes)
		}
		c := *chunk
		buf, free = c[len(c):len(c)], cap(c)-len(c)
	}
	p := jsonParser{data: line}
	var (
		spans          [numUsageFields]strSpan
		times          [3][]byte // start_time, end_time, received_time
		lat, lon       float64
		hasLat, hasLon bool
	)
	d := line
	p.skipWS()
	switch {
	case p.pos >= len(d):
		return errors.New("decode json: EOF")
	case d[p.pos] == 'n' && p.literal("null"):
		// null decodes into nothing: an empty record.
	case d[p.pos] != '{':
		kind := "number"
		switch d[p.pos] {
		case '"':
			kind = "string"
		case '[':
			kind = "array"
		case 't', 'f':
			kind = "bool"
		}
		return jsonSyntaxError(line, errors.New("decode json: json: cannot unmarshal "+kind+
			" into Go value of type record.usageJSON"))
	default:
		p.pos++
		p.skipWS()
		if p.pos < len(d) && d[p.pos] == '}' {
			p.pos++
			break
		}
		for {
			if p.pos >= len(d) || d[p.pos] != '"' {
				return jsonSyntaxError(line, p.syntaxErr("expected object key"))
			}
			f, colon := -1, false
			if order != nil && nkeys < order.n {
				// Lines of one body most often name the same fields in the same order.
				if pf := order.f[nkeys]; keyColonAt(d, p.pos, pf) {
					f, colon = int(pf), true
					p.pos += keyNames[keySlots[pf]].n + 3
				}
			}
			if f < 0 {
				if pf, end := plainKey(d, p.pos); pf >= 0 {
					f, p.pos = pf, end
				}
			}
			if f < 0 {
				key, kflags, err := p.scanString()
				if err != nil {
					return jsonSyntaxError(line, err)
				}
				if kflags == 0 {
					f = usageFieldExact(key)
				}
				if f < 0 {
					if !plainString(key, kflags) {
						key = appendUnquoted(nil, key)
					}
					if f = usageFieldFolded(key); f < 0 {
						return jsonSyntaxError(line, fmt.Errorf("decode json: json: unknown field %q", key))
					}
				}
			}
			if nkeys < len(seq) {
				seq[nkeys] = int8(f)
			}
			nkeys++
			if !colon {
				p.skipWS()
				if p.pos >= len(d) || d[p.pos] != ':' {
					return jsonSyntaxError(line, p.syntaxErr("expected ':' after object key"))
				}
				p.pos++
			}
			p.skipWS()
			if p.pos >= len(d) {
				return jsonSyntaxError(line, p.syntaxErr("expected value"))
			}
			c := d[p.pos]
			switch f {
			case fEventID, fTenant, fDevice, fSource, fPLMN, fCell, fRAT, fSliceSD:
				if c != '"' {
					if err := p.nullOrTypeErr(f, "string"); err != nil {
						return jsonSyntaxError(line, err)
					}
					break
				}
				raw, flags, err := p.scanString()
				if err != nil {
					return jsonSyntaxError(line, err)
				}
				off := len(buf)
				if plainString(raw, flags) {
					buf = append(buf, raw...)
				} else {
					buf = appendUnquoted(buf, raw)
				}
				if f == fEventID && idPrefix != "" && len(buf) > off && !bytes.HasPrefix(buf[off:], []byte(idPrefix)) {
					// Move the id up and put the prefix in front, in buf's one allocation.
					buf = append(buf, idPrefix...)
					copy(buf[off+len(idPrefix):], buf[off:len(buf)-len(idPrefix)])
					copy(buf[off:], idPrefix)
				}
				spans[f] = strSpan{off, len(buf)}
			case fStartTime, fEndTime, fReceivedTime:
				if c != '"' {
					if err := p.nullOrTypeErr(f, "string"); err != nil {
						return jsonSyntaxError(line, err)
					}
					break
				}
				raw, flags, err := p.scanString()
				if err != nil {
					return jsonSyntaxError(line, err)
				}
				if !plainString(raw, flags) {
					raw = appendUnquoted(nil, raw)
				}
				times[f-fStartTime] = raw
			case fBytesUp, fBytesDown, fDurationMs, fEvents, fRatingGroup, fSliceSST:
				if c != '-' && (c < '0' || c > '9') {
					if err := p.nullOrTypeErr(f, goTypeOf[f]); err != nil {
						return jsonSyntaxError(line, err)
					}
					if f == fSliceSST {
						u.SliceSST, u.HasSlice = 0, false
					}
					break
				}
				var err error
				switch f {
				case fBytesUp:
					u.BytesUp, err = p.parseUint(f, math.MaxUint64, "uint64")
				case fBytesDown:
					u.BytesDown, err = p.parseUint(f, math.MaxUint64, "uint64")
				case fDurationMs:
					u.DurationMs, err = p.parseUint(f, math.MaxUint64, "uint64")
				case fEvents:
					u.Events, err = p.parseUint(f, math.MaxUint64, "uint64")
				case fRatingGroup:
					var n uint64
					n, err = p.parseUint(f, math.MaxUint32, "uint32")
					u.RatingGroup = uint32(n)
				case fSliceSST:
					var n uint64
					n, err = p.parseUint(f, math.MaxUint8, "uint8")
					u.SliceSST, u.HasSlice = uint8(n), true
				}
				if err != nil {
					return jsonSyntaxError(line, err)
				}
			case fLat, fLon:
				if c != '-' && (c < '0' || c > '9') {
					if err := p.nullOrTypeErr(f, "float64"); err != nil {
						return jsonSyntaxError(line, err)
					}
					if f == fLat {
						hasLat = false
					} else {
						hasLon = false
					}
					break
				}
				v, err := p.parseFloat(f, "float64")
				if err != nil {
					return jsonSyntaxError(line, err)
				}
				if f == fLat {
					lat, hasLat = v, true
				} else {
					lon, hasLon = v, true
				}
			}
			p.skipWS()
			if p.pos >= len(d) {
				return jsonSyntaxError(line, p.syntaxErr("unterminated object"))
			}
			if d[p.pos] == ',' {
				p.pos++
				p.skipWS()
				continue
			}
			if d[p.pos] != '}' {
				return jsonSyntaxError(line, p.syntaxErr("expected ',' or '}' after object value"))
			}
			p.pos++
			break
		}
	}
	if order != nil {
		order.f, order.n = seq, min(nkeys, len(seq))
	}
	// Decoder.More: anything but whitespace, '}' or ']' is another value.
	p.skipWS()
	if p.pos < len(d) && d[p.pos] != '}' && d[p.pos] != ']' {
		return errors.New("decode json: trailing data after object")
	}

	var err error
	if u.StartTime, err = parseTimeBytes("start_time", times[0]); err != nil {
		return err
	}
	u.EndTime = u.StartTime
	if len(times[1]) > 0 {
		if u.EndTime, err = parseTimeBytes("end_time", times[1]); err != nil {
			return err
		}
	}
	if len(times[2]) > 0 {
		if u.ReceivedTime, err = parseTimeBytes("received_time", times[2]); err != nil {
			return err
		}
	}
	if hasLat != hasLon {
		return errors.New("decode json: lat and lon must both be set or both be null")
	}
	if hasLat {
		if math.IsNaN(lat) || math.IsNaN(lon) {
			return errors.New("decode json: position is NaN")
		}
		u.Lat, u.Lon, u.HasPos = lat, lon, true
	}
	if len(buf) > 0 {
		var s string
		switch {
		case chunk == nil:
			s = string(buf) // one allocation for all string fields
		case cap(buf) == free: // still in the chunk: it now ends after them
			// (Cut from *chunk, not buf: buf may be arr as far as the compiler knows, and
			// arr must stay on the stack.)
			n := len(*chunk)
			*chunk = (*chunk)[:n+len(buf)]
			s = unsafe.String(&(*chunk)[n], len(buf))
		default: // outgrew the chunk's room (a line of long strings): a chunk of its own
			c := append(make([]byte, 0, max(chunkBytes, len(buf))), buf...)
			*chunk = c
			s = unsafe.String(&c[0], len(buf))
		}
		for f, dst := range [...]*string{fEventID: &u.EventID, fTenant: &u.Tenant, fDevice: &u.Device,
			fSource: &u.Source, fPLMN: &u.PLMN, fCell: &u.Cell, fRAT: &u.RAT, fSliceSD: &u.SliceSD} {
			if dst != nil {
				*dst = s[spans[f].off:spans[f].end]
			}
		}
	}
	return nil
}

// chunkBytes is the size of a JSONLineReader chunk: the string fields of some fifty
// typical records. A chunk's bytes, once a string holds them, are never written again:
// a line decodes into the room past the chunk's length, which grows over them only when
// the line is good, and a full chunk is left to the strings pointing into it (the GC
// keeps it as long as they live).
const chunkBytes = 8 << 10

// parseTimeBytes is parseTime for bytes, without allocating when the time is good.
func parseTimeBytes(field string, b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("field %s: missing", field)
	}
	if ms, ok := ParseRFC3339(b); ok {
		return ms, nil
	}
	return 0, timeFieldError(field, string(b))
}
