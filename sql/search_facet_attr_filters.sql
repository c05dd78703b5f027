-- search_facet_attr_filters: shop.search_facets counts an attribute
-- filter from the facet column (issue 12, afilt1): the scan keeps the
-- documents holding the filter's key = value terms and reads the rows of
-- those holding the overflow term (more than 64 attributes) only; queries
-- with "match": "any" and synonym phrases go to the column too, their
-- words' postings or-ed and intersected.  Counts equal a GROUP BY over the
-- matching rows (the filters as SQL conditions, attributes @> filter),
-- with pending rows, rows deleted before and after VACUUM, as
-- shop_storefront.
\i sql/include/prelude.sql
SELECT shop.category_add('Lamps') AS lamps \gset
SELECT shop.category_add('Desk lamps', :lamps) AS desk \gset
SELECT shop.category_add('Drives') AS drives \gset
ALTER TABLE shop.product SET (autovacuum_enabled = off);
SET client_min_messages = warning;
-- attributes: color (string), size (a number, 2 also written 2.0), wired
-- (boolean), finish (null for some), tags (an array: no facet value, no
-- term); every 97th row has 70 more keys, so its color is past the 64
-- attributes the index keeps as terms (the overflow term); some rows
-- have none
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, rating_sum, rating_count,
                          in_stock, status, attributes)
SELECT 'Q' || i, (ARRAY['quokka lamp', 'quokka bulb', 'wombat lamp', 'quokka hard drive',
                        'hard wombat drive', 'quokka hdd'])[1 + i % 6] || ' ' || i,
       (ARRAY['Lumen', 'lumen', 'Brightco', 'Acme', NULL])[1 + (i * 7) % 5],
       (ARRAY[:lamps, :desk, :drives, NULL])[1 + (i * 3) % 4],
       150 * ((i * 13) % 800),
       (i % 5) * ((i / 5) % 3), (i / 5) % 3,
       i % 3 <> 0, CASE WHEN i % 50 = 0 THEN 'draft' ELSE 'active' END,
       CASE WHEN i % 31 = 0 THEN '{}' ELSE
       jsonb_build_object('color', (ARRAY['red', 'black', 'white'])[1 + (i * 5) % 3],
                          'size', CASE WHEN i % 11 = 0 THEN '2.0'::jsonb ELSE to_jsonb(1 + i % 3) END,
                          'wired', i % 4 = 0)
       || CASE WHEN i % 7 = 0 THEN '{"finish": null}' ELSE '{}' END::jsonb
       || CASE WHEN i % 5 = 0 THEN '{"tags": ["x", "y"]}' ELSE '{}' END::jsonb
       || CASE WHEN i % 97 = 0 THEN (SELECT jsonb_object_agg('k' || k, 'v') FROM generate_series(1, 70) k)
               ELSE '{}' END
       END
  FROM generate_series(1, 3000) i;
-- two segments (CREATE INDEX's, then a fold by VACUUM) and a pending list
REINDEX INDEX shop.product_search_idx;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status, attributes)
SELECT 'R' || i, 'quokka lamp shade ' || i, 'Shadeco', :lamps, 2000 + i, 'active',
       jsonb_build_object('color', (ARRAY['black', 'red'])[1 + i % 2], 'size', 2)
  FROM generate_series(1, 400) i;
VACUUM shop.product;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status, attributes)
SELECT 'P' || i, 'quokka hard drive pack ' || i, 'Acme', :drives, 500 + i, 'active',
       jsonb_build_object('color', 'black', 'wired', i % 2 = 0)
       || CASE WHEN i % 10 = 0 THEN (SELECT jsonb_object_agg('k' || k, 'v') FROM generate_series(1, 70) k)
               ELSE '{}' END
  FROM generate_series(1, 100) i;
RESET client_min_messages;
SELECT shop.synonym_add('hdd', ARRAY['hard drive']);

-- the cases: a query (q), the shop.search_facets filters (f), more of the
-- index query (x: "match": "any")
CREATE TEMP TABLE cases (id serial, q text, f jsonb, x jsonb DEFAULT '{}', qj jsonb);
INSERT INTO cases (q, f, x)
SELECT q, replace(replace(f, ':lamps', :'lamps'), ':drives', :'drives')::jsonb, x::jsonb
  FROM unnest(ARRAY['quokka', 'lamp', 'hdd', 'quokka lamp']) q,
       unnest(ARRAY[
         '{"attributes": {"color": "black"}}', '{"attributes": {"color": "black", "wired": true}}',
         '{"attributes": {"size": 2}}', '{"attributes": {"finish": null}}',
         '{"attributes": {"color": "purple"}}', '{"attributes": {"tags": ["x"]}}',
         '{"attributes": {"color": "red", "tags": ["y"]}}',
         '{"category_id": :lamps, "attributes": {"color": "red"}}',
         '{"brand": "lumen", "in_stock": true, "attributes": {"size": 3}}',
         '{"price_max": 50000, "attributes": {"wired": false}}',
         '{"category_id": :drives}', '{}']) f,
       unnest(ARRAY['{}', '{"match": "any"}']) x;
