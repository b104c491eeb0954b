#!/usr/bin/env bash
# The channels' inbound benchmark: `khaacho serve` (default settings, a Twilio auth token and
# public URL so webhooks verify; no Twilio account, so replies stay in the outbox) on a fresh
# database with the demo data, and `khaacho loadtest-messages` offering signed WhatsApp
# webhooks open loop from the demo retailers' phones, then following them until every one is
# handled.
#   bench/messages.sh [postgres|sqlite] [RATE] [SECONDS]
# Results go to bench/results/messages-<backend>-<rate>.{txt,rss}.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-postgres}
RATE=${2:-2000}
SECONDS_=${3:-20}
PORT=${PORT:-18080}
BIN=target/release/khaacho
OUT=bench/results
mkdir -p "$OUT"
cargo build --release -p khaacho >/dev/null

# shellcheck source=bench/lib.sh
. bench/lib.sh
trap stop_server EXIT

export KHAACHO_CHANNELS__TWILIO_AUTH_TOKEN=bench-token
export KHAACHO_CHANNELS__PUBLIC_URL="http://127.0.0.1:$PORT"
url=$(fresh_db "$backend")
start_server "messages-$backend" "$url" serve
echo "== $backend: signed webhooks at $RATE/s for $SECONDS_ s"
DATABASE_URL="$url" "$BIN" loadtest-messages --url "http://127.0.0.1:$PORT" --rate "$RATE" \
  --seconds "$SECONDS_" | tee "$OUT/messages-$backend-$RATE.txt"
echo "peak RSS of the server: $(peak_rss)" | tee "$OUT/messages-$backend-$RATE.rss"
