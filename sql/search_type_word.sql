-- search_type_word: a product of the type a query asks for, by its title's
-- head noun, that misses only the query's type word (issue 13, round 12).
-- "Lenovo Tab M8 ... Android 9.0" is a tablet (its head "Tab", round 11)
-- but does not say "tablet": for `android tablet` it missed a word and got
-- the partial type factor (1.25), so tablet cases and stands, which say
-- "tablet" and miss "android", came first.  The type word is the one word
-- its head noun supplies: such a row now gets the whole factor (3).  A
-- row of the type missing another word keeps 1.25 (the tc4400 Tablet PC
-- misses "android": it is not an Android tablet).
\i sql/include/prelude.sql
SELECT shop.category_add('Electronics') AS cat \gset
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
SELECT 'F' || g, 'Acme Filler ' || g || ' HDMI cable adapter black ' || (g % 7) || ' m', 'Acme', :cat, 999, 1, true, 'active'
  FROM generate_series(1, 40) g;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('T1', 'Samsung Galaxy Tab S6 Lite SM-P610N 26.4 cm (10.4") Samsung Exynos 4 GB 64 GB Wi-Fi 5 (802.11ac) Blue Android 10',
        'Samsung', :cat, 34999, 1, true, 'active'),
       ('T2', 'Lenovo Tab M8 20.3 cm (8") Mediatek 2 GB 32 GB Wi-Fi 5 (802.11ac) 4G LTE Gray Android 9.0',
        'Lenovo', :cat, 14999, 1, true, 'active'),
       ('T3', 'HP Compaq tc4400 Tablet PC', 'HP', :cat, 99999, 1, true, 'active'),
       ('A1', 'Sony PRSASC3W tablet case White', 'Sony', :cat, 2999, 1, true, 'active'),
       ('A2', 'Philips DLN1713/17 tablet case Sleeve case Black,Red', 'Philips', :cat, 1999, 1, true, 'active'),
       ('A3', 'Kensington WindFall Tablet Stand tablet security enclosure 25.9 cm (10.2") Black', 'Kensington', :cat, 9999, 1, true, 'active'),
       ('P1', 'Huawei Honor 8S 14.5 cm (5.71") 2 GB 32 GB 4G Black Android 9.0', 'Huawei', :cat, 12999, 1, true, 'active');
SELECT t, shop.search_head(t) FROM unnest(ARRAY[
    'Lenovo Tab M8 20.3 cm (8") Mediatek 2 GB 32 GB Wi-Fi 5 (802.11ac) 4G LTE Gray Android 9.0',
    'HP Compaq tc4400 Tablet PC']) t;

-- what a shopper sees: the two Android tablets first (before: the Tablet
-- PC, a tablet case, the tablet stand, the Lenovo, the other case, the
-- Samsung); shop.search's order is missing words, typos, score,
-- product_id: no tie is left open
SELECT p.sku, s.missing_words FROM shop.search('android tablet', '{}', 'relevance', 7) s
JOIN shop.product p USING (product_id);
-- the same rows in the pending list and merged into a segment
VACUUM shop.product;
SELECT p.sku FROM shop.search('android tablet', '{}', 'relevance', 3) s JOIN shop.product p USING (product_id);
-- the intent reads the type from the last word; the type word present, a
-- row missing another word keeps the partial factor: for `tablet case`
-- the cases first, the tablets are no cases
SELECT p.sku FROM shop.search('tablet case', '{}', 'relevance', 2) s JOIN shop.product p USING (product_id) ORDER BY p.sku;
SET ROLE shop_storefront;
SELECT title FROM shop.search('android tablet', '{}', 'relevance', 2);
RESET ROLE;
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
