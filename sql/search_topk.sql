-- search_topk: ranked scans skip what cannot reach the top rows (block-max
-- bounds, popularity-ordered documents); the rows and scores must be exactly
-- those of a scan that skips nothing (shop.search_block_max = off)
\i sql/include/prelude.sql
SELECT shop.category_add('Cables') AS cables \gset
SELECT shop.category_add('Printers') AS printers \gset
SET client_min_messages = warning;
-- 40,000 products: titles from a small skewed vocabulary, so common words
-- match thousands of rows and many rows tie on text; popularity and rating
-- vary independently of the insertion order
INSERT INTO shop.product (sku, title, brand, description, category_id, price_cents,
                          rating_sum, rating_count, popularity, in_stock, status)
SELECT 'S' || i,
       b.brand || ' ' || w1.w || ' ' || w2.w || CASE WHEN i % 3 = 0 THEN ' ' || w3.w ELSE '' END
              || CASE WHEN i % 7 = 0 THEN ' ' || w1.w ELSE '' END,
       b.brand,
       'for ' || w3.w || ' and ' || w2.w || repeat(' spare', i % 5),
       CASE WHEN i % 11 = 0 THEN :printers ELSE :cables END,
       100 + (i * 37) % 90000,
       (i % 6) * ((i / 6) % 4), (i / 6) % 4,
       floor(100000.0 / (1 + (i::bigint * 7919) % 40000))::real,
       i % 4 <> 0, 'active'
  FROM generate_series(1, 40000) i
 CROSS JOIN LATERAL (SELECT (ARRAY['HP', 'Canon', 'Epson', 'Brother', 'Belkin', 'Logitech'])[1 + (i * 13) % 6] AS brand) b
 CROSS JOIN LATERAL (SELECT (ARRAY['cable', 'cable', 'cable', 'toner', 'toner', 'black', 'adapter', 'paper',
                                   'cartridge', 'yellow', 'mouse', 'cables', 'cabling', 'keyboard'])[1 + (i * 31) % 14] AS w) w1
 CROSS JOIN LATERAL (SELECT (ARRAY['black', 'usb', 'white', 'cable', 'original', 'magenta', 'toner', 'hdmi',
                                   'wireless', 'laser'])[1 + (i * 17) % 10] AS w) w2
 CROSS JOIN LATERAL (SELECT (ARRAY['office', 'home', 'printer', 'desk', 'travel', 'gaming', 'photo'])[1 + (i * 5) % 7] AS w) w3;
REINDEX INDEX shop.product_search_idx;
-- a second segment and a pending list, with an update of a popular row
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, status)
SELECT 'T' || i, 'Belkin cable hdmi ' || i, 'Belkin', :cables, 500 + i, i, 'active'
  FROM generate_series(1, 3000) i;
VACUUM shop.product;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, status)
SELECT 'U' || i, 'HP toner black ' || i, 'HP', :printers, 900 + i, 50000 + i, 'active'
  FROM generate_series(1, 200) i;
UPDATE shop.product SET title = title || ' cable', popularity = 99999 WHERE sku = 'S17';
RESET client_min_messages;
SELECT jsonb_array_length(shop.search_index_info('shop.product_search_idx') -> 'segments') >= 2 AS segments,
       (shop.search_index_info('shop.product_search_idx') ->> 'pending')::int > 0 AS pending;

-- the ranked ids and scores of a query, as text
CREATE FUNCTION pg_temp.ranked(q jsonb, n int) RETURNS text LANGUAGE sql AS $f$
    SELECT string_agg(p.product_id || ':' || round(s.score::numeric, 4), ' ' ORDER BY s.ord)
      FROM shop.search_scan('shop.product_search_idx', q, n) WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
      JOIN shop.product p ON p.ctid = s.ctid
$f$;
CREATE FUNCTION pg_temp.hits(q text) RETURNS text LANGUAGE sql AS $f$
    SELECT string_agg(product_id::text, ' ' ORDER BY ord)
      FROM (SELECT product_id, row_number() OVER () AS ord
              FROM shop.search(q, lim => 15, off => 40)) x
$f$;
-- shared buffer pages a ranked scan reads
CREATE FUNCTION pg_temp.pages(q jsonb) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    plan jsonb;
BEGIN
    EXECUTE format('EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM shop.search_scan(%L, %L::jsonb, 20)',
                   'shop.product_search_idx', q) INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Shared Hit Blocks')::bigint + (plan -> 0 -> 'Plan' ->> 'Shared Read Blocks')::bigint;
