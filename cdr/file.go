package cdr

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// minFileHeader is the TS 32.297 file header without the optional release extension
// octets: free5gc's dumpCdrFile writes exactly this much.
const minFileHeader = 52

// FileHeader is a TS 32.297 CDR file header (clause 6.1.1).
type FileHeader struct {
	FileLength    uint32 // whole file, header included
	HeaderLength  uint32 // where the first CDR header starts
	HighRelease   uint8  // release identifier (3 bits; 7 = beyond Rel-9, see HighReleaseExt)
	HighVersion   uint8  // version identifier (5 bits)
	LowRelease    uint8
	LowVersion    uint8
	Opened        FileTime // file opening timestamp
	LastAppended  FileTime // last CDR append timestamp
	CDRCount      uint32   // number of CDRs in the file (0 or 0xFFFFFFFF: not stated)
	Sequence      uint32   // file sequence number
	ClosureReason uint8    // file closure trigger reason (0 normal)
	NodeIP        [20]byte // IP address of the node that generated the file, as written
	LostCDR       uint8    // lost CDR indicator
	RouteFilter   []byte   // CDR routeing filter (aliases the input)
	PrivateExt    []byte   // private extension (aliases the input)
	// HighReleaseExt/LowReleaseExt exist only when the header has room for them
	// (HasReleaseExt); the release is then 10 + the extension (6 = Rel-16).
	HasReleaseExt  bool
	HighReleaseExt uint8
	LowReleaseExt  uint8
}

// NodeAddr reads NodeIP as the trailing 16 octets (an IPv6 or IPv4-mapped address),
// unmapped to IPv4 when it is one. Zero octets give the unspecified address.
func (h *FileHeader) NodeAddr() netip.Addr {
	return netip.AddrFrom16([16]byte(h.NodeIP[4:])).Unmap()
}

// FileTime is a TS 32.297 file timestamp: no year, offset from UTC in hours and minutes.
type FileTime struct {
	Month, Day, Hour, Minute uint8
	Minus                    bool // offset sign: false "+", true "-"
	OffHours, OffMinutes     uint8
}

// parseFileTime unpacks month<<28 | day<<23 | hour<<18 | minute<<12 | sign<<11 |
// hours<<6 | minutes, sign 1 meaning "+" (free5gc's packing of the 32.297 layout).
func parseFileTime(v uint32) FileTime {
	return FileTime{
		Month: uint8(v >> 28), Day: uint8(v >> 23 & 0x1F), Hour: uint8(v >> 18 & 0x1F),
		Minute: uint8(v >> 12 & 0x3F), Minus: v>>11&1 == 0 && v != 0,
		OffHours: uint8(v >> 6 & 0x1F), OffMinutes: uint8(v & 0x3F),
	}
}

// String formats t as MM-DD hh:mm ±hh:mm.
func (t FileTime) String() string {
	b := make([]byte, 0, 18)
	two := func(v uint8) {
		b = append(b, '0'+v/10%10, '0'+v%10)
	}
	two(t.Month)
	b = append(b, '-')
	two(t.Day)
	b = append(b, ' ')
	two(t.Hour)
	b = append(b, ':')
	two(t.Minute)
	if t.Minus {
		b = append(b, " -"...)
	} else {
		b = append(b, " +"...)
	}
	two(t.OffHours)
	b = append(b, ':')
	two(t.OffMinutes)
	return string(b)
}

// isRawBER tells a raw concatenation of CHFRecords from a TS 32.297 file by the first
// octet: a record opens with a context-specific constructed tag (0xA0-0xBF), a file with
// the high octet of its length, which is below 0xA0 for any file under 2.6 GB.
func isRawBER(b []byte) bool { return len(b) > 0 && b[0]&0xE0 == 0xA0 }

// ParseFileHeader reads the TS 32.297 file header at the start of b.
func ParseFileHeader(b []byte) (FileHeader, error) {
	var h FileHeader
	if off, msg := parseFileHeader(b, &h); msg != "" {
		return FileHeader{}, &DecodeError{Offset: int64(off), Msg: msg}
	}
	return h, nil
}

