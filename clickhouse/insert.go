package clickhouse

import (
	"context"
	"fmt"
	"math"
	"strings"

	"fleetmeter/record"
)

// ratedColumnNames is the INSERT column list; ratedColumns.values returns slices in this
// order. amount is left out: the server computes it from amount_micros (see
// migrations/0001_rated_usage.sql).
var ratedColumnNames = []string{
	"event_id", "tenant", "device", "source",
	"start_time", "end_time", "received_time",
	"bytes_up", "bytes_down", "duration_ms", "events", "rating_group",
	"plmn", "cell", "lat", "lon", "rat", "slice_sst", "slice_sd",
	"record_id", "charge", "zone", "mobility", "tariff", "tariff_version", "offer",
	"active_devices", "currency", "amount_micros", "rated_time",
	"start_time_ms", "end_time_ms", "received_time_ms", "rated_time_ms",
}

// ratedColumns holds one batch column by column. The slices keep their capacity between
// batches (the store pools them), so a steady loader allocates nothing per record here;
// clickhouse-go copies the values into its own buffers on Append.
type ratedColumns struct {
	eventID, tenant, device, source []string
	startS, endS, receivedS, ratedS []int64 // DateTime: seconds
	bytesUp, bytesDown, durationMs  []uint64
	events, activeDevices           []uint64
	ratingGroup                     []uint32
	plmn, cell, rat, sliceSD        []string
	// Nullable columns go as pointers into value arrays (nil is NULL): clickhouse-go
	// v2.51 ignores Valid in []sql.NullFloat64 and would store 0 instead of NULL.
	lat, lon                            []*float64
	latVals, lonVals                    []float64
	sliceSST                            []*uint8
	sliceVals                           []uint8
	recordID, charge, zone, mobility    []string
	tariff, tariffVersion, offer        []string
	currency                            []string
	amount                              []int64
	startMs, endMs, receivedMs, ratedMs []uint64
}

func (c *ratedColumns) fill(rows []record.Rated) {
	n := len(rows)
	c.eventID, c.tenant, c.device, c.source = c.eventID[:0], c.tenant[:0], c.device[:0], c.source[:0]
	c.startS, c.endS, c.receivedS, c.ratedS = c.startS[:0], c.endS[:0], c.receivedS[:0], c.ratedS[:0]
	c.bytesUp, c.bytesDown, c.durationMs, c.events = c.bytesUp[:0], c.bytesDown[:0], c.durationMs[:0], c.events[:0]
	c.activeDevices, c.ratingGroup = c.activeDevices[:0], c.ratingGroup[:0]
	c.plmn, c.cell, c.rat, c.sliceSD = c.plmn[:0], c.cell[:0], c.rat[:0], c.sliceSD[:0]
	c.lat, c.lon, c.sliceSST = c.lat[:0], c.lon[:0], c.sliceSST[:0]
	c.recordID, c.charge, c.zone, c.mobility = c.recordID[:0], c.charge[:0], c.zone[:0], c.mobility[:0]
	c.tariff, c.tariffVersion, c.offer, c.currency = c.tariff[:0], c.tariffVersion[:0], c.offer[:0], c.currency[:0]
	c.amount = c.amount[:0]
	c.startMs, c.endMs, c.receivedMs, c.ratedMs = c.startMs[:0], c.endMs[:0], c.receivedMs[:0], c.ratedMs[:0]
	// Sized up front: the pointers point into them, so they must not move while filling.
	if cap(c.sliceVals) < n {
		c.sliceVals, c.latVals, c.lonVals = make([]uint8, n), make([]float64, n), make([]float64, n)
	}
	c.sliceVals, c.latVals, c.lonVals = c.sliceVals[:n], c.latVals[:n], c.lonVals[:n]

	for i := range rows {
		r := &rows[i]
		c.eventID = append(c.eventID, r.EventID)
		c.tenant = append(c.tenant, r.Tenant)
		c.device = append(c.device, r.Device)
		c.source = append(c.source, r.Source)
		c.startS = append(c.startS, seconds(r.StartTime))
		c.endS = append(c.endS, seconds(r.EndTime))
		c.receivedS = append(c.receivedS, seconds(r.ReceivedTime))
		c.bytesUp = append(c.bytesUp, r.BytesUp)
		c.bytesDown = append(c.bytesDown, r.BytesDown)
		c.durationMs = append(c.durationMs, r.DurationMs)
		c.events = append(c.events, r.Events)
		c.ratingGroup = append(c.ratingGroup, r.RatingGroup)
		c.plmn = append(c.plmn, r.PLMN)
		c.cell = append(c.cell, r.Cell)
		if r.HasPos {
			c.latVals[i], c.lonVals[i] = r.Lat, r.Lon
			c.lat, c.lon = append(c.lat, &c.latVals[i]), append(c.lon, &c.lonVals[i])
		} else {
			c.lat, c.lon = append(c.lat, nil), append(c.lon, nil)
		}
		c.rat = append(c.rat, r.RAT)
		if r.HasSlice {
			c.sliceVals[i] = r.SliceSST
			c.sliceSST = append(c.sliceSST, &c.sliceVals[i])
		} else {
			c.sliceSST = append(c.sliceSST, nil)
		}
		c.sliceSD = append(c.sliceSD, r.SliceSD)
		c.recordID = append(c.recordID, r.RecordID)
		c.charge = append(c.charge, r.Charge)
		c.zone = append(c.zone, r.Zone)
		c.mobility = append(c.mobility, r.Mobility)
		c.tariff = append(c.tariff, r.Tariff)
		c.tariffVersion = append(c.tariffVersion, r.TariffVersion)
		c.offer = append(c.offer, r.Offer)
		c.activeDevices = append(c.activeDevices, r.ActiveDevices)
		c.currency = append(c.currency, r.Currency)
		c.amount = append(c.amount, int64(r.Amount))
		c.ratedS = append(c.ratedS, seconds(r.RatedTime))
		c.startMs = append(c.startMs, millis(r.StartTime))
		c.endMs = append(c.endMs, millis(r.EndTime))
		c.receivedMs = append(c.receivedMs, millis(r.ReceivedTime))
		c.ratedMs = append(c.ratedMs, millis(r.RatedTime))
	}
}

