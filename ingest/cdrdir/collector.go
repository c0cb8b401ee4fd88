// Package cdrdir is the CHF drop-directory collector: it polls a directory for TS 32.297
// CDR files (or raw BER CHFRecords), takes each once its size and mtime have settled,
// decodes it (package cdr), hands every record to the sink and moves the file to done/
// only after the sink acknowledged all of it; a damaged file yields the records before
// the damage, a rejection naming the offset, and goes to a folder of its own in failed/
// with reason.json.
// The Processor it uses is also what `mediator cdr import` runs for batch back-fills.
package cdrdir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"fleetmeter/ingest"
)

// shutdownGrace is how long a file in flight when Run's context ends may still wait for
// its acknowledgements, so a graceful stop finishes the file instead of sending it again
// after the restart.
const shutdownGrace = 10 * time.Second

// maxBackoff caps the wait between retries while the sink fails.
const maxBackoff = 30 * time.Second

// Collector watches one drop directory. Exactly one collector may own a directory: it
// is the only one moving files out of it (run one mediator per drop directory, or give
// each mediator its own directory).
type Collector struct {
	cfg     Config
	proc    *Processor
	dest    Dest
	logger  *slog.Logger
	healthy atomic.Bool

	files   map[string]*seenFile
	backoff time.Duration // current retry delay after a sink failure; 0 when the sink is fine
	now     func() time.Time
}

var _ ingest.Collector = (*Collector)(nil)

// seenFile tracks one name in the drop directory between polls.
type seenFile struct {
	size    int64
	mtime   time.Time
	since   time.Time // when (size, mtime) was first seen as it is now
	retryAt time.Time // not before this (after a read error)
	// sent: the sink acknowledged this version of the file but the move failed; only
	// the move is retried, so a stuck rename does not produce the file over and over.
	sent *Result
}

// New validates cfg and builds the collector; Run starts it.
func New(cfg Config, sink ingest.Sink, metrics *ingest.Metrics, logger *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	proc, err := NewProcessor(cfg, sink, metrics)
	if err != nil {
		return nil, err
	}
	return &Collector{cfg: cfg, proc: proc, dest: Dest{Done: cfg.Done, Failed: cfg.Failed},
		logger: logger, files: map[string]*seenFile{}, now: time.Now}, nil
}

// Healthy reports whether the directory is readable and the sink took the last file.
func (c *Collector) Healthy() bool { return c.healthy.Load() }

// Run polls the directory until ctx ends. A file in flight then gets shutdownGrace to be
// acknowledged and moved; otherwise it stays and the next start sends it again.
func (c *Collector) Run(ctx context.Context) error {
	if err := c.prepare(); err != nil {
		return err
	}
	c.healthy.Store(true)
	c.logger.Info("cdr drop directory watched", "dir", c.cfg.Dir, "done", c.dest.Done, "failed", c.dest.Failed,
		"pattern", c.cfg.Pattern, "settle", c.cfg.Settle.String())
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(shutdownGrace, cancel) })
	defer stop()

	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.healthy.Store(false)
			return nil
		case <-t.C:
		}
		t.Reset(c.poll(ctx, work))
	}
}

// prepare creates the directories, removes temporaries a crash left, finishes the
// quarantine a crash interrupted (recoverQuarantines), and proves that a
// rename from Dir into done/ and failed/ works (same filesystem, writable), so a
// misconfiguration fails the start instead of every file later.
func (c *Collector) prepare() error {
	for _, d := range []string{c.cfg.Dir, c.dest.Done, c.dest.Failed} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cdrdir: %w", err)
		}
		removeTemps(d)
	}
	for _, err := range recoverQuarantines(c.dest.Failed) {
		c.logger.Error("cdr quarantine left by a crash not recovered", "err", err)
	}
	for _, d := range []string{c.dest.Done, c.dest.Failed} {
		probe := filepath.Join(c.cfg.Dir, ".probe-"+strconv.Itoa(os.Getpid())+tmpSuffix)
		if err := os.WriteFile(probe, nil, 0o644); err != nil {
			return fmt.Errorf("cdrdir: cdr.dir not writable: %w", err)
		}
		moved := filepath.Join(d, filepath.Base(probe))
		err := os.Rename(probe, moved)
		os.Remove(probe)
		os.Remove(moved)
		if err != nil {
			return fmt.Errorf("cdrdir: cannot move files from cdr.dir into %s (it must be on the same filesystem): %w", d, err)
		}
	}
	return nil
}

