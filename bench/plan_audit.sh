#!/usr/bin/env bash
# bench/plan_audit.sh: the plan of every statement shop's transactional core
# runs, on a store at production size (issue 11).
#
#   1. a throwaway cluster (tmp_bench/audit) from the private installation;
#   2. database "audit" with shop and a store made by bench/store_gen.sql:
#      AUDIT_PRODUCTS products (default 1,000,000), AUDIT_CUSTOMERS
#      customers (1,000,000), AUDIT_ORDERS orders (2,000,000) of which
#      AUDIT_UNSHIPPED (400,000) are paid and not shipped, holding about
#      1,000,000 reservations; VACUUM ANALYZE; then what a running shop
#      holds besides (bench/store_gen_live.sql): about 2,000,000 lines in
#      the open carts and an experiment with 2,000,000 impressions;
#   3. AUDIT_ROUNDS rounds (default 8, enough for the plan cache to settle
#      on generic plans) of every call (bench/plan_audit.sql), each round
#      followed by a consumer group's claim in a transaction of its own,
#      then shop.sweep(), with auto_explain logging every nested statement
#      with its actual rows, and each call's reads per relation counted
#      (public.audit_io: index entries, sequential scan tuples, buffers,
#      from the statistics counters; C index walks included);
#   4. the report: for each distinct statement, the plan of its last run:
#      which table and index each scan used and how many rows and index
#      entries it read; then for each call of the last round and the sweep,
#      the index entries and tuples it read per relation; a statement or
#      call that read more than AUDIT_LIMIT (1,000) from one relation is
#      flagged.  Written to bench/results/<date>-plan_audit.md, or to
#      AUDIT_REPORT (not committed by the script).
#
# AUDIT_KEEP=1 leaves the cluster running (the store takes a while to make:
# AUDIT_REUSE=1 then skips steps 1-2 on the next run, but for
# store_gen_live.sql on a store made without it; with AUDIT_REPORT_ONLY=1
# as well, only the report is made, from its log and public.audit_io).
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
export TOP
. "$TOP/scripts/pgenv.sh"

AUDIT_PRODUCTS=${AUDIT_PRODUCTS:-1000000}
AUDIT_CUSTOMERS=${AUDIT_CUSTOMERS:-1000000}
AUDIT_ORDERS=${AUDIT_ORDERS:-2000000}
AUDIT_UNSHIPPED=${AUDIT_UNSHIPPED:-400000}
AUDIT_ROUNDS=${AUDIT_ROUNDS:-8}
AUDIT_LIMIT=${AUDIT_LIMIT:-1000}
AUDIT_KEEP=${AUDIT_KEEP:-0}
AUDIT_REUSE=${AUDIT_REUSE:-0}
AUDIT_REPORT_ONLY=${AUDIT_REPORT_ONLY:-0}
log() { echo "plan_audit: $*" >&2; }

make -C "$TOP" --no-print-directory -s >/dev/null || exit 1
tmp_install_setup || exit 1
DIR="$TOP/tmp_bench/audit"
PORT=$(free_port audit)
mkdir -p "$TOP/tmp_bench"
[ "$(id -u)" = 0 ] && chown postgres: "$TOP/tmp_bench"
if [ "$AUDIT_REUSE" = 1 ] && [ -f "$DIR/data/postgresql.conf" ]; then
    PORT=$(sed -n 's/^port = //p' "$DIR/data/postgresql.conf" | head -1)
    cluster_stop "$DIR" fast
    cluster_start "$DIR" || exit 1
else
    [ "$AUDIT_REPORT_ONLY" = 1 ] && { log "AUDIT_REPORT_ONLY=1 needs a kept cluster (AUDIT_REUSE=1)"; exit 2; }
    AUDIT_REUSE=0
    cluster_stop "$DIR" fast
    cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 86400" \
        "shared_buffers = 2GB" "maintenance_work_mem = 1GB" "work_mem = 64MB" "max_wal_size = 8GB" \
        "checkpoint_timeout = 30min" "random_page_cost = 1.1" "jit = off" || exit 1
    cluster_start "$DIR" || exit 1
