#!/usr/bin/env bash
# The main job: a local, self-contained demo with no cluster. Installs what is missing, builds the
# operator and runs `tenantdb dev` (throwaway PostgreSQL + in-memory API server emulator + operator).
# Extra arguments go to `tenantdb dev` (e.g. --exit-when-ready 120).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --quiet -p tenantdb
exec ./target/debug/tenantdb dev "$@"
