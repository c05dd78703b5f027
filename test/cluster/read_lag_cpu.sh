#!/usr/bin/env bash
# read_lag_cpu.sh: the per-call cost of shop_router.read_max_lag (issue 16,
# docs/scale-out.md "Read replicas", "A standby behind"), not a test.
# Builds a router and 4 shards as read_route_cpu.sh does (in
# tmp_bench/read_lag), a server shop_cluster_ro whose partitions are the
# primaries under other connection strings (application_name=ro: each
# counts as a standby, so a check asks all 4 partitions, 8 calls), and a
# second router database "router_sql" where shop_router._read_cluster() is
# the function of before (the setting, or shop_cluster). Then, in turns
# (ROUNDS, default 3), N calls (default 300) in one session of each
# variant: shop.stock_available (one partition) and shop.search (every
# partition, lim => 10), with the router backend's CPU around them
# (utime + stime in 10 ms ticks, and its schedstat run time in ns).
# Variants: the function of before with nothing set; the function of this
# commit with nothing set; read_cluster = shop_cluster_ro without
# read_max_lag; with read_max_lag = 10s (a check kept 5 s, the default
# read_lag_check); with read_lag_check = 0 (a check at every call).
# Run from the top of the tree after make:  bash test/cluster/read_lag_cpu.sh
set -euo pipefail
SCALE=${SCALE:-5000} N=${N:-300} ROUNDS=${ROUNDS:-3}
. "${TOP:-$(pwd)}/test/cluster/lib/cpu_setup.sh"
cpu_cluster_up read_lag
cpu_shards_load
for db in router router_sql; do
    [ $db = router_sql ] && "$PGBIN/createdb" -h "$R" -p "$PR" router_sql &&
        q "$R" "$PR" router_sql -c "SET client_min_messages = warning" -c "CREATE EXTENSION shop_router CASCADE" \
            -c "CREATE SERVER shop_cluster FOREIGN DATA WRAPPER plproxy
                    OPTIONS (p0 '${PART[0]}', p1 '${PART[1]}', p2 '${PART[2]}', p3 '${PART[3]}')" \
            -c "CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster"
    q "$R" "$PR" $db -c "CREATE SERVER shop_cluster_ro FOREIGN DATA WRAPPER plproxy
            OPTIONS (p0 '${PART[0]} application_name=ro', p1 '${PART[1]} application_name=ro',
                     p2 '${PART[2]} application_name=ro', p3 '${PART[3]} application_name=ro')" \
        -c "CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster_ro"
done
# the function before this change
q "$R" "$PR" router_sql -c "CREATE OR REPLACE FUNCTION shop_router._read_cluster()
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS \$\$ SELECT coalesce(nullif(pg_catalog.current_setting('shop_router.read_cluster', true), ''), 'shop_cluster'); \$\$"
q "$R" "$PR" router_sql -At -c "SELECT 'router_sql: _read_cluster() in ' || l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = 'shop_router._read_cluster()'::regprocedure"
cpu_top_words
run() {   # label db settings call
    local label=$1 db=$2 settings=$3 call=$4
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
$settings
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM generate_series(1, 20) g, LATERAL $call \g /dev/null
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0; awk '{print \$1}' /proc/\$PID/schedstat > $BASE/n0
SELECT count(*) FROM generate_series(1, $N) g, LATERAL $call \g /dev/null
\! awk '{print \$1}' /proc/\$PID/schedstat > $BASE/n1; bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
SELECT 'route ' || shop_router._read_cluster();
SQL
    local route
    route=$(q "$R" "$PR" "$db" -At -f "$BASE/run.sql")
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"; read -r n0 <"$BASE/n0"; read -r n1 <"$BASE/n1"
    awk -v l="$label" -v b=$((b1 - b0)) -v ns=$((n1 - n0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v n="$N" -v r="$route" \
        'BEGIN { printf "%-48s router backend %6.3f ms (schedstat %7.4f ms)  shards %6.3f ms  wall %6.3f ms  (%s)\n", l, b * 10 / n, ns / 1e6 / n, s * 10 / n, w / 1e6 / n, r }'
}
RO="SET shop_router.read_cluster = 'shop_cluster_ro';"
echo "$N calls a round, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for r in $(seq 1 "$ROUNDS"); do
    for c in "stock_available|shop.stock_available(1 + g % 1000) s" "search|shop.search((ARRAY[$WORDS])[1 + g % 20], lim => 10) s"; do
        l=${c%%|*} call=${c#*|}
        run "$l, sql function, unset" router_sql "" "$call"
        run "$l, unset" router "" "$call"
        run "$l, read_cluster, no max_lag" router "$RO" "$call"
        run "$l, read_max_lag 10s, kept 5s" router "$RO SET shop_router.read_max_lag = '10s';" "$call"
        run "$l, read_max_lag 10s, check each call" router "$RO SET shop_router.read_max_lag = '10s'; SET shop_router.read_lag_check = '0';" "$call"
    done
done
