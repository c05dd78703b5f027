# shellcheck shell=bash
# bench/lib.sh: helpers for bench/workloads/*.sh.  Source it:
#
#     . "$TOP/bench/lib.sh"
#
# A workload runs with PGHOST PGPORT PGUSER PGDATABASE set (database "bench",
# shop created, synthetic catalog loaded, every product stocked), plus
# BENCH_SCALE BENCH_SEED BENCH_TMP (a scratch directory of its own)
# SHARED_DATA (../shared/data, or empty) PGBIN TOP.  It prints one Markdown
# section (## heading, text, tables) on stdout; diagnostics go to stderr.
# A non-zero exit marks the workload failed in the report.
#
# Measurement helpers.  Both print ONE tab-separated row on stdout
#
#     name  clients  tps  p50_ms  p95_ms  p99_ms  ok  failed
#
# (the columns of BENCH_COLUMNS) and set the shell variables BENCH_TPS
# BENCH_P50 BENCH_P95 BENCH_P99 BENCH_OK BENCH_FAILED, so the usual pattern
# is to append rows to a TSV file and print it as a table at the end:
#
#     rows=$BENCH_TMP/rows.tsv
#     bench_pgbench  "shop.browse" 1 20 "$BENCH_TMP/browse.sql" >>"$rows"
#     bench_sql_latency "baseline: plain SELECT" "$BENCH_TMP/q.sql" >>"$rows"
#     bench_md_table_vs "baseline: plain SELECT" <"$rows"
#
# bench_pgbench NAME CLIENTS SECONDS SCRIPT_FILE [extra pgbench args...]
#     Runs pgbench -n -M prepared -c CLIENTS -j min(CLIENTS, nproc)
#     -T SECONDS -f SCRIPT_FILE with per-transaction logging (-l).
#     tps is pgbench's own figure (successful transactions per second,
#     excluding connection time); p50/p95/p99 are computed from the
#     per-transaction log, nearest-rank, in milliseconds; ok counts logged
#     successful transactions, failed counts transactions pgbench logged as
#     failed (serialization/deadlock after retries are exhausted) plus one
#     per client that aborted on an error.  Extra args go to pgbench as-is
#     (e.g. -D pid=42, --rate, -M simple).  pgbench's full output is kept in
#     $BENCH_TMP/NAME.pgbench.txt.
#
# bench_sql_latency NAME QUERIES_FILE
#     Runs the SQL statements of QUERIES_FILE (one per line, each ending
#     with ';') one after the other on one psql connection with \timing,
#     and reports the latency percentiles of the statements (client-observed,
#     simple query protocol, result rows fetched and discarded).  By default
#     the file is run once first, in the same session, to warm the cache and the connection (BENCH_WARMUP=0 skips
#     that).  tps = statements / sum of latencies.  Statements that fail are
#     counted in failed and do not stop the run.
#
# bench_md_table [< TSV]
#     Prints a TSV (first line = header) as a Markdown table.  Rows of the
#     measurement helpers have no header: bench_md_table adds BENCH_COLUMNS
#     when the first line's third field is a number.
#
# bench_md_table_vs BASELINE_NAME [BASELINE_NAME...] [< TSV of measurement rows]
#     Like bench_md_table for measurement rows, plus, for each named
#     baseline row, columns "p50 vs NAME" (baseline p50 / row p50: 3.0x
#     means three times faster than the baseline) and "tps vs NAME"
#     (row tps / baseline tps).
#
# bench_ratio A B         prints A/B with two decimals ("n/a" when B is 0 or
#                         either is not a number)
# bench_psql ARGS...      psql -X -q -At -v ON_ERROR_STOP=1 ARGS (on $PGDATABASE)
# bench_time CMD...       runs CMD, prints its wall time in seconds (3 decimals)
#                         on stdout after CMD's own output; sets BENCH_SECONDS
# bench_size RELATION     pg_size_pretty(pg_total_relation_size(RELATION))
# bench_note TEXT...      prints a line of text to stderr with the workload name

