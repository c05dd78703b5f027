#!/usr/bin/env bash
# pitr: point-in-time recovery from a base backup and archived WAL, as
# docs/operations.md ("Backups and point-in-time recovery") describes it.
#
#   1. A primary archiving its WAL (archive_command copying to a
#      directory); a catalog and some orders; a base backup
#      (pg_basebackup).
#   2. Phase B: storefront clients check out carts (one connection each,
#      with idempotency keys) while the back office adds and edits
#      products and ships and cancels orders.
#   3. The point: the clients pause between two calls; every shop table's
#      content (a digest per table), the orders and a set of searches are
#      recorded; pg_create_restore_point('pitr_point'); the clients resume.
#   4. Phase C: more checkouts, catalog edits, transitions and a
#      recommendations refresh; then the primary is lost (stopped for good).
#   5. The base backup is restored to the point (restore_command,
#      recovery_target_name, recovery_target_action = 'promote').
#   6. The restored node holds exactly what the primary held at the point:
#      every shop table has the recorded content (so exactly the orders
#      committed before the point, with the status they had then); the
#      invariants of test/include/invariants.sql hold (search_verify
#      clean); the searches answer as the primary did at the point; and the
#      node takes checkouts.  The recovery time is printed (not a pass/fail
#      criterion).
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
T="$TOP/tmp_check/pitr"
PDIR="$T/primary"
RDIR="$T/restored"
ARCH="$T/archive"
BASE="$T/base"
PPORT=$(free_port pitr_p)
RPORT=$(free_port pitr_r)
[ "$RPORT" = "$PPORT" ] && RPORT=$((RPORT + 1))
rm -rf "$T"
mkdir -p "$T"
# fsync = off: nothing here crashes the machine; the archive and the
# backup are what is tested.  The archive command copies under another
# name and renames: a segment appears whole or not at all (a plain cp
# showed the last segment half copied when the primary was stopped right
# after the file appeared: "archive file ... has wrong size")
cluster_init "$PDIR" "$PPORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "fsync = off" "wal_level = replica" "archive_mode = on" "shop.session_secret = 'pitr-test-secret-0123456789abcdefghij'" \
    "archive_command = 'test ! -f $ARCH/%f && cp %p $ARCH/%f.part && mv $ARCH/%f.part $ARCH/%f'"
mkdir -p "$ARCH" "$RDIR" "$T/clients"
[ "$(id -u)" = 0 ] && chown postgres: "$T" "$ARCH" "$RDIR"
cluster_start "$PDIR"
trap 'cluster_stop "$RDIR" immediate; cluster_stop "$PDIR" immediate' EXIT

q() {   # q DIR PORT USER [psql args...]: psql to the shop database
    local dir=$1 port=$2 user=$3; shift 3
    "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U "$user" -d pitr "$@"
}
P() { q "$PDIR" "$PPORT" postgres "$@"; }
R() { q "$RDIR" "$RPORT" postgres "$@"; }
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# 1. catalog, orders, base backup
"$PGBIN/createdb" -h "$PDIR" -p "$PPORT" -U postgres pitr
P >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE ROLE pitr_web LOGIN IN ROLE shop_storefront;
CREATE ROLE pitr_office LOGIN IN ROLE shop_admin;
SELECT shop.category_add('Audio') AS audio, shop.category_add('Lighting') AS lighting \gset
SELECT count(shop.product_upsert(
           'PT-' || g,
           (ARRAY['wireless', 'compact', 'steel', 'portable', 'classic'])[1 + g % 5] || ' ' ||
           (ARRAY['speaker', 'lamp', 'kettle', 'radio'])[1 + g % 4] || ' ' || g,
           500 + (g * 211) % 30000,
           brand => (ARRAY['Acme', 'Bolt', 'Corvo'])[1 + g % 3],
           category_id => (ARRAY[:audio, :lighting])[1 + g % 2]))
  FROM generate_series(1, 200) g;
SELECT count(shop.stock_set(product_id, 50000)) FROM shop.product;
DO $$
DECLARE c uuid;
BEGIN
    FOR i IN 1..30 LOOP
        c := shop.cart_create(1 + i % 7);
        PERFORM shop.cart_add(c, 1 + i % 13), shop.cart_add(c, 20 + i % 5);
        PERFORM shop.checkout(c, 'tok_visa', 'phase-a-' || i, '{"country": "US"}');
    END LOOP;
