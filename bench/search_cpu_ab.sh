#!/usr/bin/env bash
# search_cpu_ab.sh BASE_SO NEW_SO [ROUNDS [REPS]]: backend CPU of shop.search's query
# classes (those of bench/workloads/search.sh: common word, brand + word,
# typo, prefix, small category, word in its top category, two very common
# words) with two builds of shop.so, alternated round by round on one kept
# bench cluster (make bench BENCH_KEEP=1 BENCH_ONLY=catalog_load), so both
# see the same machine load.  Each round installs one build's shop.so (a
# rename: running backends keep theirs; a cluster that preloads shop is
# restarted, as its backends would keep the postmaster's), opens a new session, runs a class's
# queries once to warm the caches and then REPS times more (default 20),
# and prints the CPU of those (utime + stime of the backend, /proc/self/stat, in ms).  Needs
# PGHOST PGPORT (the kept cluster) and TMP_INSTALL_LIB (the directory whose
# shop.so the cluster loads); the new build is left installed at the end.
# Output: TSV lines "round build class queries cpu_ms".  ROUNDS=0 only
# writes the queries (AB_SQL_DIR).
set -euo pipefail
BASE_SO=$1 NEW_SO=$2 ROUNDS=${3:-5} REPS=${4:-20}
: "${TMP_INSTALL_LIB:?}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
P() { psql -X -At -q -d bench "$@"; }

# the words (as bench/workloads/search.sh picks them)
P -F $'\t' >"$T/words.tsv" <<'SQL'
WITH s AS (SELECT title, brand FROM shop.product TABLESAMPLE BERNOULLI (5) REPEATABLE (42) LIMIT 20000),
w AS (SELECT t.word, count(*) AS n FROM s CROSS JOIN LATERAL shop.search_tokens(s.title) t
       WHERE t.word ~ '^[a-z]{4,}$' GROUP BY t.word ORDER BY n DESC, t.word LIMIT 20),
wi AS (SELECT word, row_number() OVER (ORDER BY n DESC, word) AS i FROM w),
b AS (SELECT lower(brand) AS brand, row_number() OVER (ORDER BY count(*) DESC, lower(brand)) AS rn
        FROM s WHERE brand ~ '^[A-Za-z]+$' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 20)
SELECT wi.word, coalesce(b.brand, ''),
       coalesce((SELECT l.path[1] FROM shop.product p TABLESAMPLE BERNOULLI (5) REPEATABLE (7)
                   JOIN shop.category l ON l.category_id = p.category_id
                  WHERE position(wi.word IN lower(p.title)) > 0
                  GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)::text, 'null')
  FROM wi LEFT JOIN b ON b.rn = 1 + (wi.i - 1) % (SELECT greatest(count(*), 1) FROM b)
 ORDER BY wi.i;
SQL
SMALLCAT=$(P -c "SELECT category_id FROM shop.product WHERE category_id IS NOT NULL
                  GROUP BY 1 HAVING count(*) >= 20 ORDER BY count(*), 1 LIMIT 1")
for c in common two typo prefix filtered cat_rel pair page3; do : >"$T/$c.sql"; done
while IFS=$'\t' read -r word brand cat; do
    if [ ${#word} -ge 6 ]; then ty="${word:0:2}${word:3:1}${word:2:1}${word:4}"; else ty="${word:0:2}${word:3}"; fi
    echo "SELECT count(*) FROM shop.search('$word');" >>"$T/common.sql"
    echo "SELECT count(*) FROM shop.search('$brand $word');" >>"$T/two.sql"
    [ ${#word} -ge 5 ] && echo "SELECT count(*) FROM shop.search('$ty');" >>"$T/typo.sql"
    echo "SELECT count(*) FROM shop.search('${word:0:3}');" >>"$T/prefix.sql"
    echo "SELECT count(*) FROM shop.search('$word', '{\"category_id\": $SMALLCAT}');" >>"$T/filtered.sql"
    echo "SELECT count(*) FROM shop.search('$word', '{\"category_id\": $cat}');" >>"$T/cat_rel.sql"
    echo "SELECT count(*) FROM shop.search('$word', lim => 20, off => 200);" >>"$T/page3.sql"
done <"$T/words.tsv"
mapfile -t TOP8 < <(cut -f1 "$T/words.tsv" | head -8)
for ((a = 0; a < ${#TOP8[@]}; a++)); do
    for ((b = a + 1; b < ${#TOP8[@]}; b++)); do
        echo "SELECT count(*) FROM shop.search('${TOP8[a]} ${TOP8[b]}');" >>"$T/pair.sql"
    done
done

# AB_SQL_DIR: keep the classes' queries there (for bench/search_callgrind_ab.sh)
[ -n "${AB_SQL_DIR:-}" ] && mkdir -p "$AB_SQL_DIR" && cp "$T"/*.sql "$AB_SQL_DIR"/
# A cluster that preloads shop (make bench's does) forks every backend with
# the postmaster's copy of the library, whatever shop.so is installed
# since: then a swap changes nothing until the cluster restarts (a round
# without restarts compared BASE_SO with itself: afilt1's results).  The
# cluster is PGHOST's (scripts/pgenv.sh's layout: DIR/data, DIR/server.log).
PRELOADED=$(P -c "SELECT current_setting('shared_preload_libraries') ~ '(^|[ ,])shop([ ,]|$)'")
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
install_so() {
    cp "$1" "$TMP_INSTALL_LIB/.shop.so.ab"
    mv -f "$TMP_INSTALL_LIB/.shop.so.ab" "$TMP_INSTALL_LIB/shop.so"
    if [ "$PRELOADED" = t ]; then
        as_owner "$TMP_INSTALL_LIB/../bin/pg_ctl" -D "$PGHOST/data" -l "$PGHOST/server.log" \
            -m fast -w -t 120 restart >/dev/null
    fi
}
cpu_ms() {  # utime + stime of this backend, ms
    echo "(SELECT ((string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' '))[12]::bigint
             + (string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' '))[13]::bigint) * 10)"
}
for ((r = 1; r <= ROUNDS; r++)); do
    # alternate which build goes first
    if ((r % 2)); then order="base new"; else order="new base"; fi
    for build in $order; do
        if [ "$build" = base ]; then install_so "$BASE_SO"; else install_so "$NEW_SO"; fi
        for c in common two typo prefix filtered cat_rel pair page3; do
            n=$(wc -l <"$T/$c.sql")
            {
                echo "\\o /dev/null"
                cat "$T/$c.sql"
                echo "\\o"
                echo "SELECT set_config('ab.t0', $(cpu_ms)::text, false) IS NULL;"
                echo "\\o /dev/null"
                for ((i = 0; i < REPS; i++)); do cat "$T/$c.sql"; done
                echo "\\o"
                echo "SELECT $(cpu_ms) - current_setting('ab.t0')::bigint;"
            } >"$T/run.sql"
            ms=$(P -f "$T/run.sql" | tail -1)
            printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$build" "$c" "$((REPS * n))" "$ms"
        done
    done
done
install_so "$NEW_SO"
