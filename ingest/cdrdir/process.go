package cdrdir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"fleetmeter/cdr"
	"fleetmeter/ingest"
	"fleetmeter/record"
)

const (
	source = record.SourceCDR

	// window is how many sink calls of one file may await acknowledgement at once.
	window = 4
)

// Result is what became of one file.
type Result struct {
	Path     string // where the file was read
	Bytes    int64
	Records  int // usage records acknowledged by the sink
	Rejected int // records and damage reports acknowledged as rejections
	// Damage is set when the file is damaged: the records before it were produced.
	Damage *cdr.DecodeError
	// TooLarge is set when the file exceeded the size limit and was not read.
	TooLarge bool
	// SHA256 is the hex digest of the whole file, taken for failed files only.
	SHA256  string
	MovedTo string // set once moved: done/<name>, or failed/<name>/<name>
}

// Failed reports whether the file belongs in failed/.
func (r *Result) Failed() bool { return r.Damage != nil || r.TooLarge }

// Processor takes one CDR file at a time to the sink: read, decode, validate, hand the
// records over in chunks and wait until every one is acknowledged. The drop-directory
// Collector and `mediator cdr import` share it. It is not safe for concurrent use.
type Processor struct {
	dec     *cdr.Decoder
	sink    ingest.Sink
	metrics *ingest.Metrics
	chunk   int
	maxFile int64

	// OnAck, if set, is called with the record count of every acknowledged sink call
	// (from the sink's goroutines): progress reporting.
	OnAck func(records int)

	buf  []byte
	recs []record.Usage
	rejs []record.Rejection
}

// NewProcessor builds a Processor from the decoder, chunk and size settings of cfg; Dir
// and the polling settings are not used.
func NewProcessor(cfg Config, sink ingest.Sink, metrics *ingest.Metrics) (*Processor, error) {
	if sink == nil {
		return nil, errors.New("cdrdir: nil sink")
	}
	if cfg.ChunkRecords < 1 {
		return nil, fmt.Errorf("cdr.chunk_records: must be >= 1, got %d", cfg.ChunkRecords)
	}
	if cfg.MaxFileBytes < 1 {
		return nil, fmt.Errorf("cdr.max_file_bytes: must be >= 1, got %d", cfg.MaxFileBytes)
	}
	dec, err := cdr.NewDecoder(cfg.Decoder)
	if err != nil {
		return nil, prefixErrors("cdr.", err)
	}
	if metrics == nil {
		metrics = ingest.NewMetrics(nil)
	}
	return &Processor{dec: dec, sink: sink, metrics: metrics, chunk: cfg.ChunkRecords, maxFile: cfg.MaxFileBytes}, nil
}

// SinkError wraps a failure of the sink: the file is intact and is to be retried later.
type SinkError struct{ Err error }

func (e *SinkError) Error() string { return e.Err.Error() }
func (e *SinkError) Unwrap() error { return e.Err }

// errChanged says the file changed while it was read: it was not settled after all.
var errChanged = errors.New("file changed while being read")

