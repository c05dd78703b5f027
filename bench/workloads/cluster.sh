#!/usr/bin/env bash
# cluster: shop through the router (docs/scale-out.md) against one node, in
# the same run, on the same machine.  A router cluster and two shard
# clusters with two shard databases each (4 partitions), built as
# test/cluster builds them (scripts/cluster.sh), and a one-node database
# "one" on the first shard cluster.  Both get the same BENCH_CLUSTER_PRODUCTS
# products (default min(BENCH_SCALE, 20000)) of the bench catalog, with
# every category, by COPY (each shard its own products: the bulk load of
# docs/scale-out.md), stocked, then VACUUM ANALYZE.  Measured:
#   - search (words of the catalog, top 10): p50 and p99 with 1 client, and
#     queries/s with 4 clients, routed and on one node;
#   - checkout of 3-line carts whose lines sit on different shards (built
#     before the timed runs), tps and latency with 1 and 4 clients, routed
#     (the saga) and on one node;
#   - the shards' own time per routed call (pg_stat_user_functions), the
#     per-call costs the throughput model of docs/scale-out.md starts from;
#   - checkout throughput (4 clients) with 1, 2 and 4 shards in the same
#     run: two more routers (databases router1 and router2 on the router
#     cluster) over 1 shard (on cluster A) and 2 shards (one on each shard
#     cluster), loaded as the 4 shards are, after the runs above.
# Skipped, with a message, where PL/Proxy is not installed.
set -euo pipefail
. "$TOP/bench/lib.sh"
. "$TOP/scripts/pgenv.sh"     # free_port, cluster_init (PGBIN is make bench's tmp_install)
SECS=${BENCH_SECONDS:-15}
NPROD=${BENCH_CLUSTER_PRODUCTS:-$(( BENCH_SCALE < 20000 ? BENCH_SCALE : 20000 ))}
SRC_HOST=$PGHOST SRC_PORT=$PGPORT SRC_DB=$PGDATABASE

echo "## Cluster: the router against one node ($NPROD products, 4 shards on 2 clusters)"
echo
if [ ! -f "$("$PG_CONFIG" --sharedir)/extension/plproxy.control" ]; then
    echo "Skipped: PL/Proxy is not installed (Debian package postgresql-15-plproxy, which"
    echo "scripts/install-deps.sh installs); the router needs it."
    exit 0
fi

. "$TOP/scripts/cluster.sh"
trap 'shop_cluster_down immediate >/dev/null 2>&1 || true' EXIT
shop_cluster_up "$BENCH_TMP/cluster" >/dev/null 2>&1
ONE_DIR=$A ONE_PORT=$PA
"$PGBIN/createdb" -h "$A" -p "$PA" one
q "$A" "$PA" one -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"

# the catalog: categories on every database, each shard its products
src() { "$PGBIN/psql" -X -q -h "$SRC_HOST" -p "$SRC_PORT" -d "$SRC_DB" -v ON_ERROR_STOP=1 "$@"; }
COLS="product_id, sku, title, description, brand, category_id, price_cents, attributes, images, status,
      rating_sum, rating_count, popularity, in_stock, created_at, updated_at"
load() {   # dir port db where
    q "$1" "$2" "$3" -c "DELETE FROM shop.synonym; DELETE FROM shop.category"
    src -c "COPY (SELECT category_id, parent_id, name FROM shop.category ORDER BY path) TO STDOUT" |
        q "$1" "$2" "$3" -c "COPY shop.category (category_id, parent_id, name) FROM STDIN"
    src -c "COPY (SELECT $COLS FROM shop.product WHERE product_id <= $NPROD AND $4) TO STDOUT" |
        q "$1" "$2" "$3" -c "COPY shop.product ($COLS) FROM STDIN"
    q "$1" "$2" "$3" -c "SELECT count(shop.stock_set(product_id, 100000000)) FROM shop.product" >/dev/null
    q "$1" "$2" "$3" -c "VACUUM ANALYZE"
}
bench_note "loading $NPROD products into 4 shards and one node"
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    load "$dir" "$port" "s$i" "(hashint8(product_id) & 3) = $i"
done
load "$A" "$PA" one true
q "$R" "$PR" router -c "SELECT shop_router.sync_product_ids()" >/dev/null

