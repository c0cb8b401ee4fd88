package record

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Rejection is one refused input as it lands on topic rejected: nothing is dropped
// silently. Raw is the input exactly as received (base64 in JSON).
type Rejection struct {
	Source   string
	Tenant   string
	Device   string
	Reason   string // stable code: bad_json, no_tariff, unknown_device, ...
	Detail   string // human-readable message
	Raw      []byte
	Received int64 // ms since epoch
}

// AppendJSON appends the rejection as one JSON object.
func (r *Rejection) AppendJSON(b []byte) []byte {
	b = appendStr(b, "{\"source\":", r.Source)
	b = appendStr(b, ",\"tenant\":", r.Tenant)
	b = appendStr(b, ",\"device\":", r.Device)
	b = appendStr(b, ",\"reason\":", r.Reason)
	b = appendStr(b, ",\"detail\":", r.Detail)
	b = append(b, ",\"raw\":\""...)
	b = base64.StdEncoding.AppendEncode(b, r.Raw)
	b = append(b, '"')
	b = appendTime(b, ",\"received_time\":", r.Received)
	return append(b, '}')
}

// ParseRejection decodes what AppendJSON wrote.
func ParseRejection(b []byte) (Rejection, error) {
	var j struct {
		Source   string `json:"source"`
		Tenant   string `json:"tenant"`
		Device   string `json:"device"`
		Reason   string `json:"reason"`
		Detail   string `json:"detail"`
		Raw      []byte `json:"raw"`
		Received string `json:"received_time"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return Rejection{}, fmt.Errorf("decode rejection: %w", err)
	}
	r := Rejection{Source: j.Source, Tenant: j.Tenant, Device: j.Device, Reason: j.Reason, Detail: j.Detail, Raw: j.Raw}
	if j.Received != "" {
		t, err := time.Parse(time.RFC3339Nano, j.Received)
		if err != nil {
			return Rejection{}, fmt.Errorf("decode rejection: received_time %s: %w", strconv.Quote(j.Received), err)
		}
		r.Received = t.UnixMilli()
	}
	return r, nil
}
