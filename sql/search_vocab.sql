-- search_vocab: the vocabulary learned from the catalog (issue 13, rel13).
-- Shoppers type "ssd"; many drives' titles say "internal solid state
-- drive" and never "SSD".  shop.refresh_search_vocab() learns ssd = solid
-- state drive from the products whose text has both (the word in
-- capitals, the phrase's initials), and shop.search then also finds the
-- drives that say only the phrase (an expansion scores expansion_weight,
-- 0.6, of what the same pair declared as synonyms would).
\i sql/include/prelude.sql
SELECT shop.category_add('Storage') AS cat \gset
INSERT INTO shop.product (sku, title, description, brand, category_id, price_cents, popularity, in_stock, status)
SELECT 'F' || g, 'Acme Filler ' || g || ' HDMI cable adapter black ' || (g % 7) || ' m', 'a cable', 'Acme', :cat, 999, 1, true, 'active'
  FROM generate_series(1, 40) g;
-- the teachers: five drives whose description says SSD
INSERT INTO shop.product (sku, title, description, brand, category_id, price_cents, popularity, in_stock, status)
SELECT 'T' || g, 'Intel SSDSA' || g || ' internal solid state drive 2.5" ' || (g * 80) || ' GB Serial ATA III',
       'Intel SSD, ' || (g * 80) || ' GB, Serial ATA III', 'Intel', :cat, 9999, 1, true, 'active'
  FROM generate_series(1, 5) g;
-- two drives that never say SSD, an SSD adapter and a PC with an SSD
INSERT INTO shop.product (sku, title, description, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('D1', 'Lenovo 4XB7A38185 internal solid state drive 2.5" 960 GB Serial ATA III QLC 3D NAND', 'A drive.',
        'Lenovo', :cat, 19999, 1, true, 'active'),
       ('D2', 'DELL 9PTC2 internal solid state drive 2.5" 960 GB Serial ATA III', 'A drive.', 'DELL', :cat, 19999, 1, true, 'active'),
       ('S1', 'StarTech.com CF to 2.5in SATA SSD Adapter', 'An adapter.', 'StarTech.com', :cat, 2999, 1, true, 'active'),
       ('S2', 'HP ProDesk 400 G7 i5 8 GB 256 GB SSD Tower PC', 'A PC.', 'HP', :cat, 59999, 1, true, 'active'),
       -- a coincidence seen in fewer than 5 products is not learned
       ('C1', 'Kensington POST power on self test card', 'POST card', 'Kensington', :cat, 999, 1, true, 'active');

-- nothing learned yet: `ssd` finds the products that say it, not D1, D2
SELECT count(*) AS vocab_rows FROM shop.search_vocab;
SELECT p.sku FROM shop.search('ssd', '{}', 'relevance', 20) s JOIN shop.product p USING (product_id) ORDER BY p.sku;

-- learned, both ways; a pair of fewer than 5 products is not
SELECT shop.refresh_search_vocab();
SELECT term, expansion, source, products FROM shop.search_vocab ORDER BY term, expansion;
-- what a shopper sees: the drives that say only the phrase come in too
SELECT count(*) FILTER (WHERE p.sku IN ('D1', 'D2')) AS drives, count(*) AS found
  FROM shop.search('ssd', '{}', 'relevance', 20) s JOIN shop.product p USING (product_id);
-- an expansion weighs 0.6 (expansion_weight) of what the same pair
-- declared as a synonym would: D2's score for `ssd` through the index
CREATE FUNCTION pg_temp.score(q jsonb, sku text) RETURNS real LANGUAGE sql AS $f$
    SELECT s.score FROM shop.search_scan('shop.product_search_idx', q, 100) s
      JOIN shop.product p ON p.ctid = s.ctid WHERE p.sku = score.sku
$f$;
SELECT round((pg_temp.score('{"q": "ssd", "expansions": [["ssd", "solid state drive"]]}', 'D2') /
              pg_temp.score('{"q": "ssd", "synonyms": [["ssd", "solid state drive"]]}', 'D2'))::numeric, 3) AS default_weight,
       round((pg_temp.score('{"q": "ssd", "expansions": [["ssd", "solid state drive"]], "expansion_weight": 0.25}', 'D2') /
              pg_temp.score('{"q": "ssd", "synonyms": [["ssd", "solid state drive"]]}', 'D2'))::numeric, 3) AS weight_025,
       -- a row that says the word typed scores as it did
       round((pg_temp.score('{"q": "ssd", "expansions": [["ssd", "solid state drive"]]}', 'S1') /
              pg_temp.score('{"q": "ssd"}', 'S1'))::numeric, 3) AS word_typed;
-- the phrase finds the word: `solid state drive` also finds S1 and S2
SELECT p.sku FROM shop.search('solid state drive', '{}', 'relevance', 20) s JOIN shop.product p USING (product_id)
 WHERE p.sku LIKE 'S%' ORDER BY p.sku;
-- what shop._search_query adds to the index query
SELECT shop._search_vocab('ssd', '{"q": "ssd"}') -> 'expansions' AS expansions;
-- the same in a segment
VACUUM shop.product;
SELECT count(*) FILTER (WHERE p.sku IN ('D1', 'D2')) AS drives
  FROM shop.search('ssd', '{}', 'relevance', 20) s JOIN shop.product p USING (product_id);

-- the index's query keys: expansions as synonyms are, a weight in (0, 1]
SELECT pg_temp.err($$SELECT shop.search_doc('a') OPERATOR(shop.@@@) '{"q": "ssd", "expansions": "solid state drive"}'$$);
SELECT pg_temp.err($$SELECT shop.search_doc('a') OPERATOR(shop.@@@)
                     '{"q": "ssd", "expansions": [["ssd", "solid state drive"]], "expansion_weight": 0}'$$);
SELECT shop.search_doc('internal solid state drive') OPERATOR(shop.@@@)
       '{"q": "ssd", "expansions": [["ssd", "solid state drive"]], "expansion_weight": 0.5}' AS matches;
-- one-way: a group's other phrases do not bring the first ("drive" is
-- not "ssd")
SELECT count(*) FROM shop.search_scan('shop.product_search_idx',
    '{"q": "drive", "expansions": [["ssd", "drive"]]}', 100) s
  JOIN shop.product p ON p.ctid = s.ctid WHERE p.sku LIKE 'S%';

-- the storefront searches with it, and may not relearn it
SET ROLE shop_storefront;
SELECT count(*) AS found FROM shop.search('ssd', '{}', 'relevance', 20);
SELECT pg_temp.err('SELECT shop.refresh_search_vocab()');
RESET ROLE;
-- from behaviour: shoppers who searched "gaming laptop" bought notebooks,
-- whose titles never say "laptop" (they matched on "gaming"); the
-- refresh after the behaviour prior's learns laptop -> notebook (their
-- head noun), one way, and `laptop` then finds notebooks too, here below
-- the products that say "laptop" (one word: 0.6 of its score)
INSERT INTO shop.product (sku, title, description, brand, category_id, price_cents, popularity, in_stock, status)
SELECT 'N' || g, 'HP OMEN ' || g || '5-dc1000 Notebook 39.6 cm (15.6") Full HD Intel Core i7 16 GB 512 GB Windows 10 Black',
       'A gaming notebook.', 'HP', :cat, 129999, 1, true, 'active'
  FROM generate_series(1, 3) g;
