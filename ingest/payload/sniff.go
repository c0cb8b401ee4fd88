package payload

import "strings"

// Sniff guesses the kind of a payload from its first bytes: a JSON object is plain JSON;
// a JSON array is SenML when its first object's first key is a SenML label, plain JSON
// otherwise; a CBOR array is SenML CBOR. It returns KindAuto when it cannot tell.
func Sniff(data []byte) Kind {
	s := scanner{data: data}
	switch c := s.peek(); {
	case c == '{':
		return KindJSON
	case c == '[':
		s.pos++
		switch s.peek() {
		case ']':
			return KindJSON
		case '{':
		default:
			return KindAuto
		}
		s.pos++
		if s.peek() != '"' {
			return KindJSON // "[{}": plain JSON's empty record
		}
		var buf []byte
		s.buf = &buf
		key, err := s.str()
		if err != nil {
			return KindAuto
		}
		if senmlJSONLabel(key) != labelUnknown {
			return KindSenMLJSON
		}
		return KindJSON
	case len(data) > 0 && data[0]>>5 == 4: // CBOR major type 4: array
		return KindSenMLCBOR
	}
	return KindAuto
}

// KindFromContentType maps an HTTP Content-Type (parameters ignored) to a kind, KindAuto
// when unknown.
func KindFromContentType(ct string) Kind {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	switch {
	case strings.EqualFold(ct, "application/json"):
		return KindJSON
	case strings.EqualFold(ct, "application/senml+json"):
		return KindSenMLJSON
	case strings.EqualFold(ct, "application/senml+cbor"):
		return KindSenMLCBOR
	}
	return KindAuto
}

// CoAP Content-Format numbers (RFC 7252 and RFC 8428 registrations).
const (
	CoAPFormatJSON      = 50
	CoAPFormatSenMLJSON = 110
	CoAPFormatSenMLCBOR = 112
)

// KindFromCoAPFormat maps a CoAP Content-Format to a kind, KindAuto when unknown.
func KindFromCoAPFormat(cf uint16) Kind {
	switch cf {
	case CoAPFormatJSON:
		return KindJSON
	case CoAPFormatSenMLJSON:
		return KindSenMLJSON
	case CoAPFormatSenMLCBOR:
		return KindSenMLCBOR
	}
	return KindAuto
}
