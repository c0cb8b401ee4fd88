package cdr

import (
	"bytes"
	"math"
	"strconv"

	"fleetmeter/record"
)

// Tags of TS 32.298 CHFRecord and the parts of it the decoder maps. All are
// context-specific; everything else is skipped.
const (
	tagChargingFunctionRecord = 200

	// ChargingRecord (SET)
	tagRecordingNFID      = 1
	tagSubscriberID       = 2
	tagMultipleUnitUsage  = 5
	tagRecordOpeningTime  = 6
	tagDuration           = 7
	tagLocalRecordSeqNum  = 11
	tagPDUSessionCharging = 13

	// SubscriptionID (SET)
	tagSubscriptionIDType = 0
	tagSubscriptionIDData = 1

	// MultipleUnitUsage (SEQUENCE)
	tagRatingGroup        = 0
	tagUsedUnitContainers = 1

	// UsedUnitContainer (SEQUENCE)
	tagTime                 = 1
	tagDataVolumeUplink     = 5
	tagDataVolumeDownlink   = 6
	tagServiceSpecificUnits = 7
	tagLocalSequenceNumber  = 9
	tagPDUContainerInfo     = 11

	// PDUContainerInformation (SEQUENCE)
	tagTimeOfFirstUsage = 2
	tagTimeOfLastUsage  = 3
	tagContainerULI     = 5
	tagContainerRATType = 7

	// PDUSessionChargingInformation (SET)
	tagPDUULI          = 3
	tagPDUSessionID    = 6
	tagNetworkSlice    = 7
	tagPDURATType      = 12
	tagDataNetworkName = 13

	// SingleNSSAI (SEQUENCE)
	tagSliceServiceType   = 0
	tagSliceDifferentiate = 1
)

// SubscriptionIDType values (TS 32.298, as Diameter Subscription-Id-Type).
const (
	subE164 = 0
	subIMSI = 1
	subNAI  = 3
)

// maxSeconds keeps seconds*1000 within int64.
const maxSeconds = math.MaxInt64 / 1000

// cdrFields holds one CHFRecord's mapped fields; byte slices alias the input.
type cdrFields struct {
	nfID       []byte
	subType    int64
	subData    []byte
	hasSub     bool
	opening    int64
	hasOpening bool
	duration   uint64
	lrsn       uint64
	hasLRSN    bool
	pduSession uint64
	dnn        []byte
	sst        uint8
	hasSST     bool
	sd         []byte
	rat        uint64
	hasRAT     bool
	uli        []byte
}

// unit is one used unit container with its rating group.
type unit struct {
	rg       uint32
	pos      int // 1-based position in its MultipleUnitUsage
	seq      uint64
	hasSeq   bool
	time     uint64
	up, down uint64
	ssu      uint64
	first    int64
	last     int64
	hasFirst bool
	hasLast  bool
	rat      uint64
	hasRAT   bool
	// uli is the container's userLocationInformation, as offsets in the input: with no
	// pointer in it, a unit is copied and stored without the garbage collector's write
	// barriers, which are on whenever it marks.
	uli0, uli1 int
	hasULI     bool
}

// constructed checks that t may be walked as a SET/SEQUENCE.
func (r *reader) constructed(t tlv, what string) bool {
	if !r.failed && !t.cons {
		r.fail(t.off, what+": expected a constructed element")
	}
	return !r.failed
}

// chfRecord decodes one CHFRecord element and appends its usage records.
func (d *Decoder) chfRecord(t tlv, into []record.Usage) []record.Usage {
	r := &d.r
	if t.class != classContext || t.tag != tagChargingFunctionRecord || !t.cons {
		r.fail(t.off, "not a CHFRecord chargingFunctionRecord [200]: "+describeTag(t))
		return into
	}
	var fields cdrFields // on the stack: its slices are written without write barriers
	f := &fields
	d.units = d.units[:0]
	for p := t.start; p < t.end; {
		c := r.elem(p, t.end)
		if r.failed {
			return into
		}
		p = c.next
		if c.class != classContext {
			continue
		}
		switch c.tag {
		case tagRecordingNFID:
			f.nfID = r.prim(c, "recordingNetworkFunctionID")
		case tagSubscriberID:
			d.subscriber(c, f)
		case tagMultipleUnitUsage:
			d.multipleUnitUsage(c)
		case tagRecordOpeningTime:
			f.opening, f.hasOpening = r.timestamp(c, "recordOpeningTime"), true
		case tagDuration:
			f.duration = r.uint(c, "duration", maxSeconds)
		case tagLocalRecordSeqNum:
			f.lrsn, f.hasLRSN = r.uint(c, "localRecordSequenceNumber", math.MaxUint32), true
		case tagPDUSessionCharging:
			d.pduSession(c, f)
		}
	}
	if r.failed {
		return into
	}
	if !f.hasOpening {
		for i := range d.units {
			if !d.units[i].hasFirst {
				r.fail(t.off, "recordOpeningTime missing")
				return into
			}
		}
	}
	return d.emit(t, f, into)
}

