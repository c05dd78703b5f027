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
cpu_cluster_up session_use_cpu
cpu_shards_load
q "$R" "$PR" router -c "SELECT shop_router.sync_product_ids()" >/dev/null
TOKEN=$(q "$A" "$PA" s0 -At -c "SELECT shop.session_token(7)")
FORGED="v1.8.${TOKEN#v1.7.}"
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
CART=$(q "$R" "$PR" router -U web -At <<SQL
SET client_min_messages = warning;
SET shop.session = '$TOKEN';
SELECT shop.cart_create(7) AS c \gset
SELECT shop.cart_add(:'c', 11), shop.cart_add(:'c', 12), shop.cart_add(:'c', 13) \g /dev/null
SELECT :'c';
SQL
)
measure() {   # label script calls
    local label=$1 script=$2 n=$3
    rm -f "$BASE/t0" "$BASE/t1"
    q "$R" "$PR" router -U web -f "$script" >/dev/null 2>"$BASE/err.log" || true
    [ -s "$BASE/t1" ] || { echo "$label failed:"; tail -5 "$BASE/err.log"; return 1; }
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$n" \
        'BEGIN { printf "%-30s router backend %6.3f ms  shards %6.3f ms  wall %6.3f ms\n", l, b * 10 / n, s * 10 / n, w / 1e6 / n }'
}
head_sql() {
    echo '\set QUIET on'
    echo "SET shop.session = '$1';"
    echo 'SELECT pg_backend_pid() AS pid \gset'
    echo '\setenv PID :pid'
}
many() {   # label call: N calls in one statement
    local label=$1 call=$2
    {
        head_sql "$TOKEN"
        echo "SELECT count($call) FROM generate_series(1, 20) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        echo "SELECT count($call) FROM generate_series(1, $N) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/many.sql"
    measure "$label" "$BASE/many.sql" "$N"
}
refused() {   # label schema: M refused cart_get, each followed by a product_get
    local label=$1 fn=$2.cart_get g
    {
        head_sql "$FORGED"
        echo '\set ON_ERROR_STOP off'
        echo "SELECT shop.product_get(g) FROM generate_series(1, 20) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        for g in $(seq 1 "$M"); do
            echo "SELECT $fn('$CART');"
            echo "SELECT shop.product_get($g) \\g /dev/null"
        done
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/refused.sql"
    measure "$label" "$BASE/refused.sql" "$M"
}
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
