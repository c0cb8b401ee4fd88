// Package loadtest measures fleetmeter under load: `fleetmeter load` (usage -> rater ->
// loader -> ClickHouse beside a raw insert), the standalone self-check, the simulated
// fleet's drivers and the benchmark report (BENCHMARKS.md). It also starts the services
// a measurement needs (embedded Kafka, ClickHouse, Mosquitto), for itself and for e2e.
package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"fleetmeter/clickhouse"
	"fleetmeter/ingest/payload"
	"fleetmeter/internal/config"
	"fleetmeter/internal/localkafka"
	"fleetmeter/internal/netport"
	"fleetmeter/internal/obs"
	"fleetmeter/kafka"
	"fleetmeter/pipeline"
	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
	"fleetmeter/sim"
)

// LoadConfig shapes `fleetmeter load`.
type LoadConfig struct {
	Records    int           `yaml:"records"`
	Devices    int           `yaml:"devices"`
	Seed       uint64        `yaml:"seed"`
	Data       string        `yaml:"data"`
	Kafka      string        `yaml:"kafka"`
	ClickHouse string        `yaml:"clickhouse"`
	Partitions int32         `yaml:"partitions"`
	Overlap    bool          `yaml:"overlap"`
	Stall      time.Duration `yaml:"stall"`
	CPUProfile string        `yaml:"cpuprofile"`
	LogLevel   string        `yaml:"log_level"`
	// RaterCommand starts the rater process (default: this executable with "load-rater",
	// which the binary must dispatch to RunRater).
	RaterCommand []string `yaml:"-"`
}

// DefaultLoad is `fleetmeter load` without flags.
func DefaultLoad() LoadConfig {
	return LoadConfig{Records: 500_000, Devices: 10_000, Seed: 1, Partitions: 4, Stall: 60 * time.Second, LogLevel: "warn"}
}

func (c LoadConfig) validate() error {
	var errs []error
	if c.Records < 1 {
		errs = append(errs, fmt.Errorf("--records: must be >= 1, got %d", c.Records))
	}
	if c.Devices < 1 {
		errs = append(errs, fmt.Errorf("--devices: must be >= 1, got %d", c.Devices))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("--partitions: must be >= 1, got %d", c.Partitions))
	}
	if c.Stall <= 0 {
		errs = append(errs, fmt.Errorf("--stall: must be > 0, got %s", c.Stall))
	}
	return errors.Join(errs...)
}

// The load test's own databases, dropped and recreated on every run, so a run against a
// shared --clickhouse neither reads nor disturbs anything else.
const (
	loadDatabase = "fleetmeter_load"
	rawDatabase  = "fleetmeter_load_raw"
	rawBatch     = 100_000
)

