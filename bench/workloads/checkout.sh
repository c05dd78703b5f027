#!/usr/bin/env bash
# checkout: shop.checkout of 3-line carts at 16 clients over 10,000 products,
# with synchronous_commit on and off, against a hand-written minimal
# checkout (3 conditional stock updates + order + 3 lines, nothing else).
#
# Runs in a database of its own (bench_checkout, dropped at the end) so the
# orders, carts and stock it makes do not disturb the other workloads.
# Carts are built before the timed runs: the runs measure checkout alone.
set -euo pipefail
. "$TOP/bench/lib.sh"
SECS=${BENCH_SECONDS:-15}
CLIENTS=16
NPROD=10000
PER_CLIENT=$((SECS * 400))       # carts per client of a 16-client run (6,400 orders/s max; at 200
                                 # a quiet 2026-12-07 run, sync off, used them up: 3,284/s)
SINGLE=$((SECS * 5000))          # carts of the 1-client run (5,000 orders/s max; at 800 a
                                 # quiet 2026-12-06 run used them up in 9 s: 1,318/s, at
                                 # 2,500 a 2026-12-07 run at 8177db1 in 15 s: 2,505/s)
DB=bench_checkout
export PGDATABASE=$DB

"$PGBIN/dropdb" --if-exists "$DB" >/dev/null 2>&1 || true
"$PGBIN/createdb" "$DB"
BENCH_STORE_SQL=$(cd "$TOP/bench" && pwd)/checkout_store.sql   # products, stock, naive_checkout
bench_psql >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
-- products 1..NPROD for shop.checkout, NPROD+1..2*NPROD for the baseline
\set products $((2 * NPROD))
\i $BENCH_STORE_SQL
-- carts of customers run*10^8 + client*10^6 + n (n = 1..PER_CLIENT), 3 lines each,
-- products picked by a hash of the whole customer id.  (Until 2026-12-06
-- the pick was (customer_id * 2654435761 + k * 40503) % NPROD, in which
-- client * 10^6 vanishes modulo 10,000: the 16 clients' n-th carts held the
-- same 3 products, and clients running in step queued on the same stock
-- rows, which the baseline's random products never do.)
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
SELECT gen_random_uuid(), r * 100000000 + c * 1000000 + n, now() + interval '1 day'
  FROM generate_series(0, 4) r, generate_series(0, $CLIENTS - 1) c, generate_series(1, $PER_CLIENT) n
 WHERE r <> 3
UNION ALL
SELECT gen_random_uuid(), 300000000 + n, now() + interval '1 day' FROM generate_series(1, $SINGLE) n;
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
SELECT c.cart_id, p.pid, 1 + (p.k = 1)::int, 100
  FROM shop.cart c,
       LATERAL (SELECT k, 1 + ((hashint8(c.customer_id)::bigint + 2147483648 + k * ($NPROD / 3)) % $NPROD) AS pid
                  FROM generate_series(1, 3) k) p
ON CONFLICT DO NOTHING;
VACUUM ANALYZE;
SQL

cat >"$BENCH_TMP/checkout.sql" <<'EOF2'
\set n :n + 1
\set cust :run * 100000000 + :client_id * 1000000 + :n
SELECT shop.checkout((SELECT cart_id FROM shop.cart WHERE customer_id = :cust), 'tok_visa', 'key-' || :cust);
EOF2
cat >"$BENCH_TMP/naive.sql" <<EOF2
\set p1 random($((NPROD + 1)), $((NPROD + NPROD / 3)))
\set p2 random($((NPROD + NPROD / 3 + 1)), $((NPROD + 2 * NPROD / 3)))
\set p3 random($((NPROD + 2 * NPROD / 3 + 1)), $((2 * NPROD)))
\set c random(1, 1000000000)
SELECT public.naive_checkout(:c, :p1, :p2, :p3);
EOF2

# warm up: a few seconds of checkouts (run 0), then statistics, so that the
# measured runs plan against tables that have rows, as a live shop does
bench_pgbench "warm-up" $CLIENTS 3 "$BENCH_TMP/checkout.sql" -D n=0 -D run=0 >/dev/null || true
bench_pgbench "warm-up baseline" $CLIENTS 2 "$BENCH_TMP/naive.sql" --max-tries=5 >/dev/null || true
bench_psql -c "VACUUM ANALYZE"

rows=$BENCH_TMP/rows.tsv
: >"$rows"
export PGOPTIONS="-c synchronous_commit=on"
bench_pgbench "baseline: minimal SQL checkout, sync on" $CLIENTS "$SECS" "$BENCH_TMP/naive.sql" --max-tries=5 >>"$rows" || true
bench_pgbench "shop.checkout, sync on" $CLIENTS "$SECS" "$BENCH_TMP/checkout.sql" -D n=0 -D run=1 >>"$rows" || true
on_tps=$BENCH_TPS
export PGOPTIONS="-c synchronous_commit=off"
bench_pgbench "baseline: minimal SQL checkout, sync off" $CLIENTS "$SECS" "$BENCH_TMP/naive.sql" --max-tries=5 >>"$rows" || true
bench_pgbench "shop.checkout, sync off" $CLIENTS "$SECS" "$BENCH_TMP/checkout.sql" -D n=0 -D run=2 >>"$rows" || true
off_tps=$BENCH_TPS
bench_pgbench "shop.checkout, sync off, 1 client" 1 "$SECS" "$BENCH_TMP/checkout.sql" -D n=0 -D run=3 >>"$rows" || true
# 1.0's notifications (shop.notify_events = each): every checkout's
# transaction notifies, and PostgreSQL lets one notifying transaction
# commit at a time.  The default (batch) leaves the wake-ups to the events
# worker, one per batch.
export PGOPTIONS="-c synchronous_commit=off -c shop.notify_events=each"
bench_pgbench "shop.checkout, sync off, a pg_notify per event (1.0)" $CLIENTS "$SECS" "$BENCH_TMP/checkout.sql" -D n=0 -D run=4 >>"$rows" || true
each_tps=$BENCH_TPS
unset PGOPTIONS

checks=$(bench_psql -c "
    SELECT format('%s orders; %s stock rows with reserved <> live holds; %s oversold; %s orders without lines or payment',
        (SELECT count(*) FROM shop.\"order\" WHERE idempotency_key IS NOT NULL),
        (SELECT count(*) FROM shop.stock s WHERE s.reserved <> coalesce((SELECT sum(r.qty) FROM shop.reservation r
              WHERE r.product_id = s.product_id AND r.location = s.location AND r.bucket = s.bucket
                AND r.status = 'held'), 0) AND s.product_id <= $NPROD),
        (SELECT count(*) FROM shop.stock WHERE reserved > on_hand),
        (SELECT count(*) FROM shop.\"order\" o WHERE o.idempotency_key IS NOT NULL AND (
              NOT EXISTS (SELECT 1 FROM shop.order_line l WHERE l.order_id = o.order_id)
           OR NOT EXISTS (SELECT 1 FROM shop.payment p WHERE p.order_id = o.order_id))))")

echo "## Checkout"
echo
echo "\`shop.checkout\` of prebuilt 3-line carts (one customer each, random products among"
echo "$NPROD, test provider \`tok_visa\`), $CLIENTS clients, ${SECS} s per run. Each checkout"
echo "locks the cart, claims the idempotency key, holds the 3 lines (one statement),"
echo "prices shipping and tax, scores fraud, writes order, lines, payment, 2 events and"
echo "2 outbox events (\`order.created\`, \`order.paid\`; listeners are woken once per batch by the"
echo "events worker, \`shop.notify_events = batch\`), empties the cart."
echo "The baseline is a hand-written minimal checkout in PL/pgSQL: one conditional stock"
echo "UPDATE of 3 rows, the order and its 3 lines, nothing else (no cart, no idempotency,"
echo "no payment, no events, no notify)."
echo
bench_md_table_vs "baseline: minimal SQL checkout, sync on" "baseline: minimal SQL checkout, sync off" <"$rows"
echo
echo "Orders/s: $on_tps with \`synchronous_commit = on\`, $off_tps with it off (target: 1,000/s off);"
echo "$each_tps with it off when every checkout notifies itself, as in 1.0 (\`shop.notify_events = each\`:"
echo "every NOTIFY holds one cluster-wide lock through commit, so notifying checkouts commit one at a time)."
echo "The runs follow a short warm-up and ANALYZE, so plans see tables with rows."
echo "Checks after the runs: $checks."

"$PGBIN/dropdb" "$DB" >/dev/null 2>&1 || true
