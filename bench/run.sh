#!/usr/bin/env bash
# tenantdb benchmarks (issue #9): one command, every scenario, results in bench/results/.
#
#   bench/run.sh           # full run (~15-20 min on 2 cores)
#   bench/run.sh --quick   # smoke run with tiny N (< 2 min once built); results go to bench/results/quick/
#
# Extra arguments are passed to the driver, e.g. `--only provisioning,fleet` (scenarios:
# provisioning, fleet, steady, memory, ttr, admission). This is a benchmark, not a test: it is not part of
# scripts/test.sh or CI (a --quick smoke run may be).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

quick=0
for a in "$@"; do [ "$a" = "--quick" ] && quick=1; done
OUT=bench/results
[ "$quick" = 1 ] && OUT=bench/results/quick

log() { printf '[bench] %s\n' "$*" >&2; }

# --- prerequisites (same packages as scripts/test.sh: PostgreSQL 15 server + psql) ---------------
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! command -v psql >/dev/null; then
  log "installing PostgreSQL (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql postgresql-client >/dev/null
fi

# --- peers (issue 18): what a user would run instead, pinned, installed into bench/.peers ---------
# (git-ignored; built or downloaded once, then reused). dbmate: the npm package carries a static
# binary. sqlx-cli: built from crates.io (a few minutes on 2 cores, once).
DBMATE_VERSION=2.36.0
SQLX_CLI_VERSION=0.9.0
PEERS=$ROOT/bench/.peers
DBMATE=$PEERS/node_modules/@dbmate/linux-x64/bin/dbmate
SQLX=$PEERS/bin/sqlx
if [ ! -x "$DBMATE" ] || ! "$DBMATE" --version 2>/dev/null | grep -q "$DBMATE_VERSION"; then
  log "installing dbmate $DBMATE_VERSION (npm @dbmate/linux-x64) into bench/.peers"
  mkdir -p "$PEERS"
  npm install --prefix "$PEERS" --no-save --no-audit --no-fund --loglevel=error \
    "@dbmate/linux-x64@$DBMATE_VERSION" >&2
fi
if [ ! -x "$SQLX" ] || ! "$SQLX" --version 2>/dev/null | grep -q "$SQLX_CLI_VERSION"; then
  log "installing sqlx-cli $SQLX_CLI_VERSION (cargo install, postgres + rustls) into bench/.peers"
  # Its own temporary target dir: the shared target/ stays the operator's and the driver's.
  env -u CARGO_TARGET_DIR cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked \
    --no-default-features --features postgres,rustls --root "$PEERS"
fi
export BENCH_DBMATE="$DBMATE" BENCH_SQLX="$SQLX"

# --- build: the operator (release) and the driver (its own cargo workspace, shared target dir) ----
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
log "building release binaries"
cargo build --release -p tenantdb
cargo build --release --manifest-path bench/driver/Cargo.toml

# --- run -----------------------------------------------------------------------------------------
mkdir -p "$OUT"
"$CARGO_TARGET_DIR/release/tenantdb-bench" --out "$OUT" --work bench/work \
  --operator "$CARGO_TARGET_DIR/release/tenantdb" "$@"

# --- plot (matplotlib in bench/.venv; the run's numbers are already written if this fails) -------
PY=bench/.venv/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  log "setting up bench/.venv with matplotlib"
  python3 -m venv bench/.venv && "$PY" -m pip install -q --disable-pip-version-check 'matplotlib>=3.7,<4' \
    || log "could not install matplotlib: no plot"
fi
if "$PY" -c 'import matplotlib' 2>/dev/null; then
  "$PY" bench/plot.py "$OUT/results.json" "$OUT/benchmarks.png" && log "plot: $OUT/benchmarks.png"
fi
log "results: $OUT/results.json, $OUT/summary.md"
