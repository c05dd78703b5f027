-- search: the shop_search index and the search API
\i sql/include/prelude.sql
-- titles of a search, in order, with typo counts
CREATE FUNCTION pg_temp.s(q text, f jsonb DEFAULT '{}', sort text DEFAULT 'relevance',
                          lim int DEFAULT 20, off int DEFAULT 0, cust bigint DEFAULT NULL)
RETURNS TABLE (title text, typos int, missing_words int) LANGUAGE sql AS $f$
    SELECT title, typos, missing_words FROM shop.search(q, f, sort, lim, off, cust)
$f$;

-- tokenizer: folding, splitting, stems
SELECT * FROM shop.search_tokens('Müller-Lüdenscheid STRASSE i7-8700K Laptops Æsir naïve café ŁÓDŹ');
SELECT * FROM shop.search_tokens('running shoes', 'english');
SELECT pg_temp.err($$SELECT * FROM shop.search_tokens('x', 'klingon')$$);

-- a small catalog
SELECT shop.category_add('Electronics') AS electronics \gset
SELECT shop.category_add('Computers', :electronics) AS computers \gset
SELECT shop.category_add('Laptops', :computers) AS laptops \gset
SELECT shop.category_add('TV & Audio', :electronics) AS tv \gset
SELECT shop.category_add('Kitchen') AS kitchen \gset
INSERT INTO shop.product (sku, title, brand, description, category_id, price_cents,
                          rating_sum, rating_count, popularity, in_stock, attributes, status) VALUES
 ('L1', 'Apple MacBook Pro 14 laptop', 'Apple', 'A powerful laptop with the M3 chip', :laptops, 199900, 9, 2, 50, true, '{"color": "silver"}', 'active'),
 ('L2', 'Lenovo ThinkPad X1 Carbon', 'Lenovo', 'Business notebook, light and fast. Great laptops for travel', :laptops, 149900, 8, 2, 30, true, '{"color": "black"}', 'active'),
 ('L3', 'Dell XPS 13 Laptop', 'Dell', 'Compact laptop', :laptops, 99900, 3, 1, 10, false, '{"color": "silver"}', 'active'),
 ('T1', 'Samsung 55" QLED Television', 'Samsung', 'Smart TV with 4K resolution', :tv, 79900, 0, 0, 60, true, '{}', 'active'),
 ('T2', 'Sony Bravia Television 65"', 'Sony', 'OLED television', :tv, 189900, 5, 1, 40, true, '{}', 'active'),
 ('A1', 'Samsung Galaxy Buds wireless earphones', 'Samsung', 'Bluetooth in-ear headphones', :electronics, 12900, 4, 1, 80, true, '{}', 'active'),
 ('H1', 'Seagate 2TB external hard drive', 'Seagate', 'Portable HDD, USB 3.0', :computers, 6900, 0, 0, 20, true, '{}', 'active'),
 ('K1', 'Café Crème espresso machine', 'DeLonghi', 'Makes great coffee, crème and café au lait', :kitchen, 29900, 0, 0, 5, true, '{}', 'active'),
 ('K2', 'Müller stand mixer', 'Müller', 'Kitchen mixer for dough', :kitchen, 15900, 0, 0, 1, false, '{}', 'active'),
 ('K3', 'Coffee grinder (draft)', 'DeLonghi', 'Not for sale yet', :kitchen, 4900, 0, 0, 0, true, '{}', 'draft'),
 ('C1', 'Laptop sleeve case for MacBook', 'Generic', 'Protective case', :computers, 1900, 0, 0, 15, true, '{}', 'active');

-- new rows sit in the pending list until VACUUM, and are searchable at once
SELECT shop.search_index_info('shop.product_search_idx') - 'blocks' AS info;
SELECT * FROM pg_temp.s('laptop');
VACUUM shop.product;
SELECT shop.search_index_info('shop.product_search_idx') - 'blocks' AS info;

