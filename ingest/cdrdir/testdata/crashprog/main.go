// Command crashprog runs the drop-directory collector against a Kafka broker with the
// real kafka.Producer, for the crash test (crash_test.go), which SIGKILLs it at random
// moments and starts it again. It prints "started" once the producer is connected.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"fleetmeter/ingest/cdrdir"
	"fleetmeter/kafka"
)

func main() {
	dir := flag.String("dir", "", "drop directory")
	brokers := flag.String("brokers", "", "Kafka broker")
	settle := flag.Duration("settle", 0, "cdr.settle")
	poll := flag.Duration("poll", 10*time.Millisecond, "cdr.poll")
	chunk := flag.Int("chunk", 200, "cdr.chunk_records")
	tenant := flag.String("tenant-default", "acme", "tenants.default")
	flag.Parse()

	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{*brokers}
	kcfg.Partitions = 4
	kcfg.Linger = 2 * time.Millisecond
	kcfg.BatchRecords = 500
	prod, err := kafka.NewProducer(ctx, kcfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashprog:", err)
		os.Exit(1)
	}
	cfg := cdrdir.DefaultConfig()
	cfg.Dir, cfg.Settle, cfg.Poll, cfg.ChunkRecords = *dir, *settle, *poll, *chunk
	cfg.Decoder.Tenants.Default = *tenant
	col, err := cdrdir.New(cfg, prod, nil, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashprog:", err)
		os.Exit(1)
	}
	fmt.Println("started")
	err = col.Run(ctx)
	// Shutdown order: the collector has stopped taking files; the producer flushes
	// whatever it still holds.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := prod.Close(cctx); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashprog:", err)
		os.Exit(1)
	}
}
