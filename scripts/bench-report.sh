#!/usr/bin/env bash
# The benchmark report: every stage beside its raw ceiling, the whole pipeline fed by a
# mixed fleet, latency, scale; writes BENCHMARKS.md and docs/bench/*.svg (up to 20 minutes
# on 2 cores). BENCH_SHORT=1: the few-minute version that only checks the harness works.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
bin=$(mktemp -d /tmp/fleetmeter-benchreport.XXXXXX)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/benchreport" ./loadtest/cmd/benchreport
out=BENCHMARKS.md plots=docs/bench
# The short version never overwrites the committed report.
if [ "${BENCH_SHORT:-}" = 1 ]; then out=/tmp/fleetmeter-bench-short/BENCHMARKS.md plots=/tmp/fleetmeter-bench-short/bench; fi
"$bin/benchreport" --out "$out" --plots "$plots" "$@"
echo "bench-report: wrote $out and $plots/"
