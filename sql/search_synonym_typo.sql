-- search_synonym_typo: a typo'd word brings its synonyms (issue 13).
-- "laptp" is "laptop" with a letter missing; with laptop = notebook
-- declared, a notebook whose text never says "laptop" is what a shopper
-- typing "laptp" wants, as for "laptop".
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 5) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT sku FROM shop.search(q, '{}', 'relevance', lim) s JOIN shop.product p USING (product_id)
$f$;
SELECT shop.category_add('Computers') AS cat \gset
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('N1', 'Zorba Z14 notebook 16 GB', 'Zorba', :cat, 99999, 1, true, 'active'),
       ('L1', 'Zorba laptop lock', 'Zorba', :cat, 1999, 1, true, 'active'),
       ('T1', 'Zorba tablet 10"', 'Zorba', :cat, 29999, 1, true, 'active');
-- typo corrections come from the vocabulary of the index's segments
VACUUM shop.product;
SELECT shop.synonym_add('laptop', ARRAY['notebook']);
-- spelled right: the notebook and the lock
SELECT * FROM pg_temp.s('laptop') ORDER BY 1;
-- typo'd: the same two (before: the lock alone)
SELECT * FROM pg_temp.s('laptp') ORDER BY 1;
-- with the brand: the same two first
SELECT * FROM pg_temp.s('zorba laptp', 2) ORDER BY 1;
-- a typo'd synonym brings the group's other phrases too
SELECT * FROM pg_temp.s('notebok') ORDER BY 1;
-- the query shop.search runs: the typo'd word is a phrase of the group
SELECT shop._search_query('laptp', '{}', NULL) -> 'synonyms' AS synonyms;
-- and asks for the type its correction names, as "laptop" does: the
-- notebook first (its head noun), before the shorter lock
SELECT sku, shop.search_head(title) FROM shop.product ORDER BY sku;
SELECT shop._search_intent(shop._search_query('laptop', '{}', NULL)) -> 'type_words' AS type_words;
SELECT shop._search_intent(shop._search_query('laptp', '{}', NULL)) -> 'type_words' AS type_words;
SELECT * FROM pg_temp.s('laptp', 1);
-- a typo'd word with no synonym gets no group, and asks for no type
SELECT shop._search_intent(shop._search_query('tabelt', '{}', NULL)) ? 'type_words' AS type_asked;
SELECT shop._search_query('tabelt', '{}', NULL) ? 'synonyms' AS has_synonyms;
-- without the synonym: the lock alone
SELECT shop.synonym_remove('laptop');
SELECT * FROM pg_temp.s('laptp') ORDER BY 1;
SELECT shop._search_query('laptp', '{}', NULL) ? 'synonyms' AS has_synonyms;
-- as the storefront runs it
SELECT shop.synonym_add('laptop', ARRAY['notebook']);
SET ROLE shop_storefront;
SELECT * FROM pg_temp.s('laptp') ORDER BY 1;
SELECT * FROM pg_temp.s('laptp', 1);
RESET ROLE;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
