#!/usr/bin/env bash
# search_callgrind_ab.sh DATA INST_LIB SQL_DIR BASE_SO NEW_SO: instructions per
# query of each class of SQL_DIR (bench/search_cpu_ab.sh with AB_SQL_DIR,
# ROUNDS=0) for two builds of shop.so, counted by callgrind in a single-user
# backend on the stopped bench cluster DATA (deterministic, unlike CPU time
# on a shared machine).  Per build and class: one run with the class's
# queries once (the warm-up: caches, block bounds, impact lists) and one
# with them twice; the difference, divided by the number of queries, is
# what a warm query costs.  INST_LIB is the directory whose shop.so the
# installation's postgres loads (a rename puts each build there; the new
# one is left).  CG_PRELUDE: statements run first in both runs (e.g.
# "SET shop.search_intent_cache = 86400;": under callgrind a run outlasts
# the intent cache's 60 seconds, and the answers worked out again would
# count as the queries' work).  Output: TSV lines "class build queries
# instructions_per_query".
set -euo pipefail
DATA=$1 LIB=$2 SQLS=$3 BASE_SO=$4 NEW_SO=$5
CLASSES=${CLASSES:-common two typo prefix filtered cat_rel pair page3}
BIN=$(dirname "$LIB")/bin
T=$(mktemp -d)
chmod 777 "$T"
trap 'rm -rf "$T"' EXIT
install_so() {
    cp "$1" "$LIB/.shop.so.cg"
    mv -f "$LIB/.shop.so.cg" "$LIB/shop.so"
}
total() {  # instructions of a callgrind run
    awk '/^(totals|summary):/ { print $2; exit }' "$1"
}
for c in $CLASSES; do
    n=$(wc -l <"$SQLS/$c.sql")
    { echo "${CG_PRELUDE:-}"; cat "$SQLS/$c.sql"; } >"$T/one.sql"
    { echo "${CG_PRELUDE:-}"; cat "$SQLS/$c.sql" "$SQLS/$c.sql"; } >"$T/two.sql"
    for build in base new; do
        if [ "$build" = base ]; then install_so "$BASE_SO"; else install_so "$NEW_SO"; fi
        for f in one two; do
            runuser -u postgres -- valgrind --tool=callgrind --callgrind-out-file="$T/cg.$f" \
                "$BIN/postgres" --single -D "$DATA" bench <"$T/$f.sql" >/dev/null 2>"$T/err" ||
                { cat "$T/err" >&2; exit 1; }
        done
        printf '%s\t%s\t%s\t%s\n' "$c" "$build" "$n" \
            "$(( ($(total "$T/cg.two") - $(total "$T/cg.one")) / n ))"
    done
done
install_so "$NEW_SO"
