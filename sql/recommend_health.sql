-- recommend_health: recommendation health for shop.metrics() and the
-- exporter (docs/recommendations.md, "Health"): shop.reco_evaluate's
-- HR@10 on recent orders (each predicted from the customer's earlier
-- purchases), the share of those lists that fell back to popularity,
-- catalog coverage, and the refresh lag, as shop_admin and shop_monitor
\i sql/include/prelude.sql

-- the background sweeper folds the log too; only this script's calls may
SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_health_office, regress_health_monitor, regress_health_front;
RESET client_min_messages;
CREATE ROLE regress_health_office LOGIN IN ROLE shop_admin;
CREATE ROLE regress_health_monitor LOGIN IN ROLE shop_monitor;
CREATE ROLE regress_health_front LOGIN IN ROLE shop_storefront;

INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'H-' || g, 'Health product ' || g, 100 FROM generate_series(1, 30) g;
\i sql/include/buy.sql

-- nothing evaluated yet: NULLs, and the log waits
SELECT * FROM shop.monitor_recommendations();

-- guests: 1 and 2 bought together three times (the only co-purchase
-- lists), 11..22 bought alone five times each (the best-sellers, so
-- trending's first ten are 11..20)
SELECT count(pg_temp.buy('{1,2}', NULL, at => now() - interval '4 days', price => 100)) FROM generate_series(1, 3);
SELECT count(pg_temp.buy(ARRAY[p], NULL, at => now() - interval '4 days', price => 100)) FROM generate_series(11, 22) p, generate_series(1, 5);
-- customers, evaluated:
--   903 bought 1, then 2: 1's list holds 2, a hit from a personal list
--   904 bought 5, then 6: 5 has no list, trending does not hold 6
--   905 bought 7, with no history
--   (their first orders are evaluated too: no history, trending, misses)
--   906 bought 8 ten days ago: outside the 7 days
SELECT pg_temp.buy('{1}', 903, at => now() - interval '3 days', price => 100) IS NOT NULL, pg_temp.buy('{2}', 903, at => now() - interval '2 days', price => 100) IS NOT NULL;
SELECT pg_temp.buy('{5}', 904, at => now() - interval '3 days', price => 100) IS NOT NULL, pg_temp.buy('{6}', 904, at => now() - interval '2 days', price => 100) IS NOT NULL;
SELECT pg_temp.buy('{7}', 905, at => now() - interval '2 days', price => 100) IS NOT NULL, pg_temp.buy('{8}', 906, at => now() - interval '10 days', price => 100) IS NOT NULL;
SELECT pending_log_rows, refresh_lag_seconds > 0 AS lagging FROM shop.monitor_recommendations();
SELECT shop.refresh_recommendations() ->> 'orders_applied' AS applied;
SELECT product_id FROM shop.trending();
SELECT product_id, other_id FROM shop.copurchase ORDER BY 1, 2;

-- 5 orders: 1 hit (903's second), 4 lists without a personal candidate;
-- 2 of 30 products have a list
SET ROLE regress_health_office;
SELECT shop.reco_evaluate();
SELECT (shop.metrics() -> 'recommendations') - 'last_refresh_timestamp_seconds'::text - 'last_evaluation_timestamp_seconds'::text AS health;
SELECT pg_temp.err('SELECT shop.reco_evaluate(0)') AS bad_days;
SELECT pg_temp.err('SELECT shop.reco_evaluate(7, 0)') AS bad_max;
-- the latest order only: 905's, no history
SELECT shop.reco_evaluate(max_orders => 1);
SELECT shop.reco_evaluate(days => 30) ->> 'orders' AS orders_30_days;
RESET ROLE;

-- the exporter's role reads the numbers, and nothing else
SET ROLE regress_health_monitor;
SELECT round(coverage::numeric, 4) AS coverage, fallback_share, hr_at_10, evaluated_orders,
       last_evaluation_timestamp_seconds > 0 AS evaluated, last_refresh_timestamp_seconds > 0 AS refreshed,
       pending_log_rows, refresh_lag_seconds
  FROM shop.monitor_recommendations();
SELECT pg_temp.err('SELECT shop.reco_evaluate()') AS evaluate;
SELECT pg_temp.err('SELECT count(*) FROM shop.reco_health') AS read_table;
RESET ROLE;
SET ROLE regress_health_front;
SELECT pg_temp.err('SELECT shop.reco_evaluate()') AS evaluate;
SELECT pg_temp.err('SELECT * FROM shop.monitor_recommendations()') AS monitor;
RESET ROLE;

-- the list evaluated is the blend recommend shows, not the 1.1 list: 908
-- bought 25, then 26, which 907 bought with 25 (once: no co-purchase
-- list); with popularity off, the blend proposes 26 from the customer
-- like 908 (a hit), where the 1.1 list has only trending (a miss)
SELECT pg_temp.buy('{25,26}', 907, at => now() - interval '5 days', price => 100) IS NOT NULL, pg_temp.buy('{25}', 908, at => now() - interval '4 days', price => 100) IS NOT NULL,
       pg_temp.buy('{26}', 908, at => now() - interval '20 hours', price => 100) IS NOT NULL;
SELECT shop.refresh_recommendations() ->> 'customers_profiled' AS profiled;
SET shop.reco_weight_popular = 0;
SET ROLE regress_health_office;
SELECT shop.reco_evaluate(days => 1, max_orders => 1);
RESET ROLE;
RESET shop.reco_weight_popular;

-- the backlog of customers like you: three customers ordered, a refresh
-- takes one (cap 1); the exporter sees two queued and how long the oldest
-- waits, and a refresh without the cap drains them
SELECT count(pg_temp.buy('{27}', c, at => now() - interval '1 hour', price => 100)) AS orders FROM generate_series(911, 913) c;
SET shop.reco_like_refresh_cap = 1;
SELECT shop.refresh_recommendations() ->> 'customers_queued' AS queued;
RESET shop.reco_like_refresh_cap;
UPDATE shop.customer_like_queue SET queued_at = queued_at - interval '10 minutes';
SET ROLE regress_health_monitor;
SELECT customers_queued, customers_queue_age_seconds >= 600 AS waited_10_minutes
  FROM shop.monitor_recommendations();
RESET ROLE;
SELECT shop.refresh_recommendations() ->> 'customers_queued' AS queued;
SELECT (shop.metrics() -> 'recommendations') -> 'customers_queued' AS queued,
       (shop.metrics() -> 'recommendations') -> 'customers_queue_age_seconds' AS age;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP ROLE regress_health_office, regress_health_monitor, regress_health_front;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
