#!/usr/bin/env bash
# checkout_cpu.sh: what a checkout's refusals answered as data cost a call
# (issue 16, ha5: shop._saga_begin_try and shop._saga_place_try, each a
# PL/pgSQL block with an exception handler: a writing subtransaction on
# the cart's shard for every checkout), not a test. Builds a router and 4
# shards as test/cluster does (test/cluster/lib/cpu_setup.sh, in
# tmp_bench/checkout_cpu) with the synthetic catalog (SCALE products,
# default 5000, each shard its quarter; 200 products given 1,000,000
# units), and in the router database a schema "old" holding checkout as
# it was before (PL/Proxy calling shop._saga_begin_signed and
# shop._saga_place_signed, which raise their refusals; old.checkout is
# shop.checkout's own text calling those). Then, in turns (ROUNDS,
# default 3), as the back office's superuser:
#   - N checkouts (default 300) in one statement, old and new, of guest
#     carts made before (not measured) with 2 lines each: the success
#     path, where the new steps only add their subtransactions;
#   - M checkouts of an empty cart (default 300), each a statement of its
#     own, old and new: the refusal the storefront meets most, which
#     before cost the next call a reconnection to the cart's shard;
#   - N reserve_many calls of 2 products on 2 shards (shop._reserve_many_try
#     adds a writing subtransaction on each), old and new (old.reserve_many:
#     reserve_many's own text calling PL/Proxy functions of
#     shop._reserve_many_routed and shop.reserve_many).
# Each prints the CPU (utime + stime, 10 ms ticks) of the router's backend
# and of every process of the two shard clusters (a reconnection's new
# shard backend included) per call, and the wall time.
# Run from the top of the tree after make:  bash test/cluster/checkout_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-300} M=${M:-300} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
cpu_cluster_up checkout_cpu
cpu_shards_load
PIDS=$(q "$A" "$PA" one -At -c "SELECT string_agg(product_id::text, ',' ORDER BY product_id) FROM (SELECT product_id FROM shop.product WHERE status = 'active' ORDER BY product_id LIMIT 200) p")
q "$R" "$PR" router -c "SELECT count(shop.stock_set(p, 1000000)) FROM unnest(ARRAY[$PIDS]::bigint[]) p" >/dev/null
q "$R" "$PR" router >/dev/null <<'SQL'
CREATE SCHEMA old;
CREATE FUNCTION old._saga_begin(i_session text, i_order_id uuid, i_cart_id uuid, i_payment_token text,
                                i_idempotency_key text, i_shipping_address jsonb)
RETURNS TABLE (saga_order_id uuid, saga_status text, saga_product_ids bigint[], saga_qtys int[],
               saga_sig text, error text[])
LANGUAGE plproxy AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    SELECT (b).*, NULL::text[] AS error FROM (SELECT shop._saga_begin_signed($2, $3, $4, $5, $6) AS b
                         FROM (SELECT set_config('shop.session', concat($1, left(shop.current_customer()::text, 0)), true)) s OFFSET 0) x;
$$;
CREATE FUNCTION old._saga_place(i_session text, i_order_id uuid, i_product_ids bigint[], i_skus text[],
                                i_titles text[], i_prices bigint[], i_qtys int[],
                                i_payment_token text, i_shipping_address jsonb, i_held_sigs text[])
RETURNS TABLE (order_status text, keep_sig text, error text[])
LANGUAGE plproxy AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_order_id);
    SELECT (p).*, NULL::text[] AS error FROM (SELECT shop._saga_place_signed($2, $3, $4, $5, $6, $7, $8, $9, $10) AS p
                         FROM (SELECT set_config('shop.session', concat($1, left(shop.current_customer()::text, 0)), true)) s OFFSET 0) x;
$$;
CREATE FUNCTION old._reserve_many_any(i_items jsonb, i_ref text, i_ttl interval, OUT ids uuid[], OUT error text[])
LANGUAGE plproxy AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
    SELECT shop.reserve_many($1, $2, $3) AS ids, NULL::text[] AS error;
$$;
CREATE FUNCTION old._reserve_many_split(i_product_ids bigint[], i_qtys int[], i_ref text, i_ttl interval,
                                        i_ids uuid[])
