#!/usr/bin/env bash
# search_standby: a shop_search index on a streaming hot standby.
#
# A primary and a standby made with pg_basebackup -R.  On the standby a
# search is stopped right after it read the index's metapage (the pause
# point scan-meta, held by a second standby session); meanwhile inserts
# on the primary fold the pending list and put new pages into the blocks
# the folds released, and the standby replays that.  Without
# hot_standby_feedback the standby must cancel the stopped search
# (40001, conflict with recovery) before it replays the reuse: going on,
# it would read blocks that are no longer what its metapage says.  With
# hot_standby_feedback on, the primary keeps those blocks until the
# search ends, which then counts exactly what its snapshot sees.  After
# replay, the standby's answers to a set of searches equal the primary's.
# Last, facets on the standby, without feedback: a count stopped after it
# copied the matching documents (pause point facets-collected) while the
# standby replays a VACUUM that flags the documents of rows deleted
# before the count's snapshot, frees their line pointers and marks the
# heap page all-visible (nothing there conflicts with the count's
# snapshot, so it is not cancelled); going on, it must count only the
# rows its snapshot sees, not the copies the visibility map now vouches
# for.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
PDIR="$TOP/tmp_check/search_standby/primary"
SDIR="$TOP/tmp_check/search_standby/standby"
PPORT=$(free_port search_standby_p)
cluster_init "$PDIR" "$PPORT" "wal_level = replica" "max_wal_senders = 4" "autovacuum = off"
cluster_start "$PDIR"
trap 'cluster_stop "$SDIR" immediate; cluster_stop "$PDIR" immediate' EXIT
SPORT=$(free_port search_standby_s)
[ "$SPORT" = "$PPORT" ] && SPORT=$((SPORT + 1))
rm -rf "$SDIR"; mkdir -p "$SDIR"
[ "$(id -u)" = 0 ] && chown postgres: "$SDIR"
P="$PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -h $PDIR -p $PPORT -U postgres -d stb"
S="$PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -h $SDIR -p $SPORT -U postgres -d stb"
K=1397968979    # SS_TEST_PAUSE_KEY

$PGBIN/createdb -h "$PDIR" -p "$PPORT" -U postgres stb
$P <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE TABLE t (id bigserial PRIMARY KEY, title text) WITH (autovacuum_enabled = off);
CREATE INDEX t_idx ON t USING shop_search (shop.search_doc(title));
INSERT INTO t (title) SELECT 'alpha item ' || g FROM generate_series(1, 1200) g;
VACUUM t;
INSERT INTO t (title) SELECT 'alpha late ' || g FROM generate_series(1, 120) g;
CHECKPOINT;
SQL
as_owner "$PGBIN/pg_basebackup" -h "$PDIR" -p "$PPORT" -U postgres -D "$SDIR/data" -R -X stream -c fast
{
    echo "port = $SPORT"
    echo "unix_socket_directories = '$SDIR'"
    echo "hot_standby = on"
    echo "hot_standby_feedback = off"
    echo "max_standby_streaming_delay = 2s"
    echo "wal_receiver_status_interval = 1s"
} | as_owner tee -a "$SDIR/data/postgresql.conf" >/dev/null
cluster_start "$SDIR"

