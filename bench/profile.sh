#!/usr/bin/env bash
# bench/profile.sh: profile `khaacho serve` on PostgreSQL at a fixed open-loop rate: CPU split (server, postgres,
# loadtest), per job kind time from /metrics, pg wait events, perf of the server.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-450}; DUR=${DUR:-40}
BIN=target/release/khaacho; PORT=${PORT:-18090}; OUT=target/bench-profile; mkdir -p $OUT
. bench/lib.sh
trap stop_server EXIT
url=$(fresh_db postgres)
start_server prof "$url" serve
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
pg_ticks() { local s=0; for p in $(pgrep -x postgres); do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $s; }
curl -s localhost:$PORT/metrics > $OUT/metrics.before
"$BIN" loadtest --url "http://127.0.0.1:$PORT" --rate $RATE --duration ${DUR}s --warmup 2s --e2e-sample 20 --json > $OUT/load.json 2>$OUT/load.err &
lp=$!
sleep 10
s0=$(ticks $server_pid); p0=$(pg_ticks); l0=$(ticks $lp); t0=$(date +%s.%N)
( for i in $(seq 1 100); do psql "$PG_URL" -tAc "select coalesce(wait_event_type,'cpu')||':'||coalesce(wait_event,'-')||':'||state from pg_stat_activity where backend_type='client backend' and state<>'idle' and pid<>pg_backend_pid()" ; sleep 0.1; done ) > $OUT/waits.txt &
perf record -F 299 -g -o $OUT/perf.data -p $server_pid -- sleep 15 2>/dev/null >/dev/null || true
s1=$(ticks $server_pid); p1=$(pg_ticks); l1=$(ticks $lp); t1=$(date +%s.%N)
wait $lp || true
curl -s localhost:$PORT/metrics > $OUT/metrics.after
echo "window $(awk "BEGIN{print $t1 - $t0}") s: server $(( (s1-s0) ))/100 cpu-s, postgres $(( (p1-p0) ))/100 cpu-s, loadtest $(( (l1-l0) ))/100 cpu-s"
sort $OUT/waits.txt | uniq -c | sort -rn | head -15
