// Package obs serves what every long-running binary exposes: /metrics (Prometheus),
// /healthz (the process is alive) and /readyz (its dependencies answer).
package obs

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"fleetmeter/internal/config"
)

// Check is one readiness condition; nil means ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// NewRegistry returns a registry with the Go and process collectors and
// fleetmeter_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
	return reg
}

// buildInfo is the constant 1 labelled with what the binary was built from, so a
// dashboard can show which version runs where and a query can join on it.
func buildInfo() prometheus.Collector {
	b, _ := config.Build()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetmeter_build_info",
		Help:        "Always 1; the labels say what the binary was built from.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion}})
	g.Set(1)
	return g
}

// NewLogger returns the JSON logger every binary uses.
func NewLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Server is the observability HTTP server.
type Server struct {
	ln     net.Listener
	mux    *http.ServeMux
	srv    *http.Server
	checks []Check
}

// Listen binds addr ("" disables the server: Run then just waits). Each check is also
// reported at every scrape as fleetmeter_ready{check}, for alerting.
func Listen(addr string, reg *prometheus.Registry, checks ...Check) (*Server, error) {
	s := &Server{checks: checks}
	if addr == "" {
		return s, nil
	}
	if err := reg.Register(readiness(checks)); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", s.ready)
	s.ln, s.mux = ln, mux
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Pprof serves the runtime profiles (net/http/pprof) under /debug/pprof/ beside
// /metrics, for whoever can reach the listen address: a CPU profile costs a few percent
// while it runs and nothing otherwise. Off unless a binary's pprof key turns it on; call
// it before Run.
func (s *Server) Pprof() {
	if s.mux == nil {
		return
	}
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Addr is the bound address, or "" when disabled.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// readiness runs the checks at scrape time: 1 where a check passes, 0 where it fails.
type readiness []Check

var readyDesc = prometheus.NewDesc("fleetmeter_ready", "1 while the component's readiness check (as /readyz) passes, else 0.",
	[]string{"check"}, nil)

func (rs readiness) Describe(ch chan<- *prometheus.Desc) { ch <- readyDesc }

func (rs readiness) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, c := range rs {
		v := 1.0
		if c.Fn(ctx) != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, v, c.Name)
	}
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, c := range s.checks {
		if err := c.Fn(ctx); err != nil {
			errs = append(errs, errors.New(c.Name+": "+err.Error()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, "not ready\n"+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.srv == nil {
		<-ctx.Done()
		return nil
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Registry is the metrics registry every stage registers with.
type Registry = prometheus.Registry

// ParseLogger returns the JSON logger at the named level (debug, info, warn, error).
func ParseLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, errors.New("--log-level: " + err.Error())
	}
	return NewLogger(l), nil
}
