package record

import "errors"

// Rejection reason codes: the one list of why fleetmeter refuses an input. A code lands in
// topic rejected, in ClickHouse rejected_usage.reason and in the label reason of
// fleetmeter_*_rejected_total, so it is stable, and the set is closed: every code any
// package emits is one of these (reason_test.go scans the repository for literals). Their
// meanings are in reasonTable (Reasons) and, for operators, in docs/validation.md.
const (
	// Catch-all.
	ReasonInvalid = "invalid"

	// Who sent it.
	ReasonMissingIdentity = "missing_identity"
	ReasonBadTenant       = "bad_tenant"
	ReasonBadDevice       = "bad_device"
	ReasonBadTopic        = "bad_topic"
	ReasonUnknownDevice   = "unknown_device"
	ReasonWrongTenant     = "wrong_tenant"
	ReasonUnknownTenant   = "unknown_tenant"
	ReasonTenantMismatch  = "tenant_mismatch"
	ReasonDeviceMismatch  = "device_mismatch"
	ReasonUnauthenticated = "unauthenticated"
	ReasonUnknownIdentity = "unknown_identity"
	ReasonWrongIdentity   = "wrong_identity"

	// The envelope.
	ReasonTooLarge          = "too_large"
	ReasonCDRTooLarge       = "cdr_too_large"
	ReasonCDRDamaged        = "cdr_damaged"
	ReasonUnknownFormat     = "unknown_format"
	ReasonUnsupportedFormat = "unsupported_format"
	ReasonBadEncoding       = "bad_encoding"
	ReasonBadJSON           = "bad_json"
	ReasonBadSenML          = "bad_senml"
	ReasonBadCBOR           = "bad_cbor"
	ReasonBadEvent          = "bad_event"
	ReasonUnknownType       = "unknown_type"
	ReasonTooManyRecords    = "too_many_records"

	// The fields.
	ReasonUnknownField    = "unknown_field"
	ReasonDuplicateField  = "duplicate_field"
	ReasonBadField        = "bad_field"
	ReasonBadUnit         = "bad_unit"
	ReasonMissingEventID  = "missing_event_id"
	ReasonBadID           = "bad_id"
	ReasonDuplicateID     = "duplicate_id"
	ReasonNegativeCounter = "negative_counter"
	ReasonBadCounter      = "bad_counter"
	ReasonCounterOverflow = "counter_overflow"
	ReasonAbsurdCounter   = "absurd_counter"
	ReasonBadTime         = "bad_time"
	ReasonBadInterval     = "bad_interval"
	ReasonFutureTime      = "future_time"
	ReasonStaleTime       = "stale_time"
	ReasonBadPosition     = "bad_position"

	// Rating and the pipeline.
	ReasonNoTariff       = "no_tariff"
	ReasonAmountOverflow = "amount_overflow"
	ReasonBadBatch       = "bad_batch"
	ReasonBadRejection   = "bad_rejection"
	ReasonQuarantined    = "quarantined"
)

// ReasonInfo is one reason code and its meaning.
type ReasonInfo struct {
	Code    string
	Meaning string
}

