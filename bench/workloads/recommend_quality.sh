#!/usr/bin/env bash
# recommend_quality: quality of shop.also_bought on the real UCI Online
# Retail log, against raw co-purchase counts and global popularity.
#
# Train on the invoices up to 2011-09-30 (loaded as paid orders, triggers
# off, then shop.rebuild_recommendations()), test on the later ones: for
# every test invoice with at least two products, one product is hidden (the
# one with the smallest md5 of invoice and code, so the choice is fixed) and
# the others are the query.  Each method proposes 10 products not in the
# query:
#   shop       sum of shop.also_bought(q, 20) scores over the query items
#   raw        sum of raw co-purchase counts (top 20 per item by count,
#              no basket or buyer caps)
#   popular    the products in most training invoices
# HR@10 = share of invoices whose hidden product is proposed;
# NDCG@10 = mean of 1 / log2(1 + rank) of the hidden product (0 if absent).
# Invoices starting with C (cancellations) or A (adjustments) and the
# non-product codes of the data set's README are dropped.
#
# Runs in a scratch database of its own (created and dropped here), so the
# bench catalog and other workloads' orders do not mix in.
# Env: PGHOST PGPORT PGUSER (the bench cluster), SHARED_DATA, PGBIN.
set -euo pipefail
DATA="${SHARED_DATA:-}/uci_online_retail/baskets.csv"
if [ -z "${SHARED_DATA:-}" ] || [ ! -r "$DATA" ]; then
    echo "## Recommendations: quality (UCI Online Retail)"
    echo
    echo "skipped: $DATA not found"
    exit 0
fi
PSQL="${PGBIN:+$PGBIN/}psql -X -q -v ON_ERROR_STOP=1"
DB=shop_reco_quality
${PGBIN:+$PGBIN/}dropdb --if-exists "$DB" >/dev/null 2>&1 || true
${PGBIN:+$PGBIN/}createdb "$DB"
trap '${PGBIN:+$PGBIN/}dropdb --if-exists "$DB" >/dev/null 2>&1 || true' EXIT

$PSQL -d "$DB" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE TABLE raw_rows (basket_id text, item_id text, customer_id text, ts timestamp,
                       quantity int, unit_price numeric, country text);
\copy raw_rows FROM '$DATA' WITH (FORMAT csv, HEADER true)
CREATE TABLE rows AS
SELECT DISTINCT basket_id, item_id, nullif(customer_id, '')::bigint AS customer_id, ts
  FROM raw_rows
 WHERE basket_id !~ '^[CA]' AND quantity > 0
   AND item_id NOT IN ('POST', 'DOT', 'M', 'C2', 'BANK CHARGES', 'AMAZONFEE', 'B', 'S', 'D', 'PADS', 'CRUK');
CREATE TABLE item AS
SELECT item_id, row_number() OVER (ORDER BY item_id) AS product_id FROM (SELECT DISTINCT item_id FROM rows) x;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT product_id, 'UCI-' || item_id, 'item ' || item_id, 100 FROM item;
CREATE TABLE basket AS
SELECT basket_id, min(customer_id) AS customer_id, min(ts) AS ts, gen_random_uuid() AS order_id,
       min(ts) <= '2011-09-30 23:59:59' AS train
  FROM rows GROUP BY basket_id;
