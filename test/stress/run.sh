#!/usr/bin/env bash
# run.sh: the shop_search stress harness (issue 9).
#
#   test/stress/run.sh [--duration SECONDS] [--phases N] [--writers N]
#                      [--searchers M] [--standby-searchers K] [--seed S]
#                      [--rows R] [--kills-per-phase K] [--feedback on|off|alternate]
#                      [--no-typo] [--no-race] [--wal-check] [--keep] [--out DIR]
#   make stress DURATION=600 [STRESS_ARGS="--writers 6 --seed 7"]
#
# Without --duration it runs the short form (30 s of workload, about a
# minute in all), which is what `make test` runs as the scripted test
# "stress"; docs/operations.md ("Stress harness") explains the output.
#
# What it does:
#   1. A primary cluster from tmp_install (shared_preload_libraries =
#      'shop', autovacuum on and eager, wal_level = replica) and a
#      streaming hot standby made with pg_basebackup -R.  setup.sql loads
#      a catalog (shop.product, searched through shop's own index) and a
#      user table with its own shop_search index, both from a fixed
#      vocabulary, and the fixed query set.
#   2. Phases.  In each: writers (pgbench: shop.product_upsert, plain
#      INSERT/UPDATE/DELETE on both tables, batches big enough to fold the
#      pending list), searchers on the primary and on the standby (pgbench:
#      shop.search, shop.search_facets, @@@ and ORDER BY <=> on the user
#      table, and "live checks", index against sequential scan in one
#      snapshot), a slow VACUUM loop (vacuum_cost_delay), a race loop that
#      makes inserts fold the pending list while a VACUUM walks the index,
#      REINDEX INDEX CONCURRENTLY now and then, autovacuum, and kill -9 of
#      the primary's postmaster (and all its processes) at a random point,
#      then a restart through crash recovery and on with the workload.
#   3. After each phase, with writers stopped: every query of the fixed
#      set by every index plan against the sequential scan (the truth), in
#      one REPEATABLE READ snapshot, and shop.search_verify on both
#      indexes; the same on the standby once it has replayed everything,
#      whose answers must also be the primary's.
#   4. The counts, the first mismatches in full, and the server logs'
#      errors.  Exit status 0: nothing found; 1: something found (a
#      mismatch, a verify finding, a live mismatch, an unexpected server
#      error or crash); 2: the harness itself could not run.
#
# Every random choice (workload, kill times, VACUUM settings) comes from
# --seed: pgbench --random-seed for the workload, a generator seeded here
# for the rest.  Only the interleaving of processes is left to the OS.
# Logs, the clusters and every comparison stay in tmp_check/stress/ (or
# --out DIR).
set -uo pipefail
TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HERE="$TOP/test/stress"
. "$TOP/scripts/pgenv.sh"

# ---------------------------------------------------------------- options
DURATION=""
PHASES=""
WRITERS=3
SEARCHERS=2
STANDBY_SEARCHERS=1
SEED=1
ROWS=""
KILLS=1
FEEDBACK=alternate
NO_TYPO=0
NO_RACE=0
WAL_CHECK=0
KEEP=0
OUT="$TOP/tmp_check/stress"

usage() {
    sed -n '4,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --phases) PHASES=$2; shift 2 ;;
        --writers) WRITERS=$2; shift 2 ;;
        --searchers) SEARCHERS=$2; shift 2 ;;
        --standby-searchers) STANDBY_SEARCHERS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --kills-per-phase) KILLS=$2; shift 2 ;;
        --feedback) FEEDBACK=$2; shift 2 ;;
        --no-typo) NO_TYPO=1; shift ;;
        --no-race) NO_RACE=1; shift ;;
        --wal-check) WAL_CHECK=1; shift ;;
        --keep) KEEP=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "stress: unknown option $1" >&2; usage ;;
    esac
done
if [ -z "$DURATION" ]; then
    # the short form: what `make test` runs
    FORM=short
    DURATION=30
    ROWS=${ROWS:-1000}
    PHASES=${PHASES:-2}
else
    FORM=long
    ROWS=${ROWS:-4000}
    PHASES=${PHASES:-$(( DURATION / 60 < 2 ? 2 : DURATION / 60 ))}
