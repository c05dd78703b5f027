-- relevance_rerank.sql: try a ranking rule on the Chorus judgments in
-- seconds, before writing it in C (issue 13, rel16).
--
-- On a cluster kept by the relevance workload:
--
--   SHARED_DATA=/work/shared/data BENCH_KEEP=1 BENCH_KEEP_TABLES=1 \
--       BENCH_SCALE=1000 BENCH_ONLY=search_relevance make bench
--   psql -X -h tmp_bench/cluster -p <port> -U postgres -d bench \
--       -f bench/relevance_rerank.sql
--
-- It takes the first 100 rows shop_search gives each judged query (the
-- query bench_shop_query builds, as shop.search does), reads features of
-- each row from its title, brand, category and description, and
-- re-ranks the 100 rows by a rule written as two SQL expressions over
-- bench_rr_feat: a tier (rows of a lower tier first; today's scan orders
-- by "missing", the query words a row lacks) and a multiplier of the
-- scan's score inside a tier.  bench_rr_eval(tier, mult) returns nDCG@10
-- for half A (hashtext(query) & 1 = 0), half B and all queries, computed
-- as the workload computes it, and leaves each query's nDCG@10 in the
-- temporary table bench_rr_nd.  bench_rr_eval('missing', '1') is the
-- scan's own order: it must reproduce the workload's shop_search row.
--
-- A re-ranking sees only the first 100 rows: a rule that would lift a
-- row from further down reads lower here than in the scan.  A rule is
-- chosen on half A; half B and the per-type table of the workload check
-- it (docs/search.md, "Relevance: how it is measured").
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DROP TABLE IF EXISTS bench_rr_cand, bench_rr_qtok, bench_rr_ttok, bench_rr_feat, bench_rr_today;
CREATE TABLE bench_rr_cand AS
SELECT q.query_id, q.query, s.ord::int AS ord, s.score, s.missing, c.product_id,
       c.title, c.brand, c.category, c.description
  FROM bench_chorus_q q
 CROSS JOIN LATERAL shop.search_scan('bench_chorus_ss', bench_shop_query(q.query), 100)
       WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
  JOIN bench_chorus c ON c.ctid = s.ctid;

-- the words of each query and of each candidate's title, with positions
CREATE TABLE bench_rr_qtok AS
SELECT q.query_id, t.pos, t.word, t.stem FROM bench_chorus_q q, shop.search_tokens(q.query) t;
CREATE TABLE bench_rr_ttok AS
SELECT c.query_id, c.product_id, t.pos, t.stem
  FROM bench_rr_cand c, shop.search_tokens(c.title) t;
CREATE INDEX ON bench_rr_ttok (query_id, product_id);

