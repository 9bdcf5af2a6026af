#!/usr/bin/env bash
# MongoDB wire-protocol stand-in for tests: PyPI `secantusdb` (GPL-2.0, run only as a separate
# test process, never linked). No real mongod can be installed on the CI machines; see
# tests/README.md (MongoDB) for what is verified against the stand-in and what only against a
# real mongod (TENANTDB_TEST_MONGO_URI).
#
#   scripts/mongo-standin.sh install   # venv in .venv-mongo with secantusdb==0.7.0b3 (idempotent)
#   scripts/mongo-standin.sh bin       # prints the path of secantusd-py (exit 1 if not installed)
#
# The integration tests (tests/mongo_*.rs) start and stop their own server; they find the binary
# through TENANTDB_SECANTUS_BIN or .venv-mongo/bin/secantusd-py.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="0.7.0b3" # only betas exist: pin it
VENV="${TENANTDB_MONGO_VENV:-.venv-mongo}"
BIN="$VENV/bin/secantusd-py"

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("secantusdb"))' 2>/dev/null || true
}

case "${1:-install}" in
  install)
    if [ -x "$BIN" ] && [ "$(installed_version)" = "$VERSION" ]; then
      echo "==> secantusdb $VERSION already installed: $BIN"
      exit 0
    fi
    PY="${PYTHON:-python3}"
    command -v "$PY" >/dev/null 2>&1 || { echo "python3 not found (apt-get install python3 python3-venv)" >&2; exit 1; }
    # Debian's python3 ships venv without ensurepip unless python3-venv is installed.
    if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"
        echo "==> apt-get install python3-venv"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
      else
        echo "$PY cannot create virtual environments (install python3-venv)" >&2; exit 1
      fi
    fi
    echo "==> python venv $VENV + secantusdb==$VERSION"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$VERSION"
    [ -x "$BIN" ] || { echo "secantusd-py missing after install" >&2; exit 1; }
    echo "==> MongoDB stand-in: $BIN"
    ;;
  bin)
    [ -x "$BIN" ] || exit 1
    echo "$(pwd)/$BIN"
    ;;
  *)
    echo "usage: $0 [install|bin]" >&2
    exit 2
    ;;
esac