SET session_replication_role = replica;
INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents, total_cents, created_at)
SELECT order_id, customer_id, shop._customer_key(customer_id, order_id), 'paid', 'GBP', 0, 0, ts FROM basket WHERE train;
INSERT INTO shop.order_line (order_id, customer_key, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT b.order_id, shop._customer_key(b.customer_id, b.order_id),
       row_number() OVER (PARTITION BY b.order_id ORDER BY i.product_id), i.product_id,
       'UCI-' || r.item_id, 'item', 100, 1
  FROM rows r JOIN basket b USING (basket_id) JOIN item i USING (item_id)
 WHERE b.train;
RESET session_replication_role;
-- the test set: invoices after the split with at least two products
CREATE TABLE test_item AS
SELECT b.basket_id, i.product_id,
       row_number() OVER (PARTITION BY b.basket_id ORDER BY md5(b.basket_id || r.item_id)) = 1 AS hidden
  FROM rows r JOIN basket b USING (basket_id) JOIN item i USING (item_id)
 WHERE NOT b.train
   AND b.basket_id IN (SELECT basket_id FROM rows GROUP BY basket_id HAVING count(DISTINCT item_id) >= 2);
ANALYZE;
SQL

# eval METHOD_SQL: METHOD_SQL yields (basket_id, product_id, score) candidates
# for every test invoice; prints "hr ndcg n".
evaluate() {
    $PSQL -d "$DB" -At -F ' ' <<SQL
WITH cand AS ($1),
ranked AS (
    SELECT c.basket_id, c.product_id,
           row_number() OVER (PARTITION BY c.basket_id ORDER BY c.score DESC, c.product_id) AS rnk
      FROM cand c
     WHERE NOT EXISTS (SELECT 1 FROM test_item t
                        WHERE t.basket_id = c.basket_id AND t.product_id = c.product_id AND NOT t.hidden)
), hits AS (
    SELECT h.basket_id, r.rnk
      FROM test_item h LEFT JOIN ranked r
        ON r.basket_id = h.basket_id AND r.product_id = h.product_id AND r.rnk <= 10
     WHERE h.hidden
)
SELECT round(avg((rnk IS NOT NULL)::int), 4), round(avg(coalesce(1 / log(2, 1 + rnk), 0)), 4), count(*)
  FROM hits;
SQL
}

# shop's scoring, default settings
t0=$(date +%s.%N)
rebuild=$($PSQL -d "$DB" -At -c "SELECT shop.rebuild_recommendations()")
t1=$(date +%s.%N)
read -r shop_hr shop_ndcg ntest < <(evaluate "
    SELECT q.basket_id, a.product_id, sum(a.score) AS score
      FROM test_item q, LATERAL shop.also_bought(q.product_id, 20) a
     WHERE NOT q.hidden
     GROUP BY q.basket_id, a.product_id")

# global popularity: products in most training invoices
read -r pop_hr pop_ndcg _ < <(evaluate "
    WITH top AS (SELECT product_id, baskets AS score FROM shop.copurchase_item
                  ORDER BY baskets DESC, product_id LIMIT 1000)
    SELECT b.basket_id, top.product_id, top.score
      FROM (SELECT DISTINCT basket_id FROM test_item) b, top")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }

# Personal recommendations (issue 14): shop.recommend's sources alone and
# blended, on the same time split, per customer.  For every customer with
# training orders and a later invoice, the targets are the products of
# that customer's first invoice after the split that they had not bought
# before it (recommend never proposes what the customer bought); each
# method proposes 10 products from the training history.
#   HR@10      share of customers with a target in the list
#   NDCG@10    sum of 1 / log2(1 + rank) over the targets listed, over the
#              best possible (every list slot a target), averaged
#   coverage   distinct products proposed over all lists / products
#   novelty    mean self-information -log2((buyers + 1) / (customers + 1))
#              of the proposed products (buyers in training): higher is
#              less obvious
# Methods: today's recommend (shop._recommend_personal, the 1.1 list),
# global popularity (products in most training invoices, minus what the
# customer bought), each source of shop._recommend_blend alone (weights
# 1 for it, 0 for the others) and blends over a grid; exploration as
# shop._experiment_explore gives slots of the chosen blend's list to cold
# products (shop.recommend with an experiment whose variant explores).
# The popularity of shop.product is written out first (CALL
# shop.popularity_sync()), as the sweeper would.
$PSQL -d "$DB" >/dev/null <<'SQL'
SET client_min_messages = warning;
CALL shop.popularity_sync();
CREATE TABLE train_bought AS
SELECT DISTINCT o.customer_id, l.product_id
  FROM shop."order" o JOIN shop.order_line l USING (order_id) WHERE o.customer_id IS NOT NULL;
CREATE INDEX ON train_bought (customer_id, product_id);
CREATE TABLE eval_cust AS
WITH firstb AS (
    SELECT DISTINCT ON (b.customer_id) b.customer_id, b.basket_id
      FROM basket b
     WHERE NOT b.train AND b.customer_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM train_bought t WHERE t.customer_id = b.customer_id)
     ORDER BY b.customer_id, b.ts, b.basket_id)
SELECT f.customer_id, array_agg(DISTINCT i.product_id) AS target
  FROM firstb f JOIN rows r USING (basket_id) JOIN item i USING (item_id)
 WHERE NOT EXISTS (SELECT 1 FROM train_bought t WHERE t.customer_id = f.customer_id AND t.product_id = i.product_id)
 GROUP BY f.customer_id;
CREATE TABLE novelty AS
SELECT i.product_id,
       -log(2, (count(t.customer_id) + 1)::numeric
               / ((SELECT count(DISTINCT customer_id) FROM train_bought) + 1)) AS bits
  FROM item i LEFT JOIN train_bought t USING (product_id) GROUP BY i.product_id;
CREATE TABLE global_count AS
SELECT l.product_id, count(DISTINCT l.order_id) AS n FROM shop.order_line l GROUP BY l.product_id;
CREATE FUNCTION global_pop(c bigint, lim int) RETURNS SETOF shop.scored_product LANGUAGE sql AS $f$
    SELECT g.product_id, g.n::real FROM global_count g
     WHERE NOT EXISTS (SELECT 1 FROM train_bought t WHERE t.customer_id = c AND t.product_id = g.product_id)
     ORDER BY g.n DESC, g.product_id LIMIT lim
$f$;
CREATE FUNCTION explored(c bigint, lim int, share float8) RETURNS SETOF shop.scored_product LANGUAGE plpgsql AS $f$
DECLARE ids bigint[]; sc real[];
BEGIN
    SELECT array_agg(r.product_id ORDER BY r.n), array_agg(r.score ORDER BY r.n) INTO ids, sc
      FROM shop._recommend_blend(c, lim) WITH ORDINALITY r(product_id, score, n);
    SELECT x.new_ids, x.new_scores INTO ids, sc
      FROM shop._experiment_explore(0, coalesce(ids, '{}'), coalesce(sc, '{}'), lim, share, '{}') x;
    RETURN QUERY SELECT u.p, u.s FROM unnest(ids, sc) WITH ORDINALITY u(p, s, n) ORDER BY u.n;
END $f$;
-- eval_lists(call): call is a list function applied to (customer, 10)
CREATE FUNCTION eval_lists(call text)
RETURNS TABLE (hr numeric, ndcg numeric, coverage numeric, novelty numeric, customers bigint)
LANGUAGE plpgsql AS $f$
BEGIN
    DROP TABLE IF EXISTS lists;
    EXECUTE format('CREATE TEMP TABLE lists AS SELECT e.customer_id, r.product_id, r.n
                      FROM eval_cust e, LATERAL %s WITH ORDINALITY r(product_id, score, n)',
                   replace(call, '$c', 'e.customer_id'));
    RETURN QUERY
    WITH per AS (
        SELECT e.customer_id,
               coalesce(sum(1 / log(2, 1 + l.n::numeric)) FILTER (WHERE l.product_id = ANY (e.target)), 0) AS dcg,
               count(*) FILTER (WHERE l.product_id = ANY (e.target)) > 0 AS hit,
               (SELECT sum(1 / log(2, 1 + r::numeric))
                  FROM generate_series(1, least(10, cardinality(e.target))) r) AS idcg
          FROM eval_cust e LEFT JOIN lists l USING (customer_id)
         GROUP BY e.customer_id, e.target)
    SELECT round(avg(p.hit::int), 4), round(avg(p.dcg / p.idcg), 4),
           round((SELECT count(DISTINCT l.product_id) FROM lists l)::numeric
                 / (SELECT count(*) FROM shop.product WHERE status = 'active'), 4),
           round((SELECT avg(v.bits) FROM lists l JOIN novelty v USING (product_id)), 2),
           count(*)
      FROM per p;
END $f$;
-- blend(wi, wl, wc, wp): shop._recommend_blend with those weights
CREATE FUNCTION blend(wi float8, wl float8, wc float8, wp float8)
RETURNS TABLE (hr numeric, ndcg numeric, coverage numeric, novelty numeric, customers bigint)
LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM set_config('shop.reco_weight_item', wi::text, true),
            set_config('shop.reco_weight_like', wl::text, true),
            set_config('shop.reco_weight_content', wc::text, true),
            set_config('shop.reco_weight_popular', wp::text, true);
    RETURN QUERY SELECT * FROM eval_lists('shop._recommend_blend($c, 10)');
END $f$;
ANALYZE;
SQL
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
# row NAME CALL: one Markdown row; CALL is SQL returning eval_lists' row
reco_row() {
    local r
    r=$($PSQL -d "$DB" -At -F '|' -c "SELECT hr, ndcg, coverage, novelty, customers FROM $2")
    IFS='|' read -r hr ndcg cov nov ncust <<<"$r"
    echo "| $1 | $hr | $ndcg | $cov | $nov | $(ratio "$hr" "$today_hr") | $(ratio "$hr" "$gpop_hr") |"
}
PERSONAL=$(mktemp)
trap 'rm -f "$PERSONAL"; ${PGBIN:+$PGBIN/}dropdb --if-exists "$DB" >/dev/null 2>&1 || true' EXIT
r=$($PSQL -d "$DB" -At -F '|' -c "SELECT hr FROM eval_lists('shop._recommend_personal(\$c, 10)')"); today_hr=$r
r=$($PSQL -d "$DB" -At -F '|' -c "SELECT hr FROM eval_lists('global_pop(\$c, 10)')"); gpop_hr=$r
{
echo "| method (weights item / like / content / popularity) | HR@10 | NDCG@10 | coverage | novelty (bits) | HR vs today | HR vs global popularity |"
echo "|---|---|---|---|---|---|---|"
reco_row "today's recommend (shop._recommend_personal)" "eval_lists('shop._recommend_personal(\$c, 10)')"
reco_row "global popularity (most training invoices)" "eval_lists('global_pop(\$c, 10)')"
reco_row "item-to-item alone (1 / 0 / 0 / 0)" "blend(1, 0, 0, 0)"
reco_row "customers like you alone (0 / 1 / 0 / 0)" "blend(0, 1, 0, 0)"
reco_row "content alone (0 / 0 / 1 / 0)" "blend(0, 0, 1, 0)"
reco_row "popularity (trending) alone (0 / 0 / 0 / 1)" "blend(0, 0, 0, 1)"
for wl in 0 0.5 1 2; do
    for wp in 0 0.5 1 2; do
        [ "$wl" = 0 ] && [ "$wp" = 0 ] && continue
        reco_row "blend 1 / $wl / 0.2 / $wp" "blend(1, $wl, 0.2, $wp)"
    done
done
reco_row "**shipped defaults** ($($PSQL -d "$DB" -At -c "SELECT current_setting('shop.reco_weight_item') || ' / ' || current_setting('shop.reco_weight_like') || ' / ' || current_setting('shop.reco_weight_content') || ' / ' || current_setting('shop.reco_weight_popular')"))" \
    "eval_lists('shop._recommend_blend(\$c, 10)')"
for share in 0.1 0.2 0.3; do
    reco_row "shipped defaults, exploration $share" "eval_lists('explored(\$c, 10, $share)')"
done
} >"$PERSONAL"
ncust=$($PSQL -d "$DB" -At -c "SELECT count(*) FROM eval_cust")
like=$($PSQL -d "$DB" -At -c "SELECT count(*) || ' neighbour rows for ' || count(DISTINCT customer_id) || ' customers' FROM shop.customer_neighbour")

# raw counts: rebuild with the caps off and read the pair counts
$PSQL -d "$DB" >/dev/null <<'SQL'
SET shop.reco_basket_cap = 1000000;
SET shop.reco_buyer_cap = 1000000000;
SELECT shop.rebuild_recommendations();
CREATE TABLE raw_top AS
SELECT product_id, other_id, cnt
  FROM (SELECT p.product_id, u.other_id, u.cnt,
               row_number() OVER (PARTITION BY p.product_id ORDER BY u.cnt DESC, u.other_id) AS rnk
          FROM shop.copurchase_pair p, unnest(p.other_ids, p.counts) u(other_id, cnt)) x
 WHERE rnk <= 20;
CREATE INDEX ON raw_top (product_id);
SQL
read -r raw_hr raw_ndcg _ < <(evaluate "
    SELECT q.basket_id, r.other_id AS product_id, sum(r.cnt) AS score
      FROM test_item q JOIN raw_top r ON r.product_id = q.product_id
     WHERE NOT q.hidden
     GROUP BY q.basket_id, r.other_id")

# Refresh speed on the real log (issue 14): back to the default settings
# (a rebuild), then the later invoices of registered customers as paid
# orders with triggers on, in two batches (the first 2,000, then the
# rest), each folded by shop.refresh_recommendations(): its co-purchase
# part and its customers-like-you part timed apart.
$PSQL -d "$DB" >/dev/null <<'SQL'
SET client_min_messages = warning;
SELECT shop.rebuild_recommendations();
CREATE TABLE later AS
SELECT b.*, row_number() OVER (ORDER BY b.ts, b.basket_id) AS n
  FROM basket b WHERE NOT b.train AND b.customer_id IS NOT NULL;
SQL
fold_later() {  # fold_later FROM TO: prints "invoices customers cop_s like_s like_json"
    $PSQL -d "$DB" -At -F ' ' <<SQL
SET client_min_messages = warning;
BEGIN;
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents, created_at)
SELECT order_id, customer_id, 'paid', 'GBP', 0, 0, ts FROM later WHERE n BETWEEN $1 AND $2;
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT b.order_id, row_number() OVER (PARTITION BY b.order_id ORDER BY i.product_id), i.product_id,
       'UCI-' || r.item_id, 'item', 100, 1
  FROM rows r JOIN later b USING (basket_id) JOIN item i USING (item_id)
 WHERE b.n BETWEEN $1 AND $2;
COMMIT;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
SELECT shop._refresh_copurchase() IS NOT NULL AS done \gset
SELECT extract(epoch FROM clock_timestamp()) AS t1 \gset
SELECT shop._like_refresh() AS res \gset
SELECT extract(epoch FROM clock_timestamp()) AS t2 \gset
SELECT (SELECT count(*) FROM later WHERE n BETWEEN $1 AND $2),
       (SELECT count(DISTINCT customer_id) FROM later WHERE n BETWEEN $1 AND $2),
       round((:t1 - :t0)::numeric, 2), round((:t2 - :t1)::numeric, 2), :'res';
SQL
}
read -r f1_inv f1_cust f1_cop f1_like f1_res < <(fold_later 1 2000)
read -r f2_inv f2_cust f2_cop f2_like f2_res < <(fold_later 2001 1000000)

echo "## Recommendations: quality (UCI Online Retail, time split)"
echo
echo "Train: invoices up to 2011-09-30 ($(echo "$rebuild" | sed 's/[{}\"]//g')); test: $ntest later invoices with at least two products, one hidden."
echo "Full rebuild of the training log took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s."
echo
echo "| method | HR@10 | NDCG@10 | HR vs raw | HR vs popular |"
echo "|---|---|---|---|---|"
echo "| shop (N - E) / sqrt(E), capped | $shop_hr | $shop_ndcg | $(ratio "$shop_hr" "$raw_hr") | $(ratio "$shop_hr" "$pop_hr") |"
echo "| raw co-purchase counts | $raw_hr | $raw_ndcg | 1.00x | $(ratio "$raw_hr" "$pop_hr") |"
echo "| global popularity | $pop_hr | $pop_ndcg | | 1.00x |"
echo
echo "### Personal recommendations (shop.recommend, issue 14)"
echo
echo "$ncust customers with training orders and an invoice after the split; target: the products of their first later invoice they had not bought before. Customers like you: $like. Ratios are HR@10 over today's recommend and over global popularity, same run."
echo
cat "$PERSONAL"
echo
echo "### Refresh on the real log (issue 14)"
echo
echo "After a rebuild of the training log (default settings), the later invoices of registered customers as paid orders (triggers on), folded by one refresh per batch; the co-purchase part (shop._refresh_copurchase) and the customers-like-you part (shop._like_refresh) timed apart."
echo
echo "| batch | invoices | customers | co-purchase part s | customers like you s | customers like you |"
echo "|---|---|---|---|---|---|"
echo "| first | $f1_inv | $f1_cust | $f1_cop | $f1_like | \`$f1_res\` |"
echo "| the rest | $f2_inv | $f2_cust | $f2_cop | $f2_like | \`$f2_res\` |"
echo
