#!/usr/bin/env bash
# Installs what tenantdb's demo and tests need on a fresh Debian 12 machine (idempotent):
# PostgreSQL 15 server binaries. Rust (cargo, rustfmt, clippy) is assumed present.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need_apt=()
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then need_apt+=(postgresql); fi
if ! command -v psql >/dev/null 2>&1; then need_apt+=(postgresql-client); fi
if ! command -v setsid >/dev/null 2>&1; then need_apt+=(util-linux); fi
if ! command -v openssl >/dev/null 2>&1; then need_apt+=(openssl); fi # TLS test clusters
# Chart checks: shellcheck for the ops scripts, Lua for the Argo CD health checks, venv + npm for tools.
if ! command -v shellcheck >/dev/null 2>&1; then need_apt+=(shellcheck); fi
if ! command -v lua5.1 >/dev/null 2>&1; then need_apt+=(lua5.1); fi
if ! python3 -m venv --help >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if ! command -v npm >/dev/null 2>&1; then need_apt+=(npm); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Monitoring tests (tests/monitoring.rs): promtool and a real Prometheus, from the Debian package
# without its recommends (node exporter etc.) so it stays small. Its system service (port 9090), if
# started, is not used: the tests run their own Prometheus on a free loopback port.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "==> apt-get install --no-install-recommends prometheus"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The Debian package starts a system cluster; tenantdb never uses it (tests start throwaway
# clusters on random ports), so leave it alone.
echo "==> PostgreSQL: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
