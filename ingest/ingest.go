// Package ingest holds what every collector shares: the sink a collector hands its
// normalized records to. Collectors live in subfolders (ingest/mqtt, ...), one each, and
// depend on this package and on record, never on Kafka directly.
package ingest

import (
	"context"
	"fmt"

	"fleetmeter/record"
)

// Sink takes normalized records and rejections. It calls done exactly once, after every
// record of the call is durably acknowledged (by Kafka in production) or with the error
// that stopped it. Only then may a collector acknowledge its own source: that order is
// what makes delivery at-least-once end to end. Records of successive calls for one
// device keep their order. The sink copies recs before returning.
//
// Records a collector hands over are valid (record.Validate; collectors of live input use
// record.ValidateWithin). A rejection's Reason is a record reason code and its Raw is
// filled by Rejection.SetRaw, which keeps at most record.MaxRejectRaw bytes of the input
// with its length and SHA-256.
type Sink interface {
	Enqueue(recs []record.Usage, done func(error))
	EnqueueRejects(rejs []record.Rejection, done func(error))
}

// Produce hands recs to s and waits for the acknowledgement.
func Produce(ctx context.Context, s Sink, recs []record.Usage) error {
	ch := make(chan error, 1)
	s.Enqueue(recs, func(err error) { ch <- err })
	return wait(ctx, ch)
}

// Reject hands rejections to s and waits for the acknowledgement.
func Reject(ctx context.Context, s Sink, rejs []record.Rejection) error {
	ch := make(chan error, 1)
	s.EnqueueRejects(rejs, func(err error) { ch <- err })
	return wait(ctx, ch)
}

func wait(ctx context.Context, ch <-chan error) error {
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("ingest: waiting for acknowledgement: %w", ctx.Err())
	}
}

// Collector is one input of the mediator (MQTT, CoAP, HTTP, CDR drop directory). Run
// serves until ctx ends, then stops taking input; what it handed the sink is flushed by
// the sink's owner afterwards. Healthy reports whether it is connected/listening.
type Collector interface {
	Run(ctx context.Context) error
	Healthy() bool
}
