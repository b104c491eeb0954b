#!/usr/bin/env bash
# Capacity of several server builds, measured with one load generator:
#   bench/compare.sh LOADTEST_BIN SERVER_BIN [SERVER_BIN ...]
# For each server binary: a fresh PostgreSQL schema (KHAACHO_BENCH_PG_URL, default the local
# server) or, with BACKEND=sqlite, a fresh SQLite file; `seed --demo` and `serve` with default
# settings by that binary; then `LOADTEST_BIN loadtest --find-capacity` (START_RATE, default
# 1000, ×STEP_FACTOR (1.2) per STEP_DURATION (10s) step, as in bench/run.sh). Prints one line
# per build; JSON reports go to bench/results/, numbered by the build's place in the list.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=$1; shift
BACKEND=${BACKEND:-postgres}
PORT=${PORT:-18090}
OUT=bench/results
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap stop_server EXIT
i=0
for BIN in "$@"; do
  i=$((i + 1))
  name=$i-$(basename "$BIN")
  start_server "$name-$BACKEND" "$(fresh_db "$BACKEND")" serve
  "$LOAD" loadtest --url "http://127.0.0.1:$PORT" --find-capacity --start-rate "${START_RATE:-1000}" \
    --step-factor "${STEP_FACTOR:-1.2}" --step-duration "${STEP_DURATION:-10s}" --warmup 2s --e2e-sample 20 --json \
    >"$OUT/$name-$BACKEND-capacity.json" || true
  echo "$name $BACKEND capacity: $(sed -nE 's/^  "capacity_per_s": (.*),$/\1/p' "$OUT/$name-$BACKEND-capacity.json")/s," \
    "peak RSS $(peak_rss)"
  stop_server
done
