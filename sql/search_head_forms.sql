-- search_head_forms: four title patterns whose head noun (what the product
-- is, issue 13) was read wrong before round 11 (before: laptop, ship,
-- coupler, iii, mlc, iii, lite, tab, tab, pro):
--   - "X / Y": a slash between two words of letters names alternatives,
--     the name goes on ("Laptop / Notebook Power Cord Lead Cable" is a
--     cable, not a laptop);
--   - a roman numeral in capitals is never the head, and a later run
--     written in capitals with a roman numeral of its own ("Serial ATA
--     III") is a version of an interface: a name that gave its type in
--     lower case among capitalized words ("internal solid state drive")
--     keeps it;
--   - a capitalized Lite, Pro, Plus, Max, Mini or Ultra after a model
--     number names a variant of the model ("Tab S6 Lite");
--   - "Tab", capitalized as a line's name, is a tablet.
\i sql/include/prelude.sql
SELECT t, shop.search_head(t) FROM unnest(ARRAY[
    'Tripp Lite Laptop / Notebook Power Cord Lead Cable, 10A (NEMA 1-15P to IEC-320-C7), 1.83 m (6-ft.)',
    'DYMO Shipping / Name Badge Labels - 54 x 101 mm - S0722430',
    'StarTech.com DVI-I Coupler / Gender Changer - F/F',
    'DELL 9PTC2 internal solid state drive 2.5" 960 GB Serial ATA III',
    'Intel SSDSA2MH160G201 internal solid state drive 2.5" 160 GB Serial ATA III MLC',
    'Lenovo ThinkPad Advanced Ultrabay Battery III',
    'Samsung Galaxy Tab S6 Lite SM-P610N 26.4 cm (10.4") Samsung Exynos 4 GB 64 GB Wi-Fi 5 (802.11ac) Blue Android 10',
    'Samsung Galaxy Tab S5e SM-T720N 26.7 cm (10.5") 6 GB 128 GB Wi-Fi 5 (802.11ac) Gold Android 10',
    'Lenovo Tab M8 20.3 cm (8") Mediatek 2 GB 32 GB Wi-Fi 5 (802.11ac) 4G LTE Gray Android 9.0',
    'ARCTIC F8 Pro - Case Fan with Vibration Absorption']) t;
-- as before: a slash joining words without spaces (the first), a slash
-- next to a number, Lite as a brand's word, "tab" in lower case or not the
-- head; a numeral joined by a hyphen ("UHS-II", "USB Type-A") in a
-- capitalized tail after a type in lower case: the type since round 14
-- (was uh, type; sql/search_head_spec)
SELECT t, shop.search_head(t) FROM unnest(ARRAY[
    'DYMO AC Adapter power adapter/inverter',
    'Intel SR1400 / 2400 Fixed Mount Bracket',
    'Tripp Lite PS/2 (3-in-1) Cable Kit for KVM Switch B004-008, 1.83 m',
    'HERMA Franking labels with tab edge 130x40 mm 500 pcs.',
    'HERMA Tab labels A4 45.7x16.9 mm white Movables/removable paper matt 1600 pcs.',
    'Lenovo ThinkPad T14s Notebook Black 35.6 cm (14")',
    'Kingston Technology Canvas React Plus memory card 64 GB SD Class 10 UHS-II',
    'Sony USM8GJ USB flash drive 8 GB USB Type-A 2.0 Black,Silver']) t;

-- what a shopper sees: the tablets are of the type "android tablet" asks
-- for, and rank above the Android products of other types that, like
-- them, miss the word "tablet" (before: no product was of that type)
SELECT shop.category_add('Electronics') AS cat \gset
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('T1', 'Samsung Galaxy Tab S6 Lite SM-P610N 26.4 cm (10.4") Samsung Exynos 4 GB 64 GB Wi-Fi 5 (802.11ac) Blue Android 10',
        'Samsung', :cat, 34999, 1, true, 'active'),
       ('T2', 'Lenovo Tab M8 20.3 cm (8") Mediatek 2 GB 32 GB Wi-Fi 5 (802.11ac) 4G LTE Gray Android 9.0',
        'Lenovo', :cat, 14999, 1, true, 'active'),
       ('X1', 'Xiaomi Mi Box S 4K Ultra HD Android TV media player 8 GB Wi-Fi 5 (802.11ac) Bluetooth 4.2 Black',
        'Xiaomi', :cat, 6999, 1, true, 'active'),
       ('X2', 'Otterbox Defender Series Rugged Android phone case 15.5 cm (6.1") for Galaxy S10 Black',
        'Otterbox', :cat, 1999, 1, true, 'active'),
       ('X3', 'Targus Universal tablet case 25.4 cm (10") Folio Black', 'Targus', :cat, 2999, 1, true, 'active'),
       ('C1', 'Tripp Lite Laptop / Notebook Power Cord Lead Cable, 10A (NEMA 1-15P to IEC-320-C7), 1.83 m (6-ft.)',
        'Tripp Lite', :cat, 1299, 1, true, 'active'),
       ('N1', 'HP 530 Laptop 39.1 cm (15.4") Intel Celeron M 1 GB 120 GB', 'HP', :cat, 49999, 1, true, 'active'),
       ('N2', 'Lenovo IdeaPad 3 Laptop Grey 39.6 cm (15.6") AMD Ryzen 5 8 GB 512 GB SSD', 'Lenovo', :cat, 59999, 1, true, 'active'),
       ('N3', 'Acer Aspire 5 Laptop Silver 39.6 cm (15.6") Intel Core i5 8 GB 256 GB SSD', 'Acer', :cat, 54999, 1, true, 'active');
-- the tablet case (the one title saying "tablet") and the two tablets in
-- the first three places (ordered by sku: scores may tie)
SELECT p.sku FROM (SELECT product_id FROM shop.search('android tablet', '{}', 'relevance', 3)) s
JOIN shop.product p USING (product_id) ORDER BY p.sku;
-- the laptops before the laptop power cord; the cord is a cable
SELECT p.sku, shop.search_head(p.title) FROM (SELECT product_id FROM shop.search('laptop', '{}', 'relevance', 3)) s
JOIN shop.product p USING (product_id) ORDER BY p.sku;
SELECT p.sku, shop.search_head(p.title) FROM (SELECT product_id FROM shop.search('power cord cable', '{}', 'relevance', 1)) s
JOIN shop.product p USING (product_id) ORDER BY p.sku;
-- the storefront ranks the same way
SET ROLE shop_storefront;
SELECT title FROM shop.search('android tablet', '{}', 'relevance', 3) ORDER BY title;
RESET ROLE;
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
