#!/usr/bin/env bash
# tenantdb benchmarks (issue #9): one command, every scenario, results in bench/results/.
#
#   bench/run.sh           # full run (~15-20 min on 2 cores)
#   bench/run.sh --quick   # smoke run with tiny N (< 2 min once built); results go to bench/results/quick/
#   bench/run.sh --check   # the regression guard (CI, scripts/test.sh): a quick run without peers,
#                          # debug build (the test build's), into a temporary directory, compared
#                          # with the committed bench/results/check/results.json; fails only on a
#                          # gross regression (> 3x), printing both figures
#   bench/run.sh --check --update   # re-records bench/results/check/ (commit it with the change
#                                   # that moved the figures, and say why)
#
# Extra arguments are passed to the driver, e.g. `--only provisioning,fleet` (scenarios:
# provisioning, provisioning-database, fleet, steady, memory, scale, ttr, admission, placement, moves).
# This is a benchmark, not a test: only its --check mode runs in scripts/test.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

quick=0
check=0
update=0
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1; args+=("$a") ;;
    # The figures the guard compares (time to Ready and admission are not: seconds on a shared
    # machine, not ratios).
    --check) check=1; quick=1; args+=(--quick --only provisioning,fleet,steady,memory) ;;
    --update) update=1 ;;
    *) args+=("$a") ;;
  esac
done
OUT=bench/results
[ "$quick" = 1 ] && OUT=bench/results/quick
PROFILE=release
BASELINE=bench/results/check/results.json
if [ "$check" = 1 ]; then
  # Same build as the tests (debug): the guard costs CI no second build of the dependencies.
  PROFILE=debug
  if [ "$update" = 1 ]; then
    OUT=bench/results/check
  else
    OUT=$(mktemp -d /tmp/tenantdb-bench-check.XXXXXX)
    trap 'rm -rf "$OUT"' EXIT
  fi
fi

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
if [ "$check" = 1 ]; then
  # The guard compares tenantdb with its own committed figures: no peers (nothing to install).
  DBMATE=/nonexistent/dbmate SQLX=/nonexistent/sqlx
elif [ ! -x "$DBMATE" ] || ! "$DBMATE" --version 2>/dev/null | grep -q "$DBMATE_VERSION"; then
  log "installing dbmate $DBMATE_VERSION (npm @dbmate/linux-x64) into bench/.peers"
  mkdir -p "$PEERS"
  npm install --prefix "$PEERS" --no-save --no-audit --no-fund --loglevel=error \
    "@dbmate/linux-x64@$DBMATE_VERSION" >&2
fi
if [ "$check" = 0 ] && { [ ! -x "$SQLX" ] || ! "$SQLX" --version 2>/dev/null | grep -q "$SQLX_CLI_VERSION"; }; then
  log "installing sqlx-cli $SQLX_CLI_VERSION (cargo install, postgres + rustls) into bench/.peers"
  # Its own temporary target dir: the shared target/ stays the operator's and the driver's.
  env -u CARGO_TARGET_DIR cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked \
    --no-default-features --features postgres,rustls --root "$PEERS"
fi
export BENCH_DBMATE="$DBMATE" BENCH_SQLX="$SQLX"

# --- build: the operator and the driver (a workspace member), in one build ---------------------
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
log "building $PROFILE binaries"
if [ "$PROFILE" = release ]; then
  cargo build --locked --release -p tenantdb -p tenantdb-bench
else
  # The guard (CI, after the tests): every target of the workspace, so that the dependencies have
  # the test build's features (dev-dependencies such as tokio's test-util included) and nothing is
  # compiled again; only the binaries the tests did not build are linked.
  cargo build --locked --workspace --all-targets
fi
BIN="$CARGO_TARGET_DIR/$PROFILE"

# --- run -----------------------------------------------------------------------------------------
mkdir -p "$OUT"
"$BIN/tenantdb-bench" --out "$OUT" --work bench/work --operator "$BIN/tenantdb" "${args[@]}"

if [ "$check" = 1 ]; then
  if [ "$update" = 1 ]; then
    log "recorded the guard's baseline: $OUT/results.json"
  else
    "$BIN/tenantdb-bench" --compare "$BASELINE" "$OUT/results.json"
  fi
  exit $?
fi

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
