-- search_filter_range: a filter's number that a bigint cannot hold, or a
-- category id with a fraction, is a malformed filter (22023, errors.md),
-- by the C preparation (no customer, no synonyms) and by shop._search_query
-- (a customer given) alike; numbers within range still filter (these
-- gave 22003 out of range, or 22P02 for 1.5, before)
\i sql/include/prelude.sql
SELECT shop.category_add('Drives') AS cat \gset
SELECT shop.product_upsert('FR-1', 'Blue drive', 1500, category_id => :cat) IS NOT NULL AS added;
SELECT shop.product_upsert('FR-2', 'Blue drive large', 9000, category_id => :cat) IS NOT NULL AS added;
SELECT f, pg_temp.err(format($$SELECT count(*) FROM shop.search('blue', %L)$$, f)) AS c_path,
          pg_temp.err(format($$SELECT count(*) FROM shop.search('blue', %L, 'relevance', 20, 0, 7)$$, f)) AS sql_path
  FROM (VALUES ('{"price_min": 1e300}'), ('{"price_max": -1e300}'),
               ('{"price_min": 9223372036854775808}'),
               ('{"category_id": 99999999999999999999}'), ('{"category_id": 1.5}'),
               ('{"category_id": -1e30}')) v(f)
 ORDER BY f;
-- within range: the filters as before (a price in cents, rounded)
SELECT count(*) AS cheap FROM shop.search('blue', '{"price_max": 2000.4}');
SELECT count(*) AS cheap_for_7 FROM shop.search('blue', '{"price_max": 2000}', 'relevance', 20, 0, 7);
SELECT count(*) AS in_category FROM shop.search('blue', jsonb_build_object('category_id', :cat));
SELECT count(*) AS huge_max FROM shop.search('blue', '{"price_max": 9223372036854775807}');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
