#!/usr/bin/env bash
# cart_cpu.sh: what the cart's refusals answered as data cost a call
# (issue 16, ha4: shop._cart_price_try, shop._cart_write_try, each a
# PL/pgSQL block with an exception handler: a subtransaction on the
# shard), not a test. Builds a router and 4 shards as test/cluster does
# (scripts/cluster.sh, in tmp_bench/cart_cpu) with the synthetic catalog
# (SCALE products, default 5000, each shard its quarter), and in the
# router database a schema "old" holding the cart calls as they were
# before (PL/Proxy calling shop._cart_price, shop._cart_add_signed and
# shop.cart_set_qty, which raise their refusals). Then, in turns (ROUNDS,
# default 3), N calls (default 3000) in one session of each: cart_add
# (200 products in turn, one guest cart) and cart_set_qty, old and new,
# with the CPU (utime + stime, 10 ms ticks) of the router's backend and
# of every process of the two shard clusters around them. Then the shard
# steps alone, in one session of shard s0 (M calls, default 5000, each a
# statement of its own: its own transaction; the backend's CPU): shop._cart_price against shop._cart_price_try, and
# shop.cart_set_qty against shop._cart_write_try('set_qty', ...): the
# subtransaction's own cost, without the router and the network
# (SKIP_ROUTED=1: these alone).
# Run from the top of the tree after make:  bash test/cluster/cart_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-3000} M=${M:-5000} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
cpu_cluster_up cart_cpu
cpu_shards_load
q "$R" "$PR" router >/dev/null <<'SQL'
CREATE SCHEMA old;
CREATE FUNCTION old._cart_price(i_product_id bigint)
RETURNS TABLE (price_cents bigint, valid_until bigint, sig text)
LANGUAGE plproxy AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_product_id);
    SELECT * FROM shop._cart_price($1);
$$;
CREATE FUNCTION old._cart_add_signed(i_session text, i_cart_id uuid, i_product_id bigint, i_qty int,
                                     i_price bigint, i_valid_until bigint, i_sig text)
RETURNS void
LANGUAGE plproxy AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    SELECT shop._cart_add_signed($2, $3, $4, $5, $6, $7) FROM (SELECT set_config('shop.session', concat($1, left(shop.current_customer()::text, 0)), true)) s;
$$;
CREATE FUNCTION old.cart_add(cart_id uuid, product_id bigint, qty int DEFAULT 1)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT old._cart_add_signed(shop_router._session(), cart_add.cart_id, cart_add.product_id, qty,
                                p.price_cents, p.valid_until, p.sig)
      FROM old._cart_price(cart_add.product_id) p;
$$;
CREATE FUNCTION old._cart_set_qty(i_session text, i_cart_id uuid, i_product_id bigint, i_qty int)
RETURNS void
LANGUAGE plproxy AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    SELECT shop.cart_set_qty($2, $3, $4) FROM (SELECT set_config('shop.session', concat($1, left(shop.current_customer()::text, 0)), true)) s;
$$;
CREATE FUNCTION old.cart_set_qty(cart_id uuid, product_id bigint, qty int)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$ SELECT old._cart_set_qty(shop_router._session(), cart_set_qty.cart_id, cart_set_qty.product_id, cart_set_qty.qty) $$;
SQL
PIDS=$(q "$A" "$PA" one -At -c "SELECT string_agg(product_id::text, ',' ORDER BY product_id) FROM (SELECT product_id FROM shop.product WHERE status = 'active' ORDER BY product_id LIMIT 200) p")
CART=$(q "$R" "$PR" router -At -c "SELECT shop.cart_create()")
run() {   # label call
    local label=$1 call=$2
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM generate_series(1, 20) g, LATERAL $call s \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0
SELECT count(*) FROM generate_series(1, $N) g, LATERAL $call s \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
SQL
    q "$R" "$PR" router -f "$BASE/run.sql"
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$N" \
        'BEGIN { printf "%-24s router backend %6.3f ms  shards %6.3f ms  wall %6.3f ms\n", l, b * 10 / n, s * 10 / n, w / 1e6 / n }'
}
echo "$N calls a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for r in $(seq 1 "$([ "${SKIP_ROUTED:-0}" = 1 ] && echo 0 || echo "$ROUNDS")"); do
    run "cart_add, before" "old.cart_add('$CART', (ARRAY[$PIDS])[1 + g % 200], 1)"
    run "cart_add, after" "shop.cart_add('$CART', (ARRAY[$PIDS])[1 + g % 200], 1)"
    run "cart_set_qty, before" "old.cart_set_qty('$CART', (ARRAY[$PIDS])[1 + g % 200], 1 + g % 7)"
    run "cart_set_qty, after" "shop.cart_set_qty('$CART', (ARRAY[$PIDS])[1 + g % 200], 1 + g % 7)"
done
S0CART=$(q "$A" "$PA" s0 -At -c "SELECT shop.cart_create()")
S0PIDS=$(q "$A" "$PA" s0 -At -c "SELECT string_agg(product_id::text, ',' ORDER BY product_id) FROM (SELECT product_id FROM shop.product WHERE status = 'active' ORDER BY product_id LIMIT 200) p")
q "$A" "$PA" s0 -c "SELECT count(shop.cart_add('$S0CART', p, 1)) FROM unnest(ARRAY[$S0PIDS]) p" >/dev/null
step() {   # label call (PID and QTY replaced in each): M statements, each its own transaction
    local label=$1 call=$2 pids
    IFS=, read -r -a pids <<<"$S0PIDS"
    {
        echo '\set QUIET on'
        echo 'SELECT pg_backend_pid() AS pid \gset'
        echo '\setenv PID :pid'
        for g in $(seq 1 50); do c=${call//PID/${pids[g % 200]}}; echo "SELECT ${c//QTY/$((1 + g % 7))} \g /dev/null"; done
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID > $BASE/t0"
        for g in $(seq 1 "$M"); do c=${call//PID/${pids[g % 200]}}; echo "SELECT ${c//QTY/$((1 + g % 7))} \g /dev/null"; done
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID > $BASE/t1"
    } >"$BASE/step.sql"
    q "$A" "$PA" s0 -f "$BASE/step.sql"
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v b=$((b1 - b0)) -v w=$((w1 - w0)) -v n="$M" \
        'BEGIN { printf "%-36s shard backend %7.2f us  wall %7.2f us\n", l, b * 10000 / n, w / 1e3 / n }'
}
echo "shard steps alone: $M calls a round on s0"
for r in $(seq 1 "$ROUNDS"); do
    step "_cart_price" "* FROM shop._cart_price(PID)"
    step "_cart_price_try" "* FROM shop._cart_price_try(PID)"
    step "cart_set_qty" "shop.cart_set_qty('$S0CART', PID, QTY)"
    step "_cart_write_try('set_qty')" "shop._cart_write_try('set_qty', '$S0CART', PID, QTY, NULL, NULL, NULL, NULL)"
done
