-- search_facet_cache: shop.search_facets counts the documents of index
-- segments from a per-backend copy of their facet values (the facet
-- column, shop.search_facet_cache); pending documents from their records.
-- Counts equal a GROUP BY over the rows, with the copy and without it, and
-- a VACUUM that flags documents dead (and frees their rows' line pointers
-- for new rows) between two counts of one session is seen by the second.
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
       jsonb_strip_nulls(jsonb_build_object(
           'color', (ARRAY['red', 'black', 'white', 'Red'])[1 + (i * 5) % 4],
           'size', CASE WHEN i % 6 = 0 THEN 2.0 ELSE (i % 4)::numeric END,
           'wireless', CASE WHEN i % 3 = 0 THEN i % 2 = 0 END))
  FROM generate_series(1, 3000) i;
-- products with more attributes than the index keeps terms for
UPDATE shop.product
   SET attributes = (SELECT jsonb_object_agg('k' || g, g) FROM generate_series(1, 70) g)
                    || '{"color": "red", "size": 2}'
 WHERE sku IN ('Q5', 'Q10', 'Q2000');
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
CREATE FUNCTION pg_temp.truth(q text, f jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $f$
    WITH m AS MATERIALIZED (
        SELECT lower(p.brand) AS brand, p.category_id, p.price_cents, p.rating_avg
          FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity)
               OPERATOR(shop.@@@) shop._search_query(q, f, NULL)
           AND p.status = 'active')
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
CREATE FUNCTION pg_temp.got(q text, f jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $f$
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
-- with the facet column (the default) and without it
SELECT q, pg_temp.got(q) = pg_temp.truth(q) AS same, (pg_temp.got(q) ->> 'total')::int AS total
  FROM unnest(ARRAY['quokka', 'lamp', 'quokka bulb', 'lamps', 'qokka', 'nothingatall']) q
 ORDER BY q;
SET shop.search_facet_cache = 0;
SELECT q, pg_temp.got(q) = pg_temp.truth(q) AS same
  FROM unnest(ARRAY['quokka', 'lamp', 'quokka bulb']) q
 ORDER BY q;
RESET shop.search_facet_cache;
-- the full result, names and order included, is the same either way, with
-- attribute facets too (their lists in the copy, the overflowing products'
-- attributes read from their rows)
CREATE FUNCTION pg_temp.same_both_ways(qs text[]) RETURNS TABLE (q text, same bool, same_top2 bool,
                                                               same_attrs bool) LANGUAGE plpgsql AS $f$
BEGIN
    CREATE TEMP TABLE with_column AS
    SELECT w AS q, shop.search_facets(w) AS f, shop.search_facets(w, '{}', 2) AS f2,
           shop.search_facets(w, '{}', 3, 3) AS f3
      FROM unnest(qs) w;
    SET LOCAL shop.search_facet_cache = 0;
    RETURN QUERY
    SELECT c.q, shop.search_facets(c.q) = c.f, shop.search_facets(c.q, '{}', 2) = c.f2,
           shop.search_facets(c.q, '{}', 3, 3) = c.f3
      FROM with_column c ORDER BY c.q;
    DROP TABLE with_column;
END $f$;
BEGIN;
SELECT * FROM pg_temp.same_both_ways(ARRAY['quokka', 'lamp', 'quokka bulb']);
COMMIT;
SELECT jsonb_array_length(shop.search_facets('quokka', '{}', 3, 3) -> 'attributes') AS attribute_keys;
-- an in_stock filter alone is applied to the copy's flags; the other
-- stored-value filters read the records: against the rows, and the same
-- with the copy and without it
SELECT q, f, pg_temp.got(q, f) = pg_temp.truth(q, f) AS same, (pg_temp.got(q, f) ->> 'total')::int AS total
  FROM unnest(ARRAY['quokka', 'lamp', 'quokka bulb']) q,
       unnest(ARRAY['{"in_stock": true}', '{"in_stock": false}', '{"in_stock": true, "brand": "lumen"}',
                    '{"price_max": 50000}']::jsonb[]) f
 ORDER BY q, f::text;
CREATE TEMP TABLE filtered_with AS
SELECT q, f, shop.search_facets(q, f) AS r, shop.search_facets(q, f, 3, 3) AS r3
  FROM unnest(ARRAY['quokka', 'lamp', 'quokka bulb']) q,
       unnest(ARRAY['{"in_stock": true}', '{"in_stock": false}', '{"in_stock": true, "brand": "lumen"}',
                    '{"price_max": 50000}']::jsonb[]) f;
SET shop.search_facet_cache = 0;
SELECT q, f, shop.search_facets(q, f) = r AS same, shop.search_facets(q, f, 3, 3) = r3 AS same_attrs
  FROM filtered_with ORDER BY q, f::text;
RESET shop.search_facet_cache;
DROP TABLE filtered_with;

-- the pending documents folded into a segment, counted once more: this
-- session now holds a copy of every segment
VACUUM shop.product;
SELECT q, pg_temp.got(q) = pg_temp.truth(q) AS same
  FROM unnest(ARRAY['quokka', 'lamp']) q
 ORDER BY q;
-- rows of the segments deleted, VACUUM flags their documents dead and
-- frees their line pointers, new rows (pending) take them: this session's
-- copies are from before, the next count must read the dead flags again
-- (fewer than a fifth of the documents: VACUUM keeps the segments)
DELETE FROM shop.product WHERE sku LIKE 'Q%' AND substr(sku, 2)::int % 6 = 1;
DELETE FROM shop.product WHERE sku LIKE 'R%' AND substr(sku, 2)::int % 4 = 0;
VACUUM shop.product;
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status)
SELECT 'N' || i, 'quokka lantern ' || i, 'Newco', :bulbs, 99999 + i, 'active'
  FROM generate_series(1, 1500) i;
