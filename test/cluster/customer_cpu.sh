#!/usr/bin/env bash
# customer_cpu.sh: what a personalized search's customer check answered as
# data costs (issue 16, ha6: shop._customer_refusal on every shard, in the
# page statement of shop_router._search_routed_at), not a test. Builds a
# router and 4 shards as test/cluster does (test/cluster/lib/cpu_setup.sh,
# in tmp_bench/customer_cpu) with the synthetic catalog (SCALE products,
# default 5000, each shard its quarter), and in the router database a
# schema "old" holding the search as it was before (old._search_routed_at:
# the page statement without the check; old._search_page and old.search:
# shop_router._search_page's and shop.search's own text calling it). Then,
# in turns (ROUNDS, default 3), as the storefront's login web with a
# session of customer 7:
#   - N searches (default 300) of the catalog's 20 most frequent title
#     words, lim => 10, customer_id => 7 (the session's own), in one
#     statement, old and new: the success path, where each shard now
#     also answers shop._customer_refusal;
#   - the same without customer_id (every search's page statement
#     changed shape: a WITH inside FROM);
#   - M searches for customer 8 (default 100), each a statement of its own
#     followed by a search without customer_id, old and new: before, the
#     refusal was every shard's error and the next search reconnected to
#     every shard.
# Each prints the CPU (utime + stime, 10 ms ticks) of the router's backend
# and of every process of the two shard clusters (a reconnection's new
# shard backends included) per call, and the wall time.
# Run from the top of the tree after make:  bash test/cluster/customer_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-300} M=${M:-100} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
MEASURE_WIDTH=34
cpu_cluster_up customer_cpu
cpu_shards_load synonyms
q "$R" "$PR" router -c "SELECT shop_router.sync_product_ids()" >/dev/null
cpu_top_words
TOKEN=$(q "$A" "$PA" s0 -At -c "SELECT shop.session_token(7)")
q "$R" "$PR" router >/dev/null <<'SQL'
CREATE SCHEMA old;
CREATE FUNCTION old._search_routed_at(i_query text, i_filters jsonb, i_sort text, i_lim int, i_off int,
                                      i_customer_id bigint, i_global jsonb, i_session text,
                                      i_versions jsonb)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int, rating_count int, created_at timestamptz, popularity real)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT s.product_id, s.score, s.title, s.brand, s.price_cents, s.rating_avg, s.category_id,
           s.in_stock, s.image, s.typos, s.missing_words,
           p.rating_count, p.created_at, p.popularity
      FROM (SELECT set_config('shop.session', concat($8, left(shop.current_customer()::text, 0)), true) AS t,
                   $9 IS NULL OR ($9 ? shop._search_version() AND shop._search_version_tracked()) AS ok
             OFFSET 0) z
     CROSS JOIN LATERAL shop._search_routed($1 || left(z.t, 0), $2, $3, $4, $5, $6, $7) s
     CROSS JOIN LATERAL (SELECT p.rating_count, p.created_at, p.popularity FROM shop.product p
                          WHERE p.product_id = s.product_id OFFSET 0) p
     WHERE z.ok
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     WHERE NOT ($9 IS NULL OR ($9 ? shop._search_version() AND shop._search_version_tracked()));
$$;
CREATE FUNCTION old._search_refused() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'the search statistics changed on a shard'
        USING ERRCODE = '40001', HINT = 'the router asks for them again';
END
$$;
DO $$
BEGIN
    EXECUTE replace(replace(replace(pg_get_functiondef('shop_router._search_page(text, jsonb, text, int, int, bigint, jsonb, jsonb)'::regprocedure),
                                    'FUNCTION shop_router._search_page(', 'FUNCTION old._search_page('),
                            'shop_router._search_routed_at(', 'old._search_routed_at('),
                    'shop_router._search_refused(r.error)', 'old._search_refused()');
    EXECUTE replace(replace(pg_get_functiondef('shop.search(text, jsonb, text, int, int, bigint)'::regprocedure),
                            'FUNCTION shop.search(', 'FUNCTION old.search('),
                    'shop_router._search_page(', 'old._search_page(');
END
$$;
GRANT USAGE ON SCHEMA old TO web;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA old TO web;
SQL
head_sql() {
    echo '\set QUIET on'
    echo "SET shop.session = '$TOKEN';"
    echo 'SELECT pg_backend_pid() AS pid \gset'
    echo '\setenv PID :pid'
}
many() {   # label schema customer: N searches in one statement
    local label=$1 fn=$2.search cust=$3
    {
        head_sql
        echo "SELECT count(*) FROM unnest(ARRAY[$WORDS]) w, LATERAL $fn(w, lim => 10$cust) s \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        echo "SELECT count(*) FROM generate_series(1, $N) g, LATERAL $fn((ARRAY[$WORDS])[1 + g % 20], lim => 10$cust) s \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/many.sql"
    measure "$label" "$BASE/many.sql" "$N"
}
refused() {   # label schema: M refused searches, each followed by a plain one
    local label=$1 fn=$2.search g
    {
        head_sql
        echo '\set ON_ERROR_STOP off'
        echo "SELECT count(*) FROM unnest(ARRAY[$WORDS]) w, LATERAL $fn(w, lim => 10) s \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        for g in $(seq 1 "$M"); do
            echo "SELECT count(*) FROM $fn((ARRAY[$WORDS])[1 + $g % 20], lim => 10, customer_id => 8);"
            echo "SELECT count(*) FROM $fn((ARRAY[$WORDS])[1 + $g % 20], lim => 10) \\g /dev/null"
        done
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/refused.sql"
    measure "$label" "$BASE/refused.sql" "$M"
}
echo "$N searches and $M refused ones a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for r in $(seq 1 "$ROUNDS"); do
    many "personalized (own), old" old ", customer_id => 7"
    many "personalized (own), new" shop ", customer_id => 7"
    many "plain, old" old ""
    many "plain, new" shop ""
    refused "refused + plain, old" old
    refused "refused + plain, new" shop
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