// RunLoad is `fleetmeter load`: it parses args and returns the exit code.
func RunLoad(args []string, stdout, stderr io.Writer) int {
	cfg := DefaultLoad()
	fset := flag.NewFlagSet("fleetmeter load", flag.ContinueOnError)
	fset.SetOutput(stderr)
	_, err := config.Load(fset, args, &cfg, func(fs *flag.FlagSet) {
		fs.IntVar(&cfg.Records, "records", cfg.Records, "canonical usage records to push through")
		fs.IntVar(&cfg.Devices, "devices", cfg.Devices, "simulated devices the records come from")
		fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "simulator seed")
		fs.StringVar(&cfg.Data, "data", cfg.Data, "directory for the embedded Kafka's and ClickHouse's data (default: a temporary one, removed)")
		fs.StringVar(&cfg.Kafka, "kafka", cfg.Kafka, "use this Kafka cluster (host:port,...; pipeline topics must be empty) instead of the embedded broker")
		fs.StringVar(&cfg.ClickHouse, "clickhouse", cfg.ClickHouse, "use this ClickHouse (native host:port) instead of a local server")
		fs.Var(int32Flag{&cfg.Partitions}, "partitions", "partitions of the pipeline topics")
		fs.BoolVar(&cfg.Overlap, "overlap", cfg.Overlap, "produce while the rater and loader run, instead of before")
		fs.DurationVar(&cfg.Stall, "stall", cfg.Stall, "give up when ClickHouse's count does not move for this long")
		fs.StringVar(&cfg.CPUProfile, "cpuprofile", cfg.CPUProfile, "write a CPU profile of the pipeline stage to this file")
		fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	})
	if err != nil {
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	logger, err := obs.ParseLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, code, err := Load(ctx, cfg, logger, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fleetmeter load:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Stage is one measured line of the result table.
type Stage struct {
	Name    string
	Records int
	Took    time.Duration
	Raw     bool // the baseline the ratios are taken against
	Ratio   bool // print its ratio to the baseline
}

// Rate is records per second.
func (s Stage) Rate() float64 { return float64(s.Records) / s.Took.Seconds() }

// load measures, in this order: the raw insert of the offline-rated rows (then dropped,
// so its merges do not run during the pipeline), producing the records to topic usage,
// and the rater and loader until rated_usage holds every record. Shutdown: the stages
// stop first; the store, ClickHouse and the Kafka broker after them (deferred).
// LoadResult is what a load run measured.
type LoadResult struct {
	Stages []Stage
	Rater  RaterReport // the rater process's own figures
}

// Stage returns the first stage whose name starts with prefix.
func (r LoadResult) Stage(prefix string) (Stage, bool) {
	for _, s := range r.Stages {
		if strings.HasPrefix(s.Name, prefix) {
			return s, true
		}
	}
	return Stage{}, false
}

// Load runs the load test and prints its table to stdout, its progress to stderr. The
// exit code is 0 when ClickHouse ends up with exactly what offline rating computed.
func Load(ctx context.Context, cfg LoadConfig, logger *slog.Logger, stdout, stderr io.Writer) (LoadResult, int, error) {
	var res LoadResult
	code, err := load(ctx, cfg, logger, stdout, stderr, &res)
	return res, code, err
}

func load(ctx context.Context, cfg LoadConfig, logger *slog.Logger, stdout, stderr io.Writer, out *LoadResult) (int, error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "load: "+format+"\n", args...) }
	dir := cfg.Data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fleetmeter-load-")
		if err != nil {
			return 1, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if _, err := os.Stat(filepath.Join(dir, "kafka")); err == nil && cfg.Kafka == "" {
		return 2, fmt.Errorf("--data: %s already holds a Kafka log; the load test needs a fresh directory", dir)
	}
	rulesPath, err := WriteTariffs(filepath.Join(dir, "rules"))
	if err != nil {
		return 1, err
	}
	set, err := rules.Load(rulesPath)
	if err != nil {
		return 1, fmt.Errorf("tariffs: %w", err)
	}

	t := time.Now()
	recs, err := genUsage(cfg.Records, cfg.Devices, cfg.Seed)
	if err != nil {
		return 1, err
	}
	progress("generated %d usage records from %d devices in %.2fs", len(recs), min(cfg.Devices, cfg.Records), time.Since(t).Seconds())

	kcfg := kafka.DefaultConfig()
	kcfg.Partitions = cfg.Partitions
	if cfg.Kafka == "" {
		port, err := netport.Stable()
		if err != nil {
			return 1, err
		}
		kc, addr, err := localkafka.Start(dir, port, cfg.Partitions)
		if err != nil {
			return 1, err
		}
		defer kc.Close()
		kcfg.Brokers = []string{addr}
	} else {
		kcfg.Brokers = []string{cfg.Kafka}
		if err := checkEmptyTopics(ctx, kcfg); err != nil {
			return 2, err
		}
	}
	chAddr := cfg.ClickHouse
	if chAddr == "" {
		srv, err := StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), logger)
		if err != nil {
			return 1, err
		}
		defer srv.Stop()
		chAddr = srv.NativeAddr()
	}
	store, err := openFreshStore(ctx, chAddr)
	if err != nil {
		return 1, err
	}
	defer store.Close()
	progress("kafka %s, clickhouse %s (version %s), %d partitions", kcfg.Brokers[0], chAddr, store.Version(), cfg.Partitions)

	// (1) The baseline: the same rows the pipeline will write, rated offline once.
	t = time.Now()
	rated, err := rateOffline(set, recs)
	if err != nil {
		return 1, err
	}
	want := offlineTotals(rated)
	progress("rated offline: %d rows (%d usage, %d device fees) in %.2fs", len(rated), len(recs), len(rated)-len(recs), time.Since(t).Seconds())
	rawTook, err := rawInsert(ctx, store, rated, progress)
	if err != nil {
		return 1, err
	}
	rows := len(rated)
	rated = nil
	stages := []Stage{{Name: "raw insert (clickhouse-go column-wise, 100k batches)", Records: len(recs), Took: rawTook, Raw: true}}
	progress("raw insert: %d rows in %.2fs, %.0f rows/s", rows, rawTook.Seconds(), float64(rows)/rawTook.Seconds())

	// (2) The pipeline.
	res, err := runPipeline(ctx, cfg, kcfg, rulesPath, store, recs, logger, progress)
	if err != nil {
		return 1, err
	}
	stages = append(stages, res.stages...)
	out.Stages, out.Rater = stages, res.rater
	writeTable(stdout, stages)
	fmt.Fprintf(stdout, "raw insert wrote %d rows (%d usage, %d device fees) at %.0f rows/s\n", rows, len(recs), rows-len(recs), float64(rows)/rawTook.Seconds())
	fmt.Fprintf(stdout, "rater: %.0f transactions, %.0f records/transaction, %.2fs inside transactions\n",
		res.txns, float64(len(recs))/max(res.txns, 1), res.txnSeconds)
	fmt.Fprintf(stdout, "loader: %d inserts, %.0f rows/insert (largest %d), %.2fs inside InsertRated\n",
		res.inserts, float64(res.insertRows)/float64(max(res.inserts, 1)), res.maxInsert, res.insertTime.Seconds())
	rr := res.rater
	fmt.Fprintf(stdout, "rater state: %.0f devices tracked, changelog %.1f bytes per rated record (%.1f MB in all), %.0f aborted transactions\n",
		rr.Devices, rr.ChangelogBytes/max(rr.Rated, 1), rr.ChangelogBytes/1e6, rr.Aborted)
	fmt.Fprintf(stdout, "rater process: peak RSS %.1f MB, %.1f bytes per tracked device (process included); Go heap at the end %.1f MB in use of %.1f MB, %d GC cycles\n",
		float64(rr.PeakRSS)/1e6, float64(rr.PeakRSS)/max(rr.Devices, 1), float64(rr.HeapInuse)/1e6, float64(rr.HeapSys)/1e6, rr.GCs)
	if err := measureRestore(ctx, kcfg, stdout); err != nil {
		return 1, err
	}

	// The count billing reads, duplicates collapsed, and the amounts beside the offline ones.
	got, err := store.Totals(ctx, clickhouse.Filter{Charge: record.ChargeUsage})
	if err != nil {
		return 1, err
	}
	var n uint64
	amountsMatch := len(got) == len(want)
	for _, g := range got {
		n += g.Records
		if w, ok := want[g.Tenant]; !ok || w != g {
			amountsMatch = false
		}
	}
	fmt.Fprintf(stdout, "clickhouse holds %d usage records, want %d; amounts per tenant match offline rating: %t\n", n, len(recs), amountsMatch)
	if n != uint64(len(recs)) || !amountsMatch {
		return 1, nil
	}
	return 0, nil
}

