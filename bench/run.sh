#!/usr/bin/env bash
# Reproduces the capacity, intake and end-to-end figures from a clean checkout:
#   bench/run.sh [postgres|sqlite|all]
# Builds the release binary, starts the server against a fresh database, loads the demo
# data and drives it with `khaacho loadtest` (loopback only). Results go to bench/results/.
# First and foremost the capacity: `khaacho serve` with default settings (as a user runs it),
# `khaacho loadtest --find-capacity` (open-loop steps of rising rate; the highest rate with a
# flat queue and 202 → past `received` p95 < 250 ms: `routed`, which the validation run reaches). ONLY_CAPACITY=1 skips the other runs;
# ONLY_E2E=1 runs only the end-to-end run at RATE (default 1,000/s) for E2E_DURATION.
# The capacity and end-to-end runs first set up a market (the load generator's `--retailers`,
# `--vendor-hours`, `--vendor-capacity`): RETAILERS shops (default 20,000; registering them takes
# about a minute), every vendor open around the clock and taking any number of orders, so nearly
# every order is validated, reserves credit and is routed, as in a market of that size. RETAILERS=demo
# runs on the demo data as it is (66 shops at hundreds of orders a second: their credit and risk
# rules hold or refuse nearly every order, so routing never runs; the figures before 2026-12-07's
# eleventh session were measured that way).
# PostgreSQL: KHAACHO_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test); a
# fresh schema per run, TLS chosen by the server's defaults (none on loopback). Everything
# shares this machine's cores, as the targets assume. BIN=path runs that binary instead of
# building one (to compare two builds, e.g. one saved from an earlier commit); LOADGEN=path drives
# the load with that binary's `khaacho loadtest` (default BIN), so two servers are measured by one
# load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
DURATION=${DURATION:-30s}
PORT=${PORT:-18080}
OUT=bench/results
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then
  BIN=target/release/khaacho
  cargo build --release -p khaacho >/dev/null
fi

# shellcheck source=bench/lib.sh
. bench/lib.sh
trap stop_server EXIT

market_flags

loadtest() {
  local name=$1
  shift
  "${LOADGEN:-$BIN}" loadtest --url "http://127.0.0.1:$PORT" --duration "$DURATION" --warmup 2s --json "$@" | tee "$OUT/$name.json"
  echo "peak RSS of the server: $(peak_rss)" | tee "$OUT/$name.rss"
}

capacity() {
  local backend=$1 url
  url=$(fresh_db "$backend")
  start_server "$backend-capacity" "$url" serve
  echo "== $backend capacity (serve, default settings, market: ${RETAILERS:-20000} retailers; steps of ${STEP_DURATION:-10s} from ${START_RATE:-400}/s, x${STEP_FACTOR:-1.2})"
  "${LOADGEN:-$BIN}" loadtest --url "http://127.0.0.1:$PORT" --find-capacity --start-rate "${START_RATE:-400}" \
    --step-factor "${STEP_FACTOR:-1.2}" --step-duration "${STEP_DURATION:-10s}" --warmup 2s \
    --e2e-sample 20 ${MAX_RATE:+--max-rate "$MAX_RATE"} "${market[@]}" --json >"$OUT/$backend-capacity.json"
  echo "$backend capacity: $(sed -nE 's/^  "capacity_per_s": (.*),$/\1/p' "$OUT/$backend-capacity.json") orders/s" \
    | tee "$OUT/$backend-capacity.txt"
  echo "peak RSS of the server: $(peak_rss)" | tee "$OUT/$backend-capacity.rss"
  stop_server
}

run_backend() {
  local backend=$1 url
  if [ -z "${ONLY_E2E:-}" ]; then
    # 0. Capacity: what a user's `khaacho serve` sustains with processing running.
    capacity "$backend"
    [ -n "${ONLY_CAPACITY:-}" ] && return
    # 1. Intake: API process only, closed loop.
    url=$(fresh_db "$backend")
    start_server "$backend-intake" "$url" api
    echo "== $backend intake (api, ${CONNECTIONS:-64} connections, $DURATION)"
    loadtest "$backend-intake" --connections "${CONNECTIONS:-64}" --e2e-sample 0
    stop_server
  fi
  # 2. End to end: serve (API + workers), open loop at a fixed rate.
  url=$(fresh_db "$backend")
  start_server "$backend-e2e" "$url" serve
  echo "== $backend end to end (serve, ${RATE:-1000}/s offered, ${E2E_DURATION:-60s})"
  DURATION=${E2E_DURATION:-60s} loadtest "$backend-e2e" --rate "${RATE:-1000}" --e2e-sample 20 "${market[@]}"
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^khaacho_queue_(depth|oldest)' | tee "$OUT/$backend-e2e.queue"
  stop_server
}

case "$which" in
  postgres) run_backend postgres ;;
  sqlite) run_backend sqlite ;;
  all) run_backend postgres; run_backend sqlite ;;
  *) echo "usage: bench/run.sh [postgres|sqlite|all]" >&2; exit 2 ;;
esac
