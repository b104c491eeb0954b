#!/usr/bin/env bash
# Capacity of several server builds, measured with one load generator:
#   bench/compare.sh LOADTEST_BIN SERVER_BIN [SERVER_BIN ...]
# For each server binary: a fresh PostgreSQL schema (KHAACHO_BENCH_PG_URL, default the local
# server) or, with BACKEND=sqlite, a fresh SQLite file; `seed --demo` and `serve` with default
# settings by that binary; then `LOADTEST_BIN loadtest --find-capacity` (START_RATE, default
# 1000, ×1.2 per 10 s step). Prints one line per build; JSON reports go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=$1; shift
BACKEND=${BACKEND:-postgres}
PG=${KHAACHO_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PORT=${PORT:-18090}
mkdir -p bench/results
for BIN in "$@"; do
  name=$(basename "$BIN")
  if [ "$BACKEND" = postgres ]; then
    schema="cmp_$(date +%s)_$RANDOM"; psql "$PG" -qc "CREATE SCHEMA $schema"
    url="$PG?sslmode=disable&options=-c%20search_path%3D$schema"
  else
    url="sqlite://$(mktemp -d)/bench.db"
  fi
  DATABASE_URL="$url" "$BIN" seed --demo >/dev/null
  DATABASE_URL="$url" KHAACHO_LISTEN="127.0.0.1:$PORT" KHAACHO_LOG_LEVEL=warn "$BIN" serve \
    >"bench/results/$name-$BACKEND-server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
  "$LOAD" loadtest --url "http://127.0.0.1:$PORT" --find-capacity --start-rate "${START_RATE:-1000}" \
    --step-factor 1.2 --step-duration 10s --warmup 2s --e2e-sample 20 --json \
    >"bench/results/$name-$BACKEND-capacity.json" || true
  echo "$name $BACKEND capacity: $(sed -nE 's/^  "capacity_per_s": (.*),$/\1/p' "bench/results/$name-$BACKEND-capacity.json")/s," \
    "peak RSS $(grep VmHWM "/proc/$pid/status" | awk '{print $2/1024 " MB"}')"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
done
