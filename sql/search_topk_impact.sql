-- search_topk_impact: the top rows of two (or more) very common words.
-- A ranked scan reads the high-scoring postings of a frequent term (its
-- impact list, worked out once per backend) instead of all its blocks
-- when a window needs more from the term than the rest of its postings
-- can give; the rows, scores and order (ties included) must be exactly
-- those of a scan that skips nothing (shop.search_block_max = off), at
-- every depth, in one session across inserts that move the collection
-- statistics, VACUUM folds and a REINDEX
\i sql/include/prelude.sql
-- no autovacuum: a fold or merge between the two scans of a comparison
-- would change the collection statistics, and so the scores, under it
ALTER TABLE shop.product SET (autovacuum_enabled = off);
SELECT shop.category_add('Cables') AS cables \gset
SELECT shop.category_add('Printers') AS printers \gset
SET client_min_messages = warning;
-- 30,000 products in groups of three identical ones (same text,
-- popularity and rating: their scores tie); black, cable, usb, adapter
-- and the brands are each in 8,000 to 14,000 titles, once or twice, in
-- titles of 2 to 14 words, and in some descriptions
INSERT INTO shop.product (sku, title, brand, description, category_id, price_cents,
                          rating_sum, rating_count, popularity, in_stock, status)
SELECT 'P' || i,
       concat_ws(' ', b.brand,
                 CASE WHEN r.r1 < 45 THEN 'black' END,
                 CASE WHEN r.r2 < 40 THEN 'cable' END,
                 CASE WHEN r.r3 < 30 THEN 'usb' END,
                 CASE WHEN r.r4 < 28 THEN 'adapter' END,
                 CASE WHEN r.r1 % 9 = 0 THEN 'black' END,
                 CASE WHEN r.r2 % 11 = 0 THEN 'cable' END,
                 (SELECT string_agg('w' || ((g.g * 31 + k) % 50), ' ') FROM generate_series(1, (g.g * 13) % 9) k)),
       b.brand,
       concat_ws(' ', 'for',
                 CASE WHEN r.r3 BETWEEN 30 AND 59 THEN 'usb' END,
                 CASE WHEN r.r2 BETWEEN 40 AND 59 THEN 'cable' END,
                 CASE WHEN r.r1 BETWEEN 45 AND 69 THEN 'black' END,
                 repeat('spare ', (r.r4 % 12)::int)),
       CASE WHEN g.g % 4 = 0 THEN :printers ELSE :cables END,
       100 + (g.g * 37) % 90000,
       (g.g % 6) * ((g.g / 6) % 4), (g.g / 6) % 4,
       floor(100000.0 / (1 + (g.g::bigint * 7919) % 10000))::real,
       g.g % 5 <> 0, 'active'
  FROM generate_series(0, 29999) i
 CROSS JOIN LATERAL (SELECT i::bigint / 3 AS g) g
 CROSS JOIN LATERAL (SELECT (g.g * 7919) % 100 AS r1, (g.g * 104729) % 100 AS r2,
                            (g.g * 1299709) % 100 AS r3, (g.g * 15485863) % 100 AS r4) r
 CROSS JOIN LATERAL (SELECT (ARRAY['HP', 'Canon', 'Belkin'])[1 + g.g % 3] AS brand) b;
REINDEX INDEX shop.product_search_idx;
RESET client_min_messages;

-- the ranked ids and scores of a query, as text
CREATE FUNCTION pg_temp.ranked(q jsonb, n int) RETURNS text LANGUAGE sql AS $f$
    SELECT string_agg(p.product_id || ':' || s.score::text, ' ' ORDER BY s.ord)
      FROM shop.search_scan('shop.product_search_idx', q, n) WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
      JOIN shop.product p ON p.ctid = s.ctid