-- words, stems, exact before stem; rows with every word first, then rows missing words
SELECT * FROM pg_temp.s('laptop');
SELECT * FROM pg_temp.s('laptops');
SELECT * FROM pg_temp.s('macbook laptop');
SELECT * FROM pg_temp.s('apple television');
-- accents fold both ways, case does not matter
SELECT * FROM pg_temp.s('cafe creme');
SELECT * FROM pg_temp.s('MULLER');
SELECT * FROM pg_temp.s('Müller');
-- typos: 1 from 5 letters, 2 from 9, first-letter typos count double
SELECT * FROM pg_temp.s('samsnug');
SELECT * FROM pg_temp.s('televisoin');
SELECT * FROM pg_temp.s('telvisoin');
SELECT * FROM pg_temp.s('lenvo');
SELECT * FROM pg_temp.s('senovo');
SELECT * FROM pg_temp.s('dlel');
SELECT * FROM pg_temp.s('sony televisoin');
-- prefix on the last word only, not when the query ends with a space
SELECT * FROM pg_temp.s('sams');
SELECT * FROM pg_temp.s('sams ');
SELECT * FROM pg_temp.s('samsung tel');
SELECT * FROM pg_temp.s('sams tel');
SELECT * FROM pg_temp.s('macboo');
-- empty and stop-word queries
SELECT count(*) FROM pg_temp.s('');
SELECT count(*) FROM pg_temp.s('  !!! ');
SELECT * FROM pg_temp.s('case for macbook');
SELECT * FROM pg_temp.s('for');
-- draft products are never returned
SELECT * FROM pg_temp.s('grinder');

-- filters
SELECT * FROM pg_temp.s('laptop', jsonb_build_object('category_id', :laptops));
SELECT * FROM pg_temp.s('laptop', jsonb_build_object('category_id', :computers));
SELECT * FROM pg_temp.s('samsung', jsonb_build_object('category_id', :tv));
SELECT * FROM pg_temp.s('laptop', '{"brand": "dell"}');
SELECT * FROM pg_temp.s('laptop', '{"brand": ["Apple", "LENOVO"]}');
SELECT * FROM pg_temp.s('mixer', '{"brand": "muller"}');
SELECT * FROM pg_temp.s('laptop', '{"price_min": 100000}');
SELECT * FROM pg_temp.s('laptop', '{"price_max": 100000}');
SELECT * FROM pg_temp.s('laptop', '{"price_min": 100000, "price_max": 150000}');
SELECT * FROM pg_temp.s('laptop', '{"rating_min": 4}');
SELECT * FROM pg_temp.s('laptop', '{"in_stock": false}');
SELECT * FROM pg_temp.s('laptop', '{"attributes": {"color": "silver"}}');
SELECT * FROM pg_temp.s('laptop', '{"attributes": {"color": "silver"}, "in_stock": true}');

-- sorts
SELECT title, price_cents FROM shop.search('laptop', sort => 'price_asc');
SELECT title, price_cents FROM shop.search('laptop', sort => 'price_desc');
SELECT title, rating_avg FROM shop.search('laptop', sort => 'rating');
SELECT title FROM shop.search('laptop', sort => 'popularity');
UPDATE shop.product SET created_at = now() + interval '1 day' WHERE sku = 'L3';
SELECT title FROM shop.search('laptop', sort => 'newest');
-- paging
SELECT * FROM pg_temp.s('laptop', lim => 2);
SELECT * FROM pg_temp.s('laptop', lim => 2, off => 2);
SELECT score > 0 AS positive_scores, count(*) FROM shop.search('laptop') GROUP BY 1;

-- errors
SELECT pg_temp.err($$SELECT * FROM shop.search(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '[1]')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"colour": "red"}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"price_min": "cheap"}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"brand": 3}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"brand": []}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"in_stock": "yes"}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"attributes": [1]}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"category_id": 999999}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"category_id": "tv"}')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', sort => 'cheapest')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', lim => 0)$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', lim => 5000)$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', off => -1)$$);
SELECT pg_temp.err(format('SELECT * FROM shop.search(%L)', repeat('a', 257)));
SELECT pg_temp.err($$SELECT * FROM shop.search('card 4242 4242 4242 4242')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search('x', '{"brand": "4242424242424242"}')$$);
SET shop.max_query_length = 10;
SELECT pg_temp.err($$SELECT * FROM shop.search('samsung television')$$);
RESET shop.max_query_length;
-- the operator's own query validation
SELECT pg_temp.err($$SELECT shop.search_doc('a') OPERATOR(shop.@@@) '{"q": "a", "bogus": 1}'$$);
SELECT pg_temp.err($$SELECT shop.search_doc('a') OPERATOR(shop.@@@) '{"colour": "x"}'$$);
SELECT pg_temp.err($$SELECT shop.search_doc('a') OPERATOR(shop.@@@) '[1]'$$);
SELECT pg_temp.err($$SELECT shop.search_doc('a') OPERATOR(shop.@@@) '{"q": "a", "price_min": "x"}'$$);