// measureRestore replays partition 0 of the state changelog into a State, as a rater
// taking the partition over does, and prints how long it took.
func measureRestore(ctx context.Context, kcfg kafka.Config, stdout io.Writer) error {
	rd, err := kafka.NewReader(kcfg, nil)
	if err != nil {
		return err
	}
	defer rd.Close()
	st := rating.NewState()
	defer st.Release()
	start := time.Now()
	n, err := rd.Replay(ctx, kafka.TopicState, 0, st.Apply)
	if err != nil {
		return fmt.Errorf("restore partition 0: %w", err)
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "restore of partition 0: %d changelog entries, %d devices in %.2fs (%.0f entries/s)\n",
		n, st.Devices(), took.Seconds(), float64(n)/took.Seconds())
	return nil
}

// genUsage builds n canonical usage records from a simulated fleet of devices, as the
// MQTT collector would from their payloads, all in period 2026-10: device by device,
// round after round, so each device's records come in time order.
func genUsage(n, devices int, seed uint64) ([]record.Usage, error) {
	devices = min(devices, n)
	fleet := sim.NewFleet(devices, seed)
	p := payload.Parser{Limits: payload.DefaultLimits()}
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	const month = 31 * 24 * 3600 * 1000
	rounds := (n + devices - 1) / devices
	step := min(60_000, (month-int64(devices))/int64(rounds))
	recs := make([]record.Usage, 0, n)
	for k := 0; len(recs) < n; k++ {
		for i := 0; i < devices && len(recs) < n; i++ {
			d := &fleet.Devices[i]
			ts := base + int64(k)*step + int64(i)
			var err error
			recs, err = p.Parse(payload.KindJSON, fleet.Message(nil, i, uint64(k+1), ts),
				payload.Identity{Tenant: d.Tenant, Device: d.ID, Source: record.SourceMQTT}, ts, recs)
			if err != nil {
				return nil, fmt.Errorf("generate usage: device %s: %w", d.ID, err)
			}
		}
	}
	return recs, nil
}

