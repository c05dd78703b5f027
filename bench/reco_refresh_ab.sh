#!/usr/bin/env bash
# bench/reco_refresh_ab.sh: backend CPU of shop.refresh_recommendations()
# after 10,000 new orders, two or more builds alternated (ref6-ref9's
# method, bench/results/2026-12-08-ref9.md).
#
# Needs a cluster left by
#   make bench BENCH_SCALE=100000 BENCH_ONLY=recommend_speed BENCH_KEEP=1 RECO_KEEP=1
# (tmp_bench/cluster, its database shop_reco_speed).
#
#   bench/reco_refresh_ab.sh setup
#       reco_h: shop_reco_speed after CALL shop.popularity_sync() and
#       VACUUM ANALYZE; reco_t0: reco_h with 10,000 new paid orders
#       (recommend_speed's generator after setseed(0.7), triggers on),
#       then VACUUM ANALYZE.
#   bench/reco_refresh_ab.sh run ROUNDS NAME...
#       each round, each NAME in turn (the order alternates by round):
#       the cluster stopped, $VARIANTS/NAME/shop.so put in place, started;
#       a fresh copy r of reco_t0; $VARIANTS/NAME/pre.sql run in it when
#       present (a build's changed SQL functions); the cluster restarted
#       (cold shared buffers); then one session: the backend's user +
#       system CPU (/proc/<pid>/stat) around SELECT shop.refresh_recommendations().
#       Prints "round name cpu_s load1 result".  WARM=1: every relation of
#       schema shop (tables, indexes, TOAST) read into shared buffers by
#       pg_prewarm in a session of its own before the measured one (a
#       running server's state, not a restarted one's).
#   bench/reco_refresh_ab.sh md5 DB
#       md5 of the recommendation tables and served lists (ref8's set).
# VARIANTS defaults to /tmp/reco_ab.  The cluster's shop.so is left as the
# last NAME's.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/pgenv.sh"
PGBIN=${PGBIN:-$TMP_INSTALL/usr/lib/postgresql/15/bin}
LIB=$TMP_INSTALL/usr/lib/postgresql/15/lib
DIR=$TOP/tmp_bench/cluster
VARIANTS=${VARIANTS:-/tmp/reco_ab}
PORT=$(sed -n "s/^port = \([0-9]*\).*/\1/p" "$DIR/data/postgresql.conf" | tail -1)
cluster_env "$DIR" "$PORT"
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)

cpu_fn="CREATE OR REPLACE FUNCTION pg_temp.cpu() RETURNS numeric LANGUAGE sql AS \$f\$
SELECT (f[12]::bigint + f[13]::bigint)::numeric / $(getconf CLK_TCK)
  FROM string_to_array(split_part(pg_read_file('/proc/' || pg_backend_pid() || '/stat'), ') ', 2), ' ') f \$f\$;"

# STEP=copurchase: shop._refresh_copurchase() alone (the co-purchase part),
# in a transaction rolled back
if [ "${STEP:-}" = copurchase ]; then
    measured=(-c BEGIN -c "SELECT 'res ' || shop._refresh_copurchase()::text" -c ROLLBACK)
else
    measured=(-c "SELECT 'res ' || shop.refresh_recommendations()::text")
fi
case "${1:-}" in
setup)
    # the sweeper held off (the bench's cleanup put the interval back): it
    # would refresh reco_t0 itself
    "${PSQL[@]}" -d shop_reco_speed -c "ALTER SYSTEM SET shop.sweep_interval = 86400" -c "SELECT pg_reload_conf()" >/dev/null
    "${PSQL[@]}" -d shop_reco_speed -c "CALL shop.popularity_sync()" -c "VACUUM ANALYZE"
    "$PGBIN/dropdb" --if-exists reco_t0
    "$PGBIN/dropdb" --if-exists reco_h
    "$PGBIN/createdb" -T shop_reco_speed reco_h
    "$PGBIN/createdb" -T reco_h reco_t0
    nprod=$("${PSQL[@]}" -d reco_t0 -c "SELECT count(*) FROM shop.product WHERE status = 'active'")
    customers=$((nprod * 10 / 3 * 8 / 10 / 5 + 1))
    "${PSQL[@]}" -d reco_t0 <<SQL
SELECT setseed(0.7);
CREATE TEMP TABLE new_order AS
SELECT gen_random_uuid() AS order_id,
       CASE WHEN random() < 0.8 THEN 1 + floor(random() * $customers)::bigint END AS customer_id,
       1 + floor(random() * 5)::int AS k,
       1 + floor($nprod * power(random(), 3))::int AS anchor
  FROM generate_series(1, 10000);
