package loadtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/kafka"
	"fleetmeter/record"
)

// BenchmarkProduce: usage records to an in-process kfake, 1000 per operation, by
// fleetmeter's producer (Arrow IPC encoding, LZ4, batching per partition, acks) and by a
// bare franz-go client producing the same records already encoded as one Arrow message
// per operation (impl=raw: Kafka's cost alone). records/s is the rate both report.
//
//	go test -run '^$' -bench Produce -benchtime 2000x ./loadtest/
func BenchmarkProduce(b *testing.B) {
	const per = 1000
	recs, err := genUsage(20*per, 2000, 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, impl := range []string{"raw", "fleetmeter"} {
		b.Run("impl="+impl, func(b *testing.B) {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4), kfake.AllowAutoTopicCreation())
			if err != nil {
				b.Fatal(err)
			}
			defer kc.Close()
			ctx := context.Background()
			var wg sync.WaitGroup
			var failed error
			var mu sync.Mutex
			done := func(err error) {
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
				wg.Done()
			}
			if impl == "raw" {
				enc := record.NewUsageEncoder()
				msgs := make([][]byte, len(recs)/per)
				for i := range msgs {
					if msgs[i], err = enc.Encode(nil, recs[i*per:(i+1)*per]); err != nil {
						b.Fatal(err)
					}
				}
				cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic(kafka.TopicUsage), kgo.AllowAutoTopicCreation(),
					kgo.ProducerBatchMaxBytes(kafka.MaxMessageBytes+1<<16), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				b.ResetTimer()
				for i := range b.N {
					wg.Add(1)
					cl.Produce(ctx, &kgo.Record{Value: msgs[i%len(msgs)]}, func(_ *kgo.Record, err error) { done(err) })
				}
				wg.Wait()
				b.StopTimer()
			} else {
				kcfg := kafka.DefaultConfig()
				kcfg.Brokers = kc.ListenAddrs()
				kcfg.Partitions = 4
				prod, err := kafka.NewProducer(ctx, kcfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := range b.N {
					wg.Add(1)
					k := i % (len(recs) / per)
					prod.Enqueue(recs[k*per:(k+1)*per], done)
				}
				wg.Wait()
				b.StopTimer()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				_ = prod.Close(cctx)
			}
			if failed != nil {
				b.Fatal(failed)
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
