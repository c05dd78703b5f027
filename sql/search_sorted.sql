-- search_sorted: shop.search's sorts other than relevance take their page
-- from the values the index stores (sssort.c): each page must equal a plain
-- ORDER BY over the same match set, ties and deep offsets included, and
-- must not read every matching row
\i sql/include/prelude.sql
SELECT shop.category_add('Cables') AS cables \gset
SELECT shop.category_add('USB', :cables) AS usb \gset
SELECT shop.category_add('Printers') AS printers \gset
-- room on the pages, so that the updates below can be HOT
ALTER TABLE shop.product SET (fillfactor = 80);
SET client_min_messages = warning;
-- 4,000 products: prices, ratings, popularity and creation times from small
-- sets (many ties), unrated products (rating NULL), a few NaN popularities
INSERT INTO shop.product (sku, title, brand, description, category_id, price_cents,
                          rating_sum, rating_count, popularity, in_stock, status, created_at,
                          attributes)
SELECT 'S' || i,
       (ARRAY['cable', 'cable', 'toner', 'cable usb', 'black cable', 'adapter'])[1 + (i * 7) % 6]
           || ' ' || (ARRAY['office', 'home', 'desk', 'travel'])[1 + (i * 3) % 4],
       (ARRAY['HP', 'Belkin', 'Anker', 'Canon', 'UGREEN'])[1 + (i * 13) % 5],
       'spare part ' || repeat('filler ', 40),
       (ARRAY[:cables, :usb, :printers])[1 + (i * 11) % 3],
       100 * (1 + (i * 37) % 60),
       (i % 5) * ((i / 5) % 4), (i / 5) % 4,
       CASE WHEN i % 997 = 0 THEN 'NaN'::real ELSE ((i * 17) % 40)::real END,
       i % 4 <> 0, 'active',
       timestamptz '2026-01-01' + ((i * 29) % 90) * interval '1 day',
       -- attributes: strings, numbers (2 and 2.0 are equal to @>), booleans,
       -- arrays (not indexed: checked on the rows), some keys missing
       jsonb_strip_nulls(jsonb_build_object(
           'color', (ARRAY['red', 'black', 'white', 'Red'])[1 + (i * 5) % 4],
           'size', CASE WHEN i % 6 = 0 THEN 2.0 ELSE (i % 4)::numeric END,
           'wireless', CASE WHEN i % 3 = 0 THEN i % 2 = 0 END,
           'ports', CASE WHEN i % 7 = 0 THEN '["usb", "hdmi"]'::jsonb END))
  FROM generate_series(1, 4000) i;
-- a product with more attributes than the index keeps terms for
UPDATE shop.product
   SET attributes = (SELECT jsonb_object_agg('k' || g, g) FROM generate_series(1, 70) g)
                    || '{"color": "red", "size": 2}'
 WHERE sku IN ('S5', 'S10');
REINDEX INDEX shop.product_search_idx;
-- a second segment (VACUUM folds the pending list) and a pending list
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, status, created_at)
SELECT 'T' || i, 'Belkin cable ' || i, 'Belkin', :usb, 150 * i, i % 9, 'active',
       timestamptz '2026-02-01' + i * interval '1 hour'
  FROM generate_series(1, 600) i;
VACUUM shop.product;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, status, created_at,
                          attributes)
SELECT 'U' || i, 'HP cable black ' || i, 'HP', :cables, 90 + i, 20, 'active',
       timestamptz '2026-03-01' + i * interval '1 minute',
       CASE WHEN i % 2 = 0 THEN '{"color": "red", "size": 2}' ELSE '{"color": "black"}' END::jsonb
  FROM generate_series(1, 300) i;
UPDATE shop.product
   SET attributes = (SELECT jsonb_object_agg('k' || g, g) FROM generate_series(1, 70) g)
                    || '{"color": "red", "size": 2.0}'
 WHERE sku = 'U7';
-- rows changed after indexing: new prices (not HOT), HOT updates, products
-- taken out of the storefront, deleted rows
UPDATE shop.product SET price_cents = 1 + (product_id % 3) WHERE product_id % 101 = 0;
UPDATE shop.product SET updated_at = updated_at + interval '1 second' WHERE product_id % 7 = 0;
UPDATE shop.product SET status = 'archived' WHERE product_id % 53 = 0;
DELETE FROM shop.product WHERE product_id % 89 = 0 AND NOT EXISTS
    (SELECT 1 FROM shop.order_line l WHERE l.product_id = product.product_id);
RESET client_min_messages;
SELECT jsonb_array_length(shop.search_index_info('shop.product_search_idx') -> 'segments') >= 2 AS segments,
       (shop.search_index_info('shop.product_search_idx') ->> 'pending')::int > 0 AS pending;

-- the product ids of a page of shop.search, and of the same page of a plain
-- ORDER BY over the rows matching the same query (the @@@ operator)
CREATE FUNCTION pg_temp.got(q text, f jsonb, s text, lim int, o int) RETURNS bigint[]
LANGUAGE sql AS $f$
    SELECT coalesce(array_agg(product_id ORDER BY ord), '{}')
      FROM shop.search(q, f, s, lim, o) WITH ORDINALITY x(product_id, score, title, brand, price_cents,
               rating_avg, category_id, in_stock, image, typos, missing_words, ord)
$f$;
CREATE FUNCTION pg_temp.want(q text, f jsonb, s text, lim int, o int) RETURNS bigint[]
LANGUAGE plpgsql AS $f$
DECLARE
    r bigint[];
