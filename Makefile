# fleetmeter: `make demo` runs the self-checking quickstart, `make test` runs all tests.
# Every target installs what it needs first (scripts/deps.sh).
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin
GO ?= go
DATA ?= $(shell mktemp -d /tmp/fleetmeter.XXXXXX)
DEVICES ?= 60
DURATION ?= 30s

.PHONY: deps build run demo test unit deploy-check e2e bench bench-report fmt vet

deps:
	@scripts/deps.sh

build: deps
	$(GO) build -o bin/ ./cmd/...

# The standalone pipeline on embedded defaults, fed by a simulated fleet, until Ctrl-C.
run: deps
	$(GO) run ./cmd/fleetmeter standalone --data $(DATA) --simulate $(DEVICES)

# The same for DURATION, then drain and compare ClickHouse's totals with what was sent.
demo: deps
	$(GO) run ./cmd/fleetmeter standalone --data $(DATA) --simulate $(DEVICES) --for $(DURATION)

# All tests: vet, unit tests with the race detector, then the end-to-end tests that start
# Mosquitto, ClickHouse and the binaries on free loopback ports.
test: deps vet unit deploy-check e2e

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -timeout 20m $$($(GO) list ./... | grep -v /e2e)

e2e:
	@log=$$(mktemp /tmp/fleetmeter-e2e.XXXXXX.log); \
	  $(GO) test -timeout 30m -v -count=1 ./e2e/ 2>&1 | tee $$log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)'; \
	  s=$${PIPESTATUS[0]}; \
	  if [ $$s -ne 0 ]; then echo "--- the last 400 lines of the e2e output ($$log):"; tail -n 400 $$log; fi; exit $$s

# Deployment artifacts (Helm chart, compose stack, alert rules), checked without Docker or a
# cluster by their own Go module (deploy/check), so Helm's dependencies stay out of the product.
deploy-check:
	@if [ -f deploy/check/go.mod ]; then cd deploy/check && $(GO) test -count=1 -timeout 10m ./...; fi

# The benchmark report: every stage beside its raw ceiling in one run, BENCHMARKS.md and plots.
# BENCH_SHORT=1 is the few-minute version `make test` runs so the harness never rots.
bench-report: deps
	@scripts/bench-report.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./record/ ./rating/ ./cdr/ ./ingest/payload/ ./clickhouse/
