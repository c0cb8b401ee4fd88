package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// The soak test speaks CoAP (RFC 7252) by hand: it needs datagrams no well-behaved client
// library sends (NUL and invalid UTF-8 in a Uri-Path, a 10 KB path segment, thousands of
// source ports) and the exact response code of each.

const (
	coapOptUriPath       = 11
	coapOptContentFormat = 12
	coapOptBlock1        = 27
)

type coapOption struct {
	num   int
	value []byte
}

// coapPost encodes a confirmable POST with Uri-Path segments, options (ascending by
// number, after Uri-Path's 11) and a payload.
func coapPost(mid uint16, token []byte, path []string, opts []coapOption, payload []byte) []byte {
	b := []byte{0x40 | byte(len(token)), 0x02, byte(mid >> 8), byte(mid)}
	b = append(b, token...)
	all := make([]coapOption, 0, len(path)+len(opts))
	for _, p := range path {
		all = append(all, coapOption{coapOptUriPath, []byte(p)})
	}
	all = append(all, opts...)
	prev := 0
	for _, o := range all {
		delta, n := o.num-prev, len(o.value)
		prev = o.num
		dn, dext := coapNibble(delta)
		ln, lext := coapNibble(n)
		b = append(b, byte(dn<<4|ln))
		b = append(b, dext...)
		b = append(b, lext...)
		b = append(b, o.value...)
	}
	if len(payload) > 0 {
		b = append(b, 0xff)
		b = append(b, payload...)
	}
	return b
}

// coapNibble is an option delta or length as its 4-bit nibble and extension bytes.
func coapNibble(v int) (int, []byte) {
	switch {
	case v < 13:
		return v, nil
	case v < 269:
		return 13, []byte{byte(v - 13)}
	default:
		return 14, binary.BigEndian.AppendUint16(nil, uint16(v-269))
	}
}

func coapUint(v uint32) []byte {
	switch {
	case v == 0:
		return nil
	case v < 1<<8:
		return []byte{byte(v)}
	case v < 1<<16:
		return binary.BigEndian.AppendUint16(nil, uint16(v))
	case v < 1<<24:
		return []byte{byte(v >> 16), byte(v >> 8), byte(v)}
	}
	return binary.BigEndian.AppendUint32(nil, v)
}

// coapResponse is the code ("2.04", "4.00", ...) and payload of a response.
type coapResponse struct {
	code    string
	payload string
}

func parseCoAP(b []byte) (coapResponse, error) {
	if len(b) < 4 || b[0]>>6 != 1 {
		return coapResponse{}, errors.New("not a CoAP message")
	}
	tkl := int(b[0] & 0x0f)
	r := coapResponse{code: fmt.Sprintf("%d.%02d", b[1]>>5, b[1]&0x1f)}
	i := 4 + tkl
	for i < len(b) {
		if b[i] == 0xff {
			r.payload = string(b[i+1:])
			return r, nil
		}
		d, l := int(b[i]>>4), int(b[i]&0x0f)
		i++
		for _, v := range []*int{&d, &l} {
			switch *v {
			case 13:
				if i >= len(b) {
					return r, errors.New("truncated option")
				}
				*v = 13 + int(b[i])
				i++
			case 14:
				if i+1 >= len(b) {
					return r, errors.New("truncated option")
				}
				*v = 269 + int(binary.BigEndian.Uint16(b[i:]))
				i += 2
			}
		}
		i += l
	}
	return r, nil
}

// coapExchange sends one request from its own socket and waits for the response,
// retransmitting the same message (same id) as a CoAP client would.
func coapExchange(server string, req []byte, tries int, wait time.Duration) (coapResponse, error) {
	c, err := net.Dial("udp", server)
	if err != nil {
		return coapResponse{}, err
	}
	defer c.Close()
	return coapOn(c, req, tries, wait)
}

func coapOn(c net.Conn, req []byte, tries int, wait time.Duration) (coapResponse, error) {
	buf := make([]byte, 70000)
	mid := binary.BigEndian.Uint16(req[2:4])
	for range tries {
		if _, err := c.Write(req); err != nil {
			return coapResponse{}, err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // timeout: retransmit
			}
			if n >= 4 && binary.BigEndian.Uint16(buf[2:4]) == mid {
				return parseCoAP(buf[:n])
			}
		}
	}
	return coapResponse{}, errors.New("no answer")
}

// coapBlockUpload posts total bytes block-wise (Block1, 1024-byte blocks, no Size1) from
// one socket until the server answers anything but 2.31 Continue; it returns that answer
// and how many blocks were sent.
func coapBlockUpload(server string, path []string, total int, mid uint16) (coapResponse, int, error) {
	c, err := net.Dial("udp", server)
	if err != nil {
		return coapResponse{}, 0, err
	}
	defer c.Close()
	block := make([]byte, 1024)
	for i := range block {
		block[i] = 'x'
	}
	blocks := (total + 1023) / 1024
	for num := 0; num < blocks; num++ {
		more := 0
		if num < blocks-1 {
			more = 1
		}
		opt := uint32(num<<4 | more<<3 | 6) // SZX 6: 1024 bytes
		req := coapPost(mid+uint16(num), []byte{0xb1, byte(num)}, path,
			[]coapOption{{coapOptContentFormat, coapUint(50)}, {coapOptBlock1, coapUint(opt)}}, block)
		r, err := coapOn(c, req, 3, 2*time.Second)
		if err != nil {
			return r, num + 1, err
		}
		if r.code != "2.31" {
			return r, num + 1, nil
		}
	}
	return coapResponse{}, blocks, errors.New("the whole upload was taken")
}