BEGIN
    SELECT coalesce(array_agg(product_id ORDER BY ord), '{}') INTO r
      FROM (SELECT p.product_id, row_number() OVER () AS ord
              FROM (SELECT p.product_id FROM shop.product p
                     WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                                           p.rating_avg::real, p.in_stock, p.popularity)
                           OPERATOR(shop.@@@) shop._search_query(q, f, NULL)
                       AND p.status = 'active' AND p.attributes @> coalesce(f -> 'attributes', '{}')
                     ORDER BY
                        CASE WHEN s = 'price_asc' THEN p.price_cents END ASC,
                        CASE WHEN s = 'price_desc' THEN p.price_cents END DESC,
                        CASE WHEN s = 'rating' THEN p.rating_avg END DESC NULLS LAST,
                        CASE WHEN s = 'rating' THEN p.rating_count END DESC,
                        CASE WHEN s = 'newest' THEN p.created_at END DESC,
                        CASE WHEN s = 'popularity' THEN p.popularity END DESC,
                        p.product_id
                    OFFSET o LIMIT lim) p) x;
    RETURN r;
END
$f$;
CREATE FUNCTION pg_temp.compare(q text) RETURNS TABLE (sort text, filters jsonb, off int, rows int, same boolean)
LANGUAGE plpgsql AS $f$
DECLARE
    g bigint[];
    w bigint[];
BEGIN
    FOR sort, filters, off IN
        SELECT s, f, o
          FROM unnest(ARRAY['price_asc', 'price_desc', 'rating', 'newest', 'popularity']) s,
               unnest(ARRAY['{}', format('{"category_id": %s}', current_setting('shop_test.cables')),
                            '{"brand": ["belkin", "HP"]}', '{"price_min": 1000, "price_max": 3000}',
                            '{"in_stock": true, "rating_min": 2}', '{"attributes": {"color": "red"}}',
                            '{"attributes": {"color": "red", "size": 2}, "brand": "HP"}',
                            '{"attributes": {"wireless": false, "ports": ["usb"]}}']::jsonb[]) f,
               unnest(ARRAY[0, 20, 2000]) o
    LOOP
        g := pg_temp.got(q, filters, sort, 20, off);
        w := pg_temp.want(q, filters, sort, 20, off);
        rows := cardinality(g);
        same := g = w;
        RETURN NEXT;
    END LOOP;
END
$f$;
SELECT set_config('shop_test.cables', :'cables', false) IS NOT NULL AS set;

-- every sort, filter and depth: the same page (the first two depths full)
SELECT sort, count(*) AS pages, bool_and(same) AS all_same,
       min(rows) FILTER (WHERE off < 2000) AS min_rows_shallow,
       max(rows) FILTER (WHERE off = 2000) AS max_rows_deep
  FROM pg_temp.compare('cable') GROUP BY sort ORDER BY sort;
SELECT sort, filters, off, rows FROM pg_temp.compare('cable') WHERE NOT same;
-- a deep page that is full: 2,000 rows into the unfiltered matches of 'cable'
SELECT cardinality(pg_temp.got('cable', '{}', 'price_asc', 20, 2000)) AS deep_rows,
       pg_temp.got('cable', '{}', 'price_asc', 20, 2000) = pg_temp.want('cable', '{}', 'price_asc', 20, 2000) AS same;
-- page after page, all of a sort: every matching row once, in the plain order
SELECT (SELECT array_agg(x ORDER BY o, ord) FROM generate_series(0, 2400, 100) o,
               unnest(pg_temp.got('black cable', '{}', 'rating', 100, o)) WITH ORDINALITY u(x, ord))
     = pg_temp.want('black cable', '{}', 'rating', 2500, 0) AS all_pages_same;

-- a row that stops matching, becomes inactive or changes its price drops out
-- or moves at once, before any VACUUM
SELECT (pg_temp.got('cable', '{}', 'price_asc', 1, 0))[1] AS cheapest \gset
UPDATE shop.product SET price_cents = 99999 WHERE product_id = :cheapest;
SELECT :cheapest = ANY (pg_temp.got('cable', '{}', 'price_asc', 20, 0)) AS still_first_page,
       :cheapest = (pg_temp.got('cable', '{}', 'price_desc', 1, 0))[1] AS now_dearest;
UPDATE shop.product SET status = 'draft' WHERE product_id = :cheapest;
SELECT :cheapest = ANY (pg_temp.got('cable', '{}', 'price_desc', 20, 0)) AS draft_shown;
SELECT bool_and(same) AS all_same FROM pg_temp.compare('cable') WHERE off = 0;

-- the page is read from the index: a page of 20 reads far fewer table pages
-- than the matching rows occupy
SELECT count(DISTINCT (ctid::text::point)[0]) AS match_pages
  FROM shop.product p
 WHERE p.title LIKE '%cable%' AND p.status = 'active' \gset
SELECT :match_pages > 150 AS many_pages;
BEGIN;
SELECT pg_stat_get_xact_blocks_fetched('shop.product'::regclass) AS before \gset
SELECT count(*) FROM shop.search('cable', sort => 'price_asc');
SELECT pg_stat_get_xact_blocks_fetched('shop.product'::regclass) - :before < :match_pages / 3 AS few_pages;
COMMIT;
-- with an attribute filter too (before, it read every match)
BEGIN;
SELECT pg_stat_get_xact_blocks_fetched('shop.product'::regclass) AS before \gset
SELECT count(*) FROM shop.search('cable', '{"attributes": {"color": "red"}}', sort => 'newest');
SELECT pg_stat_get_xact_blocks_fetched('shop.product'::regclass) - :before < :match_pages / 3 AS few_pages;
COMMIT;

