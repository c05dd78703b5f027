-- experiment_explore: exploration in an experiment (variant parameter
-- "explore", off by default; docs/recommendations.md, "Exploration"): a
-- share of the slots goes to cold products, chosen by Thompson sampling on
-- their click-through, counted per product in shop.experiment_arm
\i sql/include/prelude.sql

SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
-- random() decides the slots and the draws: seeded, so that every run
-- gives the same lists
SELECT setseed(0.5);

-- products 1..8 bought together (co-purchase lists), 101..105 new and
-- never bought
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'E-' || g, 'Explore product ' || g, 100 FROM generate_series(1, 8) g;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'N-' || g, 'New product ' || g, 100 FROM generate_series(101, 105) g;
\i sql/include/buy.sql
SELECT count(pg_temp.buy(ARRAY[1, 2, 3, 4, 5, 6, 7, 8], price => 100)) FROM generate_series(1, 3);
SELECT shop.refresh_recommendations() ->> 'orders_applied' AS applied;

SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "explore": 0.9}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "explore": "some"}]')$$);
-- everyone explores with half of the slots (both variants)
SELECT shop.experiment_create('explore', '[{"name": "a", "share": 0.5, "explore": 0.5},
                                           {"name": "b", "share": 0.5, "explore": 0.5}]') IS NOT NULL AS created;
SELECT shop.experiment_create('plain', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS created;

-- Off by default: the plain experiment's lists hold co-purchases only.
SELECT count(*) FILTER (WHERE a.product_id > 100) AS new_products, count(*) AS listed
  FROM generate_series(1, 20) c, LATERAL shop.also_bought(1, 4, 'plain', c) a;
-- With explore 0.5, two of four slots (4 * 0.5, exactly) go to products
-- the co-purchase list does not hold, at its end with score 0; the five
-- new products are among them.
CREATE TEMP TABLE shown AS
SELECT c, n, a.product_id, a.score
  FROM generate_series(1, 200) c, LATERAL shop.also_bought(1, 4, 'explore', c) WITH ORDINALITY a(product_id, score, n);
SELECT count(*) FILTER (WHERE score = 0) AS explored_slots,
       bool_and(n >= 3) FILTER (WHERE score = 0) AS explored_last,
       bool_and(score > 0) FILTER (WHERE n <= 2) AS listed_first,
       count(DISTINCT product_id) FILTER (WHERE product_id > 100) AS new_products_shown,
       count(*) AS slots
  FROM shown;

-- The arms: moving the buffer counts the lists per product; views of a
-- listed product count as clicks.
SELECT shop._experiment_flush() > 0 AS moved;
SELECT a.product_id, a.shown = (SELECT count(*) FROM shown s WHERE s.product_id = a.product_id) AS shown_counted, a.clicks
  FROM shop.experiment_arm a JOIN shop.experiment e USING (experiment_id)
 WHERE e.name = 'explore' AND a.product_id > 100 ORDER BY 1;
-- the plain experiment's lists are moved too, but not counted per
-- product: no variant of it explores, and nothing else reads the counts
SELECT count(*) AS plain_lists_moved,
       (SELECT count(*) FROM shop.experiment_arm a WHERE a.experiment_id = e.experiment_id) AS plain_arms
  FROM shop.experiment e JOIN shop.experiment_impression i USING (experiment_id)
 WHERE e.name = 'plain' GROUP BY e.experiment_id;
SELECT min(c) AS viewer FROM shown WHERE product_id = 103 \gset
SELECT shop.view(:viewer, 103);
SELECT clicks FROM shop.experiment_arm a JOIN shop.experiment e USING (experiment_id)
 WHERE e.name = 'explore' AND a.product_id = 103;

-- Thompson sampling: a product that is clicked (103: 300 of 1000) wins
-- the exploration slots from those never clicked in 1000 lists.
UPDATE shop.experiment_arm a SET shown = 1000, clicks = CASE WHEN a.product_id = 103 THEN 300 ELSE 0 END
  FROM shop.experiment e WHERE e.experiment_id = a.experiment_id AND e.name = 'explore' AND a.product_id > 100;
SELECT count(*) FILTER (WHERE 103 = ANY (l.ids)) >= 95 AS clicked_product_wins, count(*) AS lists
  FROM (SELECT c, array_agg(a.product_id) AS ids
          FROM generate_series(1001, 1100) c, LATERAL shop.also_bought(1, 4, 'explore', c) a
         GROUP BY c) l;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
