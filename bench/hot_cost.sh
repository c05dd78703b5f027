#!/usr/bin/env bash
# hot_cost.sh: what one hold on a hot product costs, counted rather than
# timed (timings on a shared machine are noise).  One product with 64
# buckets (shop.stock_set_buckets), shop.reserve(p, 1, 'bench', '1 hour')
# from one connection,
# in a store of 10,000 other products with stock.
#   - instructions per hold: a single-user backend under callgrind runs N1,
#     then (on a fresh copy of the same data directory) N1 + N2 holds; the
#     figure is the difference of the two totals over N2;
#   - buffer hits, WAL records, WAL bytes and full-page images per hold:
#     a normal cluster runs a warm-up of N1 holds, then N2 holds, read from
#     pg_stat_statements (shared_blks_hit of the reserve call, nested
#     statements included), pg_stat_wal and pg_current_wal_lsn() around the
#     N2 holds.
# Usage: bench/hot_cost.sh [N1 [N2]].  EXTRA_SQL: run once on the store
# after it is stocked.  The callgrind files stay in tmp_check/hot_cost/.
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
N1=${1:-50}
N2=${2:-500}
DIR="$TOP/tmp_check/hot_cost"
PORT=$(free_port hot_cost)
rm -rf "$DIR"
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop,pg_stat_statements'" \
    "pg_stat_statements.track = top" "shop.sweep_interval = 3600" \
    "max_wal_size = 4GB" "checkpoint_timeout = 30min" "synchronous_commit = on"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
"$PGBIN/createdb" hc
export PGDATABASE=hc
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE EXTENSION pg_stat_statements;
SELECT shop.product_upsert('HOT-C', 'hot', 9900);
SELECT shop.stock_set(1, 500000000), shop.stock_set_buckets(1, 64);
-- a store around it, so that plans see a stock table of a real size
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'HC-' || g, 'Hot cost product ' || g, 100 FROM generate_series(2, 10001) g;
SELECT count(shop.stock_set(g, 1000)) FROM generate_series(2, 10001) g;
${EXTRA_SQL:-}
VACUUM ANALYZE;
SQL
cluster_stop "$DIR"
cp -a "$DIR/data" "$DIR/pristine"

# buffers and WAL, on a running cluster
cluster_start "$DIR"
for i in $(seq 1 "$N1"); do echo "SELECT shop.reserve(1, 1, 'bench', '1 hour');"; done >"$DIR/warm.sql"
for i in $(seq 1 "$N2"); do echo "SELECT shop.reserve(1, 1, 'bench', '1 hour');"; done >"$DIR/run.sql"
"$PGBIN/psql" -X -q -o /dev/null -f "$DIR/warm.sql"
"$PGBIN/psql" -X -q -At -o /dev/null -c "SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal')"
lsn0=$("$PGBIN/psql" -X -At -c "SELECT pg_current_wal_lsn()")
"$PGBIN/psql" -X -q -o /dev/null -f "$DIR/run.sql"
"$PGBIN/psql" -X -At -F ' ' <<SQL
SELECT 'bytes of WAL per hold', round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / $N2, 1);
SELECT 'WAL records / full-page images / bytes per hold (pg_stat_wal)',
       round(wal_records::numeric / $N2, 2), round(wal_fpi::numeric / $N2, 3), round(wal_bytes / $N2, 1)
  FROM pg_stat_wal;
SELECT 'shared buffer hits / reads / dirtied per hold', round(shared_blks_hit::numeric / calls, 1),
       round(shared_blks_read::numeric / calls, 2), round(shared_blks_dirtied::numeric / calls, 2)
  FROM pg_stat_statements WHERE query LIKE 'SELECT shop.reserve(%' ;
SQL
cluster_stop "$DIR"

# instructions, in a single-user backend under callgrind
count() {
    local n=$1 d="$DIR/copy$1"
    rm -rf "$d"
    cp -a "$DIR/pristine" "$d"
    for i in $(seq 1 "$n"); do echo "SELECT shop.reserve(1, 1, 'bench', '1 hour');"; done >"$DIR/q$n.sql"
    chown -R postgres: "$d" "$DIR" 2>/dev/null || true
    as_owner valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.$n" \
        "$PGBIN/postgres" --single -D "$d" -c shop.sweep_interval=3600 hc <"$DIR/q$n.sql" \
        >"$DIR/out$n.log" 2>&1
    [ "$(grep -c '1: reserve = ' "$DIR/out$n.log")" = "$n" ] || { tail -20 "$DIR/out$n.log" >&2; return 1; }
    grep -m1 '^summary:\|^totals:' "$DIR/callgrind.$n" | awk '{print $2}'
}
t1=$(count "$N1")
t2=$(count $((N1 + N2)))
echo "instructions per hold: $(( (t2 - t1) / N2 )) (totals $t1, $t2)"