RESET client_min_messages;
SELECT q, pg_temp.got(q) = pg_temp.truth(q) AS same, (pg_temp.got(q) ->> 'total')::int AS total
  FROM unnest(ARRAY['quokka', 'lamp', 'quokka bulb', 'quokka lantern']) q
 ORDER BY q;
BEGIN;
SELECT * FROM pg_temp.same_both_ways(ARRAY['quokka', 'lamp']);
COMMIT;
-- and after the fold of those new rows into a third segment
VACUUM shop.product;
SELECT q, pg_temp.got(q) = pg_temp.truth(q) AS same
  FROM unnest(ARRAY['quokka', 'lamp', 'quokka lantern']) q
 ORDER BY q;
-- a new index (REINDEX: another relation file) is counted from its own copy
REINDEX INDEX shop.product_search_idx;
SELECT q, pg_temp.got(q) = pg_temp.truth(q) AS same
  FROM unnest(ARRAY['quokka', 'lamp']) q
 ORDER BY q;
-- a segment whose copy does not fit counts from its records instead: 8 kB
-- hold 512 documents; the first segment's copy (4,000 documents) is in use
-- by the count, so the new segment's (300) finds no room
SET shop.search_facet_cache = '8kB';
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status)
SELECT 'M' || i, 'quokka lamp mini ' || i, 'Minico', :desk, 1500 + i, 'active'
  FROM generate_series(1, 300) i;
VACUUM shop.product;
RESET client_min_messages;
SELECT q, pg_temp.got(q) = pg_temp.truth(q) AS same, (pg_temp.got(q) ->> 'total')::int AS total
  FROM unnest(ARRAY['quokka', 'lamp', 'mini']) q
 ORDER BY q;
BEGIN;
SELECT * FROM pg_temp.same_both_ways(ARRAY['quokka', 'lamp']);
COMMIT;
RESET shop.search_facet_cache;

-- as the storefront role
SET ROLE shop_storefront;
SELECT (shop.search_facets('quokka') -> 'total')::int > 0 AS storefront_counts;
RESET ROLE;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
