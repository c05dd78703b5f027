-- search_intent_typo: a query whose last word the catalog does not know
-- asks for no type (issue 13, round 3).  A typo'd word is most often the
-- rare word of a known item; its corrected form asked as a type lifted
-- every product of that type above the one meant.
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 2) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT title FROM shop.search(q, '{}', 'relevance', lim)
$f$;
SELECT shop.category_add('Parts') AS cat \gset
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('K1', 'Zorba processor kit', 'Zorba', :cat, 5999, 1, true, 'active'),
       ('K2', 'Zorba Z2 Turbo Max Extreme Edition processor', 'Zorba', :cat, 29999, 1, true, 'active');
-- typo corrections come from the vocabulary of the index's segments
VACUUM shop.product;
SELECT sku, shop.search_head(title) FROM shop.product ORDER BY sku;
SELECT shop._search_suggest_word('shop.product_search_idx', 'procesor');
-- spelled right, the query asks for a processor: K2 first
SELECT * FROM pg_temp.s('zorba processor');
SELECT shop._search_intent(shop._search_query('zorba processor', '{}', NULL)) -> 'type_words' AS type_words;
-- with a typo, the text decides (K1's shorter title): no type asked
SELECT * FROM pg_temp.s('zorba procesor');
SELECT shop._search_intent(shop._search_query('zorba procesor', '{}', NULL)) ? 'type_words' AS type_asked;
SET ROLE shop_storefront;
SELECT * FROM pg_temp.s('zorba procesor', 1);
RESET ROLE;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