RETURNS TABLE (held int, product_id bigint, error text[])
LANGUAGE plproxy AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids, i_qtys, i_ids;
    RUN ON hashint8(i_product_ids);
    SELECT shop._reserve_many_routed($1, $2, $3, $4, $5) AS held, NULL::bigint AS product_id, NULL::text[] AS error;
$$;
DO $$
BEGIN
    EXECUTE replace(replace(replace(pg_get_functiondef('shop.reserve_many(jsonb, text, interval)'::regprocedure),
                                    'FUNCTION shop.reserve_many(', 'FUNCTION old.reserve_many('),
                            'shop_router._reserve_many_any(', 'old._reserve_many_any('),
                    'shop_router._reserve_many_split(', 'old._reserve_many_split(');
    EXECUTE replace(replace(replace(pg_get_functiondef('shop.checkout(uuid, text, text, jsonb)'::regprocedure),
                                    'FUNCTION shop.checkout(', 'FUNCTION old.checkout('),
                            'shop_router._saga_begin(', 'old._saga_begin('),
                    'shop_router._saga_place(', 'old._saga_place(');
END
$$;
SQL
carts() {   # n: n guest carts of 2 lines (products g and g + 100 of the 200), their ids one a line
    q "$R" "$PR" router -At -c "SELECT c FROM generate_series(1, $1) g, LATERAL (SELECT shop.cart_create() AS c) x,
        LATERAL (SELECT shop.cart_add(c, (ARRAY[$PIDS])[1 + g % 100], 1), shop.cart_add(c, (ARRAY[$PIDS])[101 + g % 100], 2)) y"
}
measure() {   # label script calls
    local label=$1 script=$2 n=$3
    rm -f "$BASE/t0" "$BASE/t1"
    q "$R" "$PR" router -f "$script" >/dev/null 2>"$BASE/err.log" || true
    [ -s "$BASE/t1" ] || { echo "$label failed:"; tail -5 "$BASE/err.log"; return 1; }
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$n" \
        'BEGIN { printf "%-28s router backend %6.3f ms  shards %6.3f ms  wall %6.3f ms\n", l, b * 10 / n, s * 10 / n, w / 1e6 / n }'
}
paid() {   # label function: N checkouts of carts made for it, in one statement
    local label=$1 fn=$2 ids
    ids=$(carts "$N" | paste -sd, -)
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM shop.search('laptop', lim => 5) \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0
SELECT count($fn(c, 'tok_visa', format('k-%s', c))) FROM unnest('{$ids}'::uuid[]) c \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
SQL
    measure "$label" "$BASE/run.sql" "$N"
}
empty() {   # label function: M checkouts of an empty cart, a statement each
    local label=$1 fn=$2 cart
    cart=$(q "$R" "$PR" router -At -c "SELECT shop.cart_create()")
    {
        echo '\set QUIET on'
        echo '\set ON_ERROR_STOP off'
        echo 'SET client_min_messages = warning;'
        echo 'SELECT pg_backend_pid() AS pid \gset'
        echo '\setenv PID :pid'
        echo "SELECT $fn('$cart', 'tok_visa', 'e-0');"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        for g in $(seq 1 "$M"); do echo "SELECT $fn('$cart', 'tok_visa', 'e-$g');"; done
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/empty.sql"
    measure "$label" "$BASE/empty.sql" "$M"
}
holds() {   # label function: N reserve_many of 2 products on 2 shards, in one statement
    local label=$1 fn=$2
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM shop.search('laptop', lim => 5) \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0
SELECT count($fn(jsonb_build_array(jsonb_build_object('product_id', (ARRAY[$PIDS])[1 + g % 100], 'qty', 1),
                                   jsonb_build_object('product_id', (ARRAY[$PIDS])[101 + g % 100], 'qty', 1))))
  FROM generate_series(1, $N) g \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
SQL
    measure "$label" "$BASE/run.sql" "$N"
}
echo "$N paid and $M empty-cart checkouts a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for r in $(seq 1 "$ROUNDS"); do
    paid "checkout paid, before" old.checkout
    paid "checkout paid, after" shop.checkout
    empty "checkout empty, before" old.checkout
    empty "checkout empty, after" shop.checkout
    holds "reserve_many, before" old.reserve_many
    holds "reserve_many, after" shop.reserve_many
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
