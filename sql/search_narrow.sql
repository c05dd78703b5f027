-- search_narrow: a kind of the type asked for (issue 13, rel15).  The
-- first of two or more words before the query's type word narrows the
-- type to a kind of it when the catalog writes the first two words as one
-- word: the catalog's "MicroSD" makes `micro sd card` ask for microSD
-- cards, so among rows missing a word of the query an SD card (no
-- "micro") is of the broader type and gets no type boost, while a micro
-- SDHC card (no "sd": SDHC is another word) keeps it.  Words the catalog
-- keeps apart (`surround sound speakers`) only qualify the type.
\i sql/include/prelude.sql
-- the intent is worked out anew for each call (the catalog changes below)
SET shop.search_intent_cache = 0;
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 3) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT title FROM shop.search(q, '{}', 'relevance', lim)
$f$;
-- no product has every word of `micro sd card`: the micro SDHC card
-- misses "sd", the SD card misses "micro"; by its words alone the SD
-- card, of the shorter title, scores more
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
VALUES ('S1', 'V7 16GB Class 10 U1 A1 V10 Micro SDHC memory card + Adapter', 'V7', 1295, 1, true, 'active'),
       ('S2', 'Kingston Canvas SD memory card', 'Kingston', 2995, 1, true, 'active'),
       ('R1', 'Transcend SD reader Black', 'Transcend', 1495, 1, true, 'active'),
       ('U1', 'Belkin Micro USB cable 1 m Black', 'Belkin', 995, 1, true, 'active');
SELECT sku, shop.search_head(title) FROM shop.product WHERE sku IN ('S1', 'S2') ORDER BY sku;
-- the catalog never writes "microsd": no kind, the SD card first
SELECT shop._search_intent(shop._search_query('micro sd card', '{}', NULL)) ? 'type_narrow' AS narrow;
SELECT * FROM pg_temp.s('micro sd card', 2);
-- a product saying "MicroSD" makes micro SD a kind of card: the SD card
-- loses the type boost and the micro SDHC card comes first
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
VALUES ('S3', 'Kingston 8GB MicroSD memory card', 'Kingston', 895, 1, true, 'active');
SELECT shop._search_intent(shop._search_query('micro sd card', '{}', NULL)) -> 'type_narrow' AS narrow;
SELECT * FROM pg_temp.s('micro sd card', 2);
-- the SD card's score with "type_narrow" over its score without: the
-- type boost for a row missing a word (1.25) taken away
SELECT round((w.score / wo.score)::numeric, 2) AS sd_card_ratio
  FROM shop.search_scan('shop.product_search_idx',
           '{"q": "micro sd card", "match": "any", "type_words": "card", "type_narrow": "micro"}', 20) w,
       shop.search_scan('shop.product_search_idx',
           '{"q": "micro sd card", "match": "any", "type_words": "card"}', 20) wo,
       shop.product p
 WHERE p.sku = 'S2' AND w.ctid = p.ctid AND wo.ctid = p.ctid;
-- two words only, or a number among the first two: no kind
SELECT shop._search_intent(shop._search_query('sd card', '{}', NULL)) ? 'type_narrow' AS two_words;
SELECT shop._search_intent(shop._search_query('micro 64 card', '{}', NULL)) ? 'type_narrow' AS number;
-- a word of type_narrow the query does not have is ignored; a number is
-- no key value
SELECT count(*) FROM shop.search_scan('shop.product_search_idx',
    '{"q": "micro sd card", "match": "any", "type_words": "card", "type_narrow": "mini"}', 20);
SELECT pg_temp.err($$SELECT * FROM shop.search_scan('shop.product_search_idx',
    '{"q": "micro sd card", "type_narrow": 7}', 1)$$);
-- VACUUM folds the pending rows into a segment, whose scan ranks the same
VACUUM shop.product;
SELECT * FROM pg_temp.s('micro sd card', 2);
-- the storefront ranks the same way
SET ROLE shop_storefront;
SELECT * FROM pg_temp.s('micro sd card', 2);
RESET ROLE;
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
