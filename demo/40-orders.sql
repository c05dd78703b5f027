-- demo: the order state machine, fraud review, a real gateway, returns
\pset footer off
\echo
\echo '==================== 7. Orders ===================='
SELECT order_id, customer_id AS customer FROM shop."order" WHERE idempotency_key = 'demo-checkout-1' \gset
SELECT product_id AS p1 FROM shop.order_line WHERE order_id = :'order_id' ORDER BY line_no LIMIT 1 \gset
-- a mail service's consumer group starts here: it is owed what follows
SELECT count(*) AS nothing_yet FROM shop.event_claim('demo-mailer', 'mailer-1') \gset

\echo 'The warehouse picks and ships the order from the checkout; shipping commits the held stock:'
SELECT on_hand, reserved, available FROM shop.stock_summary WHERE product_id = :p1;
\o /dev/null
SELECT shop.order_transition(:'order_id', 'fulfilling', 'picked by Sam');
SELECT shop.order_ship(:'order_id', 'UPS', '1Z999AA10123456784');
\o
SELECT on_hand, reserved, available FROM shop.stock_summary WHERE product_id = :p1;
\o /dev/null
SELECT shop.order_transition(:'order_id', 'delivered', 'left at the front door');
\o
\echo 'Tracking and the timeline, from shop.order_get:'
SELECT d->>'status' AS status, d->'tracking'->>'carrier' AS carrier,
       d->'tracking'->>'tracking_number' AS tracking_number
  FROM shop.order_get(:'order_id') d;
SELECT t.seq, t."from", t."to", t.note
  FROM jsonb_to_recordset(shop.order_get(:'order_id')->'timeline') AS t(seq int, "from" text, "to" text, note text);

\echo
\echo 'Only the transitions of the state machine are allowed (SH002 names both states):'
SELECT set_config('demo.order', :'order_id', false) \g /dev/null
DO $$
BEGIN
    PERFORM shop.order_transition(current_setting('demo.order')::uuid, 'paid');
EXCEPTION WHEN SQLSTATE 'SH002' THEN
    RAISE NOTICE '%', SQLERRM;
END
$$;

\echo
\echo 'The customer sends it back: returned restocks every line, then the refund.'
\o /dev/null
SELECT shop.order_transition(:'order_id', 'returned', 'wrong colour');
\o
SELECT on_hand, reserved, available FROM shop.stock_summary WHERE product_id = :p1;
SELECT shop.order_transition(:'order_id', 'refunded') AS status;
SELECT status AS payment FROM shop.payment WHERE order_id = :'order_id';

\echo
\echo 'tok_fraud: the risk check fires, the paid order waits for review and cannot be fulfilled yet.'
\o /dev/null
SELECT shop.cart_create(:customer) AS cart \gset
SELECT shop.cart_add(:'cart', :p1);
\o
SELECT shop.checkout(:'cart', 'tok_fraud', 'demo-fraud') AS fraud_order \gset
SELECT status, needs_review, fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'fraud_order';
SELECT set_config('demo.fraud', :'fraud_order', false) \g /dev/null
DO $$
BEGIN
    PERFORM shop.order_transition(current_setting('demo.fraud')::uuid, 'fulfilling');
EXCEPTION WHEN SQLSTATE 'SH002' THEN
    RAISE NOTICE '% -- %', SQLERRM, 'awaits fraud review';
END
$$;
\echo 'An analyst approves it; now it can be fulfilled:'
SELECT shop.order_review(:'fraud_order', true) AS reviewed,
       shop.order_transition(:'fraud_order', 'fulfilling') AS status;

\echo
\echo 'A real gateway (token "stripe:..."): the order waits in pending, holding its stock,'
\echo 'while the application talks to the gateway outside any transaction.'
\o /dev/null
SELECT shop.cart_create(:customer) AS cart \gset
SELECT shop.cart_add(:'cart', :p1, 2);
\o
SELECT shop.checkout(:'cart', 'stripe:pm_1NvGx2demo', 'demo-gateway-1') AS gw_order \gset
SELECT o.status, p.status AS payment, p.provider FROM shop."order" o JOIN shop.payment p USING (order_id)
 WHERE o.order_id = :'gw_order';
\echo 'The gateway webhook confirms the capture (a retried webhook is a no-op):'
SELECT shop.payment_confirm(:'gw_order', 'ch_3NvGx2demo') AS status,
       shop.payment_confirm(:'gw_order', 'ch_3NvGx2demo') AS retried;
\echo 'Another one is declined at the gateway: payment_fail cancels the order and releases the stock.'
\o /dev/null
SELECT shop.cart_create(:customer) AS cart \gset
SELECT shop.cart_add(:'cart', :p1, 2);
\o
SELECT shop.stock_available(:p1) AS available_before \gset
SELECT shop.checkout(:'cart', 'stripe:pm_2demo', 'demo-gateway-2') AS gw2 \gset
SELECT :available_before - shop.stock_available(:p1) AS units_held;
SELECT shop.payment_fail(:'gw2', 'card_declined: insufficient_funds') AS status;
SELECT :available_before - shop.stock_available(:p1) AS units_held_after;

\echo
\echo 'The customer''s latest orders (shop.orders_for):'
SELECT left(order_id::text, 8) AS order_id, status, total_cents, item_count, needs_review, created_at::date AS placed
  FROM shop.orders_for(:customer, 6);

\echo
\echo 'Every step went to the transactional outbox (shop.event; LISTEN shop_events is woken once per batch):'
SELECT topic, count(*) AS events FROM shop.event
 WHERE topic LIKE 'order.%' OR topic LIKE 'payment.%'
 GROUP BY topic ORDER BY min(event_id);

\echo
\echo 'A mail service reads them as a consumer group: shop.event_claim hands it a leased batch, shop.event_ack marks it done:'
WITH b AS (SELECT * FROM shop.event_claim('demo-mailer', 'mailer-1', 1000))
SELECT min(batch_id) AS batch, count(*) AS events, string_agg(DISTINCT topic, ', ') AS topics FROM b \gset
SELECT :batch AS batch, :events AS events_claimed, :'topics' AS topics;
SELECT shop.event_ack('demo-mailer', :batch) AS acknowledged;
SELECT count(*) AS left_to_claim FROM shop.event_claim('demo-mailer', 'mailer-1');
