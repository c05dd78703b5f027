#!/usr/bin/env bash
# checkout_sweep.sh: checkout throughput second by second across the
# sweeper's rounds (issue 11).  On a cluster with make bench's settings and
# bench/workloads/checkout.sh's store (10,000 products, 3-line carts), it
# runs shop.checkout at 16 clients with synchronous_commit = on for SECS
# seconds (default 150: two rounds at the default interval), the sweeper
# every SWEEP_INTERVAL seconds (default 60, the product's default), and
# meanwhile samples pg_stat_activity every 0.1 s (wait events of the
# checkouts, what the sweeper runs) and the lock waits (pg_locks, with the
# blocking process's query) and the WAL position.  LAPSED (default 500)
# products, one in 20, have a hold that lapses 30 s into the run, as
# abandoned checkouts leave them, for the first round to reclaim.  The
# minimal SQL checkout runs 30 s before, without a round, for the ratio.
# Prints per second the orders, the latency max, the WAL and what the
# sweeper was doing; then orders/s and the latency max inside and outside
# the rounds, and the checkouts' waits inside the rounds.
# Usage: bench/checkout_sweep.sh [SECS]    (TOP=<tree> to measure another build)
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
SECS=${1:-150}
CLIENTS=16
NPROD=10000
PER_CLIENT=$((SECS * 90))      # carts per client: 1,440 orders/s at most
DIR="$TOP/tmp_check/checkout_sweep"
PORT=$(free_port checkout_sweep)
mem_mb=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
sb_mb=$((mem_mb / 4)); [ "$sb_mb" -gt 4096 ] && sb_mb=4096
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" \
    "shared_buffers = ${sb_mb}MB" "effective_cache_size = $((mem_mb * 3 / 4))MB" \
    "work_mem = 64MB" "maintenance_work_mem = 1GB" "max_wal_size = 8GB" "min_wal_size = 1GB" \
    "checkpoint_timeout = 30min" "checkpoint_completion_target = 0.9" "wal_buffers = 64MB" \
    "synchronous_commit = on" "random_page_cost = 1.1" "max_worker_processes = 16" \
    "autovacuum_vacuum_scale_factor = 0.05" "jit = off" \
    "shop.sweep_interval = 3600"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
export PGDATABASE=cs
"$PGBIN/createdb" cs
psql_q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
BENCH_STORE_SQL=$(cd "$(dirname "$0")" && pwd)/checkout_store.sql   # products, stock, naive_checkout
psql_q >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
\set products $((2 * NPROD))
\i $BENCH_STORE_SQL
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
SELECT gen_random_uuid(), r * 100000000 + c * 1000000 + n, now() + interval '1 day'
  FROM generate_series(0, 1) r, generate_series(0, $CLIENTS - 1) c, generate_series(1, $PER_CLIENT) n
 WHERE r = 1 OR n <= 5000;
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
SELECT c.cart_id, p.pid, 1 + (p.k = 1)::int, 100
  FROM shop.cart c,
       LATERAL (SELECT k, 1 + ((hashint8(c.customer_id)::bigint + 2147483648 + k * ($NPROD / 3)) % $NPROD) AS pid
                  FROM generate_series(1, 3) k) p
ON CONFLICT DO NOTHING;
CREATE TABLE public.act (at timestamptz, pid int, btype text, wtype text, wevent text, state text, q text);
CREATE TABLE public.lockw (at timestamptz, pid int, rel text, locktype text, mode text, blocker int, blocker_q text);
CREATE TABLE public.wal (at timestamptz, lsn pg_lsn);
VACUUM ANALYZE;
SQL
T=$DIR/run; mkdir -p "$T"; chmod 777 "$T"
cat >"$T/checkout.sql" <<'EOF2'
\set n :n + 1
\set cust :run * 100000000 + :client_id * 1000000 + :n
SELECT shop.checkout((SELECT cart_id FROM shop.cart WHERE customer_id = :cust), 'tok_visa', 'key-' || :cust);
EOF2
cat >"$T/naive.sql" <<EOF2
\set p1 random($((NPROD + 1)), $((NPROD + NPROD / 3)))
\set p2 random($((NPROD + NPROD / 3 + 1)), $((NPROD + 2 * NPROD / 3)))
\set p3 random($((NPROD + 2 * NPROD / 3 + 1)), $((2 * NPROD)))
\set c random(1, 1000000000)
SELECT public.naive_checkout(:c, :p1, :p2, :p3);
EOF2
pgb() { "$PGBIN/pgbench" -n -M prepared -c $CLIENTS -j 2 "$@"; }
pgb -T 3 -f "$T/checkout.sql" -D n=0 -D run=0 >/dev/null 2>&1
pgb -T 2 -f "$T/naive.sql" --max-tries=5 >/dev/null 2>&1
psql_q -c "VACUUM ANALYZE"
pgb -T 30 -f "$T/naive.sql" --max-tries=5 >"$T/naive.txt" 2>&1 || true
nv_tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$T/naive.txt" | tail -1)
# a first round with the warm-up's orders (the full popularity run), then
# the sweeper at its interval: its launcher counts one interval from the
# reload, so the first round of the run comes SWEEP_INTERVAL s after it
psql_q -c "SELECT shop.sweep()" -c "CALL shop.popularity_sync()" >/dev/null
as_owner sed -i "s/^shop.sweep_interval = .*/shop.sweep_interval = ${SWEEP_INTERVAL:-60}/" "$DIR/data/postgresql.conf"
psql_q -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
# holds left by abandoned checkouts, lapsing 30 s into the run
psql_q >/dev/null <<SQL
SELECT count(shop.reserve(g, 1, 'abandoned-' || g)) FROM generate_series(20, 20 * ${LAPSED:-500}, 20) g;
UPDATE shop.reservation SET expires_at = now() + interval '30 s' WHERE ref LIKE 'abandoned-%';
SQL

