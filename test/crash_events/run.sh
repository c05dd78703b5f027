#!/usr/bin/env bash
# crash_events: the outbox and its consumer groups across a crash.
#
#   1. wake-ups: a listener of shop_events is woken after a commit that
#      emitted (by the events worker, once per batch: far fewer
#      notifications than events), never for a rolled-back one;
#   2. emitters (pgbench, each transaction emits one event and records its
#      event_id in public.emitted, in the same transaction) and two
#      consumers of group 'g' (pgbench: claim a batch and record it in
#      public.delivered in one transaction, acknowledge in the next) run
#      until the server is killed (pg_ctl stop -m immediate);
#   3. after restart, a consumer drains the group (batches leased to the
#      killed consumers come back, marked redelivered, once their lease ran
#      out); then every committed event was delivered, none was delivered as
#      new twice, and nothing uncommitted was delivered;
#   4. the events worker wakes listeners again after the restart.
set -euo pipefail
TOP=${TOP:?}
. "$TOP/scripts/pgenv.sh"
PGBIN=${PGBIN:?}

NAME=crash_events
DIR="$TOP/tmp_check/$NAME"
PORT=$(free_port $NAME)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "max_worker_processes = 16" "synchronous_commit = on"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
export PGDATABASE=crash
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
fail=0

