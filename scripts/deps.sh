#!/usr/bin/env bash
# Installs what fleetmeter's jobs and tests need when it is missing: Debian packages
# (ClickHouse, Mosquitto and its clients, libcoap's clients, kcat) and the Go modules.
# Idempotent: a machine that has everything only pays for a few `command -v` checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v clickhouse-server >/dev/null 2>&1 || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v coap-client-notls >/dev/null 2>&1 || need+=(libcoap3-bin)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
# api web page test: headless Chromium driven by playwright-core (npm, below)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)
# billing tests: a real RabbitMQ broker (invoice.finalized) and pdftotext/pdftoppm (invoice PDFs)
[ -x /usr/sbin/rabbitmq-server ] || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
command -v promtool >/dev/null 2>&1 || need+=(prometheus) # alert rules (promtool) and the dashboards' e2e test

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "deps: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  # The packages' own services are not wanted: fleetmeter starts its own on free ports.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH=/usr/local/go/bin:$PATH
  else
    echo "deps: Go 1.26 is required (https://go.dev/doc/install)" >&2
    exit 1
  fi
fi
go mod download

# api web page test: playwright-core only (no browser download: it drives /usr/bin/chromium),
# pinned, into e2e/web/node_modules (gitignored).
if [ ! -d e2e/web/node_modules/playwright-core ]; then
  (cd e2e/web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent >/dev/null)
fi
