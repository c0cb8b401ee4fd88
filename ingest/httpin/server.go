// Package httpin is the HTTP collector for gateways and partners: POST /v1/usage with a
// per-tenant API key takes JSON Lines of canonical usage.v1 records, SenML (JSON, CBOR)
// or fleetmeter plain JSON for one device, or a CloudEvents batch, and answers 202 only
// after the sink (Kafka) acknowledged every accepted record. README.md is the client's
// contract.
package httpin

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// connectionClose is the Connection header of an early answer (never modified).
var connectionClose = []string{"close"}

// Path is where usage is posted.
const Path = "/v1/usage"

const src = record.SourceHTTP

// Server is the HTTP collector. New binds the listener, Run serves.
type Server struct {
	cfg     Config
	sink    ingest.Sink
	metrics *ingest.Metrics
	sm      ingest.SourceMetrics // metrics' children for source http, resolved once
	logger  *slog.Logger
	keys    []tenantKey
	lim     payload.Limits
	ln      net.Listener
	srv     *http.Server
	tls     bool
	sem     chan struct{} // one token per request being served
	batches sync.Pool     // *batch
	healthy atomic.Bool
	warned  atomic.Int64     // unix seconds of the last sink warning (logs are throttled)
	now     func() time.Time // received time of records
	clock   func() time.Time // the tenant rate limit's clock
	// adm admits (tenant, device) through the device registry, if any. watchFile: the
	// registry came from cfg.RegistryFile and Run reloads it.
	adm       registry.Admitter
	watchFile bool
}

type tenantKey struct {
	digest [sha256.Size]byte
	tenant string
	gate   *tenantGate // shared by the tenant's keys
}

// New validates cfg, reads the key files and the TLS pair, and binds cfg.Listen, so
// Addr is known (and a port conflict reported) before Run. metrics and logger may be nil.
// Call Run to serve, or Close to release the listener without serving.
func New(cfg Config, sink ingest.Sink, metrics *ingest.Metrics, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("http.keys: at least one API key is required")
	}
	if sink == nil {
		return nil, errors.New("httpin: nil sink")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = ingest.NewMetrics(nil)
	}
	keys, err := loadKeys(cfg.Keys)
	if err != nil {
		return nil, err
	}
	gates(keys)
	s := &Server{cfg: cfg, sink: sink, metrics: metrics, logger: logger, keys: keys,
		sem: make(chan struct{}, cfg.MaxConcurrent), now: time.Now, clock: time.Now, lim: cfg.limits(), sm: metrics.For(src)}
	s.adm.SetLive(cfg.Registry)
	if cfg.Registry == nil && cfg.RegistryFile != "" {
		live, err := registry.LoadLive(cfg.RegistryFile)
		s.adm.SetLive(live)
		if err != nil {
			return nil, fmt.Errorf("http.registry_file: %w", err)
		}
		s.watchFile = true
	}
	s.batches.New = func() any { return new(batch) }
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.handleUsage)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		// The response follows the body read and the sink's acknowledgement.
		WriteTimeout: cfg.ReadTimeout + cfg.AckTimeout + 5*time.Second,
		IdleTimeout:  cfg.IdleTimeout,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	if cfg.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("http.tls_cert, http.tls_key: %w", err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		s.tls = true
	}
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	return s, nil
}

func loadKeys(cfgKeys []APIKey) ([]tenantKey, error) {
	var errs []error
	keys := make([]tenantKey, 0, len(cfgKeys))
	first := make(map[[sha256.Size]byte]int)
	for i, k := range cfgKeys {
		key := k.Key
		if k.KeyFile != "" {
			b, err := os.ReadFile(k.KeyFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("http.keys[%d].key_file: %w", i, err))
				continue
			}
			key = strings.TrimSpace(string(b))
			if err := checkKey(key); err != nil {
				errs = append(errs, fmt.Errorf("http.keys[%d].key_file: %s: %w", i, k.KeyFile, err))
				continue
			}
		}
		d := sha256.Sum256([]byte(key))
		if j, dup := first[d]; dup {
			errs = append(errs, fmt.Errorf("http.keys[%d]: same key as http.keys[%d]", i, j))
			continue
		}
		first[d] = i
		keys = append(keys, tenantKey{digest: d, tenant: k.Tenant})
	}
	return keys, errors.Join(errs...)
}

// Addr is the bound address (host:port), also when the configured port was 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Registry is the device registry in force (nil: none).
func (s *Server) Registry() *registry.Registry { return s.adm.Live().Load() }

