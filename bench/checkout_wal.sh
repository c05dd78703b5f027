#!/usr/bin/env bash
# checkout_wal.sh: what one shop.checkout of a 3-line cart writes, against
# the bench's minimal SQL checkout (bench/workloads/checkout.sh): WAL bytes
# (pg_current_wal_lsn before and after), WAL records and bytes by resource
# manager, by record type and by relation (pg_walinspect), rows inserted, updated (HOT or
# not) and deleted per table, and statements and instructions are left to
# bench/checkout_callgrind.sh.
#
# The store is the callgrind script's: 10,000 products, carts of 3 lines
# (one customer each), 1,000 checkouts as a warm-up, VACUUM ANALYZE, a
# CHECKPOINT.  Then N checkouts (default 500) on one connection, each its
# own transaction, then N minimal checkouts of the same kind.  Full-page
# images are reported apart: they depend on when the last checkpoint was.
# Shared buffer hits per checkout: pg_stat_database.blks_hit of the
# database over the run (the run's one session with its catalog reads at
# connection, and the events worker's batches).
# Usage: bench/checkout_wal.sh [N]
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
N=${1:-500}
DIR="$TOP/tmp_check/checkout_wal"
PORT=$(free_port checkout_wal)
rm -rf "$DIR"
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "synchronous_commit = off" \
    "shop.sweep_interval = 3600" "autovacuum = off" "max_wal_size = 4GB" "checkpoint_timeout = 1h" \
    "wal_keep_size = 2GB"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
"$PGBIN/createdb" cw
psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d cw "$@"; }
BENCH_STORE_SQL=$(cd "$(dirname "$0")" && pwd)/checkout_store.sql   # products, stock, naive_checkout
psql_q <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE EXTENSION pg_walinspect;
\set products 20000
\i $BENCH_STORE_SQL
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
SELECT gen_random_uuid(), n, now() + interval '1 day' FROM generate_series(1, 1000 + $N) n;
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
SELECT c.cart_id, p.pid, 1 + (p.k = 1)::int, 100
  FROM shop.cart c,
       LATERAL (SELECT k, 1 + ((c.customer_id * 2654435761 + k * 40503) % 10000) AS pid
                  FROM generate_series(1, 3) k) p
ON CONFLICT DO NOTHING;
SELECT count(shop.checkout(cart_id, 'tok_visa', 'warm-' || customer_id))
  FROM shop.cart WHERE customer_id <= 1000;
SELECT count(public.naive_checkout(2000000 + g, 10001 + g % 3333, 13334 + g % 3333, 16667 + g % 3333))
  FROM generate_series(1, 200) g;
VACUUM ANALYZE;
CREATE TABLE public.snap AS SELECT 0 AS run, relid::regclass::text AS rel, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
  FROM pg_stat_user_tables WHERE false;
CREATE TABLE public.lsn (run int, at pg_lsn);
CREATE TABLE public.hits (run int, hit bigint);
SQL

measure() {
    local run=$1 file=$2
    psql_q -c "CHECKPOINT" -c "SELECT pg_stat_force_next_flush()" >/dev/null
    sleep 1
    psql_q -c "INSERT INTO public.snap SELECT $run, relid::regclass::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables" \
           -c "INSERT INTO public.lsn VALUES ($run, pg_current_wal_lsn())"
    sleep 1
    psql_q -c "INSERT INTO public.hits SELECT $run, blks_hit FROM pg_stat_database WHERE datname = current_database()"
    psql_q -f "$file" >/dev/null
    psql_q -c "INSERT INTO public.lsn VALUES ($run + 1, pg_current_wal_lsn())"
    sleep 1
    psql_q -c "INSERT INTO public.hits SELECT $run + 1, blks_hit FROM pg_stat_database WHERE datname = current_database()"
    psql_q -c "INSERT INTO public.snap SELECT $run + 1, relid::regclass::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
}
for i in $(seq 1 "$N"); do
    echo "SELECT shop.checkout((SELECT cart_id FROM shop.cart WHERE customer_id = $((1000 + i))), 'tok_visa', 'key-$i');"
done >"$DIR/shop.sql"
for i in $(seq 1 "$N"); do
    echo "SELECT public.naive_checkout($((3000000 + i)), $((10001 + (i * 7) % 3333)), $((13334 + (i * 11) % 3333)), $((16667 + (i * 13) % 3333)));"
done >"$DIR/naive.sql"
measure 10 "$DIR/shop.sql"
measure 20 "$DIR/naive.sql"

