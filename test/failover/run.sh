#!/usr/bin/env bash
# failover: kill -9 of a primary with a synchronous standby under checkout
# load, promotion of the standby, clients retrying with their idempotency
# keys.  docs/operations.md, "Replicas and failover", is the procedure this
# test follows.
#
#   1. A primary and a hot standby made with pg_basebackup -R, the standby
#      named in synchronous_standby_names (synchronous_commit = on).
#   2. The storefront's read calls (search, search_facets, autocomplete,
#      did_you_mean, browse, product_get, also_bought, ...) work on the hot
#      standby as shop_storefront and answer as the primary does; the
#      writing calls are refused there (read-only transaction).
#   3. Load: storefront clients (role shop_storefront, each with a session
#      token) fill a cart, then check it out with an idempotency key; a
#      back-office client edits the catalog; a consumer group claims and
#      acknowledges the outbox.  Each client writes down what the server
#      acknowledged.  Searches are recorded on the primary.
#   4. kill -9 of the primary's postmaster and all its processes, mid-load;
#      the standby is promoted; each client retries its unanswered call
#      against the new primary: a checkout with the same cart and key.
#      One checkout committed before the kill while its client was gone
#      (killed while the call waited for the cart's lock): its retry must
#      return the order it made.
#   5. On the new primary: every acknowledged checkout's order exists
#      exactly once; each retried key has exactly one order, the one the
#      retry returned; every acknowledged catalog edit is there; the
#      invariants of test/include/invariants.sql hold (orders whole,
#      reserved = live holds, one order per key, search_verify clean); the
#      recorded searches answer the same; the consumer group gets every
#      event owed to it and none as new twice; the sweeper runs there and
#      cancels a pending order whose holds expired; the events worker
#      wakes a listener after a checkout.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
T="$TOP/tmp_check/failover"
PDIR="$T/primary"
SDIR="$T/standby"
PPORT=$(free_port failover_p)
SPORT=$(free_port failover_s)
[ "$SPORT" = "$PPORT" ] && SPORT=$((SPORT + 1))
SECRET="failover-test-secret-0123456789abcdef"
rm -rf "$T"
# The sweeper waits an hour on both nodes until step 5 asks it to run.
# fsync = off: the test kills processes, not the machine, so nothing
# written to the kernel is lost (synchronous commits still wait for the
# standby to receive and write the commit record).
cluster_init "$PDIR" "$PPORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "fsync = off" \
    "max_connections = 60" "wal_level = replica" "max_wal_senders = 4" \
    "shop.session_secret = '$SECRET'"
cluster_start "$PDIR"
trap 'cluster_stop "$SDIR" immediate; cluster_stop "$PDIR" immediate' EXIT
rm -rf "$SDIR"; mkdir -p "$SDIR"
[ "$(id -u)" = 0 ] && chown postgres: "$SDIR" "$T"
mkdir -p "$T/clients"

q() {   # q DIR PORT USER [psql args...]: psql to the shop database
    local dir=$1 port=$2 user=$3; shift 3
    "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U "$user" -d fo "$@"
}
P() { q "$PDIR" "$PPORT" postgres "$@"; }
S() { q "$SDIR" "$SPORT" postgres "$@"; }
fail=0
ok() { echo "ok   $*  [${SECONDS}s]"; }
bad() { echo "FAIL $*"; fail=1; }

"$PGBIN/createdb" -h "$PDIR" -p "$PPORT" -U postgres fo
P >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE ROLE web LOGIN IN ROLE shop_storefront;
CREATE ROLE backoffice LOGIN IN ROLE shop_admin;
SELECT shop.category_add('Audio') AS audio, shop.category_add('Lighting') AS lighting,
       shop.category_add('Kitchen') AS kitchen \gset
