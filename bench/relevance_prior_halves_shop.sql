-- bench/relevance_prior_halves_shop.sql (issue 13, rel17): shop's own
-- behaviour prior (shop.refresh_search_prior: query-to-product and
-- query-to-category, then shop.refresh_search_vocab: the vocabulary learned
-- from behaviour) trained on a log of half A's queries only, and
-- shop.search run for every judged query before any behaviour, and after
-- with shop.search_prior off and on; half B's queries are never in the log.  Run on the replay
-- database the relevance workload keeps (BENCH_KEEP_TABLES=1):
--
--   psql -d bench_prior -f bench/relevance_prior_halves_shop.sql
--
-- The log is the workload's replay log (bench/workloads/search_relevance.sh:
-- the same sessions, clicks and purchases, setseed(0.13)), all 30 days of
-- it, keeping only the sessions of half-A queries (hashtext(query) & 1 = 0).
-- It replaces whatever the replay left in shop.search_log, shop.view_event,
-- shop."order" and the prior's tables.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
TRUNCATE shop.search_prior_evidence, shop.search_prior, shop.search_prior_category, shop.search_prior_state;
-- the replay's orders and the gaming check's (their customers' searches go too)
DELETE FROM shop.order_line;
DELETE FROM shop."order";
DELETE FROM shop.view_event;
DELETE FROM shop.search_log;
-- product popularity (a boost of up to 15%, docs/search.md) comes from
-- orders and views too, through shop.rebuild_recommendations() and the
-- sweeper's refresh: recomputed here from no history (and every batch
-- written at once, shop.popularity_sync; VACUUM, as the index's BM25
-- statistics count the row versions it replaced until then)
SELECT shop.rebuild_recommendations() -> 'popularity_updated' AS popularity_updated;
CALL shop.popularity_sync();
VACUUM shop.product;
-- before any behaviour: the vocabulary from the catalog alone, no prior
SELECT shop.refresh_search_vocab() AS vocab_pairs_catalog;
SELECT count(*) AS products_with_popularity FROM shop.product WHERE popularity > 0;
DROP TABLE IF EXISTS halves_run, halves_nd;
CREATE TABLE halves_run (arm text, query_id int, rank int, product_id bigint);
SET shop.search_prior = off;
INSERT INTO halves_run
SELECT 'no behaviour', q.query_id, s.ord, s.product_id
  FROM q CROSS JOIN LATERAL shop.search(q.query, '{}', 'relevance', 10)
       WITH ORDINALITY AS s(product_id, score, title, brand, price_cents, rating_avg, category_id, in_stock,
                            image, typos, missing_words, ord);
INSERT INTO shop.search_log (logged_at, query, query_folded, sort, results, duration_ms, customer_id)
SELECT at, query, shop._search_fold(query), 'relevance', 40, 1, customer_id
  FROM session WHERE hashtext(query) & 1 = 0;
INSERT INTO shop.view_event (customer_id, viewed_at, product_id)
SELECT DISTINCT a.customer_id, a.at + interval '1 minute' + a.rank * interval '1 second', a.product_id
  FROM action a JOIN session s USING (session_id) WHERE hashtext(s.query) & 1 = 0;
CREATE TEMP TABLE bought AS
SELECT a.session_id, a.customer_id, a.at, array_agg(a.product_id ORDER BY a.rank) AS products
  FROM action a JOIN session s USING (session_id)
 WHERE a.buys AND hashtext(s.query) & 1 = 0 GROUP BY 1, 2, 3;
WITH o AS (
    INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents, created_at, idempotency_key)
    SELECT customer_id, 'delivered', 'USD', 0, 0, at + interval '10 minutes', 'replay-' || session_id FROM bought
    RETURNING order_id, idempotency_key)
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT o.order_id, x.n, x.p, 'CH' || x.p, 'replay', 0, 1
  FROM o JOIN bought b ON o.idempotency_key = 'replay-' || b.session_id
 CROSS JOIN LATERAL unnest(b.products) WITH ORDINALITY x(p, n);
\echo the prior, trained on half A
SELECT shop.refresh_search_prior() - 'from' - 'to' AS refresh;
SELECT shop.refresh_search_vocab() AS vocab_pairs;
SELECT term, expansion, source, products FROM shop.search_vocab ORDER BY source, term;

-- after: popularity from half A's orders and views (behaviour that does
-- reach every query), the vocabulary learned from behaviour, the prior
-- off and on
SELECT shop.rebuild_recommendations() -> 'popularity_updated' AS popularity_updated;
CALL shop.popularity_sync();
VACUUM shop.product;
SELECT count(*) AS products_with_popularity FROM shop.product WHERE popularity > 0;
SET shop.search_prior = off;
INSERT INTO halves_run
SELECT 'popularity and vocabulary, prior off', q.query_id, s.ord, s.product_id
  FROM q CROSS JOIN LATERAL shop.search(q.query, '{}', 'relevance', 10)
       WITH ORDINALITY AS s(product_id, score, title, brand, price_cents, rating_avg, category_id, in_stock,
                            image, typos, missing_words, ord);