-- synonyms: both ways, multi-word, no reindex
SELECT * FROM pg_temp.s('tv');
SELECT shop.synonym_add('TV', ARRAY['television', 'telly']);
SELECT shop.synonym_add('hdd', ARRAY['Hard Drive']);
SELECT shop.synonym_add('laptop', ARRAY['notebook']);
SELECT term, synonyms FROM shop.synonym ORDER BY term;
SELECT * FROM pg_temp.s('tv');
SELECT * FROM pg_temp.s('telly');
SELECT * FROM pg_temp.s('samsung tv');
SELECT * FROM pg_temp.s('hdd');
SELECT * FROM pg_temp.s('seagate hard drive');
SELECT * FROM pg_temp.s('notebook');
SELECT shop.synonym_remove('tv'), shop.synonym_remove('tv');
SELECT * FROM pg_temp.s('telly');
SELECT pg_temp.err($$SELECT shop.synonym_add('x', ARRAY[]::text[])$$);
SELECT pg_temp.err($$SELECT shop.synonym_add(NULL, ARRAY['a'])$$);
SELECT pg_temp.err($$SELECT shop.synonym_add('!!', ARRAY['a'])$$);

-- personalization: a customer who viewed Samsung products: Samsung gains most (brand and category)
SELECT title, round(score::numeric, 3) AS score FROM shop.search('television');
INSERT INTO shop.view_event (customer_id, product_id)
SELECT 42, product_id FROM shop.product WHERE sku IN ('T1', 'A1');
SELECT title, round(score::numeric, 3) AS score FROM shop.search('television', customer_id => 42);
SELECT title, round(score::numeric, 3) AS score FROM shop.search('television', customer_id => 43);

-- facets: exact counts over the whole match set
SELECT jsonb_pretty(shop.search_facets('laptop'));
SELECT shop.search_facets('samsung', '{"in_stock": true}') -> 'total' AS total,
       shop.search_facets('samsung', '{"in_stock": true}') -> 'brand' AS brands;
SELECT shop.search_facets('nothingmatchesthis');
-- counts are of visible rows: a delete (not yet vacuumed) counts at once
BEGIN;
DELETE FROM shop.product WHERE sku = 'L2';
SELECT shop.search_facets('laptop') -> 'total' AS total_after_delete,
       shop.search_facets('laptop') -> 'brand' AS brands_after_delete;
ROLLBACK;
-- with an attributes filter the rows themselves are counted
SELECT shop.search_facets('laptop', '{"attributes": {"color": "silver"}}') -> 'total' AS silver;
SELECT pg_temp.err($$SELECT shop.search_facets('x', '{"nope": 1}')$$);

-- autocomplete and did you mean
SELECT * FROM shop.autocomplete('sam');
SELECT * FROM shop.autocomplete('lapt', 3);
SELECT * FROM shop.autocomplete('kitch');
SELECT * FROM shop.autocomplete('');
SELECT pg_temp.err($$SELECT * FROM shop.autocomplete('x', 0)$$);
SELECT pg_temp.err($$SELECT * FROM shop.autocomplete(NULL)$$);
SELECT shop.did_you_mean('samsnug televisoin') AS fixed,
       shop.did_you_mean('samsung television') AS fine,
       shop.did_you_mean('zzzzzzzz') AS hopeless;
SELECT pg_temp.err($$SELECT shop.did_you_mean(NULL)$$);

-- the planner uses the index for matching and for ORDER BY ... LIMIT
-- (on analyzed statistics, and no sort: on a table this small the
-- planner's choice between the index's order and a sort of a full scan
-- of another index tips as the search index gains or loses a page)
ANALYZE shop.product;
SET enable_seqscan = off;
SET enable_sort = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM shop.product p
 WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                       p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.@@@) '{"q": "laptop"}'
   AND p.status = 'active';
SELECT count(*) FROM shop.product p
 WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                       p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.@@@) '{"q": "laptop"}'
   AND p.status = 'active';
EXPLAIN (COSTS OFF)
SELECT title FROM shop.product p WHERE p.status = 'active'
 ORDER BY shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                          p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.<=>) '{"q": "laptop"}'
 LIMIT 3;
