#!/usr/bin/env bash
# installcheck: `make installcheck` (PGXS: every pg_regress suite of sql/
# but server_log, and every isolation spec) passes against a server that is
# nothing like make test's: initdb's defaults (shop not preloaded, so no
# sweeper and no log hook until a backend loads shop; shop.sweep_interval
# 60; no max_prepared_transactions), its log written away from the data
# directory, a database name pg_regress chooses, and the C locale, whose
# default encoding is SQL_ASCII (the Makefile's ENCODING makes pg_regress
# create UTF8 databases). As README.md says, any
# running server where the user may create databases (as a superuser:
# shop is not a trusted extension) will do.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/installcheck"
PORT=$(free_port installcheck)
rm -rf "$DIR"
mkdir -p "$DIR/log"
[ "$(id -u)" = 0 ] && chown -R postgres: "$DIR"
as_owner env LC_ALL=C LANG=C "$PGBIN/initdb" -D "$DIR/data" -U postgres >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log"; exit 1; }
# only what a private cluster needs: its port and socket, nothing of shop's
printf "port = %s\nlisten_addresses = ''\nunix_socket_directories = '%s'\n" "$PORT" "$DIR" |
    as_owner tee -a "$DIR/data/postgresql.conf" >/dev/null
as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log/postgresql.log" -w -t 120 start >/dev/null ||
    { tail -30 "$DIR/log/postgresql.log"; exit 1; }
trap 'as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true' EXIT
"$PGBIN/psql" -X -h "$DIR" -p "$PORT" -U postgres -d postgres -Atc \
    "SELECT 'server: preload ' || quote_literal(current_setting('shared_preload_libraries')) ||
            ', max_prepared_transactions ' || current_setting('max_prepared_transactions') ||
            ', default encoding ' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'template1'"

# the command README.md gives, with the server in the environment; the
# results go to this test's directory, not into the source tree. Twice:
# the second run finds what the first left in the cluster (shop's roles,
# the regression databases), as on a server where it ran before.
for pass in 1 2; do
    status=0
    PGHOST="$DIR" PGPORT="$PORT" PGUSER=postgres \
        make -C "$TOP" --no-print-directory installcheck \
        EXTRA_REGRESS_OPTS="--outputdir=$DIR/out$pass" >"$DIR/installcheck$pass.log" 2>&1 || status=$?
    echo "== make installcheck, run $pass"
    grep -E '^(not ok |  *[0-9]+ of| All )|FAILED' "$DIR/installcheck$pass.log" || true
    if [ "$status" -ne 0 ]; then
        echo "make installcheck failed (exit $status)"
        for d in "$DIR/out$pass"/regression.diffs; do [ -f "$d" ] && head -100 "$d"; done
        exit 1
    fi
    [ "$(grep -c 'All [0-9]* tests passed' "$DIR/installcheck$pass.log")" = 2 ] ||
        { echo "the regress and isolation suites did not both run"; exit 1; }
done
echo "make installcheck passed twice against a server with initdb's defaults"
