-- search_facet_filters: shop.search_facets with category, brand, price and
-- rating filters counts the documents of index segments from the facet
-- column the index keeps (fcol pages, issue 12 fcol1; before, each
-- backend's copy in shop.search_facet_cache), the filters applied to its
-- values; counts equal a GROUP BY over the matching rows, with the
-- column and without it, after updates that change prices, a VACUUM that
-- flags documents dead, folds and a REINDEX.
\i sql/include/prelude.sql
SELECT shop.category_add('Lamps') AS lamps \gset
SELECT shop.category_add('Desk lamps', :lamps) AS desk \gset
SELECT shop.category_add('Bulbs') AS bulbs \gset
ALTER TABLE shop.product SET (autovacuum_enabled = off);
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, rating_sum, rating_count,
                          in_stock, status, attributes)
SELECT 'Q' || i, (ARRAY['quokka lamp', 'quokka bulb', 'quokka desk lamp', 'wombat lamp'])[1 + i % 4]
                 || ' ' || i,
       (ARRAY['Lumen', 'lumen', 'Brightco', 'Acme', NULL])[1 + (i * 7) % 5],
       (ARRAY[:lamps, :desk, :bulbs, NULL])[1 + (i * 3) % 4],
       150 * ((i * 13) % 800),
       (i % 5) * ((i / 5) % 3), (i / 5) % 3,
       i % 3 <> 0, CASE WHEN i % 50 = 0 THEN 'draft' ELSE 'active' END,
       jsonb_build_object('color', (ARRAY['red', 'black', 'white'])[1 + (i * 5) % 3])
  FROM generate_series(1, 3000) i;
-- two segments (CREATE INDEX's, then a fold by VACUUM) and a pending list
REINDEX INDEX shop.product_search_idx;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status)
SELECT 'R' || i, 'quokka lamp shade ' || i, 'Shadeco', :lamps, 2000 + i, 'active'
  FROM generate_series(1, 400) i;
VACUUM shop.product;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status)
SELECT 'P' || i, 'quokka bulb pack ' || i, 'Lumen', :bulbs, 500 + i, 'active'
  FROM generate_series(1, 100) i;
RESET client_min_messages;

-- every facet but the names, against a GROUP BY over the matching rows
-- (the filters as SQL conditions, not through the index)
CREATE FUNCTION pg_temp.truth(q text, f jsonb) RETURNS jsonb LANGUAGE sql AS $f$
    WITH m AS MATERIALIZED (
        SELECT lower(p.brand) AS brand, p.category_id, p.price_cents, p.rating_avg
          FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity)
               OPERATOR(shop.@@@) shop._search_query(q, '{}', NULL)
           AND p.status = 'active'
           AND (NOT f ? 'category_id' OR p.category_id IN
                (SELECT c.category_id FROM shop.category c
                  WHERE c.category_id = (f ->> 'category_id')::bigint
                     OR c.parent_id = (f ->> 'category_id')::bigint))
           AND (NOT f ? 'brand' OR lower(p.brand) = lower(f ->> 'brand'))
           AND (NOT f ? 'price_min' OR p.price_cents >= (f ->> 'price_min')::bigint)
           AND (NOT f ? 'price_max' OR p.price_cents <= (f ->> 'price_max')::bigint)
           AND (NOT f ? 'rating_min' OR p.rating_avg >= (f ->> 'rating_min')::numeric)
           AND (NOT f ? 'in_stock' OR p.in_stock = (f ->> 'in_stock')::boolean))
    SELECT jsonb_build_object(
        'total', (SELECT count(*) FROM m),
        'brand', (SELECT coalesce(jsonb_object_agg(brand, n), '{}')
                    FROM (SELECT brand, count(*) n FROM m WHERE brand IS NOT NULL GROUP BY 1) g),
        'category', (SELECT coalesce(jsonb_object_agg(category_id, n), '{}')
                       FROM (SELECT category_id, count(*) n FROM m WHERE category_id IS NOT NULL
                              GROUP BY 1) g),
        'price', (SELECT coalesce(jsonb_object_agg(lo, n), '{}')
                    FROM (SELECT (SELECT max(b) FROM unnest(ARRAY[0, 1000, 2500, 5000, 10000, 25000,
                                                                  50000, 100000]) b
                                   WHERE b <= m.price_cents) lo, count(*) n
                            FROM m WHERE price_cents IS NOT NULL GROUP BY 1) g),
        'rating', (SELECT coalesce(jsonb_object_agg(r, n), '{}')
                     FROM (SELECT r, count(*) n FROM m, generate_series(1, 4) r
                            WHERE m.rating_avg >= r GROUP BY r) g))
