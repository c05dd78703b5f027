-- search_topk_ties: ranked results of equal score come in product order
-- (missing words, typos, score descending, then product_id: docs/search.md,
-- "Order of equal scores"), so pages stay the same when an update or VACUUM
-- moves rows in the table, at every offset, with and without pruning, and
-- as a plain SQL ORDER BY score DESC, product_id over the same rows says
\i sql/include/prelude.sql
SELECT shop.category_add('Widgets') AS widgets \gset
SET client_min_messages = warning;
-- 3,000 rows of filler (other words) with 150 rows of one title among
-- them, every 20th: the ties.  Around them, 20 rows that score higher
-- (more popular) and 20 that score lower (a longer title).  Full pages: an
-- update of an indexed column moves the row to the end of the table.
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
SELECT 'W' || i,
       CASE WHEN i % 20 = 0 THEN 'Acme tie widget'
            WHEN i % 150 = 7 THEN 'Acme tie widget'
            WHEN i % 150 = 11 THEN 'Acme tie widget with a longer title'
            ELSE 'Filler gadget ' || i END,
       'Acme', :widgets, 1000 + i,
       CASE WHEN i % 150 = 7 THEN 500 ELSE 10 END,
       true, 'active'
  FROM generate_series(1, 3000) i;
REINDEX INDEX shop.product_search_idx;
-- 30 more ties in the pending list (not yet in a segment)
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
SELECT 'X' || i, 'Acme tie widget', 'Acme', :widgets, 5000 + i, 10, true, 'active'
  FROM generate_series(1, 30) i;
RESET client_min_messages;
SELECT count(*) FILTER (WHERE title = 'Acme tie widget' AND popularity = 10) AS ties,
       count(*) FILTER (WHERE popularity = 500) AS above,
       count(*) FILTER (WHERE title LIKE '%longer%') AS below
  FROM shop.product;

-- a search's whole order: the product ids of pages of 20 (off 0, 20, ...)
CREATE FUNCTION pg_temp.paged(q text, pages int, size int DEFAULT 20) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT array_agg(s.product_id ORDER BY p, s.ord)
      FROM generate_series(0, pages - 1) p
     CROSS JOIN LATERAL (SELECT r.product_id, row_number() OVER () AS ord
                           FROM shop.search(q, lim => size, off => p * size) r) s
$f$;
-- the same rows in the documented order: a plain SQL ORDER BY
CREATE FUNCTION pg_temp.truth(q text, n int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT (array_agg(product_id ORDER BY missing_words, typos, score DESC, product_id))[1:n]
      FROM shop.search(q, lim => 1000)
$f$;
-- an ordered index scan's rows (shop.search_scan: batches of 64, then
-- larger, each resuming after the last row handed out)
CREATE FUNCTION pg_temp.scanned(q jsonb, n int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT array_agg(p.product_id ORDER BY s.ord)
      FROM shop.search_scan('shop.product_search_idx', q, n) WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
      JOIN shop.product p ON p.ctid = s.ctid
$f$;
CREATE FUNCTION pg_temp.scan_truth(q jsonb, n int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT (array_agg(p.product_id ORDER BY s.missing, s.typos, s.score DESC, p.product_id))[1:n]
      FROM shop.search_scan('shop.product_search_idx', q, 1000) s
      JOIN shop.product p ON p.ctid = s.ctid
$f$;

-- the ties really tie: one score for 180 rows
SELECT count(*) AS rows, count(DISTINCT score) AS scores
  FROM shop.search('tie widget', lim => 1000)
 WHERE product_id IN (SELECT product_id FROM shop.product WHERE title = 'Acme tie widget' AND popularity = 10);

CREATE TEMP TABLE before AS
SELECT pg_temp.paged('tie widget', 11) AS pages, pg_temp.truth('tie widget', 220) AS truth,
       pg_temp.scanned('"tie widget"', 220) AS scanned,
       pg_temp.scan_truth('"tie widget"', 220) AS scan_truth;
SELECT cardinality(pages) AS rows, pages = truth AS pages_ordered,
       cardinality(scanned) AS scanned, scanned = scan_truth AS scan_ordered
  FROM before;
-- deep offsets across the tie: every window of the order, not only pages
SELECT bool_and((SELECT array_agg(r.product_id ORDER BY ord)
                   FROM (SELECT product_id, row_number() OVER () AS ord
                           FROM shop.search('tie widget', lim => l, off => o)) r)
                = (SELECT truth[o + 1:o + l] FROM before)) AS windows_ordered
  FROM (VALUES (1, 0), (7, 13), (50, 19), (3, 99), (25, 150), (40, 180), (1, 219)) w(l, o);

-- move rows: an update of an indexed column (not HOT: the pages are full)
-- of the ties with the smallest product ids puts them at the end of the
-- table, VACUUM frees their old places, and new rows fill them
SET client_min_messages = warning;
UPDATE shop.product SET price_cents = price_cents + 1
 WHERE product_id IN (SELECT product_id FROM shop.product
                       WHERE title = 'Acme tie widget' AND popularity = 10
                       ORDER BY product_id LIMIT 80);
VACUUM shop.product;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
SELECT 'Y' || i, 'Other gizmo ' || i, 'Acme', :widgets, 100, 1, true, 'active'
  FROM generate_series(1, 300) i;
RESET client_min_messages;
SELECT count(*) > 0 AS moved
  FROM shop.product p
 WHERE p.title = 'Acme tie widget' AND p.sku LIKE 'W%'
   AND (p.ctid::text::point)[0] > (SELECT max((q.ctid::text::point)[0]) FROM shop.product q WHERE q.sku = 'W3000');

-- the same pages: nobody seen twice, nobody skipped
SELECT b.pages = pg_temp.paged('tie widget', 11) AS pages_same,
       b.truth = pg_temp.truth('tie widget', 220) AS truth_same,
       b.scanned = pg_temp.scanned('"tie widget"', 220) AS scan_same
  FROM before b;
-- and after a VACUUM that folds the pending rows into a segment, and a REINDEX
SET client_min_messages = warning;
DELETE FROM shop.product WHERE sku LIKE 'Y%' AND sku::text < 'Y2';
VACUUM shop.product;
RESET client_min_messages;
SELECT b.pages = pg_temp.paged('tie widget', 11) AS pages_same_vacuum FROM before b;
REINDEX INDEX shop.product_search_idx;
SELECT b.pages = pg_temp.paged('tie widget', 11) AS pages_same_reindex FROM before b;
-- pruning (block-max) off reads everything: the same order
SET shop.search_block_max = off;
SELECT b.pages = pg_temp.paged('tie widget', 11) AS pages_same_no_pruning,
       b.scanned = pg_temp.scanned('"tie widget"', 220) AS scan_same_no_pruning
  FROM before b;
RESET shop.search_block_max;

-- as the storefront
GRANT SELECT ON before TO shop_storefront;
SET ROLE shop_storefront;
SELECT b.pages = pg_temp.paged('tie widget', 11) AS storefront_pages_same,
       b.pages[41:60] = (SELECT array_agg(product_id ORDER BY ord)
                            FROM (SELECT product_id, row_number() OVER () AS ord
                                    FROM shop.search('tie widget', lim => 20, off => 40)) r) AS page_3
  FROM before b;
RESET ROLE;

DROP TABLE before;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
