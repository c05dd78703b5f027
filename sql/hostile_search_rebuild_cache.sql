-- hostile_search_rebuild_cache: a backend keeps data of the search
-- index's segments (impact lists, each window's popularity, sort keys,
-- facet counts) named by (relation file, header block, serial).  TRUNCATE
-- of a table whose relation file is this transaction's own truncates the
-- index in place and builds it again: every build started at generation
-- 0, so the folds of the new rows wrote segments with the header blocks
-- and serials of the ones before, and a backend that had searched those
-- ranked the new rows with the old rows' data.  Here a storefront's
-- ranked page after the reload lost the rows that should lead it (the
-- old rows were all unpopular, so the windows of popular new rows looked
-- unable to enter).  Now every build starts at a generation of its own.
\i sql/include/prelude.sql
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_rebuild_store;
RESET client_min_messages;
CREATE ROLE regress_rebuild_store LOGIN IN ROLE shop_storefront;

-- the ranked ids and scores of a query, read by the storefront
CREATE FUNCTION pg_temp.ranked(q jsonb, n int) RETURNS text LANGUAGE sql AS $f$
    SELECT string_agg(p.sku || ':' || s.score, ' ' ORDER BY s.ord)
      FROM shop.search_scan('shop.product_search_idx', q, n) WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
      JOIN shop.product p ON p.ctid = s.ctid
$f$;
GRANT EXECUTE ON FUNCTION pg_temp.ranked(jsonb, int) TO regress_rebuild_store;
GRANT SELECT ON shop.product TO regress_rebuild_store;
CREATE TEMP TABLE got (load int, q jsonb, pruned text, full_scan text);
GRANT ALL ON got TO regress_rebuild_store;

SET client_min_messages = warning;
BEGIN;
TRUNCATE shop.product CASCADE;    -- a new relation file, this transaction's
-- 10,000 rows, none popular: inserts fold them into segments
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, status)
SELECT 'A' || i, CASE WHEN i > 3000 THEN 'widget widget gadget ' ELSE 'widget gadget plain ' END || i,
       'Acme', 100 + i, 0, 'active'
  FROM generate_series(1, 10000) i;
SET LOCAL ROLE regress_rebuild_store;
INSERT INTO got SELECT 1, q, pg_temp.ranked(q, 20), NULL
  FROM (VALUES ('{"q": "widget gadget"}'::jsonb), ('{"q": "widget gadget", "match": "any"}')) v(q);
RESET ROLE;
TRUNCATE shop.product CASCADE;    -- in place: the same relation file
-- the same titles, now popular (most popular first)
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, status)
SELECT 'B' || i, CASE WHEN i > 3000 THEN 'widget widget gadget ' ELSE 'widget gadget plain ' END || i,
       'Acme', 100 + i, 10001 - i, 'active'
  FROM generate_series(1, 10000) i;
SET LOCAL ROLE regress_rebuild_store;
INSERT INTO got SELECT 2, q, pg_temp.ranked(q, 20), NULL
  FROM (VALUES ('{"q": "widget gadget"}'::jsonb), ('{"q": "widget gadget", "match": "any"}')) v(q);
RESET ROLE;
-- the truth: a scan that skips nothing
SET LOCAL shop.search_block_max = off;
UPDATE got SET full_scan = pg_temp.ranked(q, 20);
COMMIT;
RESET client_min_messages;
SELECT load, q, pruned IS NOT NULL AS found, pruned = full_scan AS same,
       split_part(pruned, ':', 1) = split_part(full_scan, ':', 1) AS same_first
  FROM got WHERE load = 2 ORDER BY q::text;

DROP TABLE got;
DROP FUNCTION pg_temp.ranked(jsonb, int);
DROP EXTENSION shop CASCADE;
DROP ROLE regress_rebuild_store;
