#!/usr/bin/env bash
# The whole life of an order under load: `khaacho serve` (default settings) on a fresh
# database with the demo data, and `khaacho simulate` playing every vendor (accept, reject or
# ignore offers, dispatch, deliver — some short) and retailer (confirm, pay) while placing
# RATE orders/s; reports 202 → routed, the actions and the orders by state.
#   bench/simulate.sh [postgres|sqlite] [RATE] [DURATION]
# RETAILERS (default 2000) grows the market to that many retailers first (`--retailers`), so
# each shop orders a few times in the run rather than several times a second.
# VENDOR_HOURS (default 00:00-24:00) sets every vendor's working hours first: routing prefers
# the vendors open now, so with the demo's own hours (VENDOR_HOURS=keep) the run depends on the
# hour it is made (in the evening one or two late shops get nearly every order).
# BIN=path runs that binary instead of building one.
# Results go to bench/results/simulate-<backend>.{json,rss}; on PostgreSQL it also prints the
# server-side times of each order's way to `routed`, from its events. The simulator's vendors get a
# large daily capacity (--vendor-capacity) so routing is not refused for capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-postgres}
RATE=${2:-300}
DURATION=${3:-60s}
RETAILERS=${RETAILERS:-2000}
VENDOR_HOURS=${VENDOR_HOURS:-00:00-24:00}
hours=()
[ "$VENDOR_HOURS" != keep ] && hours=(--vendor-hours "$VENDOR_HOURS")
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

url=$(fresh_db "$backend")
start_server "simulate-$backend" "$url" serve
echo "== $backend: simulate at $RATE orders/s for $DURATION"
"$BIN" simulate --url "http://127.0.0.1:$PORT" --rate "$RATE" --duration "$DURATION" \
  --vendor-capacity 1000000 "${hours[@]}" --retailers "$RETAILERS" --respond-within 1s --ship-within 1s --json | tee "$OUT/simulate-$backend.json"
echo "peak RSS of the server: $(peak_rss)" | tee "$OUT/simulate-$backend.rss"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^khaacho_(orders\{|queue_|jobs_|http_shed|degraded_refusals|degradation_level|mode_changes|intake_backpressure_total)' \
  | tee "$OUT/simulate-$backend.metrics" || true
# The server's own times from the orders' events (PostgreSQL): created → validated (queue wait
# and the run's first steps), validated → routed (the rest of the run: credit, risk, routing),
# created → routed.
if [ "$backend" = postgres ]; then
  schema=$(sed -E 's/.*search_path%3D//' <<<"$url")
  psql "$PG_URL" -qAt -F' ' -c "SET search_path = $schema" -c "
    WITH f AS (SELECT order_id, min(at_ms) FILTER (WHERE to_status = 'received') r,
                      min(at_ms) FILTER (WHERE to_status = 'validated') v,
                      min(at_ms) FILTER (WHERE to_status = 'routed') t
               FROM order_events GROUP BY order_id)
    SELECT 'server-side ms: created -> validated p50/p95', percentile_disc(0.5) WITHIN GROUP (ORDER BY v - r),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY v - r),
           '· validated -> routed p50/p95', percentile_disc(0.5) WITHIN GROUP (ORDER BY t - v),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY t - v),
           '· created -> routed p50/p95/p99', percentile_disc(0.5) WITHIN GROUP (ORDER BY t - r),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY t - r), percentile_disc(0.99) WITHIN GROUP (ORDER BY t - r)
    FROM f WHERE t IS NOT NULL" | tee -a "$OUT/simulate-$backend.rss"
fi
