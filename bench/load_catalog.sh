#!/usr/bin/env bash
# bench/load_catalog.sh: load the synthetic catalog into the database the
# environment points at (PGHOST PGPORT PGUSER PGDATABASE; shop created).
# Called by run.sh; can be run by hand against any scratch database with
# shop installed and no products yet.
#
#   BENCH_SCALE products (default 1,000,000), deterministic by BENCH_SEED,
#   from bench/model/icecat_model.tsv by bench/bin/shopgen (compiled here
#   from bench/gen/shopgen.c when missing or older than its source):
#
#   1. the category tree of the model, through shop.category_add;
#   2. the secondary indexes of shop.product are dropped (their definitions
#      kept), so the load does not maintain them row by row;
#   3. products: COPY into shop.product, in parallel streams (one per CPU,
#      at most 4, one below 10,000 products; BENCH_LOAD_PARTS overrides);
#      the triggers of shop.product run (SKU registry, FKs);
#   4. stock: one shop.stock row per product (2% of products with nothing
#      on hand), COPY with session_replication_role = replica so that no
#      per-row trigger rewrites shop.product: the generator already set
#      shop.product.in_stock to match (on_hand > 0);
#   5. the dropped indexes are rebuilt, each timed;
#   6. VACUUM ANALYZE.
#
# Timings go to BENCH_LOAD_STATS (TSV), read by workloads/catalog_load.sh:
#   step   NAME  SECONDS  ROWS
#   index  NAME  SECONDS  BYTES  AM
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH_SCALE=${BENCH_SCALE:-1000000}
BENCH_SEED=${BENCH_SEED:-42}
BENCH_LOAD_STATS=${BENCH_LOAD_STATS:-$TOP/tmp_bench/load_stats.tsv}
PSQLBIN=${PGBIN:+$PGBIN/}psql
PSQL=("$PSQLBIN" -X -q -At -v ON_ERROR_STOP=1)
MODEL="$TOP/bench/model/icecat_model.tsv"
GEN="$TOP/bench/bin/shopgen"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

if [ ! -x "$GEN" ] || [ "$TOP/bench/gen/shopgen.c" -nt "$GEN" ]; then
    mkdir -p "$TOP/bench/bin"
    ${CC:-cc} -O2 -Wall -Wextra -o "$GEN" "$TOP/bench/gen/shopgen.c" -lm
fi
[ "$("${PSQL[@]}" -c "SELECT count(*) FROM shop.product")" = 0 ] ||
    { log "shop.product is not empty; load_catalog.sh wants a fresh database"; exit 1; }

mkdir -p "$(dirname "$BENCH_LOAD_STATS")"
: >"$BENCH_LOAD_STATS"
stat() { printf '%s\n' "$(IFS=$'\t'; echo "$*")" >>"$BENCH_LOAD_STATS"; }
t_all=$(now)

# 1. Categories.
t0=$(now)
"$GEN" "$MODEL" categories >"$WORK/cats.tsv"
"${PSQL[@]}" <<EOF
CREATE TEMP TABLE m (mid int, pmid int, name text);
\copy m FROM '$WORK/cats.tsv'
CREATE TEMP TABLE map (mid int PRIMARY KEY, cid bigint);
DO \$\$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM m ORDER BY mid LOOP
        INSERT INTO map
        SELECT r.mid, shop.category_add(r.name, (SELECT cid FROM map WHERE mid = r.pmid));
    END LOOP;
END
\$\$;
\copy map TO '$WORK/catmap.tsv'
EOF
stat step categories "$(since "$t0")" "$(wc -l <"$WORK/cats.tsv")"

# 2. Secondary indexes of shop.product: keep their definitions, drop them.
"${PSQL[@]}" -F $'\t' -c "
    SELECT i.indexrelid::regclass, pg_get_indexdef(i.indexrelid), am.amname
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
     WHERE i.indrelid = 'shop.product'::regclass
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
     ORDER BY 1::text" >"$WORK/indexes.tsv"
: >"$WORK/dropped.tsv"
while IFS=$'\t' read -r name def am; do
    if "${PSQL[@]}" -c "DROP INDEX $name" 2>"$WORK/drop.err"; then
        printf '%s\t%s\t%s\n' "$name" "$def" "$am" >>"$WORK/dropped.tsv"
    else
        log "kept index $name during the load: $(head -1 "$WORK/drop.err")"
    fi
done <"$WORK/indexes.tsv"

# 3. Products, in parallel COPY streams.
ncpu=$(nproc 2>/dev/null || echo 1)
parts=$ncpu; [ "$parts" -gt 4 ] && parts=4
[ "$BENCH_SCALE" -lt 10000 ] && parts=1
parts=${BENCH_LOAD_PARTS:-$parts}
t0=$(now)
pids=()
for ((i = 0; i < parts; i++)); do
    (
        set -o pipefail
        "$GEN" "$MODEL" products --scale "$BENCH_SCALE" --seed "$BENCH_SEED" \
            --part "$i" --parts "$parts" --catmap "$WORK/catmap.tsv" |
        "${PSQL[@]}" -c "COPY shop.product (product_id, sku, title, description, brand, category_id,
                          price_cents, attributes, images, status, rating_sum, rating_count,
                          popularity, in_stock, created_at) FROM STDIN"
    ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { log "product COPY failed"; exit 1; }; done
"${PSQL[@]}" -c "SELECT setval(pg_get_serial_sequence('shop.product', 'product_id'), $BENCH_SCALE)" >/dev/null
stat step products "$(since "$t0")" "$BENCH_SCALE"

# 4. Stock.
t0=$(now)
pids=()
for ((i = 0; i < parts; i++)); do
    (
        set -o pipefail
        "$GEN" "$MODEL" stock --scale "$BENCH_SCALE" --seed "$BENCH_SEED" --part "$i" --parts "$parts" |
        "${PSQL[@]}" -c "SET session_replication_role = replica" \
            -c "COPY shop.stock (product_id, location, bucket, on_hand, reserved) FROM STDIN"
    ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { log "stock COPY failed"; exit 1; }; done
stat step stock "$(since "$t0")" "$BENCH_SCALE"

# Check what was loaded before measuring anything on it.
check=$("${PSQL[@]}" -c "
    SELECT (SELECT count(*) FROM shop.product) = $BENCH_SCALE
       AND (SELECT count(*) FROM shop.stock) = $BENCH_SCALE
       AND (SELECT count(*) FROM shop.product_sku) = $BENCH_SCALE
       AND NOT EXISTS (SELECT 1 FROM shop.product p JOIN shop.stock s USING (product_id)
                        WHERE p.in_stock <> (s.on_hand > 0))")
[ "$check" = t ] || { log "the loaded catalog does not add up (products, stock, skus, in_stock)"; exit 1; }

# 5. Rebuild the dropped indexes.
while IFS=$'\t' read -r name def am; do
    t0=$(now)
    "${PSQL[@]}" -c "$def"
    secs=$(since "$t0")
    bytes=$("${PSQL[@]}" -c "SELECT pg_relation_size('$name')")
    stat index "$name" "$secs" "$bytes" "$am"
done <"$WORK/dropped.tsv"

# 6. VACUUM ANALYZE.
t0=$(now)
"${PSQL[@]}" -c "VACUUM ANALYZE"
stat step "vacuum analyze" "$(since "$t0")" ""
stat step total "$(since "$t_all")" "$BENCH_SCALE"
log "catalog loaded: $BENCH_SCALE products in $(since "$t_all") s"
