#!/usr/bin/env bash
# recommend_experiment: what an experiment adds to shop.recommend and
# shop.also_bought (issue 14, docs/recommendations.md "Experiments").
#
# Order history as in recommend_speed (RECO_LINES_PER_PRODUCT lines per
# product, orders of 1 to 5 lines, 80% from registered customers), loaded
# with triggers off and folded in by a rebuild.  Then, one client each,
# warm (pgbench, RECO_DURATION seconds):
#   - shop.recommend(c, 10) and shop.recommend(c, 10, 'bench-exp');
#   - shop._recommend_personal(c, 10), the list before the blend (the
#     item-to-item source with the trending fill), to show the blend's cost;
#   - shop.also_bought(p, 10) and shop.also_bought(p, 10, 'bench-exp', c);
#   - shop.also_bought(p, 10) for products with a full co-purchase list
#     only, with and without the experiment (the list without the
#     similar_products fill, which sets the latency of the others);
# the experiment has two variants of 50% with the default method, so the
# lists are the same and the difference is assignment (SHA-256 of name and
# customer, one lookup of the experiment and its variants) and the one
# impression row per list.  The impressions written are counted.  Last,
# shop.reco_evaluate() (the nightly health job) is timed on this history.
# Env: PGHOST PGPORT PGUSER PGDATABASE BENCH_SCALE BENCH_TMP PGBIN TOP.
set -euo pipefail
. "$TOP/bench/lib.sh"
BIN=${PGBIN:+$PGBIN/}
PER=${RECO_LINES_PER_PRODUCT:-10}
DUR=${RECO_DURATION:-${BENCH_SECONDS:-15}}
TMPD=${BENCH_TMP:-$(mktemp -d)}
mkdir -p "$TMPD"
SRC=${PGDATABASE:-postgres}
DB=shop_reco_experiment
copied=true
${BIN}dropdb --if-exists "$DB" >/dev/null 2>&1 || true
if ! ${BIN}createdb -T "$SRC" "$DB" >/dev/null 2>&1; then
    copied=false
    DB=$SRC
