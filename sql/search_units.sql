-- search_units: sizes, units and model numbers written in different ways
-- find each other, whichever way the document or the query writes them
-- (sstoken.c, SsAnalyze), through the index and without it
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text) RETURNS text LANGUAGE sql AS $f$
    SELECT coalesce(string_agg(sku, ' ' ORDER BY sku), '-')
      FROM shop.search(q, '{}', 'price_asc', 50) s JOIN shop.product p USING (product_id)
$f$;
INSERT INTO shop.product (sku, title, brand, description, price_cents, in_stock, status)
VALUES ('M1', 'Acme 27 inch monitor', 'Acme', '', 1000, true, 'active'),
       ('M2', 'Bolt 27" monitor', 'Bolt', '', 1100, true, 'active'),
       ('M3', 'Crest 27-inch monitor', 'Crest', '', 1200, true, 'active'),
       ('M4', 'Delta 27in monitor', 'Delta', '', 1300, true, 'active'),
       ('M5', 'Echo monitor 68.6 cm (LED)', 'Echo', '', 1400, true, 'active'),
       ('M6', 'Fox 24 inch monitor', 'Fox', '', 1500, true, 'active'),
       ('M7', 'Gale monitor 60.5 cm', 'Gale', '', 1600, true, 'active'),
       ('D1', 'Portable drive 1tb', 'Hex', '', 2000, true, 'active'),
       ('D2', 'Portable drive 1 TB', 'Ion', '', 2100, true, 'active'),
       ('D3', 'Portable drive 2 terabytes', 'Jet', '', 2200, true, 'active'),
       ('R1', 'Memory 16gb', 'Kilo', '', 3000, true, 'active'),
       ('R2', 'Memory 16 GB', 'Lima', '', 3100, true, 'active'),
       ('X1', 'Dell XPS 13 laptop', 'Dell', '', 4000, true, 'active'),
       ('X2', 'Dell xps13 sleeve', 'Dell', '', 4100, true, 'active'),
       ('C1', 'Canon C-EXV21 toner', 'Canon', '', 5000, true, 'active'),
       ('C2', 'Canon CEXV21 drum', 'Canon', '', 5100, true, 'active'),
       ('H1', 'HP-926 ink cartridge', 'HP', '', 6000, true, 'active'),
       ('H2', 'HP 92 ink cartridge', 'HP', '', 6100, true, 'active');

-- every pair finds the other: sizes in inches (and 68.6 cm, 27 inches)
SELECT q, pg_temp.s(q) FROM unnest(ARRAY['27 inch monitor', '27" monitor', '27-inch monitor',
    '27in monitor', '27 inches monitor', '24 inch monitor', '68.6 cm', '60.5 cm']) q;
-- storage and memory sizes
SELECT q, pg_temp.s(q) FROM unnest(ARRAY['1tb', '1 tb', '1 terabyte drive', '2tb', '16gb',
    '16 gb memory', '16 gigabytes']) q;
-- model numbers split and joined
SELECT q, pg_temp.s(q) FROM unnest(ARRAY['xps13', 'xps 13', 'XPS-13 laptop', 'c-exv21',
    'cexv21', 'C EXV21 toner', 'exv21']) q;
-- a document keeps no joined term for a run of letters and a run of digits
-- ("HP-926", "XPS 13"): a query word of two runs is read as them, joined
SELECT q, pg_temp.s(q) FROM unnest(ARRAY['hp926', 'hp-926', 'hp 926 ink', 'hp92', 'dell xps13',
    'canon c exv21', 'canon c-exv21']) q;
-- as the last word, a model number is still a prefix
SELECT q, pg_temp.s(q) FROM unnest(ARRAY['dell xps1', 'canon cexv2']) q;
-- the same rows without the index (the operator on every row; typos off,
-- as shop.search has them for words the catalog knows)
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT q, (SELECT coalesce(string_agg(sku, ' ' ORDER BY sku), '-') FROM shop.product p
            WHERE p.status = 'active'
              AND shop.search_doc(p.title, p.brand, p.description) OPERATOR(shop.@@@) jsonb_build_object('q', q, 'typos', false))
  FROM unnest(ARRAY['27 inch monitor', '27" monitor', '27in', '68.6 cm', '1tb', '1 tb', '16 gb',
                    'xps13', 'xps 13', 'c-exv21', 'cexv21', 'hp926', 'hp 926']) q;
RESET enable_indexscan;
RESET enable_bitmapscan;
-- the index format of units and model numbers
SELECT (shop.search_index_info('shop.product_search_idx') ->> 'version')::int AS version;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