-- the index query (with the synonym phrase of hdd; shop.search_facets
-- makes it as its owner)
UPDATE cases SET qj = shop._search_query(q, f - 'attributes', NULL) || x;
-- what the index counted, as shop_storefront: the internal call (the
-- only one with "match": "any") and shop.search_facets
CREATE TEMP TABLE got (id int, kind text, key text, n bigint);
CREATE TEMP TABLE tru (id int, kind text, key text, n bigint);
CREATE TEMP TABLE got_api (id int, r jsonb);
GRANT SELECT ON cases TO shop_storefront;
GRANT INSERT, DELETE ON got, got_api TO shop_storefront;
-- every facet, against a GROUP BY over the matching rows
CREATE FUNCTION pg_temp.truth(c cases) RETURNS TABLE (kind text, key text, n bigint)
LANGUAGE sql AS $f$
    WITH m AS MATERIALIZED (
        SELECT lower(p.brand) AS brand, p.category_id, p.price_cents, p.rating_avg, p.attributes
          FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity)
               OPERATOR(shop.@@@) (shop._search_query(c.q, '{}', NULL) || c.x)
           AND p.status = 'active'
           AND p.attributes @> coalesce(c.f -> 'attributes', '{}')
           AND (NOT c.f ? 'category_id' OR p.category_id IN
                (SELECT g.category_id FROM shop.category g
                  WHERE g.category_id = (c.f ->> 'category_id')::bigint
                     OR g.parent_id = (c.f ->> 'category_id')::bigint))
           AND (NOT c.f ? 'brand' OR lower(p.brand) = lower(c.f ->> 'brand'))
           AND (NOT c.f ? 'price_max' OR p.price_cents <= (c.f ->> 'price_max')::bigint)
           AND (NOT c.f ? 'in_stock' OR p.in_stock = (c.f ->> 'in_stock')::boolean))
    SELECT 'total', '', count(*) FROM m
    UNION ALL
    SELECT 'brand', brand, count(*) FROM m WHERE brand IS NOT NULL GROUP BY 2
    UNION ALL
    SELECT 'category', category_id::text, count(*) FROM m WHERE category_id IS NOT NULL GROUP BY 2
    UNION ALL
    SELECT 'price', (SELECT count(*) FROM unnest(ARRAY[1000, 2500, 5000, 10000, 25000, 50000,
                                                      100000]) b WHERE b <= m.price_cents)::text,
           count(*)
      FROM m WHERE price_cents IS NOT NULL GROUP BY 2
    UNION ALL
    SELECT 'rating', r::text, count(*) FROM m, generate_series(1, 4) r WHERE m.rating_avg >= r GROUP BY 2
    UNION ALL
    SELECT 'attr_key', a.key, count(*)
      FROM m, jsonb_each(m.attributes) a
     WHERE jsonb_typeof(m.attributes) = 'object' AND jsonb_typeof(a.value) NOT IN ('array', 'object')
     GROUP BY 2
    UNION ALL
    SELECT 'attr', a.key || '=' || CASE WHEN jsonb_typeof(a.value) = 'number'
                                        THEN trim_scale(a.value::text::numeric)::text
                                        ELSE a.value::text END, count(*)
      FROM m, jsonb_each(m.attributes) a
     WHERE jsonb_typeof(m.attributes) = 'object' AND jsonb_typeof(a.value) NOT IN ('array', 'object')
     GROUP BY 2
$f$;
CREATE FUNCTION pg_temp.collect() RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    DELETE FROM got;
    DELETE FROM got_api;
    SET LOCAL ROLE shop_storefront;
    INSERT INTO got
    SELECT c.id, r.kind,
           CASE r.kind WHEN 'brand' THEN r.sample::text
                       WHEN 'attr_key' THEN r.attr_key
                       WHEN 'attr' THEN r.attr_key || '=' ||
                            CASE WHEN jsonb_typeof(r.attr_value) = 'number'
                                 THEN trim_scale(r.attr_value::text::numeric)::text
                                 ELSE r.attr_value::text END
                       WHEN 'total' THEN '' ELSE r.key::text END,
           r.n
      FROM cases c,
           shop._search_facet_counts('shop.product_search_idx', c.qj,
                                     coalesce(c.f -> 'attributes', '{}'), 100, 1000) r
     WHERE r.kind NOT IN ('attr_keys');
    INSERT INTO got_api SELECT c.id, shop.search_facets(c.q, c.f, NULL, 100) FROM cases c WHERE c.x = '{}';
    RESET ROLE;
END $f$;
-- per case: the index's counts equal the rows' (brands named from their
-- sample row), and shop.search_facets says the same (total, categories
-- and attribute keys)
CREATE FUNCTION pg_temp.check() RETURNS TABLE (q text, match text, ncases bigint, same bigint,
                                               same_api bigint, nonempty bigint)
LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM pg_temp.collect();
    DELETE FROM tru;
    INSERT INTO tru SELECT c.id, t.* FROM cases c, pg_temp.truth(c) t;
    RETURN QUERY
    WITH g AS (
        SELECT g.id, g.kind,
               CASE WHEN g.kind = 'brand' THEN (SELECT lower(p.brand) FROM shop.product p
                                                  WHERE p.ctid = g.key::tid)
                    ELSE g.key END AS key, g.n
          FROM got g
    ), per AS (
        SELECT c.id, c.q, c.x,
               (SELECT coalesce(jsonb_object_agg(kind || ':' || key, n), '{}') FROM g WHERE g.id = c.id)
               = (SELECT coalesce(jsonb_object_agg(t.kind || ':' || t.key, t.n), '{}')
                    FROM tru t WHERE t.id = c.id) AS same,
               (SELECT t.n FROM tru t WHERE t.id = c.id AND t.kind = 'total') AS total,
               (SELECT (a.r -> 'total')::bigint = (SELECT g.n FROM g WHERE g.id = c.id AND g.kind = 'total')
                       AND (SELECT coalesce(jsonb_object_agg(e ->> 'category_id', e -> 'count'), '{}')
                              FROM jsonb_array_elements(a.r -> 'category') e)
                           = (SELECT coalesce(jsonb_object_agg(g.key, g.n), '{}') FROM g
                               WHERE g.id = c.id AND g.kind = 'category')
                       AND (SELECT coalesce(jsonb_object_agg(e ->> 'key', e -> 'count'), '{}')
                              FROM jsonb_array_elements(a.r -> 'attributes') e)
                           = (SELECT coalesce(jsonb_object_agg(g.key, g.n), '{}') FROM g
                               WHERE g.id = c.id AND g.kind = 'attr_key')
                  FROM got_api a WHERE a.id = c.id) AS same_api
          FROM cases c
    )
    SELECT per.q, CASE WHEN per.x = '{}' THEN 'all' ELSE 'any' END, count(*),
           count(*) FILTER (WHERE per.same), count(*) FILTER (WHERE per.same_api),
           count(*) FILTER (WHERE per.total > 0)
      FROM per GROUP BY 1, 2 ORDER BY 1, 2;
END $f$;

-- a connection's first count, with an attribute filter, reads the index's
-- facet column: the backend then keeps the maps of the segments'
-- dictionaries (before, such a count read every match's row and kept
-- nothing)
SELECT entries AS segments_before FROM shop.search_cache_stats() WHERE cache = 'facet_column';
SET ROLE shop_storefront;
SELECT shop.search_facets('quokka', '{"attributes": {"color": "black"}}') -> 'total' AS black_quokkas;
SELECT entries > 0 AS column_read FROM shop.search_cache_stats() WHERE cache = 'facet_column';
-- and its brands are folded (Lumen = lumen, named from one of their rows)
-- as without the filter (the GROUP BY over the rows it ran before listed
-- the two spellings apart)
SELECT lower(e ->> 'value') AS brand, e -> 'count' AS n
  FROM jsonb_array_elements(shop.search_facets('quokka', '{"attributes": {"color": "black"}}') -> 'brand') e
 ORDER BY lower(e ->> 'value') COLLATE "C";
SELECT lower(e ->> 'value') AS brand, e -> 'count' AS n
  FROM jsonb_array_elements(shop.search_facets('quokka', '{}') -> 'brand') e
 ORDER BY lower(e ->> 'value') COLLATE "C";
RESET ROLE;
-- the column, every case (same_api: the cases without "match": "any")
SELECT * FROM pg_temp.check();
-- and from the records (shop.search_facet_cache = 0): the same results,
-- names and order included
CREATE TEMP TABLE with_column AS
SELECT c.id, shop.search_facets(c.q, c.f, 3, 2) AS r FROM cases c WHERE c.x = '{}';
SET shop.search_facet_cache = 0;
SELECT count(*) AS calls, count(*) FILTER (WHERE shop.search_facets(c.q, c.f, 3, 2) = w.r) AS same
  FROM with_column w JOIN cases c USING (id);
RESET shop.search_facet_cache;
DROP TABLE with_column;

-- rows deleted (not yet vacuumed: their documents are live in the index),
-- attributes changed (new documents, pending)
DELETE FROM shop.product WHERE sku LIKE 'Q%' AND substr(sku, 2)::int % 6 = 1;
UPDATE shop.product SET attributes = attributes || '{"color": "black"}'
 WHERE sku LIKE 'Q%' AND substr(sku, 2)::int % 10 = 3;
SELECT * FROM pg_temp.check();
-- VACUUM flags their documents dead, frees their line pointers (new rows
-- take them) and folds the pending list into a segment
VACUUM shop.product;
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status, attributes)
SELECT 'N' || i, 'quokka lamp ' || i, 'Lumen', :lamps, 40000 + 10 * i, 'active',
       jsonb_build_object('color', (ARRAY['black', 'white'])[1 + i % 2], 'size', 2.0)
  FROM generate_series(1, 600) i;
RESET client_min_messages;
SELECT * FROM pg_temp.check();
-- one new segment
REINDEX INDEX shop.product_search_idx;
SELECT * FROM pg_temp.check();

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
