// Command benchreport measures fleetmeter and writes BENCHMARKS.md with its plots
// (`make bench-report`). BENCH_SHORT=1 runs every part at tiny sizes in a few minutes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"fleetmeter/loadtest"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "load-rater":
			os.Exit(loadtest.RunRater(os.Args[2:], os.Stdout, os.Stderr))
		case "kafka-broker":
			os.Exit(loadtest.RunKafkaBroker(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg := loadtest.ReportConfig{Self: []string{exe}, Log: os.Stderr, Short: os.Getenv("BENCH_SHORT") == "1"}
	flag.StringVar(&cfg.Out, "out", "BENCHMARKS.md", "the report")
	flag.StringVar(&cfg.Plots, "plots", "docs/bench", "directory of the plots")
	flag.StringVar(&cfg.Work, "work", "", "scratch directory (default: a temporary one, removed)")
	flag.IntVar(&cfg.Rounds, "rounds", 0, "rounds of each measurement (default 3, 1 with BENCH_SHORT=1)")
	flag.BoolVar(&cfg.Short, "short", cfg.Short, "tiny sizes, one round (as BENCH_SHORT=1)")
	flag.BoolVar(&cfg.PipelineOnly, "pipeline-only", false, "measure only the whole pipeline and log its figures (writes no report)")
	flag.IntVar(&cfg.Devices, "devices", 0, "the pipeline's fleet size (default 20000, 400 when short)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := loadtest.RunReport(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}
