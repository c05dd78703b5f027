#!/usr/bin/env bash
# search: shop.search latency by query class on the synthetic catalog
# (BENCH_SCALE products), against tsvector + GIN + ts_rank top-20 and
# pg_trgm word similarity top-20 over the same rows, measured in the same
# run; autocomplete and facets; index build time and size against GIN; and
# latency after a stream of single-row updates (pending list) and after
# VACUUM folds them in.
#
# Query words come from the catalog itself (the most frequent title words
# and brands of a sample), so the classes mean the same at every scale:
#   common      one frequent word
#   two words   brand + frequent word
#   typo        a frequent word of 5+ letters with two letters swapped
#               (6+) or its third letter dropped (5)
#   prefix      the first 3 letters of a frequent word (search-as-you-type)
#   filtered    a frequent word within one of the smallest categories
# BENCH_SEARCH_UPDATES (default min(100000, BENCH_SCALE / 10)) single-row
# updates are applied for the "after updates" rows.  BENCH_SEARCH_BASELINES=0
# measures shop alone (no GIN / pg_trgm builds or queries): for runs at a
# scale where the baselines would take hours (12M products: tsvector +
# ts_rank needs seconds per common word).
# BENCH_SEARCH_REBUILD=0 skips the timed copy of shop_search and reports
# the build time the catalog load recorded for the index itself.
set -euo pipefail
. "$TOP/bench/lib.sh"
T=$BENCH_TMP
NUPD=${BENCH_SEARCH_UPDATES:-$(( BENCH_SCALE / 10 < 100000 ? BENCH_SCALE / 10 : 100000 ))}
BASELINES=${BENCH_SEARCH_BASELINES:-1}
REBUILD=${BENCH_SEARCH_REBUILD:-1}
TSV="to_tsvector('english', title || ' ' || coalesce(brand, '') || ' ' || coalesce(description, ''))"
TRG="(title || ' ' || coalesce(brand, ''))"

echo "## Search latency ($BENCH_SCALE products)"
echo

# words from a sample of the catalog
bench_psql -c "SET client_min_messages = warning" >/dev/null
bench_psql <<'SQL' >/dev/null
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_words;
CREATE TABLE bench_words AS
WITH s AS (SELECT title, brand FROM shop.product TABLESAMPLE BERNOULLI (5) REPEATABLE (42) LIMIT 20000),
w AS (SELECT t.word, count(*) AS n FROM s CROSS JOIN LATERAL shop.search_tokens(s.title) t
       WHERE t.word ~ '^[a-z]{4,}$' GROUP BY t.word ORDER BY n DESC, t.word LIMIT 20),
wi AS (SELECT word, row_number() OVER (ORDER BY n DESC, word) AS i FROM w),
b AS (SELECT lower(brand) AS brand, row_number() OVER (ORDER BY count(*) DESC, lower(brand)) AS rn
        FROM s WHERE brand ~ '^[A-Za-z]+$' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 20)
SELECT wi.i, wi.word, coalesce(b.brand, '') AS brand
  FROM wi LEFT JOIN b ON b.rn = 1 + (wi.i - 1) % (SELECT greatest(count(*), 1) FROM b);
SQL
bench_psql -F $'\t' -c "SELECT word, brand FROM bench_words ORDER BY i" >"$T/words.tsv"
# issue 12's classes: per word the top-level category where it is most
# frequent (a storefront's "black" in Cables, as in search_sorted) and the
# brand most frequent among its matches (what a shopper clicks in the brand
# facet), both from a sample; the price band is the sample's middle half
bench_psql -F $'\t' <<'SQL' >"$T/words_i12.tsv"
WITH s AS (SELECT p.title, p.brand, l.path[1] AS top
             FROM shop.product p TABLESAMPLE BERNOULLI (5) REPEATABLE (7)
             JOIN shop.category l ON l.category_id = p.category_id)
SELECT w.word,
       coalesce((SELECT s.top FROM s WHERE position(w.word IN lower(s.title)) > 0
                  GROUP BY s.top ORDER BY count(*) DESC, s.top LIMIT 1)::text, 'null'),
       coalesce((SELECT s.brand FROM s WHERE position(w.word IN lower(s.title)) > 0
                   AND s.brand ~ '^[A-Za-z0-9 &.-]+$'
                  GROUP BY s.brand ORDER BY count(*) DESC, s.brand LIMIT 1), '')
  FROM bench_words w ORDER BY w.i;