-- relevance: one call of the index, each returned row read from the table
-- once (before: a lookup by ctid, then one by product_id, in a loop that
-- re-ran the scan with a larger limit)
CREATE FUNCTION pg_temp.ranked(q text, lim int, o int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT coalesce(array_agg(p.product_id ORDER BY s.ord), '{}')
      FROM (SELECT * FROM shop.search_scan('shop.product_search_idx',
                                          shop._search_intent(shop._search_query(q, '{}', NULL)) || '{"match": "any"}', lim + o)
                     WITH ORDINALITY AS s(ctid, score, typos, missing, ord) OFFSET o) s
      JOIN shop.product p ON p.ctid = s.ctid AND p.status = 'active'
$f$;
SELECT q, o, pg_temp.got(q, '{}', 'relevance', 20, o) = pg_temp.ranked(q, 20, o) AS same,
       cardinality(pg_temp.got(q, '{}', 'relevance', 20, o)) AS rows
  FROM unnest(ARRAY['cable', 'black cabel', 'usb office']) q, unnest(ARRAY[0, 20, 2000]) o
 ORDER BY q, o;
-- relevance with an attribute filter: the ranked rows whose attributes
-- contain it
CREATE FUNCTION pg_temp.ranked_attrs(q text, a jsonb, lim int, o int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT coalesce(array_agg(product_id ORDER BY ord), '{}')
      FROM (SELECT p.product_id, s.ord
              FROM shop.search_scan('shop.product_search_idx',
                                    shop._search_intent(shop._search_query(q, '{}', NULL)) || '{"match": "any"}', 20000)
                   WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
              JOIN shop.product p ON p.ctid = s.ctid AND p.status = 'active' AND p.attributes @> a
             ORDER BY s.ord OFFSET o LIMIT lim) x
$f$;
SELECT q, a, o, pg_temp.got(q, jsonb_build_object('attributes', a), 'relevance', 20, o)
                = pg_temp.ranked_attrs(q, a, 20, o) AS same,
       cardinality(pg_temp.got(q, jsonb_build_object('attributes', a), 'relevance', 20, o)) AS rows
  FROM unnest(ARRAY['cable', 'black cabel']) q,
       unnest(ARRAY['{"color": "red"}', '{"size": 2, "color": "red"}', '{"ports": ["hdmi"]}',
                    '{"k70": 70}', '{"color": "green"}']::jsonb[]) a,
       unnest(ARRAY[0, 400]) o
 ORDER BY q, a::text, o;
-- the products with 70 attributes are found by any of them
SELECT sku FROM shop.product
 WHERE product_id IN (SELECT product_id FROM shop.search('cable', '{"attributes": {"k3": 3}}', 'price_asc'))
 ORDER BY sku;

-- (intent, issue 13, scans 40 rows of its own first: measured without it;
-- sorted pages never run it)
BEGIN;
SET LOCAL shop.search_intent = off;
SELECT pg_stat_get_xact_blocks_fetched('shop.product'::regclass) AS before \gset
SELECT count(*) FROM shop.search('cable usb');
SELECT pg_stat_get_xact_blocks_fetched('shop.product'::regclass) - :before <= 20 AS one_read_per_row;
COMMIT;

-- bounded facets: the top brands and categories by count, the rest summed;
-- every count equals a GROUP BY over the matching rows
CREATE FUNCTION pg_temp.facet_truth(q text, f jsonb, top int) RETURNS jsonb LANGUAGE sql AS $f$
    WITH m AS MATERIALIZED (
        SELECT p.brand, p.category_id FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity)
               OPERATOR(shop.@@@) shop._search_query(q, f, NULL)
           AND p.status = 'active' AND p.attributes @> coalesce(f -> 'attributes', '{}')),
    b AS (SELECT brand, count(*) n, row_number() OVER (ORDER BY count(*) DESC, brand) r
            FROM m WHERE brand IS NOT NULL GROUP BY brand),
    c AS (SELECT category_id, count(*) n, row_number() OVER (ORDER BY count(*) DESC, category_id) r
            FROM m WHERE category_id IS NOT NULL GROUP BY category_id)
    SELECT jsonb_build_object(
        'total', (SELECT count(*) FROM m),
        'brand', coalesce((SELECT jsonb_agg(jsonb_build_object('value', brand, 'count', n) ORDER BY r)
                             FROM b WHERE r <= top), '[]'),
        'brand_other', (SELECT jsonb_build_object('values', count(*), 'count', coalesce(sum(n), 0))
                          FROM b WHERE r > top),
        'category', coalesce((SELECT jsonb_agg(jsonb_build_object('category_id', category_id, 'count', n)
                                               ORDER BY r) FROM c WHERE r <= top), '[]'),
        'category_other', (SELECT jsonb_build_object('values', count(*), 'count', coalesce(sum(n), 0))
                             FROM c WHERE r > top))
$f$;
CREATE FUNCTION pg_temp.facet_got(q text, f jsonb, top int) RETURNS jsonb LANGUAGE sql AS $f$
    SELECT jsonb_build_object('total', r -> 'total', 'brand', r -> 'brand', 'brand_other', r -> 'brand_other',
                              'category', (SELECT coalesce(jsonb_agg(e - 'name' ORDER BY o), '[]')
                                             FROM jsonb_array_elements(r -> 'category') WITH ORDINALITY x(e, o)),
                              'category_other', r -> 'category_other')
      FROM shop.search_facets(q, f, top) r
$f$;
SELECT q, f, top, pg_temp.facet_got(q, f, top) = pg_temp.facet_truth(q, f, top) AS same,
       jsonb_array_length(pg_temp.facet_got(q, f, top) -> 'brand') AS brands,
       pg_temp.facet_got(q, f, top) -> 'brand_other' AS brand_other
  FROM unnest(ARRAY['cable', 'black cable', 'toner']) q,
       unnest(ARRAY['{}', '{"price_max": 3000}', '{"attributes": {"color": "red"}}']::jsonb[]) f,
       unnest(ARRAY[1, 2, 10]) top
 ORDER BY q, f::text, top;
-- the price buckets and cumulative ratings equal a GROUP BY too (facets
-- count from 24-byte copies of what they need, the matches handed over in
-- docid order: 'ca' and the typo 'cabel' reach several terms per word)
CREATE FUNCTION pg_temp.facet_pr_truth(q text, f jsonb) RETURNS jsonb LANGUAGE sql AS $f$
    WITH m AS MATERIALIZED (
        SELECT p.price_cents, p.rating_avg FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity)
               OPERATOR(shop.@@@) shop._search_query(q, f, NULL)
           AND p.status = 'active')
    SELECT jsonb_build_object(
        'price', coalesce((SELECT jsonb_agg(jsonb_build_object('min_cents', lo, 'count', n) ORDER BY lo)
                             FROM (SELECT x.b AS lo, count(*) n FROM m,
                                          LATERAL (SELECT max(b) b FROM unnest(ARRAY[0, 1000, 2500, 5000, 10000,
                                                                                     25000, 50000, 100000]) b
                                                    WHERE b <= m.price_cents) x
                                    WHERE price_cents IS NOT NULL GROUP BY x.b) g), '[]'),
        'rating', coalesce((SELECT jsonb_agg(jsonb_build_object('min', r, 'count', n) ORDER BY r DESC)
                              FROM (SELECT r, count(*) n FROM m, generate_series(1, 4) r
                                     WHERE m.rating_avg >= r GROUP BY r) g), '[]'))
