#!/usr/bin/env bash
# pgbouncer: behind PgBouncer, one storefront client never acts as, or sees
# the rows of, the customer of another client that used the same server
# connection before it (docs/security.md, "Behind a connection pooler").
#
# A throwaway cluster with shop preloaded, and a PgBouncer of our own in
# front of it (unix socket in tmp_check/pgbouncer, auth_type trust), with
# one server connection per pool so that every client shares it:
#
#   shop_session  pool_mode=session: client A (customer 701) begins a
#                 session and leaves without shop.session_end(); client B
#                 gets the same server connection after PgBouncer's
#                 server_reset_query (DISCARD ALL) and must act for nobody.
#   shop_tx       pool_mode=transaction: clients A (801) and B (802) stay
#                 connected and take turns, transaction by transaction, on
#                 the one server connection; each states its customer per
#                 transaction (SET LOCAL shop.session, or shop.session_begin
#                 with shop.session_scope = 'transaction' for its role) and
#                 must never see the other's customer or rows.
#
# Both run the storefront flow (search, cart, checkout, order history).
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/pgbouncer"
PORT=$(free_port pgbouncer)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "shop.session_secret = 'pgbouncer test secret, thirty-two characters or more'"
cluster_start "$DIR"
BOUNCER_PID=""
cleanup() {
    local fd
    for fd in "${FD[@]:-}"; do [ -n "$fd" ] && eval "exec $fd>&-" 2>/dev/null || true; done
    [ -n "$BOUNCER_PID" ] && kill "$BOUNCER_PID" 2>/dev/null || true
    cluster_stop "$DIR" immediate
}
declare -A FD=() PIDS=()
trap cleanup EXIT
trap 'exit 1' INT TERM
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -v ON_ERROR_STOP=1 -q"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || { echo "pgbouncer is not installed (scripts/install-deps.sh installs it)"; exit 1; }

$PGBIN/createdb shop
$PSQL -d shop <<'SQL'
CREATE EXTENSION shop CASCADE;
SELECT shop.category_add('Mugs') AS cat \gset
SELECT shop.product_upsert('MUG-' || g, 'Coffee mug ' || g, 1000 + g, brand => 'Acme', category_id => :cat)
  FROM generate_series(1, 5) g;
SELECT count(shop.stock_set(product_id, 1000)) FROM shop.product;
-- two login roles of the storefront: web states its customer with
-- SET LOCAL / session_begin as it likes; web_tx is pinned to
-- transaction-scoped sessions by the DBA
CREATE ROLE web LOGIN IN ROLE shop_storefront;
CREATE ROLE web_tx LOGIN IN ROLE shop_storefront;
ALTER ROLE web_tx SET shop.session_scope = 'transaction';
SQL
token() { $PSQL -At -d shop -c "SELECT shop.session_token($1, '1 hour')"; }

# our own PgBouncer, only on a unix socket in $DIR
BPORT=$(free_port pgbouncer-bouncer)
[ "$BPORT" = "$PORT" ] && BPORT=$((PORT + 1))
cat >"$DIR/userlist.txt" <<EOF
"web" ""
"web_tx" ""
"postgres" ""
EOF
cat >"$DIR/pgbouncer.ini" <<EOF
[databases]
shop_session = host=$DIR port=$PORT dbname=shop pool_mode=session pool_size=1
shop_tx = host=$DIR port=$PORT dbname=shop pool_mode=transaction pool_size=1

[pgbouncer]
listen_addr =
listen_port = $BPORT
unix_socket_dir = $DIR
auth_type = trust
auth_file = $DIR/userlist.txt
default_pool_size = 1
max_client_conn = 20
server_reset_query = DISCARD ALL
logfile = $DIR/pgbouncer.log
pidfile = $DIR/pgbouncer.pid
EOF
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"/pgbouncer.ini "$DIR"/userlist.txt
rm -f "$DIR/pgbouncer.pid"
as_owner "$PGBOUNCER" -d "$DIR/pgbouncer.ini"
for _ in $(seq 1 100); do [ -s "$DIR/pgbouncer.pid" ] && [ -S "$DIR/.s.PGSQL.$BPORT" ] && break; sleep 0.1; done
BOUNCER_PID=$(cat "$DIR/pgbouncer.pid")
echo "cluster on $PORT, pgbouncer (pid $BOUNCER_PID) on $BPORT"