// Healthy reports whether the collector is serving.
func (s *Server) Healthy() bool { return s.healthy.Load() }

// Close releases the listener of a Server whose Run was never called.
func (s *Server) Close() error {
	_ = s.srv.Close()
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	if s.watchFile {
		watchCtx, stopWatch := context.WithCancel(ctx)
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			_ = s.adm.Live().Watch(watchCtx, s.cfg.RegistryFile, s.cfg.RegistryReload, func(r *registry.Registry) {
				s.logger.Info("http collector: device registry reloaded", "file", r.File(), "devices", r.Len(),
					"strict", r.Strict(), "stamp", r.Stamp())
			}, func(err error) {
				s.logger.Error("http collector: device registry", "err", err)
			})
		}()
		// Stopped when Run returns, after the requests in flight finished.
		defer func() { stopWatch(); <-watchDone }()
	}
	errc := make(chan error, 1)
	go func() {
		if s.tls {
			errc <- s.srv.ServeTLS(s.ln, "", "")
			return
		}
		errc <- s.srv.Serve(s.ln)
	}()
	s.healthy.Store(true)
	s.logger.Info("http collector listening", "addr", s.Addr(), "tls", s.tls)
	select {
	case err := <-errc:
		s.healthy.Store(false)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("httpin: serve: %w", err)
	case <-ctx.Done():
	}
	s.healthy.Store(false)
	// Shutdown order: close the listener (no new connections) and idle keep-alive
	// connections; requests in flight finish, each waiting for the sink's
	// acknowledgement (at most AckTimeout), which the sink's owner keeps serving until
	// the collectors have returned. Past ShutdownTimeout the remaining connections are
	// cut: those clients see no response and retry, which event_ids make safe.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.logger.Warn("http collector: shutdown timed out, closing connections", "err", err)
		_ = s.srv.Close()
	}
	<-errc
	return nil
}

// bodyKind is what a request's Content-Type selects.
type bodyKind uint8

const (
	kindUnknown bodyKind = iota
	kindJSONLines
	kindCloudEvents
	kindCloudEvent // one structured event
	kindDevice     // plain JSON or SenML for ?device=, through payload.Parser
)

func kindOf(contentType string) (bodyKind, payload.Kind) {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, "application/x-ndjson"), strings.EqualFold(mt, "application/jsonl"):
		return kindJSONLines, payload.KindAuto
	case strings.EqualFold(mt, "application/cloudevents-batch+json"):
		return kindCloudEvents, payload.KindAuto
	case strings.EqualFold(mt, "application/cloudevents+json"):
		return kindCloudEvent, payload.KindAuto
	}
	if k := payload.KindFromContentType(mt); k != payload.KindAuto {
		return kindDevice, k
	}
	return kindUnknown, payload.KindAuto
}

const supportedTypes = "application/x-ndjson, application/jsonl, application/cloudevents-batch+json, application/cloudevents+json, " +
	"application/json, application/senml+json, application/senml+cbor"

