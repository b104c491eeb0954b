#!/usr/bin/env bash
# bench/wal.sh: where each order's writes go on PostgreSQL. `serve` on a fresh schema with the demo
# data, RATE orders/s (default 1,000) for DUR seconds (default 15), then, once the queues are empty,
# PostgreSQL's write-ahead log between a checkpoint before the load and the end, grouped by the relation
# (table or index) each record touches (`pg_walinspect`, shipped with PostgreSQL 15 and later: the script
# creates the extension in the database if it is missing and needs a superuser for that), per order:
# records, bytes and full-page images; and the rows inserted, updated (HOT or not) and deleted per table.
# The load runs on the market bench/run.sh sets up (RETAILERS, default 20,000 shops; `demo` for the demo
# data as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-1000}; DUR=${DUR:-15}
BIN=${BIN:-target/release/khaacho}; PORT=${PORT:-18096}; OUT=target/bench-wal; mkdir -p $OUT
. bench/lib.sh
psql "$PG_URL" -qc "CREATE EXTENSION IF NOT EXISTS pg_walinspect" >/dev/null
trap stop_server EXIT
url=$(fresh_db postgres)
schema=$(sed -E 's/.*search_path%3D//' <<<"$url")
start_server wal "$url" serve
sleep 1
# The market first (a second's load at 1/s sets it up), so its set-up is not in the figures.
set_up_market
psql "$PG_URL" -qAtc "select pg_stat_reset()" >/dev/null
psql "$PG_URL" -qAtc "checkpoint" >/dev/null
lsn0=$(psql "$PG_URL" -qAtc "select pg_current_wal_lsn()")
orders0=$(psql "$PG_URL" -qAtc "select count(*) from $schema.orders")
"$BIN" loadtest --url "http://127.0.0.1:$PORT" --rate "$RATE" --duration "${DUR}s" --warmup 0s --e2e-sample 20 --json > $OUT/load.json 2>$OUT/load.err || true
# Wait for the queues to empty (at most 60 s).
for _ in $(seq 1 120); do
  left=$(psql "$PG_URL" -qAtc "select count(*) from $schema.jobs where status in ('queued','running') and run_at_ms < (extract(epoch from now())*1000 + 5000)")
  [ "$left" = 0 ] && break; sleep 0.5
done
lsn1=$(psql "$PG_URL" -qAtc "select pg_current_wal_lsn()")
orders=$(( $(psql "$PG_URL" -qAtc "select count(*) from $schema.orders") - orders0 ))
echo "orders $orders; WAL $(psql "$PG_URL" -qAtc "select pg_size_pretty(pg_wal_lsn_diff('$lsn1','$lsn0'))"), $(psql "$PG_URL" -qAtc "select round(pg_wal_lsn_diff('$lsn1','$lsn0')/$orders)") bytes per order" | tee $OUT/wal.txt
psql "$PG_URL" -c "
with r as (
  select record_length, fpi_length, resource_manager, record_type,
    (regexp_match(block_ref, 'rel \d+/\d+/(\d+)'))[1]::oid filenode
  from pg_get_wal_records_info('$lsn0', '$lsn1'))
select coalesce(pg_filenode_relation(0, filenode)::regclass::text, resource_manager || ' ' || coalesce(filenode::text, '-')) relation,
  round(count(*)::numeric / $orders, 2) records_per_order,
  round(sum(record_length)::numeric / $orders) bytes_per_order,
  round(sum(fpi_length)::numeric / $orders) fpi_bytes_per_order
from r group by 1 order by sum(record_length) desc limit ${TOP:-40}" | tee -a $OUT/wal.txt
psql "$PG_URL" -c "select relname, round(n_tup_ins::numeric / $orders, 2) ins, round(n_tup_upd::numeric / $orders, 2) upd,
    round(n_tup_hot_upd::numeric / $orders, 2) hot, round(n_tup_del::numeric / $orders, 2) del
  from pg_stat_user_tables where schemaname = '$schema' and n_tup_ins + n_tup_upd + n_tup_del > 0
  order by n_tup_ins + n_tup_upd + n_tup_del desc" | tee -a $OUT/wal.txt
grep -E '"(accepted|p95|p99)"' $OUT/load.json | head -5 || true
