-- bench/relevance_prior_halves.sql (issue 13, rel17): does a behaviour
-- prior learned from half A's queries lift half B's, queries the log
-- never saw?  Run on a cluster kept by the relevance workload:
--
--   SHARED_DATA=/work/shared/data BENCH_KEEP=1 BENCH_KEEP_TABLES=1 \
--     BENCH_SCALE=1000 BENCH_ONLY=search_relevance make bench
--   psql -d bench -f bench/relevance_prior_halves.sql
--
-- The interaction log is simulated from half A's judgments only (half A:
-- hashtext(query) & 1 = 0, docs/search.md "Relevance: how it is
-- measured"), with the click model of the workload's replay:
--   - each half-A query gets 4 + floor(60 / sqrt(query_id)) sessions, each
--     by one of 400 customers (random(), setseed(0.13));
--   - a session's shopper sees the query's first 40 results as the bench's
--     shop_search ranks them (bench_shop_query: shop.search's query, intent
--     on, no prior), examines rank r with probability 1 / log2(r + 1),
--     clicks (a view, weight 1) an examined product with probability
--     0.7 / 0.4 / 0.1 / 0.05 for grade 3 / 2 / 1 / 0 or unjudged, and buys
--     (an order, weight 4) a clicked one with 0.3 / 0.15 / 0.02 / 0.01;
--   - as shop.refresh_search_prior counts it: one vote per query, product
--     and customer (the strongest), a product counts with 2 or more
--     customers; no decay (the log is one day).
-- What is learned and carried to other queries (nothing is keyed by a
-- half-B query's text, which the log never has):
--   type -> category: per query type (the stem of the query's last word,
--     what the intent reads as the type asked for, bench_chorus_type),
--     the evidence of the type's half-A queries summed per category of the
--     products chosen (Wc), over all their evidence (Wt); a query of that
--     type gets prior_categories [[category, Wc / (Wt + 8)]] (the index's
--     1 + 0.5 w), for categories with 2 or more customers; "x3": the
--     categories with Wc / (Wt + 8) >= 0.25 as intent_categories instead
--     (3 times, the intent's factor: how far a stronger boost goes);
--   word -> category: the same per word stem of the half-A queries, a
--     query getting the categories of each of its words (the largest w);
--   type -> head: per query type, the head nouns of the chosen products
--     (shop.search_head of the title) that are not the type itself, with
--     3 or more products and 5 or more customers and half the type's
--     weight (the rule of the behaviour vocabulary, shop.search_vocab's
--     second source), added as an expansion of the type word as
--     shop._search_vocab does;
--   a ceiling with no log ("A's judgments"): every product judged 2 or 3
--     for a half-A query counts once, seen or not; type -> category as
--     intent_categories (x3) for categories of 25% or more of them, word ->
--     category as prior_categories with the category's share.
-- Prints nDCG@10 per half (A is in-sample, B held out) and per query type
-- (the 20 most frequent) for the bench's shop_search with and without
-- each, and how many half-B queries each reaches.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP TABLE IF EXISTS ph_shown, ph_session, ph_action, ph_vote, ph_w, ph_key, ph_cat, ph_cat_judged, ph_type_head, ph_run, ph_nd;

CREATE TABLE ph_shown AS
SELECT q.query_id, s.ord AS rank, c.product_id, c.category_id, shop.search_head(c.title) AS head,
       coalesce(j.grade, -1) AS grade
  FROM bench_chorus_q q
 CROSS JOIN LATERAL shop.search_scan('bench_chorus_ss', bench_shop_query(q.query), 40)
       WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
  JOIN bench_chorus c ON c.ctid = s.ctid
  LEFT JOIN bench_chorus_qrels j ON j.query_id = q.query_id AND j.product_id = c.product_id
 WHERE hashtext(q.query) & 1 = 0;

SELECT setseed(0.13);
CREATE TABLE ph_session AS
SELECT row_number() OVER (ORDER BY q.query_id, g) AS session_id, q.query_id,
       1 + floor(random() * 400)::bigint AS customer_id
  FROM bench_chorus_q q CROSS JOIN LATERAL generate_series(1, 4 + floor(60 / sqrt(q.query_id))::int) g
 WHERE hashtext(q.query) & 1 = 0
 ORDER BY q.query_id, g;

-- the draws in session and rank order, whatever the join's plan
CREATE TABLE ph_action AS
SELECT x.session_id, x.query_id, x.customer_id, x.product_id, x.category_id, x.head,
       CASE WHEN random() < CASE x.grade WHEN 3 THEN 0.3 WHEN 2 THEN 0.15 WHEN 1 THEN 0.02 ELSE 0.01 END
            THEN 4 ELSE 1 END AS w
  FROM (SELECT s.session_id, s.query_id, s.customer_id, sh.product_id, sh.category_id, sh.head, sh.rank, sh.grade
          FROM ph_session s JOIN ph_shown sh USING (query_id)
         ORDER BY s.session_id, sh.rank) x
 WHERE random() < 1 / log(2, x.rank + 1)
   AND random() < CASE x.grade WHEN 3 THEN 0.7 WHEN 2 THEN 0.4 WHEN 1 THEN 0.1 ELSE 0.05 END;

-- one vote per customer, query and product (the strongest); the prior
-- per (query, product) counts with 2 or more customers
CREATE TABLE ph_vote AS
SELECT query_id, product_id, customer_id, min(category_id) AS category_id, min(head) AS head, max(w) AS w
  FROM ph_action GROUP BY 1, 2, 3;
CREATE TABLE ph_w AS
SELECT v.* FROM ph_vote v
 WHERE (SELECT count(*) FROM ph_vote o WHERE o.query_id = v.query_id AND o.product_id = v.product_id) >= 2;

-- keyed by the query type, or by each word stem of the query
CREATE TABLE ph_key AS
SELECT 'type'::text AS kind, ty.qtype AS key, ty.query_id FROM bench_chorus_type ty
UNION
SELECT 'word', t.stem, q.query_id FROM bench_chorus_q q CROSS JOIN LATERAL shop.search_tokens(q.query) t;

CREATE TABLE ph_cat AS
WITH k AS (SELECT pk.kind, pk.key, w.* FROM ph_w w JOIN ph_key pk USING (query_id)),
tot AS (SELECT kind, key, sum(w) AS wt FROM k GROUP BY 1, 2)
SELECT k.kind, k.key, k.category_id, sum(k.w)::float8 / (t.wt + 8) AS f
  FROM k JOIN tot t USING (kind, key)
 WHERE k.category_id IS NOT NULL
 GROUP BY k.kind, k.key, k.category_id, t.wt
HAVING count(DISTINCT k.customer_id) >= 2;

CREATE TABLE ph_type_head AS
WITH k AS (SELECT pk.key, w.* FROM ph_w w JOIN ph_key pk USING (query_id) WHERE pk.kind = 'type'),
tot AS (SELECT key, sum(w) AS wt FROM k GROUP BY 1)
SELECT k.key, k.head, sum(k.w) AS w
  FROM k JOIN tot t USING (key)
 WHERE k.head IS NOT NULL AND k.head <> k.key
 GROUP BY k.key, k.head, t.wt
HAVING count(DISTINCT k.product_id) >= 3 AND count(DISTINCT k.customer_id) >= 5 AND sum(k.w) >= 0.5 * t.wt;

-- a ceiling for the category route, with no log: every product judged 2
-- or 3 for a half-A query counts once for the query's type and word
-- stems, whether or not any shopper would have seen it
CREATE TABLE ph_cat_judged AS
WITH k AS (SELECT pk.kind, pk.key, c.category_id, j.product_id
             FROM bench_chorus_qrels j JOIN bench_chorus_q q USING (query_id) JOIN bench_chorus c USING (product_id)
             JOIN ph_key pk ON pk.query_id = j.query_id
            WHERE j.grade >= 2 AND hashtext(q.query) & 1 = 0),
tot AS (SELECT kind, key, count(*) AS n FROM k GROUP BY 1, 2)
SELECT k.kind, k.key, k.category_id, count(*)::float8 / t.n AS share
  FROM k JOIN tot t USING (kind, key)
 WHERE k.category_id IS NOT NULL
 GROUP BY k.kind, k.key, k.category_id, t.n;

CREATE TABLE ph_run (arm text, query_id int, rank int, product_id bigint);
CREATE FUNCTION pg_temp.ph_query(query text, qtype text, arm text) RETURNS jsonb LANGUAGE sql AS $f$
    SELECT CASE arm
        WHEN 'type -> category' THEN bench_shop_query(query) || coalesce((
            SELECT jsonb_build_object('prior_categories', jsonb_agg(jsonb_build_array(category_id, round(f::numeric, 4))
                                                                    ORDER BY f DESC, category_id))
              FROM ph_cat WHERE kind = 'type' AND key = qtype HAVING count(*) > 0), '{}')
        WHEN 'type -> category, x3' THEN bench_shop_query(query) || coalesce((
            SELECT jsonb_build_object('intent_categories', jsonb_agg(category_id ORDER BY category_id))
              FROM ph_cat WHERE kind = 'type' AND key = qtype AND f >= 0.25 HAVING count(*) > 0), '{}')
        WHEN 'type -> category, A''s judgments, x3' THEN bench_shop_query(query) || coalesce((
            SELECT jsonb_build_object('intent_categories', jsonb_agg(category_id ORDER BY category_id))
              FROM ph_cat_judged WHERE kind = 'type' AND key = qtype AND share >= 0.25 HAVING count(*) > 0), '{}')
        WHEN 'word -> category, A''s judgments' THEN bench_shop_query(query) || coalesce((
            SELECT jsonb_build_object('prior_categories', jsonb_agg(jsonb_build_array(category_id, round(share::numeric, 4))
                                                                    ORDER BY share DESC, category_id))
              FROM (SELECT category_id, max(share) AS share FROM ph_cat_judged
                     WHERE kind = 'word' AND key IN (SELECT t.stem FROM shop.search_tokens(query) t) GROUP BY 1) x
            HAVING count(*) > 0), '{}')
        WHEN 'word -> category' THEN bench_shop_query(query) || coalesce((
            SELECT jsonb_build_object('prior_categories', jsonb_agg(jsonb_build_array(category_id, round(f::numeric, 4))
                                                                    ORDER BY f DESC, category_id))
              FROM (SELECT category_id, max(f) AS f FROM ph_cat
                     WHERE kind = 'word' AND key IN (SELECT t.stem FROM shop.search_tokens(query) t) GROUP BY 1) x
            HAVING count(*) > 0), '{}')
        WHEN 'type -> head (vocabulary)' THEN bench_shop_query(query) || coalesce((
            SELECT jsonb_build_object('expansions', coalesce(bench_shop_query(query) -> 'expansions', '[]')
                                      || jsonb_build_array(jsonb_build_array(
                                             (SELECT t.word FROM shop.search_tokens(query) t WHERE t.stem = qtype
                                               ORDER BY t.pos DESC LIMIT 1)) || jsonb_agg(head ORDER BY w DESC, head)))
              FROM ph_type_head WHERE key = qtype HAVING count(*) > 0), '{}')
        ELSE bench_shop_query(query) END
$f$;
INSERT INTO ph_run
SELECT a.arm, q.query_id, s.ord, c.product_id
  FROM bench_chorus_q q JOIN bench_chorus_type ty USING (query_id)
 CROSS JOIN (VALUES ('shop_search'), ('type -> category'), ('type -> category, x3'), ('word -> category'),
                    ('type -> category, A''s judgments, x3'), ('word -> category, A''s judgments'), ('type -> head (vocabulary)')) a(arm)
 CROSS JOIN LATERAL shop.search_scan('bench_chorus_ss', pg_temp.ph_query(q.query, ty.qtype, a.arm), 10)
       WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
  JOIN bench_chorus c ON c.ctid = s.ctid;

CREATE TABLE ph_nd AS
SELECT a.arm, q.query_id, hashtext(q.query) & 1 AS half,
       CASE WHEN i.idcg > 0 THEN coalesce((
           SELECT sum((2 ^ coalesce(j.grade, 0) - 1) / log(2, r.rank + 1))
             FROM ph_run r LEFT JOIN bench_chorus_qrels j ON j.query_id = r.query_id AND j.product_id = r.product_id
            WHERE r.arm = a.arm AND r.query_id = q.query_id), 0) / i.idcg ELSE 0 END AS ndcg,
       (SELECT array_agg(product_id ORDER BY rank) FROM ph_run r WHERE r.arm = a.arm AND r.query_id = q.query_id) AS top
  FROM (SELECT DISTINCT arm FROM ph_run) a CROSS JOIN bench_chorus_q q LEFT JOIN bench_chorus_ideal i USING (query_id);

\echo the log (half A only)
SELECT (SELECT count(*) FROM ph_session) AS sessions, (SELECT count(DISTINCT customer_id) FROM ph_session) AS customers,
       (SELECT count(*) FROM ph_action) AS views, (SELECT count(*) FROM ph_action WHERE w = 4) AS orders,
       (SELECT count(DISTINCT (query_id, product_id)) FROM ph_w) AS query_products,
       (SELECT count(*) FROM ph_cat WHERE kind = 'type') AS type_categories,
       (SELECT count(*) FROM ph_cat WHERE kind = 'word') AS word_categories, (SELECT count(*) FROM ph_type_head) AS type_heads;
SELECT key, head, w FROM ph_type_head ORDER BY key, w DESC;

\echo nDCG@10 by half, A in the log and B held out, and half-B queries whose top 10 changed
SELECT arm, round(avg(ndcg) FILTER (WHERE half = 0)::numeric, 4) AS half_a,
       round(avg(ndcg) FILTER (WHERE half = 1)::numeric, 4) AS half_b, round(avg(ndcg)::numeric, 4) AS "all",
       (SELECT count(*) FROM ph_nd b JOIN ph_nd o ON o.query_id = b.query_id AND o.arm = 'shop_search'
         WHERE b.arm = n.arm AND b.half = 1 AND b.top IS DISTINCT FROM o.top) AS b_changed,
       (SELECT count(*) FROM ph_nd b JOIN ph_nd o ON o.query_id = b.query_id AND o.arm = 'shop_search'
         WHERE b.arm = n.arm AND b.half = 1 AND b.ndcg > o.ndcg + 0.0001) AS b_better,
       (SELECT count(*) FROM ph_nd b JOIN ph_nd o ON o.query_id = b.query_id AND o.arm = 'shop_search'
         WHERE b.arm = n.arm AND b.half = 1 AND b.ndcg < o.ndcg - 0.0001) AS b_worse
  FROM ph_nd n GROUP BY arm ORDER BY arm;

\echo half-B queries that moved
SELECT n.arm, q.query, round(o.ndcg::numeric, 4) AS before, round(n.ndcg::numeric, 4) AS after
  FROM ph_nd n JOIN ph_nd o ON o.query_id = n.query_id AND o.arm = 'shop_search' JOIN bench_chorus_q q ON q.query_id = n.query_id
 WHERE n.arm <> 'shop_search' AND n.half = 1 AND abs(n.ndcg - o.ndcg) > 0.0001
 ORDER BY n.arm, q.query;

\echo nDCG@10 per query type (the 20 most frequent): shop_search, and each arm where it differs (all queries; B: half B)
WITH t AS (SELECT qtype, count(*) AS n FROM bench_chorus_type GROUP BY qtype ORDER BY count(*) DESC, qtype LIMIT 20),
v AS (SELECT t.qtype, t.n, nd.arm, avg(nd.ndcg) AS a, avg(nd.ndcg) FILTER (WHERE nd.half = 1) AS b
        FROM t JOIN bench_chorus_type ty USING (qtype) JOIN ph_nd nd USING (query_id)
       GROUP BY t.qtype, t.n, nd.arm)
SELECT v.qtype, v.n, round(o.a::numeric, 4) AS shop, round(o.b::numeric, 4) AS shop_b,
       coalesce(string_agg(v.arm || ' ' || to_char(v.a - o.a, 'SG0.0000') || ' (B ' || coalesce(to_char(v.b - o.b, 'SG0.0000'), '-') || ')',
                           '; ' ORDER BY v.arm) FILTER (WHERE abs(v.a - o.a) > 0.00005), '') AS moved
  FROM v JOIN v o ON o.qtype = v.qtype AND o.arm = 'shop_search'
 WHERE v.arm <> 'shop_search' OR true
 GROUP BY v.qtype, v.n, o.a, o.b ORDER BY v.n DESC, v.qtype;

\echo the worst type of the 20 for each arm against shop_search, all queries and half B
WITH t AS (SELECT qtype, count(*) AS n FROM bench_chorus_type GROUP BY qtype ORDER BY count(*) DESC, qtype LIMIT 20),
v AS (SELECT t.qtype, nd.arm, avg(nd.ndcg) AS a, avg(nd.ndcg) FILTER (WHERE nd.half = 1) AS b
        FROM t JOIN bench_chorus_type ty USING (qtype) JOIN ph_nd nd USING (query_id)
       GROUP BY t.qtype, nd.arm)
SELECT v.arm, round(min(v.a - o.a)::numeric, 4) AS worst_all, round(min(v.b - o.b)::numeric, 4) AS worst_b,
       count(*) FILTER (WHERE v.a - o.a < -0.02) AS types_worse_by_002
  FROM v JOIN v o ON o.qtype = v.qtype AND o.arm = 'shop_search'
 WHERE v.arm <> 'shop_search' GROUP BY v.arm ORDER BY v.arm;
