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
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents, created_at)
SELECT order_id, customer_id, 'paid', 'GBP', 0, 0, ts FROM basket WHERE train;
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT b.order_id, row_number() OVER (PARTITION BY b.order_id ORDER BY i.product_id), i.product_id,
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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
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
