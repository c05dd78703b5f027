#!/usr/bin/env bash
# events: the outbox off the commit's critical path (issue 11).
#
#   1. emitters: 16 clients, each transaction emits one event
#      (shop._emit), synchronous_commit on, with shop.notify_events =
#      batch (the events worker wakes listeners once per batch), each (1.0:
#      a pg_notify per event in its transaction, whose commits PostgreSQL
#      serializes) and off;
#   2. commit-to-wake-up latency: bench/bin/event_latency (from
#      bench/gen/event_latency.c) emits an event every 5 ms on one
#      connection and measures, for each, the time from its COMMIT to the
#      arrival of a notification naming it or a later event, on an idle
#      server and while the emitters of 1. run (target: p99 < 100 ms);
#   3. a consumer group drains what the emitters wrote with
#      shop.event_claim(max_events => 1000) / shop.event_ack: events/s.
#
# Runs in a database of its own (bench_events, dropped at the end).
set -euo pipefail
. "$TOP/bench/lib.sh"
SECS=${BENCH_SECONDS:-15}
CLIENTS=16
DB=bench_events
export PGDATABASE=$DB

LAT="$TOP/bench/bin/event_latency"
if [ ! -x "$LAT" ] || [ "$TOP/bench/gen/event_latency.c" -nt "$LAT" ]; then
    mkdir -p "$TOP/bench/bin"
    ${CC:-cc} -O2 -Wall -Wextra -I"$("$PGBIN/pg_config" --includedir)" -o "$LAT" \
        "$TOP/bench/gen/event_latency.c" -lpq -lpthread
fi

"$PGBIN/dropdb" --if-exists "$DB" >/dev/null 2>&1 || true
"$PGBIN/createdb" "$DB"
bench_psql -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
bench_psql -c "SELECT count(*) FROM shop.event_claim('bench')" >/dev/null

cat >"$BENCH_TMP/emit.sql" <<'EOF2'
SELECT shop._emit('order.created', jsonb_build_object('order_id', gen_random_uuid(), 'total_cents', 4999));
EOF2

rows="$BENCH_TMP/rows.tsv"
: >"$rows"
for mode in batch each off; do
    PGOPTIONS="-c shop.notify_events=$mode" \
        bench_pgbench "emit, shop.notify_events = $mode" $CLIENTS "$SECS" "$BENCH_TMP/emit.sql" >>"$rows"
done

lat="$BENCH_TMP/latency.tsv"
printf 'measured\tevents\twoken\tp50_ms\tp95_ms\tp99_ms\tmax_ms\n' >"$lat"
"$LAT" 2 5 >/dev/null    # warm: the events worker starts, caches fill
read -r _ n _ w _ p50 _ p95 _ p99 _ mx <<<"$("$LAT" "$SECS" 5)"
printf 'idle server\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$w" "$p50" "$p95" "$p99" "$mx" >>"$lat"
"$PGBIN/pgbench" -n -M prepared -c $CLIENTS -j "$(nproc)" -T "$((SECS + 2))" -f "$BENCH_TMP/emit.sql" \
    >"$BENCH_TMP/load.txt" 2>&1 &
load=$!
sleep 1
read -r _ n _ w _ p50 _ p95 _ p99 _ mx <<<"$("$LAT" "$SECS" 5)"
wait $load || true
load_tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$BENCH_TMP/load.txt" | tail -1)
printf 'while %s clients emit (%s events/s)\t%s\t%s\t%s\t%s\t%s\t%s\n' $CLIENTS "$(printf '%.0f' "${load_tps:-0}")" \
    "$n" "$w" "$p50" "$p95" "$p99" "$mx" >>"$lat"

backlog=$(bench_psql -c "SELECT count(*) FROM shop.event")
t0=$(date +%s.%N)
drained=0
while :; do
    r=$(bench_psql -c "WITH c AS (SELECT * FROM shop.event_claim('bench', 'drain', 1000))
                       SELECT coalesce(max(batch_id), 0) || ' ' || count(*) FROM c")
    b=${r% *}; c=${r#* }
    [ "$c" = 0 ] && break
    bench_psql -c "SELECT shop.event_ack('bench', $b)" >/dev/null
    drained=$((drained + c))
done
t1=$(date +%s.%N)
drain_rate=$(awk -v n="$drained" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')

echo "## Events: the outbox off the commit path (events)"
echo
echo "Emitters: $CLIENTS clients, one event per transaction (\`shop._emit\`), \`synchronous_commit = on\`,"
echo "${SECS} s per mode. \`batch\` is the default of 1.1: committing transactions only set the"
echo "events worker's latch and the worker sends one notification per batch; \`each\` is 1.0's"
echo "behaviour (a \`pg_notify\` per event in its transaction; PostgreSQL lets one notifying"
echo "transaction commit at a time); \`off\` sends nothing."
echo
bench_md_table_vs "emit, shop.notify_events = each" <"$rows"
echo
echo "Commit to wake-up (\`bench/bin/event_latency\`: an event every 5 ms on one connection,"
echo "time from its COMMIT to a notification naming it or a later event; target p99 < 100 ms):"
echo
bench_md_table <"$lat"
echo
echo "A consumer group drained $drained events (of $backlog in the outbox) with"
echo "\`shop.event_claim(max_events => 1000)\` and \`shop.event_ack\` at **$drain_rate events/s**."

"$PGBIN/dropdb" "$DB" >/dev/null 2>&1 || true
