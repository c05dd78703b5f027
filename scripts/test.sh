#!/usr/bin/env bash
# test.sh: every test suite of shop against throwaway clusters built from a
# private installation (tmp_install/). Called by `make test` after the build.
#
#   1. pg_regress: sql/*.sql against expected/*.out
#   2. isolation:  specs/*.spec against expected/*.out (pg_isolation_regress)
#   3. scripted:   test/*/run.sh (upgrade, stress, packaging, ...), each
#                  starting and killing clusters of its own
#   4. TAP:        t/*.pl (crash recovery, hot standby, dump/restore) with
#                  prove and PostgreSQL::Test::Cluster, each starting
#                  clusters of its own from tmp_install
#
# Exits non-zero when anything fails; prints "N passed, N failed" last.
# TESTS="catalog dump" runs only the named regress files, specs, scripted
# tests and TAP tests (a TAP test by its path t/006_dump.pl, its file name
# 006_dump or its name without the number, dump).
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"   # the regression tests include sql/include/prelude.sql by this path
. "$TOP/scripts/pgenv.sh"

PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/../..
PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress"
PG_ISOLATION_REGRESS="$PGXS_DIR/src/test/isolation/pg_isolation_regress"

tmp_install_setup || { echo "shop: could not set up tmp_install" >&2; exit 1; }

CHECK="$TOP/tmp_check"
mkdir -p "$CHECK"
[ "$(id -u)" = 0 ] && chown postgres: "$CHECK"
PORT=$(free_port regress)
DIR="$CHECK/regress"
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "max_worker_processes = 16" || exit 1
cluster_start "$DIR" || exit 1
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"

passed=0
failed=0
want() { [ -z "${TESTS:-}" ] || [[ " $TESTS " == *" $1 "* ]]; }

regress=()
for f in "$TOP"/sql/*.sql; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .sql)
    want "$n" && regress+=("$n")
done
if [ ${#regress[@]} -gt 0 ]; then
    echo "== pg_regress: ${regress[*]}"
    rm -rf "$CHECK/out_regress"
    "$PG_REGRESS" --inputdir="$TOP" --outputdir="$CHECK/out_regress" --bindir="$PGBIN" \
        --dbname=shop_regress --host="$PGHOST" --port="$PORT" --user=postgres \
        "${regress[@]}" | tee "$CHECK/regress.log"
    p=$(grep -c "\.\.\. ok" "$CHECK/regress.log" || true)
    f=$(grep -c "\.\.\. FAILED" "$CHECK/regress.log" || true)
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" -gt 0 ] && [ -f "$CHECK/out_regress/regression.diffs" ] && head -200 "$CHECK/out_regress/regression.diffs"
fi

iso=()
for f in "$TOP"/specs/*.spec; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .spec)
    want "$n" && iso+=("$n")
done
if [ ${#iso[@]} -gt 0 ]; then
    echo "== isolation: ${iso[*]}"
    rm -rf "$CHECK/out_iso"
    "$PG_ISOLATION_REGRESS" --inputdir="$TOP" --outputdir="$CHECK/out_iso" --bindir="$PGBIN" \
        --dbname=shop_isolation --host="$PGHOST" --port="$PORT" --user=postgres \
        "${iso[@]}" | tee "$CHECK/iso.log"
    p=$(grep -c "\.\.\. ok" "$CHECK/iso.log" || true)
    f=$(grep -c "\.\.\. FAILED" "$CHECK/iso.log" || true)
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" -gt 0 ] && [ -f "$CHECK/out_iso/regression.diffs" ] && head -200 "$CHECK/out_iso/regression.diffs"
fi
cluster_stop "$DIR"
trap - EXIT

for t in "$TOP"/test/*/run.sh; do
    [ -e "$t" ] || continue
    n=$(basename "$(dirname "$t")")
    want "$n" || continue
    echo "== scripted: $n"
    if TOP="$TOP" PGBIN="$PGBIN" bash "$t" >"$CHECK/$n.log" 2>&1; then
        echo "ok $n"
        rm -rf "${CHECK:?}/$n"   # its clusters; kept only when it fails
        passed=$((passed + 1))
    else
        echo "FAILED $n (last lines of tmp_check/$n.log follow)"
        tail -40 "$CHECK/$n.log"
        failed=$((failed + 1))
    fi
done

# TAP tests: prove, one test file at a time, as PGXS's prove_check runs
# them, but against tmp_install (PATH, so initdb and postgres are this
# build's and load this build's shop.so) and as the cluster owner (initdb
# refuses root).  PostgreSQL::Test::Utils puts its logs in
# tmp_check/log/regress_log_<test> and the nodes' data directories in
# tmp_check/t_<test>_<node>_data; Cluster.pm removes those only when every
# test of the file passed.  PROVE_FLAGS passes further options to prove.
PROVE=${PROVE:-prove}
PERL_TEST_LIB="$PGXS_DIR/src/test/perl"
for t in "$TOP"/t/*.pl; do
    [ -e "$t" ] || continue
    n=$(basename "$t" .pl)
    want "t/$n.pl" || want "$n" || want "${n#[0-9][0-9][0-9]_}" || continue
    echo "== tap: t/$n.pl"
    rm -rf "$CHECK/log/regress_log_$n" "$CHECK"/t_"${n}"_*_data
    # shellcheck disable=SC2086
    if as_owner env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
        TESTDIR="$TOP" PATH="$PGBIN:$PATH" PG_REGRESS="$PG_REGRESS" \
        "$PROVE" -v -I "$PERL_TEST_LIB" -I "$TOP/t" ${PROVE_FLAGS:-} "t/$n.pl" \
        >"$CHECK/$n.log" 2>&1; then
        echo "ok $n"
        passed=$((passed + 1))
    else
        echo "FAILED $n (last lines of tmp_check/$n.log follow; the test's log is tmp_check/log/regress_log_$n)"
        tail -40 "$CHECK/$n.log"
        failed=$((failed + 1))
    fi
done

echo
echo "shop tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
