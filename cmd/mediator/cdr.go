package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goccy/go-yaml"

	"fleetmeter/cdr"
	"fleetmeter/ingest/cdrdir"
	"fleetmeter/internal/config"
	"fleetmeter/kafka"
	"fleetmeter/record"
)

const cdrUsage = `usage: mediator cdr decode [--tenant-default T] [--tenants FILE] [--received-time RFC3339] FILE...

Prints the canonical usage.v1 records of CHF CDR files (TS 32.297 files or raw BER
CHFRecords; FILE "-" is stdin) as JSON Lines on stdout. A damaged file yields its records
before the damage, then an error naming the file and byte offset on stderr; the exit code
is then 1.
`

// runCDR implements "mediator cdr ...".
func runCDR(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "decode":
			return runCDRDecode(args[1:], stdin, stdout, stderr)
		case "import":
			return runCDRImport(args[1:], stderr)
		}
	}
	fmt.Fprint(stderr, cdrUsage+"\n"+cdrImportUsage)
	return 2
}

// tenantFlags are the tenant map flags decode and import share.
type tenantFlags struct{ def, file *string }

func addTenantFlags(fs *flag.FlagSet) tenantFlags {
	return tenantFlags{
		def:  fs.String("tenant-default", "", "tenant for CDRs no tenant rule maps"),
		file: fs.String("tenants", "", "YAML tenant map (default, rules); --tenant-default overrides its default"),
	}
}

// config reads --tenants (strictly) and applies --tenant-default.
func (f tenantFlags) config() (cdr.Config, error) {
	cfg := cdr.DefaultConfig()
	if *f.file != "" {
		b, err := os.ReadFile(*f.file)
		if err == nil {
			err = yaml.UnmarshalWithOptions(b, &cfg.Tenants, yaml.Strict())
		}
		if err != nil {
			return cfg, fmt.Errorf("--tenants %s: %w", *f.file, err)
		}
	}
	if *f.def != "" {
		cfg.Tenants.Default = *f.def
	}
	return cfg, nil
}

func runCDRDecode(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mediator cdr decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cdrUsage) }
	tenants := addTenantFlags(fs)
	received := fs.String("received-time", "", "received_time to stamp on every record (RFC 3339); default the epoch (0)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, cdrUsage)
		return 2
	}
	cfg, err := tenants.config()
	if err != nil {
		fmt.Fprintf(stderr, "mediator cdr decode: %v\n", err)
		return 2
	}
	dec, err := cdr.NewDecoder(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mediator cdr decode: %v\n", err)
		return 2
	}
	if *received != "" {
		ms, ok := record.ParseRFC3339(*received)
		if !ok {
			fmt.Fprintf(stderr, "mediator cdr decode: --received-time: %q is not an RFC 3339 time such as 2026-11-01T00:00:00Z\n", *received)
			return 2
		}
		dec.ReceivedTime = ms
	}

	out := bufio.NewWriterSize(stdout, 64<<10)
	var (
		recs []record.Usage
		line []byte
		code int
	)
	for _, name := range fs.Args() {
		var b []byte
		if name == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(name)
		}
		if err != nil {
			out.Flush()
			fmt.Fprintf(stderr, "mediator cdr decode: %v\n", err)
			code = 1
			continue
		}
		recs, err = dec.Decode(b, recs[:0])
		for i := range recs {
			line = append(record.AppendJSON(line[:0], &recs[i]), '\n')
			out.Write(line)
		}
		if werr := out.Flush(); werr != nil {
			fmt.Fprintf(stderr, "mediator cdr decode: write: %v\n", werr)
			return 1
		}
		if err != nil {
			// The error names the byte offset (a *cdr.DecodeError); the records before it
			// are already on stdout.
			fmt.Fprintf(stderr, "mediator cdr decode: %s: %v (%d records before it)\n", name, err, len(recs))
			code = 1
		}
	}
	return code
}

const cdrImportUsage = `usage: mediator cdr import [--kafka.brokers ADDR] [--tenant-default T] [--tenants FILE] [--pattern GLOB] [--move] DIR|FILE...

Back-fills CHF CDR files into Kafka through the drop-directory collector's code path:
each file's records go to topic usage, unmapped or invalid ones and damage reports to
topic rejected, and a file counts as imported only once Kafka acknowledged all of it.
A DIR argument imports the files directly in it that match --pattern (hidden, .tmp and
.part files are skipped). Files stay where they are unless --move is given: then each
goes to done/ (or, damaged or too large, to its own folder failed/<name>/ with a
reason.json) beside it. Importing a file twice produces the same records again, which
the pipeline collapses by event_id.
Progress goes to stderr; the exit code is 1 if any file was damaged or failed.
`