// rateOffline rates recs with one state, as `rater rate` does.
func rateOffline(set *rules.Set, recs []record.Usage) ([]record.Rated, error) {
	eng := rating.NewEngine(set, rating.Options{})
	var errs []error
	out := eng.RateBatch(rating.NewState(), recs, make([]record.Rated, 0, len(recs)+len(recs)/8), func(i int, err error) {
		if len(errs) < 3 {
			errs = append(errs, fmt.Errorf("record %d: %w", i, err))
		}
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("rate offline: %w", errors.Join(errs...))
	}
	return out, nil
}

func offlineTotals(rated []record.Rated) map[string]clickhouse.Total {
	m := map[string]clickhouse.Total{}
	for i := range rated {
		r := &rated[i]
		if r.Charge != record.ChargeUsage {
			continue
		}
		t := m[r.Tenant]
		t.Tenant, t.Currency = r.Tenant, r.Currency
		t.Records++
		t.Amount += r.Amount
		m[r.Tenant] = t
	}
	return m
}

// openFreshStore drops the load test's databases and opens the store on a new one.
func openFreshStore(ctx context.Context, addr string) (*clickhouse.Store, error) {
	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr = []string{addr}
	admin, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		return nil, err
	}
	for _, db := range []string{loadDatabase, rawDatabase} {
		if err := admin.Conn().Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
			admin.Close()
			return nil, fmt.Errorf("drop database %s: %w", db, err)
		}
	}
	admin.Close()
	chcfg.Database = loadDatabase
	return clickhouse.Open(ctx, chcfg)
}

// checkEmptyTopics refuses a cluster whose pipeline topics hold records: the stages
// would consume them too and the count would not be the test's.
func checkEmptyTopics(ctx context.Context, kcfg kafka.Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		return fmt.Errorf("--kafka: %w", err)
	}
	defer cl.Close()
	topics := []string{kafka.TopicUsage, kafka.TopicRated, kafka.TopicState, kafka.TopicRejected}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("--kafka: %w", err)
	}
	var held int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			held += o.Offset
		}
	})
	if held > 0 {
		return fmt.Errorf("--kafka: the pipeline topics %v already hold %d records; the load test needs them empty or absent", topics, held)
	}
	return nil
}