$f$;
-- a page of shop.search further down (the ordered scan resumes in batches)
CREATE FUNCTION pg_temp.page(q text, o int) RETURNS text LANGUAGE sql AS $f$
    SELECT string_agg(product_id || ':' || score::text, ' ')
      FROM shop.search(q, lim => 25, off => o)
$f$;
-- shared buffer pages a ranked scan reads
CREATE FUNCTION pg_temp.pages(q jsonb) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    plan jsonb;
BEGIN
    EXECUTE format('EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM shop.search_scan(%L, %L::jsonb, 20)',
                   'shop.product_search_idx', q) INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Shared Hit Blocks')::bigint + coalesce((plan -> 0 -> 'Plan' ->> 'Shared Read Blocks')::bigint, 0);
END
$f$;
CREATE TEMP TABLE queries (q jsonb, n int);
INSERT INTO queries
SELECT jsonb_build_object('q', w), n
  FROM unnest(ARRAY['black cable', 'cable black', 'hp black', 'black usb', 'usb adapter',
                    'cable adapter', 'canon cable', 'belkin usb cable', 'black cable usb',
                    'hp cable adapter', 'black spare', 'cable spare usb', 'black cab',
                    'blakc cable', 'black', 'cable']) w,
       unnest(ARRAY[10, 64, 300]) n;
INSERT INTO queries VALUES
 (('{"q": "black cable", "category_ids": [' || :printers || ']}')::jsonb, 20),
 ('{"q": "black cable", "brands": ["Canon"]}', 20),
 ('{"q": "black usb", "in_stock": true, "price_min": 1000, "price_max": 60000}', 40),
 ('{"q": "black cable", "boost_brands": ["Belkin"]}', 20),
 ('{"q": "black cable", "type_words": ["cable"]}', 40),
 (('{"q": "usb adapter", "type_words": ["adapter"], "intent_categories": [' || :cables || ']}')::jsonb, 20),
 ('{"q": "black cable", "match": "any"}', 50),
 ('{"q": "black cable", "synonyms": [["cable", "wire"]]}', 20);
CREATE FUNCTION pg_temp.compare() RETURNS TABLE (q jsonb, n int, found boolean, same boolean)
LANGUAGE plpgsql AS $f$
BEGIN
    CREATE TEMP TABLE pruned AS SELECT x.q, x.n, pg_temp.ranked(x.q, x.n) AS r FROM queries x;
    CREATE TEMP TABLE pruned_pages AS
        SELECT w, o, pg_temp.page(w, o) AS r
          FROM unnest(ARRAY['black cable', 'hp black', 'usb adapter']) w, unnest(ARRAY[0, 40, 300]) o;
    SET LOCAL shop.search_block_max = off;
    RETURN QUERY
        SELECT p.q, p.n, p.r IS NOT NULL, p.r IS NOT DISTINCT FROM pg_temp.ranked(p.q, p.n)
          FROM pruned p
        UNION ALL
        SELECT jsonb_build_object('page', p.w, 'off', p.o), 25, p.r IS NOT NULL,
               p.r IS NOT DISTINCT FROM pg_temp.page(p.w, p.o)
          FROM pruned_pages p;
    DROP TABLE pruned;
    DROP TABLE pruned_pages;
END
$f$;
CREATE FUNCTION pg_temp.summary() RETURNS TABLE (queries bigint, found bigint, differ text)
LANGUAGE sql AS $f$
    SELECT count(*), count(*) FILTER (WHERE c.found),
           string_agg(c.q::text || ' ' || c.n, ', ' ORDER BY c.q::text, c.n) FILTER (WHERE NOT c.same)
      FROM pg_temp.compare() c
$f$;

