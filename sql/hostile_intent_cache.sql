-- hostile_intent_cache: the backend's cache of search intents
-- (shop._search_intent_cache_get/_put, src/intentcache.c) is shared by
-- every client of a pooled server connection.  It was executable by
-- shop_storefront: a storefront could plant, for a query, any query
-- object as its answer, and every later shop.search of that query on the
-- same connection (another client's, a superuser's) searched for what it
-- planted, for shop.search_intent_cache seconds.  shop.search runs as the
-- extension's owner and does not need the storefront's grant.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;

SELECT shop.category_add('Laptops') AS cat \gset
SELECT count(shop.product_upsert(sku, title, price, brand => brand, category_id => :cat)) AS products
  FROM (VALUES ('LP-1', 'ThinkPad X1 Carbon', 149900, 'Lenovo'), ('LP-2', 'ThinkPad T14', 99900, 'Lenovo'),
               ('SK-1', 'Kitchen Sink Deluxe', 19900, 'Acme')) v(sku, title, price, brand);
VACUUM shop.product;
-- the query object shop.search builds for 'thinkpad' (its intent's key)
SELECT shop._search_query('thinkpad', '{}', NULL) AS q \gset

SET ROLE regress_hostile_front;
SELECT title FROM shop.search('thinkpad') ORDER BY title;
-- the storefront reaches neither side of the cache
SELECT pg_temp.err(format('SELECT shop._search_intent_cache_put(%L, %L)',
                          :'q', jsonb_set(:'q'::jsonb, '{q}', '"kitchen sink"'))) AS plant;
SELECT pg_temp.err(format('SELECT shop._search_intent_cache_get(%L)', :'q')) AS peek;
RESET ROLE;
-- the same connection's next client searches what it asked for
SELECT title FROM shop.search('thinkpad') ORDER BY title;
SET ROLE regress_hostile_front;
SELECT title FROM shop.search('thinkpad') ORDER BY title;
RESET ROLE;
-- nobody but the owner and shop_admin executes them
SELECT p.oid::regprocedure AS fn, has_function_privilege('regress_hostile_front', p.oid, 'EXECUTE') AS storefront,
       has_function_privilege('shop_admin', p.oid, 'EXECUTE') AS admin
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace AND p.proname ~ '^_search_intent_cache_'
 ORDER BY 1::text;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