fi
for v in DURATION PHASES WRITERS SEARCHERS STANDBY_SEARCHERS SEED ROWS KILLS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "stress: $v must be a number, not '${!v}'" >&2; exit 2; }
done
case $FEEDBACK in on|off|alternate) ;; *) echo "stress: --feedback on|off|alternate" >&2; exit 2 ;; esac
PHASE_SECS=$(( DURATION / PHASES ))
[ "$PHASE_SECS" -ge 5 ] || { echo "stress: phases of at least 5 s, please" >&2; exit 2; }
[ "$WRITERS" -ge 1 ] && [ "$ROWS" -ge 100 ] || { echo "stress: at least 1 writer and 100 rows" >&2; exit 2; }
SPACE=$(( 3 * ROWS ))          # ids 1..SPACE in each table (setup.sql)
NW=$(( WRITERS + 1 ))          # id partitions: one per writer, one for the race loop
SKIP_TYPO=$([ "$NO_TYPO" = 1 ] && echo true || echo false)

# ------------------------------------------------------------ the generator
# A 64-bit LCG seeded from --seed; rnd LO HI sets R to a number in LO..HI.
RNG=$(( SEED * 2654435761 + 12345 ))
rnd() {
    RNG=$(( RNG * 6364136223846793005 + 1442695040888963407 ))
    R=$(( $1 + ((RNG >> 33) & 0x7fffffff) % ($2 - $1 + 1) ))
}
# a seed for pgbench or a loop, from the run's seed and a few numbers
subseed() {
    local h=$SEED
    for x in "$@"; do h=$(( (h * 1000003 + x + 17) & 0x7fffffff )); done
    echo "$h"
}

# ------------------------------------------------------------------ set-up
START=$(date +%s)
[ -n "${PGBIN:-}" ] || tmp_install_setup || { echo "stress: could not set up tmp_install" >&2; exit 2; }
# clusters of an earlier run left with --keep: stop them first (a
# postmaster whose directory is removed under it shuts down later and
# removes the socket of the new cluster of the same port)
cluster_stop "$OUT/standby" immediate
cluster_stop "$OUT/primary" immediate
rm -rf "$OUT"
mkdir -p "$OUT/counts"
[ "$(id -u)" = 0 ] && chown postgres: "$OUT"
PDIR="$OUT/primary"
SDIR="$OUT/standby"
PPORT=$(free_port stress_primary)
SPORT=$(free_port stress_standby)
[ "$SPORT" != "$PPORT" ] || SPORT=$((PPORT + 1))
PSQL="$PGBIN/psql -X -q -v ON_ERROR_STOP=1 -U postgres -d stress"
PP="-h $PDIR -p $PPORT"        # connection options of the primary ...
SP="-h $SDIR -p $SPORT"        # ... and of the standby
STOP="$OUT/stop"
PAUSE="$OUT/pause"             # the REINDEX loop waits while the harness restarts the primary
export PGAPPNAME=stress_harness   # the harness's own sessions, in the server logs
BG=()                          # background jobs of the current phase

log() { echo "$@" | tee -a "$OUT/summary.txt"; }
step() { echo "$(date +%T) phase ${PHASE:-0}: $*" >>"$OUT/timeline.log"; }   # what happened when
count() { echo "${2:-1}" >>"$OUT/counts/$1"; }            # count NAME [N]
total() { awk '{s += $1} END {print s + 0}' "$OUT/counts/$1" 2>/dev/null || echo 0; }

cleanup() {
    local p
    touch "$STOP"
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ "$KEEP" = 0 ]; then
        cluster_stop "$SDIR" immediate
        cluster_stop "$PDIR" immediate
    fi
}
trap cleanup EXIT
fail_harness() { log "stress: $*"; exit 2; }

WALCONF=()
[ "$WAL_CHECK" = 1 ] && WALCONF=("wal_consistency_checking = 'all'")
cluster_init "$PDIR" "$PPORT" \
    "shared_preload_libraries = 'shop'" "shop.sweep_interval = 10" \
    "wal_level = replica" "max_wal_senders = 5" "max_replication_slots = 5" \
    "hot_standby = on" "wal_keep_size = '256MB'" "max_wal_size = '1GB'" \
    "checkpoint_timeout = '30s'" "fsync = off" \
    "autovacuum = on" "autovacuum_naptime = '1s'" "autovacuum_max_workers = 2" \
    "autovacuum_vacuum_threshold = 50" "autovacuum_vacuum_scale_factor = 0.02" \
    "autovacuum_vacuum_insert_threshold = 200" "autovacuum_vacuum_insert_scale_factor = 0.02" \
    "autovacuum_analyze_threshold = 100" "autovacuum_vacuum_cost_delay = '2ms'" \
    "autovacuum_vacuum_cost_limit = 100" "log_autovacuum_min_duration = 0" \
    "log_line_prefix = '%m [%p] %e %q%a '" "${WALCONF[@]}" || fail_harness "initdb failed"
