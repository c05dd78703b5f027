#!/usr/bin/env bash
# session_use_cpu.sh: what cart_get's remote statement costs as ha8 sends
# it (issue 16, ha8: SELECT * FROM shop._cart_lines_use(token, cart), one
# shard function whose statements the shard backend plans once) against
# ha7's (shop._session_use in a MATERIALIZED CTE, the lines in one
# UNION ALL branch and the refusal in another, planned by the shard on
# every call), not a test. Same setup as session_cpu.sh (router and 4
# shards in tmp_bench/session_use_cpu, SCALE products, default 5000); the
# router database gets a schema "old" holding ha7's old._cart_lines and
# old.cart_get (the router's own text calling it). In turns (ROUNDS,
# default 3; odd rounds old first, even ones new first), as web with a
# session of customer 7 on a cart of 7 with 3 lines: N cart_get (default
# 1000) in one statement, old and new; M cart_get with a forged token
# (default 100) each followed by a product_get, old and new. CPU is
# utime + stime (10 ms ticks) of the
# router's backend and of every process of the two shard clusters.
# Run from the top of the tree after make:  bash test/cluster/session_use_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-1000} M=${M:-100} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
. "$TOP/test/cluster/lib/session_measure.sh"
cpu_cluster_up session_use_cpu
session_setup
q "$R" "$PR" router >/dev/null <<'SQL'
CREATE SCHEMA old;
CREATE FUNCTION old._cart_lines(i_session text, i_cart_id uuid)
RETURNS TABLE (customer_id bigint, updated_at timestamptz, expires_at timestamptz, product_id bigint,
               qty int, saved_for_later boolean, price_cents_at_add bigint, added_at timestamptz,
               error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    SELECT * FROM (
        WITH s AS MATERIALIZED (SELECT shop._session_use($1) AS e)
        SELECT (l).* FROM (SELECT shop._cart_lines_try($2) AS l FROM s WHERE s.e IS NULL OFFSET 0) x
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.e FROM s WHERE s.e IS NOT NULL) r;
$$;
DO $$
BEGIN
    EXECUTE replace(replace(pg_get_functiondef('shop.cart_get(uuid)'::regprocedure),
                            'FUNCTION shop.cart_get(', 'FUNCTION old.cart_get('),
                    'shop_router._cart_lines(', 'old._cart_lines(');
END
$$;
GRANT USAGE ON SCHEMA old TO web;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA old TO web;
SQL
session_cart
echo "$N calls and $M refused ones a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
# odd rounds old first, even rounds new first
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        many "cart_get, old" "old.cart_get('$CART')"
        many "cart_get, new" "shop.cart_get('$CART')"
        refused "refused + product_get, old" old
        refused "refused + product_get, new" shop
    else
        many "cart_get, new" "shop.cart_get('$CART')"
        many "cart_get, old" "old.cart_get('$CART')"
        refused "refused + product_get, new" shop
        refused "refused + product_get, old" old
    fi
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
