package localkafka

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/internal/netport"
)

// What is produced before a stop is there after a restart on the same directory and port.
func TestRestartKeepsTheLog(t *testing.T) {
	dir := t.TempDir()
	port, err := netport.Stable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, addr, err := Start(dir, port, 2)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("kept")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	c.Close()

	c, addr2, err := Start(dir, port, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if addr2 != addr {
		t.Fatalf("restarted on %s, want %s", addr2, addr)
	}
	cl, err = kgo.NewClient(kgo.SeedBrokers(addr2), kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "kept" {
		t.Fatalf("after the restart: %d records", len(recs))
	}
}