// handleUsage serves POST /v1/usage. Every answer but 202 and 400 leaves nothing on the
// sink; 400 is answered after the refused items went to topic rejected (and the valid
// ones to usage).
func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	s.sm.Received.Inc()
	// An answer given before the body is read closes the connection: otherwise net/http
	// reads up to 256 KiB of the unread body before sending it, so a client dribbling
	// its upload would not even hear it was refused.
	h := w.Header()
	if r.ContentLength != 0 {
		h["Connection"] = connectionClose
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	key := s.authenticate(r.Header.Get("Authorization"))
	if key == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fleetmeter"`)
		s.fail(w, http.StatusUnauthorized, "unauthorized", "missing or unknown API key (Authorization: Bearer <key>)")
		return
	}
	kind, pkind := kindOf(r.Header.Get("Content-Type"))
	if kind == kindUnknown {
		s.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be one of "+supportedTypes)
		return
	}
	gz := false
	switch enc := r.Header.Get("Content-Encoding"); {
	case enc == "" || strings.EqualFold(enc, "identity"):
	case strings.EqualFold(enc, "gzip"):
		gz = true
	default:
		s.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Encoding must be gzip or identity")
		return
	}
	if r.ContentLength > s.cfg.MaxBody {
		s.tooLarge(w, "Content-Length "+strconv.FormatInt(r.ContentLength, 10)+" exceeds http.max_body ("+strconv.FormatInt(s.cfg.MaxBody, 10)+" bytes)")
		return
	}
	// Admission: the tenant's share first, so a tenant at its limit never takes one of
	// the slots every tenant shares.
	tenant, gate := key.tenant, key.gate
	if !gate.enter(s.cfg.TenantMaxConcurrent) {
		s.tooMany(w, s.cfg.RetryAfter, "tenant "+strconv.Quote(tenant)+" has http.tenant_max_concurrent ("+
			strconv.Itoa(s.cfg.TenantMaxConcurrent)+") requests in flight")
		return
	}
	defer gate.leave()
	if wait := gate.take(s.clock(), s.cfg.TenantRate, s.cfg.TenantBurst); wait > 0 {
		s.tooMany(w, wait, "tenant "+strconv.Quote(tenant)+" exceeds http.tenant_rate ("+
			strconv.FormatFloat(s.cfg.TenantRate, 'g', -1, 64)+" requests/s, burst "+strconv.Itoa(s.cfg.TenantBurst)+")")
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.unavailable(w, "too many requests in flight")
		return
	}
	delete(h, "Connection") // admitted: the body is read, the connection may stay

	b := s.batches.Get().(*batch)
	b.reset(tenant, received.UnixMilli(), s.lim, s.cfg.MaxLines, s.adm.Current())
	reuse := true
	defer func() {
		if reuse {
			b.trim()
			s.batches.Put(b)
		}
	}()
	body, err := s.readBody(w, r, b, gz)
	var gzErr *gzipError
	switch {
	case err == nil:
	case errors.Is(err, errTooLarge):
		s.tooLarge(w, err.Error())
		return
	case errors.As(err, &gzErr):
		b.refuse(wholeBody, "", record.ReasonBadEncoding, err.Error(), b.raw)
	default: // the client went away or was too slow; there is nobody to tell
		s.logger.Debug("http collector: reading body", "err", err)
		s.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}

	if b.nerr == 0 {
		switch kind {
		case kindJSONLines:
			if tooManyLines(body, s.cfg.MaxLines) {
				s.tooLarge(w, "more lines than http.max_lines")
				return
			}
			b.jsonLines(body)
		case kindCloudEvents:
			if !b.cloudEvents(body) {
				s.tooLarge(w, "more events than http.max_lines")
				return
			}
		case kindCloudEvent:
			b.cloudEvent(0, bytes.TrimSpace(body))
		case kindDevice:
			b.device(pkind, r.URL.Query().Get("device"), body)
			if b.nerr == 1 && b.errs[0].Reason == record.ReasonTooManyRecords {
				s.tooLarge(w, b.errs[0].Message)
				return
			}
		}
	}

	settled, err := s.produce(r.Context(), b)
	// Until every done callback ran, the sink may still read b's slices.
	reuse = settled
	if err != nil {
		if r.Context().Err() == nil {
			s.warnSink(err)
			s.unavailable(w, "not acknowledged by the sink: "+err.Error())
		}
		return
	}
	if len(b.recs)+len(b.rejs) > 0 {
		s.sm.AckLatency.Observe(time.Since(received).Seconds())
	}
	if n := len(b.recs); n > 0 {
		s.sm.Accepted.Add(float64(n))
	}
	// One counter look-up per run of a reason, not per refused line: a body of
	// thousands of bad lines mostly repeats one.
	for i, n := 0, 0; i < len(b.rejs); i += n {
		reason := b.rejs[i].Reason
		for n = 1; i+n < len(b.rejs) && b.rejs[i+n].Reason == reason; n++ {
		}
		s.metrics.Rejected.WithLabelValues(src, reason).Add(float64(n))
	}
	if b.nerr > 0 {
		writeErrors(w, len(b.recs), b.nerr, b.errs)
		return
	}
	writeAccepted(w, len(b.recs))
}

