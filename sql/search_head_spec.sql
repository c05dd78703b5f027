-- search_head_spec: the head noun of a title whose specifications follow
-- its type (issue 13, round 14).  Counted over the 19,406 Chorus (Icecat)
-- titles, the most frequent heads included words that are no type:
-- "type" (of "USB Type-A", 80 titles), "dpi" (121), "ppm" (114), "pixel"
-- (78), "cach" (of "Smart Cache"), "uh" (of "UHS-I"), "gen" (of "9th
-- gen").  Three rules, no list of words:
-- * a type named in lower case in a name that mixes cases is not replaced
--   by a later run with no word in lower case (its properties,
--   capitalized: "flash drive 64 GB USB Type-A 2.0 Black");
-- * the word after a dimension ("1280 x 1024 pixels", "1200 x 1200 DPI")
--   or an ordinal ("9th gen") is its unit: it ends the run, as "cm" does;
-- * a word joined to a number by a hyphen ("3-Pin", "500-sheet", "4-Port")
--   counts the thing it names and is no head;
-- * the title's first word alone (the brand) is no head when anything
--   follows it, a model number included ("Canon EP-A Original Black").
-- (Counted again after these rules: 538 + 481 titles changed head.)
-- rel15: a word in capitals after a model number, in a run that has a
-- word that may be its head, is a property ("Card CL10 UHD", "Cat5e
-- UTP"): 126 titles.
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 2) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT title FROM shop.search(q, '{}', 'relevance', lim)
$f$;
SELECT t, shop.search_head(t) FROM unnest(ARRAY[
    -- the type in lower case, then capitalized properties (before: type,
    -- type, cach, uh, vip, tower, ata)
    'Integral COURIER USB flash drive 8 GB USB Type-A 2 Blue,Silver',
    'Freecom Databar USB flash drive 64 GB USB Type-A 2.0 Black',
    'Intel Core i3-540 processor 3.06 GHz Box 4 MB Smart Cache',
    'Kingston Technology Canvas Go! Plus memory card 128 GB MicroSD Class 10 UHS-I',
    'Acer EC.J5600.001 projector lamp 160 W P-VIP',
    'DELL PowerEdge T140 server Intel Xeon E 3.4 GHz 8 GB DDR4-SDRAM Tower 365 W',
    'Buffalo OP-HD500 internal hard drive 3.5" 500 GB Serial ATA',
    -- a unit after a dimension or an ordinal (before: dpi, dpi, ppm, pixel,
    -- pixel)
    'HP LaserJet 1018 Printer 600 x 600 DPI A4',
    'Canon LaserBase MF3110 Laser 1200 x 600 DPI 20 ppm A4',
    'Philips SPC200NC/00 webcam 640 x 480 pixels',
    'APC NBWL0455 security camera Cube 640 x 480 pixels',
    'HP 12-cell Ultra-capacity Battery with Adapter',
    -- a count joined by a hyphen (before: pin, sheet, pin, port)
    'Acer Power Cable CE 3-Pin Black',
    'HP Color LaserJet 250-sheet Input Tray',
    'Origin Storage 146Gb 15K Rpm 68-pin SCSI HDD ( Fixed )',
    'D-Link Hi-Speed USB 2.0 4-Port Hub',
    -- the brand and a model number, no type: no head (before: canon, soni,
    -- brother); a title that is one word is still its own type
    'Canon EP-A Original Black 1 pc(s)',
    'Sony QGD170ME',
    'Brother TN7300 Original Black 1 pc(s)',
    'Keyboard',
    -- a word in capitals after a model number, in a run that has a
    -- word that may be its head, is a property (rel15; before: uhd, utp,
    -- mfp, hdmi)
    'V7 64GB U3 V30 A1 Micro SDXC Card CL10 UHD + Adapter',
    'APC 35ft Cat5e UTP, 6x RJ-45 - 6x RJ-45 networking cable 10.67 m U/UTP (UTP) Gray',
    'OKI Toner B2520 MFP Original Black',
    'Manhattan 4-port HDMI Splitter 4x HDMI',
    -- as before: a number before the type in lower case, one case only
    'Intel Pentium 530 processor 3 GHz Box 1 MB L2',
    'Lenovo ThinkPad T14s Notebook Black 35.6 cm (14")',
    'Logitech MX1000 mouse RF Wireless Laser']) t;
SELECT shop.category_add('Computing') AS cat \gset
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('D1', 'Integral COURIER USB flash drive 8 GB USB Type-A 2 Blue,Silver', 'Integral', :cat, 599, 1, true, 'active'),
       ('D2', 'Drive bay cover', 'Akasa', :cat, 999, 1, true, 'active'),
       ('P1', 'HP LaserJet 1018 Printer 600 x 600 DPI A4', 'HP', :cat, 9999, 1, true, 'active'),
       ('P2', 'Printer cable', 'HP', :cat, 999, 1, true, 'active'),
       ('C1', 'Intel Core i3-540 processor 3.06 GHz Box 4 MB Smart Cache', 'Intel', :cat, 12999, 1, true, 'active'),
       ('C2', 'Processor fan', 'Arctic', :cat, 1999, 1, true, 'active');
-- the product of the type first (each pair's second title is shorter and
-- wins on text alone, as with intent off)
SELECT * FROM pg_temp.s('drive');
SELECT * FROM pg_temp.s('printer');
SELECT * FROM pg_temp.s('processor');
SET shop.search_intent = off;
SELECT * FROM pg_temp.s('drive');
SELECT * FROM pg_temp.s('printer');
SELECT * FROM pg_temp.s('processor');
RESET shop.search_intent;
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
