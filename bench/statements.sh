#!/usr/bin/env bash
# bench/statements.sh: counts PostgreSQL statements and commits per order: serve on a fresh schema with
# log_statement=all for its sessions, N orders at a low open-loop rate, then the log.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/khaacho; PORT=${PORT:-18091}; OUT=target/bench-statements; mkdir -p $OUT
. bench/lib.sh
trap stop_server EXIT
url=$(fresh_db postgres)
DATABASE_URL="$url" "$BIN" seed --demo >/dev/null
logurl="${url/search_path%3D/log_statement%3Dall%20-c%20search_path%3D}"
start_server stm "$logurl" serve
sleep 3
LOG=${PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log | head -n1)}
before=$(wc -l < $LOG)
c0=$(psql "$PG_URL" -tAc "select xact_commit from pg_stat_database where datname='test'")
"$BIN" loadtest --url "http://127.0.0.1:$PORT" --rate 100 --duration 10s --warmup 0s --e2e-sample 0 --json > $OUT/load.json 2>/dev/null
sleep 5
c1=$(psql "$PG_URL" -tAc "select xact_commit from pg_stat_database where datname='test'")
tail -n +$((before+1)) $LOG > $OUT/log.txt
echo "orders: $(grep -o '"accepted": [0-9]*' $OUT/load.json)  commits (whole db): $((c1-c0))"
grep -c "statement: \|execute " $OUT/log.txt || true
# statement kinds: first words after 'execute <name>:' or 'statement:'
sed -nE 's/.*(execute [^:]*|statement): *(.*)/\2/p' $OUT/log.txt | sed -E 's/\$[0-9]+/\$/g' | cut -c1-90 | sort | uniq -c | sort -rn | head -60
