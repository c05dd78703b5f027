# cpu_setup.sh: sourced by the measuring scripts of test/cluster
# (read_lag_cpu.sh, read_route_cpu.sh, reco_cpu.sh, search_cpu.sh, customer_cpu.sh,
# session_cpu.sh, session_use_cpu.sh, view_cpu.sh), run from the top of
# the tree after make; the cluster setup they share, each keeping its own
# rounds and what it prints.
#
#   cpu_cluster_up NAME   scripts/pgenv.sh, tmp_install, scripts/cluster.sh,
#                         then a router and 4 shards as test/cluster does
#                         (shop_cluster_up) in tmp_bench/NAME (BASE), stopped
#                         at exit unless KEEP=1; a one-node database "one" on
#                         shard cluster A with the synthetic catalog
#                         (scripts/load_synthetic.sql, SCALE products: set
#                         SCALE before, default 5000)
#   cpu_shards_load [synonyms] [orders]
#                         each shard its categories (as "one" has them; with
#                         "synonyms" its synonyms too, else none) and its
#                         quarter of the products
#                         (hashint8(product_id) & 3) by COPY; with "orders",
#                         also its customers' orders and their lines
#                         (hashint8(customer_id) & 3) and its recommendations
#                         rebuilt; VACUUM ANALYZE
#   measure LABEL SCRIPT N
#                         runs SCRIPT (psql, as web on the router) that
#                         writes cpu.sh's readings to $BASE/t0 and $BASE/t1,
#                         and prints the router backend's and the shards'
#                         CPU (10 ms ticks) and the wall time per call, the
#                         label in MEASURE_WIDTH columns (default 30)
#   cpu_top_words         WORDS: the catalog's 20 most frequent title words
#                         of 4+ letters, quoted, comma-separated
# TOP (default: the current directory) is the top of the tree.

TOP=${TOP:-$(pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
. "$TOP/scripts/cluster.sh"

cpu_cluster_up() {
    BASE="$TOP/tmp_bench/$1"
    [ "${KEEP:-0}" = 1 ] || trap 'shop_cluster_down immediate >/dev/null 2>&1 || true' EXIT
    shop_cluster_up "$BASE" >/dev/null 2>&1
    "$PGBIN/createdb" -h "$A" -p "$PA" one
    q "$A" "$PA" one -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
    q "$A" "$PA" one -v scale="${SCALE:-5000}" -f "$TOP/scripts/load_synthetic.sql" >/dev/null
}

cpu_shards_load() {
    local synonyms='' orders='' i dir port a
    for a in "$@"; do
        case $a in synonyms) synonyms=1 ;; orders) orders=1 ;; *) echo "cpu_shards_load: $a?" >&2; return 1 ;; esac
    done
    local cols="product_id, sku, title, description, brand, category_id, price_cents, attributes, images, status,
      rating_sum, rating_count, popularity, in_stock, created_at, updated_at"
    for i in 0 1 2 3; do
        dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
        q "$dir" "$port" "s$i" -c "DELETE FROM shop.synonym; DELETE FROM shop.category"
        q "$A" "$PA" one -c "COPY (SELECT category_id, parent_id, name FROM shop.category ORDER BY path) TO STDOUT" |
            q "$dir" "$port" "s$i" -c "COPY shop.category (category_id, parent_id, name) FROM STDIN"
        if [ -n "$synonyms" ]; then
            q "$A" "$PA" one -c "COPY shop.synonym (term, synonyms) TO STDOUT" |
                q "$dir" "$port" "s$i" -c "COPY shop.synonym (term, synonyms) FROM STDIN"
        fi
        q "$A" "$PA" one -c "COPY (SELECT $cols FROM shop.product WHERE (hashint8(product_id) & 3) = $i) TO STDOUT" |
            q "$dir" "$port" "s$i" -c "COPY shop.product ($cols) FROM STDIN"
        if [ -n "$orders" ]; then
            q "$A" "$PA" one -c "COPY (SELECT * FROM shop.\"order\" WHERE (hashint8(customer_id) & 3) = $i) TO STDOUT" |
                PGOPTIONS="-c session_replication_role=replica" q "$dir" "$port" "s$i" -c "COPY shop.\"order\" FROM STDIN"
            q "$A" "$PA" one -c "COPY (SELECT l.* FROM shop.order_line l JOIN shop.\"order\" o USING (order_id)
                                       WHERE (hashint8(o.customer_id) & 3) = $i) TO STDOUT" |
                PGOPTIONS="-c session_replication_role=replica" q "$dir" "$port" "s$i" -c "COPY shop.order_line FROM STDIN"
            q "$dir" "$port" "s$i" -c "SELECT shop.rebuild_recommendations()" >/dev/null
        fi
        q "$dir" "$port" "s$i" -c "VACUUM ANALYZE" 2>/dev/null
    done
}

cpu_top_words() {
    WORDS=$(q "$A" "$PA" one -At -c "SELECT string_agg(quote_literal(w), ',') FROM (
        SELECT t.word AS w FROM shop.product p CROSS JOIN LATERAL shop.search_tokens(p.title) t
         WHERE length(t.word) >= 4 AND t.word !~ '[0-9]'
         GROUP BY t.word ORDER BY count(*) DESC, t.word LIMIT 20) x")
}

measure() {   # label script calls
    local label=$1 script=$2 n=$3
    rm -f "$BASE/t0" "$BASE/t1"
    q "$R" "$PR" router -U web -f "$script" >/dev/null 2>"$BASE/err.log" || true
    [ -s "$BASE/t1" ] || { echo "$label failed:"; tail -5 "$BASE/err.log"; return 1; }
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v wd="${MEASURE_WIDTH:-30}" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$n" \
        'BEGIN { printf "%-*s router backend %6.3f ms  shards %6.3f ms  wall %6.3f ms\n", wd, l, b * 10 / n, s * 10 / n, w / 1e6 / n }'
}