"$PGBIN/createdb" crash
"${PSQL[@]}" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE TABLE public.emitted (event_id bigint PRIMARY KEY);
CREATE TABLE public.delivered (event_id bigint NOT NULL, batch_id bigint NOT NULL,
                               redelivered boolean NOT NULL, consumer text NOT NULL,
                               at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION public.emit_one(n int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.emitted SELECT shop._emit('crash.test', jsonb_build_object('n', n))
$$;
-- the group starts here: it is owed every event emitted from now on
SELECT count(*) FROM shop.event_claim('g');
SQL

# 1. wake-ups
listen() {   # listen SECONDS: LISTEN for that long, print the notifications' payloads
    { echo "LISTEN shop_events;"; echo "SELECT pg_sleep($1);"; echo "SELECT 1;"; } |
        "$PGBIN/psql" -X -q 2>&1 | sed -n 's/^Asynchronous notification "shop_events" with payload "\(.*\)" received from server process with PID [0-9]*\.$/\1/p'
}
listen 2 >"$DIR/listen1.txt" &
lpid=$!
sleep 0.5
"${PSQL[@]}" -c "BEGIN" -c "SELECT public.emit_one(0)" -c "ROLLBACK" >/dev/null
sleep 0.5
rolled=$(grep -c . "$DIR/listen1.txt" || true)
"${PSQL[@]}" -c "SELECT public.emit_one(1)" >/dev/null
wait $lpid
if [ "$rolled" != 0 ] || ! grep -q '"last_event_id"' "$DIR/listen1.txt"; then
    echo "FAIL wake-up: $(cat "$DIR/listen1.txt" | tr '\n' ' ') (woken after the rollback: $rolled)"; fail=1
else
    echo "ok   a listener is woken after a commit, not after a rollback"
fi

# 2. emitters and consumers, then the kill
cat >"$DIR/emit.sql" <<'EOF'
\set n random(1, 1000000)
SELECT public.emit_one(:n);
EOF
cat >"$DIR/consume.sql" <<'EOF'
BEGIN;
INSERT INTO public.delivered (event_id, batch_id, redelivered, consumer)
SELECT event_id, batch_id, redelivered, 'c' || :client_id FROM shop.event_claim('g', 'c' || :client_id, 20, '2 seconds');
SELECT coalesce(max(batch_id), 0) AS b FROM public.delivered WHERE consumer = 'c' || :client_id \gset
COMMIT;
SELECT shop.event_ack('g', :b);
EOF
listen 3 >"$DIR/listen2.txt" &
lpid=$!
as_owner "$PGBIN/pgbench" -n -c 4 -j 2 -T 60 -f "$DIR/emit.sql" -h "$PGHOST" -p "$PORT" -U postgres crash \
    >"$DIR/emit.log" 2>&1 &
emit=$!
as_owner "$PGBIN/pgbench" -n -c 2 -j 2 -T 60 -f "$DIR/consume.sql" -h "$PGHOST" -p "$PORT" -U postgres crash \
    >"$DIR/consume.log" 2>&1 &
consume=$!
wait $lpid
sleep 3
before=$("${PSQL[@]}" -At -c "SELECT count(*) FROM public.emitted")
notes=$(grep -c . "$DIR/listen2.txt" || true)
echo "events emitted before the crash (at least): $before; notifications in 3 s: $notes"
as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null
wait $emit || true
wait $consume || true
cluster_start "$DIR"

# one notification per batch, not per event
emitted_in_3s=$("${PSQL[@]}" -At -c "SELECT count(*) FROM public.emitted")
if [ "$notes" -lt 1 ] || [ "$notes" -ge "$emitted_in_3s" ]; then
    echo "FAIL batching: $notes notifications for $emitted_in_3s events"; fail=1
else
    echo "ok   $notes notifications while the emitters ran: one per batch, not one per event"
fi

# 3. drain the group after the leases of the killed consumers ran out
sleep 2.5
empty=0
for i in $(seq 1 500); do
    r=$("${PSQL[@]}" -At -c "
        WITH c AS (SELECT * FROM shop.event_claim('g', 'drain', 500, '2 seconds')),
             d AS (INSERT INTO public.delivered (event_id, batch_id, redelivered, consumer)
                   SELECT event_id, batch_id, redelivered, 'drain' FROM c RETURNING batch_id)
        SELECT coalesce(max(batch_id), 0) || ' ' || count(*) FROM d")
    b=${r% *}; n=${r#* }
    if [ "$n" = 0 ]; then
        empty=$((empty + 1))
        [ "$empty" -ge 2 ] && break
        sleep 2.5
        continue
    fi
    empty=0
    "${PSQL[@]}" -At -c "SELECT shop.event_ack('g', $b)" >/dev/null
done

check() {   # check NAME SQL -> the SQL returns a count of violations
    local n
    n=$("${PSQL[@]}" -At -c "$2")
    if [ "$n" != 0 ]; then echo "FAIL $1: $n"; fail=1; else echo "ok   $1"; fi
}
echo "committed events: $("${PSQL[@]}" -At -c "SELECT count(*) FROM public.emitted"),"\
     "deliveries: $("${PSQL[@]}" -At -c "SELECT count(*) || ' (' || count(*) FILTER (WHERE redelivered) || ' redelivered)' FROM public.delivered")"
check "committed events never delivered" "SELECT count(*) FROM public.emitted e
    WHERE NOT EXISTS (SELECT 1 FROM public.delivered d WHERE d.event_id = e.event_id)"
check "events delivered as new more than once" "SELECT count(*) FROM (SELECT event_id FROM public.delivered
    WHERE NOT redelivered GROUP BY 1 HAVING count(*) > 1) x"
check "deliveries of events that did not commit" "SELECT count(*) FROM public.delivered d
    WHERE NOT EXISTS (SELECT 1 FROM public.emitted e WHERE e.event_id = d.event_id)"
check "events in the outbox without their emitting transaction's row" "SELECT count(*) FROM shop.event v
    WHERE v.topic = 'crash.test' AND NOT EXISTS (SELECT 1 FROM public.emitted e WHERE e.event_id = v.event_id)"

# 4. the events worker is back
listen 2 >"$DIR/listen3.txt" &
lpid=$!
sleep 0.5
"${PSQL[@]}" -c "SELECT public.emit_one(2)" >/dev/null
wait $lpid
if grep -q '"last_event_id"' "$DIR/listen3.txt"; then
    echo "ok   listeners are woken after the restart"
else
    echo "FAIL no wake-up after the restart"; fail=1
fi
exit $fail
