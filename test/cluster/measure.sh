# measure.sh: sourced by test/cluster/run.sh when CLUSTER_LONG=1 (make
# cluster-test), with its clusters running. Measures how close the 4-shard
# search is to one node's on the real catalog (SHARED_DATA, default
# ../shared/data; skipped without it): the catalog is loaded into a
# one-node database by scripts/load_real.sql and load_finish.sql, then each
# shard gets its own products (hashint8(product_id) & 3) and every category
# and synonym with COPY, the bulk load of docs/scale-out.md; every shard
# ends with VACUUM ANALYZE. For each of the 135 Chorus queries, the top 10
# through the router and on one node: their overlap, and nDCG@10 of both
# against the Supahands judgments. Prints the numbers; the cluster's
# statistics are per shard (docs/scale-out.md), so they are measured here,
# not required.
DATA="${SHARED_DATA-$TOP/../shared/data}"
if [ ! -f "$DATA/chorus_icecat_supahands/queries.csv" ] || [ ! -f "$DATA/uci_online_retail/baskets.csv" ]; then
    echo "== measure: no real data set (SHARED_DATA=dir, default ../shared/data): skipped"
    return 0
fi
DATA=$(cd "$DATA" && pwd)
echo "== measure: loading the real catalog into one node ($(date +%T))"
"$PGBIN/createdb" -h "$A" -p "$PA" m_one
q "$A" "$PA" m_one -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
q "$A" "$PA" m_one -v datadir="$DATA" -f "$TOP/scripts/load_real.sql"
q "$A" "$PA" m_one -f "$TOP/scripts/load_finish.sql"

echo "== measure: 4 shards of it ($(date +%T))"
COLS="product_id, sku, title, description, brand, category_id, price_cents, attributes, images, status,
      rating_sum, rating_count, popularity, in_stock, created_at, updated_at"
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    "$PGBIN/createdb" -h "$dir" -p "$port" "m$i"
    q "$dir" "$port" "m$i" -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
    # the 1.0 defaults (rates) are replaced by the loaded node's rows
    q "$dir" "$port" "m$i" -c "DELETE FROM shop.synonym; DELETE FROM shop.category"
    q "$A" "$PA" m_one -c "COPY (SELECT category_id, parent_id, name FROM shop.category ORDER BY path) TO STDOUT" |
        q "$dir" "$port" "m$i" -c "COPY shop.category (category_id, parent_id, name) FROM STDIN"
    q "$A" "$PA" m_one -c "COPY shop.synonym (term, synonyms) TO STDOUT" |
        q "$dir" "$port" "m$i" -c "COPY shop.synonym (term, synonyms) FROM STDIN"
    q "$A" "$PA" m_one -c "COPY (SELECT $COLS FROM shop.product WHERE (hashint8(product_id) & 3) = $i) TO STDOUT" |
        q "$dir" "$port" "m$i" -c "COPY shop.product ($COLS) FROM STDIN"
    q "$dir" "$port" "m$i" -c "VACUUM ANALYZE shop.product"
done
"$PGBIN/createdb" -h "$R" -p "$PR" m_router
q "$R" "$PR" m_router <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop_router CASCADE;
CREATE SERVER shop_cluster FOREIGN DATA WRAPPER plproxy
    OPTIONS (p0 'host=$A port=$PA dbname=m0', p1 'host=$B port=$PB dbname=m1',
             p2 'host=$A port=$PA dbname=m2', p3 'host=$B port=$PB dbname=m3');
CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster;
SELECT shop_router.cluster_setup() \g /dev/null
SQL

echo "== measure: the Chorus queries, 4 shards against one node ($(date +%T))"
q "$R" "$PR" checker -v one="host=$A port=$PA dbname=m_one" -v router="host=$R port=$PR dbname=m_router" \
    -v p0="host=$A port=$PA dbname=m0" -v p1="host=$B port=$PB dbname=m1" \
    -v p2="host=$A port=$PA dbname=m2" -v p3="host=$B port=$PB dbname=m3" \
    -v queries="$DATA/chorus_icecat_supahands/queries.csv" -v qrels="$DATA/chorus_icecat_supahands/qrels.csv" <<'SQL'