// authenticate maps a bearer key to its configured entry (nil: none). Keys are compared
// as SHA-256 digests in constant time, every key each time, so neither timing nor length
// tells a guess apart.
func (s *Server) authenticate(h string) *tenantKey {
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	key = strings.TrimSpace(key)
	if key == "" {
		return nil
	}
	d := sha256.Sum256([]byte(key))
	match := -1
	for i := range s.keys {
		if subtle.ConstantTimeCompare(d[:], s.keys[i].digest[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return nil
	}
	return &s.keys[match]
}

var errTooLarge = errors.New("body exceeds http.max_body")

type gzipError struct{ err error }

func (e *gzipError) Error() string { return "gzip: " + e.err.Error() }
func (e *gzipError) Unwrap() error { return e.err }

// readBody reads the body into b, decompressing gzip, bounded by MaxBody before and
// after decompression (errTooLarge). A body that does not decompress is a *gzipError;
// b.raw keeps the compressed bytes for the rejection.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, b *batch, gz bool) ([]byte, error) {
	limit := s.cfg.MaxBody
	var err error
	b.raw, err = readAll(b.raw[:0], http.MaxBytesReader(w, r.Body, limit), min(r.ContentLength, presize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	if !gz {
		return b.raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.raw))
	if err == nil {
		b.body, err = readAll(b.body[:0], io.LimitReader(zr, limit+1), presize)
	}
	switch {
	case err != nil:
		return nil, &gzipError{err}
	case int64(len(b.body)) > limit:
		return nil, fmt.Errorf("decompressed %w", errTooLarge)
	}
	return b.body, nil
}

// presize bounds the buffer a body read starts with. A declared Content-Length is only
// a hint: a client could declare http.max_body and send a byte, so the buffer grows with
// what arrives (doubling: at most twice what was received) rather than with what is
// announced.
const presize = 64 << 10

// readAll reads r to its end, appending to dst, which it first grows to size+1 bytes.
func readAll(dst []byte, r io.Reader, size int64) ([]byte, error) {
	if size > 0 && int64(cap(dst)) < size+1 {
		dst = make([]byte, 0, size+1) // +1: the read that sees EOF needs room
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

var errAckTimeout = errors.New("no acknowledgement within http.ack_timeout")

// produce hands b's records and rejections to the sink and waits for both
// acknowledgements. settled reports whether every done callback has run: only then may
// b be reused, its slices and its acknowledgement channel, callback and timer with it (a
// batch not settled is left to the late callbacks and the GC).
func (s *Server) produce(ctx context.Context, b *batch) (settled bool, err error) {
	pending := 0
	if len(b.recs) > 0 {
		pending++
	}
	if len(b.rejs) > 0 {
		pending++
	}
	if pending == 0 {
		return true, nil
	}
	s.sm.InFlight.Inc()
	if b.acks == nil { // the batch's first hand-off: what every later one reuses
		b.acks = make(chan error, 2)
		inFlight := s.sm.InFlight
		b.done = func(err error) {
			if b.left.Add(-1) == 0 {
				inFlight.Dec()
			}
			b.acks <- err
		}
		b.timer = time.NewTimer(s.cfg.AckTimeout)
	} else {
		b.timer.Reset(s.cfg.AckTimeout)
	}
	defer b.timer.Stop() // no stale tick after Stop (Go 1.23 timers), so the next Reset starts clean
	b.left.Store(int32(pending))
	// Rejections first: a request whose usage is acknowledged has its refused lines
	// in flight too, and neither is reported before both are.
	if len(b.rejs) > 0 {
		s.sink.EnqueueRejects(b.rejs, b.done)
	}
	if len(b.recs) > 0 {
		s.sink.Enqueue(b.recs, b.done)
	}
	for pending > 0 {
		select {
		case err := <-b.acks:
			pending--
			if err != nil {
				return pending == 0, err
			}
		case <-b.timer.C:
			return false, errAckTimeout
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return true, nil
}

// warnSink logs a sink failure at most every 10 s: under an outage every request fails.
func (s *Server) warnSink(err error) {
	now := time.Now().Unix()
	last := s.warned.Load()
	if now-last >= 10 && s.warned.CompareAndSwap(last, now) {
		s.logger.Warn("http collector: sink did not acknowledge, answering 503", "err", err)
	}
}

func (s *Server) fail(w http.ResponseWriter, status int, code, msg string) {
	switch status {
	case http.StatusUnauthorized, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		s.metrics.Rejected.WithLabelValues(src, code).Inc()
	}
	writeError(w, status, code, msg)
}

func (s *Server) tooLarge(w http.ResponseWriter, msg string) {
	s.fail(w, http.StatusRequestEntityTooLarge, "too_large", msg)
}

func (s *Server) unavailable(w http.ResponseWriter, msg string) {
	setRetryAfter(w, s.cfg.RetryAfter)
	s.fail(w, http.StatusServiceUnavailable, "unavailable", msg)
}

// tooMany answers a request over its tenant's share: 429, retry after wait.
func (s *Server) tooMany(w http.ResponseWriter, wait time.Duration, msg string) {
	setRetryAfter(w, wait)
	s.fail(w, http.StatusTooManyRequests, "too_many_requests", msg)
}

// setRetryAfter sets Retry-After to d in whole seconds, rounded up, at least 1.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := max(int64((d+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}