SET shop.search_prior = on;
INSERT INTO halves_run
SELECT 'popularity and vocabulary, prior on', q.query_id, s.ord, s.product_id
  FROM q CROSS JOIN LATERAL shop.search(q.query, '{}', 'relevance', 10)
       WITH ORDINALITY AS s(product_id, score, title, brand, price_cents, rating_avg, category_id, in_stock,
                            image, typos, missing_words, ord);
CREATE TABLE halves_nd AS
WITH ideal AS (
    SELECT query_id, sum((2 ^ grade - 1) / log(2, rn + 1)) AS idcg
      FROM (SELECT query_id, grade, row_number() OVER (PARTITION BY query_id ORDER BY grade DESC) rn
              FROM qrels) x
     WHERE rn <= 10 GROUP BY query_id)
SELECT a.arm, q.query_id, hashtext(q.query) & 1 AS half,
       CASE WHEN i.idcg > 0 THEN coalesce((
           SELECT sum((2 ^ coalesce(j.grade, 0) - 1) / log(2, r.rank + 1))
             FROM halves_run r LEFT JOIN qrels j ON j.query_id = r.query_id AND j.product_id = r.product_id
            WHERE r.arm = a.arm AND r.query_id = q.query_id), 0) / i.idcg ELSE 0 END AS ndcg,
       (SELECT array_agg(product_id ORDER BY rank) FROM halves_run r WHERE r.arm = a.arm AND r.query_id = q.query_id) AS top
  FROM (SELECT DISTINCT arm FROM halves_run) a CROSS JOIN q LEFT JOIN ideal i USING (query_id);

\echo nDCG@10 of shop.search by half, A in the log and B held out; half-B top 10s unlike no behaviour
SELECT arm, round(avg(ndcg) FILTER (WHERE half = 0)::numeric, 4) AS half_a,
       round(avg(ndcg) FILTER (WHERE half = 1)::numeric, 4) AS half_b, round(avg(ndcg)::numeric, 4) AS "all",
       (SELECT count(*) FROM halves_nd b JOIN halves_nd o ON o.query_id = b.query_id AND o.arm = 'no behaviour'
         WHERE b.arm = n.arm AND b.half = 1 AND b.top IS DISTINCT FROM o.top) AS b_changed
  FROM halves_nd n GROUP BY arm ORDER BY arm;
\echo queries that moved by more than 0.0001 against no behaviour
SELECT CASE n.half WHEN 0 THEN 'A' ELSE 'B' END AS half, q.query, n.arm,
       round(o.ndcg::numeric, 4) AS no_behaviour, round(n.ndcg::numeric, 4) AS ndcg
  FROM halves_nd n JOIN halves_nd o ON o.query_id = n.query_id AND o.arm = 'no behaviour' JOIN q ON q.query_id = n.query_id
 WHERE n.arm <> 'no behaviour' AND abs(n.ndcg - o.ndcg) > 0.0001
 ORDER BY n.half, q.query, n.arm;
\echo per query type, the 20 most frequent: a type is the stem of the last word of the query that is not a function word
WITH ty AS (
    SELECT q.query_id,
           coalesce((SELECT t.stem FROM shop.search_tokens(q.query) t
                      WHERE t.word <> ALL (ARRAY['a', 'an', 'and', 'are', 'as', 'at', 'be', 'by', 'for', 'from', 'in',
                                                 'into', 'is', 'it', 'of', 'on', 'or', 'the', 'to', 'with', 'without'])
                      ORDER BY t.pos DESC LIMIT 1), '') AS qtype
      FROM q),
t AS (SELECT qtype, count(*) AS n FROM ty GROUP BY qtype ORDER BY count(*) DESC, qtype LIMIT 20)
SELECT t.qtype, t.n,
       round(avg(nd.ndcg) FILTER (WHERE nd.arm = 'no behaviour')::numeric, 4) AS no_behaviour,
       round(avg(nd.ndcg) FILTER (WHERE nd.arm = 'popularity and vocabulary, prior on')::numeric, 4) AS prior_on,
       to_char(avg(nd.ndcg) FILTER (WHERE nd.arm = 'popularity and vocabulary, prior on') - avg(nd.ndcg) FILTER (WHERE nd.arm = 'no behaviour'),
               'SG0.0000') AS delta,
       round(avg(nd.ndcg) FILTER (WHERE nd.arm = 'no behaviour' AND nd.half = 1)::numeric, 4) AS no_behaviour_b,
       round(avg(nd.ndcg) FILTER (WHERE nd.arm = 'popularity and vocabulary, prior off' AND nd.half = 1)::numeric, 4) AS pop_vocab_b,
       round(avg(nd.ndcg) FILTER (WHERE nd.arm = 'popularity and vocabulary, prior on' AND nd.half = 1)::numeric, 4) AS prior_on_b
  FROM t JOIN ty USING (qtype) JOIN halves_nd nd USING (query_id)
 GROUP BY t.qtype, t.n ORDER BY t.n DESC, t.qtype;
