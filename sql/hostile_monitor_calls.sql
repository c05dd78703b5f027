-- hostile_monitor_calls: shop_monitor (the metrics exporter's role,
-- docs/security.md: "may call the shop.monitor_* functions and nothing
-- else") has USAGE on schema shop, so it could call every function left
-- executable by PUBLIC, among them the storefront's SECURITY DEFINER
-- calls, which read and write as the extension's owner: it searched
-- (each search written to shop.search_log, whose queries autocomplete
-- then suggests to every shopper), recorded views, read stock,
-- recommendations and facets, and called the router's facet step
-- shop._search_facets_routed(text, jsonb, jsonb, int). sql/roles.sql
-- listed only what the monitor may call beyond PUBLIC. Now those calls
-- are the storefront's and the back office's only: 42501 for the monitor.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_monitor_prom, regress_monitor_front;
RESET client_min_messages;
CREATE ROLE regress_monitor_prom LOGIN IN ROLE shop_monitor;
CREATE ROLE regress_monitor_front LOGIN IN ROLE shop_storefront;
SELECT shop.category_add('Laptops') AS cat \gset
SELECT shop.product_upsert('MON-1', 'ThinkPad X1 Carbon laptop', 150000, category_id => :cat) AS p1 \gset
SELECT shop.stock_set(:p1, 5, 'main');

-- every SECURITY DEFINER function the monitor may execute: the monitor
-- functions only (the trigger function cannot be called)
SELECT p.oid::regprocedure AS monitor_definer_call
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace AND p.prosecdef
   AND has_function_privilege('regress_monitor_prom', p.oid, 'EXECUTE')
   AND p.proname !~ '^monitor_' AND p.prorettype <> 'trigger'::regtype
 ORDER BY 1;

-- the calls, as the monitor: 42501 each
SET ROLE regress_monitor_prom;
SELECT pg_temp.err($$SELECT count(*) FROM shop.search('laptop')$$) AS search;
SELECT pg_temp.err($$SELECT shop.search_facets('laptop', '{}')$$) AS facets;
SELECT pg_temp.err($$SELECT shop.search_facets('laptop', '{}', 5)$$) AS facets_bounded;
SELECT pg_temp.err($$SELECT shop.search_facets('laptop', '{}', NULL, 5)$$) AS facets_attributes;
SELECT pg_temp.err($$SELECT shop._search_facets_routed('laptop', '{}', NULL, 5)$$) AS facets_routed;
SELECT pg_temp.err($$SELECT count(*) FROM shop.autocomplete('lap')$$) AS autocomplete;
SELECT pg_temp.err($$SELECT shop.did_you_mean('laptpo')$$) AS did_you_mean;
SELECT pg_temp.err(format('SELECT shop.stock_available(%s)', :p1)) AS stock_available;
SELECT pg_temp.err(format('SELECT shop.view(1, %s)', :p1)) AS view;
SELECT pg_temp.err($$SELECT count(*) FROM shop.recently_viewed(1)$$) AS recently_viewed;
SELECT pg_temp.err($$SELECT count(*) FROM shop.trending()$$) AS trending;
SELECT pg_temp.err(format('SELECT count(*) FROM shop.similar_products(%s)', :p1)) AS similar_products;
SELECT pg_temp.err(format('SELECT count(*) FROM shop.also_bought(%s)', :p1)) AS also_bought;
SELECT pg_temp.err($$SELECT count(*) FROM shop.recommend(1)$$) AS recommend;
SELECT pg_temp.err($$SELECT * FROM shop.experiment_assign('x', NULL, 'visitor')$$) AS experiment_assign;
-- its own calls still answer
SELECT count(*) AS monitor_search_rows FROM shop.monitor_search();
RESET ROLE;

-- the storefront keeps every one of them
SET ROLE regress_monitor_front;
SELECT count(*) AS found FROM shop.search('laptop');
SELECT (shop.search_facets('laptop', '{}') ->> 'total')::int AS facet_total;
SELECT (shop.search_facets('laptop', '{}', 5) ->> 'total')::int AS facet_total_bounded;
SELECT (shop.search_facets('laptop', '{}', NULL, 5) ->> 'total')::int AS facet_total_attributes;
SELECT shop._search_facets_routed('laptop', '{}', NULL, 5) IS NOT NULL AS facets_routed;
SELECT count(*) AS suggestions FROM shop.autocomplete('lap');
SELECT shop.did_you_mean('laptop') AS did_you_mean;
SELECT shop.stock_available(:p1);
SELECT count(*) AS trending FROM shop.trending();
SELECT count(*) >= 0 AS similar FROM shop.similar_products(:p1);
SELECT count(*) AS also_bought FROM shop.also_bought(:p1);
SELECT pg_temp.err($$SELECT count(*) FROM shop.recommend(1)$$) AS recommend_without_session;
RESET ROLE;
-- and so does the back office (a check that it holds the grant itself)
SELECT p.oid::regprocedure AS admin_lacks
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace AND p.prosecdef
   AND has_function_privilege('regress_monitor_front', p.oid, 'EXECUTE')
   AND NOT has_function_privilege('shop_admin', p.oid, 'EXECUTE')
 ORDER BY 1;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_monitor_prom, regress_monitor_front;