BEGIN;
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents)
SELECT order_id, customer_id, 'paid', 'XRB', 0, 0 FROM new_order;
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT g.order_id, j, p.product_id, 'bench', 'bench', 100, 1
  FROM new_order g
 CROSS JOIN LATERAL (SELECT j, CASE WHEN j = 1 THEN g.anchor
                                    ELSE 1 + (g.anchor + floor(random() * 30)::int - 15 + $nprod) % $nprod END AS pi
                       FROM generate_series(1, g.k) j) x
  JOIN reco_bench_pid p ON p.i = x.pi;
COMMIT;
VACUUM ANALYZE;
SQL
    "${PSQL[@]}" -d reco_t0 -c "SELECT count(*), count(DISTINCT customer_id) FROM shop.copurchase_delta"
    ;;
run)
    rounds=$2
    shift 2
    names=("$@")
    for ((r = 1; r <= rounds; r++)); do
        order=("${names[@]}")
        if ((r % 2 == 0)); then
            order=()
            for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[$i]}"); done
        fi
        for n in "${order[@]}"; do
            cluster_stop "$DIR" fast
            cp "$VARIANTS/$n/shop.so" "$LIB/.shop.so.new" && mv -f "$LIB/.shop.so.new" "$LIB/shop.so"
            cluster_start "$DIR"
            "$PGBIN/dropdb" --if-exists r
            "$PGBIN/createdb" -T reco_t0 r
            [ -f "$VARIANTS/$n/pre.sql" ] && "${PSQL[@]}" -d r -f "$VARIANTS/$n/pre.sql" >/dev/null
            cluster_stop "$DIR" fast
            cluster_start "$DIR"
            if [ -n "${WARM:-}" ]; then
                "${PSQL[@]}" -d r >/dev/null -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
                    -c "SELECT pg_prewarm(c.oid) FROM pg_class c
                         WHERE c.relkind IN ('r', 'i', 't')
                           AND (c.relnamespace = 'shop'::regnamespace
                                OR c.oid IN (SELECT reltoastrelid FROM pg_class WHERE relnamespace = 'shop'::regnamespace)
                                OR c.oid IN (SELECT i.indexrelid FROM pg_index i JOIN pg_class t ON t.reltoastrelid = i.indrelid
                                              WHERE t.relnamespace = 'shop'::regnamespace))"
            fi
            out=$("${PSQL[@]}" -d r -c "$cpu_fn" -c "SELECT 'c0 ' || pg_temp.cpu()" \
                  "${measured[@]}" -c "SELECT 'c1 ' || pg_temp.cpu()")
            c0=$(sed -n 's/^c0 //p' <<<"$out")
            c1=$(sed -n 's/^c1 //p' <<<"$out")
            res=$(sed -n 's/^res //p' <<<"$out")
            echo "$r $n $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }') $(cut -d' ' -f1 /proc/loadavg) $res"
        done
    done
    ;;
md5)
    "${PSQL[@]}" -d "$2" <<'SQL'
SELECT 'copurchase ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY product_id, other_id)) FROM shop.copurchase t;
SELECT 'copurchase_item ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY product_id)) FROM shop.copurchase_item t;
SELECT 'copurchase_pair ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY product_id)) FROM shop.copurchase_pair t;
SELECT 'copurchase_order ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY order_id)) FROM shop.copurchase_order t;
SELECT 'product_popularity ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY product_id)) FROM shop.product_popularity t;
SELECT 'popularity_pending ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY product_id)) FROM shop.popularity_pending t;
SELECT 'customer_neighbour ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY customer_id, neighbour_id)) FROM shop.customer_neighbour t;
SELECT 'customer_item ' || count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY customer_id, product_id)) FROM shop.customer_item t;
SELECT 'customer_like_queue ' || count(*) FROM shop.customer_like_queue;
SELECT 'also_bought ' || md5(string_agg(x::text, ',' ORDER BY i, n))
  FROM reco_bench_pid b, LATERAL (SELECT a, row_number() OVER () AS n FROM shop.also_bought(b.product_id, 10) a) x(x, n)
 WHERE b.i % 97 = 0;
SELECT 'recommend ' || md5(string_agg(x::text, ',' ORDER BY c, n))
  FROM generate_series(1, 20000, 41) c, LATERAL (SELECT a, row_number() OVER () AS n FROM shop.recommend(c, 10) a) x(x, n);
SQL
    ;;
*)
    sed -n '2,27p' "$0" >&2
    exit 2
    ;;
esac
