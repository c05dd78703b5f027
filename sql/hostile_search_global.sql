-- hostile_search_global: shop.search_global is the channel through which
-- the router's steps hand a shard the cluster's search statistics for one
-- call; every search of the backend merges it into its index query (on
-- one node too).  It was a user setting: a storefront that ran
-- SET shop.search_global = '{"q": "mug"}' for its session made every
-- later search of that backend (the next clients of a pooled connection,
-- a superuser's too) search for mugs, whatever they typed, and could add
-- filters ('{"price_max": 905}') to them.  Now only a superuser sets it;
-- the router's steps, which set it for one call after checking it
-- (shop._search_global_check), run as the extension's owner.  And the
-- router's autocomplete step checks its statistics too (hostile3 covered
-- the search and facet steps): a query key there replaced the prefix.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SELECT shop.category_add('Mugs') AS cat \gset
SELECT count(shop.product_upsert('MUG-' || n, 'Mug ' || n, 900 + n, brand => 'Acme', category_id => :cat)) AS mugs
  FROM generate_series(1, 6) n;
SELECT shop.product_upsert('LP-1', 'ThinkPad X1 Carbon', 149900, brand => 'Lenovo', category_id => :cat) AS lp \gset

SET ROLE regress_hostile_front;
-- the storefront cannot plant it for its session, nor with set_config
SELECT pg_temp.err($$SET shop.search_global = '{"q": "mug"}'$$) AS set_session;
SELECT pg_temp.err($$SELECT set_config('shop.search_global', '{"q": "mug"}', false)$$) AS set_config;
-- so what the next client searches is its own query
SELECT title FROM shop.search('thinkpad') ORDER BY product_id;
SELECT count(*) AS mugs_found FROM shop.search('mug');
-- the router's steps still take the cluster's sums, for that call only
SELECT count(*) AS routed FROM shop._search_routed('mug', '{}', 'relevance', 10, 0, NULL,
                                                   '{"no_typos": ["mug"], "two_typos": []}');
SELECT shop._search_facets_routed('mug', '{}', '{"no_typos": ["mug"]}') -> 'total' AS facets_total;
SELECT shop._search_facets_routed('mug', '{}', '{"no_typos": ["mug"]}', 0) -> 'total' AS facets_total_attrs;
SELECT count(*) AS suggestions FROM shop._autocomplete_routed('thin', 5, '{"no_typos": [], "two_typos": []}');
SELECT current_setting('shop.search_global') = '' AS left_empty;
-- the autocomplete step: anything but the router's sums is 22023
SELECT pg_temp.err($$SELECT count(*) FROM shop._autocomplete_routed('thin', 5, '{"q": "mug"}')$$) AS a_query;
SELECT pg_temp.err($$SELECT count(*) FROM shop._autocomplete_routed('thin', 5, '{"price_max": 1}')$$) AS a_filter;
SELECT pg_temp.err($$SELECT count(*) FROM shop._autocomplete_routed('thin', 5, '[]')$$) AS an_array;
RESET ROLE;
-- a superuser may still set it (test/cluster compares a shard's intent so)
SET shop.search_global = '{"no_typos": ["mug"]}';
SELECT count(*) AS with_sums FROM shop.search('mug');
RESET shop.search_global;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
