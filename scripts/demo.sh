#!/usr/bin/env bash
# The main job: a local, self-contained demo with no cluster. Installs what is missing, builds the
# demo (crate demo/: the operator library, the API server emulator and the test kit's throwaway
# databases; the shipped `tenantdb` binary contains none of the latter) and runs `tenantdb-demo`
# (throwaway PostgreSQL + the SecantusDB MongoDB wire-protocol stand-in + in-memory API server
# emulator + operator in-process). Without the stand-in (e.g. no network to install it) the demo
# runs without MongoDB.
# Extra arguments go to `tenantdb-demo` (e.g. --exit-when-ready 120).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! bash scripts/mongo-standin.sh install; then
  echo "warning: could not install the MongoDB stand-in (scripts/mongo-standin.sh install); the demo runs without MongoDB" >&2
fi
cargo build --locked --quiet -p tenantdb-demo
exec ./target/debug/tenantdb-demo "$@"
