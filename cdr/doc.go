// Package cdr decodes 5G charging data records: TS 32.298 CHFRecord
// (chargingFunctionRecord [200]) in ASN.1 BER, inside TS 32.297 CDR files or as raw
// concatenated records, into canonical usage.v1 records. It is a pure decoder: bytes
// in, records out, no I/O. The BER reader is hand-written (definite and indefinite
// lengths, multi-byte tags, unknown fields skipped) and appends into caller-owned
// slices.
//
// # Framing
//
// A TS 32.297 file is a file header (its header-length field says where CDRs start:
// 54 octets for Rel-16 writers, 52 for free5gc's dumpCdrFile, which leaves out the
// release extension octets) followed by CDRs, each behind a CDR header of 4 octets
// (length, release/version, format/TS number) plus a release extension octet when the
// release identifier is 7. Only data record format 1 (BER) is accepted. Input whose first
// octet is a context-specific constructed tag (0xA0-0xBF) is read as raw concatenated
// CHFRecords instead.
//
// # Mapping: one usage record per used unit container
//
//	event_id      cdr:<recordingNetworkFunctionID>:<localRecordSequenceNumber>:<ratingGroup>:<container localSequenceNumber>
//	              (no localRecordSequenceNumber: h<FNV-1a 64 of the record's BER, hex>;
//	              no container localSequenceNumber: p<1-based position in its MultipleUnitUsage>)
//	tenant        TenantMap (Config.Tenants) on device, DNN and slice; empty if unmapped
//	device        subscriberIdentifier as a TS 29.571 SUPI: type IMSI -> "imsi-"+digits,
//	              NAI -> "nai-"+NAI, E.164 -> "msisdn-"+digits (a prefix already there is kept),
//	              other types as written
//	source        "cdr"
//	start_time    container timeOfFirstUsage (pDUContainerInformation [11] [2]) if present,
//	              else recordOpeningTime; BCD TimeStamp with its UTC offset, as UTC ms
//	end_time      container timeOfLastUsage if present, else start_time + time
//	received_time Decoder.ReceivedTime (0: left for the caller)
//	bytes_up      container dataVolumeUplink      bytes_down  dataVolumeDownlink
//	duration_ms   container time (s) x 1000       events      serviceSpecificUnits
//	rating_group  the container's MultipleUnitUsage ratingGroup
//	plmn          "MCC-MNC" from the NCGI/ECGI plmnId of userLocationInformation, else the TAI's
//	cell          MCC+MNC+cell id as reported, hex lowercased: NR "20893"+"000000010"
//	              (9 hex digits), E-UTRA "20893"+"0000103" (7); without a cell id the
//	              TAI, MCC+MNC+TAC; empty without a location
//	rat           rATType (TS 29.274 RAT type numbers, as the CHF ASN.1 carries them):
//	              3 WLAN, 6 EUTRA, 8 NB-IoT, 9 LTE-M, 10 NR, satellite variants
//	              11-14 EUTRA, 15-18 NB-IoT, 19-22 LTE-M; anything else ""
//	slice_sst     S-NSSAI sST (null when absent)
//	slice_sd      S-NSSAI sD as lowercase hex ("a0b0c0"); free5gc's 6-octet ASCII form
//	              ("613062306330") is read as the hex it spells
//
// userLocationInformation is the TS 29.571 UserLocation JSON in an OCTET STRING
// (nrLocation, eutraLocation, n3gaLocation). A container's own pDUContainerInformation
// rATType and userLocationInformation override the session's. Unreadable location JSON
// leaves plmn and cell empty and is counted (Stats.BadLocation); it does not fail the
// file, since the volumes are intact.
//
// # Errors
//
// Structural damage (bad BER, lengths past the end, a CDR that is not a CHFRecord,
// invalid INTEGER or TimeStamp encodings, a missing recordOpeningTime) stops decoding
// with a *DecodeError naming the byte offset; every record of the CDRs before it is
// returned, identical to what the undamaged file gives. Semantic gaps (no SUPI, no
// tenant) yield records the pipeline rejects with a reason rather than failing the file.
package cdr
