package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LastValue reads the last committed record of one partition. Snapshots are written one
// per transaction, each followed by a commit marker, so it looks back a few offsets from
// the last stable offset and keeps the newest data record it sees.
//
// It is how a new owner of a partition loads the state snapshot its predecessor committed
// together with its last offsets; nil when the partition is empty.
func LastValue(ctx context.Context, cfg Config, topic string, part int32) ([]byte, error) {
	cl, err := kgo.NewClient(append(baseOpts(cfg, nil), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond))...)
	if err != nil {
		return nil, fmt.Errorf("kafka read %s/%d: %w", topic, part, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka read %s/%d: end offset: %w", topic, part, err)
	}
	end, ok := ends.Lookup(topic, part)
	if !ok || end.Err != nil {
		return nil, fmt.Errorf("kafka read %s/%d: no end offset: %v", topic, part, end.Err)
	}
	if end.Offset == 0 {
		return nil, nil
	}
	for back := int64(8); ; back *= 8 {
		from := max(end.Offset-back, 0)
		v, found, err := scan(ctx, cl, topic, part, from, end.Offset)
		if err != nil || found || from == 0 {
			return v, err
		}
	}
}

// scan returns the value of the last record in [from, end) of a partition. The stable
// end is often a commit marker, which is never returned, so besides reaching end-1 the
// scan stops when a short fetch finds nothing more.
func scan(ctx context.Context, cl *kgo.Client, topic string, part int32, from, end int64) ([]byte, bool, error) {
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(from)}})
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: {part}})
	var last []byte
	found := false
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		if ferr != nil {
			return nil, false, fmt.Errorf("kafka read %s/%d: %w", topic, part, ferr)
		}
		n, done := 0, false
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if r.Offset < end {
				last, found = r.Value, true
			}
			if r.Offset >= end-1 {
				done = true
			}
		})
		if done || n == 0 {
			return last, found, nil
		}
	}
}

// Ping checks the cluster answers, with a short-lived client.
func Ping(ctx context.Context, cfg Config) error {
	cl, err := kgo.NewClient(baseOpts(cfg, nil)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.Ping(ctx)
}