$f$;
SELECT q, f,
       (SELECT jsonb_build_object(
                   'price', coalesce((SELECT jsonb_agg(jsonb_build_object('min_cents', e -> 'min_cents',
                                                                          'count', e -> 'count') ORDER BY o)
                                        FROM jsonb_array_elements(r -> 'price') WITH ORDINALITY x(e, o)), '[]'),
                   'rating', coalesce(r -> 'rating', '[]'))
          FROM shop.search_facets(q, f) r) = pg_temp.facet_pr_truth(q, f) AS same,
       (SELECT (r -> 'total')::int > 0 FROM shop.search_facets(q, f) r) AS some
  FROM unnest(ARRAY['cable', 'ca', 'cabel', 'toner']) q,
       unnest(ARRAY['{}', '{"in_stock": true}', '{"price_max": 3000}']::jsonb[]) f
 ORDER BY q, f::text;
-- the other facets are those of the unbounded call; NULL is every value
SELECT (shop.search_facets('cable', '{}', 2) - 'brand' - 'brand_other' - 'category' - 'category_other')
     = (shop.search_facets('cable', '{}') - 'brand' - 'category') AS rest_same,
       shop.search_facets('cable', '{}', NULL) = shop.search_facets('cable', '{}') AS null_is_all;
SELECT pg_temp.err($$SELECT shop.search_facets('cable', '{}', 0)$$);

-- attribute facets (search_facets' fourth argument): the keys most matches
-- hold, each with its top values, equal a GROUP BY over the matching rows'
-- scalar attributes (2 and 2.0 are one value, "Red" and "red" two; arrays
-- are no facet value); the rows with 72 keys (more than the index keeps
-- terms for), pending rows, HOT-updated and deleted rows included
CREATE FUNCTION pg_temp.attr_truth(q text, f jsonb, nkeys int, top int) RETURNS jsonb LANGUAGE sql AS $f$
    WITH m AS (
        SELECT p.attributes FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity)
               OPERATOR(shop.@@@) shop._search_query(q, f, NULL)
           AND p.status = 'active' AND p.attributes @> coalesce(f -> 'attributes', '{}')),
    kv AS (SELECT e.key, e.value FROM m, jsonb_each(m.attributes) e
            WHERE jsonb_typeof(e.value) NOT IN ('array', 'object')),
    k AS (SELECT key, count(*) n, count(DISTINCT value) nv,
                 row_number() OVER (ORDER BY count(*) DESC, key COLLATE "C") r
            FROM kv GROUP BY key),
    v AS (SELECT key, value, count(*) n,
                 row_number() OVER (PARTITION BY key ORDER BY count(*) DESC, value) r
            FROM kv GROUP BY key, value)
    SELECT jsonb_build_object(
        'attributes', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'key', k.key, 'count', k.n,
                'values', (SELECT coalesce(jsonb_agg(jsonb_build_object('value', v.value, 'count', v.n)
                                                     ORDER BY v.r), '[]')
                             FROM v WHERE v.key = k.key AND v.r <= top),
                'other', jsonb_build_object(
                    'values', k.nv - least(k.nv, top),
                    'count', k.n - (SELECT coalesce(sum(v.n), 0) FROM v WHERE v.key = k.key AND v.r <= top)))
                ORDER BY k.r) FROM k WHERE k.r <= nkeys), '[]'),
        'attributes_other', jsonb_build_object(
            'keys', (SELECT count(*) FROM k) - least((SELECT count(*) FROM k), nkeys)))
$f$;
SELECT q, f, nkeys, top,
       (SELECT jsonb_build_object('attributes', r -> 'attributes', 'attributes_other', r -> 'attributes_other')
          FROM shop.search_facets(q, f, top, nkeys) r) = pg_temp.attr_truth(q, f, nkeys, top) AS same,
       jsonb_array_length(shop.search_facets(q, f, top, nkeys) -> 'attributes') AS keys
  FROM unnest(ARRAY['cable', 'black cable', 'toner']) q,
       unnest(ARRAY['{}', '{"price_max": 3000}', '{"attributes": {"color": "red"}}',
                    '{"attributes": {"ports": ["usb"]}}']::jsonb[]) f,
       unnest(ARRAY[1, 3, 100]) nkeys,
       unnest(ARRAY[1, 2]) top
 ORDER BY q, f::text, nkeys, top;
-- what a storefront shows for "cable": the two most common keys
SELECT jsonb_pretty(shop.search_facets('cable', '{}', 3, 2) -> 'attributes') AS attributes;
-- the rest is the three-argument call's; attributes 0 lists none
SELECT (shop.search_facets('cable', '{"brand": "hp"}', 2, 3) - 'attributes' - 'attributes_other')
     = shop.search_facets('cable', '{"brand": "hp"}', 2) AS rest_same,
       shop.search_facets('cable', '{}', 2, 0) = shop.search_facets('cable', '{}', 2) AS zero_is_none,
       shop.search_facets('nothingmatchesthis', '{}', 2, 3) -> 'attributes' AS no_match;