fi
if [ "$AUDIT_KEEP" = 1 ]; then
    trap 'log "cluster left running: PGHOST=$DIR PGPORT=$PORT PGUSER=postgres psql audit"' EXIT
else
    trap 'cluster_stop "$DIR" fast' EXIT
fi
cluster_env "$DIR" "$PORT"
export PGDATABASE=audit
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)

if [ "$AUDIT_REUSE" != 1 ]; then
    "$PGBIN/createdb" audit || exit 1
    "${PSQL[@]}" -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE" || exit 1
    log "making the store ($AUDIT_PRODUCTS products, $AUDIT_ORDERS orders, $AUDIT_UNSHIPPED unshipped)"
    t0=$(date +%s)
    "${PSQL[@]}" -v products="$AUDIT_PRODUCTS" -v customers="$AUDIT_CUSTOMERS" -v orders="$AUDIT_ORDERS" \
        -v unshipped="$AUDIT_UNSHIPPED" -v max_lines=4 -v live=1 -f "$TOP/bench/store_gen.sql" >&2 || exit 1
    log "store made in $(( $(date +%s) - t0 )) s"
elif [ "$AUDIT_REPORT_ONLY" != 1 ]; then
    # a kept store made before store_gen_live.sql existed gets it now (it
    # adds nothing to a store that has it)
    "${PSQL[@]}" -v products="$AUDIT_PRODUCTS" -v customers="$AUDIT_CUSTOMERS" \
        -f "$TOP/bench/store_gen_live.sql" >&2 || exit 1