psql_q -P pager=off <<SQL
\echo 'per checkout (N = $N)'
SELECT CASE a.run WHEN 10 THEN 'shop.checkout' ELSE 'minimal SQL checkout' END AS what,
       round((b.at - a.at) / $N) AS wal_bytes,
       round(w.fpi / $N) AS of_which_fpi_bytes,
       round(w.recs::numeric / $N, 1) AS wal_records,
       round((hb.hit - ha.hit)::numeric / $N, 1) AS buffer_hits
  FROM public.lsn a JOIN public.lsn b ON b.run = a.run + 1
       JOIN public.hits ha ON ha.run = a.run JOIN public.hits hb ON hb.run = b.run,
       LATERAL (SELECT sum(fpi_size) AS fpi, sum(count) AS recs
                  FROM pg_get_wal_stats(a.at, b.at, false)) w
 WHERE a.run IN (10, 20) ORDER BY a.run;
\echo 'WAL by resource manager, per checkout'
SELECT CASE a.run WHEN 10 THEN 'shop' ELSE 'minimal' END AS what, w."resource_manager/record_type" AS rmgr,
       round(w.count::numeric / $N, 2) AS records, round(w.record_size::numeric / $N) AS record_bytes,
       round(w.fpi_size::numeric / $N) AS fpi_bytes
  FROM public.lsn a JOIN public.lsn b ON b.run = a.run + 1,
       LATERAL pg_get_wal_stats(a.at, b.at, false) w
 WHERE a.run IN (10, 20) AND w.count > 0 ORDER BY a.run, w.combined_size DESC;
\echo 'WAL by record type, per checkout (pg_waldump --stats=record)'
SELECT CASE a.run WHEN 10 THEN 'shop' ELSE 'minimal' END AS what, w."resource_manager/record_type" AS record_type,
       round(w.count::numeric / $N, 2) AS records, round(w.record_size::numeric / $N) AS record_bytes,
       round(w.fpi_size::numeric / $N) AS fpi_bytes
  FROM public.lsn a JOIN public.lsn b ON b.run = a.run + 1,
       LATERAL pg_get_wal_stats(a.at, b.at, true) w
 WHERE a.run IN (10, 20) AND w.count > 0 ORDER BY a.run, w.combined_size DESC;
\echo 'WAL records and bytes by relation (first block reference of each record), per checkout'
WITH r AS (
  SELECT a.run, x.record_length, x.fpi_length, x.resource_manager, x.record_type,
         substring(x.block_ref from 'rel \d+/\d+/(\d+)')::oid AS filenode
    FROM public.lsn a JOIN public.lsn b ON b.run = a.run + 1,
         LATERAL pg_get_wal_records_info(a.at, b.at) x
   WHERE a.run IN (10, 20))
SELECT CASE r.run WHEN 10 THEN 'shop' ELSE 'minimal' END AS what,
       coalesce(c.relname, r.filenode::text, '(no block)') AS rel,
       string_agg(DISTINCT r.resource_manager || '/' || r.record_type, ' ') AS kinds,
       round(count(*)::numeric / $N, 2) AS records, round(sum(r.record_length)::numeric / $N) AS bytes,
       round(sum(r.fpi_length)::numeric / $N) AS fpi_bytes
  FROM r LEFT JOIN pg_class c ON c.relfilenode = r.filenode
 GROUP BY 1, 2, r.run ORDER BY r.run, sum(r.record_length) DESC;
\echo 'rows per checkout (pg_stat_user_tables)'
SELECT CASE a.run WHEN 10 THEN 'shop' ELSE 'minimal' END AS what, a.rel,
       round((b.n_tup_ins - a.n_tup_ins)::numeric / $N, 2) AS ins,
       round((b.n_tup_upd - a.n_tup_upd)::numeric / $N, 2) AS upd,
       round((b.n_tup_hot_upd - a.n_tup_hot_upd)::numeric / $N, 2) AS hot,
       round((b.n_tup_del - a.n_tup_del)::numeric / $N, 2) AS del
  FROM public.snap a JOIN public.snap b ON b.rel = a.rel AND b.run = a.run + 1
 WHERE a.run IN (10, 20)
   AND (b.n_tup_ins, b.n_tup_upd, b.n_tup_del) IS DISTINCT FROM (a.n_tup_ins, a.n_tup_upd, a.n_tup_del)
 ORDER BY a.run, a.rel;
SQL