# Clients: a psql per client, kept connected, fed through a fifo.
# open NAME DB USER; q NAME SQL prints SQL's output; close NAME.
open() {
    local n=$1 fd
    rm -f "$DIR/$n.in"; mkfifo "$DIR/$n.in"; : >"$DIR/$n.out"
    # (the client must not inherit the other clients' fifo ends, or they
    # never see end of file)
    (
        for fd in "${FD[@]:-}"; do [ -n "$fd" ] && eval "exec $fd>&-"; done
        exec "$PGBIN/psql" -X -q -At -v VERBOSITY=terse -h "$DIR" -p "$BPORT" -U "$3" -d "$2" \
            <"$DIR/$n.in" >"$DIR/$n.out" 2>&1
    ) &
    PIDS[$n]=$!
    exec {fd}>"$DIR/$n.in"
    FD[$n]=$fd
}
q() {
    local n=$1 s
    # (q runs in command substitutions: the count lives in the output file)
    s=$(($(grep -c '^__end_' "$DIR/$n.out") + 1))
    printf '%s\n\\echo __end_%s\n' "$2" "$s" >&"${FD[$n]}"
    for _ in $(seq 1 600); do grep -qx "__end_$s" "$DIR/$n.out" && break; sleep 0.05; done
    grep -qx "__end_$s" "$DIR/$n.out" || { echo "client $n did not answer: $2"; exit 1; }
    awk -v a="__end_$((s - 1))" -v b="__end_$s" -v p=$((s == 1)) \
        '$0 == b { p = 0 } p { print } $0 == a { p = 1 }' "$DIR/$n.out"
}
close() {
    local n=$1
    eval "exec ${FD[$n]}>&-"
    FD[$n]=""
    wait "${PIDS[$n]}" || true
}

failures=0
# expect NAME WHAT SQL WANT: run SQL as client NAME, compare its output
expect() {
    local got
    got=$(q "$1" "$3")
    if [ "$got" = "$4" ]; then
        echo "ok   $1: $2"
    else
        echo "FAIL $1: $2"
        echo "     sql:  $3"
        echo "     want: $4"
        echo "     got:  $got"
        failures=$((failures + 1))
    fi
}
PIDQ="SELECT pg_backend_pid();"
SERVER_PIDS=""
server_pid() { SERVER_PIDS="$SERVER_PIDS $(q "$1" "$PIDQ" | tail -1)"; }
ORDERS_SEEN="SELECT coalesce(string_agg(DISTINCT customer_id::text, ','), 'none') FROM shop.\"order\";"
CARTS_SEEN="SELECT coalesce(string_agg(DISTINCT customer_id::text, ','), 'none') FROM shop.cart;"

echo "== session pooling"
T701=$(token 701); T702=$(token 702)
open A shop_session web
server_pid A
expect A "begins a session for 701" "SELECT shop.session_begin('$T701');" "701"
expect A "search" "SELECT count(*) FROM shop.search('coffee mug');" "5"
CART=$(q A "SELECT shop.cart_create(701);")
expect A "cart" "SELECT shop.cart_add('$CART', 1, 2); SELECT shop.cart_get('$CART')->>'item_count';" "
2"
expect A "checkout" "SELECT shop.checkout('$CART', 'tok_visa', 'a-1') IS NOT NULL;" "t"
expect A "order history" "SELECT count(*) FROM shop.orders_for(701);" "1"
expect A "sees its own order" "$ORDERS_SEEN" "701"
close A            # no shop.session_end(): PgBouncer's DISCARD ALL must do it
open B shop_session web
server_pid B
expect B "acts for nobody on A's server connection" "SELECT coalesce(shop.current_customer()::text, 'none');" "none"
expect B "sees no order" "$ORDERS_SEEN" "none"
expect B "sees no cart" "$CARTS_SEEN" "none"
expect B "cannot reach A's orders" "SELECT shop.orders_for(701);" "ERROR:  permission denied for customer 701"
expect B "cannot reach A's cart" "SELECT shop.cart_get('$CART') IS NOT NULL;" "ERROR:  permission denied for customer 701"
expect B "begins a session for 702" "SELECT shop.session_begin('$T702');" "702"
CART=$(q B "SELECT shop.cart_create(702);")
expect B "cart and checkout" "SELECT shop.cart_add('$CART', 2); SELECT shop.checkout('$CART', 'tok_visa', 'b-1') IS NOT NULL;" "
t"
expect B "order history" "SELECT count(*) FROM shop.orders_for(702);" "1"
expect B "sees only its own order" "$ORDERS_SEEN" "702"
close B
open A shop_session web
server_pid A
expect A "back again: acts for nobody" "SELECT coalesce(shop.current_customer()::text, 'none');" "none"
expect A "sees no order" "$ORDERS_SEEN" "none"
close A
n=$(echo $SERVER_PIDS | tr ' ' '\n' | sort -u | wc -l)
if [ "$n" = 1 ]; then echo "ok   the three clients shared one server connection"; else
    echo "FAIL the clients used $n server connections ($SERVER_PIDS): the test proves nothing"; failures=$((failures + 1)); fi

