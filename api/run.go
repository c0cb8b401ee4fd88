package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/clickhouse"
	"fleetmeter/internal/obs"
	"fleetmeter/rules"
)

// Run opens ClickHouse and serves the API, the page, /metrics, /healthz and /readyz on
// cfg.Listen until ctx ends; ready, when given, receives the bound address once it
// accepts connections (fleetmeter standalone prints it as "api"). Each mount function
// adds handlers behind the same keys once the store is open (billing, see doc.go).
// Shutdown: stop accepting, let requests in flight finish (2 s), then close ClickHouse.
func Run(ctx context.Context, cfg Config, logger *slog.Logger, ready chan<- string,
	mounts ...func(*Server, *clickhouse.Store) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	keys, err := NewKeys(cfg.Keys)
	if err != nil {
		return err
	}
	var set *rules.Set
	if cfg.Rules != "" {
		if set, err = rules.Load(cfg.Rules); err != nil {
			return fmt.Errorf("tariffs: %w", err)
		}
	}
	store, err := clickhouse.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := obs.NewRegistry()
	srv := New(store.Conn(), cfg.ClickHouse.Database, keys, cfg.Limit, func() *rules.Set { return set }, reg, logger)
	if cfg.Billing.CursorKey != "" {
		if err := MountBilling(srv, store, cfg.Billing, logger); err != nil {
			return err
		}
	}
	srv.SetFinal(cfg.ClickHouse.Cluster == "")
	for _, m := range mounts {
		if err := m(srv, store); err != nil {
			return err
		}
	}
	srv.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }))
	srv.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := store.Ping(pctx); err != nil {
			http.Error(w, "not ready\nclickhouse: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	}))
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: cfg.Limit.QueryTimeout + 30*time.Second}
	logger.Info("running", "listen", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// MountBilling serves billing (docs/billing.md) on srv behind the same keys:
// /v1/billing/records, /v1/invoices and /v1/invoices/{id}.
func MountBilling(srv *Server, store *clickhouse.Store, cfg billing.Config, logger *slog.Logger) error {
	bh, err := chstore.NewHandler(store, cfg, func(r *http.Request) (billing.Caller, bool) {
		p, ok := TenantFrom(r.Context())
		return billing.Caller{Tenant: p.Tenant, Operator: p.Operator}, ok
	}, logger)
	if err != nil {
		return err
	}
	srv.Mount("/v1/billing/", bh)
	srv.Mount("/v1/invoices", bh)
	srv.Mount("/v1/invoices/", bh)
	return nil
}