-- every value of a key (NULL top), and a key whose values tie
SELECT (SELECT jsonb_build_object('attributes', r -> 'attributes', 'attributes_other', r -> 'attributes_other')
          FROM shop.search_facets('cable', '{}', NULL, 100) r)
       = pg_temp.attr_truth('cable', '{}', 100, 1000) AS all_values;
SELECT pg_temp.err($$SELECT shop.search_facets('cable', '{}', 2, 101)$$);
SELECT pg_temp.err($$SELECT shop.search_facets('cable', '{}', 2, -1)$$);
SELECT pg_temp.err($$SELECT shop.search_facets('cable', '{}', 2, NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop._search_facet_counts('shop.product_search_idx', '"cable"', '[1]', 3, 3)$$);
SELECT pg_temp.err($$SELECT * FROM shop._search_facet_counts('shop.product_search_idx', '"cable"', '{}', 3, 0)$$);

-- as the storefront (the plain order computed before, as the superuser)
CREATE TEMP TABLE want AS
SELECT sort, pg_temp.want('cable', '{"brand": "anker"}', sort, 20, 20) AS w
  FROM unnest(ARRAY['price_asc', 'price_desc', 'rating', 'newest', 'popularity']) sort;
GRANT SELECT ON want TO shop_storefront;
SET ROLE shop_storefront;
SELECT sort, pg_temp.got('cable', '{"brand": "anker"}', sort, 20, 20) = w AS same, cardinality(w) AS rows
  FROM want ORDER BY sort;
SELECT pg_temp.err($$SELECT * FROM shop._search_sorted('shop.product_search_idx', '"cable"', 'cheapest', 20)$$);
SELECT jsonb_array_length(shop.search_facets('cable', '{}', 3) -> 'brand') AS brands;
SELECT (SELECT jsonb_build_object('attributes', r -> 'attributes', 'attributes_other', r -> 'attributes_other')
          FROM shop.search_facets('cable', '{"attributes": {"color": "red"}}', 2, 3) r)
       = pg_temp.attr_truth('cable', '{"attributes": {"color": "red"}}', 3, 2) AS attr_facets_same;
RESET ROLE;

-- block bounds on the sort key (issue 12): a sorted scan skips the blocks
-- of 128 documents whose smallest key cannot enter the page (ssscan.c,
-- sort_window).  The pages stay those of a plain ORDER BY, and of a scan
-- that skips nothing (shop.search_block_max = off), while rows change,
-- VACUUM folds and merges segments and REINDEX rebuilds the index between
-- queries of one session (whose bounds are kept per segment).
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, rating_sum, rating_count,
                          popularity, status, created_at, attributes)
SELECT 'L' || i, 'desk lamp ' || (ARRAY['black', 'white', 'brass'])[1 + i % 3],
       (ARRAY['Ikea', 'Philips'])[1 + i % 2], (ARRAY[:cables, :printers])[1 + i % 2],
       1000 + (i * 7919) % 30011, ((i * 31) % 5) * ((i * 17) % 7), (i * 17) % 7,
       (i * 104729) % 5003, 'active',
       timestamptz '2025-01-01' + ((i * 7907) % 3001) * interval '1 hour',
       jsonb_build_object('color', (ARRAY['black', 'white', 'brass'])[1 + i % 3])
  FROM generate_series(1, 3000) i;
VACUUM shop.product;
RESET client_min_messages;
CREATE FUNCTION pg_temp.check_sorted(q text) RETURNS TABLE (pages bigint, full_pages bigint,
                                                            same bigint, same_unskipped bigint)
LANGUAGE plpgsql AS $f$
DECLARE
    g bigint[];
    u bigint[];
    w bigint[];
    vs text;
    vf jsonb;
    vo int;
BEGIN
    pages := 0; full_pages := 0; same := 0; same_unskipped := 0;
    FOR vs, vf, vo IN
        SELECT s, f, o
          FROM unnest(ARRAY['price_asc', 'price_desc', 'rating', 'newest', 'popularity']) s,
               unnest(ARRAY['{}', format('{"category_id": %s}', current_setting('shop_test.cables')),
                            '{"brand": "philips"}', '{"price_min": 5000, "price_max": 9000}',
                            '{"attributes": {"color": "brass"}}', '{"in_stock": true}']::jsonb[]) f,
               unnest(ARRAY[0, 20, 700]) o
    LOOP
        g := pg_temp.got(q, vf, vs, 20, vo);
        PERFORM set_config('shop.search_block_max', 'off', false);
        u := pg_temp.got(q, vf, vs, 20, vo);
        PERFORM set_config('shop.search_block_max', 'on', false);
        w := pg_temp.want(q, vf, vs, 20, vo);
        pages := pages + 1;
        full_pages := full_pages + (cardinality(g) = 20)::int;
        same := same + (g = w)::int;
        same_unskipped := same_unskipped + (g = u)::int;
    END LOOP;
    RETURN NEXT;
END
$f$;
SELECT * FROM pg_temp.check_sorted('lamp');
-- what skipping saves, counted by the scan (shop.search_last_scan, not
-- pg_stat's index pages fetched: those depend on how VACUUM laid out the
-- segments, which depends on other sessions' snapshots; see the widgets
-- below): a sorted page of 20 with block bounds against the same page
-- without them (shop.search_block_max = off), which visits every match.
-- A second call: the first one of a segment in a session reads its
-- documents for the bounds (bound_docs)
CREATE FUNCTION pg_temp.warm_reads(q text, f jsonb, s text, skip boolean) RETURNS jsonb
LANGUAGE plpgsql AS $f$
DECLARE
    r jsonb;
