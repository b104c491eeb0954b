# Shared by the bench scripts (sourced): a fresh database, the server started on it with the
# demo data, its peak memory, and stopping it. Expects BIN (the khaacho binary), PORT and OUT
# (the results folder) to be set; KHAACHO_BENCH_PG_URL picks the PostgreSQL server.
PG_URL=${KHAACHO_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}

# The schemas this script created, dropped by stop_server (KEEP=1 keeps them), so a run
# leaves nothing behind for the next one to share the server's caches and disk with.
BENCH_SCHEMAS=$(mktemp)

# fresh_db postgres|sqlite: prints the URL of a new, empty database (a new PostgreSQL schema,
# or a new SQLite file).
fresh_db() {
  if [ "$1" = postgres ]; then
    local schema="bench_$(date +%s)_$RANDOM"
    psql "$PG_URL" -qc "CREATE SCHEMA $schema" >/dev/null
    echo "$schema" >>"$BENCH_SCHEMAS"
    # No sslmode: the server picks `disable` for loopback and Unix sockets by itself.
    # PLAN_MODE=auto|force_custom_plan sets `plan_cache_mode` (default: the server's choice).
    # URL_PARAMS (e.g. statement-cache-capacity=400) adds connection parameters.
    echo "$PG_URL?${URL_PARAMS:+$URL_PARAMS&}options=${PLAN_MODE:+-c%20plan_cache_mode%3D$PLAN_MODE%20}-c%20search_path%3D$schema"
  else
    echo "sqlite://$(mktemp -d)/bench.db"
  fi
}

server_pid=""

# start_server NAME DATABASE_URL ROLE: demo data, then `khaacho ROLE` in the background with
# default settings apart from the address and log level (DB_CONNS overrides the pool size;
# other KHAACHO_* variables in the environment apply too); returns once it answers.
start_server() {
  local name=$1 url=$2 role=$3
  DATABASE_URL="$url" "$BIN" seed --demo >/dev/null
  env DATABASE_URL="$url" KHAACHO_LISTEN="127.0.0.1:$PORT" KHAACHO_LOG_LEVEL=warn \
    ${DB_CONNS:+KHAACHO_DB_MAX_CONNECTIONS=$DB_CONNS} "$BIN" "$role" >"$OUT/$name-server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.1
  done
}

stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  if [ -z "${KEEP:-}" ] && [ -s "$BENCH_SCHEMAS" ]; then
    while read -r schema; do
      psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    done <"$BENCH_SCHEMAS"
    : >"$BENCH_SCHEMAS"
  fi
}

# Peak resident memory of the running server.
peak_rss() { grep VmHWM "/proc/$server_pid/status" | awk '{print $2/1024 " MB"}'; }

# market_flags: sets the array `market` to the `khaacho loadtest` flags of the market a run's load
# runs on: RETAILERS shops (default 20,000), every vendor open around the clock and taking any
# number of orders, so nearly every order is validated, reserves credit and is routed; no flags
# for RETAILERS=demo (the demo data as it is: 66 shops whose credit and risk rules hold or refuse
# nearly every order at load-test rates, so routing never runs).
market_flags() {
  market=()
  if [ "${RETAILERS:-20000}" != demo ]; then
    market=(--retailers "${RETAILERS:-20000}" --vendor-hours 00:00-24:00 --vendor-capacity 1000000)
  fi
}

# set_up_market: sets that market up on the running server (a second's load at 1/s; its
# messages in $OUT/market.err), for a script whose figures must not include the set-up.
set_up_market() {
  market_flags
  if [ ${#market[@]} -gt 0 ]; then
    "$BIN" loadtest --url "http://127.0.0.1:$PORT" --rate 1 --duration 1s "${market[@]}" --json \
      >/dev/null 2>"$OUT/market.err"
  fi
}