func (c *ratedColumns) values() []any {
	return []any{
		c.eventID, c.tenant, c.device, c.source,
		c.startS, c.endS, c.receivedS,
		c.bytesUp, c.bytesDown, c.durationMs, c.events, c.ratingGroup,
		c.plmn, c.cell, c.lat, c.lon, c.rat, c.sliceSST, c.sliceSD,
		c.recordID, c.charge, c.zone, c.mobility, c.tariff, c.tariffVersion, c.offer,
		c.activeDevices, c.currency, c.amount, c.ratedS,
		c.startMs, c.endMs, c.receivedMs, c.ratedMs,
	}
}

// seconds is a DateTime value: UInt32 seconds, so times outside 1970..2106 clamp (the
// _ms columns keep the exact value).
func seconds(ms int64) int64 {
	s := ms / 1000
	if ms < 0 {
		return 0
	}
	return min(s, math.MaxUint32)
}

func millis(ms int64) uint64 { return uint64(max(ms, 0)) }

func insertSQL(table string, cols []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ")"
}

// InsertRated writes rated records, at most MaxBatch per INSERT.
//
// Delivery: each INSERT is acknowledged only once the server has written the block to
// rated_usage and run the rollup views over it. When InsertRated returns nil every row is
// stored; the caller may then commit its Kafka offsets. When it returns an error, any
// prefix of the chunks (even a chunk whose acknowledgement was lost) may be stored; the
// caller retries the same rows and the copies collapse: rated_usage is keyed by (tenant,
// record_id) and billing reads deduplicate (query.go). Nothing here drops a row.
func (s *Store) InsertRated(ctx context.Context, rows []record.Rated) error {
	for len(rows) > 0 {
		n := min(len(rows), s.cfg.MaxBatch)
		if err := s.insertRatedChunk(ctx, rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

func (s *Store) insertRatedChunk(ctx context.Context, rows []record.Rated) error {
	cols, _ := s.ratedBufs.Get().(*ratedColumns)
	if cols == nil {
		cols = new(ratedColumns)
	}
	defer s.ratedBufs.Put(cols)
	cols.fill(rows)
	if err := s.sendColumns(ctx, s.cfg.Database+".rated_usage", ratedColumnNames, cols.values()); err != nil {
		return fmt.Errorf("insert rated: %w", err)
	}
	return nil
}

// sendColumns sends one INSERT, column by column (twice the rows/s of row-wise appends).
func (s *Store) sendColumns(ctx context.Context, table string, names []string, values []any) error {
	batch, err := s.conn.PrepareBatch(ctx, insertSQL(table, names))
	if err != nil {
		return err
	}
	for i, v := range values {
		if err := batch.Column(i).Append(v); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("column %s: %w", names[i], err)
		}
	}
	return batch.Send()
}

var rejectedColumnNames = []string{"source", "tenant", "device", "reason", "detail", "raw", "raw_len", "raw_sha256",
	"received_time", "received_time_ms"}

// InsertRejected writes rejections in one INSERT. Redelivered rejections collapse on merge
// (see migrations/0002_rejected_usage.sql).
func (s *Store) InsertRejected(ctx context.Context, rows []record.Rejection) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	source, tenant, device := make([]string, n), make([]string, n), make([]string, n)
	reason, detail, raw := make([]string, n), make([]string, n), make([][]byte, n)
	rawLen, rawSHA := make([]uint64, n), make([]string, n)
	recvS, recvMs := make([]int64, n), make([]uint64, n)
	for i := range rows {
		r := &rows[i]
		source[i], tenant[i], device[i], reason[i], detail[i] = r.Source, r.Tenant, r.Device, r.Reason, r.Detail
		raw[i] = r.RawPrefix()
		l, sum := r.RawInfo()
		rawLen[i], rawSHA[i] = uint64(l), sum
		recvS[i], recvMs[i] = seconds(r.Received), millis(r.Received)
	}
	values := []any{source, tenant, device, reason, detail, raw, rawLen, rawSHA, recvS, recvMs}
	if err := s.sendColumns(ctx, s.cfg.Database+".rejected_usage", rejectedColumnNames, values); err != nil {
		return fmt.Errorf("insert rejected: %w", err)
	}
	return nil
}

// RatedColumns returns the column list and column slices InsertRated sends for rows, for
// a baseline that drives clickhouse-go directly with the same bytes (fleetmeter load).
func RatedColumns(rows []record.Rated) (names []string, values []any) {
	var c ratedColumns
	c.fill(rows)
	return ratedColumnNames, c.values()
}
