#!/usr/bin/env bash
# saga_order_callgrind.sh: instructions one order transition (paid ->
# fulfilling, shop.order_transition) costs with and without the
# saga_order_status trigger (issue 16: it keeps shop.saga.order_status, so
# shop._saga_open reads only the open sagas), for an order shop.checkout
# placed on one node (no saga row: the trigger probes saga_pkey and finds
# nothing) and for an order the router's saga steps placed (one saga row
# updated).  Counted by callgrind in a single-user backend; each variant
# runs N1 and N1+N2 transitions and prints (total2 - total1) / N2.
# Usage: bench/saga_order_callgrind.sh [N1 [N2]]
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
N1=${1:-20}
N2=${2:-100}
N=$((N1 + N2))
DIR="$TOP/tmp_check/saga_order_callgrind"
PORT=$(free_port saga_order_callgrind)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "synchronous_commit = off" \
    "shop.sweep_interval = 3600"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
"$PGBIN/createdb" cg
BENCH_STORE_SQL=$(cd "$(dirname "$0")" && pwd)/checkout_store.sql
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d cg <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
-- a shard has the trigger (shop._shard_setup creates it)
SELECT shop._saga_recover_setup();
\set products 1000
\i $BENCH_STORE_SQL
-- $N paid orders of shop.checkout (customers 1..$N) and $N of the saga
-- steps (customers 10001..), and 2,000 done sagas of delivered orders, as
-- a shard keeps them
CREATE TABLE public.cg_plain (i int PRIMARY KEY, order_id uuid);
CREATE TABLE public.cg_saga (i int PRIMARY KEY, order_id uuid);
INSERT INTO public.cg_plain
SELECT g, shop.checkout(c, 'tok_visa', 'plain-' || g)
  FROM generate_series(1, $N) g,
       LATERAL (SELECT shop.cart_create(g) c) cc,
       LATERAL (SELECT shop.cart_add(c, 1 + g % 1000)) a;
CREATE FUNCTION pg_temp.saga(g int) RETURNS uuid LANGUAGE plpgsql AS \$f\$
DECLARE
    o uuid := md5('cg-saga' || g)::uuid;
    c uuid := shop.cart_create(10000 + g);
    p bigint := 1 + g % 1000;
BEGIN
    PERFORM shop.cart_add(c, p);
    PERFORM shop._saga_begin(o, c, 'tok_visa', 'saga-' || g, NULL);
    PERFORM shop._saga_place(o, ARRAY[p], ARRAY['CO-' || p], ARRAY['x'], ARRAY[100]::bigint[], ARRAY[1],
                             'tok_visa', NULL);
    PERFORM shop._saga_finish(o, 'done');
    RETURN o;
END \$f\$;
INSERT INTO public.cg_saga SELECT g, pg_temp.saga(g) FROM generate_series(1, 2000 + $N) g;
SELECT count(shop.order_transition(order_id, s))
  FROM public.cg_saga, unnest(ARRAY['fulfilling', 'shipped', 'delivered']) s WHERE i > $N;
UPDATE shop.saga SET stock = 'committed' WHERE order_id IN (SELECT order_id FROM public.cg_saga WHERE i > $N);
VACUUM ANALYZE;
SQL
cluster_stop "$DIR"
trap - EXIT
count() {
    local kind=$1 trig=$2 n=$3 d="$DIR/copy"
    rm -rf "$d"
    cp -a "$DIR/data" "$d"
    {
        echo "ALTER TABLE shop.\"order\" $trig TRIGGER saga_order_status;"
        for i in $(seq 1 "$n"); do
            echo "SELECT shop.order_transition(order_id, 'fulfilling') FROM public.cg_$kind WHERE i = $i;"
        done
    } >"$DIR/q.sql"
    chown -R postgres: "$d" "$DIR" 2>/dev/null || true
    as_owner valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.$kind.$trig.$n" \
        "$PGBIN/postgres" --single -D "$d" -c shop.sweep_interval=3600 cg <"$DIR/q.sql" \
        >"$DIR/out.log" 2>&1
    [ "$(grep -c 'order_transition = "fulfilling"' "$DIR/out.log")" = "$n" ] || { tail -20 "$DIR/out.log" >&2; return 1; }
    grep -m1 '^summary:\|^totals:' "$DIR/callgrind.$kind.$trig.$n" | awk '{print $2}'
}
for kind in plain saga; do
    for trig in DISABLE ENABLE; do
        t1=$(count $kind $trig "$N1")
        t2=$(count $kind $trig "$N")
        echo "$kind order, trigger ${trig,,}d: $(( (t2 - t1) / N2 )) instructions per transition (totals $t1, $t2)"
    done
done