func parseFileHeader(b []byte, h *FileHeader) (int, string) {
	if len(b) < 8 {
		return len(b), "truncated file header"
	}
	be := binary.BigEndian
	h.FileLength = be.Uint32(b[0:])
	h.HeaderLength = be.Uint32(b[4:])
	if h.HeaderLength < minFileHeader {
		return 4, "file header length " + strconv.FormatUint(uint64(h.HeaderLength), 10) + " is below the minimum of 52"
	}
	if h.HeaderLength > uint32(len(b)) {
		return len(b), "truncated file header: header length " + strconv.FormatUint(uint64(h.HeaderLength), 10) + ", file has " + strconv.Itoa(len(b)) + " bytes"
	}
	hl := int(h.HeaderLength)
	h.HighRelease, h.HighVersion = b[8]>>5, b[8]&0x1F
	h.LowRelease, h.LowVersion = b[9]>>5, b[9]&0x1F
	h.Opened = parseFileTime(be.Uint32(b[10:]))
	h.LastAppended = parseFileTime(be.Uint32(b[14:]))
	h.CDRCount = be.Uint32(b[18:])
	h.Sequence = be.Uint32(b[22:])
	h.ClosureReason = b[26]
	copy(h.NodeIP[:], b[27:47])
	h.LostCDR = b[47]
	p := 48
	n := int(be.Uint16(b[p:]))
	p += 2
	if n > hl-p-2 {
		return 48, "CDR routeing filter length " + strconv.Itoa(n) + " overruns the file header"
	}
	h.RouteFilter = b[p : p+n]
	p += n
	n = int(be.Uint16(b[p:]))
	q := p
	p += 2
	if n > hl-p {
		return q, "private extension length " + strconv.Itoa(n) + " overruns the file header"
	}
	h.PrivateExt = b[p : p+n]
	p += n
	if hl-p >= 2 {
		h.HasReleaseExt = true
		h.HighReleaseExt, h.LowReleaseExt = b[p], b[p+1]
	}
	return 0, ""
}

// cdrHeader is a TS 32.297 CDR header (clause 6.1.2).
type cdrHeader struct {
	length  int   // CDR length, header excluded
	size    int   // header size: 5 with a release extension (release 7), else 4
	format  uint8 // data record format: 1 BER, 2 unaligned PER, 3 aligned PER, 4 XER
	tsNum   uint8 // TS number
	release uint8
}

func parseCDRHeader(b []byte, off int) (cdrHeader, string) {
	var h cdrHeader
	if len(b)-off < 4 {
		return h, "truncated CDR header"
	}
	h.length = int(binary.BigEndian.Uint16(b[off:]))
	h.release = b[off+2] >> 5
	h.format, h.tsNum = b[off+3]>>5, b[off+3]&0x1F
	h.size = 4
	if h.release == 7 {
		h.size = 5
		if len(b)-off < 5 {
			return h, "truncated CDR header"
		}
	}
	return h, ""
}

// EncodeFile wraps CDR bodies in a TS 32.297 file: a 54-octet header of release 7
// (release extension 6, Rel-16), then each CDR behind its 5-octet CDR header (length,
// release 7, BER encoding). It is the inverse of the file layer the Decoder reads, for
// tools and simulators that write drop-directory files.
func EncodeFile(bodies [][]byte) []byte {
	h := make([]byte, 54)
	binary.BigEndian.PutUint32(h[4:], 54)
	h[8], h[9] = 0xE5, 0xE5
	binary.BigEndian.PutUint32(h[18:], uint32(len(bodies)))
	binary.BigEndian.PutUint32(h[22:], 7)
	h[52], h[53] = 6, 6
	b := h
	for _, body := range bodies {
		b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
		b = append(b, 0xE5, 0x34, 0x06)
		b = append(b, body...)
	}
	binary.BigEndian.PutUint32(b[0:], uint32(len(b)))
	return b
}