-- 300 products from a small vocabulary, so searches have many answers
SELECT count(shop.product_upsert(
           'FO-' || g,
           (ARRAY['wireless', 'compact', 'steel', 'portable', 'classic', 'smart'])[1 + g % 6] || ' ' ||
           (ARRAY['speaker', 'lamp', 'kettle', 'headphones', 'toaster'])[1 + g % 5] || ' ' || g,
           500 + (g * 137) % 40000,
           description => 'model ' || g || ' with ' || (ARRAY['bluetooth', 'timer', 'dimmer', 'battery'])[1 + g % 4],
           brand => (ARRAY['Acme', 'Bolt', 'Corvo', 'Dune'])[1 + g % 4],
           category_id => (ARRAY[:audio, :lighting, :kitchen])[1 + g % 3]))
  FROM generate_series(1, 302) g;
SELECT count(shop.stock_set(product_id, 100000)) FROM shop.product;
SELECT shop.stock_set_buckets(1, 4);            -- a hot product spread over buckets
-- some history, so that also_bought and recommend have something to say
DO $$
DECLARE c uuid;
BEGIN
    FOR i IN 1..40 LOOP
        c := shop.cart_create(1 + i % 9);
        PERFORM shop.cart_add(c, 1 + i % 11), shop.cart_add(c, 2 + i % 7);
        PERFORM shop.checkout(c, 'tok_visa', 'history-' || i, '{"country": "US"}');
    END LOOP;
END
$$;
SELECT shop.refresh_recommendations();
SELECT shop.view(1, 5), shop.view(1, 6);
-- a client's first step: a cart of three lines (products 1..300), as the
-- storefront for its session's customer
CREATE FUNCTION public.fo_cart(c bigint, p1 bigint, p2 bigint, p3 bigint) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE cart uuid := shop.cart_create(c);
BEGIN
    PERFORM shop.cart_add(cart, p1), shop.cart_add(cart, p2, 2), shop.cart_add(cart, p3);
    RETURN cart;
END
$$;
CHECKPOINT;
SQL
# session tokens of customers 1..40, one per line
P -c "SELECT shop.session_token(c) FROM generate_series(1, 40) c ORDER BY c" >"$T/tokens"
mapfile -t TOKENS <"$T/tokens"
token() { echo "${TOKENS[$(($1 - 1))]}"; }

# 1. the synchronous standby
as_owner "$PGBIN/pg_basebackup" -h "$PDIR" -p "$PPORT" -U postgres -D "$SDIR/data" -X stream -c fast \
    -R -d "application_name=fo_standby"
{
    echo "port = $SPORT"
    echo "unix_socket_directories = '$SDIR'"
    echo "hot_standby = on"
} | as_owner tee -a "$SDIR/data/postgresql.conf" >/dev/null
grep -q "application_name=fo_standby" "$SDIR/data/postgresql.auto.conf" ||
    echo "primary_conninfo = 'host=$PDIR port=$PPORT user=postgres application_name=fo_standby'" |
        as_owner tee -a "$SDIR/data/postgresql.auto.conf" >/dev/null
cluster_start "$SDIR"
# on the primary only (postgresql.auto.conf is not replicated): a promoted
# standby must not wait for a standby of its own
P -c "ALTER SYSTEM SET synchronous_standby_names = 'fo_standby'" -c "SELECT pg_reload_conf()" >/dev/null
for i in $(seq 1 100); do
    [ "$(P -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'fo_standby'")" = sync ] && break
    sleep 0.1
done
[ "$(P -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'fo_standby'")" = sync ] ||
    { bad "the standby is not synchronous"; exit 1; }
ok "standby streaming, synchronous (synchronous_standby_names = 'fo_standby', synchronous_commit = $(P -c 'SHOW synchronous_commit'))"

