-- search_typo: typo candidates come from each segment's trigram map
-- (sstypo.c); they must be exactly those a dictionary scan finds
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.s(q text, lim int DEFAULT 5)
RETURNS TABLE (title text, typos int) LANGUAGE sql AS $f$
    SELECT title, typos FROM shop.search(q, '{}', 'relevance', lim)
$f$;

INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
SELECT 'P' || n, t, 'Acme', '', 1000, n, true, 'active'
  FROM unnest(ARRAY['Television', 'Headphones', 'Keyboard', 'Microwave', 'Refrigerator',
                    'Dishwasher', 'Cable', 'Table', 'Printer', 'Monitor', 'Smartphone',
                    'Vacuum cleaner', 'Charger', 'Speaker']) WITH ORDINALITY AS x(t, n);
VACUUM shop.product;

-- one typo from 5 letters, not on the first letter (it counts as two)
SELECT * FROM pg_temp.s('keybaord');      -- transposition
SELECT * FROM pg_temp.s('headhpones');
SELECT * FROM pg_temp.s('micrwave');      -- dropped letter
SELECT * FROM pg_temp.s('printter');      -- doubled letter
SELECT * FROM pg_temp.s('moniter');       -- substitution
SELECT * FROM pg_temp.s('cabel');         -- 5 letters, last word: prefix rules too
SELECT * FROM pg_temp.s('cabel ');        -- not a prefix
SELECT * FROM pg_temp.s('chrager ');
SELECT * FROM pg_temp.s('kable');         -- first letter: two typos, too many
SELECT * FROM pg_temp.s('ssmartphone');   -- one typo may be an extra first letter
-- two typos from 9 letters, a first-letter typo counting as two
SELECT * FROM pg_temp.s('xelevision');
SELECT * FROM pg_temp.s('elevision');
SELECT * FROM pg_temp.s('refridgerater');
SELECT * FROM pg_temp.s('smartfone');
SELECT * FROM pg_temp.s('xmartphine');    -- three: nothing
SELECT * FROM pg_temp.s('televisoin tabel');
-- a typo'd prefix of the last word
SELECT * FROM pg_temp.s('dishwsh');
SELECT * FROM pg_temp.s('refrigerat');
-- known words are not widened to their neighbours
SELECT * FROM pg_temp.s('cable');
-- did_you_mean takes its candidates from the map as well
SELECT shop.did_you_mean('televsion keybaord') AS a,
       shop.did_you_mean('xelevision refridgerater') AS b,
       shop.did_you_mean('kable smartfone') AS c,
       shop.did_you_mean('cabel') AS d;

-- a generated vocabulary: every misspelling within its typo budget finds
-- the one product titled with the word, through segments of several
-- builds and the pending list
CREATE TEMP TABLE w AS
SELECT i, translate(substr(md5(i::text), 1, 5 + i % 8),
                    '0123456789abcdef', CASE i % 2 WHEN 0 THEN 'aeioustrlnbcdmpk' ELSE 'abababcdcdababcd' END) AS word
  FROM generate_series(1, 1200) i;
DELETE FROM w a USING w b WHERE a.word = b.word AND a.i > b.i;
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
SELECT 'W' || i, word, 'Acme', '', 1000, i % 7, true, 'active' FROM w WHERE i <= 900;
VACUUM shop.product;
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
SELECT 'W' || i, word, 'Acme', '', 1000, i % 7, true, 'active' FROM w WHERE i > 900 AND i <= 1150;
VACUUM shop.product;
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
SELECT 'W' || i, word, 'Acme', '', 1000, i % 7, true, 'active' FROM w WHERE i > 1150;
SELECT jsonb_array_length(shop.search_index_info('shop.product_search_idx') -> 'segments') > 1 AS segments,
       (shop.search_index_info('shop.product_search_idx') ->> 'pending')::int > 0 AS pending;