// poll lists the directory once, sends every settled file and returns the delay until the
// next poll. ctx stops taking new files; work bounds waiting for one in flight.
func (c *Collector) poll(ctx, work context.Context) time.Duration {
	ready, err := c.scan()
	if err != nil {
		c.healthy.Store(false)
		c.logger.Error("cdr drop directory unreadable", "dir", c.cfg.Dir, "err", err)
		return c.cfg.Poll
	}
	if len(ready) == 0 {
		c.backoff = 0 // nothing left that could fail
	}
	for _, name := range ready {
		if ctx.Err() != nil {
			break
		}
		if !c.take(work, name) {
			return c.backoff
		}
	}
	healthy := c.backoff == 0
	for _, f := range c.files {
		healthy = healthy && f.sent == nil
	}
	c.healthy.Store(healthy)
	return c.cfg.Poll
}

// scan updates what is known about the directory and returns the names ready to take,
// oldest mtime first.
func (c *Collector) scan() ([]string, error) {
	ents, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return nil, err
	}
	now := c.now()
	present := make(map[string]bool, len(ents))
	var ready []string
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !Eligible(name, c.cfg.Pattern) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone since the listing
		}
		present[name] = true
		f := c.files[name]
		if f == nil || f.size != info.Size() || !f.mtime.Equal(info.ModTime()) {
			// New, or still being written: the settle clock starts (again) now.
			f = &seenFile{size: info.Size(), mtime: info.ModTime(), since: now}
			c.files[name] = f
		}
		if now.Sub(f.since) >= c.cfg.Settle && !now.Before(f.retryAt) {
			ready = append(ready, name)
		}
	}
	for name := range c.files {
		if !present[name] {
			delete(c.files, name)
		}
	}
	sort.Slice(ready, func(i, j int) bool {
		a, b := c.files[ready[i]], c.files[ready[j]]
		if !a.mtime.Equal(b.mtime) {
			return a.mtime.Before(b.mtime)
		}
		return ready[i] < ready[j]
	})
	return ready, nil
}

// take sends one file and moves it. It returns false when the sink failed: the caller
// backs off and stops taking files until the next poll.
func (c *Collector) take(work context.Context, name string) bool {
	f := c.files[name]
	path := filepath.Join(c.cfg.Dir, name)
	res := f.sent
	if res == nil {
		r, err := c.proc.Send(work, path)
		var se *SinkError
		switch {
		case errors.As(err, &se):
			c.backoff = min(max(2*c.backoff, c.cfg.Poll), maxBackoff)
			c.healthy.Store(false)
			c.logger.Error("cdr file not acknowledged; it stays and is retried", "file", path, "retry_in", c.backoff.String(), "err", err)
			return false
		case errors.Is(err, errChanged):
			f.since = c.now() // written to again: settle anew
			return true
		case errors.Is(err, fs.ErrNotExist):
			delete(c.files, name)
			return true
		case err != nil:
			f.retryAt = c.now().Add(time.Minute)
			c.logger.Error("cdr file unreadable; retried in a minute", "file", path, "err", err)
			return true
		}
		res = &r
		c.backoff = 0
	}
	// Every record of the file is acknowledged. Moving it now is what marks it done; a
	// crash at any moment before the rename leaves the file in the drop directory, so the
	// restart sends it again. That duplicates records in Kafka but never loses one, and the
	// duplicates are harmless: the decoder derives each event_id from the CDR itself, and
	// received_time is the file's mtime, so the second copy is identical to the first, and
	// downstream collapses it (rated_usage is a ReplacingMergeTree keyed by record_id =
	// event_id; rejected_usage's sorting key covers the whole rejection). The rename is
	// atomic, so the file is never in both places or neither; once it is in done/ nothing
	// else is left to do, so a crash after it needs no recovery.
	if err := res.Move(c.dest); err != nil {
		f.sent = res
		f.retryAt = c.now().Add(c.cfg.Poll)
		c.healthy.Store(false)
		c.logger.Error("cdr file sent but not moved; retrying the move", "file", path, "err", err)
		return true
	}
	delete(c.files, name)
	attrs := []any{"file", path, "to", res.MovedTo, "bytes", res.Bytes, "records", res.Records, "rejected", res.Rejected}
	if res.Damage != nil {
		c.logger.Warn("cdr file damaged: records before the damage sent, file moved to failed",
			append(attrs, "offset", res.Damage.Offset, "err", res.Damage.Error())...)
	} else if res.TooLarge {
		c.logger.Warn("cdr file too large: not read, moved to failed", attrs...)
	} else {
		c.logger.Info("cdr file done", attrs...)
	}
	return true
}