BEGIN
    PERFORM set_config('shop.search_block_max', skip::text, false);
    PERFORM count(*) FROM shop.search(q, f, s);
    PERFORM count(*) FROM shop.search(q, f, s);
    SELECT to_jsonb(x) INTO r FROM shop.search_last_scan() x;
    PERFORM set_config('shop.search_block_max', 'on', false);
    RETURN r;
END
$f$;
-- matches visited and postings decoded by the page with bounds, times n,
-- against those of the page without: at most 1/n of them
CREATE FUNCTION pg_temp.skips(q text, f jsonb, s text, n int) RETURNS TABLE (all_matches bigint,
    few_matches boolean, few_postings boolean)
LANGUAGE plpgsql AS $f$
DECLARE
    page jsonb := pg_temp.warm_reads(q, f, s, true);
    full_scan jsonb := pg_temp.warm_reads(q, f, s, false);
BEGIN
    all_matches := (full_scan ->> 'matches_visited')::bigint;
    few_matches := (page ->> 'matches_visited')::bigint * n <= all_matches;
    few_postings := (page ->> 'postings_decoded')::bigint * n
                    <= (full_scan ->> 'postings_decoded')::bigint;
    RETURN NEXT;
END
$f$;
-- (popularity: the segments' docid order, so after the first 20 matches
-- of a segment its later blocks are skipped: under half the 3,000 lamps
-- visited and of the postings decoded (450 to 480 matches, 730 to 890
-- postings, with two or three segments in the layouts tried); the other
-- sorts skip less here, where the bounds of a block cover cheap cables
-- next to dear lamps, and how much depends on how VACUUM laid out the
-- segments)
SELECT * FROM pg_temp.skips('lamp', '{}', 'popularity', 2);
-- rows change (new prices and popularity: not HOT; deletes; products
-- taken out of the storefront): old documents still in the segments,
-- new ones pending
UPDATE shop.product SET price_cents = 500 + product_id % 50, popularity = 9000 + product_id % 7
 WHERE sku LIKE 'L%' AND product_id % 17 = 0;
DELETE FROM shop.product WHERE sku LIKE 'L%' AND product_id % 13 = 0;
UPDATE shop.product SET status = 'draft' WHERE sku LIKE 'L%' AND product_id % 19 = 0;
SELECT * FROM pg_temp.check_sorted('lamp');
-- VACUUM marks the dead documents and folds the pending list
VACUUM shop.product;
SELECT * FROM pg_temp.check_sorted('lamp');
-- more changes, then VACUUM again (a merge: new segments in reused blocks)
UPDATE shop.product SET created_at = timestamptz '2026-06-01' + product_id * interval '1 second',
                        price_cents = price_cents + 7
 WHERE sku LIKE 'L%' AND product_id % 5 = 0;
DELETE FROM shop.product WHERE sku LIKE 'L%' AND product_id % 7 = 0;
VACUUM shop.product;
SELECT * FROM pg_temp.check_sorted('lamp');
-- REINDEX: a new relation file whose segments start at the same blocks
REINDEX INDEX shop.product_search_idx;
SELECT * FROM pg_temp.check_sorted('lamp');
SELECT * FROM pg_temp.check_sorted('black');

-- ties (format 8): the index keeps the tie-breaks (product_id, and
-- rating_count for the rating sort: INCLUDE columns of the catalog's
-- index), so a sorted scan hands out exactly k rows however many matches
-- share the k-th price, rating, creation day or popularity ('cable': 60
-- prices, 40 popularities, a few ratings among 2,000 matches); before,
-- every tie of the k-th was read from the table
SELECT s AS sort, count(*) AS rows_read
  FROM unnest(ARRAY['price_asc', 'price_desc', 'rating', 'newest', 'popularity']) s,
       LATERAL shop._search_sorted('shop.product_search_idx', '"cable"', s, 20) x
 GROUP BY s ORDER BY s;
-- and the pages still equal the plain ORDER BY once the tie-breaks change
-- (the same averages from three times the ratings: a new rating_count, an
-- update that is not HOT), before and after VACUUM folds them
UPDATE shop.product SET rating_sum = rating_sum * 3, rating_count = rating_count * 3
 WHERE product_id % 11 = 0 AND rating_count > 0;
SELECT * FROM pg_temp.check_sorted('cable');
VACUUM shop.product;
SELECT * FROM pg_temp.check_sorted('cable');
SELECT count(*) AS verify_findings FROM shop.search_verify('shop.product_search_idx');
-- the rating sort's block bounds hold the count below the rating: 10,000
-- products all rated 5.00, the most rated the most popular (the first
-- docids of their segment); the page of the 20 most rated visits at most
-- a tenth of the 10,000 matches and decodes at most a tenth of their
-- postings (a block or two per segment), not every block holding a 5.00
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, category_id, price_cents, rating_sum, rating_count,
                          popularity, status)
SELECT 'G' || i, 'gadget ' || i, :printers, 1000, 5 * i, i, i, 'active'
  FROM generate_series(1, 10000) i;
VACUUM shop.product;
RESET client_min_messages;
SELECT * FROM pg_temp.skips('gadget', '{}', 'rating', 10);
SELECT pg_temp.got('gadget', '{}', 'rating', 20, 0) = pg_temp.want('gadget', '{}', 'rating', 20, 0)
           AS same;
-- and the price sorts' bounds hold the tie id below the price: 10,000
-- products at one price (0, below every other product's), the smallest ids
-- the most popular
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, category_id, price_cents, popularity, status)
SELECT 'W' || i, 'widget ' || i, :printers, 0, 10001 - i, 'active'
  FROM generate_series(1, 10000) i;