-- features of a candidate:
--   nq        distinct query stems          nq_title  of them in the title
--   pairs     adjacent query word pairs     adj       of them adjacent in the title
--   tf_title  title words that are query stems (repeats counted)
--   firstpos  position of the first query word in the title (null: none)
--   tlen      title words
--   desc_q    query stems in the description
--   brand_q   a query word is a word of the brand
--   cat_q     a query stem is a word of the category name
--   head      the title's head noun (shop.search_head)
--   qtype     the stem of the query's last word (the type asked for)
--   qtype_in_title  the title has that stem
CREATE TABLE bench_rr_feat AS
SELECT c.query_id, c.product_id, c.ord, c.missing, c.score,
       (SELECT count(DISTINCT a.stem) FROM bench_rr_qtok a WHERE a.query_id = c.query_id) AS nq,
       (SELECT count(DISTINCT a.stem) FROM bench_rr_qtok a
          JOIN bench_rr_ttok x ON x.query_id = a.query_id AND x.product_id = c.product_id AND x.stem = a.stem
         WHERE a.query_id = c.query_id) AS nq_title,
       (SELECT count(*) FROM bench_rr_qtok a JOIN bench_rr_qtok b ON b.query_id = a.query_id AND b.pos = a.pos + 1
         WHERE a.query_id = c.query_id) AS pairs,
       (SELECT count(*) FROM bench_rr_qtok a JOIN bench_rr_qtok b ON b.query_id = a.query_id AND b.pos = a.pos + 1
         WHERE a.query_id = c.query_id
           AND EXISTS (SELECT 1 FROM bench_rr_ttok x
                         JOIN bench_rr_ttok y ON y.query_id = x.query_id AND y.product_id = x.product_id
                                             AND y.pos = x.pos + 1
                        WHERE x.query_id = c.query_id AND x.product_id = c.product_id
                          AND x.stem = a.stem AND y.stem = b.stem)) AS adj,
       (SELECT count(*) FROM bench_rr_ttok x
         WHERE x.query_id = c.query_id AND x.product_id = c.product_id
           AND x.stem IN (SELECT a.stem FROM bench_rr_qtok a WHERE a.query_id = c.query_id)) AS tf_title,
       (SELECT min(x.pos) FROM bench_rr_ttok x
         WHERE x.query_id = c.query_id AND x.product_id = c.product_id
           AND x.stem IN (SELECT a.stem FROM bench_rr_qtok a WHERE a.query_id = c.query_id)) AS firstpos,
       (SELECT count(*) FROM bench_rr_ttok x WHERE x.query_id = c.query_id AND x.product_id = c.product_id) AS tlen,
       (SELECT count(DISTINCT a.stem) FROM bench_rr_qtok a, shop.search_tokens(c.description) t
         WHERE a.query_id = c.query_id AND t.stem = a.stem) AS desc_q,
       EXISTS (SELECT 1 FROM bench_rr_qtok a
                WHERE a.query_id = c.query_id
                  AND a.word = ANY (string_to_array(shop._search_fold(c.brand), ' '))) AS brand_q,
       EXISTS (SELECT 1 FROM bench_rr_qtok a, shop.search_tokens(c.category) t
                WHERE a.query_id = c.query_id AND t.stem = a.stem) AS cat_q,
       shop.search_head(c.title) AS head,
       (SELECT a.stem FROM bench_rr_qtok a WHERE a.query_id = c.query_id ORDER BY a.pos DESC LIMIT 1) AS qtype
  FROM bench_rr_cand c;
ALTER TABLE bench_rr_feat ADD COLUMN qtype_in_title boolean;
UPDATE bench_rr_feat f
   SET qtype_in_title = EXISTS (SELECT 1 FROM bench_rr_ttok x
                                 WHERE x.query_id = f.query_id AND x.product_id = f.product_id AND x.stem = f.qtype);

-- nDCG@10 of a re-ranking: gain 2^grade - 1, discount log2(rank + 1),
-- unjudged rows gain 0, a query whose ideal DCG is 0 counts 0
CREATE OR REPLACE FUNCTION bench_rr_eval(tier text, mult text,
                                         OUT half_a numeric, OUT half_b numeric, OUT all_q numeric)