CREATE TEMP TABLE q AS
SELECT i, word, m, p, CASE m
         WHEN 0 THEN overlay(word PLACING 'x' FROM p FOR 1)                  -- substitution
         WHEN 1 THEN overlay(word PLACING '' FROM p FOR 1)                   -- dropped letter
         WHEN 2 THEN overlay(word PLACING substr(word, p + 1, 1) || substr(word, p, 1) FROM p FOR 2)
         WHEN 3 THEN overlay(word PLACING substr(word, p, 1) FROM p FOR 0)   -- doubled letter
         WHEN 4 THEN overlay(overlay(word PLACING 'y' FROM p FOR 1) PLACING 'z' FROM 2 FOR 1)
         WHEN 5 THEN 'x' || substr(word, 2)                                 -- first letter
         ELSE overlay(overlay(word PLACING '' FROM p FOR 1) PLACING 'y' FROM 2 FOR 1)
       END AS typo
  FROM w, generate_series(0, 6) m, LATERAL (SELECT 2 + (i * 7 + m) % (length(word) - 2) AS p) pp
 WHERE m < 4 OR length(word) >= 9;
-- typos allowed follow the length of the misspelling: 1 from 5, 2 from 9
DELETE FROM q WHERE length(typo) < CASE WHEN m < 4 THEN 5 ELSE 9 END;
DELETE FROM q WHERE EXISTS (SELECT FROM w WHERE w.word LIKE q.typo || '%');
SELECT count(*) > 1500 AS enough, count(DISTINCT m) AS kinds FROM q;
-- none missed, as last word (prefix rules) or not
SELECT i, word, typo FROM q
 WHERE NOT EXISTS (SELECT FROM pg_temp.s(typo, 50) s WHERE s.title = q.word)
 ORDER BY i, m;
SELECT i, word, typo FROM q
 WHERE NOT EXISTS (SELECT FROM pg_temp.s(typo || ' ', 50) s WHERE s.title = q.word)
 ORDER BY i, m;
-- and did_you_mean has a suggestion for each (it reads segments only,
-- not the pending list), the word itself where it is the only close one
SELECT count(*) FILTER (WHERE shop.did_you_mean(typo) IS NULL) AS no_suggestion,
       count(*) FILTER (WHERE shop.did_you_mean(typo) = word) > 1000 AS mostly_the_word
  FROM q WHERE i <= 1150;

-- two typos in a word of 7 or 8 letters when the vocabulary has nothing
-- within one typo, the first letter right (issue 13)
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity, in_stock, status)
VALUES ('L1', 'Logitech wireless mouse', 'Logitech', '', 1000, 1, true, 'active'),
       ('L2', 'Generic mouse', 'Acme', '', 1000, 50, true, 'active'),
       ('L3', 'Record changer', 'Acme', '', 1000, 1, true, 'active');
VACUUM shop.product;                          -- did_you_mean reads segments
SELECT * FROM pg_temp.s('logitek mouse');     -- k -> c, + h: logitech first
SELECT * FROM pg_temp.s('logitek');
SELECT * FROM pg_temp.s('logitech');          -- the word itself: no typos
SELECT * FROM pg_temp.s('lgoitek');           -- three: nothing
SELECT * FROM pg_temp.s('xogitec');           -- first letter wrong: nothing
SELECT * FROM pg_temp.s('chargre');           -- charger is one typo away: changer (two) is not found
SELECT * FROM pg_temp.s('wirelss');           -- 7 letters, one typo: as before
SELECT shop.did_you_mean('logitek mouse') AS a, shop.did_you_mean('chargre') AS b;
-- what the API passes to the index
SELECT shop._search_intent(shop._search_query('logitek chargre mouse', '{}', NULL)) AS _search_query;
-- the same rows with and without the index
SELECT array_agg(sku ORDER BY sku) FROM shop.search_scan('shop.product_search_idx',
         '{"q": "logitek", "two_typos": ["logitek"]}', 100) s JOIN shop.product p ON p.ctid = s.ctid;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT array_agg(sku ORDER BY sku) FROM shop.product p
 WHERE status = 'active' AND shop.search_doc(title, brand, description) OPERATOR(shop.@@@)
       '{"q": "logitek", "two_typos": ["logitek"]}';
RESET enable_indexscan;
RESET enable_bitmapscan;
SELECT pg_temp.err($$SELECT shop.search_scan('shop.product_search_idx', '{"q": "logitek", "two_typos": 7}', 10)$$);

SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
