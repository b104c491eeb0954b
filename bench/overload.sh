#!/usr/bin/env bash
# Over capacity: offers RATE orders/s (default 2,000, about twice the PostgreSQL capacity on
# the 2-core machine) for DURATION (30s) to `khaacho serve` with default settings, then
# reports what a user and an operator would ask:
#   - the processing rate during the overload (pipeline jobs finished per second),
#   - the share of orders pushed back (503 + Retry-After) and the 202 latency,
#   - the server's peak RSS,
#   - and, after the load stops, that every accepted order was processed (none left
#     `received`, the pipeline queue empty).
#   bench/overload.sh [postgres|sqlite] [SERVER_BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-postgres}
BIN=${2:-target/release/khaacho}
RATE=${RATE:-2000}
DURATION=${DURATION:-30s}
PORT=${PORT:-18091}
OUT=bench/results
mkdir -p "$OUT"
[ "$BIN" = target/release/khaacho ] && cargo build --release -p khaacho >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap stop_server EXIT
start_server "overload-$backend" "$(fresh_db "$backend")" serve
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
done_jobs() { local n; n=$(metric 'khaacho_jobs_succeeded_total{kind="order.validate"}'); echo "${n:-0}"; }
j0=$(done_jobs); t0=$(date +%s.%N)
"$BIN" loadtest --url "http://127.0.0.1:$PORT" --rate "$RATE" --duration "$DURATION" --e2e-sample 50 \
  --json >"$OUT/overload-$backend.json" || true
j1=$(done_jobs); t1=$(date +%s.%N)
rss=$(peak_rss)
accepted=$(sed -nE 's/^  "accepted": ([0-9]+),$/\1/p' "$OUT/overload-$backend.json")
pushed=$(grep -oE '"http_503": [0-9]+' "$OUT/overload-$backend.json" | grep -oE '[0-9]+$' || echo 0)
echo "overload $backend: offered ${RATE}/s for $DURATION"
echo "  processed during the load: $(echo "($j1 - $j0) / ($t1 - $t0)" | bc) orders/s (order.validate jobs finished)"
echo "  accepted (202): ${accepted:-?}; pushed back (503): ${pushed:-0}" \
  "($(echo "scale=1; 100 * ${pushed:-0} / (${accepted:-0} + ${pushed:-0} + 0.0001)" | bc)%)"
echo "  202 latency: $(grep -A4 '"latency_ms"' "$OUT/overload-$backend.json" | tr -d ' \n')"
echo "  peak RSS of serve: $rss"
# Afterwards: every accepted order leaves `received` once the backlog drains.
for _ in $(seq 1 600); do
  depth=$(metric 'khaacho_queue_depth{queue="validate"}'); events=$(metric 'khaacho_queue_depth{queue="events"}')
  [ "${depth:-1}" = 0 ] && [ "${events:-1}" = 0 ] && break
  sleep 0.5
done
received=$(metric 'khaacho_orders{state="received"}')
total=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 ~ /^khaacho_orders\{/ {s += $2} END {print s}')
echo "  after the load: validate queue ${depth:-?}, orders still received: ${received:-?} of $total in the database"
[ "${received:-1}" = 0 ] && [ "${depth:-1}" = 0 ]
