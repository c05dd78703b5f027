#!/usr/bin/env bash
# crash_inventory: a pgbench load of reserve / reserve_many / release /
# commit / restock (plus the preloaded sweeper expiring short holds) is cut
# by `pg_ctl stop -m immediate`; after crash recovery, for every stock row
# reserved must equal the held reservation parts pointing at it, stock is
# never negative, and on_hand equals the sum of the stock ledger.  Then the
# sweeper, restarted with the server, must expire the holds that lapsed.
set -euo pipefail
TOP=${TOP:?}
. "$TOP/scripts/pgenv.sh"
PGBIN=${PGBIN:?}

NAME=crash_inventory
DIR="$TOP/tmp_check/$NAME"
PORT=$(free_port $NAME)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 1" \
    "max_worker_processes = 16" "synchronous_commit = on"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
export PGDATABASE=crash
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)

"$PGBIN/createdb" crash
"${PSQL[@]}" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'CR-' || g, 'Crash product ' || g, 100 * g FROM generate_series(1, 200) g;
SELECT count(shop.stock_set(g, 40)) FROM generate_series(1, 200) g;
-- hot products: bucketed, and a second location for a few
SELECT count(shop.stock_set_buckets(g, 8)) FROM generate_series(1, 5) g;
SELECT count(shop.stock_set(g, 15, 'east')) FROM generate_series(6, 20) g;