SELECT dblink_connect('m_one', :'one'), dblink_connect('m_router', :'router') \g /dev/null
CREATE TABLE chorus_query (query_id int PRIMARY KEY, query text);
CREATE TABLE chorus_qrel (query_id int, product_id bigint, grade int);
SELECT fail_if(sum(n) <> (SELECT n FROM dblink('m_one', 'SELECT count(*) FROM shop.product') AS t(n bigint)),
               format('the 4 shards hold the %s products of the one node', sum(n)))
  FROM unnest(ARRAY[:'p0', :'p1', :'p2', :'p3']) c,
       dblink(c, 'SELECT count(*) FROM shop.product') AS t(n bigint);
COPY chorus_query FROM :'queries' WITH (FORMAT csv, HEADER true);
COPY chorus_qrel FROM :'qrels' WITH (FORMAT csv, HEADER true);
CREATE TABLE top10 AS
SELECT n.node, cq.query_id, t.ord, t.product_id
  FROM chorus_query cq, unnest(ARRAY['m_one', 'm_router']) n(node),
       ROWS FROM (dblink(n.node, format('SELECT product_id FROM shop.search(%L, lim => 10)', cq.query)) AS (product_id bigint))
       WITH ORDINALITY AS t(product_id, ord);
CREATE TABLE ndcg AS
SELECT cq.query_id, n.node,
       coalesce((SELECT sum((2 ^ coalesce(r.grade, 0) - 1) / log(2, t.ord + 1))
                   FROM top10 t LEFT JOIN chorus_qrel r ON r.query_id = t.query_id AND r.product_id = t.product_id
                  WHERE t.node = n.node AND t.query_id = cq.query_id), 0)
       / nullif((SELECT sum((2 ^ g - 1) / log(2, k + 1))
                   FROM (SELECT grade AS g, row_number() OVER (ORDER BY grade DESC) AS k
                           FROM chorus_qrel r WHERE r.query_id = cq.query_id) i
                  WHERE k <= 10), 0) AS ndcg
  FROM chorus_query cq, unnest(ARRAY['m_one', 'm_router']) n(node);
\pset tuples_only off
\pset format aligned
SELECT count(*) AS queries,
       round(avg(o.overlap), 3) AS top10_overlap,
       count(*) FILTER (WHERE o.same) AS same_top10_order,
       round((SELECT avg(ndcg) FROM ndcg WHERE node = 'm_one')::numeric, 4) AS ndcg10_one_node,
       round((SELECT avg(ndcg) FROM ndcg WHERE node = 'm_router')::numeric, 4) AS ndcg10_4_shards
  FROM (SELECT cq.query_id,
               (SELECT count(*) FROM top10 a JOIN top10 b USING (query_id, product_id)
                 WHERE a.node = 'm_one' AND b.node = 'm_router' AND a.query_id = cq.query_id)::numeric
               / greatest(1, (SELECT count(*) FROM top10 a WHERE a.node = 'm_one' AND a.query_id = cq.query_id)) AS overlap,
               (SELECT array_agg(product_id ORDER BY ord) FROM top10 WHERE node = 'm_one' AND query_id = cq.query_id)
               IS NOT DISTINCT FROM
               (SELECT array_agg(product_id ORDER BY ord) FROM top10 WHERE node = 'm_router' AND query_id = cq.query_id) AS same
          FROM chorus_query cq) o;
