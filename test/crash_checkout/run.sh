#!/usr/bin/env bash
# crash_checkout: kill the server (pg_ctl stop -m immediate) in the middle of
# a pgbench checkout load, restart it, and check that recovery left every
# order whole and the stock exact:
#   - every order has its lines, exactly one payment, and its events
#     (event_count of them, numbered 1..n, the first "pending");
#   - for every stock row, reserved = the sum of its live (held) holds,
#     and 0 <= reserved <= on_hand;
#   - units that left the building = units of committed holds;
#   - the status of each order matches its holds (paid: held, shipped:
#     committed, cancelled: none held);
#   - every idempotency key points at its order;
#   - checkout still works after recovery.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/crash_checkout"
PORT=$(free_port crash_checkout)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "max_connections = 50"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -v ON_ERROR_STOP=1 -q -d crash"

$PGBIN/createdb crash
$PSQL >/dev/null <<'SQL'
CREATE EXTENSION shop CASCADE;
SELECT count(shop.product_upsert('CR-' || g, 'Crash product ' || g, 100 + g)) FROM generate_series(1, 300) g;
SELECT count(shop.stock_set(product_id, 100000)) FROM shop.product;
-- one hot product spread over buckets
SELECT shop.stock_set_buckets(1, 4);
-- one pgbench transaction: a 3-line cart checked out; some orders are then
-- cancelled or shipped in the same transaction, some wait for a gateway
CREATE FUNCTION public.crash_checkout(c bigint, p1 bigint, p2 bigint, p3 bigint, r int)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cart uuid := shop.cart_create(c);
    o uuid;
BEGIN
    PERFORM shop.cart_add(cart, p1), shop.cart_add(cart, p2, 2), shop.cart_add(cart, p3);
    o := shop.checkout(cart, CASE WHEN r <= 2 THEN 'stripe:pm_' || c ELSE 'tok_visa' END,
                       'key-' || cart, '{"country": "US"}');
    IF r = 1 THEN
        PERFORM shop.payment_confirm(o, 'ch_' || c);
    ELSIF r = 3 THEN
        PERFORM shop.order_transition(o, 'cancelled');
    ELSIF r = 4 THEN
        PERFORM shop.order_transition(o, 'fulfilling');
        PERFORM shop.order_ship(o, 'UPS', '1Z' || c);
    END IF;
END
$$;
SQL
total_before=$($PSQL -At -c "SELECT sum(on_hand) FROM shop.stock")

cat >"$DIR/checkout.sql" <<'EOF2'
\set c random(1, 1000000)
\set p1 random(1, 300)
\set p2 random(1, 300)
\set p3 random(1, 300)
\set r random(1, 10)
SELECT public.crash_checkout(:c, :p1, :p2, :p3, :r);
EOF2

# load, then kill the server under it
as_owner "$PGBIN/pgbench" -n -c 8 -j 4 -T 60 -f "$DIR/checkout.sql" -h "$PGHOST" -p "$PORT" -U postgres crash \
    >"$DIR/pgbench.log" 2>&1 &
bench=$!
sleep 6
before=$($PSQL -At -c "SELECT count(*) FROM shop.\"order\"")
echo "orders committed before the crash (at least): $before"
as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null
wait $bench || true
cluster_start "$DIR"

fail=0
check() {   # check NAME SQL -> the SQL returns a count of violations
    local n
    n=$($PSQL -At -c "$2")
    if [ "$n" != 0 ]; then
        echo "FAIL $1: $n"
        fail=1
    else
        echo "ok   $1"
    fi
}
orders=$($PSQL -At -c "SELECT count(*) FROM shop.\"order\"")
echo "orders after recovery: $orders"
[ "$orders" -ge "$before" ] && [ "$orders" -gt 0 ] || { echo "FAIL: orders lost ($orders < $before)"; fail=1; }

check "orders without lines" "SELECT count(*) FROM shop.\"order\" o
    WHERE NOT EXISTS (SELECT 1 FROM shop.order_line l WHERE l.order_id = o.order_id)"
check "orders without exactly one payment" "SELECT count(*) FROM shop.\"order\" o
    WHERE (SELECT count(*) FROM shop.payment p WHERE p.order_id = o.order_id) <> 1"
check "orders whose events do not match" "SELECT count(*) FROM shop.\"order\" o
    WHERE o.event_count < 2 AND o.status <> 'pending'
       OR (SELECT count(*) FROM shop.order_event e WHERE e.order_id = o.order_id) <> o.event_count
       OR (SELECT max(seq) FROM shop.order_event e WHERE e.order_id = o.order_id) <> o.event_count
       OR (SELECT to_status FROM shop.order_event e WHERE e.order_id = o.order_id AND seq = 1) <> 'pending'
       OR (SELECT to_status FROM shop.order_event e WHERE e.order_id = o.order_id
            ORDER BY seq DESC LIMIT 1) <> o.status"
check "order lines without a hold" "SELECT count(*) FROM shop.order_line l
    WHERE l.reservation_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM shop.reservation r
                       WHERE r.product_id = l.product_id AND r.reservation_id = l.reservation_id)"
check "stock rows where reserved <> sum of held holds" "SELECT count(*) FROM shop.stock s
    WHERE s.reserved <> coalesce((SELECT sum(r.qty) FROM shop.reservation r
                                   WHERE r.product_id = s.product_id AND r.location = s.location
                                     AND r.bucket = s.bucket AND r.status = 'held'), 0)"
check "stock rows out of bounds" "SELECT count(*) FROM shop.stock
    WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"
check "units gone <> units committed" "SELECT abs($total_before - (SELECT sum(on_hand) FROM shop.stock)
    - coalesce((SELECT sum(qty) FROM shop.reservation WHERE status = 'committed'), 0))"
check "holds not matching their order's status" "SELECT count(*) FROM shop.order_line l
    JOIN shop.\"order\" o USING (order_id)
    JOIN shop.reservation r ON r.product_id = l.product_id AND r.reservation_id = l.reservation_id
    WHERE (o.status IN ('pending', 'paid', 'fulfilling') AND r.status <> 'held')
       OR (o.status = 'shipped' AND r.status <> 'committed')
       OR (o.status = 'cancelled' AND r.status = 'held')"
check "paid orders whose holds can expire" "SELECT count(*) FROM shop.order_line l
    JOIN shop.\"order\" o USING (order_id)
    JOIN shop.reservation r ON r.product_id = l.product_id AND r.reservation_id = l.reservation_id
    WHERE o.status IN ('paid', 'fulfilling') AND r.expires_at <> 'infinity'"
check "idempotency keys without their order" "SELECT count(*) FROM shop.idempotency k
    WHERE k.order_id IS NULL OR NOT EXISTS (SELECT 1 FROM shop.\"order\" o WHERE o.order_id = k.order_id)"
check "payments not matching their order" "SELECT count(*) FROM shop.payment p JOIN shop.\"order\" o USING (order_id)
    WHERE (o.status = 'paid' AND p.status <> 'captured')
       OR (o.status = 'pending' AND p.status <> 'pending')
       OR p.amount_cents <> o.total_cents"
$PSQL -At -c "SELECT status, count(*) FROM shop.\"order\" GROUP BY 1 ORDER BY 1" | tr '\n' ' '; echo
# and the shop still works
$PSQL -At -c "SELECT public.crash_checkout(42, 1, 2, 3, 5)" >/dev/null && echo "ok   checkout after recovery" ||
    { echo "FAIL checkout after recovery"; fail=1; }
tail -5 "$DIR/pgbench.log"
exit $fail
