#!/usr/bin/env bash
# bench_catalog: the `make bench` machinery keeps working as the schema
# grows (no timings are checked here; docs/bench.md):
#   - the generator is deterministic by seed and independent of how the
#     catalog is split into parallel streams;
#   - bench/load_catalog.sh loads a small catalog (categories through
#     shop.category_add, products by COPY with the triggers on, stock),
#     leaves every index of shop.product in place, and what it loads adds
#     up (tree, leaves only, stock and in_stock, SKUs, value ranges);
#   - the same seed loads the same catalog into a second database;
#   - bench/lib.sh's helpers parse pgbench and psql output into rows.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/bench_catalog"
PORT=$(free_port bench_catalog)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)
fail() { echo "FAILED: $*"; exit 1; }

MODEL="$TOP/bench/model/icecat_model.tsv"
GEN="$TOP/bench/bin/shopgen"
WORK="$DIR/work"
mkdir -p "$WORK"
mkdir -p "$TOP/bench/bin"
cc -O2 -Wall -Wextra -Werror -o "$GEN" "$TOP/bench/gen/shopgen.c" -lm

# 1. Generator: deterministic, split-independent, seed-dependent.
"$GEN" "$MODEL" categories >"$WORK/cats.tsv"
awk -F'\t' '{ print $1 "\t" $1 + 100 }' "$WORK/cats.tsv" >"$WORK/catmap.tsv"
gen() { "$GEN" "$MODEL" products --scale 3000 --catmap "$WORK/catmap.tsv" "$@"; }
one=$(gen | md5sum)
again=$(gen --seed 42 | md5sum)
split=$( (gen --part 0 --parts 3; gen --part 1 --parts 3; gen --part 2 --parts 3) | md5sum)
other=$(gen --seed 7 | md5sum)
[ "$one" = "$again" ] || fail "generator output differs between two runs"
[ "$one" = "$split" ] || fail "generator output depends on the number of parts"
[ "$one" != "$other" ] || fail "generator output does not depend on the seed"
[ "$(gen | wc -l)" = 3000 ] || fail "generator did not write 3000 products"
echo "generator: deterministic, split-independent, seed-dependent"