-- every query and page: the same rows in the same order with the same scores
SELECT * FROM pg_temp.summary();
-- and the impact lists were read: far fewer pages than a scan of every block
-- (buffer accesses: a scan keeps a posting page pinned from one block of a
-- term to the next, so a scan of every block counts each posting page
-- about once, not once per block: 355 here, 826 before; the pruned scan
-- 188, 269 before)
SELECT pg_temp.pages('{"q": "black cable"}') AS pruned_pages \gset
SET shop.search_block_max = off;
SELECT pg_temp.pages('{"q": "black cable"}') AS full_pages \gset
RESET shop.search_block_max;
SELECT :pruned_pages < :full_pages * 0.6 AS fewer_pages;

-- rows added (pending documents with long titles: the averages and the
-- idf move, the lists were worked out under the old ones), rows updated
-- and deactivated (dead documents of the listed postings)
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, description, category_id, price_cents, popularity, status)
SELECT 'N' || i, 'HP black cable usb adapter ' || repeat('long ', i % 30) || i, 'HP', 'black cable',
       :cables, 500 + i, 200000 - i, 'active'
  FROM generate_series(1, 400) i;
UPDATE shop.product SET popularity = 500000, title = 'black cable' WHERE sku IN ('P3000', 'P3001', 'P27000');
UPDATE shop.product SET status = 'archived' WHERE sku IN ('P0', 'P1', 'P2', 'P300');
RESET client_min_messages;
SELECT * FROM pg_temp.summary();
-- folded into a second segment, then merged into one
VACUUM shop.product;
SELECT * FROM pg_temp.summary();
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, status)
SELECT 'M' || i, 'Canon cable black ' || i, 'Canon', :printers, 900 + i, i, 'active'
  FROM generate_series(1, 2000) i;
UPDATE shop.product SET title = title || ' usb' WHERE sku LIKE 'P1%' AND sku::text < 'P13';
RESET client_min_messages;
VACUUM shop.product;
SELECT * FROM pg_temp.summary();
-- a rebuilt index (a new relation file: new lists)
REINDEX INDEX shop.product_search_idx;
SELECT * FROM pg_temp.summary();

-- A full impact-list cache (shop.search_impact_cache, docs/search.md
-- "Memory"): a term that gets no list is scored from its blocks.  The
-- frequent terms' lists here take 30 to 50 kB each, so 64 kB holds one
-- (lowering the setting drops the others first) and the other terms of
-- every query go without: the rows and scores are still those of a scan
-- that skips nothing.  (How many lists fit is not shown: their sizes
-- follow the documents the segments hold, and the REINDEX above keeps
-- the rows another session's snapshot may still see: two fit with one
-- held)
SELECT entries AS lists_before FROM shop.search_cache_stats() WHERE cache = 'impact_lists' \gset
SELECT :lists_before >= 4 AS more_lists_than_fit;
SET shop.search_impact_cache = '64kB';
SELECT * FROM pg_temp.summary();
SELECT entries < :lists_before AS lists_dropped, bytes <= max_bytes AS within_cap, max_bytes,
       allocated >= bytes AS allocated_ok
  FROM shop.search_cache_stats() WHERE cache = 'impact_lists';
-- none at all: every term from its blocks, the same rows
SET shop.search_impact_cache = 0;
SELECT * FROM pg_temp.summary();
SELECT entries AS lists, bytes FROM shop.search_cache_stats() WHERE cache = 'impact_lists';
RESET shop.search_impact_cache;
SELECT * FROM pg_temp.summary();
SELECT entries >= 4 AS lists_again FROM shop.search_cache_stats() WHERE cache = 'impact_lists';
-- the other caches, filled by a facet count and a sorted page, as the
-- storefront sees them (sizes only)
SET ROLE shop_storefront;
SELECT (shop.search_facets('black cable') -> 'total')::int > 0 AS counted;
SELECT count(*) FROM shop.search('cable', '{}', 'price_asc', 5);
SELECT cache, bytes > 0 AS used, entries > 0 AS has_entries, max_bytes, max_entries
  FROM shop.search_cache_stats() ORDER BY cache;
RESET ROLE;
SELECT shop.search_verify('shop.product_search_idx');

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