INSERT INTO shop.product (sku, title, description, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('L1', 'Kensington laptop lock', 'A lock.', 'Kensington', :cat, 2999, 1, true, 'active'),
       ('L2', 'Targus laptop sleeve 15.6"', 'A sleeve.', 'Targus', :cat, 1999, 1, true, 'active'),
       ('G1', 'Acme gaming mouse', 'A mouse.', 'Acme', :cat, 1999, 1, true, 'active');
SELECT p.sku FROM shop.search('laptop', '{}', 'relevance', 20) s JOIN shop.product p USING (product_id) ORDER BY p.sku;
CREATE FUNCTION pg_temp.buy(cust bigint, sku text, at timestamptz) RETURNS void LANGUAGE sql AS $f$
    WITH o AS (
        INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents, created_at)
        VALUES (cust, 'paid', 'USD', 100, 100, at) RETURNING order_id)
    INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
    SELECT o.order_id, 1, p.product_id, 'x', 'x', 100, 1 FROM o, shop.product p WHERE p.sku = buy.sku
$f$;
INSERT INTO shop.search_log (logged_at, query, query_folded, sort, results, duration_ms, customer_id)
SELECT now() - interval '10 minutes', 'gaming laptop', 'gaming laptop', 'relevance', 10, 1, c FROM generate_series(1, 6) c;
SELECT pg_temp.buy(c, 'N' || (1 + c % 3), now() - interval '5 minutes') FROM generate_series(1, 6) c;
SELECT shop.refresh_search_prior() IS NOT NULL AS prior_refreshed;
SELECT shop.refresh_search_vocab();
SELECT term, expansion, products FROM shop.search_vocab WHERE source = 'behaviour' ORDER BY term, expansion;
SELECT s.ord <= 2 AS first_two, string_agg(p.sku, ' ' ORDER BY p.sku) AS skus
  FROM shop.search('laptop', '{}', 'relevance', 20) WITH ORDINALITY s(product_id, score, title, brand, price_cents, rating_avg,
                                                                      category_id, in_stock, image, typos, missing_words, ord)
  JOIN shop.product p USING (product_id)
 GROUP BY 1 ORDER BY 1 DESC;
-- one way: `notebook` does not bring the laptop accessories
SELECT p.sku FROM shop.search('notebook', '{}', 'relevance', 20) s JOIN shop.product p USING (product_id) ORDER BY p.sku;

-- the candidates a cluster's router sums (docs/scale-out.md, "Replicated
-- tables"): every abbreviation one way with its count, no threshold, the
-- behaviour pairs, and the node's shop.vocab_min_products
SELECT term, expansion, source, products, min_products FROM shop._search_vocab_candidates()
 ORDER BY term, expansion;
-- the router's write: the same pairs replace the rows; malformed is 22023
SELECT shop._search_vocab_replace('[["ssd", "solid state drive", "abbreviation", 9]]');
SELECT term, expansion, source, products FROM shop.search_vocab ORDER BY term;
SELECT shop._search_vocab_replace('{"ssd": 1}');
SELECT shop._search_vocab_replace('[["ssd", "solid state drive"]]');
SELECT shop.refresh_search_vocab();
-- relearning after the teachers went: the abbreviation pairs go
UPDATE shop.product SET status = 'archived' WHERE sku LIKE 'T%';
SELECT shop.refresh_search_vocab();
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