fi
cleanup() {
    [ -n "${RECO_KEEP:-}" ] && return 0
    if $copied; then
        ${BIN}dropdb --if-exists "$DB" >/dev/null 2>&1 || true
    else
        ${BIN}psql -X -q -d "$DB" -c "SET session_replication_role = replica;
            DELETE FROM shop.order_line WHERE order_id IN (SELECT order_id FROM shop.\"order\" WHERE currency = 'XRB');
            DELETE FROM shop.\"order\" WHERE currency = 'XRB'; DROP TABLE IF EXISTS reco_bench_pid, reco_bench_full;
            DELETE FROM shop.experiment WHERE name = 'bench-exp';
            DELETE FROM shop.experiment_impression WHERE unit ~ '^[0-9]+$' AND experiment_id NOT IN (SELECT experiment_id FROM shop.experiment);" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
PSQL="${BIN}psql -X -q -v ON_ERROR_STOP=1 -d $DB"

nprod=$($PSQL -At -c "SELECT count(*) FROM shop.product WHERE status = 'active'")
lines=$((nprod * PER))
orders=$((lines / 3))
customers=$((orders * 8 / 10 / 5 + 1))

$PSQL >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS reco_bench_pid, reco_bench_full;
CREATE TABLE reco_bench_pid AS
SELECT row_number() OVER (ORDER BY product_id)::int AS i, product_id
  FROM shop.product WHERE status = 'active';
ALTER TABLE reco_bench_pid ADD PRIMARY KEY (i);
SET session_replication_role = replica;
CREATE TEMP TABLE gen_order AS
SELECT gen_random_uuid() AS order_id,
       CASE WHEN random() < 0.8 THEN 1 + floor(random() * $customers)::bigint END AS customer_id,
       now() - random() * interval '365 days' AS created_at,
       1 + floor(random() * 5)::int AS k,
       1 + floor($nprod * power(random(), 3))::int AS anchor
  FROM generate_series(1, $orders);
INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents, total_cents, created_at)
SELECT order_id, customer_id, shop._customer_key(customer_id, order_id), 'paid', 'XRB', 0, 0, created_at FROM gen_order;
INSERT INTO shop.order_line (order_id, customer_key, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT g.order_id, shop._customer_key(g.customer_id, g.order_id), j, p.product_id, 'bench', 'bench', 100, 1
  FROM gen_order g
 CROSS JOIN LATERAL (SELECT j, CASE WHEN j = 1 THEN g.anchor
                                    ELSE 1 + (g.anchor + floor(random() * 30)::int - 15 + $nprod) % $nprod END AS pi
                       FROM generate_series(1, g.k) j) x
  JOIN reco_bench_pid p ON p.i = x.pi;
RESET session_replication_role;
ANALYZE shop."order"; ANALYZE shop.order_line;
SELECT shop.rebuild_recommendations();
-- products whose co-purchase list alone fills 10 slots
CREATE TABLE reco_bench_full AS
SELECT row_number() OVER (ORDER BY product_id)::int AS i, product_id
  FROM (SELECT product_id FROM shop.copurchase WHERE score > 0 GROUP BY product_id HAVING count(*) >= 10) x;
ALTER TABLE reco_bench_full ADD PRIMARY KEY (i);
SELECT shop.experiment_create('bench-exp', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]');
VACUUM ANALYZE;
SQL
nfull=$($PSQL -At -c "SELECT count(*) FROM reco_bench_full")
nlines=$($PSQL -At -c "SELECT count(*) FROM shop.order_line l JOIN shop.\"order\" o USING (order_id) WHERE o.currency = 'XRB'")

cat > "$TMPD/rec.sql" <<SQL
\set c random(1, $customers)
SELECT * FROM shop.recommend(:c, 10);
SQL
cat > "$TMPD/rec_item.sql" <<SQL
\set c random(1, $customers)
SELECT * FROM shop._recommend_personal(:c, 10);
SQL
cat > "$TMPD/rec_exp.sql" <<SQL
\set c random(1, $customers)
SELECT * FROM shop.recommend(:c, 10, 'bench-exp');
SQL
cat > "$TMPD/also.sql" <<SQL
\set i random_exponential(1, $nprod, 5)
\set c random(1, $customers)
SELECT * FROM shop.also_bought((SELECT product_id FROM reco_bench_pid WHERE i = :i), 10);
SQL
cat > "$TMPD/also_exp.sql" <<SQL
\set i random_exponential(1, $nprod, 5)
\set c random(1, $customers)
SELECT * FROM shop.also_bought((SELECT product_id FROM reco_bench_pid WHERE i = :i), 10, 'bench-exp', :c);
SQL
cat > "$TMPD/full.sql" <<SQL
\set i random(1, $nfull)
\set c random(1, $customers)
SELECT * FROM shop.also_bought((SELECT product_id FROM reco_bench_full WHERE i = :i), 10);
SQL
cat > "$TMPD/full_exp.sql" <<SQL
\set i random(1, $nfull)
\set c random(1, $customers)
SELECT * FROM shop.also_bought((SELECT product_id FROM reco_bench_full WHERE i = :i), 10, 'bench-exp', :c);
SQL
export PGDATABASE=$DB
rows=$TMPD/experiment_rows.tsv
: >"$rows"
bench_pgbench "shop.recommend(c, 10)" 1 "$DUR" "$TMPD/rec.sql" >>"$rows"
bench_pgbench "shop._recommend_personal(c, 10): the list before the blend" 1 "$DUR" "$TMPD/rec_item.sql" >>"$rows"
bench_pgbench "shop.recommend(c, 10, experiment)" 1 "$DUR" "$TMPD/rec_exp.sql" >>"$rows"
bench_pgbench "shop.also_bought(p, 10)" 1 "$DUR" "$TMPD/also.sql" >>"$rows"
bench_pgbench "shop.also_bought(p, 10, experiment, c)" 1 "$DUR" "$TMPD/also_exp.sql" >>"$rows"
if [ "$nfull" -gt 0 ]; then
    bench_pgbench "shop.also_bought(p, 10), full lists" 1 "$DUR" "$TMPD/full.sql" >>"$rows"
    bench_pgbench "shop.also_bought(p, 10, experiment, c), full lists" 1 "$DUR" "$TMPD/full_exp.sql" >>"$rows"
fi
nimp=$($PSQL -At -c "SELECT (SELECT count(*) FROM shop.experiment_impression) + (SELECT count(*) FROM shop.experiment_impression_recent)")
# the nightly health job on this history (its orders are spread over a
# year: the last 30 days, at most 2,000 orders)
te0=$(date +%s.%N)
evaluation=$($PSQL -At -c "SELECT shop.reco_evaluate(30, 2000)")
te1=$(date +%s.%N)

echo "## Recommendations: experiments"
echo
echo "$nprod active products, $nlines order lines ($PER per product); $nfull products with a full co-purchase list."
echo "One client each, warm; the experiment's variants both use the default list, so the"
echo "difference is assignment and the impression row ($nimp impressions written)."
echo
bench_md_table <"$rows"
echo
echo "shop.reco_evaluate(30, 2000) took $(awk -v a="$te0" -v b="$te1" 'BEGIN { printf "%.2f", b - a }') s: $evaluation"
