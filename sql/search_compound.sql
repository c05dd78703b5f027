-- search_compound: a compound type (issue 13, round 10).  The word of a
-- query just before its type word ("mouse" of `gaming mouse pad`) makes
-- one type with it when the catalog has it as a type of its own (the head
-- noun of 5 or more products): among rows missing a word of the query, a
-- pad without "mouse" (a notebook cooling pad) is no mouse pad and gets
-- no type boost, while a mouse pad without "gaming" keeps it.  A word that
-- only qualifies the type ("sd" of `micro sd card`: no product is an "sd")
-- changes nothing: a micro SDHC card without "sd" stays a card meant.
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 3) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT title FROM shop.search(q, '{}', 'relevance', lim)
$f$;
-- no product has every word of `gaming mouse pad`: the mouse pads miss
-- "gaming", the cooling pad misses "mouse"; four mice
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
VALUES ('P1', 'Fellowes Optical mouse pad Black', 'Fellowes', 995, 1, true, 'active'),
       ('P2', 'Trust Eco-friendly mouse pad Blue', 'Trust', 795, 1, true, 'active'),
       ('C1', 'Cooler Master Gaming NotePal X2 notebook cooling pad', 'Cooler Master', 2995, 1, true, 'active'),
       ('K1', 'Logitech G Gaming keyboard Black', 'Logitech', 5995, 1, true, 'active'),
       ('K2', 'Razer Gaming headset Green', 'Razer', 6995, 1, true, 'active'),
       ('K3', 'HyperX Cloud Gaming headset Red', 'HyperX', 6995, 1, true, 'active'),
       ('K4', 'Corsair HS50 Gaming headset Blue', 'Corsair', 6995, 1, true, 'active');
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
SELECT 'M' || i, 'Logitech M' || (100 + i) || ' mouse Black', 'Logitech', 1995, 1, true, 'active'
  FROM generate_series(1, 4) i;
SELECT sku, shop.search_head(title) FROM shop.product WHERE sku IN ('C1', 'M1', 'P1') ORDER BY sku;
-- a row's score with "type_compound" over its score without (the cooling
-- pad's by default)
CREATE FUNCTION pg_temp.ratio(sku text DEFAULT 'C1', q text DEFAULT 'gaming mouse pad',
                              compound text DEFAULT 'mouse') RETURNS numeric LANGUAGE sql AS $f$
    SELECT round((w.score / wo.score)::numeric, 2)
      FROM shop.search_scan('shop.product_search_idx',
               jsonb_build_object('q', q, 'match', 'any', 'type_words', (regexp_match(q, '(\S+)$'))[1],
                                  'type_compound', compound), 20) w,
           shop.search_scan('shop.product_search_idx',
               jsonb_build_object('q', q, 'match', 'any', 'type_words', (regexp_match(q, '(\S+)$'))[1]), 20) wo,
           shop.product p
     WHERE p.sku = ratio.sku AND w.ctid = p.ctid AND wo.ctid = p.ctid
$f$;
-- four mice: "mouse" is no type of its own yet, the cooling pad keeps its
-- type boost (ratio 1)
SELECT pg_temp.ratio() AS cooling_pad_ratio;
SELECT * FROM pg_temp.s('gaming mouse pad', 2);
-- five mice: "mouse" is a type, so a pad without it is no mouse pad
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
VALUES ('M5', 'Logitech M105 mouse Black', 'Logitech', 1995, 1, true, 'active');
SELECT pg_temp.ratio() AS cooling_pad_ratio;
SELECT * FROM pg_temp.s('gaming mouse pad', 2);
-- what shop.search passes to the index: the word before the type
SELECT shop._search_intent(shop._search_query('gaming mouse pad', '{}', NULL)) -> 'type_compound' AS compound;
SELECT shop._search_intent(shop._search_query('pad', '{}', NULL)) ? 'type_compound' AS one_word;
-- a word of type_compound the query does not have is ignored; the rule
-- needs "match": "any" (otherwise no row misses a word); a number is no
-- key value
SELECT pg_temp.ratio(compound => 'keyboard') AS cooling_pad_ratio;
SELECT count(*) FROM shop.search_scan('shop.product_search_idx',
    '{"q": "gaming mouse pad", "type_words": "pad", "type_compound": "mouse"}', 20);
SELECT pg_temp.err($$SELECT * FROM shop.search_scan('shop.product_search_idx',
    '{"q": "gaming mouse pad", "type_compound": 7}', 1)$$);
-- rows with every word still come first, whatever their type
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
VALUES ('G1', 'SteelSeries QcK gaming mouse pad Black', 'SteelSeries', 1495, 1, true, 'active');
SELECT * FROM pg_temp.s('gaming mouse pad', 2);
-- a qualifier: "sd" is no product's head, so a card missing it keeps the
-- type boost and comes before a reader that misses "card"
INSERT INTO shop.product (sku, title, brand, price_cents, popularity, in_stock, status)
VALUES ('S1', 'V7 16GB Micro SDHC Class 10 memory card', 'V7', 1295, 1, true, 'active'),
       ('S2', 'Transcend Micro SD reader Black', 'Transcend', 1495, 1, true, 'active');
SELECT shop._search_intent(shop._search_query('micro sd card', '{}', NULL)) -> 'type_compound' AS compound;
SELECT pg_temp.ratio('S1', 'micro sd card', 'sd') AS sdhc_card_ratio;
SELECT * FROM pg_temp.s('micro sd card', 1);
-- the rows so far were ranked from the index's pending list; VACUUM folds
-- them into a segment, whose scan ranks the same (the head count from the
-- segment's dictionary, which word a row misses from the scan's windows)
DELETE FROM shop.product WHERE sku = 'G1';
VACUUM shop.product;
SELECT pg_temp.ratio() AS cooling_pad_ratio;
SELECT * FROM pg_temp.s('gaming mouse pad', 2);
SELECT * FROM pg_temp.s('micro sd card', 1);
-- the storefront ranks the same way
SET ROLE shop_storefront;
SELECT * FROM pg_temp.s('gaming mouse pad', 3);
RESET ROLE;
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