// rawInsert is the ceiling the pipeline is compared with: rows already rated and laid
// out column by column (outside the clock), appended by clickhouse-go in 100k-row batches
// into a plain MergeTree table with rated_usage's columns, in a scratch database that is
// dropped afterwards.
func rawInsert(ctx context.Context, store *clickhouse.Store, rows []record.Rated, progress func(string, ...any)) (time.Duration, error) {
	conn := store.Conn()
	table := rawDatabase + ".rated"
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + rawDatabase,
		"CREATE TABLE " + table + " AS " + loadDatabase + ".rated_usage ENGINE = MergeTree() PARTITION BY toYYYYMM(start_time) ORDER BY (tenant, record_id)",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("raw insert: %w", err)
		}
	}
	names, _ := clickhouse.RatedColumns(nil)
	q := "INSERT INTO " + table + " (" + joinComma(names) + ")"
	var took time.Duration
	for i := 0; i < len(rows); i += rawBatch {
		_, cols := clickhouse.RatedColumns(rows[i:min(i+rawBatch, len(rows))])
		start := time.Now()
		batch, err := conn.PrepareBatch(ctx, q)
		if err != nil {
			return 0, fmt.Errorf("raw insert: %w", err)
		}
		for c, v := range cols {
			if err := batch.Column(c).Append(v); err != nil {
				_ = batch.Abort()
				return 0, fmt.Errorf("raw insert: column %s: %w", names[c], err)
			}
		}
		if err := batch.Send(); err != nil {
			return 0, fmt.Errorf("raw insert: %w", err)
		}
		took += time.Since(start)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("raw insert: %w", err)
	}
	if n != uint64(len(rows)) {
		return 0, fmt.Errorf("raw insert: table holds %d rows, sent %d", n, len(rows))
	}
	if err := conn.Exec(ctx, "DROP DATABASE "+rawDatabase); err != nil {
		progress("raw insert: drop %s: %v", rawDatabase, err)
	}
	return took, nil
}

func joinComma(s []string) string {
	var b []byte
	for i, v := range s {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, v...)
	}
	return string(b)
}

func writeTable(w io.Writer, stages []Stage) {
	var raw float64
	for _, s := range stages {
		if s.Raw {
			raw = s.Rate()
		}
	}
	fmt.Fprintf(w, "%-52s %9s %8s %10s %13s\n", "stage", "records", "seconds", "records/s", "ratio to raw")
	for _, s := range stages {
		ratio := "-"
		if s.Raw || s.Ratio {
			ratio = fmt.Sprintf("%.2f", s.Rate()/raw)
		}
		fmt.Fprintf(w, "%-52s %9d %8.2f %10.0f %13s\n", s.Name, s.Records, s.Took.Seconds(), s.Rate(), ratio)
	}
}

type pipelineResult struct {
	stages     []Stage
	txns       float64 // rater transactions committed
	txnSeconds float64 // from Begin to committed End, summed
	inserts    int64   // loader InsertRated calls with rows
	insertRows int64
	maxInsert  int64
	insertTime time.Duration
	rater      RaterReport
}

// timedStore counts and times the loader's inserts: the loader inserts once per poll, so
// their sizes show how well it batches.
type timedStore struct {
	pipeline.Store
	inserts, rows, largest, nanos atomic.Int64
}

func (s *timedStore) InsertRated(ctx context.Context, recs []record.Rated) error {
	if len(recs) == 0 {
		return s.Store.InsertRated(ctx, recs)
	}
	start := time.Now()
	err := s.Store.InsertRated(ctx, recs)
	s.nanos.Add(int64(time.Since(start)))
	s.inserts.Add(1)
	s.rows.Add(int64(len(recs)))
	if n := int64(len(recs)); n > s.largest.Load() {
		s.largest.Store(n) // one loader goroutine: no race between load and store
	}
	return err
}