fail=0
wait_replay() {  # until the standby has replayed what the primary wrote
    local lsn i
    lsn=$($P -c "SELECT pg_current_wal_lsn()")
    for i in $(seq 1 600); do
        [ "$($S -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && return 0
        sleep 0.1
    done
    echo "FAILED: the standby did not replay up to $lsn"; exit 1
}
wait_paused() {  # until the stopped search waits for the pause lock
    local i
    for i in $(seq 1 300); do
        [ "$($S -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")" = 1 ] && return 0
        sleep 0.1
    done
    echo "FAILED: the standby search did not reach its pause point"; exit 1
}
churn() {  # inserts only (no dead heap tuples, so no heap conflict): folds and reuse
    local i
    for i in $(seq 1 30); do
        $P -c "INSERT INTO t (title) SELECT 'alpha churn $1 ' || g FROM generate_series(1, 60) g"
    done
}
# a search stopped at a pause point; its output goes to $1.  $2, $3: the
# pause point and the statements (default: scan-meta, an index count in
# a REPEATABLE READ snapshot, after the sequential scan's)
stopped_search() {
    local out=$1 point=${2:-scan-meta}
    local sql=${3:-"SELECT 'truth ' || count(*) FROM t WHERE title LIKE 'alpha %';
SET LOCAL enable_seqscan = off;
SELECT 'by_index ' || count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '\"alpha\"';"}
    mkfifo "$SDIR/hold.fifo"
    # the holder: takes the pause lock, gives it back when told (fd 3)
    $S <"$SDIR/hold.fifo" >/dev/null 2>&1 &
    HOLDER=$!
    exec 3>"$SDIR/hold.fifo"
    echo "SELECT pg_advisory_lock($K);" >&3
    sleep 0.5
    $PGBIN/psql -X -q -At -h "$SDIR" -p "$SPORT" -U postgres -d stb >"$out" 2>&1 <<SQL &
SET shop.search_test_pause = '$point';
BEGIN ISOLATION LEVEL REPEATABLE READ;
$sql
COMMIT;
SQL
    SEARCH=$!
    wait_paused
}
release_search() {
    echo "SELECT pg_advisory_unlock($K);" >&3
    exec 3>&-
    wait "$SEARCH" || true
    wait "$HOLDER" || true
    rm -f "$SDIR/hold.fifo"
}
wait_replay

# 1. hot_standby_feedback off: the stopped search is cancelled
stopped_search "$SDIR/search1.out"
churn a
wait_replay
release_search
if grep -q "conflict with recovery" "$SDIR/search1.out"; then
    echo "ok: without feedback, the stopped search was cancelled (conflict with recovery)"
else
    echo "FAILED: without feedback, the stopped search was not cancelled:"; sed 's/^/  /' "$SDIR/search1.out"; fail=1
fi

# 2. hot_standby_feedback on: it is not, and counts what its snapshot sees
$S -c "ALTER SYSTEM SET hot_standby_feedback = on" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
stopped_search "$SDIR/search2.out"
sleep 2         # a feedback message carries the search's xmin to the primary
churn b
wait_replay
release_search
truth=$(sed -n 's/^truth //p' "$SDIR/search2.out")
got=$(sed -n 's/^by_index //p' "$SDIR/search2.out")
if [ -n "$truth" ] && [ "$truth" = "$got" ]; then
    echo "ok: with feedback, the stopped search counted $got rows, its snapshot's truth"
else
    echo "FAILED: with feedback, the stopped search:"; sed 's/^/  /' "$SDIR/search2.out"; fail=1
fi

# 3. after more churn (deletes, updates, VACUUM: merges, truncation),
#    the standby answers as the primary does
$P <<'SQL'
DELETE FROM t WHERE id % 3 = 0;
UPDATE t SET title = title || ' beta' WHERE id % 5 = 0;
VACUUM t;
INSERT INTO t (title) SELECT 'gamma ' || g FROM generate_series(1, 700) g;
DELETE FROM t WHERE title LIKE 'alpha churn%';
VACUUM t;
VACUUM t;
SQL
wait_replay
queries="SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '\"alpha\"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '\"beta\"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '\"gamma\"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '\"alpa\"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '{\"q\": \"alpha beta\"}';
SELECT string_agg(t.id::text, ',' ORDER BY s.ord) FROM shop.search_scan('t_idx', '{\"q\": \"item beta\"}', 50) WITH ORDINALITY s(ctid, score, typos, missing, ord) JOIN t ON t.ctid = s.ctid;
SELECT count(*) FROM shop.search_verify('t_idx');"
pout=$(echo "SET enable_seqscan = off; $queries" | $P)
sout=$(echo "SET enable_seqscan = off; $queries" | $S)
if [ "$pout" = "$sout" ]; then
    echo "ok: the standby's answers equal the primary's ($(echo "$pout" | head -3 | paste -sd' ' -) ...)"
else
    echo "FAILED: standby and primary differ:"; diff <(echo "$pout") <(echo "$sout") | sed 's/^/  /'; fail=1
fi
# 4. facets without feedback, while the standby replays a VACUUM.  A
#    table of its own: one heap page that stays in use and a pending list
#    that the VACUUM folds into a new segment at the end of the index, so
#    no block is reused or truncated (that would cancel the count).
$S -c "ALTER SYSTEM SET hot_standby_feedback = off" -c "SELECT pg_reload_conf()" >/dev/null
$P <<'SQL'
CREATE TABLE u (id bigserial PRIMARY KEY, title text) WITH (autovacuum_enabled = off);
CREATE INDEX u_idx ON u USING shop_search (shop.search_doc(title));
INSERT INTO u (title) SELECT 'delta lamp ' || g FROM generate_series(1, 60) g;
DELETE FROM u WHERE id % 2 = 0;
SQL
wait_replay
sleep 1         # the standby runs without feedback again
stopped_search "$SDIR/search4.out" facets-collected \
    "SELECT 'truth ' || count(*) FROM u WHERE title LIKE 'delta %';
SELECT 'facets ' || n FROM shop._search_facet_counts('u_idx', '\"delta\"') WHERE kind = 'total';"
$P -c "VACUUM u"
wait_replay
release_search
truth=$(sed -n 's/^truth //p' "$SDIR/search4.out")
got=$(sed -n 's/^facets //p' "$SDIR/search4.out")
if [ -n "$truth" ] && [ "$truth" = "$got" ]; then
    echo "ok: facets stopped while the standby replayed a VACUUM counted $got rows, its snapshot's truth"
else
    echo "FAILED: facets stopped while the standby replayed a VACUUM:"; sed 's/^/  /' "$SDIR/search4.out"; fail=1
fi
if [ "$($P -c "SELECT count(*) FROM shop.search_verify('u_idx')")" != 0 ]; then
    echo "FAILED: search_verify finds problems in u_idx"; fail=1
fi

blocks=$($P -c "SELECT shop.search_index_info('t_idx') -> 'blocks'")
echo "index: $blocks blocks on the primary"
exit $fail