$f$;
CREATE FUNCTION pg_temp.got(q text, f jsonb) RETURNS jsonb LANGUAGE sql AS $f$
    SELECT jsonb_build_object(
        'total', r -> 'total',
        'brand', (SELECT coalesce(jsonb_object_agg(lower(e ->> 'value'), e -> 'count'), '{}')
                    FROM jsonb_array_elements(r -> 'brand') e),
        'category', (SELECT coalesce(jsonb_object_agg(e ->> 'category_id', e -> 'count'), '{}')
                       FROM jsonb_array_elements(r -> 'category') e),
        'price', (SELECT coalesce(jsonb_object_agg(e ->> 'min_cents', e -> 'count'), '{}')
                    FROM jsonb_array_elements(r -> 'price') e),
        'rating', (SELECT coalesce(jsonb_object_agg(e ->> 'min', e -> 'count'), '{}')
                     FROM jsonb_array_elements(r -> 'rating') e))
      FROM shop.search_facets(q, f) r
$f$;
CREATE TEMP TABLE filters (f jsonb);
INSERT INTO filters
SELECT replace(replace(replace(x, ':lamps', :'lamps'), ':desk', :'desk'), ':bulbs', :'bulbs')::jsonb
  FROM unnest(ARRAY[
    '{"category_id": :lamps}', '{"category_id": :desk}', '{"category_id": :bulbs}',
    '{"brand": "lumen"}', '{"brand": "ACME"}', '{"brand": "nobrand"}',
    '{"price_min": 2500}', '{"price_max": 50000}', '{"price_min": 2500, "price_max": 2500}',
    '{"price_min": 10000, "price_max": 60000}', '{"rating_min": 2}', '{"rating_min": 3.5}',
    '{"price_max": 999}', '{"price_min": 0, "price_max": 49999}', '{"price_min": 1000, "price_max": 2499}',
    '{"price_min": 100000}', '{"price_min": 2500, "price_max": 99999, "brand": "acme"}',
    '{"category_id": :lamps, "brand": "lumen"}',
    '{"category_id": :bulbs, "price_max": 30000, "in_stock": true}',
    '{"brand": "brightco", "rating_min": 1, "price_min": 100}',
    '{"category_id": :desk, "brand": "acme", "price_min": 1, "price_max": 90000, "rating_min": 1, "in_stock": false}'
  ]) x;
-- (an unfiltered count first, as a search page does)
CREATE FUNCTION pg_temp.check(qs text[]) RETURNS TABLE (q text, nfilters bigint, same bigint,
                                                       nonempty bigint) LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM shop.search_facets(w) FROM unnest(qs) w;
    RETURN QUERY
    SELECT w, count(*), count(*) FILTER (WHERE pg_temp.got(w, f) = pg_temp.truth(w, f)),
           count(*) FILTER (WHERE (pg_temp.truth(w, f) ->> 'total')::int > 0)
      FROM unnest(qs) w, filters
     GROUP BY w ORDER BY w;
END $f$;

-- the first filtered count of a connection reads the index's column: the
-- count is right, and the connection holds only the maps from the
-- column's category and brand numbers to its own (before fcol1 it held
-- nothing and read every match's record; the copy it then made of the
-- column took 16 bytes a document of each segment)
SELECT pg_temp.got('quokka', '{"brand": "lumen"}') = pg_temp.truth('quokka', '{"brand": "lumen"}')
       AS same;
SELECT bytes < 1024 AS maps_only FROM shop.search_cache_stats() WHERE cache = 'facet_column';
-- a price filter of whole facet buckets (a click on the price facet: $10
-- to $24.99) is decided by each document's bucket in the column, and
-- reads no exact price
SELECT pg_temp.got('quokka', '{"price_min": 1000, "price_max": 2499}')
       = pg_temp.truth('quokka', '{"price_min": 1000, "price_max": 2499}') AS same;
SELECT bytes < 1024 AS maps_only FROM shop.search_cache_stats() WHERE cache = 'facet_column';
-- a price filter between bucket ends reads each document's exact price
-- and rating (12 bytes) from the records once per connection: the index
-- has 3,340 documents in segments
SELECT pg_temp.got('quokka', '{"price_max": 50000}') = pg_temp.truth('quokka', '{"price_max": 50000}')
       AS same;
SELECT bytes BETWEEN 12 * 3340 AND 12 * 3340 + 1024 AS exact_values
  FROM shop.search_cache_stats() WHERE cache = 'facet_column';

