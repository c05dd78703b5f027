#!/usr/bin/env bash
# recommend_speed: how fast the recommendation tables are built and read.
#
# Order history generated to scale: RECO_LINES_PER_PRODUCT (default 10, the
# ratio of the issue: 1,000,000 products -> 10,000,000 order lines) lines per
# product of the bench catalog, in orders of 1 to 5 lines (3 on average),
# 80% from registered customers (5 orders each on average), 20% guests,
# spread over a year.  Products are drawn with a skew (a few best-sellers)
# and each order's lines sit near its first product in id order, so that
# there is structure to find.  Loaded with triggers off, as a bulk load is.
#
# Measures, in a copy of the bench database (CREATE DATABASE ... TEMPLATE,
# dropped at the end; the bench database itself when it cannot be copied,
# then the generated orders are deleted again):
#   - shop.rebuild_recommendations() on the whole log, against a plain SQL
#     GROUP BY of all pairs (the raw counts alone, no scoring or top-N);
#     and the rebuild's co-purchase part alone against the same baseline
#     (the whole rebuild also computes popularity and customers like you,
#     which the GROUP BY does not: docs/bench.md, "recommend_speed");
#   - shop.refresh_recommendations() after 10,000 new paid orders inserted
#     with triggers on (what checkout does), twice (a refresh rescores every
#     list when the scoring total moved, docs/recommendations.md);
#   - the popularity part of the rebuild and of each refresh (computed
#     and queued), measured alone on the same state in a transaction
#     rolled back, and the queued values' writes into shop.product after
#     each (CALL shop.popularity_sync(): one transaction per batch, what
#     the sweeper does in the background);
#   - each of the rebuild, the GROUP BY and the refreshes also by the
#     backend CPU of its session (/proc, user + system; n/a where it
#     cannot be read): the machine is shared and wall times move with
#     its load, the CPU ratio much less.
# The sweeper is held off (shop.sweep_interval = 1 day, by ALTER SYSTEM)
# for the run, so that it neither refreshes between the steps nor writes
# the queue; at exit the value the run found is put back: the one an
# earlier ALTER SYSTEM set (a kept cluster's), else ALTER SYSTEM RESET.
# The history is seeded: RECO_SEED (an integer, default 1) seeds
# random() of each generating session (setseed) and pgbench's draws of
# the read calls (--random-seed), so two runs of one commit at one scale
# compare the same orders, lines and customers (only the order ids,
# gen_random_uuid(), differ); set RECO_SEED to another value for another
# history.
#   - latency of shop.also_bought(p, 10) and shop.recommend(c, 10), one
#     client, against computing "bought together" on the fly from
#     shop.order_line (the baseline a shop without the table would run);
#     each again for customers and products asked before (their caches).
# Env: PGHOST PGPORT PGUSER PGDATABASE BENCH_SCALE BENCH_TMP PGBIN TOP.
set -euo pipefail
. "$TOP/bench/lib.sh"
BIN=${PGBIN:+$PGBIN/}
SCALE=${BENCH_SCALE:-100000}
PER=${RECO_LINES_PER_PRODUCT:-10}
DUR=${RECO_DURATION:-${BENCH_SECONDS:-15}}
SEED=${RECO_SEED:-1}
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "recommend_speed: RECO_SEED must be a non-negative integer" >&2; exit 1; }
# setseed() for generating session n (0: the history, 1 and 2: the new
# orders of each refresh): a value in [-1, 1) from RECO_SEED and n
seed_sql() { echo "SELECT setseed(($SEED * 3 + $1) % 2000000 / 1000000.0 - 1);"; }
TMPD=${BENCH_TMP:-$(mktemp -d)}
mkdir -p "$TMPD"
SRC=${PGDATABASE:-postgres}
DB=shop_reco_speed
copied=true
${BIN}dropdb --if-exists "$DB" >/dev/null 2>&1 || true
if ! ${BIN}createdb -T "$SRC" "$DB" >/dev/null 2>&1; then
    copied=false
    DB=$SRC