fi
summary=$("${PSQL[@]}" -At -c "
    SELECT format('%s products, %s orders (%s paid and not shipped), %s reservations of which %s held, %s order lines, %s events, %s lines in open carts, %s experiment impressions',
        (SELECT count(*) FROM shop.product), (SELECT count(*) FROM shop.\"order\"),
        (SELECT count(*) FROM shop.\"order\" WHERE status = 'paid'), (SELECT count(*) FROM shop.reservation),
        (SELECT count(*) FROM shop.reservation WHERE status = 'held'), (SELECT count(*) FROM shop.order_line),
        (SELECT count(*) FROM shop.event), (SELECT count(*) FROM shop.cart_item),
        (SELECT count(*) FROM shop.experiment_impression))")
log "store: $summary"

# the rounds, with auto_explain.  Popularity is computed once before, from
# every order: the first computation on a store whose popularity never was
# rewrites every product row (a one-off after a bulk load, not what a sweep
# does on a running shop), and the audit is of the running shop.  (It is
# called directly: shop.refresh_recommendations() returns at once on a
# store with orders but no co-purchase log and no views, as store_gen.sql
# leaves it, and the first sweep of the rounds would do it instead.)
if [ "$AUDIT_REPORT_ONLY" = 1 ]; then
    # only the report, from the whole server log of a kept cluster
    start=1
else
    "${PSQL[@]}" -f "$TOP/bench/plan_audit.sql" || exit 1
    if [ "$AUDIT_REUSE" != 1 ]; then
        log "first popularity computation (not audited)"
        t0=$(date +%s)
        "${PSQL[@]}" -c "SELECT shop._popularity_refresh()" >/dev/null || exit 1
        log "first popularity computation took $(( $(date +%s) - t0 )) s"
    fi
    start=$(wc -l <"$DIR/server.log")
    {
        echo "LOAD 'auto_explain';"
        echo "SET auto_explain.log_min_duration = 0;"
        echo "SET auto_explain.log_nested_statements = on;"
        echo "SET auto_explain.log_analyze = on;"
        echo "SET auto_explain.log_timing = off;"
        echo "SET client_min_messages = warning;"
        echo "TRUNCATE public.audit_io;"
        run=$(date +%s)
        for i in $(seq 1 "$AUDIT_ROUNDS"); do
            echo "SELECT public.audit_round($i, $AUDIT_PRODUCTS, $AUDIT_CUSTOMERS, '$run');"
            echo "SELECT public.audit_events($i);"
        done
        echo "BEGIN;"
        echo "SELECT public.audit_mark($((AUDIT_ROUNDS + 1)), NULL);"
        echo "SELECT shop.sweep();"
        echo "SELECT public.audit_mark($((AUDIT_ROUNDS + 1)), 'sweep');"
        echo "COMMIT;"
    } | "${PSQL[@]}" >/dev/null || exit 1
fi

report=${AUDIT_REPORT:-"$TOP/bench/results/$(date -u +%Y-%m-%d)-plan_audit.md"}
mkdir -p "$TOP/bench/results"
tail -n +"$start" "$DIR/server.log" | AUDIT_LIMIT=$AUDIT_LIMIT perl -e '
    # Read auto_explain entries; keep the last plan of each query text.
    my (%plan, @order, $text, @lines, $in);
    sub done {
        return unless defined $text;
        $text = norm($text);
        push @order, $text unless exists $plan{$text};
        $plan{$text} = [@lines];
        undef $text; @lines = ();
    }
    # (the query text may span lines: it ends at the first plan node)
    my $intext;
    while (<STDIN>) {
        if (/ LOG:  duration: [\d.]+ ms  plan:/) { done(); $in = 1; $intext = 0; next; }
        if ($in && /^\tQuery Text: (.*)/) { $text = $1; $intext = 1; next; }
        if ($in && /^\t(.*)/) {
            my $l = $1;
            $intext = 0 if $l =~ /\(cost=[\d.]+\.\.[\d.]+ rows=/;
            if ($intext) { $text .= " $l"; } else { push @lines, $l; }
            next;
        }
        if ($in) { done(); $in = 0; }
    }
    sub norm { my $t = shift; $t =~ s/\s+/ /g; $t =~ s/^ | $//g; return $t; }
    done();
    my $limit = $ENV{AUDIT_LIMIT};
    my ($n, $flagged) = (0, 0);
    my @rows;
    for my $t (@order) {
        next if $t =~ /^SELECT public\.audit_(round|events)/ || $t =~ /^SELECT shop\.sweep\(\)$/;
        next if $t =~ /audit_(io|prev|counters|mark)\b|pg_stat_get_xact_/;    # the measuring, not shop
        my @p = @{$plan{$t}};
        my (@scans, $worst);
        $worst = 0;
        for (my $k = 0; $k < @p; $k++) {
            my $l = $p[$k];
            next unless $l =~ /(Seq Scan|Index Only Scan|Index Scan|Bitmap Index Scan|Bitmap Heap Scan|Tid Scan|Tid Range Scan)(?: Backward)?(?: using (\S+))? on (\S+)(?: \S+)?\s+\(.*actual rows=(\d+) loops=(\d+)/;
            my ($kind, $idx, $rel, $rows, $loops) = ($1, $2, $3, $4, $5);
            next if $kind eq "Bitmap Heap Scan";
            $idx = $rel if $kind eq "Bitmap Index Scan";
            my $removed = 0;
            for (my $j = $k + 1; $j < @p && $p[$j] !~ /->/; $j++) {
                $removed += $1 if $p[$j] =~ /Rows Removed by (?:Filter|Index Recheck): (\d+)/;
            }
            my $read = ($rows + $removed) * $loops;
            $worst = $read if $read > $worst;
            my $what = $kind eq "Seq Scan" ? "seq scan of $rel" : ($idx ? "$idx" : "$kind $rel");
            push @scans, "$what: $read";
        }
        next unless @scans;
        $n++;
        my $flag = $worst > $limit ? "**over $limit**" : "ok";
        $flagged++ if $worst > $limit;
        (my $short = $t) =~ s/\|/\\|/g;
        $short = substr($short, 0, 160) . " ..." if length($short) > 160;
        push @rows, "| `$short` | " . join("; ", @scans) . " | $flag |";
    }
    print "| statement | scans: index (or table), rows and entries read | verdict |\n|---|---|---|\n";
    print "$_\n" for @rows;
    print "\n$n statements, $flagged read more than $limit rows or entries from one relation.\n";
' >"$DIR/audit_table.md"

# the reads of each call, C included: public.audit_io (plan_audit.sql's
# audit_mark), for the last round and the sweep after it; the largest
# count of any round but the first (cold caches, the experiment made) is
# flagged too.
"${PSQL[@]}" -At -v last="$AUDIT_ROUNDS" -v lim="$AUDIT_LIMIT" >"$DIR/audit_io.md" <<'EOF' || exit 1
WITH io AS (
    SELECT a.*, dense_rank() OVER (PARTITION BY a.round, a.call ORDER BY a.seq) AS nth
      FROM public.audit_io a
), worst AS (    -- each call's largest read from one relation, over rounds 2 to last and the sweep
    SELECT call, nth, max(tuples) AS worst FROM io WHERE round >= 2 GROUP BY call, nth
), calls AS (
    SELECT io.seq, io.round, io.call, io.nth,
           string_agg(format('%s%s: %s', CASE WHEN io.relkind = 'i' THEN '' ELSE 'seq scan of ' END,
                             io.relname, io.tuples), '; ' ORDER BY io.tuples DESC, io.relname)
               FILTER (WHERE io.tuples > 0) AS reads,
           sum(io.blocks) AS blocks
      FROM io WHERE io.round IN (:last, :last + 1)
     GROUP BY io.seq, io.round, io.call, io.nth
)
SELECT line FROM (
    SELECT 0 AS r, 0 AS s, '| call | index entries returned (or tuples of a sequential scan), per relation | buffers | largest, rounds 2-' || :last || ' | verdict |' AS line
    UNION ALL SELECT 0, 1, '|---|---|---:|---:|---|'
    UNION ALL
    SELECT c.round, c.seq,
           format('| %s | %s | %s | %s | %s |', c.call, coalesce(c.reads, 'none'), c.blocks, w.worst,
                  CASE WHEN w.worst > :lim THEN '**over ' || :lim || '**' ELSE 'ok' END)
      FROM calls c JOIN worst w USING (call, nth)
    UNION ALL
    SELECT 99999, 0, format(E'\n%s calls, %s read more than %s index entries or tuples from one relation.',
                            count(*), count(*) FILTER (WHERE w.worst > :lim), :lim)
      FROM calls c JOIN worst w USING (call, nth)
) x ORDER BY r, s;
EOF

{
    echo "# Plan audit, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "git commit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null)$(git -C "$TOP" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)');"
    echo "store: $summary (bench/store_gen.sql and store_gen_live.sql, then VACUUM ANALYZE)."
    echo "Every call of bench/plan_audit.sql, $AUDIT_ROUNDS rounds, then shop.sweep(); auto_explain"
    echo "with actual rows; each statement's last run is shown (after the rounds, statements"
    echo "that use generic plans run them).  Rows read per scan = (rows returned + rows removed"
    echo "by filter or recheck) x loops."
    echo
    echo "## Statements (auto_explain)"
    echo
    cat "$DIR/audit_table.md"
    echo
    echo "## Each call, C included (index and table counters)"
    echo
    echo "What auto_explain cannot show: checkout's cart lock, idempotency claim, cart lines and"
    echo "order history, and the holds of src/inventory.c, are index walks in C.  For each call,"
    echo "what it read from each relation of schema shop, from the transaction's statistics"
    echo "counters before and after it (pg_stat_get_xact_tuples_returned: index entries returned"
    echo "by index scans, tuples returned by sequential scans; buffers: blocks read or hit, writes"
    echo "included) in the last round ($AUDIT_ROUNDS) and the sweep after it; a call whose largest"
    echo "read from one relation in any round but the first is over $AUDIT_LIMIT is flagged."
    echo
    cat "$DIR/audit_io.md"
} >"$report"
log "report written to ${report#"$TOP"/}"
grep -q "read more than" "$DIR/audit_table.md" || exit 1
grep -q "read more than" "$DIR/audit_io.md" || exit 1
grep -q ", 0 read more than" "$DIR/audit_table.md" && grep -q ", 0 read more than" "$DIR/audit_io.md"