VACUUM shop.product;
RESET client_min_messages;
-- What a page read, counted by the scan (shop.search_last_scan: posting
-- blocks and postings decoded, matches visited, table rows fetched), not
-- pg_stat's index pages fetched.  Those depend on the segment layout: the
-- VACUUM above merges every segment into one only when the blocks an
-- earlier merge freed may be reused, i.e. when no other session holds a
-- snapshot older than that merge (installcheck's and the preloaded
-- suite's clusters had one: four segments, the scan read 92 of 168 pages,
-- against 37 of 253 with one segment; reproduced with a session holding a
-- snapshot through the test).  The counts hold in every layout: a first
-- page of 20 visits a few blocks of 32 matches per segment, not a window
-- of 2,048 docids (before, 996 matches with one segment, 2,048 with four:
-- the first window was read whole before the 20th key was known)
CREATE FUNCTION pg_temp.reads(q text, f jsonb, s text, lim int, o int, skip boolean) RETURNS jsonb
LANGUAGE plpgsql AS $f$
DECLARE
    r jsonb;
BEGIN
    PERFORM set_config('shop.search_block_max', skip::text, false);
    PERFORM count(*) FROM shop.search(q, f, s, lim, o);
    SELECT to_jsonb(x) INTO r FROM shop.search_last_scan() x;
    PERFORM set_config('shop.search_block_max', 'on', false);
    RETURN r;
END
$f$;
CREATE FUNCTION pg_temp.bounded(q text, s text, o int) RETURNS TABLE (sort text, off int, all_matches bigint,
    few_matches boolean, few_postings boolean, rows bigint, same boolean)
LANGUAGE plpgsql AS $f$
DECLARE
    full_scan jsonb := pg_temp.reads(q, '{}', s, 20, o, false);
    page jsonb := pg_temp.reads(q, '{}', s, 20, o, true);
BEGIN
    sort := s;
    off := o;
    all_matches := (full_scan ->> 'matches_visited')::bigint;
    -- a twentieth of the matches at most, and of the postings decoded
    few_matches := (page ->> 'matches_visited')::bigint * 20 <= all_matches;
    few_postings := (page ->> 'postings_decoded')::bigint * 20 <= (full_scan ->> 'postings_decoded')::bigint;
    -- the rows up to the page's last, each read or (before the page, on
    -- an all-visible heap page) counted
    rows := (page ->> 'heap_rows')::bigint + (page ->> 'rows_counted')::bigint;
    same := pg_temp.got(q, '{}', s, 20, o) = pg_temp.want(q, '{}', s, 20, o);
    RETURN NEXT;
END
$f$;
SELECT * FROM pg_temp.bounded('widget', 'price_asc', 0)
UNION ALL SELECT * FROM pg_temp.bounded('widget', 'price_desc', 40);
-- one segment (REINDEX), whatever the layout was
REINDEX INDEX shop.product_search_idx;
SELECT * FROM pg_temp.bounded('widget', 'price_asc', 0)
UNION ALL SELECT * FROM pg_temp.bounded('widget', 'price_desc', 40);
-- the first sort of a segment in a backend reads its documents once for
-- the bounds (bound_docs), later pages do not
SELECT (r ->> 'bound_docs')::bigint > 0 AS first_made_bounds
  FROM pg_temp.reads('widget', '{}', 'rating', 20, 0, true) r;
SELECT (r ->> 'bound_docs')::bigint = 0 AS then_cached
  FROM pg_temp.reads('widget', '{}', 'rating', 20, 0, true) r;
-- a deep page counts rows before it that the visibility map says all
-- visible instead of reading them (rows_counted), and reads the others:
-- rows before the page taken out of the storefront or updated in place
-- (HOT), no VACUUM since, give the page of the plain ORDER BY
UPDATE shop.product SET status = 'draft' WHERE sku IN ('W5', 'W33');
UPDATE shop.product SET updated_at = updated_at + interval '1 second' WHERE sku IN ('W12', 'W41');
SELECT s AS sort, o AS off, pg_temp.got('widget', '{}', s, 20, o) = pg_temp.want('widget', '{}', s, 20, o) AS same
  FROM unnest(ARRAY['price_asc', 'price_desc', 'rating']) s, unnest(ARRAY[20, 40, 2000]) o
 ORDER BY 1, 2;
SELECT (r ->> 'heap_rows')::bigint + (r ->> 'rows_counted')::bigint >= 60 AS every_row_seen
  FROM pg_temp.reads('widget', '{}', 'price_asc', 20, 40, true) r;

-- a category's own block bounds (issue 12): 'sprocket' products take
-- turns between two new categories, the Chains ones the cheapest of the
-- catalog, the Gears ones dear, 20 at each price (so ties by the tie id
-- too), the cheapest the most popular (the first docids).  Every block's
-- bound over all its documents is a cheap chain's, below the 20th
-- gear's price: without bounds over the category's own documents a
-- filtered page skips nothing.  With them it visits at most a tenth of the
-- category's matches and decodes at most a tenth of the word's postings
-- (the same page without bounds visits and decodes them all), and the
-- pages (ties, deep offsets, both price sorts, the brand filter too) stay
-- those of a plain ORDER BY
SELECT shop.category_add('Chains') AS chains \gset
SELECT shop.category_add('Gears') AS gears \gset
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, status)
SELECT 'SPR' || i, 'sprocket ' || i, (ARRAY['Acme', 'Bolt'])[1 + (i / 2) % 2],
       (ARRAY[:chains, :gears])[1 + i % 2],
       CASE WHEN i % 2 = 0 THEN 1 + i ELSE 100000 + 100 * (i / 40) END,
       20000 - i, 'active'
  FROM generate_series(1, 12000) i;
