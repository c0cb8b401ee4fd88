package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"fleetmeter/record"
)

// Two tenants' requests in one partition: acme sends 6000 valid lines with 220-byte event
// ids, farmco one record, which joins the tail of acme's buffer while acme's first
// messages are in flight. Together they exceed the broker's 1 MiB: both requests must
// still succeed, every message within the bound, every record read back in order.
func TestProducerTwoTenantsLongIDs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cfg.Linger = time.Second
	p, err := NewProducer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	part := PartitionOf("acme", "gw-1", p.Partitions())
	farmDev := ""
	for i := 0; farmDev == ""; i++ {
		if d := fmt.Sprint("tractor-", i); PartitionOf("farmco", d, p.Partitions()) == part {
			farmDev = d
		}
	}
	rnd := rand.New(rand.NewPCG(1, 1))
	farm := []record.Usage{testUsage(rnd, "farmco", farmDev, "http:farmco:"+farmDev+":1")}
	acme := make([]record.Usage, 6000)
	for i := range acme {
		prefix := fmt.Sprintf("http:acme:gw-1:%d:", i)
		acme[i] = testUsage(rnd, "acme", "gw-1", prefix+randomID(rnd, 220-len(prefix)))
	}
	farmDone, acmeDone := make(chan error, 2), make(chan error, 2)
	p.Enqueue(acme, func(err error) { acmeDone <- err })
	p.Enqueue(farm, func(err error) { farmDone <- err })
	for name, ch := range map[string]chan error{"farmco": farmDone, "acme": acmeDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: no acknowledgement", name)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := readUsage(t, ctx, cfg, MaxMessageBytes)
	want := append(acme, farm...)
	if err := sameRecords(got[part], want); err != nil {
		t.Fatalf("partition %d: %v", part, err)
	}
}

// Property: whatever the record sizes, the bound and the batch settings, every message
// value is within the bound, every record is read back as enqueued in per-partition
// order, and every done runs exactly once, with nil, only after all messages holding its
// records were acknowledged.
func TestProducerMessagesWithinBound(t *testing.T) {
	cases := []struct {
		maxBytes, batchBytes, batchRecords int
	}{
		{MaxMessageBytes, MaxMessageBytes, 100_000}, // the estimate alone flushes, at the bound
		{MaxMessageBytes, 512 << 10, 5000},          // the defaults
		{64 << 10, 512 << 10, 5000},                 // most batches split
		{16 << 10, MaxMessageBytes, 100_000},        // deep splits, a few records per message
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("max=%d/batch_bytes=%d/batch_records=%d", tc.maxBytes, tc.batchBytes, tc.batchRecords),
			func(t *testing.T) {
				checkBound(t, uint64(i), tc.maxBytes, tc.batchBytes, tc.batchRecords)
			})
	}
}

