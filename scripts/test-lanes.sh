#!/usr/bin/env bash
# Runs every test target of the workspace, a few at a time (TENANTDB_TEST_LANES, default 2), longest
# first, each as its own `cargo test` invocation; then prints each target's whole output in the
# order they started, a table of durations, and fails if any target failed.
#
# Why: `cargo test --workspace` runs its ~60 test binaries one after another, and most of their time
# is spent waiting on PostgreSQL, the MongoDB stand-in, the emulator and the operator's reconciles,
# not on the CPU (three of the longest run side by side on a 2-core machine took 70 s, one after
# another 163 s). Tests already run in parallel inside a binary, on their own throwaway servers on
# free ports, so binaries side by side need nothing new.
#
# Every test target `cargo metadata` lists runs: a new file under tests/ is picked up without an
# edit here (the weights below only order the start; an unknown target weighs 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
lanes="${TENANTDB_TEST_LANES:-2}"
logs="$(mktemp -d)"
# A cancelled run (Ctrl-C, a CI timeout) takes its test jobs with it.
trap 'jobs -p | xargs -r kill 2>/dev/null || true; rm -rf "$logs"' EXIT
trap 'exit 130' INT TERM

# Seconds each target took in a clean-checkout CI run (one after another, 2 cores): the longest
# start first, so the last lane to finish is not the one that drew e2e_drain at the end.
declare -A weight=(
  [e2e_drain]=92 [reliability_moves]=88 [mongo_provision]=63 [reliability_crash]=52
  [e2e_ownership]=52 [e2e_flags]=48 [e2e_moves_outage]=45 [reliability_moves_mongo]=42
  [reliability_outage]=41 [e2e_statistics]=39 [reliability_mongo]=37 [e2e_rollouts]=33
  [e2e_operator]=33 [e2e_servers_mongo]=32 [lagging-cache]=34 [reliability_fencing]=26
  [e2e_servers]=25 [e2e_warm_pool]=24 [reliability_security]=22 [e2e_runtime]=22
  [e2e_quoting]=21 [e2e_moves]=20 [e2e_moves_interplay]=19 [e2e_moves_shared]=18
  [hostile_migrations]=18 [e2e_migration]=15
)

# One job per line: label|environment (space-separated NAME=VALUE, or -)|cargo test arguments.
# Every job selects `--workspace` so that dependencies keep the features of the one build above
# (`-p <package>` alone unifies features differently and rebuilds them).
jobs_file="$logs/jobs"
cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print("unit tests|-|--workspace --lib --bins")
print("doc tests|-|--workspace --doc")
for p in meta["packages"]:
    for t in p["targets"]:
        if "test" in t["kind"]:
            target = t["name"]
            print(f"{target}|-|--workspace --test {target}")
' > "$jobs_file.unsorted"
# The Tenant lifecycle end to end once more against an emulator that delays every watch event by
# 300 ms (a lagging informer cache; tests/README.md, "A lagging cache").
echo "lagging-cache|TENANTDB_TEST_WATCH_LATENCY_MS=300|--workspace --test e2e_lifecycle --test e2e_runtime" \
  >> "$jobs_file.unsorted"

# Jobs that watch a short window of time (a session that must be seen idle for at most 5 s while
# another tenant migrates; a Lease handed to a standby within its retry period) run alone after the
# others, on a machine not loaded by other test binaries: side by side they missed their window.
solo=" e2e_rollouts e2e_runtime lagging-cache "
while IFS='|' read -r label env args; do
  if [[ "$solo" == *" $label "* ]]; then order=0; else order=1; fi
  printf '%s|%s|%s|%s|%s\n' "$order" "${weight[$label]:-10}" "$label" "$env" "$args"
done < "$jobs_file.unsorted" | sort -t'|' -k1,1nr -k2,2nr -k3,3 > "$jobs_file"
total=$(wc -l < "$jobs_file")
solo_count=$(grep -c '^0|' "$jobs_file" || true)

run_job() {
  local n="$1" label="$2" env="$3" args="$4" start rc=0
  start=$(date +%s)
  # shellcheck disable=SC2086 # the arguments and environment are word lists on purpose
  if [ "$env" = "-" ]; then
    cargo test --locked --no-fail-fast $args > "$logs/$n.log" 2>&1 || rc=$?
  else
    env $env cargo test --locked --no-fail-fast $args > "$logs/$n.log" 2>&1 || rc=$?
  fi
  local took=$(( $(date +%s) - start ))
  printf '%s|%s|%s\n' "$label" "$rc" "$took" > "$logs/$n.done"
  if [ "$rc" = 0 ]; then
    echo "    ok      ${took}s  $label"
  else
    echo "    FAILED  ${took}s  $label (exit $rc)"
  fi
}

# One build of every test target first: its output once, and the jobs only run.
cargo test --workspace --locked --no-run
echo "running $total test jobs, $lanes at a time (then ${solo_count} alone)"
start_all=$(date +%s)
n=0
while IFS='|' read -r shared _ label env args; do
  n=$(( n + 1 ))
  # A solo job waits for every other job to end, and the next one for it.
  limit="$lanes"; [ "$shared" = 1 ] || limit=1
  while [ "$(jobs -rp | wc -l)" -ge "$limit" ]; do wait -n || true; done
  run_job "$n" "$label" "$env" "$args" &
done < "$jobs_file"
wait

# Each job's whole output, in the order they were listed (longest first), then a summary.
failed=()
for i in $(seq 1 "$total"); do
  IFS='|' read -r label rc took < "$logs/$i.done" || { label="job $i"; rc=1; took="?"; }
  echo
  echo "---- $label (${took}s, exit $rc)"
  cat "$logs/$i.log"
  [ "$rc" = 0 ] || failed+=("$label")
done
echo
echo "test jobs by duration (seconds, exit status):"
cat "$logs"/*.done | sort -t'|' -k3,3nr | awk -F'|' '{ printf "  %5s  %-4s %s\n", $3, $2, $1 }'
echo "test jobs: $total, wall time $(( $(date +%s) - start_all ))s with $lanes lanes"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED test jobs (${#failed[@]}): ${failed[*]}"
  exit 1
fi