END
$$;
SELECT shop.refresh_recommendations();
CREATE FUNCTION public.pitr_cart(c bigint, p1 bigint, p2 bigint) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE cart uuid := shop.cart_create(c);
BEGIN
    PERFORM shop.cart_add(cart, p1), shop.cart_add(cart, p2, 2);
    RETURN cart;
END
$$;
SQL
as_owner "$PGBIN/pg_basebackup" -h "$PDIR" -p "$PPORT" -U postgres -D "$BASE" -X stream -c fast
backup_lsn=$(as_owner sed -n 's/^START WAL LOCATION: \([^ ]*\).*/\1/p' "$BASE/backup_label")
ok "base backup taken (starts at WAL $backup_lsn)"
P -c "SELECT shop.session_token(c) FROM generate_series(1, 20) c ORDER BY c" >"$T/tokens"
mapfile -t TOKENS <"$T/tokens"

# 2. phase B: clients, each on one connection (fds 3 and 4 to a psql of
# its own), acting for customer 10 + N; between two checkouts a client
# honours PAUSE (writes paused-N and waits) and STOP
PAUSE="$T/pause"
STOP="$T/stop"
client() {
    local n=$1 i=0 cust=$((10 + $1)) f="$T/clients/session.$1" cart
    trap '' PIPE
    mkfifo "$f.in" "$f.out"
    q "$PDIR" "$PPORT" pitr_web <"$f.in" >"$f.out" 2>>"$f.err" &
    exec 3>"$f.in" 4<"$f.out"
    call() { echo "$1" >&3 2>/dev/null || return 1; read -r -t 60 REPLY <&4; }
    call "SELECT set_config('shop.session', '${TOKENS[$((cust - 1))]}', false) IS NOT NULL;" || return 1
    while [ ! -e "$STOP" ]; do
        if [ -e "$PAUSE" ]; then
            touch "$T/clients/paused-$n"
            while [ -e "$PAUSE" ]; do sleep 0.05; done
            rm -f "$T/clients/paused-$n"
        fi
        i=$((i + 1))
        call "SELECT public.pitr_cart($cust, $((1 + RANDOM % 200)), $((1 + RANDOM % 200)));" || return 1
        cart=$REPLY
        call "SELECT shop.checkout('$cart', 'tok_visa', 'pitr-$n-$i', '{\"country\": \"US\"}');" || return 1
        echo "pitr-$n-$i $REPLY" >>"$T/clients/ok-$n"
    done
}
# back-office work of a phase (as shop_admin): new products, new titles
# and prices, an archived product, some orders shipped, some cancelled
office() {   # office PHASE
    q "$PDIR" "$PPORT" pitr_office >/dev/null <<SQL
SELECT shop.product_upsert('PT-$1-' || g, 'Zephyr $1 lamp ' || g, 1500 + g, brand => 'Zephyr', category_id => 2)
  FROM generate_series(1, 15) g;
SELECT shop.product_upsert('PT-' || g, 'Renamed $1 speaker ' || g, 999 + g) FROM generate_series(11, 20) g;
SELECT shop.product_upsert('PT-$1-3', 'Zephyr $1 lamp 3', 1503, status => 'archived');
SELECT shop.stock_set(product_id, 40) FROM shop.product WHERE sku LIKE 'PT-$1-%';
DO \$\$
DECLARE o uuid;
BEGIN
    -- one transaction per order, as a warehouse works: thirteen orders in
    -- one transaction lock their products' stock rows order after order,
    -- not in product order, and deadlocked with a client's checkout
    FOR o IN SELECT order_id FROM shop."order" WHERE status = 'paid' ORDER BY created_at LIMIT 8 LOOP
        PERFORM shop.order_transition(o, 'fulfilling');
        PERFORM shop.order_ship(o, 'UPS', '1Z' || left(o::text, 8));
        COMMIT;
    END LOOP;
    FOR o IN SELECT order_id FROM shop."order" WHERE status = 'paid' ORDER BY created_at DESC LIMIT 5 LOOP
        PERFORM shop.order_transition(o, 'cancelled', 'customer asked');
        COMMIT;
    END LOOP;
END
\$\$;
SQL
}
n_acked() { { cat "$T"/clients/ok-* 2>/dev/null || true; } | wc -l; }
wait_acked() {   # wait_acked N: until N more checkouts were acknowledged
    local base i
    base=$(n_acked)
    for i in $(seq 1 600); do
        [ "$(n_acked)" -ge $((base + $1)) ] && return 0
        sleep 0.1
    done
    bad "the clients stopped acknowledging checkouts"; exit 1
}
pids=()
for n in 1 2 3 4; do client $n & pids+=($!); done
wait_acked 40
office b
wait_acked 40

