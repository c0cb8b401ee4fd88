package api

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/rules"
)

//go:embed web openapi.yaml
var assets embed.FS

// Querier runs a read query (clickhouse-go's driver.Conn).
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Server is the API's HTTP handler.
type Server struct {
	db     Querier
	dbName string
	keys   *Keys
	limit  Limits
	tariff func() *rules.Set // may return nil: no fee tiers shown
	final  bool              // queries collapse copies with FINAL (see SetFinal)
	logger *slog.Logger
	mux    *http.ServeMux

	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// New builds the server. tariffs may be nil.
func New(db Querier, database string, keys *Keys, limit Limits, tariffs func() *rules.Set,
	reg prometheus.Registerer, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if tariffs == nil {
		tariffs = func() *rules.Set { return nil }
	}
	s := &Server{db: db, dbName: database, keys: keys, limit: limit, tariff: tariffs, logger: logger,
		mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_api_requests_total",
			Help: "API requests by route and status code."}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fleetmeter_api_query_seconds",
			Help: "ClickHouse time per API query, by route.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(s.requests, s.seconds)
	}
	s.route("GET /v1/usage", s.usage)
	s.route("GET /v1/devices", s.devices)
	s.route("GET /v1/devices/top", s.topDevices)
	s.route("GET /v1/devices/active", s.activeDevices)
	s.route("GET /v1/devices/{device}/timeline", s.timeline)
	s.route("GET /v1/periods", s.periods)
	s.route("GET /v1/whoami", s.whoami)
	web, _ := fs.Sub(assets, "web")
	s.mux.Handle("GET /{$}", http.FileServerFS(web))
	s.mux.Handle("GET /web/", http.StripPrefix("/web/", http.FileServerFS(web)))
	s.mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, assets, "openapi.yaml")
	})
	return s
}

// SetFinal makes the usage, devices, top, active and periods queries collapse duplicate
// copies with FINAL rather than GROUP BY record_id: same figures, several times faster,
// exact on a single node (clickhouse.UsageSpec.Final). Run turns it on unless
// clickhouse.cluster is set. The timeline (one device) always groups.
func (s *Server) SetFinal(on bool) { s.final = on }

// Mount serves h under pattern (e.g. "/v1/billing/") behind the same key check: inside
// h, TenantFrom(r.Context()) is the caller.
func (s *Server) Mount(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.keys.Auth(h))
}

// Handle serves an unauthenticated handler (health, metrics).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
	s.mux.ServeHTTP(w, r)
}

// statusWriter remembers the status for the request counter.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

type handler func(w http.ResponseWriter, r *http.Request, tenant string) error

// route registers an authenticated, tenant-scoped endpoint. Errors: *httpError become
// their status and message; anything else (ClickHouse) is logged and answered 500 with a
// message that names no tenant or value.
func (s *Server) route(pattern string, h handler) {
	name := pattern[len("GET "):]
	s.mux.Handle(pattern, s.keys.Auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: 200}
		defer func() { s.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc() }()
		tenant, err := ResolveTenant(r)
		if err != nil {
			writeError(sw, http.StatusBadRequest, err.Error())
			return
		}
		err = h(sw, r, tenant)
		if err == nil {
			return
		}
		var he *httpError
		if errors.As(err, &he) {
			writeErrorValid(sw, he.code, he.msg, he.valid)
			return
		}
		p, _ := TenantFrom(r.Context())
		s.logger.Error("api query failed", "route", name, "key", p.Name, "err", err)
		if errors.Is(err, context.DeadlineExceeded) || isLimit(err) {
			writeError(sw, http.StatusServiceUnavailable, "query exceeded its time or memory limit; narrow the range")
			return
		}
		writeError(sw, http.StatusInternalServerError, "query failed")
	})))
}

// query runs q with the per-query limits and records its time under route.
func (s *Server) query(ctx context.Context, route, q string, args []any, scan func(driver.Rows) error) error {
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{
		"max_execution_time": int(s.limit.QueryTimeout / time.Second),
		"max_memory_usage":   int(s.limit.QueryMemory),
		"max_threads":        s.limit.QueryThreads,
	}))
	// A client-side backstop, without a deadline on ctx: clickhouse-go turns a deadline
	// into its own max_execution_time (deadline + 5 s), replacing the limit above.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := time.AfterFunc(s.limit.QueryTimeout+5*time.Second, cancel)
	defer stop.Stop()
	start := time.Now()
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	err = rows.Err()
	s.seconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
	return err
}

// isLimit reports ClickHouse's TIMEOUT_EXCEEDED (159) and MEMORY_LIMIT_EXCEEDED (241).
func isLimit(err error) bool {
	var e *ch.Exception
	return errors.As(err, &e) && (e.Code == 159 || e.Code == 241)
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, tenant string) error {
	p, _ := TenantFrom(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"tenant": tenant, "operator": p.Operator, "key": p.Name})
	return nil
}
