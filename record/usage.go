// Package record holds fleetmeter's canonical records: the usage record every collector
// emits (schema usage.v1) and the rated record the rater produces. It is the leaf of the
// dependency graph: it imports nothing of the project.
package record

import "time"

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
	// SourceKafka is not a source of usage: it marks the rejections the pipeline makes of
	// Kafka messages it cannot decode (ReasonBadBatch, ReasonBadRejection).
	SourceKafka = "kafka"
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

// Validate is Validate(u).
func (u *Usage) Validate() error { return Validate(u) }

// InvalidError says why a record or payload was refused; Reason is one of the reason
// codes (Reasons), which land in topic rejected and in metric labels.
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
