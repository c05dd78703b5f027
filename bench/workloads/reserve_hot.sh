#!/usr/bin/env bash
# reserve_hot: one hot product (a doorbuster), 1/8/32/64 clients each
# holding one unit per transaction, with synchronous_commit as the cluster
# has it.  Compared:
#   baseline: single-row UPDATE  one statement: conditional UPDATE of one
#                                stock row + INSERT of the reservation row
#   baseline: SELECT FOR UPDATE  read-lock the row, then UPDATE + INSERT
#   shop.reserve (1 row)         the product's stock in one row
#   shop.reserve (N buckets)     stock_set_buckets(product, N)
# Then a sell-out: 64 clients race for 1,000 units of a bucketed product;
# exactly 1,000 holds must succeed.  Oversell (holds beyond on_hand, or
# reserved disagreeing with the hold rows) is counted after every run and
# must be 0.
set -euo pipefail
. "${BENCH_LIB:-$TOP/bench/lib.sh}"
SECS=${BENCH_SECONDS:-10}
CLIENTS=${RESERVE_HOT_CLIENTS:-"1 8 32 64"}
NB=${RESERVE_HOT_BUCKETS:-64}
STOCK=500000000

bench_psql >/dev/null <<SQL
DROP TABLE IF EXISTS public.bench_hot_stock, public.bench_hot_res;
CREATE TABLE public.bench_hot_stock (
    product_id bigint PRIMARY KEY, on_hand integer NOT NULL, reserved integer NOT NULL DEFAULT 0,
    CHECK (reserved <= on_hand), CHECK (reserved >= 0)) WITH (fillfactor = 50);
CREATE TABLE public.bench_hot_res (
    product_id bigint NOT NULL, reservation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    qty integer NOT NULL, status text NOT NULL DEFAULT 'held', ref text,
    expires_at timestamptz NOT NULL DEFAULT now() + interval '15 minutes',
    PRIMARY KEY (product_id, reservation_id));
INSERT INTO public.bench_hot_stock VALUES (1, $STOCK, 0);
SQL
HOT=$(bench_psql -c "SELECT shop.product_upsert('BENCH-HOT-1', 'Bench doorbuster (one row)', 9900)")
HOTB=$(bench_psql -c "SELECT shop.product_upsert('BENCH-HOT-B', 'Bench doorbuster (buckets)', 9900)")
SELL=$(bench_psql -c "SELECT shop.product_upsert('BENCH-HOT-S', 'Bench doorbuster (sell-out)', 9900)")
bench_psql -c "SELECT shop.stock_set($HOT, $STOCK), shop.stock_set($HOTB, $STOCK), shop.stock_set_buckets($HOTB, $NB)" >/dev/null

cat >"$BENCH_TMP/naive.sql" <<'EOF2'
WITH u AS (UPDATE public.bench_hot_stock SET reserved = reserved + 1
            WHERE product_id = 1 AND on_hand - reserved >= 1 RETURNING product_id)
INSERT INTO public.bench_hot_res (product_id, qty, ref) SELECT product_id, 1, 'bench' FROM u;
EOF2
cat >"$BENCH_TMP/forupdate.sql" <<'EOF2'
BEGIN;
SELECT on_hand - reserved AS free FROM public.bench_hot_stock WHERE product_id = 1 FOR UPDATE \gset
UPDATE public.bench_hot_stock SET reserved = reserved + 1 WHERE product_id = 1 AND :free >= 1;
INSERT INTO public.bench_hot_res (product_id, qty, ref) SELECT 1, 1, 'bench' WHERE :free >= 1;
END;
EOF2
echo "SELECT shop.reserve($HOT, 1, 'bench', '1 hour');" >"$BENCH_TMP/reserve1.sql"
echo "SELECT shop.reserve($HOTB, 1, 'bench', '1 hour');" >"$BENCH_TMP/reserveb.sql"

reset_all() {
    bench_psql >/dev/null <<SQL
TRUNCATE public.bench_hot_res;
UPDATE public.bench_hot_stock SET reserved = 0;
DELETE FROM shop.reservation WHERE product_id IN ($HOT, $HOTB, $SELL);
UPDATE shop.stock SET reserved = 0 WHERE product_id IN ($HOT, $HOTB, $SELL);
VACUUM public.bench_hot_stock, public.bench_hot_res, shop.stock, shop.reservation;
CHECKPOINT;
SQL
}

# oversell of the last run: holds beyond on_hand plus any row whose reserved
# disagrees with its hold rows (0 means exact)
oversell_baseline() {
    bench_psql -c "SELECT greatest(0, (SELECT count(*) FROM public.bench_hot_res) - s.on_hand)
                        + abs(s.reserved - (SELECT count(*) FROM public.bench_hot_res))
                     FROM public.bench_hot_stock s WHERE product_id = 1"
}
oversell_shop() {
    bench_psql -c "SELECT coalesce(sum(greatest(0, coalesce(h.q, 0) - s.on_hand)
                                    + abs(s.reserved - coalesce(h.q, 0))), 0)
                     FROM shop.stock s
                     LEFT JOIN (SELECT location, bucket, sum(qty) AS q FROM shop.reservation
                                 WHERE product_id = $1 AND status = 'held' GROUP BY 1, 2) h
                          USING (location, bucket)
                    WHERE s.product_id = $1"
}
holds() { bench_psql -c "SELECT count(*) FROM shop.reservation WHERE product_id = $1 AND status = 'held'"; }