SQL
read -r PRICE_LO PRICE_HI < <(bench_psql -F ' ' -c "SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY price_cents),
        percentile_disc(0.75) WITHIN GROUP (ORDER BY price_cents)
   FROM shop.product TABLESAMPLE BERNOULLI (5) REPEATABLE (7) WHERE price_cents IS NOT NULL")
SMALLCAT=$(bench_psql -c "SELECT category_id FROM shop.product WHERE category_id IS NOT NULL
                           GROUP BY 1 HAVING count(*) >= 20 ORDER BY count(*), 1 LIMIT 1")
[ -s "$T/words.tsv" ] || { echo "(no words found in the catalog)"; exit 1; }

typo() {  # swap letters 3 and 4 of words with 6+ letters, else drop letter 3
    local w=$1
    if [ ${#w} -ge 6 ]; then echo "${w:0:2}${w:3:1}${w:2:1}${w:4}"; else echo "${w:0:2}${w:3}"; fi
}
: >"$T/common.sql"; : >"$T/two.sql"; : >"$T/typo.sql"; : >"$T/prefix.sql"; : >"$T/filtered.sql"
: >"$T/ac.sql"; : >"$T/facets.sql"; : >"$T/facets_attr.sql"
: >"$T/ts_common.sql"; : >"$T/ts_two.sql"; : >"$T/ts_typo.sql"; : >"$T/ts_prefix.sql"; : >"$T/ts_filtered.sql"
: >"$T/tg_common.sql"; : >"$T/tg_typo.sql"
for rep in 1 2 3 4 5; do
    while IFS=$'\t' read -r word brand; do
        ty=$(typo "$word"); pf=${word:0:3}
        echo "SELECT count(*) FROM shop.search('$word');" >>"$T/common.sql"
        echo "SELECT count(*) FROM shop.search('$brand $word');" >>"$T/two.sql"
        # typos are allowed from 5 letters: shorter words make no typo query
        [ ${#word} -ge 5 ] && echo "SELECT count(*) FROM shop.search('$ty');" >>"$T/typo.sql"
        echo "SELECT count(*) FROM shop.search('$pf');" >>"$T/prefix.sql"
        echo "SELECT count(*) FROM shop.search('$word', '{\"category_id\": $SMALLCAT}');" >>"$T/filtered.sql"
        echo "SELECT count(*) FROM shop.autocomplete('$pf');" >>"$T/ac.sql"
        [ "$rep" -le 1 ] && echo "SELECT shop.search_facets('$word') -> 'total';" >>"$T/facets.sql"
        # a storefront's facet panel: top 10 brands and categories, price,
        # rating and the 3 attribute keys most matches hold (10 values each)
        [ "$rep" -le 1 ] && echo "SELECT shop.search_facets('$word', '{}', 10, 3) -> 'total';" >>"$T/facets_attr.sql"
        for c in common two typo prefix filtered; do
            if [ "$c" = typo ] && [ ${#word} -lt 5 ]; then continue; fi
            case $c in
                common) q="$word" ;; two) q="$brand $word" ;; typo) q="$ty" ;; prefix) q="$pf:*" ;; filtered) q="$word" ;;
            esac
            if [ "$c" = prefix ]; then tq="to_tsquery('english', '$q')"; else tq="plainto_tsquery('english', '$q')"; fi
            extra=""; [ "$c" = filtered ] && extra="AND category_id = ANY (shop.category_descendants($SMALLCAT))"
            echo "SELECT count(*) FROM (SELECT product_id FROM shop.product WHERE $TSV @@ $tq $extra ORDER BY ts_rank($TSV, $tq) DESC LIMIT 20) x;" >>"$T/ts_$c.sql"
        done
        echo "SELECT count(*) FROM (SELECT product_id FROM shop.product WHERE '$word' <% $TRG ORDER BY word_similarity('$word', $TRG) DESC LIMIT 20) x;" >>"$T/tg_common.sql"
        [ ${#word} -ge 5 ] && echo "SELECT count(*) FROM (SELECT product_id FROM shop.product WHERE '$ty' <% $TRG ORDER BY word_similarity('$ty', $TRG) DESC LIMIT 20) x;" >>"$T/tg_typo.sql"
    done <"$T/words.tsv"
done

# issue 12's target classes that the classes above do not cover
: >"$T/cat_rel.sql"; : >"$T/pair.sql"; : >"$T/facets_cat.sql"; : >"$T/facets_brand.sql"; : >"$T/facets_price.sql"
for rep in 1 2 3 4 5; do
    while IFS=$'\t' read -r word cat topbrand; do
        echo "SELECT count(*) FROM shop.search('$word', '{\"category_id\": $cat}');" >>"$T/cat_rel.sql"
        if [ "$rep" -le 1 ]; then
            # the storefront's facet panel (top 10 + 3 attribute facets) once
            # the shopper has picked a category, a brand or a price band
            echo "SELECT shop.search_facets('$word', '{\"category_id\": $cat}', 10, 3) -> 'total';" >>"$T/facets_cat.sql"
            [ -n "$topbrand" ] && echo "SELECT shop.search_facets('$word', '{\"brand\": \"$topbrand\"}', 10, 3) -> 'total';" >>"$T/facets_brand.sql"
            echo "SELECT shop.search_facets('$word', '{\"price_min\": $PRICE_LO, \"price_max\": $PRICE_HI}', 10, 3) -> 'total';" >>"$T/facets_price.sql"
        fi
    done <"$T/words_i12.tsv"
done
# two very common words: every pair of the 8 most frequent, 3 times
mapfile -t TOP8 < <(cut -f1 "$T/words.tsv" | head -8)
for rep in 1 2 3; do
    for ((a = 0; a < ${#TOP8[@]}; a++)); do
        for ((b = a + 1; b < ${#TOP8[@]}; b++)); do
            echo "SELECT count(*) FROM shop.search('${TOP8[a]} ${TOP8[b]}');" >>"$T/pair.sql"
        done
    done
done

# baselines' indexes, timed; shop_search rebuilt as a copy, timed the same way
bench_psql -c "SET client_min_messages = warning; DROP INDEX IF EXISTS shop.bench_search_copy, shop.bench_search_gin, shop.bench_search_trgm" >/dev/null
# BENCH_SEARCH_REBUILD=0: no timed copy; the build seconds are those the
# catalog load recorded for shop.product_search_idx itself (BENCH_LOAD_STATS,
# maintenance_work_mem 1GB there): at 12M products the copy costs minutes
# and another index's worth of disk
SS_BUILD=""
if [ "$REBUILD" = 0 ] && [ -s "${BENCH_LOAD_STATS:-}" ]; then
    SS_BUILD=$(awk -F'\t' '$1 == "index" && $2 == "shop.product_search_idx" { v = $3 } END { if (v != "") print v " (catalog load)" }' "$BENCH_LOAD_STATS")
fi
if [ -z "$SS_BUILD" ]; then
    bench_time bench_psql -c "SET maintenance_work_mem = '512MB'; CREATE INDEX bench_search_copy ON shop.product USING shop_search (shop.search_doc(title, brand, description, category_id, price_cents, rating_avg::real, in_stock, popularity))" >/dev/null
    SS_BUILD=$BENCH_SECONDS
fi
if [ "$BASELINES" != 0 ]; then
    bench_time bench_psql -c "SET maintenance_work_mem = '512MB'; CREATE INDEX bench_search_gin ON shop.product USING gin (($TSV))" >/dev/null
    GIN_BUILD=$BENCH_SECONDS
    bench_time bench_psql -c "SET maintenance_work_mem = '512MB'; CREATE INDEX bench_search_trgm ON shop.product USING gin ($TRG gin_trgm_ops)" >/dev/null
    TRGM_BUILD=$BENCH_SECONDS
fi
bench_psql -c "DROP INDEX IF EXISTS shop.bench_search_copy" >/dev/null
bench_psql -c "VACUUM ANALYZE shop.product" >/dev/null

echo "### Index build and size"
echo
if [ "$BASELINES" != 0 ]; then
    {
        printf 'index\tbuild seconds\tsize\tsize vs GIN\n'
        printf 'shop_search (title, brand, description + stored values)\t%s\t%s\t%s\n' "$SS_BUILD" \
            "$(bench_size shop.product_search_idx)" \
            "$(bench_ratio "$(bench_psql -c "SELECT pg_relation_size('shop.product_search_idx')")" "$(bench_psql -c "SELECT pg_relation_size('shop.bench_search_gin')")")x"
        printf 'GIN tsvector (same text)\t%s\t%s\t1x\n' "$GIN_BUILD" "$(bench_size shop.bench_search_gin)"
        printf 'GIN pg_trgm (title, brand)\t%s\t%s\t\n' "$TRGM_BUILD" "$(bench_size shop.bench_search_trgm)"
    } | bench_md_table
else
    {
        printf 'index\tbuild seconds\tsize\n'
        printf 'shop_search (title, brand, description + stored values)\t%s\t%s\n' "$SS_BUILD" \
            "$(bench_size shop.product_search_idx)"
    } | bench_md_table
    echo
    echo "Baselines not measured at this scale (BENCH_SEARCH_BASELINES=0)."
fi
echo

echo "### Latency per query class (top 20, one client)"
echo
rows="$T/rows.tsv"; : >"$rows"
for c in common two typo prefix filtered; do
    bench_sql_latency "shop.search: $c" "$T/$c.sql" >>"$rows"
    # baselines take a second or more per query: no warm-up pass for them
    # (the ~10 ms a new session pays is noise there), which halves the run
    [ "$BASELINES" != 0 ] && BENCH_WARMUP=0 bench_sql_latency "tsvector+ts_rank: $c" "$T/ts_$c.sql" >>"$rows"
done
if [ "$BASELINES" != 0 ]; then
    BENCH_WARMUP=0 bench_sql_latency "pg_trgm: common" "$T/tg_common.sql" >>"$rows"
    BENCH_WARMUP=0 bench_sql_latency "pg_trgm: typo" "$T/tg_typo.sql" >>"$rows"
fi
bench_sql_latency "shop.autocomplete (3 letters)" "$T/ac.sql" >>"$rows"
bench_sql_latency "shop.search_facets: common" "$T/facets.sql" >>"$rows"
bench_sql_latency "shop.search_facets: common, top 10 + 3 attribute facets" "$T/facets_attr.sql" >>"$rows"
if [ "$BASELINES" != 0 ]; then
    bench_md_table_vs "tsvector+ts_rank: common" <"$rows"
else
    bench_md_table_vs "shop.search: common" <"$rows"
fi
echo
echo "tsvector finds nothing for the typo class (its rows count queries, not hits); the"
echo "prefix class uses to_tsquery('xyz:*'). Words: $(cut -f1 "$T/words.tsv" | head -8 | paste -sd, -), ...;"
echo "filtered: category $SMALLCAT (and descendants)."
echo

echo "### Issue 12 targets (top 20, one client)"
echo
rows12="$T/rows12.tsv"; : >"$rows12"
bench_sql_latency "shop.search: common + its category, relevance" "$T/cat_rel.sql" >>"$rows12"
bench_sql_latency "shop.search: two very common words" "$T/pair.sql" >>"$rows12"
bench_sql_latency "shop.search_facets: common + its category, top 10 + 3 attribute facets" "$T/facets_cat.sql" >>"$rows12"
bench_sql_latency "shop.search_facets: common + its top brand, top 10 + 3 attribute facets" "$T/facets_brand.sql" >>"$rows12"
bench_sql_latency "shop.search_facets: common + price band, top 10 + 3 attribute facets" "$T/facets_price.sql" >>"$rows12"
cat "$rows" "$rows12" >"$T/rows_all.tsv"
# target row of issue 12 | class (a row of this workload, or of another
# workload named in brackets) | 1M p99 target | 12M p99 target
{
    printf 'target row\tclass\tqueries\tp50 ms\tp99 ms\t1M p99 target\t12M p99 target\n'
    while IFS=$'\t' read -r trow class t1 t12; do
        case $class in
            \(*) printf '%s\t%s\t\t\t\t%s\t%s\n' "$trow" "$class" "$t1" "$t12" ;;
            *) awk -F'\t' -v c="$class" -v r="$trow" -v t1="$t1" -v t12="$t12" '
                   $1 == c { printf "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r, c, $7 + $8, $4, $6, t1, t12; found = 1 }
                   END { if (!found) printf "%s\t%s (not measured)\t\t\t\t%s\t%s\n", r, c, t1, t12 }' "$T/rows_all.tsv" ;;
        esac
    done <<'TARGETS'
common word, relevance	shop.search: common	< 10 ms	< 60 ms
common word + category, relevance	shop.search: common + its category, relevance	< 10 ms	< 60 ms
common word, price / rating / newest, with and without category	(search_sorted: common[ + category], <sort>)	< 10 ms	< 60 ms
common word + attribute filter (colour)	(search_sorted: common + colour, relevance / price_asc)	< 10 ms	< 60 ms
facets: brand + category + price + 3 attribute facets	shop.search_facets: common, top 10 + 3 attribute facets	< 20 ms	< 100 ms
same facets, category filter	shop.search_facets: common + its category, top 10 + 3 attribute facets	< 20 ms	< 100 ms
same facets, brand filter	shop.search_facets: common + its top brand, top 10 + 3 attribute facets	< 20 ms	< 100 ms
same facets, price filter	shop.search_facets: common + price band, top 10 + 3 attribute facets	< 20 ms	< 100 ms
two very common words, relevance	shop.search: two very common words	< 8 ms	< 50 ms
every class of today's search bench	(the table above: no worse than the last run)	no worse	no worse
TARGETS
} | bench_md_table
echo
echo "Targets are for 1M and 12M products (this run: $BENCH_SCALE). Category and"
echo "brand per word: $(awk -F'\t' '{ printf "%s%s (%s, %s)", (NR > 1 ? ", " : ""), $1, $2, ($3 == "" ? "-" : $3) }' "$T/words_i12.tsv");"
echo "price band: $PRICE_LO to $PRICE_HI cents (the middle half of a sample). Two very common"
echo "words: the $(( ${#TOP8[@]} * (${#TOP8[@]} - 1) / 2 )) pairs of the 8 most frequent, 3 times each."
echo

echo "### After $NUPD single-row updates"
echo
MINID=$(bench_psql -c "SELECT min(product_id) FROM shop.product")
MAXID=$(bench_psql -c "SELECT max(product_id) FROM shop.product")
cat >"$T/upd.sql" <<SQL
\set id random($MINID, $MAXID)
UPDATE shop.product SET popularity = popularity + 1 WHERE product_id = :id;
SQL
bench_psql -c "ALTER TABLE shop.product SET (autovacuum_enabled = false)" >/dev/null
"${PGBIN:+$PGBIN/}pgbench" -n -f "$T/upd.sql" -c 4 -j 2 -t $(( NUPD / 4 )) >"$T/upd.txt" 2>&1 || true
rows2="$T/rows2.tsv"; : >"$rows2"
bench_psql -c "SELECT 'fresh', 0" >/dev/null
grep 'shop.search: common' "$rows" | sed 's/^shop.search: common/fresh build: common/' >>"$rows2"
PENDING=$(bench_psql -c "SELECT shop.search_index_info('shop.product_search_idx') -> 'pending'")
bench_sql_latency "after updates (pending $PENDING): common" "$T/common.sql" >>"$rows2"
bench_time bench_psql -c "VACUUM shop.product" >/dev/null
VAC=$BENCH_SECONDS
bench_sql_latency "after VACUUM (${VAC}s): common" "$T/common.sql" >>"$rows2"
bench_psql -c "ALTER TABLE shop.product RESET (autovacuum_enabled)" >/dev/null
bench_md_table_vs "fresh build: common" <"$rows2"
echo
echo "Index after: $(bench_psql -c "SELECT shop.search_index_info('shop.product_search_idx') - 'language'")"
bench_psql -c "DROP INDEX IF EXISTS shop.bench_search_gin, shop.bench_search_trgm; DROP TABLE IF EXISTS bench_words" >/dev/null