END
$f$;
CREATE TEMP TABLE queries (q jsonb, n int);
INSERT INTO queries VALUES
 ('{"q": "cable"}', 20), ('{"q": "cable"}', 200), ('{"q": "toner"}', 20), ('{"q": "black"}', 50),
 ('{"q": "hp cable"}', 20), ('{"q": "hp cable", "match": "any"}', 20), ('{"q": "hp cable", "match": "any"}', 300),
 ('{"q": "canon black toner", "match": "any"}', 20), ('{"q": "cab"}', 20), ('{"q": "cabel"}', 20), ('{"q": "tonner blak", "match": "any"}', 20), ('{"q": "toner blakc"}', 20),
 (('{"q": "cable", "category_ids": [' || :printers || ']}')::jsonb, 20),
 ('{"q": "toner", "brands": ["Epson"], "in_stock": true}', 20),
 ('{"q": "usb", "price_min": 1000, "price_max": 30000}', 20),
 ('{"q": "cable", "boost_brands": ["Belkin"]}', 20),
 (('{"q": "paper", "boost_categories": [' || :printers || ']}')::jsonb, 20),
 ('{"q": "hdmi adapter", "match": "any"}', 20),
 ('{"q": "cable", "synonyms": [["cable", "wire"]]}', 20),
 ('{"q": "keyboard mouse", "match": "any"}', 40),
 -- two frequent words with few rows in common: windows where no row
 -- missing a word can still enter are evaluated in AND mode (bw1)
 ('{"q": "logitech toner", "match": "any"}', 20), ('{"q": "logitech toner", "match": "any"}', 150),
 ('{"q": "belkin yellow", "match": "any"}', 20), ('{"q": "epson hdmi gaming", "match": "any"}', 30),
 -- rows having every word in a pass of their own, the others after only
 -- if the top k is short of those (bw2): few or none having all (a word
 -- the index lacks, a typo), a mix across both segments, marked classes
 ('{"q": "keyboard zebra", "match": "any"}', 20), ('{"q": "belkin tonner", "match": "any"}', 40),
 ('{"q": "logitech hdmi gaming", "match": "any"}', 500),
 ('{"q": "belkin cable hdmi", "match": "any"}', 3500),
 ('{"q": "epson mouse", "match": "any", "brands": ["Epson", "HP"], "in_stock": true}', 30),
 (('{"q": "canon cabling", "match": "any", "type_words": ["cable"], "intent_categories": [' || :cables || ']}')::jsonb, 40),
 -- the intent's and the prior's boosts (evaluated by class of marked
 -- documents, the most boosted first)
 ('{"q": "cable", "type_words": ["cable"]}', 20),
 (('{"q": "black", "type_words": ["toner"], "intent_categories": [' || :printers || ']}')::jsonb, 50),
 (('{"q": "hp cable", "match": "any", "type_words": ["cable"], "intent_categories": [' || :cables || ']}')::jsonb, 20),
 (('{"q": "toner", "intent_categories": [' || :cables || ']}')::jsonb, 20),
 (('{"q": "cable", "prior_categories": [[' || :printers || ', 0.8]]}')::jsonb, 20),
 (('{"q": "black toner", "match": "any", "type_words": ["black", "toner"], "intent_categories": [' || :printers
   || '], "prior_categories": [[' || :cables || ', 0.5]]}')::jsonb, 30),
 (('{"q": "cable", "type_words": ["cable"], "category_ids": [' || :printers || ']}')::jsonb, 20),
 ('{"q": "cabel", "type_words": ["adapter"]}', 20);

-- every query: the same rows in the same order with the same scores
CREATE TEMP TABLE pruned AS SELECT q, n, pg_temp.ranked(q, n) AS r FROM queries;
SET shop.search_block_max = off;
CREATE TEMP TABLE full_scan AS SELECT q, n, pg_temp.ranked(q, n) AS r FROM queries;
SELECT p.q, p.n, p.r IS NOT NULL AS found, p.r = f.r AS same
  FROM pruned p JOIN full_scan f USING (q, n) ORDER BY p.q::text, p.n;
-- pages further down (the ordered scan resumes in growing batches)
CREATE TEMP TABLE deep_full AS SELECT pg_temp.hits('cable') AS a, pg_temp.hits('hp toner') AS b;
RESET shop.search_block_max;
SELECT d.a = pg_temp.hits('cable') AS cable_page_same, d.b = pg_temp.hits('hp toner') AS hp_toner_page_same,
       d.a IS NOT NULL AND d.b IS NOT NULL AS found
  FROM deep_full d;
-- and pruning did skip: a common word reads far fewer pages
SELECT pg_temp.pages('{"q": "cable"}') AS pruned_pages \gset
SET shop.search_block_max = off;
SELECT pg_temp.pages('{"q": "cable"}') AS full_pages \gset
RESET shop.search_block_max;
SELECT :pruned_pages < :full_pages * 0.8 AS fewer_pages;
SELECT shop.search_verify('shop.product_search_idx');

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