func checkBound(t *testing.T, seed uint64, maxBytes, batchBytes, batchRecords int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cfg.BatchBytes, cfg.BatchRecords = batchBytes, batchRecords
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	hook := unbufferedHook(func(r *kgo.Record, err error) {
		if err != nil || r.Topic != TopicUsage {
			return
		}
		if len(r.Value) > maxBytes {
			t.Errorf("partition %d: message of %d bytes, bound %d", r.Partition, len(r.Value), maxBytes)
		}
		recs, derr := record.DecodeUsage(r.Value, nil)
		if derr != nil {
			t.Errorf("partition %d: %v", r.Partition, derr)
		}
		mu.Lock()
		for _, u := range recs {
			acked[u.EventID] = true
		}
		mu.Unlock()
	})
	p, err := newProducer(ctx, cfg, nil, maxBytes, kgo.WithHooks(hook))
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(seed, 7))
	var (
		calls [][]record.Usage
		want  = map[int32][]record.Usage{}
		n     int
	)
	for n < 20_000 {
		call := make([]record.Usage, 1+rnd.IntN(2000))
		for i := range call {
			tenant := fmt.Sprint("tenant-", rnd.IntN(3))
			device := fmt.Sprint("dev-", rnd.IntN(20), "-") + randomID(rnd, rnd.IntN(record.MaxIDLen-12))
			id := fmt.Sprint(n, ":")
			call[i] = testUsage(rnd, tenant, device, id+randomID(rnd, 1+rnd.IntN(record.MaxEventIDLen-len(id))))
			part := PartitionOf(tenant, device, cfg.Partitions)
			want[part] = append(want[part], call[i])
			n++
		}
		calls = append(calls, call)
	}
	counts := make([]atomic.Int32, len(calls))
	finished := make(chan error, len(calls))
	for c, call := range calls {
		p.Enqueue(call, func(err error) {
			if counts[c].Add(1) == 1 && err == nil {
				mu.Lock()
				for _, u := range call {
					if !acked[u.EventID] {
						err = fmt.Errorf("call %d done before record %.20s... was acknowledged", c, u.EventID)
						break
					}
				}
				mu.Unlock()
			}
			finished <- err
		})
	}
	for range calls {
		select {
		case err := <-finished:
			if err != nil {
				t.Error(err)
			}
		case <-ctx.Done():
			t.Fatal("not every call was acknowledged")
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for c := range counts {
		if k := counts[c].Load(); k != 1 {
			t.Errorf("call %d: done ran %d times", c, k)
		}
	}
	got := readUsage(t, ctx, cfg, maxBytes)
	for part := range cfg.Partitions {
		if err := sameRecords(got[part], want[part]); err != nil {
			t.Errorf("partition %d: %v", part, err)
		}
	}
}

// A record too large for a message alone fails only the call that holds it, once; the
// calls before and after it, in its message or not, succeed.
func TestProducerRecordTooLarge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	cfg.Linger = time.Second
	p, err := NewProducer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(3, 3))
	mk := func(name string) []record.Usage {
		out := make([]record.Usage, 10)
		for i := range out {
			out[i] = testUsage(rnd, "t", "d", fmt.Sprint(name, i))
		}
		return out
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	b[4].EventID = randomID(rnd, 1<<20) // no collector builds one; Enqueue must not loop on it
	errs := make([]chan error, 3)
	for i, call := range [][]record.Usage{a, b, c} {
		errs[i] = make(chan error, 2)
		p.Enqueue(call, func(err error) { errs[i] <- err })
	}
	for i, ch := range errs {
		select {
		case err := <-ch:
			if i == 1 && !errors.Is(err, ErrRecordTooLarge) || i != 1 && err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		case <-ctx.Done():
			t.Fatalf("call %d: no acknowledgement", i)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ch := range errs {
		if len(ch) != 0 {
			t.Errorf("call %d: done ran twice", i)
		}
	}
	want := append(append(append(a, b[:4]...), b[5:]...), c...)
	if err := sameRecords(readUsage(t, ctx, cfg, MaxMessageBytes)[PartitionOf("t", "d", cfg.Partitions)], want); err != nil {
		t.Fatal(err)
	}
}

// A record whose partition has no message in flight goes out after gather (half a
// millisecond), not after the linger (group commit): one device sending now and then is
// answered in about a broker round trip. Records that come while a message is in flight
// wait for it and share the next.
func TestProducerIdleFlushesEarly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := testCluster(t)
	cfg.Linger = time.Minute
	p, err := NewProducer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	rnd := rand.New(rand.NewPCG(5, 5))
	for i := range 3 {
		done := make(chan error, 1)
		begin := time.Now()
		p.Enqueue([]record.Usage{testUsage(rnd, "t", "d", fmt.Sprint("idle-", i))}, func(err error) { done <- err })
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("record %d not acknowledged after 10 s (linger %s)", i, cfg.Linger)
		}
		t.Logf("record %d acknowledged after %s", i, time.Since(begin))
	}
}