# tx_round USER HOW CA CB: clients A (customer CA) and B (CB), both logged in as USER,
# take turns on the one server connection of the shop_tx pool.  HOW is how
# they state their customer in each transaction: "local" (SET LOCAL
# shop.session / set_config(..., true)) or "begin" (shop.session_begin,
# which web_tx's shop.session_scope = 'transaction' holds to the transaction).
tx_round() {
    local user=$1 how=$2 ca=$3 cb=$4 a b ta tb
    ta=$(token "$ca"); tb=$(token "$cb")
    echo "== transaction pooling, $user, $how"
    SERVER_PIDS=""
    if [ "$how" = local ]; then
        a="SET LOCAL shop.session = '$ta'; SELECT shop.current_customer() IS NOT NULL;"
        b="SELECT set_config('shop.session', '$tb', true) IS NOT NULL;"
    else
        a="SELECT shop.session_begin('$ta') IS NOT NULL;"
        b="SELECT shop.session_begin('$tb') IS NOT NULL;"
    fi
    open A shop_tx "$user"
    open B shop_tx "$user"
    expect A "opens a cart for $ca in its transaction" "BEGIN; $a SELECT shop.current_customer(); SELECT shop.cart_create($ca) IS NOT NULL; COMMIT;" \
        "t
$ca
t"
    server_pid A
    server_pid B
    expect B "acts for nobody after A's transaction" "SELECT coalesce(shop.current_customer()::text, 'none');" "none"
    expect B "sees none of A's carts" "$CARTS_SEEN" "none"
    expect B "cannot list A's orders" "SELECT shop.orders_for($ca);" "ERROR:  permission denied for customer $ca"
    expect B "flow for $cb: search, cart, checkout, history" "BEGIN;
$b
SELECT shop.current_customer();
SELECT count(*) FROM shop.search('coffee mug');
SELECT shop.cart_create($cb) AS c \\gset
SELECT shop.cart_add(:'c', 3, 1);
SELECT shop.checkout(:'c', 'tok_visa', 'tx-$user-b') IS NOT NULL;
SELECT count(*) FROM shop.orders_for($cb);
$ORDERS_SEEN
COMMIT;" "t
$cb
5

t
1
$cb"
    server_pid B
    expect A "acts for nobody after B's transaction" "SELECT coalesce(shop.current_customer()::text, 'none');" "none"
    expect A "sees none of B's orders" "$ORDERS_SEEN" "none"
    expect A "flow for $ca: search, cart, checkout, history" "BEGIN;
$a
SELECT count(*) FROM shop.search('coffee mug');
SELECT c.cart_id AS c FROM shop.cart c WHERE c.customer_id = $ca ORDER BY c.created_at DESC LIMIT 1 \\gset
SELECT shop.cart_add(:'c', 4, 2);
SELECT shop.checkout(:'c', 'tok_visa', 'tx-$user-a') IS NOT NULL;
SELECT count(*) FROM shop.orders_for($ca);
$ORDERS_SEEN
COMMIT;" "t
5

t
1
$ca"
    server_pid A
    expect B "acts for nobody after A's flow" "SELECT coalesce(shop.current_customer()::text, 'none'); $ORDERS_SEEN" "none
none"
    if [ "$how" = begin ]; then
        # web_tx is held to transaction scope whatever the client does
        expect A "an autocommit session_begin lasts one statement" "SELECT shop.session_begin('$ta'); SELECT coalesce(shop.current_customer()::text, 'none');" "$ca
none"
        expect A "a plain SET lasts one transaction" "SET shop.session = '$ta'; SELECT coalesce(shop.current_customer()::text, 'none');" "none"
        server_pid A
        expect B "and B, next, acts for nobody" "SELECT coalesce(shop.current_customer()::text, 'none'); $ORDERS_SEEN" "none
none"
        server_pid B
    fi
    close A
    close B
    n=$(echo $SERVER_PIDS | tr ' ' '\n' | sort -u | wc -l)
    if [ "$n" = 1 ]; then echo "ok   A and B shared one server connection"; else
        echo "FAIL A and B used $n server connections ($SERVER_PIDS): the test proves nothing"; failures=$((failures + 1)); fi
}
tx_round web local 801 802
tx_round web_tx begin 811 812

echo
if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed; pgbouncer log:"; tail -20 "$DIR/pgbouncer.log"; exit 1
fi
echo "all checks passed"
