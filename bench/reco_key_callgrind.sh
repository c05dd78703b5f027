#!/usr/bin/env bash
# reco_key_callgrind.sh DATA INST_LIB CUSTOMERS BASE_SO NEW_SO [EXPERIMENT]:
# instructions per first shop.recommend(c, 10) (or, with EXPERIMENT,
# shop.recommend(c, 10, EXPERIMENT)) for two builds of shop.so, counted by
# callgrind in a single-user backend on the stopped bench cluster DATA.
# CUSTOMERS: a file of customer ids, one a line (at least 400).  Per build:
# a read-only pass of the first 400 without the experiment (buffers warm,
# no cache written; with EXPERIMENT its impressions emptied first), then
# the first calls (cache written) of customers 101 to 100 + N for N = 100
# and N = 300, each run on a copy of nothing: the cache is emptied first.
# Per call = (total N=300 - total N=100) / 200.  INST_LIB is the directory
# whose shop.so the installation's postgres loads (each build is put there
# in turn; the new one is left).  CG_DB: the database (default bench; the
# recommend_speed history is in shop_reco_speed).  Statements that fail
# are counted too: check with CG_KEEP (callgrind files kept as CG_KEEP.base,
# .new) that EmitErrorReport is absent.  CG_PRELUDE: a statement run first
# (e.g. "SELECT setseed(0.5)": the same draws for the impression buffer's
# moves in every run); CG_BUILDS: "new" to count only NEW_SO.  Output: TSV "build instructions_per_call".
set -euo pipefail
DATA=$1 LIB=$2 CUST=$3 BASE_SO=$4 NEW_SO=$5 EXP=${6:-}
BIN=$(dirname "$LIB")/bin
T=$(mktemp -d)
chmod 777 "$T"
trap 'rm -rf "$T"' EXIT
arg=""
[ -n "$EXP" ] && arg=", '$EXP'"
install_so() {
    cp "$1" "$LIB/.shop.so.cg"
    mv -f "$LIB/.shop.so.cg" "$LIB/shop.so"
}
total() { awk '/^(totals|summary):/ { print $2; exit }' "$1"; }
mk() {  # mk N: the run's statements
    echo "${CG_PRELUDE:-}"
    echo "TRUNCATE shop.recommend_cache"
    [ -n "$EXP" ] && echo "TRUNCATE shop.experiment_impression_recent, shop.experiment_impression"
    echo "SET default_transaction_read_only = on"
    head -400 "$CUST" | awk -v a="" '{ printf "SELECT count(*) FROM shop.recommend(%s, 10%s)\n", $1, a }'
    echo "SET default_transaction_read_only = off"
    sed -n "101,$((100 + $1))p" "$CUST" | awk -v a="$arg" '{ printf "SELECT count(*) FROM shop.recommend(%s, 10%s)\n", $1, a }'
}
mk 100 >"$T/one.sql"
mk 300 >"$T/two.sql"
for build in ${CG_BUILDS:-base new}; do
    if [ "$build" = base ]; then install_so "$BASE_SO"; else install_so "$NEW_SO"; fi
    for f in one two; do
        runuser -u postgres -- valgrind --tool=callgrind --callgrind-out-file="$T/cg.$f" \
            "$BIN/postgres" --single -D "$DATA" -c shared_buffers=1GB "${CG_DB:-bench}" <"$T/$f.sql" >/dev/null 2>"$T/err" ||
            { cat "$T/err" >&2; exit 1; }
    done
    [ -n "${CG_KEEP:-}" ] && cp "$T/cg.two" "$CG_KEEP.$build"
    printf '%s\t%s\n' "$build" "$(( ($(total "$T/cg.two") - $(total "$T/cg.one")) / 200 ))"
done
install_so "$NEW_SO"