# 3. the point: clients paused between calls, so that what is committed
# is exactly what is recorded
touch "$PAUSE"
for i in $(seq 1 600); do
    [ "$(ls "$T"/clients/paused-* 2>/dev/null | wc -l)" = 4 ] && break
    sleep 0.05
done
[ "$(ls "$T"/clients/paused-* 2>/dev/null | wc -l)" = 4 ] || { bad "the clients did not pause"; exit 1; }
# a digest of every shop table (sorted: the planner may run the UNION ALL as
# a Parallel Append, whose rows come in any order), and the orders with their status
digests="SELECT string_agg(format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) FROM %s t',
                                  c.relname, '|', '', c.oid::regclass), ' UNION ALL ' ORDER BY c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p' \\gexec"
orders="SELECT order_id, status, total_cents, idempotency_key FROM shop.\"order\" ORDER BY order_id"
searches="SELECT 'search', string_agg(product_id || ':' || score || ':' || typos, ' ') FROM shop.search('zephyr lamp', lim => 40);
SELECT 'search renamed', string_agg(product_id || ':' || score || ':' || title, ' ') FROM shop.search('renamed speaker', lim => 40);
SELECT 'search wireless', string_agg(product_id || ':' || score, ' ') FROM shop.search('wireless', lim => 60);
SELECT 'search price', string_agg(product_id::text, ' ') FROM shop.search('lamp', '{\"category_id\": 2}', 'price_asc', 100);
SELECT 'search typo', string_agg(product_id || ':' || typos, ' ') FROM shop.search('zephir', lim => 20);
SELECT 'facets', shop.search_facets('lamp');
SELECT 'autocomplete', string_agg(suggestion || '/' || kind, ' ') FROM shop.autocomplete('zep');
SELECT 'did_you_mean', shop.did_you_mean('renamd speakr');
SELECT 'browse', string_agg(product_id::text, ' ') FROM shop.browse(2, 'newest', 60);
SELECT 'also_bought', string_agg(product_id || ':' || score, ' ') FROM shop.also_bought(21);"
echo "$digests" | P | sort >"$T/digests-point"
P -c "$orders" >"$T/orders-point"
echo "$searches" | PGOPTIONS="-c default_transaction_read_only=on" q "$PDIR" "$PPORT" pitr_web >"$T/searches-point"
point_lsn=$(P -c "SELECT pg_create_restore_point('pitr_point')")
rm -f "$PAUSE"
echo "the point: restore point pitr_point at WAL $point_lsn, $(wc -l <"$T/orders-point") orders"