// runPipeline produces recs to topic usage (before the stages start, or with --overlap
// while they run), runs the rater and the loader in-process and clocks them until
// rated_usage counts every record. The stages stop (context cancelled) once it does.
func runPipeline(ctx context.Context, cfg LoadConfig, kcfg kafka.Config, rulesPath string, store *clickhouse.Store,
	recs []record.Usage, logger *slog.Logger, progress func(string, ...any)) (pipelineResult, error) {
	var res pipelineResult
	prod, err := kafka.NewProducer(ctx, kcfg, logger.With("component", "producer"))
	if err != nil {
		return res, err
	}
	defer prod.Close(context.Background())
	if !cfg.Overlap {
		start := time.Now()
		if err := produceAll(ctx, prod, recs); err != nil {
			return res, err
		}
		took := time.Since(start)
		progress("produced %d records to topic usage in %.2fs, %.0f records/s", len(recs), took.Seconds(), float64(len(recs))/took.Seconds())
		res.stages = append(res.stages, Stage{Name: "produce to topic usage", Records: len(recs), Took: took})
	}

	reg := obs.NewRegistry()
	ts := &timedStore{Store: store}
	// The rater runs in a process of its own, so its memory is measured apart from the
	// embedded broker's and the loader's.
	argv := cfg.RaterCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return res, err
		}
		argv = []string{exe, "load-rater"}
	}
	child := exec.Command(argv[0], append(argv[1:len(argv):len(argv)], "--kafka", kcfg.Brokers[0], "--rules", rulesPath, "--log-level", cfg.LogLevel)...)
	var report strings.Builder
	child.Stdout, child.Stderr = &report, os.Stderr
	if err := child.Start(); err != nil {
		return res, fmt.Errorf("start the rater process: %w", err)
	}
	childDone := make(chan error, 1)
	go func() { childDone <- child.Wait() }()
	stopChild := func() error {
		_ = child.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-childDone:
			return err
		case <-time.After(time.Minute):
			_ = child.Process.Kill()
			return errors.New("the rater process did not stop within a minute of SIGTERM")
		}
	}
	defer func() {
		if child.ProcessState == nil {
			_ = child.Process.Kill()
		}
	}()
	loader, err := pipeline.NewLoader(ctx, pipeline.LoaderConfig{Kafka: kcfg, Group: "fleetmeter-load-loader"}, ts, reg,
		logger.With("component", "loader"))
	if err != nil {
		return res, err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return res, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	start := time.Now()
	g.Go(func() error { return loader.Run(gctx) })
	g.Go(func() error {
		select {
		case err := <-childDone:
			childDone <- err
			if gctx.Err() == nil {
				return fmt.Errorf("the rater process ended early: %v", err)
			}
		case <-gctx.Done():
		}
		return nil
	})
	var produced time.Duration
	if cfg.Overlap {
		g.Go(func() error {
			if err := produceAll(gctx, prod, recs); err != nil {
				return err
			}
			produced = time.Since(start)
			progress("produced %d records to topic usage in %.2fs (overlapping)", len(recs), produced.Seconds())
			return nil
		})
	}
	status := func() string {
		return fmt.Sprintf("rater process: peak RSS %.0f MB; loader: %.0f rows inserted",
			float64(PeakRSS(child.Process.Pid))/1e6, metricSum(reg, "fleetmeter_loader_rows_total", "rated_usage"))
	}
	firstAt, firstN, werr := waitCount(gctx, store, uint64(len(recs)), cfg.Stall, start, progress, status)
	took := time.Since(start)
	end := time.Now()
	cancel()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	if werr != nil {
		return res, werr
	}
	name := "rater+loader: usage -> rated_usage"
	if cfg.Overlap {
		res.stages = append(res.stages, Stage{Name: "produce to topic usage (overlapping)", Records: len(recs), Took: produced})
		name = "produce+rater+loader, overlapped"
	}
	progress("pipeline: %d usage records in clickhouse after %.2fs, %.0f records/s", len(recs), took.Seconds(), float64(len(recs))/took.Seconds())
	res.stages = append(res.stages, Stage{Name: name, Records: len(recs), Took: took, Ratio: true})
	if steady := len(recs) - int(firstN); steady > 0 && end.After(firstAt) {
		res.stages = append(res.stages, Stage{Name: "  the same, from its first row in clickhouse", Records: steady,
			Took: end.Sub(firstAt), Ratio: true})
	}

	if err := stopChild(); err != nil {
		return res, fmt.Errorf("rater process: %w", err)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(report.String())), &res.rater); err != nil {
		return res, fmt.Errorf("rater process report %q: %w", report.String(), err)
	}
	res.txns, res.txnSeconds = res.rater.Committed, res.rater.TxnSeconds
	res.inserts, res.insertRows, res.maxInsert = ts.inserts.Load(), ts.rows.Load(), ts.largest.Load()
	res.insertTime = time.Duration(ts.nanos.Load())
	return res, nil
}

