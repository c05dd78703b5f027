-- hostile_order_id: the checkout saga's first step shop._saga_begin (the
-- router's step on the customer's shard, which the storefront may call on
-- a shard itself through shop._saga_begin_signed: docs/security.md,
-- "Through the router") took any order id.  The key of shop."order" and
-- shop.saga is (order_id, customer_key), so a storefront that knew another
-- customer's order id checked its own cart out under that id: customer
-- 601's own order_get of its order then failed with 42501 (permission
-- denied for customer 501), and the back office's order_get and
-- order_transition by that id found the storefront's order instead.  An
-- order id that an order or a saga of the node already has is now 23505,
-- and nothing is written.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';

SELECT shop.product_upsert('MUG-1', 'Mug', 900) AS p1 \gset
SELECT count(shop.stock_set(:p1, 100)) AS stocked;
-- customer 601's order, paid
SELECT shop.cart_create(601) AS cart601 \gset
SELECT shop.cart_add(:'cart601', :p1, 2);
SELECT shop.checkout(:'cart601', 'tok_visa', 'k601') AS order601 \gset
SELECT shop.session_token(501, '1 hour') AS tok501 \gset
SELECT shop.session_token(601, '1 hour') AS tok601 \gset

-- the saga's steps as the router makes them, on this node: begin, hold,
-- place; the first error, or 'placed'
CREATE FUNCTION pg_temp.saga_checkout(o uuid, c uuid, k text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    b record;
    h record;
BEGIN
    SELECT * INTO b FROM shop._saga_begin_signed(o, c, 'tok_visa', k, '{"country": "US"}');
    SELECT array_agg(r.product_id ORDER BY r.product_id) AS pids, array_agg(r.sku ORDER BY r.product_id) AS skus,
           array_agg(r.title ORDER BY r.product_id) AS titles, array_agg(r.price_cents ORDER BY r.product_id) AS prices,
           array_agg(r.held_sig ORDER BY r.product_id) AS sigs
      INTO h
      FROM shop._saga_reserve_signed(o, b.saga_product_ids, b.saga_qtys, '30 minutes',
                                     b.saga_product_ids, b.saga_qtys, b.saga_sig) r;
    PERFORM shop._saga_place_signed(o, h.pids, h.skus, h.titles, h.prices, b.saga_qtys, 'tok_visa',
                                    '{"country": "US"}', h.sigs);
    RETURN 'placed';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;

-- the storefront of customer 501 checks its cart out under 601's order
-- id, then under a new id (taken as given), then another cart under that
-- one
SET ROLE regress_hostile_front;
SELECT shop.session_begin(:'tok501') = 501 AS began;
SELECT shop.cart_create(501) AS cart501 \gset
SELECT shop.cart_add(:'cart501', :p1, 1);
SELECT pg_temp.saga_checkout(:'order601', :'cart501', 'k501') AS as_601s_order;
SELECT pg_temp.saga_checkout('0190a3c4-6f1e-7b2a-9c3d-4e5f60718293', :'cart501', 'k501-b') AS as_a_new_id;
SELECT shop.cart_create(501) AS cart501b \gset
SELECT shop.cart_add(:'cart501b', :p1, 1);
SELECT pg_temp.saga_checkout('0190a3c4-6f1e-7b2a-9c3d-4e5f60718293', :'cart501b', 'k501-c') AS as_501s_order;
SELECT shop.session_end();
RESET ROLE;
-- one order and one saga per id; the key 'k501' was not kept
SELECT count(*) AS orders, count(DISTINCT order_id) AS ids FROM shop."order";
SELECT count(*) AS sagas, count(DISTINCT order_id) AS ids FROM shop.saga;
SELECT key FROM shop.idempotency ORDER BY key;
-- 601 reads its order, the back office finds it by its id
SET ROLE regress_hostile_front;
SELECT shop.session_begin(:'tok601') = 601 AS began;
SELECT (shop.order_get(:'order601') ->> 'customer_id')::bigint AS customer_601_reads;
SELECT shop.session_end();
RESET ROLE;
SELECT shop.order_transition(:'order601', 'fulfilling') AS moved;
SELECT customer_id, status FROM shop."order" WHERE order_id = :'order601';

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