# 4. phase C, then the primary is lost
wait_acked 40
office c
P -c "SELECT shop.refresh_recommendations()" >/dev/null
wait_acked 20
touch "$STOP"
for p in "${pids[@]}"; do wait "$p" || bad "a client failed (see $T/clients/session.*.err)"; done
end_orders=$(P -c "SELECT count(*) FROM shop.\"order\"")
end_event=$(P -c "SELECT max(event_id) FROM shop.event")   # what consumers of the lost primary saw last
# the last segment is archived too (what a running primary does within
# archive_timeout), then the primary is gone
last=$(P -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
P -c "SELECT pg_switch_wal()" >/dev/null
for i in $(seq 1 300); do
    [ -f "$ARCH/$last" ] && break
    sleep 0.1
done
[ -f "$ARCH/$last" ] || { bad "WAL segment $last was not archived"; exit 1; }
cluster_stop "$PDIR" immediate
echo "the primary is gone with $end_orders orders; the archive holds $(ls "$ARCH" | wc -l) files"

# 5. restore: the base backup, the archive, the target
as_owner cp -a "$BASE" "$RDIR/data"
{
    echo "port = $RPORT"
    echo "unix_socket_directories = '$RDIR'"
    echo "archive_mode = off"
    echo "restore_command = 'cp $ARCH/%f %p'"
    echo "recovery_target_name = 'pitr_point'"
    echo "recovery_target_action = 'promote'"
} | as_owner tee -a "$RDIR/data/postgresql.conf" >/dev/null
as_owner touch "$RDIR/data/recovery.signal"
t0=$(date +%s%N)
cluster_start "$RDIR"
for i in $(seq 1 1200); do
    [ "$(R -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && break
    sleep 0.05
done
t1=$(date +%s%N)
[ "$(R -c "SELECT pg_is_in_recovery()")" = f ] || { bad "the restored node did not finish recovery"; exit 1; }
replayed=$(R -c "SELECT pg_size_pretty(pg_wal_lsn_diff('$point_lsn', '$backup_lsn'))")
echo "recovery: $(( (t1 - t0) / 1000000 )) ms from start to a promoted node, $replayed of WAL replayed from the archive (not a pass/fail criterion)"
grep -q 'recovery stopping at restore point "pitr_point"' "$RDIR/server.log" &&
    ok "recovery stopped at the restore point" || bad "the server log does not say recovery stopped at pitr_point"

# 6. what the restored node holds
echo "$digests" | R | sort >"$T/digests-restored"
if diff "$T/digests-point" "$T/digests-restored" >"$T/digests.diff"; then
    ok "every shop table holds what it held at the point ($(wc -l <"$T/digests-point") tables)"
else
    bad "shop tables differ from the point (table|rows|md5, point < > restored):"; sed 's/^/    /' "$T/digests.diff"
fi
R -c "$orders" >"$T/orders-restored"
if diff -q "$T/orders-point" "$T/orders-restored" >/dev/null; then
    ok "exactly the $(wc -l <"$T/orders-point") orders committed before the point, with their status then (of $end_orders at the end)"
else
    bad "orders differ from the point: $(diff "$T/orders-point" "$T/orders-restored" | grep -c '^[<>]') lines"
fi
while IFS='|' read -r name n; do
    [ "$n" = 0 ] && ok "$name" || bad "$name: $n"
done < <(R -f "$TOP/test/include/invariants.sql")
echo "$searches" | PGOPTIONS="-c default_transaction_read_only=on" q "$RDIR" "$RPORT" pitr_web >"$T/searches-restored"
if diff "$T/searches-point" "$T/searches-restored" >"$T/searches.diff"; then
    ok "10 searches answer as the primary did at the point"
else
    bad "searches differ from the point:"; sed 's/^/    /' "$T/searches.diff" | head -20
fi
# event ids: the restored sequences stand near the point, so the node
# would hand out again ids the lost primary had given to events after it;
# the documented step moves the outbox's ids past what consumers saw
seq_at=$(R -c "SELECT last_value FROM pg_catalog.pg_sequences
                WHERE schemaname || '.' || sequencename = pg_get_serial_sequence('shop.event', 'event_id')")
echo "the restored outbox sequence stands at $seq_at; the lost primary's last event was $end_event"
R -c "SELECT setval(pg_get_serial_sequence('shop.event', 'event_id'), $end_event)" >/dev/null
order=$(q "$RDIR" "$RPORT" pitr_web -c "SET shop.session = '${TOKENS[10]}'" \
          -c "SELECT shop.checkout(public.pitr_cart(11, 1, 2), 'tok_visa', 'after-restore', '{\"country\": \"US\"}')") &&
    ok "the restored node takes checkouts (order $order)" || bad "no checkout on the restored node"
n=$(R -c "SELECT count(*) FROM shop.event WHERE payload ->> 'order_id' = '$order' AND event_id <= $end_event")
[ "$n" = 0 ] && ok "its events have ids above every event of the lost primary" ||
    bad "$n events of the new order reuse ids of the lost primary's events"
exit $fail
