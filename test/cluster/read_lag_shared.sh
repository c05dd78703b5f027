#!/usr/bin/env bash
# read_lag_shared.sh: what shop_router.read_max_lag's check costs a router
# database with many backends (issue 16, docs/scale-out.md "Read replicas",
# "A standby behind"), not a test. Builds a router and 4 shards as
# read_lag_cpu.sh does (in tmp_bench/read_lag_shared), a server
# shop_cluster_ro whose partitions are the primaries under other connection
# strings (application_name=ro: each counts as a standby, so a check asks
# all 4 partitions, 8 PL/Proxy calls), and two router databases: "router"
# with this tree's check (shared through shop_router.read_state) and
# "router_old" whose shop_router._read_check is the one of commit dd2a4ca
# (kept per backend). Then, in turns (ROUNDS, default 2), pgbench with C
# clients (default 8) for T seconds (default 10) on each database, each
# transaction one shop.stock_available (one partition), read_max_lag = 10s,
# read_lag_check = EVERY (default 1s). Reported: checks made (calls of
# shop_router._replay_state / 4, counted by track_functions), checks per
# period, transactions per second, latency p50/p90/p99/max (pgbench's
# per-transaction log), and the router's CPU per transaction (utime +
# stime of its backends, reaped by the postmaster: cutime + cstime, 10 ms
# ticks).
# Run from the top of the tree after make:  bash test/cluster/read_lag_shared.sh
set -euo pipefail
TOP=${TOP:-$(pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
. "$TOP/scripts/cluster.sh"
SCALE=${SCALE:-2000} C=${C:-8} T=${T:-10} ROUNDS=${ROUNDS:-2} EVERY=${EVERY:-1s}
BASE="$TOP/tmp_bench/read_lag_shared"
trap 'shop_cluster_down immediate >/dev/null 2>&1 || true' EXIT
shop_cluster_up "$BASE" >/dev/null 2>&1
"$PGBIN/createdb" -h "$A" -p "$PA" one
q "$A" "$PA" one -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
q "$A" "$PA" one -v scale="$SCALE" -f "$TOP/scripts/load_synthetic.sql" >/dev/null
COLS="product_id, sku, title, description, brand, category_id, price_cents, attributes, images, status,
      rating_sum, rating_count, popularity, in_stock, created_at, updated_at"
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    q "$dir" "$port" "s$i" -c "DELETE FROM shop.synonym; DELETE FROM shop.category"
    q "$A" "$PA" one -c "COPY (SELECT category_id, parent_id, name FROM shop.category ORDER BY path) TO STDOUT" |
        q "$dir" "$port" "s$i" -c "COPY shop.category (category_id, parent_id, name) FROM STDIN"
    q "$A" "$PA" one -c "COPY (SELECT $COLS FROM shop.product WHERE (hashint8(product_id) & 3) = $i) TO STDOUT" |
        q "$dir" "$port" "s$i" -c "COPY shop.product ($COLS) FROM STDIN"
    q "$dir" "$port" "s$i" -c "VACUUM ANALYZE" 2>/dev/null
done
"$PGBIN/createdb" -h "$R" -p "$PR" router_old
q "$R" "$PR" router_old -c "SET client_min_messages = warning" -c "CREATE EXTENSION shop_router CASCADE" \
    -c "CREATE SERVER shop_cluster FOREIGN DATA WRAPPER plproxy
            OPTIONS (p0 '${PART[0]}', p1 '${PART[1]}', p2 '${PART[2]}', p3 '${PART[3]}')" \
    -c "CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster"
# the check of before: kept per backend
git -C "$TOP" show dd2a4ca:shop_router--1.0.sql |
    sed -n '/^CREATE FUNCTION shop_router._read_check(/,/^\$\$;/p' |
    sed 's/^CREATE FUNCTION/CREATE OR REPLACE FUNCTION/' | q "$R" "$PR" router_old
for db in router router_old; do
    q "$R" "$PR" $db -c "CREATE SERVER shop_cluster_ro FOREIGN DATA WRAPPER plproxy
            OPTIONS (p0 '${PART[0]} application_name=ro', p1 '${PART[1]} application_name=ro',
                     p2 '${PART[2]} application_name=ro', p3 '${PART[3]} application_name=ro')" \
        -c "CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster_ro" \
        -c "ALTER DATABASE $db SET track_functions = 'all'"
done
echo '\set p random(1, 1000)
SELECT shop.stock_available(:p);' > "$BASE/call.sql"
checks() { q "$R" "$PR" "$1" -At -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = '_replay_state'"; }
cticks() { local f; f=$(cat "/proc/$(head -1 "$R/data/postmaster.pid")/stat"); set -- ${f##*) }; echo $((${14} + ${15})); }
echo "$C clients, $T s a run, read_lag_check = $EVERY, $SCALE products, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
for _ in $(seq 1 "$ROUNDS"); do
    for db in router_old router; do
        c0=$(checks $db); t0=$(cticks)
        rm -f "$BASE"/pgb.*
        out=$(cd "$BASE" && PGOPTIONS="-c shop_router.read_cluster=shop_cluster_ro -c shop_router.read_max_lag=10s -c shop_router.read_lag_check=$EVERY" \
              "$PGBIN/pgbench" -n -h "$R" -p "$PR" -c "$C" -j 2 -T "$T" -l --log-prefix=pgb -f call.sql "$db" 2>&1)
        sleep 1
        c1=$(checks $db); t1=$(cticks)
        n=$(grep -o 'number of transactions actually processed: [0-9]*' <<<"$out" | grep -o '[0-9]*$')
        tps=$(grep -o 'tps = [0-9.]*' <<<"$out" | head -1 | grep -o '[0-9.]*$')
        cat "$BASE"/pgb.* | awk '{print $3}' | sort -n > "$BASE/lat"
        awk -v db="$db" -v n="$n" -v tps="$tps" -v ch=$(( (c1 - c0) / 4 )) -v T="$T" -v every="$EVERY" -v ticks=$((t1 - t0)) '
            { l[NR] = $1 } END {
              printf "%-10s %6d calls  %7.1f tps  checks %5d (%.2f per period)  latency us p50 %6d p90 %6d p99 %6d max %7d  router CPU %.3f ms/call\n",
                     db, n, tps, ch, ch / (T / (every + 0)), l[int(NR * 0.5)], l[int(NR * 0.9)], l[int(NR * 0.99)], l[NR], ticks * 10 / n }' "$BASE/lat"
    done
done