cluster_start "$PDIR" || fail_harness "the primary did not start"
$PGBIN/createdb $PP -U postgres stress || fail_harness "createdb failed"
$PSQL $PP -v rows="$ROWS" -v seed="$SEED" -f "$HERE/setup.sql" >"$OUT/setup.log" 2>&1 ||
    { tail -20 "$OUT/setup.log"; fail_harness "setup.sql failed (see $OUT/setup.log)"; }
clashes=$($PSQL $PP -At -c "SELECT string_agg(query_word || ' ~ ' || matches, ', ') FROM stress.vocabulary_clashes()")
[ -z "$clashes" ] || fail_harness "vocabulary words match each other ($clashes): fix setup.sql's word lists"
NQ=$($PSQL $PP -At -c "SELECT count(*) FROM stress.query WHERE NOT ($SKIP_TYPO AND class = 'typo')")
# the loaded data's fingerprint: equal for equal seeds (and row counts)
DIGEST=$($PSQL $PP -At -c "SELECT left(md5(string_agg(x, ',' ORDER BY x)), 12) FROM (
            SELECT p::text AS x FROM (SELECT product_id, title, description, brand, category_id,
                                             price_cents, popularity, in_stock FROM shop.product) p
            UNION ALL SELECT d::text FROM stress.doc d) s")

# The standby: a base backup with a replication slot, streaming.
mkdir -p "$SDIR"
[ "$(id -u)" = 0 ] && chown postgres: "$SDIR"
as_owner "$PGBIN/pg_basebackup" $PP -U postgres -D "$SDIR/data" -R -C -S stress_standby \
    -X stream -c fast >"$OUT/basebackup.log" 2>&1 || fail_harness "pg_basebackup failed (see $OUT/basebackup.log)"
{
    echo "port = $SPORT"
    echo "unix_socket_directories = '$SDIR'"
    echo "hot_standby = on"
    echo "max_standby_streaming_delay = '5s'"
    echo "wal_receiver_status_interval = '1s'"
    echo "wal_retrieve_retry_interval = '1s'"
    echo "include_if_exists = 'feedback.conf'"
} | as_owner tee -a "$SDIR/data/postgresql.conf" >/dev/null
feedback_for() { # phase -> on/off
    case $FEEDBACK in
        on|off) echo "$FEEDBACK" ;;
        alternate) [ $(( $1 % 2 )) = 1 ] && echo off || echo on ;;
    esac
}
echo "hot_standby_feedback = $(feedback_for 1)" | as_owner tee "$SDIR/data/feedback.conf" >/dev/null
cluster_start "$SDIR" || fail_harness "the standby did not start"

log "stress: $FORM form, seed $SEED: $PHASES phases of $PHASE_SECS s, $WRITERS writers," \
    "$SEARCHERS searchers on the primary, $STANDBY_SEARCHERS on the standby, $ROWS rows per table" \
    "to start (ids 1..$SPACE), $KILLS kill(s) per phase, hot_standby_feedback $FEEDBACK," \
    "typo queries $([ "$NO_TYPO" = 1 ] && echo skipped || echo included), race loop $([ "$NO_RACE" = 1 ] && echo off || echo on);" \
    "$NQ queries in the fixed set; data digest $DIGEST;" \
    "set-up took $(( $(date +%s) - START )) s; logs in $OUT"

# ---------------------------------------------------------------- workload
# pgbench SCRIPT weights of writers and searchers
WRITER_SCRIPTS=(product_upsert.sql@2 product_insert.sql@2 product_update.sql@3 product_delete.sql@2
                product_misc.sql@1 doc_insert.sql@2 doc_update.sql@3 doc_delete.sql@2)
SEARCHER_SCRIPTS=(search_api.sql@4 search_facets.sql@1 search_doc.sql@3 search_live.sql@2)

# pgbench NAME CONN SECONDS SEED CLIENTS EXTRA-ARGS SCRIPTS...: in the background
start_pgbench() {
    local name=$1 conn=$2 secs=$3 seed=$4 clients=$5 extra=$6; shift 6
    local f args=()
    for f in "$@"; do args+=(-f "$HERE/pgbench/$f"); done
    # (pgbench's -d is --debug: the database name goes last)
    PGAPPNAME=stress_$name "$PGBIN/pgbench" -n $conn -U postgres -c "$clients" -j 1 \
        -T "$secs" --random-seed="$seed" -D space="$SPACE" -D nw="$NW" -D skip_typo="$SKIP_TYPO" \
        $extra "${args[@]}" stress >"$OUT/$name-p$PHASE-s$SEG.log" 2>&1 &
    BG+=($!)
}

