#!/usr/bin/env bash
# checkout_where.sh: where the whole machine's work per checkout goes, at 16
# clients, shop.checkout against the bench's minimal SQL checkout in the same
# cluster and the same minutes (issue 11).  For each run of SECS seconds:
#   - CPU (utime + stime, /proc/<pid>/stat sampled every 0.1 s by
#     bench/proc_cpu.py) of every process of the cluster, summed per kind
#     (client backends, walwriter, checkpointer, background writer,
#     autovacuum, shop's workers), and pgbench's own (GNU time), per
#     transaction;
#   - pg_stat_wal (records, full-page images, bytes) per transaction;
#   - buffers: pg_stat_statements' shared blocks hit, read, dirtied and
#     written by the statements, pg_stat_bgwriter's writes, per transaction;
#   - wait events of the active client backends, sampled every 50 ms.
# The cluster has make bench's settings (bench/run.sh), plus
# pg_stat_statements; the store is bench/workloads/checkout.sh's (10,000
# products for each side, 3-line carts), warmed up, VACUUM ANALYZE, then a
# CHECKPOINT before each run, so both sides start from the same point of
# the checkpoint cycle.
# SWEEP_INTERVAL (default 60, the product's default) is the sweeper's
# shop.sweep_interval: 3600 keeps its round (which refreshes the
# recommendations from the new orders) out of the runs.
# Usage: bench/checkout_where.sh [SECS]    (default 15)
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
SECS=${1:-15}
CLIENTS=16
NPROD=10000
PER_CLIENT=$((SECS * 250))
DIR="$TOP/tmp_check/checkout_where"
PORT=$(free_port checkout_where)
mem_mb=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
sb_mb=$((mem_mb / 4)); [ "$sb_mb" -gt 4096 ] && sb_mb=4096
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop, pg_stat_statements'" \
    "shared_buffers = ${sb_mb}MB" "effective_cache_size = $((mem_mb * 3 / 4))MB" \
    "work_mem = 64MB" "maintenance_work_mem = 1GB" "max_wal_size = 8GB" "min_wal_size = 1GB" \
    "checkpoint_timeout = 30min" "checkpoint_completion_target = 0.9" "wal_buffers = 64MB" \
    "synchronous_commit = on" "random_page_cost = 1.1" "max_worker_processes = 16" \
    "autovacuum_vacuum_scale_factor = 0.05" "jit = off" "log_checkpoints = on" \
    "pg_stat_statements.track = top" "shop.sweep_interval = ${SWEEP_INTERVAL:-60}"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
export PGDATABASE=cw
"$PGBIN/createdb" cw
psql_q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
BENCH_STORE_SQL=$(cd "$(dirname "$0")" && pwd)/checkout_store.sql   # products, stock, naive_checkout
psql_q >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE EXTENSION pg_stat_statements;
\set products $((2 * NPROD))
\i $BENCH_STORE_SQL
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
SELECT gen_random_uuid(), r * 100000000 + c * 1000000 + n, now() + interval '1 day'
  FROM generate_series(0, 1) r, generate_series(0, $CLIENTS - 1) c, generate_series(1, $PER_CLIENT) n;
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
SELECT c.cart_id, p.pid, 1 + (p.k = 1)::int, 100
  FROM shop.cart c,
       LATERAL (SELECT k, 1 + ((hashint8(c.customer_id)::bigint + 2147483648 + k * ($NPROD / 3)) % $NPROD) AS pid
                  FROM generate_series(1, 3) k) p
ON CONFLICT DO NOTHING;
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

{
    echo "SET application_name = 'wait_sampler';"
    echo "\\copy (SELECT pg_backend_pid()) TO '$T/sampler_pid'"
    echo "CREATE TEMP TABLE w (n int, wtype text, wevent text);"
    echo "CREATE TEMP TABLE t (n int, rel text, granted boolean);"
    for i in $(seq 1 $((SECS * 20))); do
        echo "INSERT INTO w SELECT $i, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, 'running') FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active' AND application_name = 'pgbench';"
        echo "INSERT INTO t SELECT $i, l.relation::regclass::text, l.granted FROM pg_locks l WHERE l.locktype = 'tuple';"
        echo "SELECT pg_sleep(0.05);"
    done
    echo "\\copy (SELECT wtype, wevent, count(*) FROM w GROUP BY 1, 2 ORDER BY 3 DESC) TO '$T/waits.tsv'"
    echo "\\copy (SELECT count(DISTINCT n) FROM w) TO '$T/nsamples.txt'"
    echo "\\copy (SELECT rel, count(*), count(*) FILTER (WHERE NOT granted) FROM t GROUP BY 1 ORDER BY 2 DESC) TO '$T/tuplelocks.tsv'"
} >"$T/sampler.sql"

