#!/usr/bin/env bash
# reco_cpu.sh: what a routed recommend costs (issue 16), not a test.
# Builds a router and 4 shards as test/cluster does (scripts/cluster.sh, in
# tmp_bench/reco_cpu), a one-node database "one" on shard cluster A with
# the synthetic catalog and its order history (scripts/load_synthetic.sql,
# SCALE products, default 20000: SCALE/2 orders of SCALE/10 customers),
# each shard its products and its customers' orders by COPY, every
# database's recommendations rebuilt, the co-purchase counts moved.  Then
# N calls of shop.recommend(c, 10) (default 300, customers 1..N) in one
# session, CPU counted (utime + stime of /proc, 10 ms ticks) around them:
# the session's backend and every process of the two shard clusters.
# Rounds, in turns, ROUNDS times (default 2): the router with the
# customers-like-you weight 0, the router with its default (the
# cluster's neighbours: two more rounds), the router with an experiment
# (its control: the same list, chosen and recorded on the customer's
# shard), one node (its recommend_cache emptied before each round).
# Run from the top of the tree after make:  bash test/cluster/reco_cpu.sh
set -euo pipefail
SCALE=${SCALE:-20000} N=${N:-300} ROUNDS=${ROUNDS:-2}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
cpu_cluster_up reco_cpu
cpu_shards_load orders
q "$A" "$PA" one -c "SELECT shop.rebuild_recommendations()" >/dev/null
q "$A" "$PA" one -c "VACUUM ANALYZE"
q "$R" "$PR" router -c "SELECT shop_router.sync_product_ids()" >/dev/null
q "$R" "$PR" router -c "SELECT shop_router.copurchase_move()" >/dev/null
# the same popularity on both sides (each shard's own differs: docs/scale-out.md)
q "$A" "$PA" one -c "COPY (SELECT product_id, popularity FROM shop.product) TO STDOUT" >"$BASE/pop.tsv"
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    q "$dir" "$port" "s$i" -c "CREATE TEMP TABLE p (product_id bigint, popularity real);
                               COPY p FROM '$BASE/pop.tsv';
                               UPDATE shop.product x SET popularity = p.popularity FROM p WHERE p.product_id = x.product_id"
done
q "$R" "$PR" router -c "SELECT shop.experiment_create('cpu', '[{\"name\": \"control\", \"share\": 0.9999}, {\"name\": \"none\", \"share\": 0.0001}]')" >/dev/null
run() {   # label host port db setting call
    local label=$1 host=$2 port=$3 db=$4 set=$5 call=$6
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
$set
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM generate_series(1, 5) g, LATERAL $call s \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0
SELECT count(*) FROM generate_series(1, $N) g, LATERAL $call s \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
SQL
    q "$host" "$port" "$db" -f "$BASE/run.sql"
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$N" \
        'BEGIN { printf "%-40s backend %6.2f ms  shards %6.2f ms  total %6.2f ms  wall %6.2f ms\n", l, b * 10 / n, s * 10 / n, (b + s) * 10 / n, w / 1e6 / n }'
}
echo "$N calls a round, $SCALE products, $(q "$A" "$PA" one -At -c "SELECT count(*) FROM shop.\"order\"") orders, load $(cut -d' ' -f1-3 /proc/loadavg)"
q "$A" "$PA" one -At -c "SELECT 'one node: ' || count(*) || ' neighbour rows, ' || count(DISTINCT customer_id) || ' customers' FROM shop.customer_neighbour"
# the lists (customers like you on) of customers 1..N: router against one node
LISTS="SELECT g, (SELECT array_agg(row(product_id, score)::text)::text FROM shop.recommend(g, 10)) FROM generate_series(1, $N) g"
q "$R" "$PR" router -At -c "$LISTS" >"$BASE/lists_router"
q "$A" "$PA" one -At -c "$LISTS" >"$BASE/lists_one"
echo "lists of 10 with customers like you on: $(paste -d'|' "$BASE/lists_router" "$BASE/lists_one" | awk -F'|' '$2 == $4' | wc -l) of $N the same through the router as on one node"
for r in $(seq 1 "$ROUNDS"); do
    run "router, customers like you off" "$R" "$PR" router "SET shop.reco_weight_like = 0;" "shop.recommend(g, 10)"
    run "router, customers like you on (0.5)" "$R" "$PR" router "" "shop.recommend(g, 10)"
    run "router, experiment (control)" "$R" "$PR" router "" "shop.recommend(g, 10, 'cpu')"
    q "$A" "$PA" one -c "TRUNCATE shop.recommend_cache"
    run "one node, customers like you on" "$A" "$PA" one "" "shop.recommend(g, 10)"
done
