#!/usr/bin/env bash
# Live updates under many sockets: `khaacho serve` (default settings) on a fresh database with
# the demo data, and `khaacho loadtest-ws` opening SUBSCRIBERS WebSockets (operator token),
# all subscribed to `orders`, then placing EVENTS orders one at a time and timing, on every
# socket, POST /api/v1/orders → that order's `received` event (intake commit, the
# order.changed job, the feed, the hub, the socket).
#   bench/ws.sh [sqlite|postgres] [SUBSCRIBERS] [EVENTS]
# Results go to bench/results/ws-<backend>.{json,rss,metrics}. NO_BUILD=1 skips the build;
# NICE=1 runs both processes under `nice -n 19` (on a machine shared with other work).
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
SUBSCRIBERS=${2:-1000}
EVENTS=${3:-20}
PORT=${PORT:-18080}
BIN=${BIN:-target/release/khaacho}
OUT=bench/results
mkdir -p "$OUT"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p khaacho >/dev/null
if [ -n "${NICE:-}" ]; then
  real_bin=$BIN
  BIN="$OUT/.nice-khaacho"
  printf '#!/bin/sh\nexec nice -n 19 %s "$@"\n' "$(realpath "$real_bin")" >"$BIN"
  chmod +x "$BIN"
fi
# Two sockets per subscriber on this machine (client and server ends).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# shellcheck source=bench/lib.sh
. bench/lib.sh
trap stop_server EXIT

url=$(fresh_db "$backend")
start_server "ws-$backend" "$url" serve
echo "== $backend: $SUBSCRIBERS sockets, $EVENTS orders"
DATABASE_URL="$url" KHAACHO_LOG_LEVEL=warn "$BIN" loadtest-ws --url "http://127.0.0.1:$PORT" \
  --subscribers "$SUBSCRIBERS" --events "$EVENTS" --json | tee "$OUT/ws-$backend.json"
echo "peak RSS of the server: $(peak_rss)" | tee "$OUT/ws-$backend.rss"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^khaacho_ws_' | tee "$OUT/ws-$backend.metrics" || true