VACUUM shop.product;
RESET client_min_messages;
SELECT format('{"category_id": %s}', :gears)::jsonb AS gears_f \gset
SELECT * FROM pg_temp.skips('sprocket', :'gears_f', 'price_asc', 10);
SELECT s AS sort, f AS filter, o AS off,
       pg_temp.got('sprocket', f, s, 20, o) = pg_temp.want('sprocket', f, s, 20, o) AS same
  FROM unnest(ARRAY['price_asc', 'price_desc']) s,
       unnest(ARRAY[:'gears_f', format('{"category_id": %s}', :chains),
                    '{"brand": "bolt"}']::jsonb[]) f,
       unnest(ARRAY[0, 40, 1990]) o
 ORDER BY 1, 2, 3;
-- the bounds of one filter are not another's: the same session, another
-- category, then both, then none
SELECT pg_temp.got('sprocket', f, 'price_asc', 20, 0) = pg_temp.want('sprocket', f, 'price_asc', 20, 0) AS same
  FROM unnest(ARRAY[format('{"category_id": %s}', :chains), :'gears_f',
                    format('{"category_id": %s, "brand": "acme"}', :gears), '{}']::jsonb[])
       WITH ORDINALITY x(f, n)
 ORDER BY n;

-- a word's own block bounds (issue 12): 'flange' products take turns
-- with 'washer' ones, the washers both the cheapest and the dearest of
-- the catalog, the flanges in between, 20 at each price, the cheapest
-- and the dearest flanges the most popular (the first docids), more
-- blocks than the first phase of a segment's scan reads.  Every block's
-- bound over all its documents (or over the category's, which they
-- share) is a washer's, beyond the 20th flange either way: without
-- bounds over the word's own documents a flange page skips nothing.
-- With them a page of either price sort visits at most a tenth of the
-- 15,000 flanges and decodes at most a tenth of the postings the page
-- without bounds decodes, and the pages (ties, deep offsets, both price
-- sorts, with a filter, a second word, a typo) stay those of a plain
-- ORDER BY
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, status)
SELECT 'FLW' || i,
       CASE WHEN i % 2 = 0 THEN 'washer ' || i ELSE 'flange ' || (ARRAY['steel', 'brass'])[1 + (i / 2) % 2] || ' ' || i END,
       (ARRAY['Acme', 'Bolt'])[1 + (i / 4) % 2], :gears,
       CASE WHEN i % 4 = 0 THEN 1 + i WHEN i % 2 = 0 THEN 50000000 + i
            WHEN (i / 40) % 2 = 0 THEN 200000 + 100 * (i / 80)
            ELSE 900000 - 100 * (i / 80) END,
       40000 - i, 'active'
  FROM generate_series(1, 30000) i;
VACUUM shop.product;
RESET client_min_messages;
SELECT s AS sort, x.*
  FROM unnest(ARRAY['price_asc', 'price_desc']) s, LATERAL pg_temp.skips('flange', '{}', s, 10) x
 ORDER BY 1;
SELECT s AS sort, q, f AS filter, o AS off,
       pg_temp.got(q, f, s, 20, o) = pg_temp.want(q, f, s, 20, o) AS same
  FROM unnest(ARRAY['price_asc', 'price_desc', 'rating', 'newest']) s,
       unnest(ARRAY['flange', 'flange steel', 'flnage']) q,
       unnest(ARRAY['{}', :'gears_f', '{"brand": "bolt"}']::jsonb[]) f,
       unnest(ARRAY[0, 40, 1990]) o
 WHERE (q = 'flange' OR o = 0) AND (s LIKE 'price%' OR (f = '{}' AND o = 0))
 ORDER BY 1, 2, 3, 4;

-- and with the cache full (256 entries): 150 brand filters in one
-- session, each an entry of its own next to the word's, so entries are
-- dropped while a page's filter and word bounds are in use
SELECT count(*) FILTER (WHERE pg_temp.got('flange', f, 'price_asc', 20, 0)
                              = pg_temp.want('flange', f, 'price_asc', 20, 0)) AS same,
       count(*) FILTER (WHERE cardinality(pg_temp.got('flange', f, 'price_asc', 20, 0)) = 20) AS full_pages
  FROM (SELECT CASE WHEN n % 10 = 0 THEN '{"brand": "bolt"}'
                    ELSE format('{"brand": "nobrand%s"}', n) END::jsonb AS f
          FROM generate_series(1, 150) n) x;

-- the index function on its own: errors
SELECT pg_temp.err($$SELECT * FROM shop._search_sorted('shop.product_search_idx', '"cable"', 'price_asc', 0)$$);
SELECT pg_temp.err($$SELECT * FROM shop._search_sorted('shop.product', '"cable"', 'price_asc', 10)$$);
-- INCLUDE takes timestamptz, bigint, integer and jsonb columns only
SELECT pg_temp.err($$CREATE INDEX ON shop.product USING shop_search (shop.search_doc(title)) INCLUDE (sku)$$);
-- without a timestamptz INCLUDE column every row ties for "newest"
CREATE TABLE notes (id int PRIMARY KEY, title text, price bigint);
INSERT INTO notes SELECT i, 'note ' || i, i % 5 FROM generate_series(1, 50) i;
CREATE INDEX notes_search ON notes USING shop_search (shop.search_doc(title, NULL, NULL, NULL, price));
SELECT count(*) FROM shop._search_sorted('notes_search', '"note"', 'newest', 3);
SELECT array_agg(n.price ORDER BY n.price, n.id) AS cheapest
  FROM shop._search_sorted('notes_search', '"note"', 'price_asc', 3) s JOIN notes n ON n.ctid = s.ctid;
-- attribute facets need the index's jsonb INCLUDE column
SELECT pg_temp.err($$SELECT * FROM shop._search_facet_counts('notes_search', '"note"', '{}', 3, 3)$$);
-- _search_rows returns shop.product rows: no other table's index
SELECT pg_temp.err($$SELECT * FROM shop._search_rows('notes_search', '"note"', 'relevance', 5, '{}')$$);

DROP TABLE notes;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
