#!/usr/bin/env bash
# hot_waits.sh: where the hot product's latency goes.  64 clients (pgbench
# -M prepared) of shop.reserve(1, 1) on one product with 64 buckets for SECS
# seconds (default 12), synchronous_commit on, in a private cluster; the
# wait events of the active reserve calls are sampled from pg_stat_activity
# every 0.1 s, and pg_stat_statements gives the time inside the statements
# (the rest of a transaction's latency is its commit and the client round
# trip).  EXTRA_CONF: one more postgresql.conf line; EXTRA_SQL: run before
# the product is stocked.
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
DIR="$TOP/tmp_check/hot_waits"
PORT=$(free_port hot_waits)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop,pg_stat_statements'" "shared_buffers = 1GB" \
  "pg_stat_statements.track = all" "max_wal_size = 8GB" "wal_buffers = 64MB" "checkpoint_timeout = 30min" "shop.sweep_interval = 3600" ${EXTRA_CONF:+"$EXTRA_CONF"}
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
"$PGBIN/createdb" hot
export PGDATABASE=hot
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE EXTENSION pg_stat_statements;
SELECT shop.product_upsert('HOT-B', 'hot', 9900);
${EXTRA_SQL:-}
SELECT shop.stock_set(1, 500000000), shop.stock_set_buckets(1, 64);
SQL
echo "SELECT shop.reserve(1, 1, 'bench', '1 hour');" > "$DIR/r.sql"
"$PGBIN/psql" -X -q -c "SELECT pg_stat_statements_reset()" >/dev/null
( for i in $(seq 1 100); do "$PGBIN/psql" -X -At -c "SELECT coalesce(wait_event_type,'CPU') || ':' || coalesce(wait_event,'-') FROM pg_stat_activity WHERE backend_type = 'client backend' AND query LIKE '%shop.reserve%' AND state = 'active'"; sleep 0.1; done ) > "$DIR/waits.txt" &
"$PGBIN/pgbench" -n -M prepared -c 64 -j 4 -T ${SECS:-12} -r -P 3 -f "$DIR/r.sql" --log --log-prefix="$DIR/lat" 2>&1 | tail -12
wait
echo "== wait events (samples)"; sort "$DIR/waits.txt" | uniq -c | sort -rn | head -12
cat "$DIR"/lat* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print "n", NR, "p50", a[int(NR*0.5)]/1000, "p95", a[int(NR*0.95)]/1000, "p99", a[int(NR*0.99)]/1000, "max", a[NR]/1000}'
"$PGBIN/psql" -X -c "SELECT calls, round(mean_exec_time::numeric,3) mean_ms, round(max_exec_time::numeric,1) max_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 90) q FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8"
"$PGBIN/psql" -X -At -c "SELECT count(*), sum(qty) FROM shop.reservation WHERE status='held'" -c "SELECT sum(reserved) FROM shop.stock WHERE product_id=1"
rm -f "$DIR"/lat*
