#!/usr/bin/env bash
# popfold_cost.sh: what the router's popularity refresh costs (issue 16),
# not a test (bench/results/2026-12-07-clu10.md).  Builds a router and 4
# shards as test/cluster does (scripts/cluster.sh, in tmp_bench/popfold),
# 2,000 products on their shards, then for each size in SIZES (events in
# the window, half order lines and half views, spread over the last 10
# days and over the 4 shards' customers, written with SQL on the shards:
# the shards' triggers log them):
#   - whole:        shop_router.popularity_refresh(whole => true), every
#                   shard's events of the window summed;
#   - incremental:  CHANGES new orders (one line) and CHANGES views on
#                   every shard, then shop_router.popularity_refresh()
#                   (the fold: the logged rows and the events that left the
#                   window);
#   - connect:      the baseline of both: a new router session's first
#                   round to every shard (shop_router._popularity_clock),
#                   its connections opened;
# ROUNDS times each, in turns.  CPU is counted around each call (utime +
# stime of /proc, 10 ms ticks): the router's backend and every process of
# the two shard clusters.  Then the log's cost per order: TRIPS checkouts
# of 3 lines on shard s0 itself, with the log's triggers and without them
# (dropped), in turns, the backend's CPU (/proc/<pid>/schedstat, ns).
# Run from the top of the tree after make:  bash test/cluster/popfold_cost.sh
set -euo pipefail
TOP=${TOP:-$(pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
. "$TOP/scripts/cluster.sh"
SIZES=${SIZES:-20000 100000 400000 1000000} CHANGES=${CHANGES:-25} ROUNDS=${ROUNDS:-3} TRIPS=${TRIPS:-200}
BASE="$TOP/tmp_bench/popfold"
[ "${KEEP:-0}" = 1 ] || trap 'shop_cluster_down immediate >/dev/null 2>&1 || true' EXIT
shop_cluster_up "$BASE" >/dev/null 2>&1
shard() { local i=$1; shift; local dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB; q "$dir" "$port" "s$i" "$@"; }
for i in 0 1 2 3; do
    shard $i -c "INSERT INTO shop.product (product_id, sku, title, price_cents)
                 SELECT g, 'PF-' || g, 'Fold product ' || g, 1000 FROM generate_series(1, 2000) g WHERE hashint8(g) & 3 = $i;
                 SELECT count(shop.stock_set(product_id, 1000000)) FROM shop.product" >/dev/null
done
# events on every shard: n order lines and n views of its customers
events() {   # n minutes_spread
    for i in 0 1 2 3; do
        shard $i -q <<SQL
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents, created_at)
SELECT gen_random_uuid(), c, 'paid', 'USD', 1000, 1000, now() - random() * interval '$2 minutes'
  FROM (SELECT g AS c FROM generate_series(1, 40 * $1) g WHERE hashint8(g) & 3 = $i LIMIT $1) x;
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT o.order_id, 1, 1 + (hashint8(o.customer_id) % 2000 + 2000) % 2000, 'PF', 'Fold', 1000, 1
  FROM shop."order" o LEFT JOIN shop.order_line l ON l.order_id = o.order_id WHERE l.order_id IS NULL;
INSERT INTO shop.view_event (customer_id, viewed_at, product_id)
SELECT c, now() - random() * interval '$2 minutes', 1 + (c::bigint * 7919) % 2000
  FROM (SELECT g AS c FROM generate_series(1, 40 * $1) g WHERE hashint8(g) & 3 = $i LIMIT $1) x
ON CONFLICT DO NOTHING;
SQL
    done
}
run() {   # label call
    cat >"$BASE/run.sql" <<SQL
\set QUIET on
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0
SELECT $2::text AS res \gset
\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1
\echo :res
SQL
    res=$(q "$R" "$PR" router -At -f "$BASE/run.sql")
    read -r b0 s0 w0 <"$BASE/t0"; read -r b1 s1 w1 <"$BASE/t1"
    awk -v l="$1" -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v r="$res" \
        'BEGIN { printf "  %-12s router %5d ms  shards %5d ms  wall %7.1f ms  %s\n", l, b * 10, s * 10, w / 1e6, r }'
}
echo "load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$TOP" rev-parse --short HEAD)"
total=0
for size in $SIZES; do
    add=$(( (size - total) / 8 ))     # per shard: add order lines and add views
    events "$add" 14400               # within the last 10 days
    total=$size
    for i in 0 1 2 3; do shard $i -q -c "VACUUM ANALYZE shop.\"order\", shop.order_line, shop.view_event" ; done
    echo "$(q "$R" "$PR" router -At -c "SELECT sum(n) FROM shop_router._popularity_fold(0, true, now(), NULL, now() - interval '112 days', 604800) WHERE product_id IS NOT NULL") events in the window"
    run "whole" "shop_router.popularity_refresh(true)" >/dev/null     # the log so far read
    for r in $(seq 1 "$ROUNDS"); do
        run "connect" "(SELECT count(*) FROM shop_router._popularity_clock())"
        run "whole" "shop_router.popularity_refresh(true)"
        events "$CHANGES" 1
        run "incremental" "shop_router.popularity_refresh()"
    done
done
# the log's triggers: checkouts on shard s0 itself, with and without them
coproc P { shard 0 -At; }
echo "SELECT pg_backend_pid();" >&"${P[1]}"; read -r pid <&"${P[0]}"
declare -A cpu n
for r in $(seq 1 "$ROUNDS"); do
    for v in log none; do
        if [ $v = log ]; then shard 0 -q -c "SELECT shop._popularity_log_setup()" >/dev/null
        else shard 0 -q -c "DO \$\$ DECLARE t record; BEGIN FOR t IN SELECT * FROM shop._popularity_log_triggers() LOOP
                               EXECUTE format('DROP TRIGGER %I ON shop.%I', t.name, t.tbl); END LOOP; END \$\$"; fi
        c0=$(awk '{print $1}' "/proc/$pid/schedstat")
        echo "DO \$\$ DECLARE c uuid; BEGIN FOR i IN 1..$TRIPS LOOP
                c := shop.cart_create(900000 + i);
                PERFORM shop.cart_add(c, p, 1) FROM (SELECT product_id p FROM shop.product ORDER BY product_id OFFSET (i * 3) % 400 LIMIT 3) x;
                PERFORM shop.checkout(c, 'tok_visa', 'pf-$r-$v-' || i);
                COMMIT; END LOOP; END \$\$; SELECT 1;" >&"${P[1]}"
        read -r _ <&"${P[0]}"
        c1=$(awk '{print $1}' "/proc/$pid/schedstat")
        cpu[$v]=$(( ${cpu[$v]:-0} + c1 - c0 )); n[$v]=$(( ${n[$v]:-0} + TRIPS ))
        echo "  round $r $v: $(( (c1 - c0) / TRIPS / 1000 )) us a checkout of 3 lines"
    done
done
exec {P[1]}>&-
for v in log none; do
    echo "checkout with triggers=$v: $(( cpu[$v] / n[$v] / 1000 )) us of backend CPU (x${n[$v]})"
done
echo "log rows of the checkouts on s0: $(shard 0 -At -c "SELECT count(*) FROM shop.popularity_log")"
