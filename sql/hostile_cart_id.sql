-- hostile_cart_id: shop._cart_create_with_id (the router's cart_create
-- step, which the storefront may call on a shard: docs/security.md,
-- "Through the router") took any id.  The cart's key is (cart_id,
-- customer_key), so an id already used by another customer's cart (or a
-- guest's) made a second cart with the same id: a storefront that knew
-- customer 502's cart id made it unusable (cart_add, cart_set_qty,
-- cart_remove, cart_clear: "query returned more than one row", P0003)
-- without any session; so did the merge step shop._cart_merge_in, whose
-- new cart id is not signed.  A taken id is now 23505, nothing written.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';

SELECT shop.product_upsert('MUG-1', 'Mug', 900) AS p1 \gset
SELECT shop.product_upsert('MUG-2', 'Big mug', 1200) AS p2 \gset
SELECT count(shop.stock_set(p, 100)) AS stocked FROM unnest(ARRAY[:p1, :p2]::bigint[]) p;
SELECT shop.cart_create(502) AS cart502 \gset
SELECT shop.cart_add(:'cart502', :p1);
SELECT shop.cart_create() AS guest \gset
SELECT shop.session_token(501, '1 hour') AS tok501 \gset

-- a storefront without a session, and the storefront of customer 501,
-- try the ids of 502's cart and of a guest's cart
SET ROLE regress_hostile_front;
SELECT pg_temp.err(format('SELECT shop._cart_create_with_id(%L, NULL)', :'cart502')) AS guest_over_502;
SELECT pg_temp.err(format('SELECT shop._cart_create_with_id(%L, NULL)', :'guest')) AS guest_over_guest;
SELECT shop.session_begin(:'tok501') = 501 AS began;
SELECT pg_temp.err(format('SELECT shop._cart_create_with_id(%L, 501)', :'cart502')) AS c501_over_502;
SELECT pg_temp.err(format('SELECT shop._cart_create_with_id(%L, 501)', :'guest')) AS c501_over_guest;
-- a new id is taken as given (once)
SELECT shop._cart_create_with_id('0190a3c4-6f1e-7b2a-9c3d-4e5f60718293', NULL) AS new_cart;
SELECT pg_temp.err($$SELECT shop._cart_create_with_id('0190a3c4-6f1e-7b2a-9c3d-4e5f60718293', NULL)$$) AS again;
-- the merge step's new cart id is the caller's too (its lines are
-- signed, the id is not): 501's guest cart merged into a new cart of 501
-- named like 502's cart
SELECT shop.cart_create() AS guest501 \gset
SELECT shop.cart_add(:'guest501', :p1);
SELECT lines, sig FROM shop._cart_merge_out(:'guest501', 501) \gset
SELECT pg_temp.err(format('SELECT shop._cart_merge_in(%L, 501, %L, %L, %L)', :'guest501', :'cart502', :'lines', :'sig')) AS merge_over_502;
SELECT shop.session_end();
RESET ROLE;
-- one cart per id
SELECT count(*) AS carts, count(DISTINCT cart_id) AS ids FROM shop.cart;
-- 502's cart works as before
SELECT shop.cart_add(:'cart502', :p2);
SELECT shop.cart_set_qty(:'cart502', :p1, 2);
SELECT shop.cart_remove(:'cart502', :p2);
SELECT (shop.cart_get(:'cart502') ->> 'item_count')::int AS items_502;
SELECT shop.cart_add(:'guest', :p2);
SELECT (shop.cart_get(:'guest') ->> 'item_count')::int AS items_guest;

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