func (d *Decoder) subscriber(t tlv, f *cdrFields) {
	r := &d.r
	if !r.constructed(t, "subscriberIdentifier") {
		return
	}
	for p := t.start; p < t.end; {
		c := r.elem(p, t.end)
		if r.failed {
			return
		}
		p = c.next
		if c.class != classContext {
			continue
		}
		switch c.tag {
		case tagSubscriptionIDType:
			f.subType = r.int64(c, "subscriptionIDType")
		case tagSubscriptionIDData:
			f.subData, f.hasSub = r.prim(c, "subscriptionIDData"), true
		}
	}
}

func (d *Decoder) multipleUnitUsage(t tlv) {
	r := &d.r
	if !r.constructed(t, "listOfMultipleUnitUsage") {
		return
	}
	for p := t.start; p < t.end; {
		m := r.elem(p, t.end)
		if !r.constructed(m, "MultipleUnitUsage") {
			return
		}
		p = m.next
		first := len(d.units)
		var rg uint64
		for q := m.start; q < m.end; {
			c := r.elem(q, m.end)
			if r.failed {
				return
			}
			q = c.next
			if c.class != classContext {
				continue
			}
			switch c.tag {
			case tagRatingGroup:
				rg = r.uint(c, "ratingGroup", math.MaxUint32)
			case tagUsedUnitContainers:
				d.usedUnitContainers(c)
			}
		}
		for i := first; i < len(d.units); i++ {
			d.units[i].rg = uint32(rg)
		}
	}
}

func (d *Decoder) usedUnitContainers(t tlv) {
	r := &d.r
	if !r.constructed(t, "usedUnitContainers") {
		return
	}
	for p, pos := t.start, 1; p < t.end; pos++ {
		c := r.elem(p, t.end)
		if !r.constructed(c, "UsedUnitContainer") {
			return
		}
		p = c.next
		d.units = append(d.units, unit{pos: pos}) // filled in place
		u := &d.units[len(d.units)-1]
		for q := c.start; q < c.end; {
			e := r.elem(q, c.end)
			if r.failed {
				return
			}
			q = e.next
			if e.class != classContext {
				continue
			}
			switch e.tag {
			case tagTime:
				u.time = r.uint(e, "time", maxSeconds)
			case tagDataVolumeUplink:
				u.up = r.uint(e, "dataVolumeUplink", math.MaxUint64)
			case tagDataVolumeDownlink:
				u.down = r.uint(e, "dataVolumeDownlink", math.MaxUint64)
			case tagServiceSpecificUnits:
				u.ssu = r.uint(e, "serviceSpecificUnits", math.MaxUint64)
			case tagLocalSequenceNumber:
				u.seq, u.hasSeq = r.uint(e, "localSequenceNumber", math.MaxUint32), true
			case tagPDUContainerInfo:
				d.pduContainerInfo(e, u)
			}
		}
	}
}

func (d *Decoder) pduContainerInfo(t tlv, u *unit) {
	r := &d.r
	if !r.constructed(t, "pDUContainerInformation") {
		return
	}
	for p := t.start; p < t.end; {
		c := r.elem(p, t.end)
		if r.failed {
			return
		}
		p = c.next
		if c.class != classContext {
			continue
		}
		switch c.tag {
		case tagTimeOfFirstUsage:
			u.first, u.hasFirst = r.timestamp(c, "timeOfFirstUsage"), true
		case tagTimeOfLastUsage:
			u.last, u.hasLast = r.timestamp(c, "timeOfLastUsage"), true
		case tagContainerULI:
			if r.prim(c, "userLocationInformation"); !r.failed {
				u.uli0, u.uli1, u.hasULI = c.start, c.end, true
			}
		case tagContainerRATType:
			u.rat, u.hasRAT = r.uint(c, "rATType", 255), true
		}
	}
}