-- the queries whose top 10 differ most
SELECT cq.query, round(o.overlap, 1) AS overlap
  FROM chorus_query cq
  CROSS JOIN LATERAL (SELECT (SELECT count(*) FROM top10 a JOIN top10 b USING (query_id, product_id)
                               WHERE a.node = 'm_one' AND b.node = 'm_router' AND a.query_id = cq.query_id)::numeric
                             / greatest(1, (SELECT count(*) FROM top10 a WHERE a.node = 'm_one' AND a.query_id = cq.query_id)) AS overlap) o
 ORDER BY o.overlap, cq.query_id LIMIT 10;
SQL
# What a call costs through the router: pgbench, one client, each call
# its own transaction (as an application makes them; a search commits its
# search_log row, on every shard through the router), a random one of the
# 135 queries per call; after a warm-up run. A timing on a shared machine,
# printed for docs/scale-out.md, never checked.
echo "== measure: latency per call, one node and through the router ($(date +%T))"
for db in "$A $PA m_one" "$R $PR m_router"; do
    # shellcheck disable=SC2086
    set -- $db
    q "$1" "$2" "$3" -c "CREATE TABLE public.measure_q (query_id int PRIMARY KEY, query text)"
    q "$R" "$PR" checker -c "COPY (SELECT query_id, query FROM chorus_query) TO STDOUT" |
        q "$1" "$2" "$3" -c "COPY public.measure_q FROM STDIN"
    for call in "SELECT count(*) FROM shop.search((SELECT query FROM public.measure_q WHERE query_id = :i), lim => 10);" \
                "SELECT shop.search_facets((SELECT query FROM public.measure_q WHERE query_id = :i)) IS NULL;"; do
        printf '\\set i random(1, 135)\n%s\n' "$call" >"$BASE/measure.pgbench"
        "$PGBIN/pgbench" -n -h "$1" -p "$2" -f "$BASE/measure.pgbench" -t 50 "$3" >/dev/null 2>&1
        lat=$("$PGBIN/pgbench" -n -h "$1" -p "$2" -f "$BASE/measure.pgbench" -t 300 "$3" 2>&1 |
              sed -n 's/^latency average = //p')
        label=search; [[ $call == *search_facets* ]] && label=search_facets
        echo "  $3: $label: $lat"
    done
done
# The DFS phase alone (the first round trip of a routed search: every
# shard's statistics of the query's words, summed), what it moves, and
# what the other way (statistics copied to every shard at refresh time)
# would have to move: the document frequency of every word of the catalog
printf '\\set i random(1, 135)\n%s\n' \
    "SELECT shop_router._search_global((SELECT query FROM public.measure_q WHERE query_id = :i), '{}', true) IS NULL;" \
    >"$BASE/measure.pgbench"
"$PGBIN/pgbench" -n -h "$R" -p "$PR" -f "$BASE/measure.pgbench" -t 50 m_router >/dev/null 2>&1
lat=$("$PGBIN/pgbench" -n -h "$R" -p "$PR" -f "$BASE/measure.pgbench" -t 300 m_router 2>&1 |
      sed -n 's/^latency average = //p')
echo "  m_router: the DFS phase alone (shop_router._search_global): $lat"
q "$R" "$PR" m_router -At <<'SQL'
SELECT format('  DFS phase: %s terms from the 4 shards per query on average (at most %s), %s bytes of statistics sent back to each shard',
              round(avg(n)), max(n), round(avg(b)))
  FROM (SELECT (SELECT sum(jsonb_array_length(r -> 'terms')) FROM shop_router._search_dfs(query, '{}') r) AS n,
               length(shop_router._search_global(query, '{}', true)::text) AS b
          FROM public.measure_q) x;
SQL
q "$A" "$PA" m_one -At -c "SELECT format('  the catalog''s distinct words (what a refresh-time copy would hold per shard): %s',
                                  count(DISTINCT t.word))
                             FROM shop.product p,
                                  shop.search_tokens(concat_ws(' ', p.title, p.brand, p.description), 'english') t
                            WHERE p.status = 'active'"
echo "== measure: done ($(date +%T))"