# the VACUUM loop: slow VACUUMs (vacuum_cost_delay 2ms, a random cost
# limit of 1 to 30, so a VACUUM of either table takes a second or more),
# one table or the other, until the stop file appears
vacuum_loop() {
    RNG=$1
    local t
    while [ ! -e "$STOP" ]; do
        rnd 0 1; t=$([ $R = 0 ] && echo shop.product || echo stress.doc)
        rnd 1 30
        if PGOPTIONS="-c vacuum_cost_delay=2ms -c vacuum_cost_limit=$R" PGAPPNAME=stress_vacuum \
            $PSQL $PP -c "VACUUM (VERBOSE) $t" >>"$OUT/vacuum.log" 2>&1; then
            count vacuums
        else
            sleep 1
        fi
        rnd 0 5; sleep "0.$R"
    done
}

# the race loop: stress.race_folds in 2-second calls
race_loop() {
    local seed=$1 i=0 n
    while [ ! -e "$STOP" ]; do
        i=$((i + 1))
        if n=$(PGAPPNAME=stress_race $PSQL $PP -At -c "CALL stress.race_folds(2, $WRITERS, $NW, $(( seed + i )))" 2>>"$OUT/race.log"); then
            count races "$n"
        else
            sleep 1
        fi
    done
}

# REINDEX INDEX CONCURRENTLY of one index or the other every 3 to 15 s
reindex_loop() {
    RNG=$1
    local idx s
    while [ ! -e "$STOP" ]; do
        rnd 6 30
        for ((s = 0; s < R; s++)); do [ -e "$STOP" ] && return; sleep 0.5; done
        # not while the harness restarts the primary and drops the indexes
        # an interrupted REINDEX left (DROP INDEX CONCURRENTLY and REINDEX
        # CONCURRENTLY of one table can deadlock)
        while [ -e "$PAUSE" ]; do [ -e "$STOP" ] && return; sleep 0.5; done
        rnd 0 1; idx=$([ $R = 0 ] && echo shop.product_search_idx || echo stress.doc_search)
        if PGAPPNAME=stress_reindex $PSQL $PP -c "REINDEX INDEX CONCURRENTLY $idx" >>"$OUT/reindex.log" 2>&1; then
            count reindexes
        fi
    done
}

# kill -9 of the primary's postmaster and of every process it started, as
# a crash of the whole server would; returns when all are gone
kill_primary() {
    local pm kids p n
    pm=$(head -1 "$PDIR/data/postmaster.pid" 2>/dev/null) || return 1
    # its children, from /proc (no procps on a minimal system)
    kids=$(for f in /proc/[0-9]*/stat; do
               read -r p _ _ n _ 2>/dev/null <"$f" && [ "$n" = "$pm" ] && echo "$p"
           done | tr '\n' ' ')
    kill -9 "$pm" $kids 2>/dev/null
    for n in $(seq 100); do
        for p in $pm $kids; do kill -0 "$p" 2>/dev/null && break; p=; done
        [ -z "$p" ] && return 0
        sleep 0.1
    done
    return 1
}

# is the primary up?  If it died without the harness's kill (a crash
# that crash recovery could not get over), that is a finding: say so,
# show the end of its log and try to start it again
primary_alive() {
    as_owner "$PGBIN/pg_ctl" -D "$PDIR/data" status >/dev/null 2>&1 && return 0
    count died
    log "phase $PHASE: the primary is down and the harness did not kill it; end of $PDIR/server.log:"
    tail -15 "$PDIR/server.log" | tee -a "$OUT/summary.txt"
    as_owner "$PGBIN/pg_ctl" -D "$PDIR/data" -l "$PDIR/server.log" -w -t 300 start >>"$OUT/restart.log" 2>&1 ||
        { log "stress: it does not start again: RESULT: FAIL"; exit 1; }
}

# wait_jobs SECONDS PID...: wait for jobs of the harness; one still
# running after SECONDS is a hang (a statement that never ends): a
# finding.  What the servers were doing goes to hang-pP.txt, then the
# statements are cancelled and the jobs stopped.
wait_jobs() {
    local limit=$1 p t0 left; shift
    t0=$(date +%s)
    while :; do
        left=
        for p in "$@"; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
        [ -z "$left" ] && break
        if [ $(( $(date +%s) - t0 )) -ge "$limit" ]; then
            count hangs
            log "phase $PHASE: jobs still running $limit s after their time: a hang? (pg_stat_activity in hang-p$PHASE.txt)"
            for c in "$PP" "$SP"; do
                $PSQL $c -c "SELECT pid, application_name, state, wait_event_type, wait_event,
                                    now() - query_start AS running, query
                               FROM pg_stat_activity WHERE application_name LIKE 'stress%'" \
                    >>"$OUT/hang-p$PHASE.txt" 2>&1
                $PSQL $c -At -c "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
                                  WHERE application_name LIKE 'stress%' AND pid <> pg_backend_pid()" >/dev/null 2>&1
            done
            sleep 5
            for p in $left; do kill "$p" 2>/dev/null; done
            break
        fi
        sleep 0.2
    done
    for p in "$@"; do wait "$p" 2>/dev/null; done
}