func (d *Decoder) pduSession(t tlv, f *cdrFields) {
	r := &d.r
	if !r.constructed(t, "pDUSessionChargingInformation") {
		return
	}
	for p := t.start; p < t.end; {
		c := r.elem(p, t.end)
		if r.failed {
			return
		}
		p = c.next
		if c.class != classContext {
			continue
		}
		switch c.tag {
		case tagPDUULI:
			f.uli = r.prim(c, "userLocationInformation")
		case tagPDUSessionID:
			f.pduSession = r.uint(c, "pDUSessionId", 255)
		case tagNetworkSlice:
			d.slice(c, f)
		case tagPDURATType:
			f.rat, f.hasRAT = r.uint(c, "rATType", 255), true
		case tagDataNetworkName:
			f.dnn = r.prim(c, "dataNetworkNameIdentifier")
		}
	}
}

func (d *Decoder) slice(t tlv, f *cdrFields) {
	r := &d.r
	if !r.constructed(t, "networkSliceInstanceID") {
		return
	}
	for p := t.start; p < t.end; {
		c := r.elem(p, t.end)
		if r.failed {
			return
		}
		p = c.next
		if c.class != classContext {
			continue
		}
		switch c.tag {
		case tagSliceServiceType:
			f.sst, f.hasSST = uint8(r.uint(c, "sST", 255)), true
		case tagSliceDifferentiate:
			f.sd = r.prim(c, "sD")
		}
	}
}

// emit appends one record per used unit container of the CHFRecord t.
func (d *Decoder) emit(t tlv, f *cdrFields, into []record.Usage) []record.Usage {
	d.stats.CDRs++
	if len(d.units) == 0 {
		d.stats.NoUsage++
		return into
	}
	dev0 := len(d.strs)
	d.strs = appendDevice(d.strs, f)
	dev1 := len(d.strs)
	sd := d.sliceSD(f.sd)
	tenant := d.tenants.lookup(d.strs[dev0:dev1], f.dnn, f.sst, f.hasSST, sd)

	var sessPLMN, sessCell string
	if f.uli != nil {
		sessPLMN, sessCell = d.location(f.uli)
	}
	for i := range d.units {
		u := &d.units[i]
		plmn, cell := sessPLMN, sessCell
		if u.hasULI {
			plmn, cell = d.location(d.r.b[u.uli0:u.uli1])
		}
		rat := ""
		switch {
		case u.hasRAT:
			rat = ratName(u.rat)
		case f.hasRAT:
			rat = ratName(f.rat)
		}
		start := f.opening
		if u.hasFirst {
			start = u.first
		}
		end := start + int64(u.time)*1000
		if u.hasLast {
			end = u.last
		}
		ev0 := len(d.strs)
		d.strs = d.appendEventID(d.strs, t, f, u)
		d.marks = append(d.marks, strMark{ev0: int32(ev0), ev1: int32(len(d.strs)), dev0: int32(dev0), dev1: int32(dev1)})
		into = append(into, record.Usage{}) // filled in place: no copy of the whole record
		o := &into[len(into)-1]
		o.Tenant, o.Source = tenant, record.SourceCDR
		o.StartTime, o.EndTime, o.ReceivedTime = start, end, d.ReceivedTime
		o.BytesUp, o.BytesDown, o.DurationMs, o.Events, o.RatingGroup = u.up, u.down, u.time*1000, u.ssu, u.rg
		o.PLMN, o.Cell, o.RAT = plmn, cell, rat
		o.SliceSST, o.HasSlice, o.SliceSD = f.sst, f.hasSST, sd
	}
	d.stats.Records += uint64(len(d.units))
	if len(d.strs) >= patchEvery {
		d.patch(into)
	}
	return into
}

// appendDevice writes the SUPI in TS 29.571 form: imsi-<digits>, nai-<NAI>, or
// msisdn-<digits> for an E.164 GPSI; other identifier types as written.
func appendDevice(b []byte, f *cdrFields) []byte {
	var prefix string
	switch f.subType {
	case subIMSI:
		prefix = "imsi-"
	case subNAI:
		prefix = "nai-"
	case subE164:
		prefix = "msisdn-"
	}
	if prefix != "" && len(f.subData) > 0 && !bytes.HasPrefix(f.subData, []byte(prefix)) {
		b = append(b, prefix...)
	}
	return append(b, f.subData...)
}

