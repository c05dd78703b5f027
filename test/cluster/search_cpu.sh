#!/usr/bin/env bash
# search_cpu.sh: where a routed search's CPU goes (issue 16), not a test.
# Builds a router and 4 shards as test/cluster does (scripts/cluster.sh, in
# tmp_bench/search_cpu), a one-node database "one" on shard cluster A with
# the synthetic catalog (scripts/load_synthetic.sql, SCALE products, default
# 20000), each shard its quarter by COPY, then runs N searches (default
# 300) of the catalog's 20 most frequent title words, lim => 10, in one
# session and counts CPU (utime + stime of /proc, 10 ms ticks) around them:
# the session's backend, and every process of the two shard clusters.
# Rounds: the router with the kept statistics off
# (shop_router.search_dfs_cache = 0, the search before issue 16's cache) and
# on, and one node, in turns, ROUNDS times (default 2).
# AS=web makes the searches as the storefront's login (as a storefront
# does: since sec4 the statistics round reaches the shards as the router's
# owner, the page round as the caller) instead of the clusters' superuser.
# Run from the top of the tree after make:  bash test/cluster/search_cpu.sh
# (KEEP=1 leaves the clusters running; scripts/cluster.sh's
# shop_cluster_down, or pg_ctl stop on each data directory, stops them).
set -euo pipefail
SCALE=${SCALE:-20000} N=${N:-300} ROUNDS=${ROUNDS:-2}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
cpu_cluster_up search_cpu
q "$A" "$PA" one -c "VACUUM ANALYZE"
cpu_shards_load synonyms
q "$R" "$PR" router -c "SELECT shop_router.sync_product_ids()" >/dev/null
cpu_top_words
run() {   # label host port db setting
    local label=$1 host=$2 port=$3 db=$4 set=$5
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
$set
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM unnest(ARRAY[$WORDS]) w, LATERAL shop.search(w, lim => 10) s \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0
SELECT count(*) FROM generate_series(1, $N) g, LATERAL shop.search((ARRAY[$WORDS])[1 + g % 20], lim => 10) s \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
SQL
    q "$host" "$port" "$db" ${AS:+-U "$AS"} -f "$BASE/run.sql"
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$N" \
        'BEGIN { printf "%-34s backend %6.2f ms  shards %6.2f ms  total %6.2f ms  wall %6.2f ms\n", l, b * 10 / n, s * 10 / n, (b + s) * 10 / n, w / 1e6 / n }'
}
echo "$N searches a round, $SCALE products, as ${AS:-postgres}, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
    run "router, kept statistics off" "$R" "$PR" router "SET shop_router.search_dfs_cache = 0;"
    run "router, kept statistics on" "$R" "$PR" router ""
    run "one node (its shards' CPU too)" "$A" "$PA" one ""
done
