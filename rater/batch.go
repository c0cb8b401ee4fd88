package rater

import (
	"bytes"
	"fmt"

	"fleetmeter/record"
)

// ratedChunk is the most rated records one message of the rated topic starts with; a
// chunk whose encoding is over the size bound is halved until it fits.
const ratedChunk = 4096

// batch holds the buffers of one transaction, reused from batch to batch.
type batch struct {
	max            int
	recs           []record.Usage
	out            []record.Rated
	rejs           []record.Rejection
	enc            *record.RatedEncoder
	buf            []byte // changelog keys and values; valid until the transaction ends
	scratch        []byte // a rated message as encoded, reused; produced as an exact-size copy
	nRated         int
	changelogBytes int
	late           map[int32]uint64 // each partition's late count before the batch
	quarantined    int
	tenants        tenantSums // rated records and amount per tenant
}

func newBatch(maxBytes int) *batch {
	return &batch{max: maxBytes, enc: record.NewRatedEncoder(), late: map[int32]uint64{}}
}

// rateBatch rates msgs (grouped by partition) into the open transaction.
func (r *Rater) rateBatch(msgs []Message, b *batch) error {
	b.rejs, b.buf, b.nRated, b.changelogBytes = b.rejs[:0], b.buf[:0], 0, 0
	b.tenants.reset()
	clear(b.late)
	t := &r.cfg.Topics
	for i := 0; i < len(msgs); {
		p := msgs[i].Partition
		st := r.states[p]
		if _, seen := b.late[p]; !seen {
			b.late[p] = st.Late()
		}
		b.recs, b.out = b.recs[:0], b.out[:0]
		for ; i < len(msgs) && msgs[i].Partition == p; i++ {
			n := len(b.recs)
			var err error
			b.recs, err = record.DecodeUsage(msgs[i].Value, b.recs)
			if err != nil {
				rj := record.Rejection{Source: record.SourceKafka, Reason: record.ReasonBadBatch,
					Detail: fmt.Sprintf("usage partition %d offset %d: %v", p, msgs[i].Offset, err), Received: msgs[i].Time}
				rj.SetRaw(msgs[i].Value)
				b.rejs = append(b.rejs, rj)
				b.recs = b.recs[:n]
			}
		}
		b.out = r.engine.RateBatch(st, b.recs, b.out, func(j int, err error) {
			b.rejs = append(b.rejs, usageRejection(&b.recs[j], err))
		})
		if err := b.produceRated(r, p); err != nil {
			return err
		}
		b.buf = st.AppendChanges(b.buf, func(k, v []byte) {
			r.sess.Produce(t.State, p, k, v, "")
			b.changelogBytes += len(k) + len(v)
		})
		st.ChangedPeriods(func(tenant, period string, devices uint64) {
			r.sess.Produce(t.Counts, p, CountKey(tenant, period), CountValue(devices), "")
		})
	}
	for i := range b.rejs {
		rj := &b.rejs[i]
		v := rj.AppendJSON(nil) // bounded: at most record.MaxRejectRaw bytes of raw input
		r.sess.Produce(t.Rejected, r.cfg.RejectedPartition(rj.Tenant, rj.Device),
			[]byte(rj.Tenant+"/"+rj.Device), v, "")
	}
	return nil
}

// quarantineBatch sends every record of msgs to topic rejected with reason quarantined
// (raw: the record as canonical JSON, whole, so it can be replayed once the cause is
// fixed) and rates nothing: the states are not touched, and committing the offsets lets
// the partition move on. Kafka refused this batch's output StuckAfter times in a row.
func (r *Rater) quarantineBatch(msgs []Message, b *batch) {
	b.rejs, b.nRated, b.changelogBytes, b.quarantined = b.rejs[:0], 0, 0, 0
	b.tenants.reset()
	clear(b.late)
	for i := range msgs {
		m := &msgs[i]
		var err error
		b.recs, err = record.DecodeUsage(m.Value, b.recs[:0])
		if err != nil {
			rj := record.Rejection{Source: record.SourceKafka, Reason: record.ReasonBadBatch,
				Detail: fmt.Sprintf("usage partition %d offset %d: %v", m.Partition, m.Offset, err), Received: m.Time}
			rj.SetRaw(m.Value)
			b.rejs = append(b.rejs, rj)
			continue
		}
		for j := range b.recs {
			u := &b.recs[j]
			rj := record.Rejection{Source: u.Source, Tenant: u.Tenant, Device: u.Device, Reason: record.ReasonQuarantined,
				Detail: fmt.Sprintf("usage partition %d offset %d, event %s: Kafka refused the rating transaction %d times: %v",
					m.Partition, m.Offset, u.EventID, r.refusals, r.refusal), Received: u.ReceivedTime}
			rj.SetRaw(record.AppendJSON(nil, u))
			b.rejs = append(b.rejs, rj)
			b.quarantined++
		}
	}
	for i := range b.rejs {
		rj := &b.rejs[i]
		r.sess.Produce(r.cfg.Topics.Rejected, r.cfg.RejectedPartition(rj.Tenant, rj.Device), []byte(rj.Tenant+"/"+rj.Device),
			rj.AppendJSON(nil), "")
	}
}

// produceRated writes b.out to the rated topic in messages no larger than b.max bytes as
// encoded: a chunk over the bound is halved until it fits. A single record over it
// (ids near their limits cannot make one) is rejected rather than left to fail the
// transaction.
func (b *batch) produceRated(r *Rater, p int32) error {
	out := b.out
	for k := 0; k < len(out); {
		n := min(ratedChunk, len(out)-k)
		for {
			// Encoding into a fresh slice grew it by doubling, a copy each time; kgo holds
			// the value until the transaction ends, so it gets an exact-size copy.
			payload, err := b.enc.Encode(b.scratch[:0], out[k:k+n])
			if err != nil {
				return fmt.Errorf("rater: encode rated batch: %w", err)
			}
			b.scratch = payload[:0]
			if len(payload) <= b.max {
				r.sess.Produce(r.cfg.Topics.Rated, p, nil, bytes.Clone(payload), record.RatedSchema)
				for i := k; i < k+n; i++ {
					b.tenants.add(&out[i])
				}
				b.nRated += n
				k += n
				break
			}
			if n == 1 {
				u := &out[k].Usage
				b.rejs = append(b.rejs, record.Rejection{Source: u.Source, Tenant: u.Tenant, Device: u.Device,
					Reason: record.ReasonTooLarge, Detail: fmt.Sprintf("event %s: rated record encodes to %d bytes, over the %d-byte message bound",
						u.EventID, len(payload), b.max), Received: u.ReceivedTime})
				k++
				break
			}
			n /= 2
		}
	}
	return nil
}