// Send reads and decodes the file and returns once the sink acknowledged all of it: every
// valid record, a rejection for each record without a tenant or otherwise invalid, and for
// a damaged file a rejection naming the offset with the bytes from there. The records'
// received_time is the file's mtime, so sending the same file again (after a crash) gives
// identical records and rejections, which downstream collapse.
func (p *Processor) Send(ctx context.Context, path string) (Result, error) {
	res := Result{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("cdrdir: %w", err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("cdrdir: %w", err)
	}
	if !before.Mode().IsRegular() {
		return res, fmt.Errorf("cdrdir: %s is not a regular file", path)
	}
	res.Bytes = before.Size()
	received := before.ModTime().UnixMilli()
	start := time.Now()
	p.metrics.InFlight.WithLabelValues(source).Inc()
	defer p.metrics.InFlight.WithLabelValues(source).Dec()

	p.recs, p.rejs = p.recs[:0], p.rejs[:0]
	defer func() {
		// Keep the capacity, not this file's strings and bytes.
		clear(p.recs)
		clear(p.rejs)
	}()
	var b []byte
	if res.Bytes > p.maxFile {
		res.TooLarge = true
		b, err = readPrefix(f, record.MaxRejectRaw)
		if err == nil {
			res.SHA256, err = hashFrom(f, b)
		}
		if err != nil {
			return res, fmt.Errorf("cdrdir: read %s: %w", path, err)
		}
		// Raw is the file's start; raw_len and raw_sha256 describe the whole file.
		p.rejs = append(p.rejs, record.Rejection{Source: source, Reason: record.ReasonCDRTooLarge,
			Detail: fmt.Sprintf("file %s: %d bytes exceed cdr.max_file_bytes %d; not read (raw: its first %d bytes)",
				path, res.Bytes, p.maxFile, len(b)),
			Raw: b, RawLen: res.Bytes, RawSHA256: res.SHA256, Received: received})
	} else {
		if b, err = p.read(f, res.Bytes); err != nil {
			return res, fmt.Errorf("cdrdir: read %s: %w", path, err)
		}
		after, err := f.Stat()
		if err != nil {
			return res, fmt.Errorf("cdrdir: %w", err)
		}
		if after.Size() != res.Bytes || !after.ModTime().Equal(before.ModTime()) {
			return res, fmt.Errorf("cdrdir: %s: %w", path, errChanged)
		}
		p.dec.ReceivedTime = received
		var derr error
		p.recs, derr = p.dec.Decode(b, p.recs)
		p.recs, p.rejs = p.screen(path, p.recs, p.rejs)
		if derr != nil {
			de, ok := errors.AsType[*cdr.DecodeError](derr)
			if !ok {
				de = &cdr.DecodeError{Offset: int64(p.dec.Consumed()), Msg: derr.Error()}
			}
			res.Damage = de
			sum := sha256.Sum256(b)
			res.SHA256 = hex.EncodeToString(sum[:])
			p.rejs = append(p.rejs, damageRejection(path, b, de, len(p.recs)+len(p.rejs), received))
		}
	}

	if err := p.sendAll(ctx, p.recs, p.rejs); err != nil {
		return res, &SinkError{Err: fmt.Errorf("cdrdir: send %s: %w", path, err)}
	}
	res.Records, res.Rejected = len(p.recs), len(p.rejs)
	p.metrics.Received.WithLabelValues(source).Inc()
	p.metrics.Accepted.WithLabelValues(source).Add(float64(res.Records))
	for i := range p.rejs {
		p.metrics.Rejected.WithLabelValues(source, p.rejs[i].Reason).Inc()
	}
	p.metrics.AckLatency.WithLabelValues(source).Observe(time.Since(start).Seconds())
	return res, nil
}

// read reads the whole file into the reused buffer.
func (p *Processor) read(f *os.File, size int64) ([]byte, error) {
	if int64(cap(p.buf)) < size+1 {
		p.buf = make([]byte, size+1)
	}
	// One byte more than the size: reading it means the file grew.
	n, err := io.ReadFull(f, p.buf[:size+1])
	switch {
	case err == nil:
		return nil, errChanged
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if int64(n) != size {
			return nil, errChanged
		}
		return p.buf[:n], nil
	default:
		return nil, err
	}
}

// hashFrom is the SHA-256 of a file whose first bytes, prefix, were read from f already:
// it streams the rest, so a file too large to hold is hashed in bounded memory.
func hashFrom(f *os.File, prefix []byte) (string, error) {
	h := sha256.New()
	h.Write(prefix)
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readPrefix(f *os.File, n int) ([]byte, error) {
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return b[:m], err
}

// screen moves records that fail validation out of recs into rejections: a CDR whose
// subscriber no tenant rule maps (and no tenants.default) is "unknown_tenant", anything
// else keeps record.Validate's reason. Nothing is dropped. The raw input of such a
// rejection is the record's canonical JSON: the decoder does not hand out a record's BER.
func (p *Processor) screen(path string, recs []record.Usage, rejs []record.Rejection) ([]record.Usage, []record.Rejection) {
	kept := recs[:0]
	for i := range recs {
		u := &recs[i]
		reason, detail := "", ""
		if u.Tenant == "" && u.Device != "" && u.EventID != "" {
			reason = record.ReasonUnknownTenant
			detail = "file " + path + ": event " + u.EventID + ": no tenant rule maps device " + u.Device + " and tenants.default is empty"
		} else if err := record.Validate(u); err != nil { // history: no live-input window
			reason = record.ReasonOf(err)
			detail = "file " + path + ": event " + record.QuoteInput(u.EventID) + ": " + err.Error()
		}
		if reason == "" {
			kept = append(kept, *u)
			continue
		}
		rejs = append(rejs, record.Rejection{Source: source, Tenant: u.Tenant, Device: u.Device, Reason: reason,
			Detail: detail, Received: u.ReceivedTime})
		rejs[len(rejs)-1].SetRaw(record.AppendJSON(nil, u))
	}
	clear(recs[len(kept):]) // do not retain the rejected records' strings
	return kept, rejs
}

func damageRejection(path string, b []byte, de *cdr.DecodeError, before int, received int64) record.Rejection {
	off := min(max(de.Offset, 0), int64(len(b)))
	r := record.Rejection{Source: source, Reason: record.ReasonCDRDamaged,
		Detail: fmt.Sprintf("file %s: %v; the %d records before it were produced; raw holds %d bytes from offset %d",
			path, de, before, min(int64(len(b))-off, record.MaxRejectRaw), off),
		Received: received}
	r.SetRaw(b[off:]) // the first 64 KiB from the offset; raw_len and raw_sha256 of all of it
	return r
}

// sendAll hands recs and rejs to the sink in chunks, at most window calls awaiting
// acknowledgement, and waits for all of them. On the first error it stops sending and
// returns it; callbacks still outstanding write into the buffered channel and are lost.
func (p *Processor) sendAll(ctx context.Context, recs []record.Usage, rejs []record.Rejection) error {
	calls := (len(recs)+p.chunk-1)/p.chunk + (len(rejs)+p.chunk-1)/p.chunk
	if calls == 0 {
		return nil
	}
	acks := make(chan error, calls)
	inflight := 0
	wait := func() error {
		select {
		case err := <-acks:
			inflight--
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for acknowledgement: %w", ctx.Err())
		}
	}
	onAck := p.OnAck
	for i := 0; i < len(recs); i += p.chunk {
		if inflight == window {
			if err := wait(); err != nil {
				return err
			}
		}
		chunk := recs[i:min(i+p.chunk, len(recs))]
		n := len(chunk)
		inflight++
		p.sink.Enqueue(chunk, func(err error) {
			if err == nil && onAck != nil {
				onAck(n)
			}
			acks <- err
		})
	}
	for i := 0; i < len(rejs); i += p.chunk {
		if inflight == window {
			if err := wait(); err != nil {
				return err
			}
		}
		inflight++
		p.sink.EnqueueRejects(rejs[i:min(i+p.chunk, len(rejs))], func(err error) { acks <- err })
	}
	for inflight > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}

// Move puts a sent file where it belongs: dest.Done, or its own quarantine folder
// dest.Failed/<name>/ holding the file and reason.json (see quarantine).
func (r *Result) Move(dest Dest) error {
	dir := dest.Done
	if r.Failed() {
		dir = dest.Failed
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cdrdir: %w", err)
	}
	if r.Failed() {
		if err := r.quarantine(dir); err != nil {
			return fmt.Errorf("cdrdir: %w", err)
		}
		return nil
	}
	to, err := moveInto(r.Path, dir)
	if to != "" {
		r.MovedTo = to
	}
	if err != nil {
		return fmt.Errorf("cdrdir: %w", err)
	}
	return nil
}