// runCDRImport implements "mediator cdr import".
func runCDRImport(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("mediator cdr import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cdrImportUsage) }
	kcfg := kafka.DefaultConfig()
	if v, ok := os.LookupEnv(config.EnvName("kafka.brokers")); ok {
		_ = config.StringList{P: &kcfg.Brokers}.Set(v)
	}
	fs.Var(config.StringList{P: &kcfg.Brokers}, "kafka.brokers", "Kafka seed brokers, comma-separated (env FLEETMETER_KAFKA_BROKERS)")
	tenants := addTenantFlags(fs)
	pattern := fs.String("pattern", "*", "glob for the files taken from a DIR argument")
	move := fs.Bool("move", false, "move each imported file to done/ (damaged: failed/) beside it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, cdrImportUsage)
		return 2
	}
	cfg := cdrdir.DefaultConfig()
	cfg.Pattern = *pattern
	var err error
	if cfg.Decoder, err = tenants.config(); err == nil {
		err = cfg.Decoder.Validate()
	}
	if err == nil {
		_, err = filepath.Match(cfg.Pattern, "x")
	}
	if err != nil {
		fmt.Fprintf(stderr, "mediator cdr import: %v\n", err)
		return 2
	}

	code := 0
	var jobs []importJob
	var total int64
	for _, arg := range fs.Args() {
		js, err := importJobs(arg, cfg.Pattern)
		if err != nil {
			fmt.Fprintf(stderr, "mediator cdr import: %v\n", err)
			code = 1
			continue
		}
		for _, j := range js {
			total += j.size
		}
		jobs = append(jobs, js...)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	prod, err := kafka.NewProducer(cctx, kcfg, logger)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "mediator cdr import: %v\n", err)
		return 1
	}
	proc, err := cdrdir.NewProcessor(cfg, prod, nil)
	if err != nil {
		_ = prod.Close(ctx)
		fmt.Fprintf(stderr, "mediator cdr import: %v\n", err)
		return 2
	}
	pr := newProgress(stderr, len(jobs), total)
	proc.OnAck = func(n int) { pr.records.Add(int64(n)) }
	pr.start()

	var sum importSummary
	for _, j := range jobs {
		res, err := proc.Send(ctx, j.path)
		if _, ok := errors.AsType[*cdrdir.SinkError](err); ok || ctx.Err() != nil {
			// Kafka refused or we were interrupted: what follows would fail the same way.
			pr.printf("mediator cdr import: %v; stopping (the files not yet imported are untouched)\n", err)
			sum.errors++
			break
		}
		if err != nil {
			pr.printf("mediator cdr import: %v\n", err)
			sum.errors++
			continue
		}
		switch {
		case res.Damage != nil:
			pr.printf("mediator cdr import: %s: %v (%d records before it imported)\n", j.path, res.Damage, res.Records)
			sum.damaged++
		case res.TooLarge:
			pr.printf("mediator cdr import: %s: larger than %d bytes, not read\n", j.path, cfg.MaxFileBytes)
			sum.damaged++
		}
		sum.rejected += res.Rejected
		pr.fileDone(j.size)
		if *move {
			if err := res.Move(cdrdir.DestFor(filepath.Dir(j.path))); err != nil {
				pr.printf("mediator cdr import: %s: imported, but %v\n", j.path, err)
				sum.errors++
			}
		}
	}
	cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := prod.Close(cctx); err != nil {
		pr.printf("mediator cdr import: %v\n", err)
		sum.errors++
	}
	pr.stop()
	el := time.Since(pr.t0)
	recs := pr.records.Load()
	fmt.Fprintf(stderr, "imported %d of %d files (%d damaged, %d errors): %d records, %d rejected, %s in %s (%s records/s, %s/s)\n",
		pr.files.Load(), len(jobs), sum.damaged, sum.errors, recs, sum.rejected, fmtBytes(pr.bytes.Load()),
		el.Round(time.Millisecond), fmtRate(float64(recs)/el.Seconds()), fmtBytes(int64(float64(pr.bytes.Load())/el.Seconds())))
	if sum.damaged > 0 || sum.errors > 0 {
		code = 1
	}
	return code
}

type importSummary struct{ damaged, errors, rejected int }

type importJob struct {
	path string
	size int64
}

// importJobs expands one argument: a file, or the eligible files of a directory.
func importJobs(arg, pattern string) ([]importJob, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	paths := []string{arg}
	if st.IsDir() {
		if paths, err = cdrdir.ListFiles(arg, pattern); err != nil {
			return nil, err
		}
	}
	var out []importJob
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		out = append(out, importJob{path: p, size: st.Size()})
	}
	return out, nil
}

// progress prints files done/total, records, bytes and rates to stderr: one line
// redrawn at most 4 times a second on a terminal, otherwise a plain line at most once a
// second, so logs stay readable.
type progress struct {
	w       io.Writer
	tty     bool
	nfiles  int
	total   int64
	t0      time.Time
	files   atomic.Int64
	records atomic.Int64
	bytes   atomic.Int64

	mu       sync.Mutex
	lastLine string
	drawn    bool // a terminal line is on screen without its newline
	quit     chan struct{}
	wg       sync.WaitGroup
}

func newProgress(w io.Writer, nfiles int, total int64) *progress {
	return &progress{w: w, tty: isTerminal(w), nfiles: nfiles, total: total, t0: time.Now(), quit: make(chan struct{})}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) start() {
	every := time.Second
	if p.tty {
		every = 250 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
}

func (p *progress) fileDone(size int64) {
	p.files.Add(1)
	p.bytes.Add(size)
}

func (p *progress) line() string {
	el := time.Since(p.t0).Seconds()
	recs, b := p.records.Load(), p.bytes.Load()
	s := fmt.Sprintf("files %d/%d  records %d  %s/%s  %s rec/s  %s/s",
		p.files.Load(), p.nfiles, recs, fmtBytes(b), fmtBytes(p.total), fmtRate(float64(recs)/el), fmtBytes(int64(float64(b)/el)))
	if p.tty && p.total > 0 {
		const width = 24
		n := int(float64(width) * float64(b) / float64(p.total))
		s = "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "] " + s
	}
	return s
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.line()
	switch {
	case p.tty:
		fmt.Fprint(p.w, "\r\033[K"+l)
		p.drawn = true
	case l != p.lastLine:
		fmt.Fprintln(p.w, l)
	}
	p.lastLine = l
}

// printf prints a message on its own line, clearing a drawn progress bar first.
func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	fmt.Fprintf(p.w, format, args...)
}

func (p *progress) stop() {
	close(p.quit)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func fmtRate(r float64) string {
	if r >= 1e6 {
		return fmt.Sprintf("%.1fM", r/1e6)
	}
	if r >= 1e3 {
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}
