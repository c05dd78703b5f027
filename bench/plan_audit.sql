-- bench/plan_audit.sql: one round of every call of shop's transactional
-- core (cart, checkout, order transitions, payments, inventory, events and
-- a consumer group claiming them, recommendations, sweep), on a store made
-- by bench/store_gen.sql.
-- bench/plan_audit.sh runs several rounds with auto_explain logging every
-- nested statement, so that each statement's settled plan (generic ones
-- included) can be read from the server log.
--
-- audit_round(i, products, customers, run): customers and products are the
-- store's sizes; round i uses products and customers of its own; run tags
-- the idempotency keys, so that a store can be audited again.
SET client_min_messages = warning;
DROP FUNCTION IF EXISTS public.audit_round(int, bigint, bigint, text);
CREATE FUNCTION public.audit_round(i int, products bigint, customers bigint, run text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p bigint := 1 + (i::bigint * 104729) % (products - 20);
    c bigint := 1 + (i::bigint * 7919) % customers;
    cart uuid;
    anon uuid;
    o uuid;
    r uuid;
    ids uuid[];
BEGIN
    -- cart calls
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p), shop.cart_add(cart, p + 1, 2), shop.cart_add(cart, p + 2);
    PERFORM shop.cart_set_qty(cart, p + 2, 3);
    PERFORM shop.cart_add(cart, p + 3);
    PERFORM shop.cart_save_for_later(cart, p + 3);
    PERFORM shop.cart_move_to_cart(cart, p + 3);
    PERFORM shop.cart_remove(cart, p + 3);
    PERFORM shop.cart_get(cart);
    anon := shop.cart_create();
    PERFORM shop.cart_add(anon, p + 4);
    PERFORM shop.cart_merge(anon, c);
    -- checkout with the test provider, then the warehouse
    o := shop.checkout(cart, 'tok_visa', 'audit-' || run || '-' || i, '{"country": "US", "state": "CA"}');
    PERFORM shop.order_get(o);
    PERFORM * FROM shop.orders_for(c);
    PERFORM shop.order_transition(o, 'fulfilling');
    PERFORM shop.order_ship(o, 'UPS', '1Z' || i);
    PERFORM shop.order_transition(o, 'delivered');
    PERFORM shop.order_transition(o, 'returned');
    PERFORM shop.order_transition(o, 'refunded');
    -- a gateway order confirmed, then cancelled
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 5);
    o := shop.checkout(cart, 'stripe:pm_' || i, 'audit-g-' || run || '-' || i);
    PERFORM shop.payment_confirm(o, 'ch_' || i);
    PERFORM shop.order_transition(o, 'cancelled');
    -- a gateway order that fails
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 6);
    o := shop.checkout(cart, 'stripe:pm_f' || i, 'audit-f-' || run || '-' || i);
    PERFORM shop.payment_fail(o, 'card declined');
    -- an order flagged for review, approved
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 7);
    o := shop.checkout(cart, 'tok_fraud', 'audit-r-' || run || '-' || i);
    PERFORM shop.order_review(o, true);
    PERFORM shop.payment_method_add(c, 'tok_visa_audit' || i, NULL, NULL, NULL, NULL);
    -- inventory
    r := shop.reserve(p + 8, 1, 'audit', '10 minutes');
    PERFORM shop.reservation_extend(r, '20 minutes');
    PERFORM shop.reservation_commit(r);
    ids := shop.reserve_many(jsonb_build_array(jsonb_build_object('product_id', p + 9, 'qty', 1),
                                               jsonb_build_object('product_id', p + 10, 'qty', 2)));
    PERFORM shop.reservation_release(ids[1]);
    PERFORM shop.reservation_release(ids[2]);
    PERFORM shop.stock_adjust(p + 11, 5, 'audit delivery');
    PERFORM shop.stock_set(p + 11, 1000000);
    PERFORM shop.stock_available(p + 12);
    PERFORM shop.stock_set_reorder_threshold(p + 13, 10);
    -- recommendations
    PERFORM shop.view(c, p);
    PERFORM * FROM shop.recently_viewed(c);
    PERFORM * FROM shop.also_bought(p);
    PERFORM * FROM shop.similar_products(p);
    PERFORM * FROM shop.recommend(c);
    PERFORM * FROM shop.trending();
    -- events: a consumer group claims what the rounds before emitted, and
    -- acknowledges it
    PERFORM shop.event_ack('audit', b)
       FROM (SELECT DISTINCT c.batch_id AS b FROM shop.event_claim('audit', 'auditor', 1000) c) x;
END
$$;