BENCH_COLUMNS=$'name\tclients\ttps\tp50_ms\tp95_ms\tp99_ms\tok\tfailed'
BENCH_TMP=${BENCH_TMP:-$(mktemp -d)}
BENCH_WARMUP=${BENCH_WARMUP:-1}
if [ -n "${PGBIN:-}" ]; then
    _BENCH_PSQL="$PGBIN/psql"
    _BENCH_PGBENCH="$PGBIN/pgbench"
else
    _BENCH_PSQL=psql
    _BENCH_PGBENCH=pgbench
fi

bench_note() {
    echo "[$(basename "${0%.sh}")] $*" >&2
}

bench_psql() {
    "$_BENCH_PSQL" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# A file-name-safe version of a measurement name.
_bench_slug() {
    echo "$1" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-60
}

# _bench_percentiles: read one number (latency in ms) per line on stdin,
# print "n p50 p95 p99 sum" (nearest-rank percentiles).
_bench_percentiles() {
    LC_ALL=C sort -g | awk '
        { v[NR] = $1; s += $1 }
        function rank(p,  r) { r = int(p * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; return v[r] }
        END {
            if (NR == 0) { print 0, "n/a", "n/a", "n/a", 0; exit }
            printf "%d %.3f %.3f %.3f %.6f\n", NR, rank(0.50), rank(0.95), rank(0.99), s
        }'
}

bench_pgbench() {
    local name=$1 clients=$2 seconds=$3 script=$4
    shift 4
    local slug ncpu jobs out logp rc
    slug=$(_bench_slug "$name")
    ncpu=$(nproc 2>/dev/null || echo 2)
    jobs=$clients
    [ "$jobs" -gt "$ncpu" ] && jobs=$ncpu
    out="$BENCH_TMP/$slug.pgbench.txt"
    logp="$BENCH_TMP/pgbench_log.$slug"
    rm -f "$logp".*
    "$_BENCH_PGBENCH" -n -M prepared -c "$clients" -j "$jobs" -T "$seconds" \
        -l --log-prefix="$logp" -f "$script" "$@" >"$out" 2>&1
    rc=$?
    local tps aborted stats n p50 p95 p99 sum failed_logged
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | tail -1)
    [ -n "$tps" ] || tps=0
    aborted=$(grep -c 'aborted in command\|^pgbench: error: client .* aborted' "$out" || true)
    # Log lines: client_id transaction_no time script_no epoch usec [lag];
    # time is microseconds, or "failed"/"skipped".
    failed_logged=$(cat "$logp".* 2>/dev/null | awk '$3 == "failed" { n++ } END { print n + 0 }')
    stats=$(cat "$logp".* 2>/dev/null | awk '$3 ~ /^[0-9]+$/ { printf "%.3f\n", $3 / 1000.0 }' | _bench_percentiles)
    read -r n p50 p95 p99 sum <<<"$stats"
    if [ "$rc" -ne 0 ] && [ "$n" -eq 0 ]; then
        bench_note "pgbench for '$name' failed (exit $rc):"
        tail -5 "$out" | sed 's/^/    /' >&2
    elif [ "$aborted" -gt 0 ]; then
        bench_note "$aborted client(s) of '$name' aborted; see $out"
        grep -m 3 'ERROR\|error' "$out" | sed 's/^/    /' >&2 || true
    fi
    rm -f "$logp".*
    [ -n "$n" ] || n=0
    BENCH_TPS=$(printf '%.1f' "$tps")
    BENCH_P50=$p50 BENCH_P95=$p95 BENCH_P99=$p99
    BENCH_OK=$n BENCH_FAILED=$((failed_logged + aborted))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$clients" "$BENCH_TPS" \
        "$BENCH_P50" "$BENCH_P95" "$BENCH_P99" "$BENCH_OK" "$BENCH_FAILED"
}

bench_sql_latency() {
    local name=$1 file=$2
    local slug out err stats n p50 p95 p99 sum failed
    slug=$(_bench_slug "$name")
    out="$BENCH_TMP/$slug.timing.txt"
    err="$BENCH_TMP/$slug.errors.txt"
    # The warm-up pass runs in the same session as the timed one, so the
    # timings are those of a warm connection (as from a pool): the first
    # statement of a session also pays for loading caches and compiling
    # PL/pgSQL functions, which is not what the workload compares.
    # \timing prints "Time: X ms" on stdout even when results go to \o.
    {
        echo '\o /dev/null'
        if [ "$BENCH_WARMUP" != 0 ]; then cat "$file"; fi
        echo '\warn BENCH_TIMED'
        echo '\timing on'
        cat "$file"
    } | "$_BENCH_PSQL" -X -q -v ON_ERROR_STOP=0 >"$out" 2>"$err"
    failed=$(sed '1,/^BENCH_TIMED$/d' "$err" | grep -c '^\(psql:.*\)\?ERROR:' || true)
    stats=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$out" | _bench_percentiles)
    read -r n p50 p95 p99 sum <<<"$stats"
    if [ "$failed" -gt 0 ]; then
        bench_note "$failed statement(s) of '$name' failed, e.g.:"
        grep -m 3 'ERROR' "$err" | sed 's/^/    /' >&2
    fi
    # A failed statement prints a Time: line too; count only the rest as ok.
    BENCH_TPS=$(awk -v n="$n" -v s="$sum" 'BEGIN { if (s > 0) printf "%.1f", n * 1000.0 / s; else print 0 }')
    BENCH_P50=$p50 BENCH_P95=$p95 BENCH_P99=$p99
    BENCH_OK=$((n - failed < 0 ? 0 : n - failed)) BENCH_FAILED=$failed
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" 1 "$BENCH_TPS" \
        "$BENCH_P50" "$BENCH_P95" "$BENCH_P99" "$BENCH_OK" "$BENCH_FAILED"
}

bench_md_table() {
    awk -F'\t' -v cols="$BENCH_COLUMNS" '
        function row(n, f,   i, s) { s = "|"; for (i = 1; i <= n; i++) s = s " " f[i] " |"; print s }
        function sep(n,   i, s) { s = "|"; for (i = 1; i <= n; i++) s = s "---|"; print s }
        NR == 1 && $3 ~ /^[0-9.]+$/ { nh = split(cols, h, "\t"); row(nh, h); sep(nh) }
        NR == 1 && !($3 ~ /^[0-9.]+$/) { for (i = 1; i <= NF; i++) h[i] = $i; row(NF, h); sep(NF); next }
        { for (i = 1; i <= NF; i++) f[i] = $i; row(NF, f) }'
}

bench_md_table_vs() {
    local bases
    bases=$(printf '%s\n' "$@")
    awk -F'\t' -v cols="$BENCH_COLUMNS" -v bases="$bases" '
        { line[NR] = $0; for (i = 1; i <= NF; i++) cell[NR, i] = $i; nf[NR] = NF; byname[$1] = NR }
        function ratio(a, b,   r) {
            if (!(b + 0 > 0 && a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/)) return "n/a"
            r = a / b
            return r >= 100 ? sprintf("%.0fx", r) : r >= 0.1 ? sprintf("%.2fx", r) : sprintf("%.2gx", r)
        }
        END {
            nb = split(bases, base, "\n")
            nh = split(cols, h, "\t")
            s = "|"; for (i = 1; i <= nh; i++) s = s " " h[i] " |"
            for (b = 1; b <= nb; b++) s = s " p50 vs " base[b] " | tps vs " base[b] " |"
            print s
            s = "|"; for (i = 1; i <= nh + 2 * nb; i++) s = s "---|"; print s
            for (r = 1; r <= NR; r++) {
                s = "|"; for (i = 1; i <= nf[r]; i++) s = s " " cell[r, i] " |"
                for (b = 1; b <= nb; b++) {
                    k = byname[base[b]]
                    if (!k) { s = s " n/a | n/a |"; continue }
                    s = s " " ratio(cell[k, 4], cell[r, 4]) " | " ratio(cell[r, 3], cell[k, 3]) " |"
                }
                print s
            }
        }'
}

bench_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^-?[0-9.]+$/ && b ~ /^-?[0-9.]+$/ && b + 0 != 0) printf "%.2f\n", a / b; else print "n/a" }'
}

bench_time() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@"
    local rc=$?
    t1=$(date +%s.%N)
    BENCH_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    echo "$BENCH_SECONDS"
    return $rc
}

bench_size() {
    bench_psql -c "SELECT pg_size_pretty(pg_total_relation_size('$1'))"
}