-- one client step: a random mix of the inventory calls; running out of
-- stock (SH001) is an expected answer, not a failure
CREATE FUNCTION public.crash_step(p int, q int, act int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rid uuid;
    ids uuid[];
BEGIN
    IF act <= 2 THEN
        -- a hot product, short hold left to expire (sweeper / reclaim)
        PERFORM shop.reserve(1 + p % 5, q, 'expire', make_interval(secs => 1));
    ELSIF act <= 4 THEN
        rid := shop.reserve(p, q, 'release');
        PERFORM shop.reservation_release(rid);
    ELSIF act <= 6 THEN
        rid := shop.reserve(1 + p % 5, q, 'commit');
        PERFORM shop.reservation_commit(rid);
    ELSIF act <= 8 THEN
        ids := shop.reserve_many(jsonb_build_array(
                   jsonb_build_object('product_id', p, 'qty', q),
                   jsonb_build_object('product_id', 1 + (p * 7) % 200, 'qty', 1),
                   jsonb_build_object('product_id', 1 + p % 5, 'qty', 1)),
               'cart', make_interval(secs => 2));
        IF act = 8 THEN
            PERFORM shop.reservation_commit(ids[1]);
        END IF;
    ELSIF act = 9 THEN
        PERFORM shop.stock_adjust(1 + p % 20, 3, 'restock', CASE WHEN p % 2 = 0 THEN 'default' ELSE 'east' END);
    ELSE
        PERFORM shop.reserve(p, q, 'held', make_interval(secs => 600));
    END IF;
EXCEPTION WHEN SQLSTATE 'SH001' THEN
    NULL;
END
$$;
SQL

cat >"$DIR/step.sql" <<'EOF2'
\set p random(1, 200)
\set q random(1, 3)
\set act random(1, 10)
SELECT crash_step(:p, :q, :act);
EOF2

# the load, killed mid-flight
"$PGBIN/pgbench" -n -M prepared -c 8 -j 2 -T 30 -f "$DIR/step.sql" >"$DIR/pgbench.log" 2>&1 &
BENCH=$!
sleep 8
"${PSQL[@]}" -At -c "SELECT 'before crash: ' || count(*) || ' reservations' FROM shop.reservation"
as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null
wait $BENCH || true
grep -q "processed\|terminat\|connection" "$DIR/pgbench.log" || { cat "$DIR/pgbench.log"; exit 1; }

# the load takes locks in the documented order: no deadlock, no other error
if grep -E "ERROR|PANIC" "$DIR/server.log" | grep -v "terminating connection" | grep -q .; then
    grep -E "ERROR|PANIC" "$DIR/server.log" | head -5
    echo "FAILED: errors under the inventory load"
    exit 1
fi

cluster_start "$DIR"
grep -q "database system was interrupted\|not properly shut down" "$DIR/server.log" ||
    { echo "no crash recovery happened"; exit 1; }

check() {
    "${PSQL[@]}" -At <<'SQL'
SELECT 'reservations after recovery: ' || count(*) || ', held ' || count(*) FILTER (WHERE status = 'held')
  FROM shop.reservation;
-- every violated invariant is one row
SELECT 'reserved mismatch ' || s.product_id || '/' || s.location || '/' || s.bucket
       || ': reserved ' || s.reserved || ', held parts ' || coalesce(h.q, 0)
  FROM shop.stock s
  LEFT JOIN (SELECT product_id, location, bucket, sum(qty) AS q FROM shop.reservation
              WHERE status = 'held' GROUP BY 1, 2, 3) h USING (product_id, location, bucket)
 WHERE s.reserved <> coalesce(h.q, 0)
UNION ALL
SELECT 'negative or oversold ' || product_id || '/' || location || '/' || bucket
  FROM shop.stock WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand
UNION ALL
SELECT 'held part without stock row ' || r.reservation_id
  FROM shop.reservation r
 WHERE r.status = 'held'
   AND NOT EXISTS (SELECT 1 FROM shop.stock s WHERE (s.product_id, s.location, s.bucket)
                                                   = (r.product_id, r.location, r.bucket))
UNION ALL
SELECT 'ledger mismatch ' || s.product_id || '/' || s.location || ': on_hand ' || s.on_hand
       || ', ledger ' || coalesce(l.total, 0)
  FROM (SELECT product_id, location, sum(on_hand) AS on_hand FROM shop.stock GROUP BY 1, 2) s
  LEFT JOIN (SELECT product_id, location, sum(delta) AS total FROM shop.stock_ledger GROUP BY 1, 2) l
       USING (product_id, location)
 WHERE s.on_hand <> coalesce(l.total, 0)
UNION ALL
SELECT 'in_stock wrong for ' || p.product_id
  FROM shop.product p
 WHERE p.in_stock <> coalesce((SELECT sum(on_hand) > 0 FROM shop.stock s WHERE s.product_id = p.product_id), false);
SQL
}
out=$(check)
echo "$out"
if echo "$out" | grep -v "^reservations after recovery" | grep -q .; then
    echo "FAILED: invariants broken after crash recovery"
    exit 1
fi
committed=$("${PSQL[@]}" -At -c "SELECT count(*) FROM shop.reservation WHERE status = 'committed'")
[ "$committed" -gt 0 ] || { echo "FAILED: the load committed nothing before the crash"; exit 1; }

# the sweeper came back with the server: lapsed holds get expired without
# anyone calling shop.sweep()
for i in $(seq 1 30); do
    left=$("${PSQL[@]}" -At -c "SELECT count(*) FROM shop.reservation
                                 WHERE status = 'held' AND expires_at < now() - interval '1 second'")
    [ "$left" = 0 ] && break
    sleep 1
done
[ "$left" = 0 ] || { echo "FAILED: $left lapsed holds not swept after restart"; tail -20 "$DIR/server.log"; exit 1; }
grep -q 'shop sweep in database "crash"' "$DIR/server.log" ||
    { echo "FAILED: the sweeper never logged a sweep"; exit 1; }
out=$(check)
if echo "$out" | grep -v "^reservations after recovery" | grep -q .; then
    echo "$out"; echo "FAILED: invariants broken after the sweep"; exit 1
fi

# SIGHUP: a new interval is taken without a restart; SIGTERM stops the launcher
"${PSQL[@]}" -c "ALTER SYSTEM SET shop.sweep_interval = 2" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
# (counting the launcher only: a sweep worker of this round may be running too)
"${PSQL[@]}" -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'shop sweeper'
                      AND application_name = 'shop sweeper launcher'" | grep -q '^1$' ||
    { echo "FAILED: sweeper launcher not running after reload"; exit 1; }
"${PSQL[@]}" -At -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE backend_type = 'shop sweeper' AND application_name = 'shop sweeper launcher'" >/dev/null
echo "crash_inventory: ok"
