#!/usr/bin/env bash
# session_cpu.sh: what the session's token answered as data costs (issue
# 16, ha7: shop._session_use in every routed statement that carries
# shop.session, in place of set_config), not a test. Builds a router and 4
# shards as test/cluster does (test/cluster/lib/cpu_setup.sh, in
# tmp_bench/session_cpu) with the synthetic catalog (SCALE products,
# default 5000), and in the router database a schema "old" holding the
# statements as they were (old._cart_lines and old._cart_write: set_config
# of the token; old.cart_get and old.cart_set_qty: the router's own text
# calling them). Then, in turns (ROUNDS, default 3), as the storefront's
# login web with a session of customer 7 on a cart of 7 with 3 lines:
#   - N cart_get (default 1000), in one statement, old and new: the
#     success path of a read carrying the token;
#   - N cart_set_qty (the same line to the same qty), old and new: a write;
#   - M cart_get with a forged token (default 100), each a statement of
#     its own followed by a product_get, old and new: before, the refusal
#     was the cart shard's error and the next call reconnected.
# Each prints the CPU (utime + stime, 10 ms ticks) of the router's backend
# and of every process of the two shard clusters per call, and the wall
# time. Run from the top of the tree after make:  bash test/cluster/session_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-1000} M=${M:-100} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
. "$TOP/test/cluster/lib/session_measure.sh"
cpu_cluster_up session_cpu
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
    SELECT (l).* FROM (SELECT shop._cart_lines_try($2) AS l
                         FROM (SELECT set_config('shop.session', concat($1, left(shop.current_customer()::text, 0)), true)) s OFFSET 0) x;
$$;
CREATE FUNCTION old._cart_write(i_session text, i_op text, i_cart_id uuid, i_product_id bigint,
                                i_qty int, i_price bigint, i_valid_until bigint, i_sig text,
                                i_product_error text[])
RETURNS text[]
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    SELECT shop._cart_write_try($2, $3, $4, $5, $6, $7, $8, $9)
      FROM (SELECT set_config('shop.session', concat($1, left(shop.current_customer()::text, 0)), true)) s;
$$;
DO $$
BEGIN
    EXECUTE replace(replace(pg_get_functiondef('shop.cart_get(uuid)'::regprocedure),
                            'FUNCTION shop.cart_get(', 'FUNCTION old.cart_get('),
                    'shop_router._cart_lines(', 'old._cart_lines(');
    EXECUTE replace(replace(pg_get_functiondef('shop.cart_set_qty(uuid, bigint, int)'::regprocedure),
                            'FUNCTION shop.cart_set_qty(', 'FUNCTION old.cart_set_qty('),
                    'shop_router._cart_write(', 'old._cart_write(');
END
$$;
GRANT USAGE ON SCHEMA old TO web;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA old TO web;
SQL
session_cart
echo "$N calls and $M refused ones a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for r in $(seq 1 "$ROUNDS"); do
    many "cart_get, old" "old.cart_get('$CART')"
    many "cart_get, new" "shop.cart_get('$CART')"
    many "cart_set_qty, old" "old.cart_set_qty('$CART', 12, 2)"
    many "cart_set_qty, new" "shop.cart_set_qty('$CART', 12, 2)"
    refused "refused + product_get, old" old
    refused "refused + product_get, new" shop
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