summary="$BENCH_TMP/summary.tsv"
printf 'clients\tsingle-row UPDATE tps\tSELECT FOR UPDATE tps\tshop.reserve 1 row tps\tshop.reserve %s buckets tps\tbuckets vs single-row\tbuckets p99 ms\tsingle-row p99 ms\toversell (all four)\n' "$NB" >"$summary"
tables=""
for c in $CLIENTS; do
    rows="$BENCH_TMP/rows_$c.tsv"
    : >"$rows"
    reset_all
    bench_pgbench "baseline: single-row UPDATE" "$c" "$SECS" "$BENCH_TMP/naive.sql" >>"$rows"
    naive_tps=$BENCH_TPS naive_p99=$BENCH_P99
    o1=$(oversell_baseline)
    reset_all
    bench_pgbench "baseline: SELECT FOR UPDATE" "$c" "$SECS" "$BENCH_TMP/forupdate.sql" >>"$rows"
    fu_tps=$BENCH_TPS
    o2=$(oversell_baseline)
    reset_all
    bench_pgbench "shop.reserve (1 row)" "$c" "$SECS" "$BENCH_TMP/reserve1.sql" >>"$rows"
    r1_tps=$BENCH_TPS
    o3=$(oversell_shop "$HOT")
    reset_all
    bench_pgbench "shop.reserve ($NB buckets)" "$c" "$SECS" "$BENCH_TMP/reserveb.sql" >>"$rows"
    rb_tps=$BENCH_TPS rb_p99=$BENCH_P99
    o4=$(oversell_shop "$HOTB")
    printf '%s\t%s\t%s\t%s\t%s\t%sx\t%s\t%s\t%s\n' "$c" "$naive_tps" "$fu_tps" "$r1_tps" "$rb_tps" \
        "$(bench_ratio "$rb_tps" "$naive_tps")" "$rb_p99" "$naive_p99" "$((o1 + o2 + o3 + o4))" >>"$summary"
    tables+="### $c client(s)"$'\n\n'"$(bench_md_table_vs "baseline: single-row UPDATE" <"$rows")"$'\n\n'
done

# sell-out: 64 clients, 40 attempts each, 1,000 units over the buckets
reset_all
bench_psql >/dev/null <<SQL
SELECT shop.stock_set($SELL, 1000);
SELECT shop.stock_set_buckets($SELL, $NB);
CREATE OR REPLACE FUNCTION public.bench_try_reserve(p bigint) RETURNS boolean
LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM shop.reserve(p, 1, 'sellout', '1 hour');
    RETURN true;
EXCEPTION WHEN SQLSTATE 'SH001' THEN
    RETURN false;
END \$\$;
SQL
echo "SELECT public.bench_try_reserve($SELL);" >"$BENCH_TMP/sellout.sql"
"$PGBIN/pgbench" -n -M prepared -c 64 -j "$(nproc)" -t 40 -f "$BENCH_TMP/sellout.sql" \
    >"$BENCH_TMP/sellout.txt" 2>&1 || true
sold=$(holds "$SELL")
sell_over=$(oversell_shop "$SELL")
sell_avail=$(bench_psql -c "SELECT shop.stock_available($SELL)")

echo "## Inventory: one hot product (reserve_hot)"
echo
echo "One product, every client holding one unit per transaction for ${SECS} s"
echo "(pgbench -M prepared; tps = successful holds per second; latency per"
echo "transaction).  Baselines are plain tables without shop.  Buckets:"
echo "\`shop.stock_set_buckets(product, $NB)\`.  Oversell counts holds beyond"
echo "on_hand plus rows whose reserved disagrees with their hold rows."
echo
bench_md_table <"$summary"
echo
printf '%s' "$tables"
echo "### Sell-out"
echo
echo "64 clients x 40 attempts for 1,000 units over $NB buckets: **$sold holds succeeded**"
echo "(must be exactly 1000), oversell $sell_over, units left available $sell_avail."
echo

# clean up
bench_psql >/dev/null <<SQL
DELETE FROM shop.reservation WHERE product_id IN ($HOT, $HOTB, $SELL);
DELETE FROM shop.stock WHERE product_id IN ($HOT, $HOTB, $SELL);
DELETE FROM shop.product WHERE product_id IN ($HOT, $HOTB, $SELL);
DROP TABLE public.bench_hot_stock, public.bench_hot_res;
DROP FUNCTION public.bench_try_reserve(bigint);
SQL
total_over=$(awk -F'\t' 'NR > 1 { s += $9 } END { print s + 0 }' "$summary")
[ "$total_over" = 0 ] && [ "$sold" = 1000 ] && [ "$sell_over" = 0 ]
