#!/usr/bin/env bash
# bench/run.sh: the `make bench` driver (see docs/bench.md).
#
#   1. private installation (tmp_install/) and a throwaway cluster under
#      tmp_bench/, tuned as docs/bench.md says;
#   2. database "bench" with shop (and rum, for baselines, when installed);
#   3. the synthetic catalog: BENCH_SCALE products (default 1,000,000) from
#      bench/model/icecat_model.tsv, deterministic by BENCH_SEED, every
#      product stocked, then VACUUM ANALYZE; load timings go to
#      $BENCH_LOAD_STATS for the catalog_load workload;
#   4. every executable bench/workloads/*.sh (sorted), or only those named
#      in BENCH_ONLY=a,b; each prints a Markdown section;
#   5. the report: bench/results/<YYYY-MM-DD>.md (<date>-<names>.md with
#      BENCH_ONLY).  A failed workload is reported there and does not stop
#      the others; the exit status is non-zero if any failed.
#
# Environment: BENCH_SCALE, BENCH_SEED (default 42), BENCH_ONLY,
# BENCH_SECONDS (pgbench run length for workloads that use it),
# BENCH_KEEP=1 (leave the cluster running at the end, to poke at it),
# BENCH_TIMEOUT (seconds one workload may take, default 1800),
# SHARED_DATA (default ../shared/data; empty: as if it were absent).
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
export TOP
. "$TOP/scripts/pgenv.sh"

BENCH_SCALE=${BENCH_SCALE:-1000000}
BENCH_SEED=${BENCH_SEED:-42}
BENCH_ONLY=${BENCH_ONLY:-}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
case "$BENCH_SCALE" in
    ''|*[!0-9]*) echo "bench: BENCH_SCALE must be a whole number of products" >&2; exit 2 ;;
esac
case "$BENCH_SEED" in
    ''|*[!0-9]*) echo "bench: BENCH_SEED must be a whole number" >&2; exit 2 ;;
esac
[ "$BENCH_SCALE" -ge 100 ] || { echo "bench: BENCH_SCALE must be at least 100" >&2; exit 2; }

# SHARED_DATA set in the environment wins (SHARED_DATA= runs as if
# ../shared were absent).
if [ "${SHARED_DATA+set}" = set ]; then
    if [ -n "$SHARED_DATA" ] && [ -d "$SHARED_DATA" ]; then
        SHARED_DATA=$(cd "$SHARED_DATA" && pwd)
    else
        SHARED_DATA=""
    fi
elif [ -d "$TOP/../shared/data" ]; then
    SHARED_DATA=$(cd "$TOP/../shared/data" && pwd)
else
    SHARED_DATA=""
fi
export BENCH_SCALE BENCH_SEED SHARED_DATA

log() { echo "bench: $*" >&2; }