SELECT title FROM shop.product p WHERE p.status = 'active'
 ORDER BY shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                          p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.<=>) '{"q": "laptop"}'
 LIMIT 3;
RESET enable_seqscan;
RESET enable_sort;
-- without the index the operators agree on what matches
SET enable_indexscan = off; SET enable_bitmapscan = off;
SELECT title FROM shop.product p
 WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                       p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.@@@) '{"q": "samsnug"}'
 ORDER BY title;
RESET enable_indexscan; RESET enable_bitmapscan;

-- opclass validation
SELECT opcname, amvalidate(o.oid) FROM pg_opclass o JOIN pg_am a ON a.oid = o.opcmethod
 WHERE a.amname = 'shop_search';

-- verification after inserts, updates, deletes and VACUUM
SELECT * FROM shop.search_verify('shop.product_search_idx');
INSERT INTO shop.product (sku, title, brand, category_id, price_cents)
SELECT 'G' || g, 'Generic gadget ' || g, 'Gadgetco', :electronics, 1000 + g FROM generate_series(1, 300) g;
UPDATE shop.product SET price_cents = price_cents + 1, title = title || ' v2' WHERE sku IN ('L1', 'G7', 'G8');
DELETE FROM shop.product WHERE sku IN ('G9', 'G10', 'T1');
SELECT * FROM shop.search_verify('shop.product_search_idx');
SELECT * FROM pg_temp.s('gadget 7 v2');
SELECT count(*) FROM shop.search('gadget', lim => 1000);
-- ordered scans hand out rows in batches (64, then 256, ...): no row twice,
-- none lost, in rank order
CREATE FUNCTION pg_temp.batches(q jsonb) RETURNS TABLE (n bigint, distinct_rows bigint, ordered boolean)
LANGUAGE sql AS $f$
    SELECT count(*), count(DISTINCT ctid), bool_and(ok)
      FROM (SELECT ctid, ROW(missing, typos, -score) >= lag(ROW(missing, typos, -score)) OVER (ORDER BY ord)
                         IS NOT FALSE AS ok
              FROM shop.search_scan('shop.product_search_idx', q, 1000)
                   WITH ORDINALITY AS s(ctid, score, typos, missing, ord)) x
$f$;
SELECT * FROM pg_temp.batches('{"q": "gadget"}');
SELECT * FROM pg_temp.batches('{"q": "gadget samsung", "match": "any"}');
SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT count(*), count(DISTINCT product_id) FROM (
    SELECT product_id FROM shop.product p WHERE p.status = 'active'
     ORDER BY shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                              p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.<=>) '{"q": "gadget"}'
     LIMIT 290) x;
RESET enable_seqscan; RESET enable_bitmapscan;
SELECT * FROM pg_temp.s('samsung');
VACUUM shop.product;
SELECT * FROM shop.search_verify('shop.product_search_idx');
SELECT shop.search_index_info('shop.product_search_idx') -> 'pending' AS pending;
SELECT count(*) FROM shop.search('gadget', lim => 1000);
SELECT * FROM pg_temp.batches('{"q": "gadget"}');
SELECT * FROM pg_temp.s('macbook');
-- many VACUUMs merge segments; the index stays exact, and released
-- blocks (folded pending pages, merged segments) are reused.  A released
-- block is reused only once no snapshot older than its release exists,
-- in any session of this database (R2 in ssvacuum.c): a parallel test's
-- transaction, a REPEATABLE READ session, would keep every block this
-- loop frees (313 blocks, 271 of them free, against 48 and 12 alone).
-- So before each round, wait (at most 10 seconds) until the other
-- sessions' snapshots and transactions are younger than the blocks the
-- last VACUUM released: this round's pending pages and VACUUM may then
-- reuse them, whatever snapshots the others take later (a session that
-- holds one snapshot through the whole loop still keeps them all, and
-- this check then fails after four minutes)
CREATE PROCEDURE pg_temp.settle() LANGUAGE plpgsql AS $f$
DECLARE
    t timestamptz := clock_timestamp();
    now_xid xid := (pg_snapshot_xmax(pg_current_snapshot())::text::bigint % 4294967296)::text::xid;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity
                               WHERE datname = current_database() AND pid <> pg_backend_pid()
                                 AND (age(backend_xmin) >= age(now_xid) OR age(backend_xid) >= age(now_xid)))
               OR clock_timestamp() > t + interval '10 seconds';
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$f$;
SELECT (shop.search_index_info('shop.product_search_idx') ->> 'blocks')::int AS blocks_before \gset
SELECT 'CALL pg_temp.settle()',
       format('UPDATE shop.product SET popularity = popularity + 1 WHERE sku LIKE %L', 'G' || i || '%'),
       'VACUUM shop.product'
  FROM generate_series(1, 24) i \gexec