# 2. the storefront's reads on the hot standby, as shop_storefront with a
#    session; read-only transactions on the primary, so nothing is logged
#    there either and both sides see the same search log
P -c "SELECT 1 FROM shop.cart_create(1)" >/dev/null   # a cart for cart_get
cart1=$(P -c "SELECT cart_id FROM shop.cart WHERE customer_id = 1 ORDER BY created_at DESC LIMIT 1")
order1=$(P -c "SELECT order_id FROM shop.\"order\" WHERE customer_id = 1 ORDER BY created_at LIMIT 1")
lsn=$(P -c "SELECT pg_current_wal_lsn()")
for i in $(seq 1 100); do
    [ "$(S -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
done
reads="SET shop.session = '$(token 1)';
SELECT 'search', string_agg(product_id || ':' || score || ':' || typos, ' ') FROM shop.search('wireless speaker');
SELECT 'search personal', string_agg(product_id::text, ' ') FROM shop.search('lamp', customer_id => 1);
SELECT 'search filtered', string_agg(product_id::text, ' ') FROM shop.search('kettle', '{\"brand\": \"Bolt\", \"price_max\": 20000}', 'price_asc', 50);
SELECT 'search typo', string_agg(product_id || ':' || typos, ' ') FROM shop.search('speakr', lim => 10);
SELECT 'facets', shop.search_facets('portable');
SELECT 'autocomplete', string_agg(suggestion || '/' || kind, ' ') FROM shop.autocomplete('sma');
SELECT 'did_you_mean', shop.did_you_mean('wireles lamp');
SELECT 'browse', string_agg(product_id::text, ' ') FROM shop.browse(2, 'price_asc', 30);
SELECT 'product_get', shop.product_get(7) - 'availability';
SELECT 'also_bought', string_agg(product_id || ':' || score, ' ') FROM shop.also_bought(2);
SELECT 'similar_products', string_agg(product_id::text, ' ') FROM shop.similar_products(3);
SELECT 'trending', count(*) FROM shop.trending();
SELECT 'recommend', string_agg(product_id::text, ' ') FROM shop.recommend(1);
SELECT 'recently_viewed', string_agg(product_id::text, ' ') FROM shop.recently_viewed(1);
SELECT 'stock_available', shop.stock_available(300);
SELECT 'cart_get', shop.cart_get('$cart1') - 'expires_at';
SELECT 'order_get', shop.order_get('$order1') ->> 'status';
SELECT 'orders_for', count(*) FROM shop.orders_for(1);
SELECT 'category_path', shop.category_path(2);"
pread=$(echo "$reads" | PGOPTIONS="-c default_transaction_read_only=on" q "$PDIR" "$PPORT" web 2>&1)
sread=$(echo "$reads" | q "$SDIR" "$SPORT" web 2>&1) || true
if [ "$pread" = "$sread" ] && [ "$(echo "$sread" | wc -l)" = 19 ]; then
    ok "19 storefront reads on the hot standby as shop_storefront answer as on the primary"
else
    bad "storefront reads on the hot standby differ from the primary's:"
    diff <(echo "$pread") <(echo "$sread") | sed 's/^/    /'
fi
logged=$(P -c "SELECT count(*) FROM shop.search_log")
echo "$reads" | q "$SDIR" "$SPORT" web >/dev/null
[ "$(P -c "SELECT count(*) FROM shop.search_log")" = "$logged" ] &&
    ok "searches on the standby are answered and not logged (the primary's search_log has $logged rows)" ||
    bad "the standby's searches changed the primary's search log"
writes=0
for call in "SELECT shop.cart_create(1)" "SELECT shop.cart_add('$cart1', 3)" \
            "SELECT shop.checkout('$cart1', 'tok_visa', 'on-standby')" "SELECT shop.view(1, 9)"; do
    out=$(q "$SDIR" "$SPORT" web -c "SET shop.session = '$(token 1)'" -c "$call" 2>&1) && writes=$((writes + 1))
    echo "$out" | grep -q "read-only transaction" || { bad "a write on the standby: $call: $out"; writes=$((writes + 1)); }
done
[ "$writes" = 0 ] && ok "writing calls on the standby are refused (cannot execute ... in a read-only transaction)"

# 3. load
# a pending order (gateway token) whose holds last 10 s: the promoted
# node's sweeper must cancel it
P >/dev/null <<'SQL'
SET shop.reservation_ttl = '10s';
SELECT shop.cart_create(40) AS c \gset
SELECT shop.cart_add(:'c', 301);
SELECT shop.checkout(:'c', 'stripe:pm_failover', 'fo-pending', '{"country": "US"}');
SQL
# the consumer group: created now, owes every event committed from here on
first_owed=$(P -c "SELECT coalesce(max(event_id), 0) + 1 FROM shop.event")
q "$PDIR" "$PPORT" backoffice -c "SELECT count(*) FROM shop.event_claim('fo_mailer', 'm1')" >/dev/null
STOP="$T/stop"
rm -f "$STOP"

# Each client keeps one connection, as an application's pool would: a psql
# of its own on fds 3 (statements in) and 4 (one line of answer out).  A
# call fails when the server goes away (psql exits, the read sees EOF).
session_open() {   # session_open USER
    local f="$T/clients/session.$BASHPID"
    trap '' PIPE   # a write to a psql that exited fails instead of killing the client
    mkfifo "$f.in" "$f.out"
    q "$PDIR" "$PPORT" "$1" <"$f.in" >"$f.out" 2>>"$f.err" &
    exec 3>"$f.in" 4<"$f.out"
}
call() {   # call SQL: its one line of answer in REPLY
    echo "$1" >&3 2>/dev/null || return 1
    read -r -t 60 REPLY <&4
}
# client N acts for customer 10 + N: a cart (committed), then its checkout
# with a key; each acknowledged checkout goes to ok-N as "key customer
# cart order", the call that got no answer to inflight-N
checkout_client() {
    local n=$1 i=0 cust=$((10 + $1)) key cart
    session_open web
    call "SELECT set_config('shop.session', '$(token $cust)', false) IS NOT NULL;"
    while [ ! -e "$STOP" ]; do
        i=$((i + 1)); key="fo-$n-$i"
        call "SELECT public.fo_cart($cust, $((1 + RANDOM % 300)), $((1 + RANDOM % 300)), $((1 + RANDOM % 300)));" ||
            { echo "cart $key $cust" >"$T/clients/inflight-$n"; return; }
        cart=$REPLY
        call "SELECT shop.checkout('$cart', 'tok_visa', '$key', '{\"country\": \"US\"}');" ||
            { echo "checkout $key $cust $cart" >"$T/clients/inflight-$n"; return; }
        echo "$key $cust $cart $REPLY" >>"$T/clients/ok-$n"
    done
}
# the back office: 30 catalog edits (new products, then new titles and
# prices for some of them), each acknowledged one written to catalog-ok;
# then it stops, and the searches are recorded on the primary
catalog_client() (
    session_open backoffice
    for i in $(seq 1 30); do
        if [ "$i" -le 20 ]; then
            call "SELECT shop.product_upsert('ZP-$i', 'Zephyr lamp $i', $((1000 + i)), brand => 'Zephyr', category_id => 2);"
        else
            call "SELECT shop.product_upsert('ZP-$((i - 20))', 'Zephyr desk lamp $i', $((3000 + i)));"
        fi || exit 1
        echo "ZP-$((i > 20 ? i - 20 : i)) $i" >>"$T/clients/catalog-ok"
    done
)
# the consumer: claims a batch, writes "event_id redelivered" per event
# to delivered, acknowledges; until its connection fails
consumer() {
    local batch events
    session_open backoffice
    while [ ! -e "$STOP" ]; do
        call "SELECT coalesce(min(batch_id) || ' ' || string_agg(event_id || ':' || redelivered, ','), '')
                FROM shop.event_claim('fo_mailer', 'm1', 50);" || return 0
        if [ -z "$REPLY" ]; then sleep 0.05; continue; fi
        read -r batch events <<<"$REPLY"
        echo "$events" | tr ',:' '\n ' >>"$T/clients/delivered"
        call "SELECT shop.event_ack('fo_mailer', $batch);" || return 0
    done
}
touch "$T/clients/delivered" "$T/clients/catalog-ok"
pids=()
for n in 1 2 3 4 5 6; do checkout_client $n & pids+=($!); done
consumer & pids+=($!)
catalog_client || bad "a catalog edit failed"
# the searches as the primary answers them now (the catalog no longer
# changes: checkouts do not touch what searches read, and the sweeper,
# which refreshes popularity, waits), in read-only transactions
searches="SELECT 'search', string_agg(product_id || ':' || score || ':' || typos || ':' || missing_words, ' ') FROM shop.search('wireless speaker', lim => 40);
SELECT 'search any', string_agg(product_id || ':' || score, ' ') FROM shop.search('steel kettle timer', lim => 40);
SELECT 'search zephyr', string_agg(product_id || ':' || score || ':' || title, ' ') FROM shop.search('zephyr lamp', lim => 40);
SELECT 'search price', string_agg(product_id::text, ' ') FROM shop.search('lamp', '{\"category_id\": 2}', 'price_desc', 100);
SELECT 'search typo', string_agg(product_id || ':' || typos, ' ') FROM shop.search('headphnes', lim => 20);
SELECT 'facets', shop.search_facets('lamp');
SELECT 'facets zephyr', shop.search_facets('zephyr');
SELECT 'autocomplete', string_agg(suggestion || '/' || kind, ' ') FROM shop.autocomplete('zep');
SELECT 'did_you_mean', shop.did_you_mean('zephir lampp');
SELECT 'browse', string_agg(product_id::text, ' ') FROM shop.browse(2, 'newest', 50);"
before=$(echo "$searches" | PGOPTIONS="-c default_transaction_read_only=on" q "$PDIR" "$PPORT" web)
# a checkout whose answer is lost: its client dies while the call waits
# for the cart's lock (held by another session), then the call goes on and
# commits; the client's retry on the new primary must get that order back
lostcart=$(P -c "SELECT public.fo_cart(20, 302, 302, 302)")
mkfifo "$T/locker.in"
P <"$T/locker.in" >/dev/null 2>&1 &
locker=$!
exec 5>"$T/locker.in"
echo "BEGIN; SELECT 1 FROM shop.cart WHERE cart_id = '$lostcart' FOR UPDATE;" >&5
for i in $(seq 1 200); do
    [ "$(P -c "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE '%FOR UPDATE%'")" = 1 ] && break
    sleep 0.05
done
q "$PDIR" "$PPORT" web -c "SET shop.session = '$(token 20)'" \
  -c "SELECT shop.checkout('$lostcart', 'tok_visa', 'fo-lost', '{\"country\": \"US\"}')" >"$T/lost.out" 2>&1 &
lostclient=$!
for i in $(seq 1 200); do
    [ "$(P -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%fo-lost%'")" = 1 ] && break
    sleep 0.05
done
kill -9 "$lostclient" || { bad "the checkout did not wait for the cart's lock: $(cat "$T/lost.out")"; exit 1; }
wait "$lostclient" 2>/dev/null || true
echo "COMMIT;" >&5
exec 5>&-
wait "$locker"
lost_order=
for i in $(seq 1 200); do
    lost_order=$(P -c "SELECT order_id FROM shop.\"order\" WHERE idempotency_key = 'fo-lost'")
    [ -n "$lost_order" ] && break
    sleep 0.05
done
[ -n "$lost_order" ] && ok "a checkout whose client died committed (order $lost_order); its answer is lost" ||
    bad "the checkout whose client died did not commit"
echo "checkout fo-lost 20 $lostcart" >"$T/clients/inflight-lost"

# let the checkouts run until at least 100 more are acknowledged, then kill
n_acked() { { cat "$T"/clients/ok-* 2>/dev/null || true; } | wc -l; }
base=$(n_acked)
for i in $(seq 1 600); do
    [ "$(n_acked)" -ge $((base + 100)) ] && break
    sleep 0.1
done

# 4. kill -9 of the primary's postmaster and of every process it started
pm=$(head -1 "$PDIR/data/postmaster.pid")
kids=$(for f in /proc/[0-9]*/stat; do
           read -r p _ _ pp _ 2>/dev/null <"$f" && [ "$pp" = "$pm" ] && echo "$p"
       done | tr '\n' ' '; true)
kill -9 "$pm" $kids 2>/dev/null || true
t_kill=$(date +%s%N)
touch "$STOP"
for p in "${pids[@]}"; do wait "$p" || true; done
acked=$(n_acked)
inflight=$({ cat "$T"/clients/inflight-* 2>/dev/null || true; } | wc -l)
echo "killed the primary with $acked checkouts acknowledged, $inflight calls unanswered, $(wc -l <"$T/clients/delivered") events delivered"
for n in $(seq 1 100); do
    alive=0
    for p in $pm $kids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
done
as_owner "$PGBIN/pg_ctl" -D "$SDIR/data" -w -t 60 promote >/dev/null
t_promoted=$(date +%s%N)
echo "failover: $(( (t_promoted - t_kill) / 1000000 )) ms from the kill to a promoted, writable standby (not a pass/fail criterion)"
[ "$(S -c "SELECT pg_is_in_recovery()")" = f ] && ok "the standby is promoted" || bad "the standby is still in recovery"

# the clients retry their unanswered call on the new primary: the same
# cart and key (a cart whose creation got no answer is made again)
: >"$T/clients/retried"
committed=0
for f in "$T"/clients/inflight-*; do
    [ -e "$f" ] || continue
    read -r what key cust cart <"$f"
    if [ "$what" = checkout ] &&
       [ "$(S -c "SELECT count(*) FROM shop.\"order\" WHERE idempotency_key = '$key' AND customer_id = $cust")" = 1 ]; then
        committed=$((committed + 1))
    fi
    if [ "$what" = cart ]; then
        cart=$(q "$SDIR" "$SPORT" web -c "SET shop.session = '$(token $cust)'" -c "SELECT public.fo_cart($cust, 5, 6, 7)")
    fi
    order=$(q "$SDIR" "$SPORT" web -c "SET shop.session = '$(token $cust)'" \
              -c "SELECT shop.checkout('$cart', 'tok_visa', '$key', '{\"country\": \"US\"}')") ||
        { bad "retry of $key on the new primary failed"; continue; }
    echo "$key $cust $cart $order" >>"$T/clients/retried"
done
[ "$fail" = 0 ] && ok "$inflight unanswered calls retried on the new primary with their keys ($committed of them had committed on the standby before the kill: the retry returned that order)"

# 5. what the new primary holds
S >/dev/null <<SQL
CREATE TEMP TABLE acked (key text, customer_id bigint, cart_id uuid, order_id uuid);
CREATE TEMP TABLE retried (LIKE acked);
\copy acked FROM program 'cat $T/clients/ok-*' WITH (DELIMITER ' ')
\copy retried FROM '$T/clients/retried' WITH (DELIMITER ' ')
CREATE TABLE public.fo_acked AS SELECT * FROM acked;
CREATE TABLE public.fo_retried AS SELECT * FROM retried;
SQL
check() {   # check NAME SQL: the SQL counts violations
    local n
    n=$(S -c "$2")
    [ "$n" = 0 ] && ok "$1" || bad "$1: $n"
}
check "every acknowledged checkout's order exists exactly once ($acked)" \
    "SELECT count(*) FROM public.fo_acked a
      WHERE (SELECT count(*) FROM shop.\"order\" o
              WHERE o.idempotency_key = a.key AND o.customer_id = a.customer_id) <> 1
         OR NOT EXISTS (SELECT 1 FROM shop.\"order\" o WHERE o.order_id = a.order_id
                           AND o.idempotency_key = a.key AND o.cart_id = a.cart_id)"
[ "$(S -c "SELECT order_id FROM public.fo_retried WHERE key = 'fo-lost'")" = "$lost_order" ] &&
    ok "the retry of the checkout whose answer was lost returned the order it had made" ||
    bad "the retry of fo-lost did not return $lost_order"
check "every retried key has exactly one order, the one its retry returned" \
    "SELECT count(*) FROM public.fo_retried r
      WHERE (SELECT count(*) FROM shop.\"order\" o
              WHERE o.idempotency_key = r.key AND o.customer_id = r.customer_id) <> 1
         OR NOT EXISTS (SELECT 1 FROM shop.\"order\" o WHERE o.order_id = r.order_id AND o.idempotency_key = r.key)"
check "no order of the load that no client made" \
    "SELECT count(*) FROM shop.\"order\" o WHERE (o.idempotency_key LIKE 'fo-%-%' OR o.idempotency_key = 'fo-lost')
        AND o.idempotency_key NOT IN (SELECT key FROM public.fo_acked UNION ALL SELECT key FROM public.fo_retried)"
while IFS='|' read -r name n; do
    [ "$n" = 0 ] && ok "$name" || bad "$name: $n"
done < <(S -f "$TOP/test/include/invariants.sql")
n=$(S -c "SELECT count(*) FILTER (WHERE title = 'Zephyr lamp ' || substr(sku, 4) AND price_cents = 1000 + substr(sku, 4)::int)
                 || ' ' || count(*) FILTER (WHERE title = 'Zephyr desk lamp ' || (20 + substr(sku, 4)::int)
                                              AND price_cents = 3020 + substr(sku, 4)::int)
              FROM shop.product WHERE sku LIKE 'ZP-%'")
[ "$(wc -l <"$T/clients/catalog-ok")" = 30 ] && [ "$n" = "10 10" ] &&
    ok "the 30 acknowledged catalog edits are there (20 products, 10 of them edited again)" ||
    bad "the catalog edits: $n (original, edited) Zephyr products, 10 10 expected"
after=$(echo "$searches" | PGOPTIONS="-c default_transaction_read_only=on" q "$SDIR" "$SPORT" web)
if [ "$before" = "$after" ]; then
    ok "10 searches (search, facets, autocomplete, did_you_mean, browse) answer as on the old primary before the kill"
else
    bad "searches differ from the old primary's answers before the kill:"
    diff <(echo "$before") <(echo "$after") | sed 's/^/    /' | head -20
fi

# the consumer group, drained on the new primary, got every event it is
# owed, none as new twice, and nothing the new primary does not have
for i in $(seq 1 200); do
    out=$(q "$SDIR" "$SPORT" backoffice -F ' ' \
            -c "SELECT batch_id, event_id, redelivered FROM shop.event_claim('fo_mailer', 'm1', 500)")
    [ -z "$out" ] && break
    echo "$out" | cut -d' ' -f2,3 >>"$T/clients/delivered"
    q "$SDIR" "$SPORT" backoffice -c "SELECT shop.event_ack('fo_mailer', $(echo "$out" | head -1 | cut -d' ' -f1))" >/dev/null
done
S >/dev/null <<SQL
CREATE TABLE public.fo_delivered (event_id bigint, redelivered boolean);
\copy public.fo_delivered FROM '$T/clients/delivered' WITH (DELIMITER ' ')
SQL
check "the consumer group got every event it is owed (from event $first_owed)" \
    "SELECT count(*) FROM shop.event e WHERE e.event_id >= $first_owed
        AND NOT EXISTS (SELECT 1 FROM public.fo_delivered d WHERE d.event_id = e.event_id)"
check "no event delivered as new twice" \
    "SELECT count(*) FROM (SELECT event_id FROM public.fo_delivered WHERE NOT redelivered
                            GROUP BY event_id HAVING count(*) > 1) d"
check "no event delivered that the new primary does not have" \
    "SELECT count(*) FROM public.fo_delivered d WHERE NOT EXISTS (SELECT 1 FROM shop.event e WHERE e.event_id = d.event_id)"
check "every acknowledged checkout's order.created event was delivered" \
    "SELECT count(*) FROM public.fo_acked a
      WHERE NOT EXISTS (SELECT 1 FROM shop.event e JOIN public.fo_delivered d USING (event_id)
                         WHERE e.topic = 'order.created' AND e.payload ->> 'order_id' = a.order_id::text)"
echo "events: $(S -c "SELECT count(*) FROM shop.event WHERE event_id >= $first_owed") owed, $(wc -l <"$T/clients/delivered") deliveries ($(grep -c ' t$' "$T/clients/delivered" || true) redelivered)"

# the sweeper: its launcher starts when recovery ends; asked to run now
# (an interval of 1 s), it cancels the pending order whose holds expired
for i in $(seq 1 100); do
    n=$(S -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shop sweeper launcher'")
    [ "$n" = 1 ] && break
    sleep 0.1
done
[ "$n" = 1 ] && ok "the sweeper's launcher runs on the promoted node" || bad "sweeper launchers on the promoted node: $n"
S -c "ALTER SYSTEM SET shop.sweep_interval = 1" -c "SELECT pg_reload_conf()" >/dev/null
status=
for i in $(seq 1 300); do
    status=$(S -c "SELECT status FROM shop.\"order\" WHERE idempotency_key = 'fo-pending'")
    [ "$status" = cancelled ] && break
    sleep 0.1
done
if [ "$status" = cancelled ] &&
   [ "$(S -c "SELECT note FROM shop.order_event e JOIN shop.\"order\" o USING (order_id)
               WHERE o.idempotency_key = 'fo-pending' ORDER BY seq DESC LIMIT 1")" = "reservation expired" ] &&
   grep -q 'shop sweep in database "fo"' "$SDIR/server.log"; then
    ok "the promoted node's sweeper cancelled the pending order whose holds expired"
else
    bad "the pending order with expired holds is '$status' on the promoted node"
fi
check "stock rows where reserved <> the sum of live holds, after the sweep" \
    "SELECT count(*) FROM shop.stock s
      WHERE s.reserved <> coalesce((SELECT sum(r.qty) FROM shop.reservation r
                                     WHERE r.product_id = s.product_id AND r.location = s.location
                                       AND r.bucket = s.bucket AND r.status = 'held'), 0)"

# the events worker: a checkout on the new primary wakes a listener
out=$(q "$SDIR" "$SPORT" postgres 2>&1 <<SQL
LISTEN shop_events;
SELECT shop.cart_create(2) AS c \gset
SELECT shop.cart_add(:'c', 9);
SELECT 1 FROM shop.checkout(:'c', 'tok_visa', 'fo-after', '{"country": "US"}');
SELECT pg_sleep(0.5);
SELECT pg_sleep(0.5);
SELECT pg_sleep(0.5);
SELECT pg_sleep(0.5);
SELECT 1;
SQL
)
if echo "$out" | grep -q 'notification "shop_events" with payload "{"last_event_id"'; then
    ok "the events worker of the promoted node wakes listeners (a batch notification after a checkout)"
else
    bad "no batch notification on the promoted node:"; echo "$out" | sed 's/^/    /'
fi
S -c "SELECT status, count(*) FROM shop.\"order\" GROUP BY 1 ORDER BY 1" | tr '\n' ' '; echo
exit $fail
