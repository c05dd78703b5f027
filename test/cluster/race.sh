# race.sh: the oversell race through the router (issue 16, "Done means"),
# sourced by test/cluster/run.sh after saga.sql, on the same cluster.
# RACE_CLIENTS storefront clients (64), each its own customer with its own
# session, buy through the router at once: each of RACE_TX checkouts (2 in
# make test's short form, 25 under make cluster-test) is a cart of 3 of 8
# products (2 on each of the 4 shards), added in ascending product order
# by even clients and descending by odd ones, 1 or 2 units a line; the 8
# products have 12 units each, far fewer than asked for. Holds last
# RACE_TTL (3 seconds) before an order is placed, so that slow sagas lapse
# under load and must be compensated. Checked afterwards (after the TTL,
# every product shard's sweep and shop_router.saga_recover):
#   - no client failed (a deadlock, or any error but SH001 sold out, fails
#     pgbench), no deadlock on any shard cluster (pg_stat_database);
#   - nothing oversold: each product's paid order lines add up to at most
#     its 12 units, and equal its held units and its reserved count;
#   - no stuck hold: every held reservation belongs to a paid order and
#     never expires; no saga left open; every paid order holds every line.
RACE_CLIENTS=${RACE_CLIENTS:-64}
RACE_TX=${RACE_TX:-$([ "${CLUSTER_LONG:-0}" = 1 ] && echo 25 || echo 2)}
RACE_TTL=${RACE_TTL:-3 seconds}
echo "== the oversell race: $RACE_CLIENTS storefront clients x $RACE_TX checkouts through the router ($(date +%T))"
deadlocks() {
    echo $(($(q "$A" "$PA" postgres -At -c "SELECT sum(deadlocks) FROM pg_stat_database") +
            $(q "$B" "$PB" postgres -At -c "SELECT sum(deadlocks) FROM pg_stat_database")))
}
q "$R" "$PR" router -v clients="$RACE_CLIENTS" -v ttl="$RACE_TTL" <<'SQL'
SET client_min_messages = warning;
-- two products on each partition, made through the router with ids that land there
CREATE TABLE race_product AS
SELECT g AS product_id, hashint8(g) & 3 AS part
  FROM (SELECT g, row_number() OVER (PARTITION BY hashint8(g) & 3 ORDER BY g) AS n
          FROM generate_series(900001::bigint, 900100) g) x
 WHERE n <= 2;
CREATE TABLE race_token (client int PRIMARY KEY, customer_id bigint NOT NULL, token text NOT NULL);
CREATE TABLE race_result (client int, order_id uuid, outcome text);
GRANT SELECT ON race_product, race_token TO web;
GRANT INSERT ON race_result TO web;
GRANT SELECT ON race_product TO backoffice;
GRANT INSERT ON race_token TO backoffice;
-- one checkout of client c: its own customer, session and cart
CREATE FUNCTION race_buy(c int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t race_token;
    cart uuid;
    o uuid;
BEGIN
    SELECT * INTO t FROM race_token WHERE client = c;
    PERFORM set_config('shop.session', t.token, true);
    cart := shop.cart_create(t.customer_id);
    PERFORM shop.cart_add(cart, p.product_id, 1 + (random() < 0.5)::int)
       FROM (SELECT product_id FROM race_product ORDER BY random() LIMIT 3) p
      ORDER BY CASE WHEN c % 2 = 0 THEN p.product_id ELSE -p.product_id END;
    BEGIN
        o := shop.checkout(cart, 'tok_visa', gen_random_uuid()::text, '{"country": "US"}');
        INSERT INTO race_result VALUES (c, o, 'ok');
    EXCEPTION WHEN SQLSTATE 'SH001' THEN
        INSERT INTO race_result VALUES (c, NULL, 'sold out');
    END;
END
$$;
GRANT EXECUTE ON FUNCTION race_buy(int) TO web;
ALTER ROLE web IN DATABASE router SET shop_router.hold_ttl = :'ttl';
SET ROLE backoffice;
SELECT count(shop.product_upsert('RACE-' || product_id, 'race widget ' || product_id, 1000 + product_id % 100,
                                 product_id => product_id)) FROM race_product \g /dev/null
SELECT count(shop.stock_set(product_id, 12)) FROM race_product \g /dev/null
INSERT INTO race_token
SELECT c, 70000 + c, shop.session_token(70000 + c, '1 hour') FROM generate_series(0, :clients - 1) c;
RESET ROLE;
SQL
before=$(deadlocks)
echo 'SELECT race_buy(:client_id);' >"$BASE/race.pgb"
start=$(date +%s)
"$PGBIN/pgbench" -n -h "$R" -p "$PR" -U web -c "$RACE_CLIENTS" -j 8 -t "$RACE_TX" -f "$BASE/race.pgb" router \
    >"$BASE/race.out" 2>&1 || { tail -30 "$BASE/race.out"; echo "FAIL: a race client failed"; exit 1; }
echo "   $(grep -E '^number of transactions actually processed|^number of failed' "$BASE/race.out" | tr '\n' ' ')($(($(date +%s) - start)) s)"
q "$R" "$PR" router -At -c "SELECT outcome, count(*) FROM race_result GROUP BY 1 ORDER BY 1" | sed 's/^/   /'
after=$(deadlocks)
[ "$after" = "$before" ] || { echo "FAIL: $((after - before)) deadlocks on the shards during the race"; exit 1; }
echo "ok: no deadlock on any shard during the race"
q "$R" "$PR" router -c "ALTER ROLE web IN DATABASE router RESET shop_router.hold_ttl"
sleep "${RACE_TTL%% *}"; sleep 1
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    q "$dir" "$port" "s$i" -At -c "SELECT shop.sweep()" >/dev/null
done
q "$R" "$PR" router -U backoffice -At -c "SELECT shop_router.saga_recover('0 seconds')" >/dev/null
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v router="$ROUTER" -f "$HERE/race.sql"
