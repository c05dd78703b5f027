#!/usr/bin/env bash
# read_route_cpu.sh: the per-call cost of the read route (issue 16,
# docs/scale-out.md "Read replicas"), not a test. Builds a router and 4
# shards as test/cluster does (scripts/cluster.sh, in tmp_bench/read_route)
# with the synthetic catalog (SCALE products, default 5000, each shard its
# quarter), and a second router database "router_const" where every
# function naming its cluster with shop_router._read_cluster() names
# 'shop_cluster' instead (the router before the read route). Then, in turns
# (ROUNDS, default 3), N calls (default 300) in one session of each
# database: shop.stock_available (one partition) and shop.search (every
# partition, lim => 10, the catalog's 20 most frequent title words), with
# the router backend's CPU (utime + stime, 10 ms ticks) around them.
# Run from the top of the tree after make:  bash test/cluster/read_route_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-300} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
cpu_cluster_up read_route
cpu_shards_load
"$PGBIN/createdb" -h "$R" -p "$PR" router_const
q "$R" "$PR" router_const -c "SET client_min_messages = warning" -c "CREATE EXTENSION shop_router CASCADE" \
    -c "CREATE SERVER shop_cluster FOREIGN DATA WRAPPER plproxy
            OPTIONS (p0 '${PART[0]}', p1 '${PART[1]}', p2 '${PART[2]}', p3 '${PART[3]}')" \
    -c "CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster"
q "$R" "$PR" router_const <<'SQL' >/dev/null
DO $$
DECLARE f oid;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
              WHERE l.lanname = 'plproxy' AND p.prosrc LIKE '%shop_router._read_cluster()%' LOOP
        EXECUTE replace(pg_get_functiondef(f), 'CLUSTER shop_router._read_cluster();', 'CLUSTER ''shop_cluster'';');
    END LOOP;
END
$$;
SQL
q "$R" "$PR" router_const -At -c "SELECT 'PL/Proxy functions still on _read_cluster(): ' || count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE l.lanname = 'plproxy' AND p.prosrc LIKE '%_read_cluster()%'"
cpu_top_words
run() {   # label db call
    local label=$1 db=$2 call=$3
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM generate_series(1, 20) g, LATERAL $call \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0
SELECT count(*) FROM generate_series(1, $N) g, LATERAL $call \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
SQL
    q "$R" "$PR" "$db" -f "$BASE/run.sql"
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$label" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$N" \
        'BEGIN { printf "%-44s router backend %6.3f ms  shards %6.3f ms  wall %6.3f ms\n", l, b * 10 / n, s * 10 / n, w / 1e6 / n }'
}
echo "$N calls a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for r in $(seq 1 "$ROUNDS"); do
    run "stock_available, CLUSTER 'shop_cluster'" router_const "shop.stock_available(1 + g % 1000) s"
    run "stock_available, CLUSTER _read_cluster()" router "shop.stock_available(1 + g % 1000) s"
    run "search, CLUSTER 'shop_cluster'" router_const "shop.search((ARRAY[$WORDS])[1 + g % 20], lim => 10) s"
    run "search, CLUSTER _read_cluster()" router "shop.search((ARRAY[$WORDS])[1 + g % 20], lim => 10) s"
done
