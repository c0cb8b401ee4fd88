package httpin

import (
	"bytes"
	"encoding/json"
	"mime"
	"strings"

	"fleetmeter/ingest/payload"
	"fleetmeter/record"
)

// EventType is the CloudEvents type every event of a batch must carry.
const EventType = "io.fleetmeter.usage.v1"

// cloudEvent is a CloudEvents 1.0 structured event in JSON. Other attributes
// (extensions, time, dataschema) are allowed and ignored.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      json.RawMessage `json:"data_base64"`
}

// cloudEvents takes a CloudEvents JSON batch (an array of structured events). It
// reports false, taking nothing, when the batch holds more than maxLines events.
func (b *batch) cloudEvents(body []byte) bool {
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '[' {
		b.refuse(wholeBody, "", record.ReasonBadJSON, "a CloudEvents batch is a JSON array of events", body)
		return true
	}
	var events []json.RawMessage
	if err := json.Unmarshal(body, &events); err != nil {
		b.refuse(wholeBody, "", record.ReasonBadJSON, "cloudevents batch: "+err.Error(), body)
		return true
	}
	if len(events) > b.maxLines {
		return false
	}
	for i, raw := range events {
		b.cloudEvent(i, raw)
	}
	return true
}

func (b *batch) cloudEvent(i int, raw []byte) {
	at := ref{index: i}
	if len(raw) == 0 || raw[0] != '{' { // json.Unmarshal left raw trimmed and well-formed
		b.refuse(at, "", record.ReasonBadEvent, "an event must be a JSON object", raw)
		return
	}
	var e cloudEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		b.refuse(at, "", record.ReasonBadEvent, "not a CloudEvent object: "+err.Error(), raw)
		return
	}
	at.id = clip(e.ID, 128)
	data := bytes.TrimSpace(e.Data)
	bad := ""
	switch {
	case e.SpecVersion != "1.0":
		bad = "specversion must be \"1.0\""
	case e.ID == "":
		bad = "id is required"
	case e.Source == "":
		bad = "source is required"
	case e.Type != EventType:
		b.refuse(at, e.Subject, record.ReasonUnknownType, "type "+record.QuoteInput(e.Type)+" is not "+EventType, raw)
		return
	case e.DataContentType != "" && !isJSONMediaType(e.DataContentType):
		bad = "datacontenttype must be application/json"
	case len(e.DataBase64) > 0:
		bad = "data_base64 is not supported: send data as a JSON object"
	case len(data) == 0 || string(data) == "null":
		bad = "data is required"
	case data[0] != '{':
		bad = "data must be a JSON object"
	}
	if bad != "" {
		b.refuse(at, e.Subject, record.ReasonBadEvent, bad, raw)
		return
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		b.refuse(at, e.Subject, record.ReasonBadJSON, "data: "+err.Error(), raw)
		return
	}
	// start_time is required in a canonical record and unknown to plain JSON (ts), so
	// it tells the two shapes apart.
	if _, canonical := keys["start_time"]; canonical {
		b.canonicalEvent(at, &e, data, raw)
		return
	}
	b.plainEvent(at, &e, data, raw)
}

func (b *batch) canonicalEvent(at ref, e *cloudEvent, data, raw []byte) {
	u, err := record.ParseJSON(data)
	if err != nil {
		b.refuse(at, e.Subject, record.ReasonBadJSON, "data: "+err.Error(), raw)
		return
	}
	switch {
	case u.Device == "":
		u.Device = e.Subject
	case e.Subject != "" && e.Subject != u.Device:
		b.refuse(at, u.Device, record.ReasonDeviceMismatch, "subject "+record.QuoteInput(e.Subject)+" is not data.device "+
			record.QuoteInput(u.Device), raw)
		return
	}
	if u.EventID == "" && u.Device != "" {
		u.EventID = b.prefix + u.Device + ":" + e.ID
	}
	b.admit(&u, at, raw)
}

func (b *batch) plainEvent(at ref, e *cloudEvent, data, raw []byte) {
	if e.Subject == "" {
		b.refuse(at, "", record.ReasonMissingIdentity, "subject (the device) is required when data is fleetmeter plain JSON", raw)
		return
	}
	if err := record.CheckDeviceID(e.Subject); err != nil {
		b.refuse(at, e.Subject, record.ReasonOf(err), "subject: "+err.(*record.InvalidError).Msg, raw)
		return
	}
	n := len(b.recs)
	id := payload.Identity{Tenant: b.tenant, Device: e.Subject, Source: record.SourceHTTP}
	recs, err := b.parser.Parse(payload.KindJSON, data, id, b.received, b.recs)
	if err != nil {
		b.refuseErr(at, e.Subject, err, raw)
		return
	}
	u := recs[n] // data is one object: exactly one record
	clear(recs[n:])
	b.recs = recs[:n]
	// Without id or seq in data the parser derives "...:#<hash>"; the event's id is the
	// better idempotency key ('#' never occurs in a device-supplied id).
	if rest, ok := strings.CutPrefix(u.EventID, b.prefix+e.Subject+":"); ok && strings.HasPrefix(rest, "#") {
		u.EventID = b.prefix + e.Subject + ":" + e.ID
	}
	b.admit(&u, at, raw)
}

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