# the shards count the time of every function (the per-call costs)
for c in "$A $PA" "$B $PB"; do
    # shellcheck disable=SC2086
    q $c postgres -c "ALTER SYSTEM SET track_functions = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
done

# search: frequent title words of the catalog
WORDS=$(src -At -c "SELECT string_agg(quote_literal(w), ',') FROM (
    SELECT t.word AS w FROM shop.product p CROSS JOIN LATERAL shop.search_tokens(p.title) t
     WHERE p.product_id <= $NPROD AND length(t.word) >= 4 AND t.word !~ '[0-9]'
     GROUP BY t.word ORDER BY count(*) DESC, t.word LIMIT 20) x")
cat >"$BENCH_TMP/c_search.sql" <<EOF
\set w random(1, 20)
SELECT count(*) FROM shop.search((ARRAY[$WORDS])[:w], lim => 10);
EOF

# checkout: carts of 3 lines, each line an active product of partition 0,
# 1 and 2, for customers 1..NCART, built in bulk before the timed runs (as
# the checkout workload builds its own): on one node with random ids, on
# the customer's shard with ids the router makes (they name the shard)
PER=$((SECS * 500))           # carts per client of a 4-client run
NCART=$((5 * PER + SECS * 1000))
bench_note "building $NCART carts on both sides"
src -At -c "COPY (
    WITH a AS (SELECT hashint8(product_id) & 3 AS k, array_agg(product_id ORDER BY product_id) AS ids
                 FROM shop.product WHERE product_id <= $NPROD AND status = 'active' GROUP BY 1)
    SELECT n, x.pid, p.price_cents
      FROM generate_series(1, $NCART) n, a,
           LATERAL (SELECT a.ids[1 + (n * 37 + a.k * 101) % cardinality(a.ids)] AS pid) x
      JOIN shop.product p ON p.product_id = x.pid
     WHERE a.k < 3) TO STDOUT" >"$BENCH_TMP/c_lines.tsv"
q "$R" "$PR" router -c "CREATE TABLE public.bench_cart (n int PRIMARY KEY, cart uuid NOT NULL)" \
    -c "INSERT INTO public.bench_cart SELECT n, shop_router._uuid_for(hashint8(n::bigint)) FROM generate_series(1, $NCART) n"
q "$R" "$PR" router -c "COPY public.bench_cart TO STDOUT" >"$BENCH_TMP/c_carts_router.tsv"
q "$A" "$PA" one -c "CREATE TABLE public.bench_cart (n int PRIMARY KEY, cart uuid NOT NULL)" \
    -c "INSERT INTO public.bench_cart SELECT n, gen_random_uuid() FROM generate_series(1, $NCART) n"
q "$A" "$PA" one -c "COPY public.bench_cart TO STDOUT" >"$BENCH_TMP/c_carts_one.tsv"
carts() {   # dir port db carts.tsv where
    q "$1" "$2" "$3" <<SQL
SET client_min_messages = warning;
CREATE TEMP TABLE c (n int, cart uuid);
CREATE TEMP TABLE l (n int, pid bigint, price bigint);
\\copy c FROM '$4'
\\copy l FROM '$BENCH_TMP/c_lines.tsv'
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
SELECT cart, n, now() + interval '1 day' FROM c WHERE $5;
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
SELECT c.cart, l.pid, 1, l.price FROM c JOIN l USING (n) WHERE $5;
VACUUM ANALYZE shop.cart, shop.cart_item;
SQL
}
carts "$A" "$PA" one "$BENCH_TMP/c_carts_one.tsv" true
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    carts "$dir" "$port" "s$i" "$BENCH_TMP/c_carts_router.tsv" "(hashint8(n::bigint) & 3) = $i"
done
cat >"$BENCH_TMP/c_checkout.sql" <<'EOF'
\set n :n + 1
\set k :base + :client_id * :per + :n
SELECT shop.checkout((SELECT cart FROM public.bench_cart WHERE n = :k), 'tok_visa', 'bench-' || :k);
EOF