snap() {   # snap FILE: the cumulative counters, one "name value" a line
    psql_q -F ' ' >"$1" <<'SQL'
SELECT 'wal_records', wal_records FROM pg_stat_wal
UNION ALL SELECT 'wal_fpi', wal_fpi FROM pg_stat_wal
UNION ALL SELECT 'wal_bytes', wal_bytes FROM pg_stat_wal
UNION ALL SELECT 'wal_write', wal_write FROM pg_stat_wal
UNION ALL SELECT 'wal_sync', wal_sync FROM pg_stat_wal
UNION ALL SELECT 'bgw_checkpoint_writes', buffers_checkpoint FROM pg_stat_bgwriter
UNION ALL SELECT 'bgw_clean_writes', buffers_clean FROM pg_stat_bgwriter
UNION ALL SELECT 'backend_writes', buffers_backend FROM pg_stat_bgwriter
UNION ALL SELECT 'buffers_alloc', buffers_alloc FROM pg_stat_bgwriter
UNION ALL SELECT 'stmt_blks_hit', sum(shared_blks_hit) FROM pg_stat_statements
UNION ALL SELECT 'stmt_blks_read', sum(shared_blks_read) FROM pg_stat_statements
UNION ALL SELECT 'stmt_blks_dirtied', sum(shared_blks_dirtied) FROM pg_stat_statements
UNION ALL SELECT 'stmt_blks_written', sum(shared_blks_written) FROM pg_stat_statements
UNION ALL SELECT 'heap_idx_blks_read', sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0) + coalesce(toast_blks_read, 0)) FROM pg_statio_user_tables
UNION ALL SELECT 'autovacuum_runs', sum(autovacuum_count + autoanalyze_count) FROM pg_stat_user_tables
SQL
}

pm=$(head -1 "$DIR/data/postmaster.pid")
PY=$(python3 -c 'import sys; print(sys.executable)')
measure() {   # measure LABEL SCRIPT [pgbench args]
    local label=$1 script=$2; shift 2
    local r="$T/$label"
    mkdir -p "$r"; chmod 777 "$r"
    psql_q -c "CHECKPOINT" -c "SELECT pg_stat_reset_shared('wal')" >/dev/null
    sleep 1
    psql_q -c "SELECT pg_stat_statements_reset()" -c "SELECT pg_stat_force_next_flush()" >/dev/null
    snap "$r/before"
    rm -f "$r/stop" "$r/stop.ready"
    "$PY" "$TOP/bench/proc_cpu.py" "$pm" "$r/stop" "$r/cpu.tsv" &
    local sp=$!
    while [ ! -e "$r/stop.ready" ]; do sleep 0.1; done
    sed "s#$T/#$r/#g" "$T/sampler.sql" | psql_q >/dev/null &
    local wp=$!
    /usr/bin/time -f "%U %S" -o "$r/pgbench_time" \
        "$PGBIN/pgbench" -n -M prepared -c $CLIENTS -j 2 -T "$SECS" -f "$script" "$@" >"$r/pgbench.txt" 2>&1 || true
    touch "$r/stop"
    wait "$sp"
    wait "$wp" || true
    psql_q -c "SELECT pg_stat_force_next_flush()" >/dev/null
    sleep 1
    snap "$r/after"
    psql_q -F ' | ' >"$r/statements" <<'SQL'
SELECT calls, rows, wal_records, wal_fpi, wal_bytes, shared_blks_hit, shared_blks_dirtied,
       round(total_exec_time::numeric, 1), left(regexp_replace(query, '\s+', ' ', 'g'), 70)
  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8
SQL
}
measure baseline "$T/naive.sql" --max-tries=5
measure shop "$T/checkout.sql" -D n=0 -D run=1

report() {
    local r="$T/$1"
    local n tps
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$r/pgbench.txt")
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$r/pgbench.txt" | tail -1)
    echo "### $1: $n transactions in $SECS s, $tps/s"
    echo
    echo "| per transaction | value |"
    echo "|---|---|"
    # CPU: ticks of 10 ms; the wait sampler's own backend is left out
    awk -F'\t' -v n="$n" -v skip="$(cat "$r/sampler_pid")" '$3 != skip { t[$1] += $2; all += $2 }
        END { for (k in t) printf "| CPU ms, %s | %.3f |\n", k, t[k] * 10 / n;
              printf "| CPU ms, all server processes | %.3f |\n", all * 10 / n }' "$r/cpu.tsv" | sort
    read -r u s <"$r/pgbench_time"
    awk -v u="$u" -v s="$s" -v n="$n" 'BEGIN { printf "| CPU ms, pgbench | %.3f |\n", (u + s) * 1000 / n }'
    join <(sort "$r/before") <(sort "$r/after") |
        awk -v n="$n" '{ printf "| %s | %.2f |\n", $1, ($3 - $2) / n }'
    echo
    echo "Statements (pg_stat_statements, top level, the 8 longest in total):"
    echo
    echo "| calls | rows | wal_records | wal_fpi | wal_bytes | blks hit | blks dirtied | ms | query |"
    echo "|---|---|---|---|---|---|---|---|---|"
    sed 's/^/| /; s/$/ |/' "$r/statements"
    echo
    echo "Wait events of active client backends ($(cat "$r/nsamples.txt") samples every 50 ms; share of backend-samples):"
    echo
    echo "| wait_event_type | wait_event | share |"
    echo "|---|---|---|"
    awk -F'\t' '{ c[NR] = $3; a[NR] = $1; b[NR] = $2; tot += $3 }
        END { for (i = 1; i <= NR; i++) if (c[i] / tot >= 0.005) printf "| %s | %s | %.1f%% |\n", a[i], b[i], 100 * c[i] / tot }' "$r/waits.tsv"
    echo
    echo "Tuple locks seen in pg_locks (the row a second waiter queues on; the first waits on the holder's transactionid): relation, samples held or awaited, of which awaited:"
    echo
    sed 's/\t/: /; s/\t/, awaited /; s/^/- /' "$r/tuplelocks.tsv"
    echo
}
echo "## checkout_where ($(date -u '+%Y-%m-%d %H:%M UTC'), $CLIENTS clients, synchronous_commit on, $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo export))"
echo
echo "uptime at the end: $(uptime)"
echo
report baseline
report shop