fi
# the sweep interval ALTER SYSTEM had set before the run (empty: none)
sweep_before=$(${BIN}psql -X -q -At -d "$SRC" -c "SELECT setting FROM pg_file_settings
    WHERE name = 'shop.sweep_interval' AND sourcefile ~ 'postgresql[.]auto[.]conf$'
    ORDER BY seqno DESC LIMIT 1" 2>/dev/null || true)
cleanup() {
    local put="ALTER SYSTEM RESET shop.sweep_interval"
    [ -n "$sweep_before" ] && put="ALTER SYSTEM SET shop.sweep_interval = '${sweep_before//\'/}'"
    ${BIN}psql -X -q -At -d "$SRC" >/dev/null 2>&1 \
        -c "$put" -c "SELECT pg_reload_conf()" || true
    [ -n "${RECO_KEEP:-}" ] && return 0
    if $copied; then
        ${BIN}dropdb --if-exists "$DB" >/dev/null 2>&1 || true
    else
        ${BIN}psql -X -q -d "$DB" -c "SET session_replication_role = replica;
            DELETE FROM shop.order_line WHERE order_id IN (SELECT order_id FROM shop.\"order\" WHERE currency = 'XRB');
            DELETE FROM shop.\"order\" WHERE currency = 'XRB'; DROP TABLE IF EXISTS reco_bench_pid;" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
PSQL="${BIN}psql -X -q -v ON_ERROR_STOP=1 -d $DB"
$PSQL -At >/dev/null -c "ALTER SYSTEM SET shop.sweep_interval = 86400" -c "SELECT pg_reload_conf()" || true

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
now() { date +%s.%N; }

nprod=$($PSQL -At -c "SELECT count(*) FROM shop.product WHERE status = 'active'")
lines=$((nprod * PER))
orders=$((lines / 3))
customers=$((orders * 8 / 10 / 5 + 1))

t0=$(now)
$PSQL >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS reco_bench_pid;
CREATE TABLE reco_bench_pid AS
SELECT row_number() OVER (ORDER BY product_id)::int AS i, product_id
  FROM shop.product WHERE status = 'active';
ALTER TABLE reco_bench_pid ADD PRIMARY KEY (i);
SET session_replication_role = replica;
$(seed_sql 0)
CREATE TEMP TABLE gen_order AS
SELECT gen_random_uuid() AS order_id,
       CASE WHEN random() < 0.8 THEN 1 + floor(random() * $customers)::bigint END AS customer_id,
       now() - random() * interval '365 days' AS created_at,
       1 + floor(random() * 5)::int AS k,
       -- first product: skewed towards low ranks
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
SQL
t1=$(now)
nlines=$($PSQL -At -c "SELECT count(*) FROM shop.order_line l JOIN shop.\"order\" o USING (order_id) WHERE o.currency = 'XRB'")

# the popularity part of the rebuild alone (every product, on the fresh
# history), rolled back
tp0=$(now)
$PSQL >/dev/null -c "BEGIN; SELECT shop._popularity_refresh(); ROLLBACK;"
tp1=$(now)
# the queued popularity values written into shop.product, one
# transaction per batch (what the sweeper does after a refresh)
sync_time() {
    local a b
    a=$(now)
    $PSQL >/dev/null -c "CALL shop.popularity_sync()"
    b=$(now)
    secs "$a" "$b"
}
# full rebuild
# backend CPU (user + system) of a statement, in its own session: the
# machine is shared, so wall times move with the load; CPU compares
# (NULL, printed n/a, where /proc cannot be read)
$PSQL -q >/dev/null <<SQL
CREATE OR REPLACE FUNCTION reco_bench_cpu() RETURNS numeric LANGUAGE plpgsql AS \$f\$
DECLARE f text[];
BEGIN
    f := string_to_array(split_part(pg_read_file('/proc/' || pg_backend_pid() || '/stat'), ') ', 2), ' ');
    RETURN (f[12]::bigint + f[13]::bigint)::numeric / $(getconf CLK_TCK 2>/dev/null || echo 100);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END \$f\$;
SQL
# cpu_of SQL...: runs the statements in one session; prints their output,
# the session's CPU seconds for them go to the file $TMPD/cpu
cpu_of() {
    local out
    out=$($PSQL -At -c "SELECT 'cpu0 ' || coalesce(reco_bench_cpu()::text, '')" "$@" \
                    -c "SELECT 'cpu1 ' || coalesce(reco_bench_cpu()::text, '')")
    echo "$out" | awk '/^cpu0 / { a = $2 } /^cpu1 / { b = $2 }
                       END { if (a != "" && b != "") printf "%.2f", b - a; else print "n/a" }' >"$TMPD/cpu"
    echo "$out" | grep -v '^cpu[01] ' || true
}
t2=$(now)
rebuild=$(cpu_of -c "SELECT shop.rebuild_recommendations()")
t3=$(now)
cpu_rebuild=$(cat "$TMPD/cpu")
sync0=$(sync_time)
# baseline: the raw pair counts alone, one SQL statement
cpu_of -c "SET work_mem = '256MB'" -c "
CREATE TEMP TABLE raw_pairs AS
SELECT a.product_id, b.product_id AS other_id, count(*) AS n
  FROM shop.order_line a JOIN shop.order_line b ON a.order_id = b.order_id AND a.product_id <> b.product_id
  JOIN shop.\"order\" o ON o.order_id = a.order_id
 WHERE o.status IN ('paid', 'fulfilling', 'shipped', 'delivered')
 GROUP BY 1, 2" >/dev/null
t4=$(now)
cpu_base=$(cat "$TMPD/cpu")
# the baseline counts raw pairs only; the rebuild also computes
# popularity, every customer profile and customers-like-you list: its
# co-purchase pairs alone (shop.copurchase_order, statistics, pair rows,
# scored top-N lists, written), the work the GROUP BY stands for, on the
# same state in a transaction rolled back
tq0=$(now)
cpu_of -c "BEGIN" -c "SELECT pg_advisory_xact_lock(hashtext('shop.recommendations'))" \
       -c "TRUNCATE shop.copurchase_order" \
       -c "SELECT shop._rebuild_orders(shop._guc('shop.reco_buyer_cap')::float8)" \
       -c "SELECT shop._rebuild_pairs()" -c "ROLLBACK" >/dev/null
tq1=$(now)
cpu_pairs=$(cat "$TMPD/cpu")

# 10,000 new orders with triggers on, then the incremental refresh; twice,
# since a refresh rescores every list when the scoring total moved (about
# every 3-6% of growth of the basket total: at this scale, most batches)
new_orders() {
    $PSQL >/dev/null <<SQL
$(seed_sql "$1")
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
SQL
}
# the popularity part of a refresh alone, on the same state, rolled back:
# the logged orders' lines added to their products' kept masses, as the
# refresh does with the orders it folds (these are all new: sign +1; the
# refresh also passes, with sign 0, the older orders of customers whose
# buyer-cap share moved)
pop_alone() {
    local a b
    a=$(now)
    $PSQL >/dev/null <<'SQL'
BEGIN;
SELECT shop._popularity_add(o, array_fill(1, ARRAY[cardinality(o)]), '{}')
  FROM (SELECT ARRAY(SELECT DISTINCT d.order_id FROM shop.copurchase_delta d) AS o) x;
ROLLBACK;
SQL
    b=$(now)
    secs "$a" "$b"
}
new_orders 1
pop1=$(pop_alone)
t5=$(now)
refresh=$(cpu_of -c "SELECT shop.refresh_recommendations()")
t6=$(now)
cpu_refresh=$(cat "$TMPD/cpu")
sync1=$(sync_time)
new_orders 2
pop2=$(pop_alone)
t7=$(now)
refresh2=$(cpu_of -c "SELECT shop.refresh_recommendations()")
t8=$(now)
cpu_refresh2=$(cat "$TMPD/cpu")
sync2=$(sync_time)

# latency: one client, pgbench
cat > "$TMPD/also.sql" <<SQL
\set i random_exponential(1, $nprod, 5)
SELECT * FROM shop.also_bought((SELECT product_id FROM reco_bench_pid WHERE i = :i), 10);
SQL
cat > "$TMPD/rec.sql" <<SQL
\set c random(1, $customers)
SELECT * FROM shop.recommend(:c, 10);
SQL
cat > "$TMPD/naive.sql" <<SQL
\set i random_exponential(1, $nprod, 5)
SELECT b.product_id, count(*) FROM shop.order_line a JOIN shop.order_line b ON b.order_id = a.order_id
 WHERE a.product_id = (SELECT product_id FROM reco_bench_pid WHERE i = :i) AND b.product_id <> a.product_id
 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10;
SQL
export PGDATABASE=$DB
rows=$TMPD/recommend_rows.tsv
: >"$rows"
bench_pgbench "baseline: bought-together GROUP BY on order_line" 1 "$DUR" "$TMPD/naive.sql" --random-seed="$SEED" >>"$rows"
bench_pgbench "shop.also_bought(p, 10)" 1 "$DUR" "$TMPD/also.sql" --random-seed="$SEED" >>"$rows"
bench_pgbench "shop.recommend(c, 10)" 1 "$DUR" "$TMPD/rec.sql" --random-seed="$SEED" >>"$rows"
# the same customers again: the first 1,000, each asked once first
# (recommend's per-customer cache of the blended list)
cat > "$TMPD/rec_seen.sql" <<SQL
\set c random(1, 1000)
SELECT * FROM shop.recommend(:c, 10);
SQL
$PSQL -At -c "SELECT count(*) FROM generate_series(1, 1000) c, LATERAL shop.recommend(c, 10) r" >/dev/null
bench_pgbench "shop.recommend(c, 10), customers asked before (cached list)" 1 "$DUR" "$TMPD/rec_seen.sql" --random-seed="$SEED" >>"$rows"
# also_bought for products asked before: the first 2,000 of the skewed
# head, each asked once first (a thin list's fill is then served from
# shop.also_bought_cache); the uniform row above is mostly first calls
cat > "$TMPD/also_seen.sql" <<SQL
\set i random(1, 2000)
SELECT * FROM shop.also_bought((SELECT product_id FROM reco_bench_pid WHERE i = :i), 10);
SQL
$PSQL -At -c "SELECT count(*) FROM generate_series(1, 2000) g(i), LATERAL shop.also_bought((SELECT product_id FROM reco_bench_pid p WHERE p.i = g.i), 10)" >/dev/null
bench_pgbench "shop.also_bought(p, 10), products asked before (cached fill)" 1 "$DUR" "$TMPD/also_seen.sql" --random-seed="$SEED" >>"$rows"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "## Recommendations: speed"
echo
echo "$nprod active products; $nlines order lines generated ($PER per product, orders of 1-5 lines, RECO_SEED $SEED) in $(secs "$t0" "$t1") s."
echo
echo "| step | seconds | baseline seconds / these | backend CPU s | baseline CPU / these |"
echo "|---|---|---|---|---|"
echo "| shop.rebuild_recommendations(), whole log (pairs, scores, top-N written; popularity computed, queued, first batch written) | $(secs "$t2" "$t3") | $(ratio "$(secs "$t3" "$t4")" "$(secs "$t2" "$t3")") | $cpu_rebuild | $(ratio "$cpu_base" "$cpu_rebuild") |"
echo "| of which popularity computed and queued (every product, alone, rolled back) | $(secs "$tp0" "$tp1") | | | |"
echo "| then the queued popularity written into shop.product (CALL shop.popularity_sync(), a transaction per batch; the sweeper's work) | $sync0 | | | |"
echo "| of which the co-purchase pairs alone (copurchase_order, pair counts, pair rows, scored top-N lists written; alone, rolled back) | $(secs "$tq0" "$tq1") | $(ratio "$(secs "$t3" "$t4")" "$(secs "$tq0" "$tq1")") | $cpu_pairs | $(ratio "$cpu_base" "$cpu_pairs") |"
echo "| baseline: one SQL GROUP BY of all raw pairs into a temp table (counts only) | $(secs "$t3" "$t4") | 1.00 | $cpu_base | 1.00 |"
echo "| shop.refresh_recommendations() after 10,000 new paid orders (triggers on) | $(secs "$t5" "$t6") | $(ratio "$(secs "$t3" "$t4")" "$(secs "$t5" "$t6")") (rebuild / refresh: $(ratio "$(secs "$t2" "$t3")" "$(secs "$t5" "$t6")")) | $cpu_refresh | $(ratio "$cpu_base" "$cpu_refresh") |"
echo "| of which popularity computed and queued (the same products, alone, rolled back) | $pop1 | | | |"
echo "| then the queued popularity written (CALL shop.popularity_sync()) | $sync1 | | | |"
echo "| shop.refresh_recommendations() after 10,000 more | $(secs "$t7" "$t8") | $(ratio "$(secs "$t3" "$t4")" "$(secs "$t7" "$t8")") | $cpu_refresh2 | $(ratio "$cpu_base" "$cpu_refresh2") |"
echo "| of which popularity computed and queued (as above) | $pop2 | | | |"
echo "| then the queued popularity written | $sync2 | | | |"
echo
echo "rebuild: \`$rebuild\`"
echo
echo "refresh: \`$refresh\`"
echo
echo "second refresh: \`$refresh2\`"
echo
echo "Read calls, one client, ${DUR} s each; products drawn with an exponential skew (popular ones more often; or the 2,000 most drawn, each asked once before the run), customers uniformly (of all, or of the first 1,000, each asked once before the run):"
echo
bench_md_table_vs "baseline: bought-together GROUP BY on order_line" <"$rows"
echo
