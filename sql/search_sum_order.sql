-- search_sum_order: a row's score does not depend on where the index
-- keeps it (issue 13, round 11).  The ranked scan adds a row's word
-- scores in the order of the words' bounds in a merged segment and in the
-- query's order in the pending list; float4 sums in two orders differed
-- in their last bits (17 of these 60 pairs), so two identical products
-- did not tie, against "Order of equal scores" (docs/search.md), and a
-- router's scores could differ from one node's.  The sums are exact now (double), so equal rows tie.
\i sql/include/prelude.sql
CREATE TEMP TABLE words AS
SELECT w FROM unnest(ARRAY['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel',
                           'india', 'juliet', 'kilo', 'lima']) w;
-- other products give the words different document frequencies
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
SELECT 'F' || g, (SELECT string_agg(w, ' ') FROM (SELECT w FROM words ORDER BY hashtext(w || g) LIMIT 1 + g % 4) x)
       || ' filler', 'Acme', 100, 0, true, 'active'
  FROM generate_series(1, 200) g;
-- 60 products, merged into a segment by VACUUM ...
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
SELECT 'S' || i, t, 'Zed', 'the ' || t, 100, 0, true, 'active'
  FROM (SELECT i, (SELECT string_agg(w, ' ') FROM (SELECT w FROM words ORDER BY hashtext(w || 'x' || i)
                                                    LIMIT 3 + i % 3) x) AS t
          FROM generate_series(1, 60) i) y;
VACUUM shop.product;
-- ... and a copy of each, in the pending list
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
SELECT 'P' || substr(sku, 2), title, brand, description, price_cents, popularity, in_stock, status
  FROM shop.product WHERE sku LIKE 'S%';
SELECT (shop.search_index_info('shop.product_search_idx') ->> 'pending')::int AS pending;
-- each product's title as the query: the two copies score the same
SELECT count(*) AS pairs, count(*) FILTER (WHERE a.score <> b.score) AS differ
  FROM shop.product s JOIN shop.product p ON p.sku = 'P' || substr(s.sku, 2),
       LATERAL (SELECT x.score FROM shop.search(s.title, lim => 200) x WHERE x.product_id = s.product_id) a,
       LATERAL (SELECT x.score FROM shop.search(s.title, lim => 200) x WHERE x.product_id = p.product_id) b
 WHERE s.sku LIKE 'S%';
-- a shopper's page (the storefront's call): the two copies of S10 tie and
-- come by product_id (before, in that order by score: 27.971527 for the
-- merged copy, 27.971523 for the pending one)
SET ROLE shop_storefront;
SELECT p.sku, x.missing_words
  FROM shop.search('india juliet hotel alpha', lim => 2) x JOIN shop.product p USING (product_id);
RESET ROLE;
SELECT count(*) AS problems FROM shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