// metricSum adds up the counters (or histogram counts) of family name in reg whose
// label value equals label, or all of them when label is empty.
func metricSum(reg *obs.Registry, name, label string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == label
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			} else if h := m.GetHistogram(); h != nil {
				sum += float64(h.GetSampleCount())
			}
		}
	}
	return sum
}

// produceAll hands every record to the producer at once (it batches per partition and
// Kafka's buffer limit pushes back) and waits for all acknowledgements.
func produceAll(ctx context.Context, prod *kafka.Producer, recs []record.Usage) error {
	const chunk = 10_000
	calls := (len(recs) + chunk - 1) / chunk
	acks := make(chan error, calls)
	for i := 0; i < len(recs); i += chunk {
		prod.Enqueue(recs[i:min(i+chunk, len(recs))], func(err error) { acks <- err })
	}
	for range calls {
		select {
		case err := <-acks:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("produce: %w", ctx.Err())
		}
	}
	return nil
}

// waitCount polls rated_usage's usage rows until there are want of them. It returns
// when it first saw rows there and how many: the start of the sustained phase. A plain
// count is cheap enough to poll often; duplicates (a retried insert) are left to the
// final check, which collapses them.
func waitCount(ctx context.Context, store *clickhouse.Store, want uint64, stall time.Duration, start time.Time,
	progress func(string, ...any), status func() string) (firstAt time.Time, firstN uint64, err error) {
	q := "SELECT count() FROM " + loadDatabase + ".rated_usage WHERE charge = '" + record.ChargeUsage + "'"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last uint64
	lastChange, lastReport := time.Now(), time.Now()
	for {
		var n uint64
		if err := store.Conn().QueryRow(ctx, q).Scan(&n); err != nil {
			if ctx.Err() != nil {
				return firstAt, firstN, fmt.Errorf("waiting for clickhouse: %w", ctx.Err())
			}
			return firstAt, firstN, fmt.Errorf("count rated_usage: %w", err)
		}
		now := time.Now()
		if n > 0 && firstAt.IsZero() {
			firstAt, firstN = now, n
		}
		if n >= want {
			return firstAt, firstN, nil
		}
		if n != last {
			last, lastChange = n, now
		} else if now.Sub(lastChange) > stall {
			return firstAt, firstN, fmt.Errorf("stalled: clickhouse has held %d of %d usage records for %s; %s", n, want, stall, status())
		}
		if now.Sub(lastReport) >= 2*time.Second {
			lastReport = now
			progress("pipeline: %d/%d usage records in clickhouse after %.1fs; %s", n, want, now.Sub(start).Seconds(), status())
		}
		select {
		case <-ctx.Done():
			return firstAt, firstN, fmt.Errorf("waiting for clickhouse: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// int32Flag binds an int32 to a flag.
type int32Flag struct{ p *int32 }

func (f int32Flag) String() string {
	if f.p == nil {
		return ""
	}
	return strconv.Itoa(int(*f.p))
}

func (f int32Flag) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return err
	}
	*f.p = int32(v)
	return nil
}