# 2. Load a catalog in two parallel streams.
"$PGBIN/createdb" b1
export PGDATABASE=b1
"${PSQL[@]}" -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
idx_before=$("${PSQL[@]}" -c "SELECT string_agg(pg_get_indexdef(indexrelid), E'\n' ORDER BY 1)
                               FROM pg_index WHERE indrelid = 'shop.product'::regclass")
BENCH_SCALE=3000 BENCH_SEED=42 BENCH_LOAD_PARTS=2 BENCH_LOAD_STATS="$WORK/stats.tsv" \
    "$TOP/bench/load_catalog.sh"
idx_after=$("${PSQL[@]}" -c "SELECT string_agg(pg_get_indexdef(indexrelid), E'\n' ORDER BY 1)
                              FROM pg_index WHERE indrelid = 'shop.product'::regclass")
[ "$idx_before" = "$idx_after" ] || fail "indexes of shop.product changed by the load: $idx_after"
for step in categories products stock "vacuum analyze" total; do
    grep -q "^step	$step	" "$WORK/stats.tsv" || fail "load statistics lack step $step"
done

ncat_model=$(wc -l <"$WORK/cats.tsv")
nroot_model=$(awk -F'\t' '$2 == 0' "$WORK/cats.tsv" | wc -l)
"${PSQL[@]}" <<SQL | tee "$WORK/checks.txt"
SELECT 'categories ' || (count(*) = $ncat_model) FROM shop.category;
SELECT 'roots ' || (count(*) = $nroot_model) FROM shop.category WHERE parent_id IS NULL;
SELECT 'products ' || (count(*) = 3000) FROM shop.product;
SELECT 'ids ' || (min(product_id) = 1 AND max(product_id) = 3000) FROM shop.product;
SELECT 'next id ' || (nextval(pg_get_serial_sequence('shop.product', 'product_id')) = 3001);
SELECT 'leaves only ' || NOT EXISTS (SELECT 1 FROM shop.product p JOIN shop.category k ON k.parent_id = p.category_id);
SELECT 'skus ' || (count(DISTINCT sku) = 3000) FROM shop.product;
SELECT 'stock ' || (count(*) = 3000) FROM shop.stock;
SELECT 'in_stock ' || bool_and(p.in_stock = (s.on_hand > 0)) FROM shop.product p JOIN shop.stock s USING (product_id);
SELECT 'some out of stock ' || (count(*) FILTER (WHERE NOT in_stock) BETWEEN 1 AND 300) FROM shop.product;
SELECT 'mostly active ' || (avg((status = 'active')::int) BETWEEN 0.9 AND 0.995) FROM shop.product;
SELECT 'prices ' || bool_and(price_cents > 0 AND price_cents % 100 = 99) FROM shop.product;
SELECT 'ratings ' || bool_and(rating_sum BETWEEN rating_count AND 5 * rating_count) FROM shop.product;
SELECT 'some rated ' || (count(*) FILTER (WHERE rating_count > 0) BETWEEN 300 AND 2900) FROM shop.product;
SELECT 'colors ' || (count(*) FILTER (WHERE attributes ? 'color') BETWEEN 300 AND 2900) FROM shop.product;
SELECT 'titles ' || bool_and(title LIKE brand || ' %' AND array_length(regexp_split_to_array(title, ' '), 1) >= 4) FROM shop.product;
SELECT 'descriptions ' || bool_and(description ~ '^[^ ].* .*\.$') FROM shop.product;
SELECT 'images ' || bool_and(images[1] = format('https://cdn.example.com/shop/p/%s-1.jpg', product_id)) FROM shop.product;
SELECT 'many brands ' || (count(DISTINCT brand) > 50) FROM shop.product;
SELECT 'browse ' || (count(*) = 20) FROM shop.browse((SELECT category_id FROM shop.category WHERE name = 'Printing'));
SQL
if grep -q ' false$' "$WORK/checks.txt"; then
    fail "catalog checks: $(grep ' false$' "$WORK/checks.txt" | tr '\n' ';')"
fi

# 3. Same seed, same catalog (in one stream this time).
fingerprint() {
    "${PSQL[@]}" -d "$1" -c "
        SELECT md5(string_agg(concat_ws('|', p.product_id, p.sku, p.title, p.description, p.brand,
                                        c.name, p.price_cents, p.attributes, p.images, p.status,
                                        p.rating_sum, p.rating_count, p.popularity, p.in_stock,
                                        p.created_at, s.on_hand), E'\n' ORDER BY p.product_id))
          FROM shop.product p JOIN shop.category c USING (category_id) JOIN shop.stock s USING (product_id)"
}
"$PGBIN/createdb" b2
"${PSQL[@]}" -d b2 -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
PGDATABASE=b2 BENCH_SCALE=3000 BENCH_SEED=42 BENCH_LOAD_PARTS=1 BENCH_LOAD_STATS="$WORK/stats2.tsv" \
    "$TOP/bench/load_catalog.sh"
[ "$(fingerprint b1)" = "$(fingerprint b2)" ] || fail "the same seed loaded different catalogs"
echo "load: checks pass; same seed, same catalog"

# 4. lib.sh parses what pgbench and psql print.
BENCH_TMP="$WORK/lib"
mkdir -p "$BENCH_TMP"
. "$TOP/bench/lib.sh"
for i in $(seq 1 20); do echo "SELECT * FROM shop.product WHERE product_id = $i;"; done >"$BENCH_TMP/q.sql"
echo "SELECT 1/0;" >>"$BENCH_TMP/q.sql"
row=$(bench_sql_latency "lookups" "$BENCH_TMP/q.sql" 2>/dev/null)
echo "$row"
echo "$row" | awk -F'\t' '$1 == "lookups" && $2 == 1 && $3 > 0 && $4 ~ /^[0-9.]+$/ && $6 >= $4 && $7 == 20 && $8 == 1 { ok = 1 }
                          END { exit !ok }' || fail "bench_sql_latency row: $row"
printf '\\set p random(1, 3000)\nSELECT title FROM shop.product WHERE product_id = :p;\n' >"$BENCH_TMP/p.sql"
bench_pgbench "pk" 2 1 "$BENCH_TMP/p.sql" >"$BENCH_TMP/pk.tsv"
row=$(cat "$BENCH_TMP/pk.tsv")
echo "$row"
echo "$row" | awk -F'\t' '$1 == "pk" && $2 == 2 && $3 > 0 && $5 >= $4 && $6 >= $5 && $7 > 0 && $8 == 0 { ok = 1 }
                          END { exit !ok }' || fail "bench_pgbench row: $row"
[ "$BENCH_OK" -gt 0 ] && [ "$BENCH_FAILED" = 0 ] || fail "bench_pgbench variables"
printf 'SELECT 1/0;\n' >"$BENCH_TMP/bad.sql"
row=$(bench_pgbench "bad" 2 1 "$BENCH_TMP/bad.sql" 2>/dev/null)
echo "$row"
echo "$row" | awk -F'\t' '$7 == 0 && $8 == 2 { ok = 1 } END { exit !ok }' || fail "failing pgbench row: $row"
table=$(printf 'base\t1\t10\t2.0\t3\t4\t10\t0\nmine\t1\t40\t0.5\t1\t1\t40\t0\n' | bench_md_table_vs base)
echo "$table"
echo "$table" | grep -q '^| mine | 1 | 40 | 0.5 | 1 | 1 | 40 | 0 | 4.00x | 4.00x |$' || fail "bench_md_table_vs"
[ "$(bench_ratio 3 2)" = 1.50 ] && [ "$(bench_ratio 3 0)" = n/a ] || fail "bench_ratio"
echo "lib.sh: ok"