sampler() {
    local i
    for i in $(seq 1 $((SECS * 10))); do
        echo "INSERT INTO public.act SELECT clock_timestamp(), pid, CASE WHEN application_name = 'pgbench' THEN 'checkout' ELSE backend_type END,
                  coalesce(wait_event_type, 'CPU'), coalesce(wait_event, 'running'), state, left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
             FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND (application_name = 'pgbench' OR backend_type = 'shop sweeper');"
        echo "INSERT INTO public.lockw SELECT clock_timestamp(), l.pid, l.relation::regclass::text, l.locktype, l.mode, b.pid,
                  left(regexp_replace(b.query, '\\s+', ' ', 'g'), 80)
             FROM pg_locks l CROSS JOIN LATERAL unnest(pg_blocking_pids(l.pid)) bp(pid) JOIN pg_stat_activity b ON b.pid = bp.pid
            WHERE NOT l.granted;"
        echo "INSERT INTO public.wal VALUES (clock_timestamp(), pg_current_wal_lsn());"
        echo "SELECT pg_sleep(0.1);"
    done
}
sampler | psql_q -v ON_ERROR_STOP=0 >/dev/null 2>&1 &
wp=$!
(cd "$T" && pgb -T "$SECS" -f "$T/checkout.sql" -D n=0 -D run=1 -l --aggregate-interval=1 --log-prefix=co >"$T/pgbench.txt" 2>&1) || true
wait "$wp" || true
co_tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$T/pgbench.txt" | tail -1)

cat "$T"/co.* | awk '{ print $1, $2, $3, $4, $5, $6 }' | sort -n >"$T/persec.tsv"
psql_q -c "CREATE TABLE public.persec (t bigint, n int, lat_sum bigint, lat_sq numeric, lat_min bigint, lat_max bigint)" \
    -c "\\copy public.persec FROM '$T/persec.tsv' WITH (DELIMITER ' ')" \
    -c "CREATE TABLE public.persec1 AS SELECT t, sum(n)::int AS n, max(lat_max) AS lat_max FROM public.persec GROUP BY t" >/dev/null
echo "## checkout across sweeper rounds ($(git -C "$TOP" log -1 --format=%h 2>/dev/null || echo "$TOP"), sweep_interval ${SWEEP_INTERVAL:-60} s)"
echo
echo "shop.checkout $co_tps orders/s over $SECS s; minimal SQL checkout $nv_tps/s (30 s before, no round);"
echo "ratio $(awk -v a="$co_tps" -v b="$nv_tps" 'BEGIN { printf "%.2f", a / b }')x. Load: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "Per second: s | orders | latency max ms | WAL MB | sweeper (what its worker ran) | lock waits sampled | on what"
echo
psql_q -F ' | ' <<'SQL'
WITH sw AS (
    SELECT extract(epoch FROM date_trunc('second', at))::bigint AS t,
           string_agg(DISTINCT CASE WHEN q ~ 'popularity_apply' THEN 'apply' WHEN q ~ 'sweep' THEN 'sweep' ELSE left(q, 20) END, ',') AS what
      FROM public.act WHERE btype = 'shop sweeper' GROUP BY 1
), lw AS (
    SELECT extract(epoch FROM date_trunc('second', at))::bigint AS t, count(*) AS waits,
           string_agg(DISTINCT locktype || ':' || coalesce(rel, '') || ' by ' || left(blocker_q, 30), '; ') AS on_what
      FROM public.lockw GROUP BY 1
), wl AS (
    SELECT extract(epoch FROM date_trunc('second', at))::bigint AS t, max(lsn) AS lsn FROM public.wal GROUP BY 1
)
SELECT p.t - min(p.t) OVER () AS s, p.n AS orders, round(p.lat_max / 1000.0) AS max_ms,
       round((wl.lsn - lag(wl.lsn) OVER (ORDER BY p.t)) / 1048576.0, 1) AS wal_mb,
       coalesce(sw.what, '') AS sweeper, coalesce(lw.waits, 0) AS lock_waits, coalesce(lw.on_what, '')
  FROM public.persec1 p LEFT JOIN sw USING (t) LEFT JOIN lw USING (t) LEFT JOIN wl USING (t)
 ORDER BY p.t
SQL
echo
echo "Inside and outside the sweeper's seconds: | seconds | orders/s | latency max ms"
echo
psql_q -F ' | ' <<'SQL'
WITH sw AS (SELECT DISTINCT extract(epoch FROM date_trunc('second', at))::bigint AS t FROM public.act WHERE btype = 'shop sweeper')
SELECT CASE WHEN sw.t IS NULL THEN 'outside' ELSE 'inside a round' END, count(*) AS seconds,
       round(avg(p.n)) AS orders_per_s, round(max(p.lat_max) / 1000.0) AS max_ms
  FROM public.persec1 p LEFT JOIN sw USING (t) GROUP BY 1
SQL
echo
echo "Checkout backends' wait events during the sweeper's seconds (share of samples):"
echo
psql_q -F ' | ' <<'SQL'
WITH sw AS (SELECT DISTINCT date_trunc('second', at) AS t FROM public.act WHERE btype = 'shop sweeper')
SELECT wtype, wevent, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
  FROM public.act a JOIN sw ON sw.t = date_trunc('second', a.at)
 WHERE a.btype = 'checkout' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 8
SQL
echo
echo "Lock waits seen (all samples):"
echo
psql_q -F ' | ' -c "SELECT locktype, rel, mode, left(blocker_q, 60), count(*) FROM public.lockw GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC LIMIT 10"
echo
grep -h "shop sweep in database" "$DIR/server.log" | sed 's/^/    /' | tail -6