SELECT jsonb_array_length(shop.search_index_info('shop.product_search_idx') -> 'segments') < 8 AS merged;
-- (without reuse, 24 folds and 3 merges of this index would pass 150 blocks)
SELECT (shop.search_index_info('shop.product_search_idx') ->> 'blocks')::int < 4 * :blocks_before
       AS space_reused;
SELECT * FROM shop.search_verify('shop.product_search_idx');
SELECT count(*) FROM shop.search('gadget', lim => 1000);
-- every word first (the 12 gadgets numbered 3...), then rows missing a
-- word; the order among equal rows (the 11 gadgets 30..39 and 300, and
-- the ~290 missing one) depends on where VACUUM put them, so the first
-- are listed by title and of the others only their count is shown
SELECT bool_and(missing_words = 0) AS twelve_with_every_word_first
  FROM (SELECT missing_words FROM pg_temp.s('gadget 3') LIMIT 12) f;
SELECT * FROM pg_temp.s('gadget 3') WHERE missing_words = 0 ORDER BY title COLLATE "C";
SELECT count(*) AS missing_one, bool_and(typos = 0) AS no_typos
  FROM pg_temp.s('gadget 3') WHERE missing_words = 1;
-- a long pending list is folded by the inserting backend itself
INSERT INTO shop.product (sku, title, price_cents)
SELECT 'B' || g, 'Bulk item ' || g, 100 FROM generate_series(1, 2100) g;
SELECT (shop.search_index_info('shop.product_search_idx') ->> 'pending')::int < 500 AS folded_by_insert;
SELECT * FROM shop.search_verify('shop.product_search_idx');
SELECT count(*) FROM shop.search('bulk item', lim => 1000) WHERE missing_words = 0;
DELETE FROM shop.product WHERE sku LIKE 'B%';
-- an index that missed a change is caught, and REINDEX repairs it
UPDATE pg_index SET indisready = false WHERE indexrelid = 'shop.product_search_idx'::regclass;
UPDATE shop.product SET price_cents = 77 WHERE sku = 'G5';
UPDATE pg_index SET indisready = true WHERE indexrelid = 'shop.product_search_idx'::regclass;
SELECT kind, detail FROM shop.search_verify('shop.product_search_idx');
REINDEX INDEX shop.product_search_idx;
SELECT * FROM shop.search_verify('shop.product_search_idx');
SELECT pg_temp.err($$SELECT * FROM shop.search_verify('shop.product_pkey')$$);

-- shop_search on one's own table, with reloptions
CREATE TABLE pg_temp.notes (id int PRIMARY KEY, title text, body text);
INSERT INTO pg_temp.notes VALUES (1, 'Les chaussures rouges', 'marcher'), (2, 'La chaussure noire', 'courir'),
                                 (3, 'Un chapeau', 'soleil');
CREATE INDEX notes_ss ON pg_temp.notes USING shop_search
    (shop.search_doc(title, NULL, body)) WITH (language = 'french', weight_title = 5);
SET enable_seqscan = off;
SELECT id, title FROM pg_temp.notes
 WHERE shop.search_doc(title, NULL, body) OPERATOR(shop.@@@) '"chaussure"'
 ORDER BY shop.search_doc(title, NULL, body) OPERATOR(shop.<=>) '"chaussure"';
SELECT n.id, s.score > 0 AS scored, s.typos, s.missing FROM shop.search_scan('notes_ss', '{"q": "chapaeu"}') s
  JOIN pg_temp.notes n ON n.ctid = s.ctid;
RESET enable_seqscan;
SELECT pg_temp.err($$CREATE INDEX ON pg_temp.notes USING shop_search (shop.search_doc(title)) WITH (language = 'klingon')$$);
SELECT pg_temp.err($$CREATE INDEX ON pg_temp.notes USING shop_search (title)$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_scan('notes_ss', '{"q": "x"}', 0)$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_scan('notes_pkey', '{"q": "x"}')$$);

DROP TABLE pg_temp.notes;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
