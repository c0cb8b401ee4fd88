package billing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// A cursor is a Position and the tenant scope it was issued for, signed so a consumer
// can neither forge a position nor move a cursor to another tenant: base64url of
// version(1) | seen(8) | len+scope | len+tenant | len+record_id | HMAC-SHA256[:16].
// It holds no server state, so it stays valid across restarts and instances that share
// the key.

const cursorVersion = 1

// ErrBadCursor is wrapped by every refusal of a cursor.
var ErrBadCursor = errors.New("bad cursor")

// Signer issues and checks cursors.
type Signer struct{ key []byte }

// NewSigner returns a signer for key (at least 32 bytes).
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("billing.cursor_key: %d bytes, want at least 32", len(key))
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// Encode returns the cursor for p within scope (a tenant, or "" for every tenant).
func (s *Signer) Encode(scope string, p Position) string {
	b := make([]byte, 0, 64)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Seen))
	for _, f := range []string{scope, p.Tenant, p.RecordID} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = append(b, s.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode checks c and returns its position. The empty cursor is the start. A cursor of
// another scope is refused.
func (s *Signer) Decode(scope, c string) (Position, error) {
	if c == "" {
		return Position{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 1+8+3+16 {
		return Position{}, fmt.Errorf("%w: not a cursor", ErrBadCursor)
	}
	body, sum := b[:len(b)-16], b[len(b)-16:]
	if !hmac.Equal(sum, s.mac(body)) {
		return Position{}, fmt.Errorf("%w: signature does not match", ErrBadCursor)
	}
	if body[0] != cursorVersion {
		return Position{}, fmt.Errorf("%w: version %d", ErrBadCursor, body[0])
	}
	p := Position{Seen: int64(binary.BigEndian.Uint64(body[1:9]))}
	rest := body[9:]
	var fs [3]string
	for i := range fs {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return Position{}, fmt.Errorf("%w: truncated", ErrBadCursor)
		}
		fs[i] = string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
	}
	if fs[0] != scope {
		return Position{}, fmt.Errorf("%w: issued for another tenant", ErrBadCursor)
	}
	p.Tenant, p.RecordID = fs[1], fs[2]
	return p, nil
}

func (s *Signer) mac(b []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write(b)
	return h.Sum(nil)[:16]
}
