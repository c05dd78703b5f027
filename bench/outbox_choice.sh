#!/usr/bin/env bash
# bench/outbox_choice.sh: the measurement behind the outbox design
# (docs/operations.md, "Why a table and snapshots").  On a throwaway cluster
# with wal_level = logical, 16 clients emit one event per transaction
# (synchronous_commit on) for OUTBOX_SECONDS (default 10) each way:
#
#   table      shop._emit: a row of shop.event (consumer groups read it)
#   queue      shop._emit plus one row per consumer group (2) in a
#              SKIP LOCKED job queue
#   message    pg_logical_emit_message(true, ...): WAL only
#
# then one consumer drains 20,000 events each way: shop.event_claim /
# shop.event_ack batches of 1,000; DELETE ... FOR UPDATE SKIP LOCKED
# batches of 1,000 from the queue; pg_logical_slot_get_changes (1,000 at a
# time, test_decoding) from a slot.  Prints a Markdown table.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
export TOP
. "$TOP/scripts/pgenv.sh"
SECS=${OUTBOX_SECONDS:-10}
make -C "$TOP" --no-print-directory -s >/dev/null || exit 1
tmp_install_setup || exit 1
DIR="$TOP/tmp_bench/outbox"
mkdir -p "$TOP/tmp_bench"
[ "$(id -u)" = 0 ] && chown postgres: "$TOP/tmp_bench"
PORT=$(free_port outbox)
cluster_stop "$DIR" fast
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "wal_level = logical" "max_replication_slots = 4" "max_wal_senders = 4" || exit 1
cluster_start "$DIR" || exit 1
trap 'cluster_stop "$DIR" fast' EXIT
cluster_env "$DIR" "$PORT"
export PGDATABASE=outbox
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)
"$PGBIN/createdb" outbox
"${PSQL[@]}" <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE TABLE public.q (grp text NOT NULL, id bigserial, event_id bigint NOT NULL, PRIMARY KEY (grp, id));
CREATE FUNCTION public.emit_queued(topic text, payload jsonb) RETURNS void LANGUAGE sql AS $$
    WITH e AS (SELECT shop._emit(topic, payload) AS id)
    INSERT INTO public.q (grp, event_id) SELECT g, e.id FROM e, unnest(ARRAY['a', 'b']) g
$$;
SELECT count(*) FROM shop.event_claim('a');
SELECT 'slot' FROM pg_create_logical_replication_slot('outbox', 'test_decoding');
SQL
P="jsonb_build_object('order_id', gen_random_uuid(), 'total_cents', 4999)"
echo "SELECT shop._emit('order.created', $P);" >"$DIR/table.sql"
echo "SELECT public.emit_queued('order.created', $P);" >"$DIR/queue.sql"
echo "SELECT pg_logical_emit_message(true, 'shop', $P::text);" >"$DIR/message.sql"

echo "| design | emitting transactions/s (16 clients) | one consumer drains (events/s) |"
echo "|---|---|---|"
for way in table queue message; do
    # the slot starts at the message phase (it would decode the other phases' rows too)
    [ "$way" = message ] && "${PSQL[@]}" -c "SELECT 1 FROM pg_replication_slot_advance('outbox', pg_current_wal_lsn())" >/dev/null
    tps=$("$PGBIN/pgbench" -n -M prepared -c 16 -j "$(nproc)" -T "$SECS" -f "$DIR/$way.sql" 2>&1 |
          sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | tail -1)
    t0=$(date +%s.%N)
    case $way in
        table)
            n=0
            while [ "$n" -lt 20000 ]; do
                r=$("${PSQL[@]}" -c "WITH c AS (SELECT * FROM shop.event_claim('a', 'x', 1000))
                                     SELECT coalesce(max(batch_id), 0) || ' ' || count(*) FROM c")
                [ "${r#* }" = 0 ] && break
                "${PSQL[@]}" -c "SELECT shop.event_ack('a', ${r% *})" >/dev/null
                n=$((n + ${r#* }))
            done ;;
        queue)
            n=0
            while [ "$n" -lt 20000 ]; do
                c=$("${PSQL[@]}" -c "WITH d AS (DELETE FROM public.q WHERE (grp, id) IN
                                        (SELECT grp, id FROM public.q WHERE grp = 'a' ORDER BY id LIMIT 1000
                                            FOR UPDATE SKIP LOCKED) RETURNING event_id)
                                     SELECT count(*) FROM d JOIN shop.event e USING (event_id)")
                [ "$c" = 0 ] && break
                n=$((n + c))
            done ;;
        message)
            n=0
            while [ "$n" -lt 20000 ]; do
                r=$("${PSQL[@]}" -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE data LIKE 'message:%')
                                       FROM pg_logical_slot_get_changes('outbox', NULL, 3000)")
                [ "${r% *}" = 0 ] && break
                n=$((n + ${r#* }))
            done ;;
    esac
    t1=$(date +%s.%N)
    rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    printf '| %s | %.0f | %s (%s events) |\n' "$way" "${tps:-0}" "$rate" "$n"
done
