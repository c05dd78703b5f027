-- search_plans: @@@ matches the same rows whatever the plan.  Each query
-- runs as a sequential scan (the operator function on every row), a
-- bitmap index scan, a plain index scan and an ordered index scan
-- (ORDER BY <=>), over a table with documents in segments and in the
-- pending list, deleted and updated rows, and the rows must be the same.
\i sql/include/prelude.sql

CREATE TABLE plan_doc (id int PRIMARY KEY, title text, brand text, body text,
                       cat bigint, price bigint, rating real, stock boolean)
    WITH (autovacuum_enabled = off);
CREATE INDEX plan_doc_idx ON plan_doc USING shop_search
    (shop.search_doc(title, brand, body, cat, price, rating, stock));
CREATE FUNCTION pg_temp.doc_rows(n int, first int) RETURNS void LANGUAGE sql AS $f$
    INSERT INTO plan_doc
    SELECT first + g,
           (ARRAY['speaker', 'speakar', 'running shoes', 'runner jacket', 'laptops', 'laptop sleeve',
                  'usb cable', 'coffee table', 'cabel tester', 'samsung tv', 'television stand',
                  'macbook air', 'macbok case', 'telvision', 'the best', 'cables for cars'])[1 + g % 16]
             || ' zeta' || lpad((g % 120)::text, 4, '0'),
           (ARRAY['Acme', 'Samsung', 'Sony'])[1 + g % 3],
           (ARRAY['great for running', 'a cable for every speaker', NULL, 'tables and televisions',
                  'runs on usb'])[1 + g % 5],
           1 + g % 5, 100 * (g % 13), (g % 6)::real, g % 3 <> 0
      FROM generate_series(1, n) g
$f$;
SELECT pg_temp.doc_rows(600, 0);
VACUUM plan_doc;
SELECT pg_temp.doc_rows(600, 600);    -- a second segment (an insert fold) and a pending list
SELECT pg_temp.doc_rows(150, 1200);
DELETE FROM plan_doc WHERE id % 17 = 0;
UPDATE plan_doc SET title = title || ' speaker' WHERE id % 23 = 0;
SELECT jsonb_array_length(shop.search_index_info('plan_doc_idx') -> 'segments') > 0 AS has_segments,
       (shop.search_index_info('plan_doc_idx') ->> 'pending')::int > 0 AS has_pending;

-- the ids matching q under one plan (seqscan, bitmap, index, ordered), and
-- whether the plan was that one
CREATE FUNCTION pg_temp.ids(q jsonb, how text) RETURNS int[] LANGUAGE plpgsql AS $f$
DECLARE
    sql text := 'SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM (SELECT id FROM plan_doc
                  WHERE shop.search_doc(title, brand, body, cat, price, rating, stock) OPERATOR(shop.@@@) $1'
                || CASE WHEN how = 'ordered' THEN '
                  ORDER BY shop.search_doc(title, brand, body, cat, price, rating, stock) OPERATOR(shop.<=>) $1'
                   ELSE '' END || ') x';
    want text := CASE how WHEN 'seqscan' THEN 'Seq Scan' WHEN 'bitmap' THEN 'Bitmap Index Scan'
                          ELSE 'Index Scan using plan_doc_idx' END;
    plan text := '';
    l text;
    res int[];
BEGIN
    PERFORM set_config('enable_seqscan', (how = 'seqscan')::text, true);
    PERFORM set_config('enable_bitmapscan', (how = 'bitmap')::text, true);
    PERFORM set_config('enable_indexscan', (how IN ('index', 'ordered'))::text, true);
    PERFORM set_config('enable_sort', (how <> 'ordered')::text, true);
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || sql USING q LOOP
        plan := plan || l;
    END LOOP;
    IF strpos(plan, want) = 0 THEN
        RAISE EXCEPTION 'plan for % is not a %: %', how, want, plan;
    END IF;
    EXECUTE sql INTO res USING q;
    RETURN res;
END $f$;

CREATE TEMP TABLE plan_query (n serial, q jsonb);
INSERT INTO plan_query (q) VALUES
    ('"speaker"'),                                          -- exact: and its typo'd neighbour
    ('"speakar"'),
    ('{"q": "speaker", "typos": false}'),
    ('{"q": "speaker", "no_typos": ["speaker"]}'),
    ('"run"'),                                              -- stems
    ('"running"'),
    ('"laptops"'),
    ('"lapt"'),                                             -- prefixes
    ('{"q": "lapt", "prefix": false}'),
    ('"zeta"'),                                             -- 120 completions
    ('"zeta00"'),
    ('"cabel"'),                                            -- typos
    ('"telvisoin"'),
    ('"macbok"'),                                           -- a typo'd prefix
    ('"samsung tv"'),                                       -- all words
    ('{"q": "samsung tv", "match": "any"}'),                -- any word
    ('{"q": "samsung telvision", "match": "any"}'),
    ('{"q": "tv", "synonyms": [["tv", "television"]]}'),
    ('{"q": "stand tv", "synonyms": [["tv", "television stand"]]}'),
    ('{"q": "cable", "price_max": 500}'),                   -- filters
    ('{"q": "cable", "category_ids": [2, 3]}'),
    ('{"q": "cable", "brands": ["acme", "SONY"]}'),
    ('{"q": "cable", "rating_min": 3, "in_stock": true}'),
    ('{"q": "speaker", "price_min": 300, "price_max": 900, "in_stock": false}'),
    ('"the"'),                                              -- stop words
    ('"the speaker"'),
    ('"cables for cars"'),
    ('{"q": "running", "language": "german"}'),             -- another language than the index's
    ('{"q": "runner", "language": "english"}'),
    ('""'),
    ('"zzzz"');

SELECT p.n, p.q, cardinality(s.ids) AS matches,
       s.ids = pg_temp.ids(p.q, 'bitmap') AS bitmap_same,
       s.ids = pg_temp.ids(p.q, 'index') AS index_same,
       s.ids = pg_temp.ids(p.q, 'ordered') AS ordered_same
  FROM plan_query p CROSS JOIN LATERAL (SELECT pg_temp.ids(p.q, 'seqscan') AS ids) s
 ORDER BY p.n;

-- after VACUUM folds the pending list, the same
VACUUM plan_doc;
SELECT count(*) FILTER (WHERE s.ids = pg_temp.ids(p.q, 'bitmap') AND s.ids = pg_temp.ids(p.q, 'index')
                          AND s.ids = pg_temp.ids(p.q, 'ordered')) AS same,
       count(*) AS queries
  FROM plan_query p CROSS JOIN LATERAL (SELECT pg_temp.ids(p.q, 'seqscan') AS ids) s;

-- shop's API asks the index which words it knows: they get no typos
SELECT shop._search_no_typos('plan_doc_idx', '{"q": "speaker cabel zet"}');
SELECT shop._search_no_typos('plan_doc_idx', '"speaker"');
SELECT shop._search_no_typos('plan_doc_idx', '{"q": "runs", "no_typos": "other"}');

DROP TABLE plan_doc;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
