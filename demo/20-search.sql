-- 20-search: product search over the real catalog with shop_search.
-- Picks its examples from the data (the most popular active product's
-- brand and a long word of its title), so it runs on any catalog.
\pset footer off
\echo
\echo '==================== 2. Search: the shop_search index ===================='
SELECT i ->> 'documents' AS documents, jsonb_array_length(i -> 'segments') AS segments,
       i ->> 'pending' AS pending, i ->> 'blocks' AS blocks, i ->> 'language' AS language
  FROM shop.search_index_info('shop.product_search_idx') i;

-- a popular product and a word of its title to misspell
SELECT p.brand AS demo_brand,
       (SELECT w.word FROM shop.search_tokens(p.title) w
         WHERE length(w.word) BETWEEN 6 AND 12 AND w.word ~ '^[a-z]+$'
         ORDER BY length(w.word) DESC, w.pos LIMIT 1) AS demo_word
  FROM shop.product p
 WHERE p.status = 'active' AND p.brand IS NOT NULL
   AND EXISTS (SELECT 1 FROM shop.search_tokens(p.title) w
                WHERE length(w.word) BETWEEN 6 AND 12 AND w.word ~ '^[a-z]+$')
 ORDER BY p.popularity DESC, p.product_id
 LIMIT 1 \gset
-- swap two inner letters: a realistic typo
SELECT substr(:'demo_word', 1, 2) || substr(:'demo_word', 4, 1) || substr(:'demo_word', 3, 1)
       || substr(:'demo_word', 5) AS demo_typo \gset

\echo
\echo '--- shop.search(' :'demo_word' ') : ranked, best first'
SELECT product_id, round(score::numeric, 2) AS score, left(title, 60) AS title, brand,
       round(price_cents / 100.0, 2) AS price
  FROM shop.search(:'demo_word', lim => 5);

\echo
\echo '--- the same with a typo: shop.search(' :'demo_typo' ')'
SELECT product_id, round(score::numeric, 2) AS score, typos, left(title, 60) AS title
  FROM shop.search(:'demo_typo', lim => 5);
\echo '--- did you mean?'
SELECT shop.did_you_mean(:'demo_typo') AS did_you_mean;

\echo
\echo '--- filtered: brand' :'demo_brand' ', in stock, sorted by price'
SELECT product_id, left(title, 60) AS title, round(price_cents / 100.0, 2) AS price, in_stock
  FROM shop.search(:'demo_word', jsonb_build_object('brand', :'demo_brand', 'in_stock', true),
                   sort => 'price_asc', lim => 5);

\echo
\echo '--- facets for' :'demo_word' '(exact counts over every match)'
SELECT shop.search_facets(:'demo_word') AS f \gset demo_
SELECT (:'demo_f'::jsonb) -> 'total' AS total_matches;
SELECT b ->> 'value' AS brand, (b ->> 'count')::int AS products
  FROM jsonb_array_elements((:'demo_f'::jsonb) -> 'brand') b LIMIT 5;
SELECT b ->> 'bucket' AS price_usd, (b ->> 'count')::int AS products
  FROM jsonb_array_elements((:'demo_f'::jsonb) -> 'price') b;

\echo
\echo '--- autocomplete as the shopper types' :'demo_brand'
SELECT * FROM shop.autocomplete(left(lower(:'demo_brand'), 4), 6);

\echo
\echo '--- synonyms, applied at query time: tv = television, laptop = notebook'
\o /dev/null
SELECT shop.synonym_add('tv', ARRAY['television']);
SELECT shop.synonym_add('laptop', ARRAY['notebook']);
\o
SELECT product_id, round(score::numeric, 2) AS score, left(title, 60) AS title
  FROM shop.search('notebook', lim => 3);

\echo
\echo '--- bounded facets: the top 3 brands, and how many other brands and rows'
SELECT (f -> 'brand') AS top_brands, f -> 'brand_other' AS other_brands
  FROM shop.search_facets(:'demo_word', '{}', 3) f;

\echo
\echo '--- attribute facets: the 2 attribute keys most matches hold, each with its top 3 values (counted in the index)'
SELECT a ->> 'key' AS key, a -> 'count' AS products, a -> 'values' AS top_values
  FROM jsonb_array_elements(shop.search_facets(:'demo_word', '{}', 3, 2) -> 'attributes') a;

\echo
\echo '--- newest first, straight from the index''s stored values (no read of every match)'
SELECT product_id, left(title, 60) AS title
  FROM shop.search(:'demo_word', sort => 'newest', lim => 3);

\echo
\echo '--- units and intent: "27 inch monitor" finds 27" and 68.6 cm monitors; "laptop" ranks laptops above laptop locks'
SELECT product_id, left(title, 70) AS title FROM shop.search('27 inch monitor', lim => 3);
SELECT product_id, left(title, 70) AS title FROM shop.search('laptop', lim => 3);

\echo
\echo '--- a vocabulary learned from the catalog itself (shop.refresh_search_vocab, shop_admin):'
\echo '    an abbreviation found next to its long form in enough titles'
SELECT shop.refresh_search_vocab() AS pairs_learned;
SELECT term, expansion, source, products FROM shop.search_vocab
 ORDER BY products DESC, term, expansion LIMIT 4;
-- the short term whose long form brings the most products of a first page
-- (one row always, so that a catalog with no pairs skips the example)
SELECT x.term IS NOT NULL AS demo_vhave, x.term AS demo_vterm, x.expansion AS demo_vexp,
       x.only_long AS demo_vonly
  FROM (VALUES (1)) one
  LEFT JOIN LATERAL (
       SELECT v.term, v.expansion, n.only_long
         FROM shop.search_vocab v,
              LATERAL (SELECT count(*) FILTER (WHERE lower(r.title) NOT LIKE '%' || v.term || '%') AS only_long
                         FROM shop.search(v.term, lim => 20) r) n
        WHERE v.source = 'abbreviation' AND length(v.term) < length(v.expansion)
        ORDER BY n.only_long DESC, v.products DESC, v.term LIMIT 1) x ON true \gset
\if :demo_vhave
\echo '--- shop.search(' :'demo_vterm' '): of the first 20,' :demo_vonly 'say only' :'demo_vexp'
SELECT product_id, left(title, 70) AS title
  FROM shop.search(:'demo_vterm', lim => 20)
 WHERE lower(title) NOT LIKE '%' || :'demo_vterm' || '%' LIMIT 3;
\else
\echo '--- (this catalog taught no pair: too few products name an abbreviation and its long form)'
\endif

\echo
\echo '--- a search writes nothing: its log record waits in shared memory until the sweeper writes a batch'
SELECT buffered > 0 AS records_waiting, capacity FROM shop._search_log_stats();

\echo
\echo '--- the planner streams the best rows from the index (EXPLAIN)'
EXPLAIN (COSTS OFF)
SELECT title FROM shop.product p WHERE p.status = 'active'
 ORDER BY shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                          p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.<=>) '{"q": "laptop"}'
 LIMIT 10;

\echo
\echo '--- the index agrees with the table (rows = problems)'
SELECT count(*) AS problems FROM shop.search_verify('shop.product_search_idx');
