// Package api serves tenants' usage analytics over HTTP (cmd/api): REST JSON or CSV over
// rated_usage with duplicates collapsed (clickhouse/analytics.go), the OpenAPI file
// (openapi.yaml) and the tenant web page (web/, embedded).
//
// # Mounting another handler (billing)
//
// Authentication is shared: an API key belongs to one tenant or is an operator key.
//
//	keys, _ := api.NewKeys(cfg.Keys)          // []api.KeyConfig{Name, Tenant, Operator, SHA256}
//	srv := api.New(conn, database, keys, limits, tariffs, reg, logger)
//	srv.Mount("/v1/billing/", billingHandler) // one line: the handler runs behind keys.Auth
//	srv.Mount("/v1/invoices", invoicesHandler)
//
// cmd/api builds the server in api.Run; a mount function passed to Run gets the server
// and the open ClickHouse store:
//
//	api.Run(ctx, cfg, logger, ready, func(s *api.Server, st *clickhouse.Store) error {
//		s.Mount("/v1/billing/", billingHandler); s.Mount("/v1/invoices", invoicesHandler); return nil
//	})
//
// Inside a mounted handler, api.TenantFrom(r.Context()) returns the caller's Principal
// {Name, Tenant, Operator}; ok is false only when the handler is served without Auth.
// For a tenant key, Principal.Tenant is the only tenant it may see; an operator key has
// Tenant "" and chooses one (api.ResolveTenant(r) applies the rule: operators must pass
// ?tenant=, tenant keys may not name another). keys.Auth(h) wraps any http.Handler:
// missing or unknown keys get 401 with a JSON error, and keys are never logged.
//
// # Exactness
//
// Every figure is summed over rated_usage after collapsing the copies of each record_id to
// its first rating, as billing reads it; the daily rollups (which count redeliveries) are
// not read. Money is an exact six-decimal string.
//
// # Bounds
//
// Ranges are limited (max_range_days, max_buckets, max_rows) and every query runs with
// ClickHouse max_execution_time, max_memory_usage and max_threads set, so no request can
// start a runaway query.
package api