# after a crash: indexes left invalid by an interrupted REINDEX CONCURRENTLY
drop_invalid_indexes() {
    local n
    n=$($PSQL $PP -At -c "SELECT count(*) FROM pg_index WHERE NOT indisvalid")
    [ "$n" = 0 ] && return
    $PSQL $PP >>"$OUT/reindex.log" 2>&1 <<'SQL'
SELECT format('DROP INDEX CONCURRENTLY %s', indexrelid::regclass) FROM pg_index WHERE NOT indisvalid \gexec
SQL
    count invalid_dropped "$n"
}

# --------------------------------------------------------------- checking
# check NODE PHASE: the fixed set on one node, into $OUT/check-pPHASE-NODE.tsv
check_node() {
    local node=$1 conn try
    conn=$([ "$node" = primary ] && echo "$PP" || echo "$SP")
    for try in 1 2 3; do
        # a recovery conflict can cancel the standby's snapshot: try again
        $PSQL $conn -At -F $'\t' -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
            -c "SELECT qid, target, class, method, ok, n_truth, n_got, digest, detail, query FROM stress.check($SKIP_TYPO)" \
            -c "COMMIT" >"$OUT/check-p$PHASE-$node.tsv" 2>"$OUT/check-p$PHASE-$node.err" && return 0
        grep -q "conflict with recovery" "$OUT/check-p$PHASE-$node.err" || break
    done
    return 1
}
verify_node() {
    local node=$1 conn
    conn=$([ "$node" = primary ] && echo "$PP" || echo "$SP")
    $PSQL $conn -At -F $'\t' -c "SELECT * FROM stress.verify()" >"$OUT/verify-p$PHASE-$node.tsv" 2>&1
}
# check_failed NODE: the check or search_verify of a node could not run
check_failed() {
    count check_failed
    log "phase $PHASE: the check could not run on the $1: $(head -3 "$OUT/check-p$PHASE-$1.err" 2>/dev/null)" \
        "$(grep -i 'error\|fatal' "$OUT/verify-p$PHASE-$1.tsv" 2>/dev/null | head -3)"
    touch "$OUT/check-p$PHASE-$1.tsv" "$OUT/verify-p$PHASE-$1.tsv"
}
# summarize a check file: prints "comparisons rows mismatches" and adds
# to mismatches.txt the first failing query of each class, one line each:
# the query, the first failing method's answer, every failing method
summarize() {
    awk -F'\t' -v shown="$OUT/mismatches.txt" -v where="$2" '
        $4 != "truth" { n++; rows += $6 }
        $4 != "truth" && $5 != "t" {
            bad++
            if (!($3 in q)) {
                order[++nc] = $3; q[$3] = $1; meth[$3] = $4
                first[$3] = sprintf("qid %s (%s, %s) %s: %s: truth %s rows, got %s: %s",
                                    $1, $2, $3, $10, $4, $6, $7, $9)
            } else if (q[$3] == $1) meth[$3] = meth[$3] ", " $4
        }
        END {
            for (i = 1; i <= nc; i++)
                printf "%s: %s [failing: %s]\n", where, first[order[i]], meth[order[i]] >> shown
            print n + 0, rows + 0, bad + 0
        }' "$1"
}
# digests of the standby that differ from the primary's
standby_diffs() {
    awk -F'\t' -v shown="$OUT/mismatches.txt" -v where="phase $PHASE standby vs primary" '
        NR == FNR { d[$1 "/" $4] = $8; next }
        { k = $1 "/" $4; if (!(k in d) || d[k] != $8) { bad++; if (bad <= 5)
            printf "%s: qid %s method %s: primary and standby answers differ (%s rows on the standby); query %s\n",
                   where, $1, $4, $7, $10 >> shown } }
        END { print bad + 0 }' "$OUT/check-p$PHASE-primary.tsv" "$OUT/check-p$PHASE-standby.tsv"
}