LANGUAGE plpgsql AS $f$
BEGIN
    DROP TABLE IF EXISTS bench_rr_rank, bench_rr_nd;
    EXECUTE format('CREATE TEMP TABLE bench_rr_rank AS
                    SELECT query_id, product_id,
                           row_number() OVER (PARTITION BY query_id ORDER BY %s, score * (%s) DESC, ord) AS rk
                      FROM bench_rr_feat', tier, mult);
    CREATE TEMP TABLE bench_rr_nd AS
    SELECT q.query_id, q.query,
           CASE WHEN i.idcg > 0 THEN coalesce((
               SELECT sum((2 ^ coalesce(j.grade, 0) - 1) / log(2, r.rk + 1))
                 FROM bench_rr_rank r
                 LEFT JOIN bench_chorus_qrels j ON j.query_id = r.query_id AND j.product_id = r.product_id
                WHERE r.query_id = q.query_id AND r.rk <= 10), 0) / i.idcg ELSE 0 END AS ndcg
      FROM bench_chorus_q q LEFT JOIN bench_chorus_ideal i USING (query_id);
    SELECT round(avg(ndcg) FILTER (WHERE hashtext(query) & 1 = 0)::numeric, 4),
           round(avg(ndcg) FILTER (WHERE hashtext(query) & 1 = 1)::numeric, 4),
           round(avg(ndcg)::numeric, 4)
      INTO half_a, half_b, all_q FROM bench_rr_nd;
END $f$;

SELECT * FROM bench_rr_eval('missing', '1');
CREATE TABLE bench_rr_today AS SELECT * FROM bench_rr_nd;

-- rel16's rules (bench/results/2026-12-07-rel16.md): nDCG@10 by half,
-- and the half-A queries each one moves
\pset footer off
CREATE TEMP TABLE bench_rr_rules (n int, rule text, tier text, mult text);
INSERT INTO bench_rr_rules VALUES
 (1, 'today (the scan''s order)', 'missing', '1'),
 (2, 'adjacent query words in the title: x(1 + 0.25 adj/pairs)', 'missing',
     '1 + 0.25 * CASE WHEN pairs > 0 THEN adj::float8 / pairs ELSE 0 END'),
 (3, 'adjacent query words in the title: x(1 + adj/pairs)', 'missing',
     '1 + CASE WHEN pairs > 0 THEN adj::float8 / pairs ELSE 0 END'),
 (4, 'a query word is the brand: x1.5', 'missing', 'CASE WHEN brand_q THEN 1.5 ELSE 1 END'),
 (5, 'a query word in the category''s name: x1.3', 'missing', 'CASE WHEN cat_q THEN 1.3 ELSE 1 END'),
 (6, 'a query word in the category''s name: x2', 'missing', 'CASE WHEN cat_q THEN 2 ELSE 1 END'),
 (7, 'every query word in the title: x1.5', 'missing', 'CASE WHEN nq_title = nq THEN 1.5 ELSE 1 END'),
 (8, 'query words in the description: x(1 + 0.1 desc_q/nq)', 'missing', '1 + 0.1 * desc_q::float8 / nq'),
 (9, 'a query word repeated in the title: x(1 + 0.1 a repeat)', 'missing',
     '1 + 0.1 * greatest(tf_title - nq_title, 0)'),
 (10, 'the first query word early in the title: x(1 + 0.25/position)', 'missing',
      '1 + 0.25 / coalesce(firstpos, 100)'),
 (11, 'a title with no head noun: x0.8', 'missing', 'CASE WHEN head IS NULL THEN 0.8 ELSE 1 END'),
 (12, 'head noun another word of the query (an accessory named for it): x0.8', 'missing',
      'CASE WHEN head <> qtype AND head IN (SELECT a.stem FROM bench_rr_qtok a
                                            WHERE a.query_id = bench_rr_feat.query_id) THEN 0.8 ELSE 1 END'),
 (13, 'partial type factor 1.25 -> 1.5 (rows of the type missing a word)', 'missing',
      'CASE WHEN missing > 0 AND head = qtype AND qtype_in_title THEN 1.5 / 1.25 ELSE 1 END'),
 (14, 'title length: x(1 + 0.02 ln(1 + words))', 'missing', '1 + 0.02 * ln(1 + tlen)'),
 (15, 'a row missing only the type word its head noun names ranks with the rows having every word',
      'CASE WHEN missing = 1 AND head = qtype AND NOT qtype_in_title THEN 0 ELSE missing END', '1'),
 (16, 'query words only in the description rank with rows missing a word',
      'missing + CASE WHEN nq_title = 0 THEN 1 ELSE 0 END', '1');
CREATE TEMP TABLE bench_rr_out (n int, rule text, half_a numeric, half_b numeric, all_q numeric, moved_in_a text);
DO $$
DECLARE
    r record;
    e record;
BEGIN
    FOR r IN SELECT * FROM bench_rr_rules ORDER BY n LOOP
        SELECT * INTO e FROM bench_rr_eval(r.tier, r.mult);
        INSERT INTO bench_rr_out
        SELECT r.n, r.rule, e.half_a, e.half_b, e.all_q,
               (SELECT string_agg(t.query || ' ' || round(t.ndcg::numeric, 2) || ' -> ' || round(n.ndcg::numeric, 2),
                                  ', ' ORDER BY t.query)
                  FROM bench_rr_today t JOIN bench_rr_nd n USING (query_id)
                 WHERE abs(t.ndcg - n.ndcg) > 0.001 AND hashtext(t.query) & 1 = 0);
    END LOOP;
END $$;
SELECT rule, half_a, half_b, all_q, moved_in_a FROM bench_rr_out ORDER BY n;
