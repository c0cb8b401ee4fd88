package payload

import (
	"errors"
	"math"

	"fleetmeter/record"
)

// finish completes the records of this payload: identity, default times, event ids, and
// then the checks record.ValidateWithin owns (every record is valid, or the payload is
// refused).
func (p *Parser) finish(out []record.Usage) *record.InvalidError {
	recs := out[p.base:]
	for i := range recs {
		u, m := &recs[i], &p.meta[i]
		u.Tenant, u.Device, u.Source = p.id.Tenant, p.id.Device, p.id.Source
		u.ReceivedTime = p.received
		if m.fields&uint32(fieldTS) == 0 {
			u.StartTime = p.received
		}
		if m.fields&uint32(fieldEnd) == 0 {
			u.EndTime = u.StartTime
		}
		switch m.fields & uint32(fieldLat|fieldLon) {
		case uint32(fieldLat | fieldLon):
			u.HasPos = true
		case 0:
		default:
			return invalid(ReasonBadPosition, "lat and lon go together")
		}
	}
	if err := p.eventIDs(recs); err != nil {
		return err
	}
	lim := p.lim.record()
	for i := range recs {
		if err := record.ValidateWithin(&recs[i], lim); err != nil {
			return asInvalid(err)
		}
	}
	return nil
}

// asInvalid returns err as the *record.InvalidError it is (the record package's checks
// return nothing else), or wraps it under its reason.
func asInvalid(err error) *record.InvalidError {
	var inv *record.InvalidError
	if errors.As(err, &inv) {
		return inv
	}
	return invalid(record.ReasonOf(err), err.Error())
}

// eventIDs gives every record its idempotency key. A device-supplied id or seq yields
// "<source>:<tenant>:<device>:<id>"; otherwise the key is "<source>:<tenant>:<device>:#"
// and 16 hex digits of an FNV-1a 64 hash of the identity and the record's content (not
// the received time), so a redelivered payload yields the same keys. Records of one
// payload with identical content are told apart by their occurrence number.
func (p *Parser) eventIDs(recs []record.Usage) *record.InvalidError {
	p.hashes = p.hashes[:0]
	for i := range recs {
		if p.meta[i].fields&uint32(fieldID|fieldSeq) != 0 {
			p.hashes = append(p.hashes, 0)
			continue
		}
		p.hashes = append(p.hashes, contentHash(&recs[i]))
	}
	if err := p.checkDuplicateIDs(); err != nil {
		return err
	}
	p.disambiguate()
	for i := range recs {
		m := &p.meta[i]
		b := append(p.eidBuf[:0], p.id.Source...)
		b = append(b, ':')
		b = append(b, p.id.Tenant...)
		b = append(b, ':')
		b = append(b, p.id.Device...)
		b = append(b, ':')
		if m.fields&uint32(fieldID|fieldSeq) != 0 {
			b = append(b, p.ids[m.idStart:m.idEnd]...)
		} else {
			b = append(b, '#')
			b = appendHex16(b, p.hashes[i])
		}
		p.eidBuf = b
		recs[i].EventID = string(b)
	}
	return nil
}

// checkDuplicateIDs refuses a payload whose records repeat a device-supplied id: keeping
// one would silently drop the others as replays.
func (p *Parser) checkDuplicateIDs() *record.InvalidError {
	with := 0
	for i := range p.meta {
		if p.meta[i].fields&uint32(fieldID|fieldSeq) != 0 {
			with++
		}
	}
	if with < 2 {
		return nil
	}
	if with <= 64 {
		for i := range p.meta {
			a := &p.meta[i]
			if a.fields&uint32(fieldID|fieldSeq) == 0 {
				continue
			}
			for j := i + 1; j < len(p.meta); j++ {
				b := &p.meta[j]
				if b.fields&uint32(fieldID|fieldSeq) != 0 && string(p.ids[a.idStart:a.idEnd]) == string(p.ids[b.idStart:b.idEnd]) {
					return invalid(ReasonDuplicateID, "id "+record.QuoteInput(string(p.ids[a.idStart:a.idEnd]))+" appears twice")
				}
			}
		}
		return nil
	}
	p.resetSeen()
	for i := range p.meta {
		a := &p.meta[i]
		if a.fields&uint32(fieldID|fieldSeq) == 0 {
			continue
		}
		h := fnvBytes(fnvOffset, p.ids[a.idStart:a.idEnd])
		if j, ok := p.seen[h]; ok {
			b := &p.meta[j]
			if string(p.ids[a.idStart:a.idEnd]) == string(p.ids[b.idStart:b.idEnd]) {
				return invalid(ReasonDuplicateID, "id "+record.QuoteInput(string(p.ids[a.idStart:a.idEnd]))+" appears twice")
			}
		}
		p.seen[h] = i
	}
	return nil
}

// disambiguate rehashes the second and later records with the same content hash with
// their occurrence number, so identical records of one payload get distinct keys and a
// redelivery of the payload the same keys.
func (p *Parser) disambiguate() {
	hs := p.hashes
	if len(hs) < 2 {
		return
	}
	if len(hs) <= 64 {
		// Downwards, so every hs[j] with j < i is still the original hash.
		for i := len(hs) - 1; i > 0; i-- {
			if p.meta[i].fields&uint32(fieldID|fieldSeq) != 0 {
				continue
			}
			k := uint64(0)
			for j := 0; j < i; j++ {
				if hs[j] == hs[i] && p.meta[j].fields&uint32(fieldID|fieldSeq) == 0 {
					k++
				}
			}
			if k > 0 {
				hs[i] = fnvUint(hs[i], k)
			}
		}
		return
	}
	p.resetSeen()
	for i, h := range hs {
		if p.meta[i].fields&uint32(fieldID|fieldSeq) != 0 {
			continue
		}
		k := p.seen[h]
		p.seen[h] = k + 1
		if k > 0 {
			hs[i] = fnvUint(h, uint64(k))
		}
	}
}

func (p *Parser) resetSeen() {
	if p.seen == nil {
		p.seen = make(map[uint64]int)
	}
	clear(p.seen)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func fnvString(h uint64, s string) uint64 {
	h = fnvUint(h, uint64(len(s)))
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvUint(h, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return h
}

// contentHash covers everything a record says except its received time. Strings are
// length-prefixed so adjacent fields cannot trade bytes.
func contentHash(u *record.Usage) uint64 {
	h := uint64(fnvOffset)
	h = fnvString(h, u.Source)
	h = fnvString(h, u.Tenant)
	h = fnvString(h, u.Device)
	h = fnvUint(h, uint64(u.StartTime))
	h = fnvUint(h, uint64(u.EndTime))
	h = fnvUint(h, u.BytesUp)
	h = fnvUint(h, u.BytesDown)
	h = fnvUint(h, u.DurationMs)
	h = fnvUint(h, u.Events)
	h = fnvUint(h, uint64(u.RatingGroup))
	h = fnvString(h, u.PLMN)
	h = fnvString(h, u.Cell)
	if u.HasPos {
		h = fnvUint(h, 1)
		h = fnvUint(h, math.Float64bits(u.Lat))
		h = fnvUint(h, math.Float64bits(u.Lon))
	} else {
		h = fnvUint(h, 0)
	}
	h = fnvString(h, u.RAT)
	if u.HasSlice {
		h = fnvUint(h, 1+uint64(u.SliceSST))
	} else {
		h = fnvUint(h, 0)
	}
	return fnvString(h, u.SliceSD)
}

func appendHex16(b []byte, v uint64) []byte {
	const hexdigits = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hexdigits[(v>>uint(i))&0xf])
	}
	return b
}
