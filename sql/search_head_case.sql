-- search_head_case: the head noun of a title that names its type and then
-- the type's properties (issue 13, round 3).  Catalogs such as Icecat
-- write "<brand> <model> <type> <Properties>", the type in lower case and
-- the properties capitalized ("... Single-use battery Alkaline"): the
-- head is the name's last word in lower case when the name mixes cases;
-- of two words joined by a slash ("adapter/inverter") the first.  A query
-- naming the type then ranks these products above shorter titles that
-- only mention it.
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 2) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT title FROM shop.search(q, '{}', 'relevance', lim)
$f$;
SELECT t, shop.search_head(t) FROM unnest(ARRAY[
    -- the type in lower case, then capitalized properties
    'Varta High Energy AA Single-use battery Alkaline',
    'Logitech MX1000 mouse RF Wireless Laser',
    'Manhattan 130554 mobile device charger Indoor Black',
    'Intel AXXSW1GB network switch Managed L2+',
    -- two words joined by a slash: the first
    'DYMO AC Adapter power adapter/inverter',
    'Belkin Power Adapter/Inverter',
    'Philips SHD8600/10 headphones/headset Black',
    -- one case only: the last word, as before
    'Kensington MicroSaver DS Laptop Lock',
    'Lenovo ThinkPad T14s Notebook Black 35.6 cm (14")',
    'targus privacy filter for 14" laptops',
    'CANON PIXMA PRINTER',
    -- a word after a hyphen is written as the word before it
    'JVC HA-RX700 Headphones Head-band Black',
    -- the title's first word alone is its brand, not its type: the name
    -- goes on past a colour or a size (issue 13, round 5; before: com,
    -- startech, xerox, origin)
    'StarTech.com 3ft Micro USB Cable - A to Micro B',
    'StarTech.com 1 ft Cat5e Blue Molded RJ45 UTP Patch Cable - 1ft Patch Cord',
    'Xerox Magenta Standard Capacity Toner Cartridge, Phaser 6300/6350',
    'Lexmark Black Toner Kit for C920 Original',
    -- "Original" is a property, as a colour is; a title naming no type
    -- but its brand has none
    'Brother Drum Unit Original',
    'HP 91 Original Yellow 1 pc(s)',
    -- a name whose first word is no brand ("HP" is too short to be a head)
    'HP 15s-eq0019na Notebook Silver 39.6 cm (15.6") AMD Ryzen 7',
    'Keyboard']) t;
-- a property after the type (issue 13, round 9; before: auto, desktop,
-- indoor): where a charger takes its power ends the name when a colour, a
-- number or nothing follows it; a title ending with a colour and a word in
-- capitals names its type there
SELECT t, shop.search_head(t) FROM unnest(ARRAY[
    'Samsung Car Charger Auto Black',
    'HP FA260B Mobile Device Charger Indoor 65 W Black',
    'Buffalo TeraStation ES 4TB Ethernet LAN Desktop Black NAS',
    -- a word of the name follows: part of it, as before
    'HP Auto Power Adapter',
    'Philips Indoor Headphones SBCHP200',
    'HP Inkjet Auto Duplexer Unit',
    'Samsung EP-L1100 Auto Black',
    'HP 90W Smart AC/Auto/Air Combo Adapter power adapter/inverter',
    'Tripp Lite Cat5e Bulk Solid-Core PVC Outdoor-Rated Cable',
    -- a colour and a property in capitals and lower case: as before
    'Philips SPA2200/00 loudspeaker Black Wired',
    'Canon CLC1100 Toner Black Original',
    -- a name saying how the product is fitted goes on past a dash to the
    -- word in lower case that names the product; in a capitalized name a
    -- preposition in lower case ends it as "for" does (before: desk, over,
    -- over)
    'Dataflex Viewmaster bolt through desk - mount 963',
    'Dataflex Viewmate computer holder - desk 322',
    'StarTech.com VGA Video Extender over Cat 5',
    'StarTech.com 6 ft Straight Through Serial Cable - DB9 F/F',
    'Tripp Lite HDMI over Cat6 Extender Kit with Power over Cable - 4K @ 60 Hz']) t;
SELECT shop.category_add('Power') AS cat \gset
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('B1', 'Varta High Energy AA Single-use battery Alkaline', 'Varta', :cat, 599, 1, true, 'active'),
       ('B2', 'Battery charger', 'Ansmann', :cat, 1999, 1, true, 'active'),
       ('M1', 'Logitech MX1000 mouse RF Wireless Laser', 'Logitech', :cat, 4999, 1, true, 'active'),
       ('M2', 'Fellowes mouse pad', 'Fellowes', :cat, 999, 1, true, 'active'),
       ('D1', 'Belkin Power Adapter/Inverter', 'Belkin', :cat, 3999, 1, true, 'active'),
       ('D2', 'Adapter Cable', 'Belkin', :cat, 999, 1, true, 'active'),
       ('C1', 'Xerox Magenta Standard Capacity Toner Cartridge, Phaser 6300/6350', 'Xerox', :cat, 9999, 1, true, 'active'),
       ('C2', 'Cartridge cleaning kit', 'Xerox', :cat, 999, 1, true, 'active'),
       ('S1', 'Buffalo TeraStation ES 4TB Ethernet LAN Desktop Black NAS', 'Buffalo', :cat, 49999, 1, true, 'active'),
       ('S2', 'NAS drive tray', 'Buffalo', :cat, 1999, 1, true, 'active'),
       ('R1', 'Samsung Car Charger Auto Black', 'Samsung', :cat, 1999, 1, true, 'active'),
       ('R2', 'Charger cable', 'Samsung', :cat, 999, 1, true, 'active');
-- the product of the type first (each pair's second title is shorter and
-- wins on text alone, as with intent off)
SELECT * FROM pg_temp.s('battery');
SELECT * FROM pg_temp.s('mouse');
SELECT * FROM pg_temp.s('adapter');
SELECT * FROM pg_temp.s('cartridge');
SELECT * FROM pg_temp.s('nas');
SELECT * FROM pg_temp.s('charger', 3);
SET shop.search_intent = off;
SELECT * FROM pg_temp.s('battery');
SELECT * FROM pg_temp.s('mouse');
SELECT * FROM pg_temp.s('adapter');
SELECT * FROM pg_temp.s('cartridge');
SELECT * FROM pg_temp.s('nas');
SELECT * FROM pg_temp.s('charger', 3);
RESET shop.search_intent;
-- the storefront ranks the same way
SET ROLE shop_storefront;
SELECT * FROM pg_temp.s('battery', 1);
SELECT * FROM pg_temp.s('nas', 1);
RESET ROLE;
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