// reasonTable is the list of all codes, in the order of the constants above.
var reasonTable = [...]ReasonInfo{
	{ReasonInvalid, "refused without a more specific code: an error that carries none (report it: a code is missing)"},
	{ReasonMissingIdentity, "tenant or device (or the transport's source) is empty"},
	{ReasonBadTenant, "tenant id outside the id alphabet or longer than 128 bytes"},
	{ReasonBadDevice, "device id outside the id alphabet or longer than 128 bytes"},
	{ReasonBadTopic, "MQTT topic is not <prefix>/<tenant>/<device>/usage[/<format>]"},
	{ReasonUnknownDevice, "a strict device registry does not list the device"},
	{ReasonWrongTenant, "the device registry lists the device id, but only under other tenants"},
	{ReasonUnknownTenant, "no tenant rule maps the CDR's subscriber, and there is no default tenant"},
	{ReasonTenantMismatch, "an HTTP record names another tenant than its API key's"},
	{ReasonDeviceMismatch, "a SenML name or CloudEvent subject names another device than the transport"},
	{ReasonUnauthenticated, "CoAP without DTLS outside dev mode, or without an identity"},
	{ReasonUnknownIdentity, "a CoAP DTLS PSK identity the device registry does not know"},
	{ReasonWrongIdentity, "a CoAP path naming another device than the DTLS identity"},
	{ReasonTooLarge, "a body above the collector's size limit; raw keeps its start"},
	{ReasonCDRTooLarge, "a CDR file above cdr.max_file_bytes, not read"},
	{ReasonCDRDamaged, "a CDR file that does not decode past some byte offset"},
	{ReasonUnknownFormat, "a payload that is neither plain JSON nor SenML"},
	{ReasonUnsupportedFormat, "a CoAP Content-Format other than json (50), senml+json (110), senml+cbor (112)"},
	{ReasonBadEncoding, "a gzip body that does not decompress"},
	{ReasonBadJSON, "not well-formed JSON, or not the expected shape"},
	{ReasonBadSenML, "well-formed, but not a SenML pack of the fleetmeter profile"},
	{ReasonBadCBOR, "not well-formed CBOR, or CBOR items the profile does not use"},
	{ReasonBadEvent, "a CloudEvent envelope that is not CloudEvents 1.0 as profiled"},
	{ReasonUnknownType, "a CloudEvent type other than the usage event type"},
	{ReasonTooManyRecords, "more records in one payload or body than allowed"},
	{ReasonUnknownField, "a key or SenML name the format does not define"},
	{ReasonDuplicateField, "a key twice in one object, or a SenML name twice at one time"},
	{ReasonBadField, "a known field with a wrong type or value: plmn, cell, rat, rating_group, slice_sst, slice_sd"},
	{ReasonBadUnit, "a SenML unit the profile does not accept for the name"},
	{ReasonMissingEventID, "a record without event_id, its idempotency key"},
	{ReasonBadID, "a malformed event_id, or a malformed device-supplied id or seq"},
	{ReasonDuplicateID, "two records of one payload or request with the same id"},
	{ReasonNegativeCounter, "a counter below zero"},
	{ReasonBadCounter, "a counter that is not an integer"},
	{ReasonCounterOverflow, "a counter beyond 64 bits"},
	{ReasonAbsurdCounter, "a counter of live input beyond the collector's limit (2^50 by default)"},
	{ReasonBadTime, "a time that does not parse, or lies outside 1970-01-01 to 2100-01-01"},
	{ReasonBadInterval, "end_time before start_time"},
	{ReasonFutureTime, "ends after received_time plus the allowed clock skew"},
	{ReasonStaleTime, "starts before received_time minus the allowed age"},
	{ReasonBadPosition, "lat without lon or the reverse, out of range, or not a finite number"},
	{ReasonNoTariff, "no tariff prices the tenant at the record's start time"},
	{ReasonAmountOverflow, "the priced amount does not fit 64-bit micro-units"},
	{ReasonBadBatch, "a Kafka message of usage or rated records that does not decode"},
	{ReasonBadRejection, "a message on topic rejected that does not decode"},
	{ReasonQuarantined, "a usage record whose rating transaction Kafka refused again and again; raw holds it whole, to replay once fixed"},
}

// Reasons returns every rejection reason code with its meaning (a copy).
func Reasons() []ReasonInfo {
	out := make([]ReasonInfo, len(reasonTable))
	copy(out, reasonTable[:])
	return out
}

// KnownReason reports whether code is one of the reason codes.
func KnownReason(code string) bool {
	for i := range reasonTable {
		if reasonTable[i].Code == code {
			return true
		}
	}
	return false
}

// ReasonOf is the reason code of err: the Reason of the *InvalidError it wraps, or
// ReasonInvalid when it wraps none (or one whose Reason is not a known code, so a label
// set stays bounded whatever an error says).
func ReasonOf(err error) string {
	var inv *InvalidError
	if errors.As(err, &inv) && KnownReason(inv.Reason) {
		return inv.Reason
	}
	return ReasonInvalid
}
