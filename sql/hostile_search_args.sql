-- hostile_search_args: the global argument of shop.search_stats (and of
-- the router's steps shop._search_routed and shop._search_facets_routed)
-- is the router's sums: an object of no_typos, two_typos, global (the
-- statistics) and intent_top.  Given otherwise, the statistics at the top
-- level ('{"docs": -1}'), it was 22023 "unknown search query key" naming
-- the keys of a search query, which the caller never wrote; a query key
-- given there (price_max) silently replaced the caller's filters.  Now
-- 22023 "malformed search statistics" naming the argument's keys.
-- Also: a NULL top of shop.search_facets is every value (docs/search.md),
-- as the two-argument call; a NULL attributes is 22023.
\i sql/include/prelude.sql
-- the SQLSTATE, message and detail of q's error
CREATE FUNCTION pg_temp.err_detail(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    d text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || d;
END $f$;

SELECT shop.product_upsert('MUG-1', 'Blue mug', 900) AS p1 \gset
SELECT shop.product_upsert('MUG-2', 'Red mug', 2900) AS p2 \gset

-- the router's shape: accepted
SELECT jsonb_typeof(shop.search_stats('mug', '{}', '{}')) AS empty_global;
SELECT s -> 'docs' AS docs FROM shop.search_stats('mug') s \gset
SELECT jsonb_array_length(shop.search_stats('mug', '{}',
           jsonb_build_object('no_typos', '["mug"]'::jsonb, 'two_typos', '[]'::jsonb,
                              'global', jsonb_build_object('docs', :docs, 'lengths', '[4, 0, 0]'::jsonb,
                                                           'max_popularity', 0, 'df', '[2]'::jsonb)))
                           -> 'intent_top') AS intent_rows;
-- anything else: 22023 malformed search statistics, with what is wrong
SELECT pg_temp.err_detail($$SELECT shop.search_stats('mug', '{}', '{"docs": -1}')$$) AS top_level_stat;
SELECT pg_temp.err_detail($$SELECT shop.search_stats('mug', '{}', '[]')$$) AS an_array;
SELECT pg_temp.err_detail($$SELECT count(*) FROM shop._search_routed('mug', '{}', 'relevance', 10, 0, NULL,
                                                                     '{"price_max": 1000}')$$) AS a_filter;
SELECT pg_temp.err_detail($$SELECT shop._search_facets_routed('mug', '{}', '{"q": "cup"}')$$) AS a_query;
SELECT pg_temp.err_detail($$SELECT shop._search_facets_routed('mug', '{}', '"mug"', 0)$$) AS a_string;
-- the router's own sums still score (and price_max is the caller's filter)
SELECT count(*) FROM shop._search_routed('mug', '{"price_max": 1000}', 'relevance', 10, 0, NULL,
                                         '{"no_typos": ["mug"], "two_typos": []}');
SELECT shop._search_facets_routed('mug', '{}', '{"no_typos": ["mug"]}') -> 'total' AS total;

-- search_facets: NULL top is every value, the two-argument call
SELECT shop.search_facets('mug', '{}', NULL) = shop.search_facets('mug', '{}') AS null_top_is_all;
SELECT shop.search_facets('mug', '{}', NULL, 0) -> 'brand_other' AS null_top_other;
SELECT pg_temp.err($$SELECT shop.search_facets('mug', '{}', 5, NULL)$$) AS null_attributes;
SELECT pg_temp.err($$SELECT shop.search_facets('mug', '{}', 0)$$) AS top_zero;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
