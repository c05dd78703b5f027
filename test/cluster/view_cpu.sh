#!/usr/bin/env bash
# view_cpu.sh: what a routed shop.view costs since ha10 (the product's
# shard signs that the product exists, shop._view_found, and the
# customer's shard checks the signature before it records, for the
# storefront; shop.view is PL/pgSQL) against ha9's (the product's shard
# answered EXISTS, a boolean the router passed on; shop.view was SQL), not
# a test. Same setup as session_use_cpu.sh (router and 4 shards in
# tmp_bench/view_cpu, SCALE products, default 5000); every shard gets a
# schema "old" holding ha9's step old._view_record(bigint, bigint,
# boolean), the router one holding ha9's old._view_product,
# old._view_record and old.view. In turns (ROUNDS, default 3; odd rounds
# old first, even ones new first), as web with a session of customer 7:
# N views (default 1000) in one statement, of products 1 + g % 200 (on
# every shard). CPU is utime + stime (10 ms ticks) of the router's
# backend and of every process of the two shard clusters.
# Run from the top of the tree after make:  bash test/cluster/view_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-1000} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
cpu_cluster_up view_cpu
cpu_shards_load
q "$R" "$PR" router -c "SELECT shop_router.sync_product_ids()" >/dev/null
TOKEN=$(q "$A" "$PA" s0 -At -c "SELECT shop.session_token(7)")
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    q "$dir" "$port" "s$i" >/dev/null <<'SQL'
CREATE SCHEMA old;
CREATE FUNCTION old._view_record(customer_id bigint, product_id bigint, product_found boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cap int := shop._guc('shop.recent_views_cap')::int;
    cutoff timestamptz;
BEGIN
    PERFORM shop._require(_view_record.customer_id, 'customer_id');
    PERFORM shop._authorize(_view_record.customer_id);
    PERFORM shop._require(_view_record.product_id, 'product_id');
    IF NOT coalesce(_view_record.product_found, false) OR _view_record.product_id < 1 THEN
        RAISE EXCEPTION 'product not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No product has product_id %s.', _view_record.product_id);
    END IF;
    -- shop.view's body
    DELETE FROM shop.view_event v
     WHERE v.customer_id = _view_record.customer_id AND v.product_id = _view_record.product_id;
    INSERT INTO shop.view_event (customer_id, viewed_at, product_id)
    VALUES (_view_record.customer_id, clock_timestamp(), _view_record.product_id);
    SELECT v.viewed_at INTO cutoff
      FROM shop.view_event v
     WHERE v.customer_id = _view_record.customer_id
     ORDER BY v.viewed_at DESC, v.product_id DESC
     OFFSET cap LIMIT 1;
    IF cutoff IS NOT NULL THEN
        -- as shop.view (on a shard whose popularity the router folds,
        -- nothing is recorded: shop.popularity_log has the drops)
        WITH d AS (
            DELETE FROM shop.view_event v
             WHERE v.customer_id = _view_record.customer_id AND v.viewed_at <= cutoff
            RETURNING v.product_id, v.viewed_at
        )
        INSERT INTO shop.popularity_dropped (product_id, viewed_at)
        SELECT d.product_id, d.viewed_at
          FROM d, shop.copurchase_state s
         WHERE d.viewed_at <= greatest(s.popularity_at, s.popularity_inc_at, s.popularity_seen_at)
           AND NOT s.popularity_from_router;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA old TO web;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA old TO web;
SQL
done
q "$R" "$PR" router >/dev/null <<'SQL'
CREATE SCHEMA old;
CREATE FUNCTION old._view_product(i_product_id bigint)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_product_id);
    SELECT EXISTS (SELECT FROM shop.product p WHERE p.product_id = $1);
$$;
CREATE FUNCTION old._view_record(i_session text, i_customer_id bigint, i_product_id bigint, i_found boolean)
RETURNS text[]
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_customer_id);
    SELECT CASE WHEN s.e IS NULL THEN (SELECT NULL::text[] FROM old._view_record($2, $3, $4)) ELSE s.e END
      FROM (SELECT coalesce(s0.e,
                            CASE WHEN $2 IS NULL THEN ARRAY['22004', 'argument customer_id must not be null'] END,
                            shop._customer_refusal($2)) AS e
              FROM (SELECT shop._session_use($1) AS e OFFSET 0) s0 OFFSET 0) s;
$$;
CREATE FUNCTION old.view(customer_id bigint, product_id bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT shop_router._raise(r.e)
      FROM (SELECT old._view_record(shop_router._session(), view.customer_id, view.product_id,
                                    view.product_id IS NOT NULL AND old._view_product(view.product_id))
                   AS e) r
     WHERE r.e IS NOT NULL
$$;
GRANT USAGE ON SCHEMA old TO web;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA old TO web;
SQL
many() {   # label call: N calls in one statement
    local label=$1 call=$2
    {
        echo '\set QUIET on'
        echo "SET shop.session = '$TOKEN';"
        echo 'SELECT pg_backend_pid() AS pid \gset'
        echo '\setenv PID :pid'
        echo "SELECT count($call) FROM generate_series(1, 20) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        echo "SELECT count($call) FROM generate_series(1, $N) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/many.sql"
    measure "$label" "$BASE/many.sql" "$N"
}
echo "$N views a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        many "view, old (ha9)" "old.view(7, 1 + g % 200)"
        many "view, new (signed)" "shop.view(7, 1 + g % 200)"
    else
        many "view, new (signed)" "shop.view(7, 1 + g % 200)"
        many "view, old (ha9)" "old.view(7, 1 + g % 200)"
    fi
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
