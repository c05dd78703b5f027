#!/usr/bin/env bash
# bench/plan_audit.sh: the plan of every statement shop's transactional core
# runs, on a store at production size (issue 11).
#
#   1. a throwaway cluster (tmp_bench/audit) from the private installation;
#   2. database "audit" with shop and a store made by bench/store_gen.sql:
#      AUDIT_PRODUCTS products (default 1,000,000), AUDIT_CUSTOMERS
#      customers (1,000,000), AUDIT_ORDERS orders (2,000,000) of which
#      AUDIT_UNSHIPPED (400,000) are paid and not shipped, holding about
#      1,000,000 reservations; VACUUM ANALYZE;
#   3. AUDIT_ROUNDS rounds (default 8, enough for the plan cache to settle
#      on generic plans) of every call (bench/plan_audit.sql), then
#      shop.sweep(), with auto_explain logging every nested statement with
#      its actual rows;
#   4. the report: for each distinct statement, the plan of its last run:
#      which table and index each scan used and how many rows and index
#      entries it read; a statement that read more than AUDIT_LIMIT (1,000)
#      from one relation is flagged.  Written to
#      bench/results/<date>-plan_audit.md (not committed by the script).
#
# AUDIT_KEEP=1 leaves the cluster running (the store takes a while to make:
# AUDIT_REUSE=1 then skips steps 1-2 on the next run; with
# AUDIT_REPORT_ONLY=1 as well, only the report is made, from its log).
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
        -v unshipped="$AUDIT_UNSHIPPED" -v max_lines=4 -f "$TOP/bench/store_gen.sql" >&2 || exit 1
    log "store made in $(( $(date +%s) - t0 )) s"
fi
summary=$("${PSQL[@]}" -At -c "
    SELECT format('%s products, %s orders (%s paid and not shipped), %s reservations of which %s held, %s order lines, %s events',
        (SELECT count(*) FROM shop.product), (SELECT count(*) FROM shop.\"order\"),
        (SELECT count(*) FROM shop.\"order\" WHERE status = 'paid'), (SELECT count(*) FROM shop.reservation),
        (SELECT count(*) FROM shop.reservation WHERE status = 'held'), (SELECT count(*) FROM shop.order_line),
        (SELECT count(*) FROM shop.event))")
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
        run=$(date +%s)
        for i in $(seq 1 "$AUDIT_ROUNDS"); do
            echo "SELECT public.audit_round($i, $AUDIT_PRODUCTS, $AUDIT_CUSTOMERS, '$run');"
        done
        echo "SELECT shop.sweep();"
    } | "${PSQL[@]}" >/dev/null || exit 1
fi

report="$TOP/bench/results/$(date -u +%Y-%m-%d)-plan_audit.md"
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
        next if $t =~ /^SELECT public\.audit_round/ || $t =~ /^SELECT shop\.sweep\(\)$/;
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

{
    echo "# Plan audit, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "git commit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null)$(git -C "$TOP" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)');"
    echo "store: $summary (bench/store_gen.sql, then VACUUM ANALYZE)."
    echo "Every call of bench/plan_audit.sql, $AUDIT_ROUNDS rounds, then shop.sweep(); auto_explain"
    echo "with actual rows; each statement's last run is shown (after the rounds, statements"
    echo "that use generic plans run them).  Rows read per scan = (rows returned + rows removed"
    echo "by filter or recheck) x loops."
    echo
    cat "$DIR/audit_table.md"
} >"$report"
log "report written to ${report#"$TOP"/}"
grep -q "read more than" "$DIR/audit_table.md" || exit 1
grep -q ", 0 read more than" "$DIR/audit_table.md"
