# crash.sh: kill -9 of each shard cluster and of the router in the middle
# of checkouts (issue 16, "Done means"), sourced by test/cluster/run.sh
# after race.sh, on the same cluster and the race's products (restocked).
# For each of shard cluster A (partitions 0 and 2), shard cluster B (1 and
# 3) and the router: 16 storefront clients check out through the router
# (race.sh's race_buy: carts of 3 products over the 4 shards), and after
# CRASH_AFTER seconds every process of that PostgreSQL is killed with
# SIGKILL; clients then fail as they may. The cluster is started again.
# Afterwards, once the holds' TTL (3 seconds) has passed, every product
# shard has swept and shop_router.saga_recover has run, crash.sql checks
# every invariant: reserved = the units of live holds on every shard, no
# order without its lines and payment, every paid order's lines held on
# their shards, every held unit a live order's, no saga left open, no
# idempotency key with two orders, every order a checkout returned paid.
CRASH_AFTER=${CRASH_AFTER:-$([ "${CLUSTER_LONG:-0}" = 1 ] && echo 8 || echo 3)}
CRASH_RUN=$((CRASH_AFTER + 3))
killall9() {   # SIGKILL the postmaster of cluster directory $1 and its children
    local pm kids n=0
    pm=$(head -1 "$1/data/postmaster.pid")
    # Stop the postmaster first, so that it forks no child between the list
    # of its children and the kill: a backend forked just then (a router's
    # connection still authenticating) was left orphaned, waiting for ever
    # on a lock a killed process held, and with it the router's call and
    # pgbench, and the restart ("pre-existing shared memory block is still
    # in use"). A stopped process shows state T in /proc/<pid>/stat.
    kill -STOP "$pm" 2>/dev/null || true
    while [ $n -lt 100 ] && [ -e "/proc/$pm" ] &&
        [ "$(awk '{print $3}' "/proc/$pm/stat" 2>/dev/null)" != T ]; do
        sleep 0.05; n=$((n + 1))
    done
    n=0
    kids=$(ps -o pid= --ppid "$pm")
    kill -9 "$pm" $kids 2>/dev/null || true
    # until they are gone (reaped): a new postmaster refuses to start while
    # the old one's pid still exists, which on a loaded machine can take
    # longer than the second the loop waits (it failed so once)
    while [ $n -lt 600 ] && for p in $pm $kids; do [ -e "/proc/$p" ] && break; done; do
        sleep 0.1; n=$((n + 1))
    done
}
q "$R" "$PR" router -q <<'SQL'
SET client_min_messages = warning;
ALTER ROLE web IN DATABASE router SET shop_router.hold_ttl = '3 seconds';
SET ROLE backoffice;
SELECT count(shop.stock_set(product_id, 100000)) FROM race_product \g /dev/null
RESET ROLE;
TRUNCATE race_result;
SQL
for victim in A B R; do
    case $victim in A) vdir=$A ;; B) vdir=$B ;; R) vdir=$R ;; esac
    echo "== kill -9 of $([ $victim = R ] && echo the router || echo "shard cluster $victim") in the middle of checkouts ($(date +%T))"
    # timeout: a client stuck for good fails the test instead of hanging it
    timeout -s KILL $((CRASH_RUN + 180)) \
        "$PGBIN/pgbench" -n -h "$R" -p "$PR" -U web -c 16 -j 4 -T "$CRASH_RUN" -f "$BASE/race.pgb" router \
        >"$BASE/crash_$victim.out" 2>&1 &
    bench=$!
    sleep "$CRASH_AFTER"
    killall9 "$vdir"
    wait "$bench" || true
    echo "   $(grep -cE 'error|aborted' "$BASE/crash_$victim.out") client errors after the kill"
    sleep 1
    cluster_start "$vdir"
done
q "$R" "$PR" router -q -c "ALTER ROLE web IN DATABASE router RESET shop_router.hold_ttl"
sleep 4
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    q "$dir" "$port" "s$i" -At -c "SELECT shop.sweep()" >/dev/null
done
echo "   saga_recover finished $(q "$R" "$PR" router -U backoffice -At -c "SELECT shop_router.saga_recover('0 seconds')") checkouts"
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v router="$ROUTER" -f "$HERE/crash.sql"