rows=$BENCH_TMP/cluster_rows.tsv
: >"$rows"
on() { local h=$1 p=$2 d=$3; shift 3; ( export PGHOST=$h PGPORT=$p PGDATABASE=$d; "$@" ); }
# search first on one node, then routed, with 1 and 4 clients
on "$A" "$PA" one bench_pgbench "one node: search" 1 "$SECS" "$BENCH_TMP/c_search.sql" >>"$rows"
on "$R" "$PR" router bench_pgbench "router: search" 1 "$SECS" "$BENCH_TMP/c_search.sql" >>"$rows"
on "$A" "$PA" one bench_pgbench "one node: search, 4 clients" 4 "$SECS" "$BENCH_TMP/c_search.sql" >>"$rows"
on "$R" "$PR" router bench_pgbench "router: search, 4 clients" 4 "$SECS" "$BENCH_TMP/c_search.sql" >>"$rows"

# shard time per routed call: the shards' function counters before and after
shard_fn() {   # the shards' calls and milliseconds in shop's functions named like $1
    local c t total_calls=0 total_ms=0
    for i in 0 1 2 3; do
        dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
        read -r c t < <(q "$dir" "$port" "s$i" -At -F ' ' -c "SELECT coalesce(sum(calls), 0), coalesce(sum(self_time), 0)
            FROM pg_stat_user_functions WHERE schemaname = 'shop' AND funcname LIKE '$1'")
        total_calls=$((total_calls + c)); total_ms=$(awk -v a="$total_ms" -v b="$t" 'BEGIN { print a + b }')
    done
    echo "$total_calls $total_ms"
}
sleep 11    # idle backends report their counters within 10 s
read -r s0_calls s0_ms < <(shard_fn '%')
on "$A" "$PA" one bench_pgbench "one node: checkout" 1 "$SECS" "$BENCH_TMP/c_checkout.sql" -D n=0 -D base=0 -D per=0 >>"$rows"
on "$R" "$PR" router bench_pgbench "router: checkout" 1 "$SECS" "$BENCH_TMP/c_checkout.sql" -D n=0 -D base=0 -D per=0 >>"$rows"
sleep 11
read -r s1_calls s1_ms < <(shard_fn '%')
on "$A" "$PA" one bench_pgbench "one node: checkout, 4 clients" 4 "$SECS" "$BENCH_TMP/c_checkout.sql" -D n=0 -D base=$((SECS * 1000)) -D per="$PER" >>"$rows"
on "$R" "$PR" router bench_pgbench "router: checkout, 4 clients" 4 "$SECS" "$BENCH_TMP/c_checkout.sql" -D n=0 -D base=$((SECS * 1000)) -D per="$PER" >>"$rows"

# checkout with 1 and 2 shards: a router over fewer shards, loaded the same
# way (the carts with the same ids, which name a bucket, not a shard count)
nshards() {   # n: routers "router$n" over shard databases "n${n}_0".. on A, B alternately
    local n=$1 i dir port parts=""
    for ((i = 0; i < n; i++)); do
        dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
        "$PGBIN/createdb" -h "$dir" -p "$port" "n${n}_$i"
        q "$dir" "$port" "n${n}_$i" -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
        load "$dir" "$port" "n${n}_$i" "(hashint8(product_id) & $((n - 1))) = $i"
        carts "$dir" "$port" "n${n}_$i" "$BENCH_TMP/c_carts_router.tsv" "(hashint8(n::bigint) & $((n - 1))) = $i"
        parts="$parts${parts:+, }p$i 'host=$dir port=$port dbname=n${n}_$i'"
    done
    "$PGBIN/createdb" -h "$R" -p "$PR" "router$n"
    q "$R" "$PR" "router$n" <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop_router CASCADE;
CREATE SERVER shop_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ($parts);
CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster;
SELECT shop_router.cluster_setup() \\g /dev/null
CREATE TABLE public.bench_cart (n int PRIMARY KEY, cart uuid NOT NULL);
\\copy public.bench_cart FROM '$BENCH_TMP/c_carts_router.tsv'
SQL
}
bench_note "building routers over 1 and 2 shards"
nshards 1
nshards 2
for n in 1 2; do
    on "$R" "$PR" "router$n" bench_pgbench "router, $n shard$([ "$n" = 1 ] || echo s): checkout, 4 clients" 4 "$SECS" \
        "$BENCH_TMP/c_checkout.sql" -D n=0 -D base=$((SECS * 1000)) -D per="$PER" >>"$rows"
done

val() { sed -n "s/^$1\t//p" "$rows" | cut -f "$2"; }
ROUTED1=$(val 'router: checkout' 6)
echo "Same run, same machine: the router and both shard clusters share its CPUs"
echo "with the one-node database (the router's cost shows as it would on one"
echo "machine; on machines of their own the shards' steps run in parallel)."
echo
grep '^[^	]*search' "$rows" | bench_md_table_vs "one node: search"
echo
grep '^[^	]*checkout' "$rows" | bench_md_table_vs "one node: checkout"
echo
echo "Checkout throughput by shard count (4 clients, each router's own shards,"
echo "carts and catalog; the 4-shard row is the run above):"
echo
{ grep -P '^router, [12] shards?: checkout' "$rows"; grep -P '^router: checkout, 4 clients\t' "$rows"
  grep -P '^one node: checkout, 4 clients\t' "$rows"; } | bench_md_table_vs "router, 1 shard: checkout, 4 clients"
echo
echo "| ratio (router / one node) | value |"
echo "|---|---|"
echo "| search p50, 1 client | $(bench_ratio "$(val 'router: search' 3)" "$(val 'one node: search' 3)")x |"
echo "| search p99, 1 client | $(bench_ratio "$(val 'router: search' 5)" "$(val 'one node: search' 5)")x |"
echo "| search queries/s, 4 clients | $(bench_ratio "$(val 'router: search, 4 clients' 2)" "$(val 'one node: search, 4 clients' 2)")x |"
echo "| checkout p50, 1 client | $(bench_ratio "$(val 'router: checkout' 3)" "$(val 'one node: checkout' 3)")x |"
echo "| checkout tps, 4 clients | $(bench_ratio "$(val 'router: checkout, 4 clients' 2)" "$(val 'one node: checkout, 4 clients' 2)")x |"
echo "| checkout tps, 4 clients: 2 shards / 1 shard | $(bench_ratio "$(val 'router, 2 shards: checkout, 4 clients' 2)" "$(val 'router, 1 shard: checkout, 4 clients' 2)")x |"
echo "| checkout tps, 4 clients: 4 shards / 1 shard | $(bench_ratio "$(val 'router: checkout, 4 clients' 2)" "$(val 'router, 1 shard: checkout, 4 clients' 2)")x |"
echo
if [ "${ROUTED1:-0}" -gt 0 ]; then
    echo "Per routed checkout (1 client, $ROUTED1 checkouts): $(( (s1_calls - s0_calls) / ROUTED1 )) shop function"
    echo "calls on the shards, $(awk -v a="$s1_ms" -v b="$s0_ms" -v n="$ROUTED1" 'BEGIN { printf "%.2f", (a - b) / n }') ms of the shards' own time in them"
    echo "(pg_stat_user_functions self time, summed over the 4 shards); the rest of its"
    echo "$(val 'router: checkout' 3) ms (p50) is the router, the round trips and the commits."
fi