# ------------------------------------------------------------------ phases
for ((PHASE = 1; PHASE <= PHASES; PHASE++)); do
    fb=$(feedback_for "$PHASE")
    echo "hot_standby_feedback = $fb" | as_owner tee "$SDIR/data/feedback.conf" >/dev/null
    $PSQL $SP -c "SELECT pg_reload_conf()" >/dev/null
    rm -f "$STOP"
    BG=()
    phase_start=$(date +%s)

    # kill times: one in the middle 70% of each of KILLS equal windows
    kill_at=()
    for ((k = 0; k < KILLS; k++)); do
        w=$(( PHASE_SECS / KILLS ))
        rnd $(( k * w + w * 15 / 100 )) $(( k * w + w * 85 / 100 ))
        kill_at+=("$R")
    done
    kill_at+=("$PHASE_SECS")

    # standby searchers run through the whole phase (the standby is not killed)
    SEG=0
    [ "$STANDBY_SEARCHERS" -gt 0 ] &&
        start_pgbench standby "$SP" "$PHASE_SECS" "$(subseed "$PHASE" 3)" "$STANDBY_SEARCHERS" "--max-tries=10" "${SEARCHER_SCRIPTS[@]}"
    rnd 1 1000000; vacuum_loop "$(subseed "$PHASE" 4 "$R")" & BG+=($!)
    [ "$NO_RACE" = 1 ] || { race_loop "$(subseed "$PHASE" 5)" & BG+=($!); }
    rnd 1 1000000; reindex_loop "$(subseed "$PHASE" 6 "$R")" & BG+=($!)

    # segments: from one kill to the next
    t=0
    for ((SEG = 1; SEG <= ${#kill_at[@]}; SEG++)); do
        until_t=${kill_at[SEG - 1]}
        secs=$(( until_t - t ))
        SEGBG=()
        if [ "$secs" -gt 0 ]; then
            start_pgbench writers "$PP" "$secs" "$(subseed "$PHASE" "$SEG" 1)" "$WRITERS" "" "${WRITER_SCRIPTS[@]}"
            SEGBG+=($!)
            [ "$SEARCHERS" -gt 0 ] && { start_pgbench searchers "$PP" "$secs" "$(subseed "$PHASE" "$SEG" 2)" "$SEARCHERS" "" "${SEARCHER_SCRIPTS[@]}"; SEGBG+=($!); }
        fi
        # wait until the kill time (or the phase's end)
        while [ $(( $(date +%s) - phase_start )) -lt "$until_t" ]; do sleep 0.2; done
        t=$until_t
        if [ "$SEG" -lt ${#kill_at[@]} ]; then
            primary_alive
            touch "$PAUSE"
            kill_primary || fail_harness "phase $PHASE: the primary's processes did not go away after kill -9"
            for p in "${SEGBG[@]}"; do wait "$p" 2>/dev/null; done
            step "killed the primary at $until_t s"
            rstart=$(date +%s)
            # crash recovery (pg_ctl notes the stale postmaster.pid: restart.log)
            as_owner "$PGBIN/pg_ctl" -D "$PDIR/data" -l "$PDIR/server.log" -w -t 300 start \
                >>"$OUT/restart.log" 2>&1 || fail_harness "phase $PHASE: the primary did not come back after kill -9 (see $PDIR/server.log)"
            count kills
            count recovery_secs $(( $(date +%s) - rstart ))
            step "primary back after $(( $(date +%s) - rstart )) s"
            drop_invalid_indexes
            rm -f "$PAUSE"
        else
            wait_jobs 120 "${SEGBG[@]}"
        fi
    done

    # quiesce: stop the loops, wait for every job of the phase
    step "workload over"
    primary_alive
    touch "$STOP"
    # a slow VACUUM of the loop may have seconds to go: cancel it (57014,
    # expected)
    $PSQL $PP -At -c "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
                       WHERE application_name = 'stress_vacuum'" >/dev/null 2>&1
    wait_jobs 180 "${BG[@]}"
    BG=()
    drop_invalid_indexes
    step "quiet"

    # check the primary and, at the same time, the standby once it has
    # replayed everything the primary wrote up to now
    lsn=$($PSQL $PP -At -c "SELECT pg_current_wal_lsn()")
    { check_node primary && verify_node primary; } & cpid=$!
    caught_up=0
    for ((i = 0; i < 600; i++)); do
        if [ "$($PSQL $SP -At -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'" 2>/dev/null)" = t ]; then
            caught_up=1; break
        fi
        sleep 0.2
    done
    [ "$caught_up" = 1 ] || fail_harness "phase $PHASE: the standby did not replay up to $lsn in 120 s"
    step "standby replayed up to $lsn"
    # (an error of a query or of search_verify is a failed comparison or a
    # verify finding; a check that cannot run at all, a backend crash for
    # instance, is a finding as well)
    { check_node standby && verify_node standby; } || check_failed standby
    step "standby checked"
    wait "$cpid" || check_failed primary
    step "primary checked"
    read -r n rows bad <<<"$(summarize "$OUT/check-p$PHASE-primary.tsv" "phase $PHASE primary")"
    vf=$(wc -l <"$OUT/verify-p$PHASE-primary.tsv")
    count compared "$n"; count rows "$rows"; count mismatches "$bad"; count verify "$vf"
    read -r sn srows sbad <<<"$(summarize "$OUT/check-p$PHASE-standby.tsv" "phase $PHASE standby")"
    svf=$(wc -l <"$OUT/verify-p$PHASE-standby.tsv")
    sdiff=$(standby_diffs)
    count s_compared "$sn"; count s_rows "$srows"; count s_mismatches "$sbad"; count s_verify "$svf"
    count s_diffs "$sdiff"
    kills_said=$([ "$KILLS" -gt 0 ] && echo "kill -9 at ${kill_at[*]:0:$KILLS} s" || echo "no kill")
    log "phase $PHASE ($(( $(date +%s) - phase_start )) s, hot_standby_feedback $fb, $kills_said):" \
        "primary $n comparisons, $rows rows, $bad mismatches, $vf verify findings;" \
        "standby $sn comparisons, $srows rows, $sbad mismatches, $svf verify findings, $sdiff answers unlike the primary's"
done

# ------------------------------------------------------------ server logs
# ERROR/FATAL/PANIC lines by SQLSTATE.  Expected, and only counted:
# 57P01-57P03 (shutdown, crash of another process, not accepting
# connections yet), 57014 (canceled: autovacuum giving way to a lock, or
# the harness cancelling a slow VACUUM at a phase's end), 55000 "could not
# map dynamic shared memory segment" (a parallel VACUUM worker starting
# after that cancel), 08xxx (connections lost when the primary is
# killed), and on the standby 40001 (recovery conflicts).  Everything
# else is a finding.  Lines of a child crash ("terminated by signal", a
# PANIC, a process other than a background worker exiting with an error
# code) are findings too: the harness's own kill -9 takes the postmaster
# first, which then logs none.
scan_log() {
    local node=$1 file=$2
    awk -v node="$node" -v out="$OUT/server-errors.txt" '
        match($0, /\] [0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z] /) {   # mawk: no {5}
            state = substr($0, RSTART + 2, 5)
            if ($0 ~ /stress live mismatch/) { live++; if (live <= 5) print node ": " $0 >> out; next }
            if ($0 ~ / (ERROR|FATAL|PANIC): /) {
                if (state ~ /^57P0[123]$/ || state == "57014" || state ~ /^08/ ||
                    (state == "55000" && $0 ~ /could not map dynamic shared memory segment/) ||
                    (node == "standby" && state == "40001")) { if (state == "40001") conflicts++; expected++; next }
                bad++; if (bad <= 10) print node ": " $0 >> out
            }
        }
        /terminated by signal|terminated by exception|PANIC:|TRAP:/ ||
        (/exited with exit code/ && !/background worker/) {
            crash++; if (crash <= 5) print node ": " $0 >> out
        }
        END { print bad + 0, live + 0, crash + 0, expected + 0, conflicts + 0 }' "$file"
}
read -r perr plive pcrash pexp _ <<<"$(scan_log primary "$PDIR/server.log")"
read -r serr slive scrash sexp sconf <<<"$(scan_log standby "$SDIR/server.log")"
autovacuums=$(grep -c "automatic vacuum of table \"stress\.\(shop\.product\|stress\.doc\)\"" "$PDIR/server.log")
# pgbench clients that gave up: expected in a segment ended by a kill, and
# on the standby for a recovery conflict; any other is a finding (its
# server error is counted above too, unless the error was the client's)
last_seg=$(( KILLS + 1 ))
aborted=$(cat "$OUT"/writers-p*-s$last_seg.log "$OUT"/searchers-p*-s$last_seg.log "$OUT"/standby-*.log 2>/dev/null |
          grep "aborted in command" | grep -vc "conflict with recovery")
txns() { awk '/number of transactions actually processed/ {split($NF, a, "/"); s += a[1]} END {print s + 0}' "$OUT"/$1-*.log; }
# live checks run: the transactions of search_live.sql
live_checks=$(awk '/^SQL script [0-9]+: .*search_live.sql/ {f = 1; next}
                   f && /transactions \(/ {s += $2; f = 0} END {print s + 0}' "$OUT"/searchers-*.log "$OUT"/standby-*.log)

END_T=$(date +%s)
findings=$(( $(total died) + $(total hangs) + $(total check_failed) + $(total mismatches) + $(total verify) + $(total s_mismatches) + $(total s_verify) + $(total s_diffs) \
             + perr + plive + pcrash + serr + slive + scrash + aborted ))
log ""
log "== stress summary (seed $SEED, $FORM form)"
log "phases                    $PHASES of $PHASE_SECS s, runtime $(( (END_T - START) / 60 ))m$(( (END_T - START) % 60 ))s"
log "kills survived            $(total kills) (crash recovery $(total recovery_secs) s in all; invalid indexes dropped: $(total invalid_dropped))"
log "workload                  writers $(txns writers) transactions, searchers $(txns searchers) + $(txns standby) on the standby;" \
    "$(total vacuums) VACUUMs, $(total races) VACUUM-vs-fold races, $(total reindexes) REINDEX CONCURRENTLY, $autovacuums autovacuums"
log "queries compared          $(total compared) on the primary, $(total s_compared) on the standby"
log "rows compared             $(total rows) on the primary, $(total s_rows) on the standby"
log "mismatches                $(total mismatches) on the primary, $(total s_mismatches) on the standby"
log "standby answers differing $(total s_diffs)"
log "verify findings           $(total verify) on the primary, $(total s_verify) on the standby"
log "live checks               $live_checks, mismatches: $plive on the primary, $slive on the standby"
log "server errors             $perr on the primary, $serr on the standby (expected and not counted: $pexp, $sexp; standby recovery conflicts $sconf)"
log "crashes                   $pcrash on the primary, $scrash on the standby (not counting the harness's kills); primary found down $(total died) times"
log "hangs                     $(total hangs); checks that could not run: $(total check_failed)"
log "client aborts             $aborted not caused by a kill or a recovery conflict (see the pgbench logs)"
if [ -s "$OUT/mismatches.txt" ]; then
    # failed comparisons by table and query class over the whole run
    log ""; log "== mismatches by class (failed comparisons; with missing / extra rows / errors; methods)"
    for node in primary standby; do
        cat "$OUT"/check-p*-$node.tsv | awk -F'\t' -v node="$node" '
            $4 != "truth" && $5 != "t" {
                k = $2 "/" $3; n[k]++
                if ($9 ~ /^missing [1-9]/) mi[k]++
                if ($9 ~ / extra [1-9]/) ex[k]++
                if ($8 == "error") er[k]++
                if (index(" " ms[k] ",", " " $4 ",") == 0) ms[k] = ms[k] (ms[k] == "" ? "" : ", ") $4
            }
            END { for (k in n) printf "%-8s %-16s %5d; %d / %d / %d; %s\n", node, k, n[k], mi[k], ex[k], er[k], ms[k] }' |
            sort | tee -a "$OUT/summary.txt"
    done
    log ""; log "== first mismatch of each class, by phase and node (all in check-p*-*.tsv)"
    head -60 "$OUT/mismatches.txt" | tee -a "$OUT/summary.txt"
fi
if cat "$OUT"/verify-p*.tsv 2>/dev/null | grep -q .; then
    log ""; log "== verify findings by phase and node (all in verify-p*-*.tsv)"
    for f in "$OUT"/verify-p*.tsv; do
        [ -s "$f" ] || continue
        awk -F'\t' -v f="$(basename "$f" .tsv)" '{ n[$1 " " $2]++ }
            END { for (k in n) printf "%s: %s %d\n", f, k, n[k] }' "$f" | sort
    done | sort -V | tee -a "$OUT/summary.txt"
    for f in $(ls "$OUT"/verify-p*.tsv | sort -V); do
        [ -s "$f" ] || continue
        log "first findings ($(basename "$f")):"
        head -5 "$f" | tee -a "$OUT/summary.txt"
        break
    done
fi
if [ -s "$OUT/server-errors.txt" ]; then
    log ""; log "== server log findings"; head -30 "$OUT/server-errors.txt" | tee -a "$OUT/summary.txt"
fi
if [ "$KEEP" = 1 ]; then
    log ""
    log "clusters left running: $PGBIN/psql -h $PDIR -p $PPORT -U postgres stress (standby: -h $SDIR -p $SPORT);"
    log "stop them with: $PGBIN/pg_ctl -D $PDIR/data stop; $PGBIN/pg_ctl -D $SDIR/data stop (as the postgres user when root)"
fi
if [ "$findings" -eq 0 ]; then
    log ""; log "RESULT: PASS"
    exit 0
fi
log ""; log "RESULT: FAIL ($findings findings; everything is in $OUT)"
exit 1
