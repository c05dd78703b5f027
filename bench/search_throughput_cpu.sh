#!/usr/bin/env bash
# search_throughput_cpu.sh [ROUNDS [REPS]]: backend CPU per query of the
# search_throughput workload's statements (bench/workloads/search_throughput.sh),
# shop.search against the RUM baseline, per class and over the mix, on a
# kept bench cluster (make bench BENCH_KEEP=1 ...; PGHOST and PGPORT as it
# prints them).  On a shared machine queries per second say more about the
# other processes than about either system; the CPU time a backend spends
# on a statement (the first field of /proc/self/schedstat, nanoseconds on
# a CPU) moves far less with the load.
#
# The queries and the RUM table are those of the workload (the same SQL,
# made again here when absent: the workload drops its tables at the end).
# Each system's statement is PREPAREd, as pgbench -M prepared runs it, and
# its parameters are a class's rows of public.bench_tp_q; the workload's
# \gset lookup of the query row (the same for both) is left out.  Per
# round and system: a new session runs all 100 queries once (warm-up:
# caches, impact lists, plans), then for each class reads schedstat, runs
# the class's 20 queries REPS times (default 10) and reads it again.
# Rounds alternate which system goes first (default 3 rounds); SYSTEMS="shop"
# (or "rum") measures one only (e.g. between two builds of shop.so).
# Output: TSV lines "round system class queries ns_per_query".
set -euo pipefail
ROUNDS=${1:-3} REPS=${2:-10}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
P() { psql -X -At -q -d bench "$@"; }
TSV="to_tsvector('english', title || ' ' || coalesce(brand, '') || ' ' || coalesce(description, ''))"

if [ "$(P -c "SELECT count(*) FROM pg_class WHERE oid IN (to_regclass('public.bench_tp_q'), to_regclass('public.bench_rum'))")" != 2 ]; then
    echo "search_throughput_cpu: making public.bench_tp_q and public.bench_rum (as search_throughput.sh)" >&2
    P <<SQL >/dev/null
SET client_min_messages = warning;
DROP TABLE IF EXISTS public.bench_tp_q, public.bench_rum;
CREATE TABLE public.bench_tp_q (id int PRIMARY KEY, cls text, q text, filters jsonb,
                                tsq text, cats text);
WITH s AS (SELECT title, brand FROM shop.product TABLESAMPLE BERNOULLI (5) REPEATABLE (7) LIMIT 20000),
w AS (SELECT t.word, count(*) AS n FROM s CROSS JOIN LATERAL shop.search_tokens(s.title) t
       WHERE t.word ~ '^[a-z]{5,}$' GROUP BY t.word ORDER BY n DESC, t.word LIMIT 20),
wi AS (SELECT word, row_number() OVER (ORDER BY n DESC, word) AS i FROM w),
b AS (SELECT lower(brand) AS brand, row_number() OVER (ORDER BY count(*) DESC, lower(brand)) AS rn
        FROM s WHERE brand ~ '^[A-Za-z]+$' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 20),
sc AS (SELECT category_id FROM shop.product WHERE category_id IS NOT NULL
        GROUP BY 1 HAVING count(*) >= 20 ORDER BY count(*), 1 LIMIT 1),
x AS (SELECT wi.i, wi.word, coalesce(b.brand, '') AS brand,
             CASE WHEN length(wi.word) >= 6
                  THEN substr(wi.word, 1, 2) || substr(wi.word, 4, 1) || substr(wi.word, 3, 1) || substr(wi.word, 5)
                  ELSE substr(wi.word, 1, 2) || substr(wi.word, 4) END AS typo
        FROM wi LEFT JOIN b ON b.rn = 1 + (wi.i - 1) % (SELECT greatest(count(*), 1) FROM b))
INSERT INTO public.bench_tp_q
SELECT row_number() OVER (ORDER BY c.k, x.i), c.cls, c.q, c.filters, c.tsq, c.cats
  FROM x CROSS JOIN LATERAL (VALUES
      (1, 'common', x.word, '{}'::jsonb, plainto_tsquery('english', x.word)::text, '{}'),
      (2, 'two', trim(x.brand || ' ' || x.word), '{}', plainto_tsquery('english', trim(x.brand || ' ' || x.word))::text, '{}'),
      (3, 'typo', x.typo, '{}', plainto_tsquery('english', x.typo)::text, '{}'),
      (4, 'prefix', substr(x.word, 1, 3), '{}', to_tsquery('english', substr(x.word, 1, 3) || ':*')::text, '{}'),
      (5, 'filtered', x.word, jsonb_build_object('category_id', (SELECT category_id FROM sc)),
       plainto_tsquery('english', x.word)::text,
       (SELECT array_agg(d)::text FROM shop.category_descendants((SELECT category_id FROM sc)) d))
  ) c(k, cls, q, filters, tsq, cats);
CREATE TABLE public.bench_rum AS
SELECT product_id, category_id, $TSV AS tsv FROM shop.product WHERE status = 'active';
SET maintenance_work_mem = '512MB';
CREATE INDEX bench_rum_idx ON public.bench_rum USING rum (tsv rum_tsvector_ops);
ALTER TABLE public.bench_rum ADD PRIMARY KEY (product_id);
VACUUM ANALYZE public.bench_rum, public.bench_tp_q;
SQL
fi

cat >"$T/prep.sql" <<'SQL'
PREPARE shop_q(text, jsonb) AS
SELECT count(*), sum(length(s.title)) FROM shop.search($1, $2) s;
PREPARE rum_q(text, text) AS
SELECT count(*), sum(length(p.title)) FROM (
    SELECT r.product_id FROM public.bench_rum r
     WHERE r.tsv @@ $1::tsquery
       AND (cardinality($2::bigint[]) = 0 OR r.category_id = ANY ($2::bigint[]))
     ORDER BY r.tsv <=> $1::tsquery LIMIT 20) x
  JOIN shop.product p USING (product_id);
SQL
CLASSES=$(P -c "SELECT string_agg(cls, ' ' ORDER BY min) FROM (SELECT cls, min(id) FROM public.bench_tp_q GROUP BY cls) c")
for c in $CLASSES; do
    P -c "SELECT format('EXECUTE shop_q(%L, %L);', q, filters) FROM public.bench_tp_q WHERE cls = '$c' ORDER BY id" >"$T/shop.$c.sql"
    P -c "SELECT format('EXECUTE rum_q(%L, %L);', tsq, cats) FROM public.bench_tp_q WHERE cls = '$c' ORDER BY id" >"$T/rum.$c.sql"
done
NS="split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint"
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="shop rum"; else order="rum shop"; fi
    [ -n "${SYSTEMS:-}" ] && order=$SYSTEMS
    for sys in $order; do
        {
            cat "$T/prep.sql"
            echo "\\o /dev/null"
            for c in $CLASSES; do cat "$T/$sys.$c.sql"; done
            echo "\\o"
            for c in $CLASSES; do
                n=$(wc -l <"$T/$sys.$c.sql")
                echo "SELECT set_config('tp.t0', ($NS)::text, false) IS NULL;"
                echo "\\o /dev/null"
                for ((i = 0; i < REPS; i++)); do cat "$T/$sys.$c.sql"; done
                echo "\\o"
                echo "SELECT E'$r\\t$sys\\t$c\\t$((n * REPS))\\t' || (($NS) - current_setting('tp.t0')::bigint) / $((n * REPS));"
            done
        } >"$T/run.sql"
        P -f "$T/run.sql" | grep -v '^f$'
    done
done