-- every filter with the column, against the rows
SELECT * FROM pg_temp.check(ARRAY['quokka', 'lamp', 'quokka bulb', 'qokka', 'lamps']);
-- and the same results, names and order included, without the column
CREATE TEMP TABLE with_column AS
SELECT q, f, shop.search_facets(q, f) AS r, shop.search_facets(q, f, 2) AS r2,
       shop.search_facets(q, f, 3, 2) AS r3
  FROM unnest(ARRAY['quokka', 'lamp', 'quokka bulb']) q, filters;
SET shop.search_facet_cache = 0;
SELECT count(*) AS calls,
       count(*) FILTER (WHERE shop.search_facets(q, f) = r) AS same,
       count(*) FILTER (WHERE shop.search_facets(q, f, 2) = r2) AS same_top2,
       count(*) FILTER (WHERE shop.search_facets(q, f, 3, 2) = r3) AS same_attrs
  FROM with_column;
RESET shop.search_facet_cache;
DROP TABLE with_column;

-- prices changed (new documents, pending), rows deleted (VACUUM flags
-- their documents dead and frees their line pointers; new rows take
-- them): this session's copies are from before
UPDATE shop.product SET price_cents = price_cents + 7777
 WHERE sku LIKE 'Q%' AND substr(sku, 2)::int % 10 = 3;
DELETE FROM shop.product WHERE sku LIKE 'Q%' AND substr(sku, 2)::int % 6 = 1;
DELETE FROM shop.product WHERE sku LIKE 'R%' AND substr(sku, 2)::int % 4 = 0;
VACUUM shop.product;
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, rating_sum, rating_count,
                          status)
SELECT 'N' || i, 'quokka lantern ' || i, 'Lumen', :bulbs, 40000 + 10 * i, i % 5, 1, 'active'
  FROM generate_series(1, 1500) i;
UPDATE shop.product SET price_cents = 2500, brand = 'Acme'
 WHERE sku LIKE 'R%' AND substr(sku, 2)::int % 4 = 1;
RESET client_min_messages;
SELECT * FROM pg_temp.check(ARRAY['quokka', 'lamp', 'quokka lantern']);
-- folded into a new segment, then a new index
VACUUM shop.product;
SELECT * FROM pg_temp.check(ARRAY['quokka', 'lamp', 'quokka lantern']);
REINDEX INDEX shop.product_search_idx;
SELECT * FROM pg_temp.check(ARRAY['quokka', 'lamp']);

-- a segment whose exact prices and ratings do not fit (the new index's
-- maps and 4 kB) counts the price and rating filters from its records
-- instead
REINDEX INDEX shop.product_search_idx;
SELECT (shop.search_facets('quokka') ->> 'total')::int > 0 AS counted;
SELECT set_config('shop.search_facet_cache', (bytes / 1024 + 4)::text || 'kB', false) <> '' AS set,
       bytes < 1024 AS maps_only
  FROM shop.search_cache_stats() WHERE cache = 'facet_column';
SELECT * FROM pg_temp.check(ARRAY['quokka', 'lamp']);
SELECT bytes < 1024 AS maps_only FROM shop.search_cache_stats() WHERE cache = 'facet_column';
RESET shop.search_facet_cache;

-- rows deleted from a segment that stays (a VACUUM with nothing pending
-- folds nothing): the bulk delete flags their documents dead in the
-- index's column too, in the same WAL record as their records.  VACUUM
-- freed their line pointers and marked the pages all-visible, so a
-- column entry without the flag would be counted as a visible row
-- (without the flag there, 11 and 12 of the 21 filtered counts of
-- "quokka" and "lamp" came out wrong, and verify reported it)
-- (one segment, the REINDEX's, the same after the VACUUM; its document
-- count is not shown: the REINDEX keeps the rows another session's
-- snapshot may still see, 5,340 instead of 4,340 with one held)
SELECT shop.search_index_info('shop.product_search_idx') -> 'segments' AS segments_before \gset
DELETE FROM shop.product WHERE sku LIKE 'Q%' AND substr(sku, 2)::int % 5 = 2;
VACUUM shop.product;
SELECT jsonb_array_length(:'segments_before'::jsonb) AS segments,
       shop.search_index_info('shop.product_search_idx') -> 'segments' = :'segments_before'::jsonb
           AS same_segments;
SELECT * FROM pg_temp.check(ARRAY['quokka', 'lamp']);
SELECT count(*) AS verify_problems FROM shop.search_verify('shop.product_search_idx');

-- as the storefront role
SET ROLE shop_storefront;
SELECT (shop.search_facets('quokka', '{"price_max": 50000, "brand": "lumen"}') -> 'total')::int > 0
       AS storefront_counts;
RESET ROLE;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
