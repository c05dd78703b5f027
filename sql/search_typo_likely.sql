-- search_typo_likely: which correction a typo'd word gets when the
-- catalog offers several (issue 13, typo'd known items).
-- 1. A word the catalog holds in one or two documents, while a word one
--    typo from it is in many more, is a misspelling the catalog has too:
--    "yelow" in one description must not keep the shopper from the
--    yellow toners.
-- 2. One typo from two words, the likelier typo wins: "glosy" is
--    "glossy" with an s left out before it is "gloss" with y for s (keys
--    far apart).
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 3) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT sku FROM shop.search(q, '{}', 'relevance', lim) s JOIN shop.product p USING (product_id)
$f$;
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
SELECT 'Y' || n, 'Zerox ' || (4000 + n) || ' toner cartridge ' || c, 'Zerox', '', 5000, 1, true, 'active'
  FROM generate_series(1, 40) n,
       LATERAL (SELECT CASE WHEN n > 10 THEN 'yellow' ELSE 'black' END AS c) x;
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
VALUES ('MUG', 'Sunny mug', 'Potter', 'A yelow mug for the breakfast table', 900, 1, true, 'active'),
       ('PAPER', 'Ultra Glossy Photo Paper A4', 'Epsilon', '', 1500, 1, true, 'active'),
       ('OPT1', 'Gloss Optimizer Ultra Chrome Hi-Gloss', 'Epsilon', '', 1500, 1, true, 'active'),
       ('OPT2', 'Gloss Optimizer Ultra Gloss High-Gloss', 'Epsilon', '', 1500, 1, true, 'active');
VACUUM shop.product;

SET ROLE shop_storefront;
-- "yelow" is in the catalog once, "yellow" in 30 toners: the yellow
-- toners first (before: no typos for a word the catalog knows, so the
-- toners matched "zerox toner" alone and came in id order, black ones
-- among them)
SELECT count(*) FILTER (WHERE p.title LIKE '%yellow') AS yellow_in_top_10
  FROM pg_temp.s('zerox toner yelow', 10) s JOIN shop.product p ON p.sku = s;
-- spelled as the catalog spells it once, alone: the mug first
SELECT * FROM pg_temp.s('yelow', 1);
-- rare words without a far more frequent neighbour stay known, not
-- widened ("breakfast" and "table" are in one row each)
SELECT shop._search_no_typos('shop.product_search_idx', '"breakfast table"') AS q;
SELECT shop._search_no_typos('shop.product_search_idx', '"yelow"') AS q;
-- "glosy": the glossy paper first (before: the two gloss optimizers,
-- whose titles say gloss twice)
SELECT * FROM pg_temp.s('epsilon ultra glosy', 1);
-- both corrections are still found, one typo each
SELECT s, typos FROM shop.search('glosy', '{}', 'relevance', 5) x JOIN shop.product p USING (product_id)
 CROSS JOIN LATERAL (SELECT p.sku AS s) y ORDER BY x.score DESC;
RESET ROLE;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
