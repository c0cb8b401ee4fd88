// Package record holds fleetmeter's canonical records: the usage record every collector
// emits (schema usage.v1) and the rated record the rater produces. It is the leaf of the
// dependency graph: it imports nothing of the project.
package record

import (
	"fmt"
	"time"
)

// Schema names the canonical usage schema; it travels in a Kafka header beside each batch.
const Schema = "usage.v1"

// RatedSchema names the rated record schema.
const RatedSchema = "rated.v1"

// Sources a usage record may come from.
const (
	SourceMQTT = "mqtt"
	SourceCoAP = "coap"
	SourceHTTP = "http"
	SourceCDR  = "cdr"
)

// Usage is one canonical usage record (usage.v1). Times are milliseconds since the Unix
// epoch, UTC. Lat/Lon are meaningful only when HasPos is set, SliceSST only when HasSlice is
// set: they are the nullable columns of the schema.
type Usage struct {
	EventID      string
	Tenant       string
	Device       string
	Source       string
	StartTime    int64
	EndTime      int64
	ReceivedTime int64
	BytesUp      uint64
	BytesDown    uint64
	DurationMs   uint64
	Events       uint64
	RatingGroup  uint32
	PLMN         string
	Cell         string
	Lat          float64
	Lon          float64
	HasPos       bool
	RAT          string
	SliceSST     uint8
	HasSlice     bool
	SliceSD      string
}

// Validate checks the invariants every accepted record keeps. It returns a short reason
// code and a message; an empty reason means the record is valid.
func (u *Usage) Validate() error {
	switch {
	case u.EventID == "":
		return &InvalidError{Reason: "missing_event_id", Msg: "event_id is empty"}
	case u.Tenant == "":
		return &InvalidError{Reason: "missing_identity", Msg: "tenant is empty"}
	case u.Device == "":
		return &InvalidError{Reason: "missing_identity", Msg: "device is empty"}
	case u.EndTime < u.StartTime:
		return &InvalidError{Reason: "bad_interval", Msg: "end_time before start_time"}
	case u.HasPos && (u.Lat < -90 || u.Lat > 90 || u.Lon < -180 || u.Lon > 180 || u.Lat != u.Lat || u.Lon != u.Lon):
		return &InvalidError{Reason: "bad_position", Msg: fmt.Sprintf("position %v,%v out of range", u.Lat, u.Lon)}
	}
	return nil
}

// InvalidError says why a record or payload was refused; Reason is a stable code that
// lands in topic rejected and in metric labels.
type InvalidError struct {
	Reason string
	Msg    string
}

func (e *InvalidError) Error() string { return e.Reason + ": " + e.Msg }

// Start returns the start time as a time.Time in UTC.
func (u *Usage) Start() time.Time { return time.UnixMilli(u.StartTime).UTC() }

// Charges a rated record may carry.
const (
	ChargeUsage      = "usage"
	ChargeDeviceFee  = "device_fee"
	ChargeAdjustment = "adjustment"
)

// Rated is a priced record: the usage it prices plus the rating outcome. Amount is money
// in micro-units of Currency (six decimals), never floating point.
type Rated struct {
	Usage
	RecordID      string
	Charge        string
	Zone          string
	Mobility      string
	Tariff        string
	TariffVersion string
	Offer         string
	ActiveDevices uint64
	Currency      string
	Amount        Micros
	RatedTime     int64
}
