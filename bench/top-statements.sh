#!/usr/bin/env bash
# bench/top-statements.sh: where PostgreSQL's time goes, per statement. `serve` on a fresh schema with the
# demo data, RATE orders/s (default 400) for DUR seconds (default 30), then `pg_stat_statements`' top
# statements by planning + execution time, and the CPU seconds of the server and of PostgreSQL over the
# run. MODE=auto|force_custom_plan sets `plan_cache_mode` in the URL (default: the server's own choice,
# force_custom_plan). KEEP=1 keeps the schema for EXPLAIN. SIMULATE=1 runs `khaacho simulate` (the whole
# life of each order, as bench/simulate.sh: 2,000 retailers, every vendor open, parties acting within 1 s) instead of the
# load generator. The load generator runs on the market bench/run.sh sets up (RETAILERS, default 20,000
# shops, every vendor open; `demo` for the demo data as it is), set up before the statistics are reset.
#
# Needs pg_stat_statements loaded (a restart), e.g. as root:
#   psql -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" \
#        -c "ALTER SYSTEM SET pg_stat_statements.track_planning = on"
#   pg_ctlcluster --skip-systemctl-redirect 15 main restart && psql -c "CREATE EXTENSION pg_stat_statements"
# and `ALTER SYSTEM RESET ...` plus a restart to take it out again.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-400}; DUR=${DUR:-30}
BIN=${BIN:-target/release/khaacho}; PORT=${PORT:-18095}; OUT=target/bench-top-statements; mkdir -p $OUT
. bench/lib.sh
if ! psql "$PG_URL" -qAtc "select 1 from pg_stat_statements limit 1" >/dev/null 2>&1; then
  echo "pg_stat_statements is not loaded in $PG_URL; see the top of $0" >&2; exit 2
fi
trap stop_server EXIT
url=$(fresh_db postgres)
schema=$(sed -E 's/.*search_path%3D//' <<<"$url")
[ -n "${MODE:-}" ] && url="${url/search_path%3D/plan_cache_mode%3D$MODE%20-c%20search_path%3D}"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pg_ticks() { local s=0; for p in $(pgrep -x postgres); do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $s; }
start_server top "$url" serve
sleep 2
if [ -z "${SIMULATE:-}" ]; then set_up_market; fi
psql "$PG_URL" -qAtc "select pg_stat_statements_reset()" >/dev/null
s0=$(ticks $server_pid); p0=$(pg_ticks)
if [ -n "${SIMULATE:-}" ]; then
  "$BIN" simulate --url "http://127.0.0.1:$PORT" --rate "$RATE" --duration "${DUR}s" --vendor-capacity 1000000 --vendor-hours 00:00-24:00 \
    --retailers 2000 --respond-within 1s --ship-within 1s --json > $OUT/load.json 2>$OUT/load.err || true
else
  "$BIN" loadtest --url "http://127.0.0.1:$PORT" --rate "$RATE" --duration "${DUR}s" --warmup 0s --e2e-sample 20 --json > $OUT/load.json 2>$OUT/load.err || true
fi
s1=$(ticks $server_pid); p1=$(pg_ticks)
echo "CPU over the run: server $(( (s1-s0) ))/100 s, PostgreSQL $(( (p1-p0) ))/100 s"
grep -E '"(accepted|p95|p99)"' $OUT/load.json || true
sleep 3
psql "$PG_URL" -c "select calls, round(total_plan_time::numeric) plan_ms, round(total_exec_time::numeric) exec_ms,
    round(((total_plan_time + total_exec_time) / greatest(calls, 1))::numeric, 3) ms_per_call, rows,
    left(regexp_replace(query, '\s+', ' ', 'g'), 160) query
  from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())
  order by total_plan_time + total_exec_time desc limit ${TOP:-30}" | tee $OUT/top.txt
psql "$PG_URL" -c "select count(*) statements, sum(calls) calls, round(sum(total_plan_time)::numeric) plan_ms,
    round(sum(total_exec_time)::numeric) exec_ms from pg_stat_statements
  where dbid = (select oid from pg_database where datname = current_database())" | tee -a $OUT/top.txt
if [ -n "${KEEP:-}" ]; then echo "kept schema $schema"; fi
