#!/usr/bin/env bash
# checkout_callgrind.sh: instructions per shop.checkout of a 3-line cart,
# counted by callgrind in a single-user backend (deterministic, unlike
# timings on a shared machine).  Builds one store (10,000 products, carts of
# 3 lines, one customer each, as bench/workloads/checkout.sh; 1,000 of them
# checked out as a warm-up, then VACUUM ANALYZE), then runs
# N1 and N1+N2 checkouts on two copies of it under callgrind; prints
# (total2 - total1) / N2.  Usage: bench/checkout_callgrind.sh [N1 [N2]]
# Extra SQL run once on the store before the copies: $CG_SETUP_SQL.
# CG_BASELINE=1 counts the bench's minimal SQL checkout instead
# (public.naive_checkout of bench/workloads/checkout.sh: 3 stock rows
# updated, the order and 3 lines) on the same store.
# The callgrind files stay in tmp_check/checkout_callgrind/ for
# callgrind_annotate (compare inclusive costs of the two).
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
N1=${1:-20}
N2=${2:-200}
DIR="$TOP/tmp_check/checkout_callgrind"
PORT=$(free_port checkout_callgrind)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "synchronous_commit = off" \
    "shop.sweep_interval = 3600"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
"$PGBIN/createdb" cg
BENCH_STORE_SQL=$(cd "$(dirname "$0")" && pwd)/checkout_store.sql   # products, stock, naive_checkout
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d cg <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
\set products 10000
\i $BENCH_STORE_SQL
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
SELECT gen_random_uuid(), n, now() + interval '1 day' FROM generate_series(1, 2000) n;
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
SELECT c.cart_id, p.pid, 1 + (p.k = 1)::int, 100
  FROM shop.cart c,
       LATERAL (SELECT k, 1 + ((c.customer_id * 2654435761 + k * 40503) % 10000) AS pid
                  FROM generate_series(1, 3) k) p
ON CONFLICT DO NOTHING;
-- warm-up: 1,000 orders (customers 1..1000), so that plans see tables with
-- rows, as the bench's warm-up does
SELECT count(shop.checkout(cart_id, 'tok_visa', 'warm-' || customer_id))
  FROM shop.cart WHERE customer_id <= 1000;
SELECT count(public.naive_checkout(2000000 + g, 1 + g % 3333, 3334 + g % 3333, 6667 + g % 3333))
  FROM generate_series(1, 1000) g;
${CG_SETUP_SQL:-}
VACUUM ANALYZE;
SQL
cluster_stop "$DIR"
trap - EXIT
count() {
    local n=$1 d="$DIR/copy$1"
    rm -rf "$d"
    cp -a "$DIR/data" "$d"
    for i in $(seq 1 "$n"); do
        if [ -n "${CG_BASELINE:-}" ]; then
            echo "SELECT public.naive_checkout($((3000000 + i)), $((1 + (i * 7) % 3333)), $((3334 + (i * 11) % 3333)), $((6667 + (i * 13) % 3333))) AS checkout;"
        else
            echo "SELECT shop.checkout((SELECT cart_id FROM shop.cart WHERE customer_id = $((1000 + i))), 'tok_visa', 'key-$i');"
        fi
    done >"$DIR/q$n.sql"
    chown -R postgres: "$d" "$DIR" 2>/dev/null || true
    as_owner valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.$n" \
        "$PGBIN/postgres" --single -D "$d" -c shop.sweep_interval=3600 cg <"$DIR/q$n.sql" \
        >"$DIR/out$n.log" 2>&1
    [ "$(grep -c '1: checkout = ' "$DIR/out$n.log")" = "$n" ] || { tail -20 "$DIR/out$n.log" >&2; return 1; }
    grep -m1 '^summary:\|^totals:' "$DIR/callgrind.$n" | awk '{print $2}'
}
t1=$(count "$N1")
t2=$(count $((N1 + N2)))
echo "instructions per checkout: $(( (t2 - t1) / N2 )) (totals $t1, $t2)"