# Workloads to run.
workloads=()
for w in "$TOP"/bench/workloads/*.sh; do
    [ -x "$w" ] || continue
    n=$(basename "$w" .sh)
    if [ -n "$BENCH_ONLY" ] && [[ ",$BENCH_ONLY," != *",$n,"* ]]; then
        continue
    fi
    workloads+=("$n")
done
if [ -n "$BENCH_ONLY" ]; then
    IFS=, read -r -a wanted <<<"$BENCH_ONLY"
    for n in "${wanted[@]}"; do
        [ -x "$TOP/bench/workloads/$n.sh" ] ||
            { echo "bench: no executable workload bench/workloads/$n.sh" >&2; exit 2; }
    done
fi

tmp_install_setup || { log "could not set up tmp_install"; exit 1; }
export PGBIN

# The cluster.  Memory settings scale with the machine but stop at the
# values documented in docs/bench.md.
BENCH_DIR="$TOP/tmp_bench"
mkdir -p "$BENCH_DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR"
DIR="$BENCH_DIR/cluster"
PORT=$(free_port bench)
mem_mb=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
sb_mb=$((mem_mb / 4)); [ "$sb_mb" -gt 4096 ] && sb_mb=4096
ecs_mb=$((mem_mb * 3 / 4))
ncpu=$(nproc)
SETTINGS=(
    "shared_preload_libraries = 'shop'"
    "shared_buffers = ${sb_mb}MB"
    "effective_cache_size = ${ecs_mb}MB"
    "work_mem = 64MB"
    "maintenance_work_mem = 1GB"
    "max_wal_size = 8GB"
    "min_wal_size = 1GB"
    "checkpoint_timeout = 30min"
    "checkpoint_completion_target = 0.9"
    "wal_buffers = 64MB"
    "synchronous_commit = on"
    "random_page_cost = 1.1"
    "effective_io_concurrency = 200"
    "max_worker_processes = 16"
    "max_parallel_workers_per_gather = $((ncpu / 2 > 0 ? ncpu / 2 : 1))"
    "max_parallel_maintenance_workers = $((ncpu / 2 > 0 ? ncpu / 2 : 1))"
    "autovacuum_vacuum_scale_factor = 0.05"
    "jit = off"
    "log_min_duration_statement = -1"
    "log_checkpoints = on"
)
# A cluster left running by an earlier BENCH_KEEP=1 run goes first.
cluster_stop "$DIR" fast
cluster_init "$DIR" "$PORT" "${SETTINGS[@]}" || exit 1
cluster_start "$DIR" || exit 1
if [ "$BENCH_KEEP" = 1 ]; then
    ASROOT=""; [ "$(id -u)" = 0 ] && ASROOT="runuser -u postgres -- "
    trap 'log "cluster left running: PGHOST=$DIR PGPORT=$PORT PGUSER=postgres psql bench; stop: ${ASROOT}$PGBIN/pg_ctl -D $DIR/data stop (or the next make bench stops it)"' EXIT
else
    trap 'cluster_stop "$DIR" fast' EXIT
fi
trap 'exit 130' INT TERM
cluster_env "$DIR" "$PORT"
export PGDATABASE=bench
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)

"$PGBIN/createdb" bench || exit 1
"${PSQL[@]}" -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE" || exit 1
have_rum=$("${PSQL[@]}" -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'rum'")
if [ "$have_rum" = 1 ]; then
    "${PSQL[@]}" -c "CREATE EXTENSION rum" || exit 1
fi

# The synthetic catalog.
export BENCH_LOAD_STATS="$BENCH_DIR/load_stats.tsv"
"$TOP/bench/load_catalog.sh" || { log "loading the synthetic catalog failed"; exit 1; }

# The commit measured: the one built and installed above (the tree may move
# on while the workloads run).
commit=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$TOP" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)")

# Workloads.
date_s=$(date -u +%Y-%m-%d)
mkdir -p "$TOP/bench/results"
if [ -n "$BENCH_ONLY" ]; then
    report="$TOP/bench/results/$date_s-$(echo "$BENCH_ONLY" | tr ',' '+').md"
else
    report="$TOP/bench/results/$date_s.md"
fi
body="$BENCH_DIR/body.md"
: >"$body"
failed=()
for n in "${workloads[@]}"; do
    wtmp="$BENCH_DIR/tmp/$n"
    rm -rf "$wtmp"; mkdir -p "$wtmp"
    [ "$(id -u)" = 0 ] && chown postgres: "$wtmp"
    log "workload $n ..."
    t0=$(date +%s)
    BENCH_TMP="$wtmp" PGDATABASE=bench timeout -k 10 "$BENCH_TIMEOUT" \
        "$TOP/bench/workloads/$n.sh" >"$wtmp/out.md" 2>"$wtmp/stderr.txt"
    rc=$?
    [ "$rc" -eq 124 ] && echo "bench: workload $n timed out after $BENCH_TIMEOUT s" >>"$wtmp/stderr.txt"
    t1=$(date +%s)
    if [ "$rc" -eq 0 ]; then
        cat "$wtmp/out.md" >>"$body"
        log "workload $n done in $((t1 - t0)) s"
    else
        failed+=("$n")
        {
            cat "$wtmp/out.md"
            echo
            echo "## $n: FAILED"
            echo
            echo "The workload exited with status $rc after $((t1 - t0)) s. Last lines of its stderr:"
            echo
            echo '```'
            tail -20 "$wtmp/stderr.txt"
            echo '```'
        } >>"$body"
        log "workload $n FAILED (exit $rc); see $wtmp/stderr.txt"
    fi
    echo >>"$body"
done

# The report: header, then the workloads' sections.
pgver=$("${PSQL[@]}" -c "SELECT version()")
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
{
    echo "# shop benchmark results, $date_s"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
    echo "| machine | $(nproc) CPUs (${cpu:-unknown}), $((mem_mb / 1024)) GB memory, $(uname -sr) |"
    echo "| PostgreSQL | $pgver |"
    echo "| git commit | $commit$dirty |"
    echo "| scale | $BENCH_SCALE products (seed $BENCH_SEED) |"
    echo "| workloads | ${workloads[*]:-none} |"
    echo "| failed | ${failed[*]:-none} |"
    echo "| rum baseline | $([ "$have_rum" = 1 ] && echo available || echo "not installed") |"
    echo "| settings | $(printf '%s; ' "${SETTINGS[@]}" | sed 's/; $//') |"
    echo
    if [ -z "$SHARED_DATA" ]; then
        echo "../shared/data was not found: the real-data workloads are skipped and"
        echo "everything uses the synthetic catalog (built from the committed model"
        echo "bench/model/icecat_model.tsv)."
    else
        echo "Real data: $SHARED_DATA. The synthetic catalog is built from the committed"
        echo "model bench/model/icecat_model.tsv (statistics of the Icecat catalog)."
    fi
    echo
    cat "$body"
} >"$report.tmp" && mv "$report.tmp" "$report"
log "report written to ${report#"$TOP"/}"
if [ ${#failed[@]} -gt 0 ]; then
    log "failed workloads: ${failed[*]}"
    exit 1
fi
exit 0