// Devices waiting each for its answer before it sends again, spread over every partition:
// the partitions' messages share produce requests. kgo sends one request at a time to a
// broker, and partitions that each waited for their own message took turns on it, one
// partition a request (here, 4 partitions: 1.02 batches a request before, 2.9 since the
// last acknowledgement flushes every partition; 8 partitions: 1.15 and 6.8).
func TestProducerPartitionsShareRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := testCluster(t)
	var reqs, batches atomic.Int64
	p, err := newProducer(ctx, cfg, nil, MaxMessageBytes, kgo.WithHooks(requestHook{&reqs, &batches}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	devices := 8 * int(p.Partitions())
	stop := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	rnd := rand.New(rand.NewPCG(6, 6))
	for i := range devices {
		u := testUsage(rnd, "t", fmt.Sprint("dev-", i), fmt.Sprint("share-", i))
		wg.Go(func() {
			done := make(chan error, 1)
			for time.Now().Before(stop) {
				p.Enqueue([]record.Usage{u}, func(err error) { done <- err })
				if err := <-done; err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	per := float64(batches.Load()) / float64(max(reqs.Load(), 1))
	t.Logf("%d produce requests, %.2f partition batches a request", reqs.Load(), per)
	if per < float64(p.Partitions())/2 {
		t.Fatalf("%.2f partition batches a produce request with %d devices over %d partitions: partitions take turns", per, devices, p.Partitions())
	}
}

// requestHook counts produce requests written and the partition batches they held.
type requestHook struct{ reqs, batches *atomic.Int64 }

func (h requestHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	if key == int16(kmsg.Produce) {
		h.reqs.Add(1)
	}
}

func (h requestHook) OnProduceBatchWritten(kgo.BrokerMetadata, string, int32, kgo.ProduceBatchMetrics) {
	h.batches.Add(1)
}

// A rejection's message is bounded whatever the transport named: a device id of 2 MiB
// and an input of 3 MiB still make one message the broker takes.
func TestEnqueueRejectsBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testCluster(t)
	p, err := NewProducer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rj := record.Rejection{Source: record.SourceHTTP, Tenant: "acme", Device: strings.Repeat("d", 2<<20),
		Reason: record.ReasonBadDevice, Detail: strings.Repeat("x", 1<<20), Received: 1764064800000}
	rj.SetRaw([]byte(strings.Repeat("r", 3<<20)))
	done := make(chan error, 1)
	p.EnqueueRejects([]record.Rejection{rj, {Source: record.SourceMQTT, Tenant: "acme", Device: "d1",
		Reason: record.ReasonBadDevice}}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range readTopic(t, ctx, cfg, TopicRejected) {
		n++
		if size := len(r.Key) + len(r.Value); size > MaxMessageBytes {
			t.Errorf("rejection message of %d bytes", size)
		}
		got, err := record.ParseRejection(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if got.Device == "d1" {
			continue
		}
		if got.RawLen != 3<<20 || got.Tenant != "acme" {
			t.Errorf("rejection read back as raw_len %d, tenant %q", got.RawLen, got.Tenant)
		}
	}
	if n != 2 {
		t.Fatalf("%d rejections read back, want 2", n)
	}
}

func TestValidateBatchBytes(t *testing.T) {
	for _, v := range []int{0, -1, MaxMessageBytes + 1} {
		cfg := DefaultConfig()
		cfg.BatchBytes = v
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "kafka.batch_bytes") {
			t.Errorf("batch_bytes %d: %v", v, err)
		}
	}
	cfg := DefaultConfig()
	cfg.BatchBytes = MaxMessageBytes
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

// Run: go test -run '^$' -bench Enqueue -benchmem ./kafka/
func BenchmarkProducerEnqueue(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("records=%d", size), func(b *testing.B) {
			ctx := context.Background()
			cfg := testCluster(b)
			p, err := NewProducer(ctx, cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			rnd := rand.New(rand.NewPCG(5, 5))
			calls := make([][]record.Usage, 1000)
			for c := range calls {
				calls[c] = make([]record.Usage, size)
				for i := range calls[c] {
					dev := fmt.Sprintf("truck-%06d", rnd.IntN(1000))
					calls[c][i] = testUsage(rnd, "acme-logistics", dev, fmt.Sprintf("mqtt:acme-logistics:%s:%d", dev, i))
				}
			}
			var failed atomic.Value
			done := func(err error) {
				if err != nil {
					failed.Store(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Enqueue(calls[i%len(calls)], done)
				i++
			}
			b.ReportMetric(float64(i*size)/b.Elapsed().Seconds(), "records/s")
			if err := p.Close(ctx); err != nil {
				b.Fatal(err)
			}
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
		})
	}
}

type unbufferedHook func(*kgo.Record, error)

func (h unbufferedHook) OnProduceRecordUnbuffered(r *kgo.Record, err error) { h(r, err) }

// testUsage is a valid record with random counters, position and slice.
func testUsage(rnd *rand.Rand, tenant, device, eventID string) record.Usage {
	u := record.Usage{EventID: eventID, Tenant: tenant, Device: device, Source: record.SourceHTTP,
		StartTime: 1764064800000 + rnd.Int64N(1e9), ReceivedTime: 1764064800000 + rnd.Int64N(1e9),
		BytesUp: rnd.Uint64N(1 << 40), BytesDown: rnd.Uint64N(1 << 40), DurationMs: rnd.Uint64N(1 << 20),
		Events: rnd.Uint64N(100), RatingGroup: rnd.Uint32N(10), PLMN: "262-01",
		Cell: randomID(rnd, rnd.IntN(record.MaxCellLen)), RAT: "NB-IoT"}
	u.EndTime = u.StartTime + rnd.Int64N(1e6)
	if rnd.IntN(2) == 0 {
		u.Lat, u.Lon, u.HasPos = rnd.Float64()*180-90, rnd.Float64()*360-180, true
	}
	if rnd.IntN(2) == 0 {
		u.SliceSST, u.HasSlice, u.SliceSD = uint8(1+rnd.IntN(3)), true, "0000ab"
	}
	return u
}

const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// randomID is n random id characters: incompressible as far as LZ4 goes.
func randomID(rnd *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = idChars[rnd.IntN(len(idChars))]
	}
	return string(b)
}

// readTopic reads every record of topic from the start to its end offsets.
func readTopic(t *testing.T, ctx context.Context, cfg Config, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		fs.EachError(func(_ string, part int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, part, err) })
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return out
}

// readUsage decodes topic usage by partition, checking each message against maxBytes.
func readUsage(t *testing.T, ctx context.Context, cfg Config, maxBytes int) map[int32][]record.Usage {
	t.Helper()
	out := map[int32][]record.Usage{}
	for _, r := range readTopic(t, ctx, cfg, TopicUsage) {
		if len(r.Value) > maxBytes {
			t.Errorf("partition %d offset %d: message of %d bytes, bound %d", r.Partition, r.Offset, len(r.Value), maxBytes)
		}
		recs, err := record.DecodeUsage(r.Value, out[r.Partition])
		if err != nil {
			t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
		}
		out[r.Partition] = recs
	}
	return out
}

func sameRecords(got, want []record.Usage) error {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Errorf("record %d: read back %.40s..., want %.40s...", i, got[i].EventID, want[i].EventID)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d records read back, want %d", len(got), len(want))
	}
	return nil
}
