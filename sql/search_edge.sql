-- search_edge: NaN stored values, and scans over more matches than
-- work_mem holds (bitmap scans go lossy, index scans evaluate in batches)
\i sql/include/prelude.sql

-- a NaN rating is a rating like any other: stored, checked by
-- search_verify without a false mismatch, ranked as the highest (as
-- PostgreSQL orders NaN), never with a runaway score
CREATE TABLE edge_nan (id int PRIMARY KEY, title text, rating real, pop real);
INSERT INTO edge_nan VALUES (1, 'rated lamp', 'NaN', 'NaN'), (2, 'rated lamp', 3, 1),
                            (3, 'rated lamp', '-Infinity', 'Infinity'), (4, 'rated lamp', NULL, NULL);
CREATE INDEX edge_nan_idx ON edge_nan USING shop_search
    (shop.search_doc(title, rating => rating, popularity => pop));
SELECT * FROM shop.search_verify('edge_nan_idx');
VACUUM edge_nan;
SELECT * FROM shop.search_verify('edge_nan_idx');
SELECT e.id, s.score < 10 AS sane_score, s.typos
  FROM shop.search_scan('edge_nan_idx', '"lamp"', 10) s JOIN edge_nan e ON e.ctid = s.ctid
 ORDER BY e.id;
SELECT e.id FROM shop.search_scan('edge_nan_idx', '{"q": "lamp", "rating_min": 2}', 10) s
  JOIN edge_nan e ON e.ctid = s.ctid ORDER BY e.id;

-- 30,000 matches over 1,700 heap pages, work_mem 64kB
CREATE TABLE edge_many (id int PRIMARY KEY, title text) WITH (autovacuum_enabled = off, fillfactor = 10);
INSERT INTO edge_many SELECT g, CASE WHEN g % 3 = 0 THEN 'blue widget' ELSE 'widget ' || g END
  FROM generate_series(1, 30000) g;
CREATE INDEX edge_many_idx ON edge_many USING shop_search (shop.search_doc(title));
VACUUM edge_many;
INSERT INTO edge_many SELECT g, 'blue widget late' FROM generate_series(30001, 30300) g;  -- pending
CREATE FUNCTION pg_temp.plan_has(q text, what text) RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
    l text;
BEGIN
    FOR l IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
        IF strpos(l, what) > 0 THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $f$;
SET work_mem = '64kB';
SET enable_seqscan = off;
SET enable_indexscan = off;
-- bitmap: every match in the executor's bitmap, lossy past work_mem
SELECT pg_temp.plan_has($$SELECT count(*) FROM edge_many
    WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"widget"'$$, 'lossy=') AS lossy;
SELECT count(*) AS widget FROM edge_many WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"widget"';
SELECT count(*) AS blue FROM edge_many WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"blue"';
-- two different queries in one scan: their bitmaps intersect
SELECT count(*) AS blue_late FROM edge_many
 WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"blue"'
   AND shop.search_doc(title) OPERATOR(shop.@@@) '"late"';
-- a plain index scan hands out 30,300 rows in batches of what work_mem holds
RESET enable_indexscan;
SET enable_bitmapscan = off;
SELECT pg_temp.plan_has($$SELECT id FROM edge_many
    WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"widget"'$$, 'Index Scan') AS index_scan;
SELECT count(*) AS widget, count(DISTINCT id) AS distinct_rows
  FROM edge_many WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"widget"';
-- and an ordered scan to the end, in order
SELECT count(*) AS ordered, bool_and(d >= prev) AS in_order
  FROM (SELECT d, lag(d, 1, '-Infinity') OVER (ORDER BY n) AS prev
          FROM (SELECT row_number() OVER () AS n, d
                  FROM (SELECT shop.search_doc(title) OPERATOR(shop.<=>) '"blue"' AS d
                          FROM edge_many
                         WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"blue"'
                         ORDER BY shop.search_doc(title) OPERATOR(shop.<=>) '"blue"') x) y) z;
RESET enable_bitmapscan;
RESET enable_seqscan;
RESET work_mem;
SELECT count(*) AS truth_widget, count(*) FILTER (WHERE title LIKE 'blue%') AS truth_blue
  FROM edge_many;

-- the language of an index is the one it was built with until REINDEX:
-- ALTER INDEX ... SET (language) changes nothing before, for inserts and
-- queries alike, so "run" still finds a new "running shoes"
CREATE TABLE edge_lang (id int PRIMARY KEY, title text);
INSERT INTO edge_lang VALUES (1, 'running jacket');
CREATE INDEX edge_lang_idx ON edge_lang USING shop_search (shop.search_doc(title));
ALTER INDEX edge_lang_idx SET (language = 'german');
INSERT INTO edge_lang VALUES (2, 'running shoes');
SELECT shop.search_index_info('edge_lang_idx') ->> 'language' AS language;
SELECT e.title FROM shop.search_scan('edge_lang_idx', '{"q": "run", "prefix": false}') s
  JOIN edge_lang e ON e.ctid = s.ctid ORDER BY e.id;
VACUUM edge_lang;
SELECT e.title FROM shop.search_scan('edge_lang_idx', '{"q": "run", "prefix": false}') s
  JOIN edge_lang e ON e.ctid = s.ctid ORDER BY e.id;
SELECT * FROM shop.search_verify('edge_lang_idx');
-- REINDEX takes the new language: German does not stem "running" to "run"
REINDEX INDEX edge_lang_idx;
SELECT shop.search_index_info('edge_lang_idx') ->> 'language' AS language;
SELECT e.title FROM shop.search_scan('edge_lang_idx', '{"q": "run", "prefix": false}') s
  JOIN edge_lang e ON e.ctid = s.ctid ORDER BY e.id;
SELECT e.title FROM shop.search_scan('edge_lang_idx', '{"q": "running", "prefix": false}') s
  JOIN edge_lang e ON e.ctid = s.ctid ORDER BY e.id;

DROP TABLE edge_nan, edge_many, edge_lang;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