// appendEventID writes cdr:<nf id>:<local record seq>:<rating group>:<container seq>.
// Without a localRecordSequenceNumber the record is named by h<FNV-1a 64 of its
// encoding>; without a container localSequenceNumber the container by p<position>.
func (d *Decoder) appendEventID(b []byte, t tlv, f *cdrFields, u *unit) []byte {
	b = append(b, "cdr:"...)
	b = append(b, f.nfID...)
	b = append(b, ':')
	if f.hasLRSN {
		b = strconv.AppendUint(b, f.lrsn, 10)
	} else {
		h := uint64(14695981039346656037)
		for _, c := range d.r.b[t.off:t.next] {
			h ^= uint64(c)
			h *= 1099511628211
		}
		b = append(b, 'h')
		b = appendHex64(b, h)
	}
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(u.rg), 10)
	b = append(b, ':')
	if u.hasSeq {
		return strconv.AppendUint(b, u.seq, 10)
	}
	b = append(b, 'p')
	return strconv.AppendInt(b, int64(u.pos), 10)
}

const hexDigits = "0123456789abcdef"

func appendHex64(b []byte, v uint64) []byte {
	for s := 60; s >= 0; s -= 4 {
		b = append(b, hexDigits[v>>uint(s)&0xF])
	}
	return b
}

// sliceSD renders the slice differentiator as lowercase hex. free5gc writes the ASCII
// of the hex string (6 octets) instead of 3 binary octets; that form is read as the hex
// it spells.
func (d *Decoder) sliceSD(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	s := d.scratch[:0]
	if len(v) == 6 && isHex(v, 6, 6) {
		for _, c := range v {
			s = append(s, lower(c))
		}
	} else {
		for _, c := range v {
			s = append(s, hexDigits[c>>4], hexDigits[c&0xF])
		}
	}
	d.scratch = s
	return d.in.str(s)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// location maps a UserLocation JSON to plmn "MCC-MNC" and cell MCC+MNC+cell id (lowercase
// hex): the NCGI/ECGI, else the TAI (MCC+MNC+TAC). The plmn comes from the cell's PLMN,
// else the TAI's.
func (d *Decoder) location(uli []byte) (plmn, cell string) {
	e := d.ulis.lookup(uli)
	if !e.set || e.uli != string(uli) {
		e.plmn, e.cell, e.bad = d.parseULI(uli)
		e.uli, e.set = string(uli), true
	}
	if e.bad {
		d.stats.BadLocation++
	}
	return e.plmn, e.cell
}

// parseULI is location without the cache; bad reports an unreadable ULI.
func (d *Decoder) parseULI(uli []byte) (plmn, cell string, bad bool) {
	var loc location // on the stack, like cdrFields
	if !parseLocation(uli, &loc) {
		return "", "", true
	}
	mcc, mnc, id := loc.cgiMCC, loc.cgiMNC, loc.cellID
	if id == nil {
		mcc, mnc, id = loc.taiMCC, loc.taiMNC, loc.tac
	}
	if mcc == nil {
		return "", "", false
	}
	s := append(d.scratch[:0], mcc...)
	s = append(s, '-')
	s = append(s, mnc...)
	plmn = d.in.str(s)
	s = append(s[:0], mcc...)
	s = append(s, mnc...)
	for _, c := range id {
		s = append(s, lower(c))
	}
	cell = d.in.str(s)
	d.scratch = s
	return plmn, cell, false
}

// ratName maps the CHF rATType (TS 29.274 / 29.061 RAT type numbering, which the CHF
// ASN.1 uses: 6 EUTRAN, 10 NR) to the usage.v1 rat values. Types outside that set map
// to "".
func ratName(v uint64) string {
	switch v {
	case 3: // WLAN
		return "WLAN"
	case 6, 11, 12, 13, 14: // EUTRAN (WB-E-UTRAN), and via LEO/MEO/GEO/other satellite
		return "EUTRA"
	case 8, 15, 16, 17, 18: // EUTRAN-NB-IoT, and via satellite
		return "NB-IoT"
	case 9, 19, 20, 21, 22: // LTE-M, and via satellite
		return "LTE-M"
	case 10: // NR
		return "NR"
	}
	return ""
}

func describeTag(t tlv) string {
	cls := [...]string{"universal", "application", "context", "private"}[t.class>>6]
	form := "primitive"
	if t.cons {
		form = "constructed"
	}
	return cls + " " + form + " tag " + strconv.FormatUint(uint64(t.tag), 10)
}
