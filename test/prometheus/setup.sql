-- setup.sql of test/prometheus: a shop with known numbers, made through
-- shop's calls (the back office and the gateway flow), plus the states no
-- call makes on purpose (a lapsed hold, an idle cart, a broken stock row,
-- old events), written as the superuser.  run.sh compares what the
-- exporter scrapes with the numbers below.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE ROLE prom_exporter LOGIN IN ROLE shop_monitor, pg_monitor;

SELECT shop.category_add('Kettles') AS cat \gset
SELECT shop.product_upsert('K-1', 'Steel kettle', 2500, category_id => :cat) AS p1 \gset
SELECT shop.product_upsert('K-2', 'Glass kettle', 3000, category_id => :cat) AS p2 \gset
SELECT shop.product_upsert('K-3', 'Copper kettle', 9000, category_id => :cat) AS p3 \gset
SELECT shop.product_upsert('K-4', 'Travel kettle', 1500, category_id => :cat) AS p4 \gset
SELECT shop.stock_set(:p1, 100), shop.stock_set(:p2, 3), shop.stock_set(:p3, 0), shop.stock_set(:p4, 10);
-- low stock: K-2 (3 < 5); K-3 has nothing available
SELECT shop.stock_set_reorder_threshold(:p2, 5);

-- one sweep before the states it would clear
SELECT shop.sweep() IS NOT NULL AS swept;

-- five checkouts of one K-1 each, today:
--   gateway, confirmed: paid (payment captured)
--   gateway, failed twice: cancelled (payment failed)
--   gateway, unsettled: pending (payment pending)
--   test card: paid (payment authorized)
CREATE FUNCTION pg_temp.order_of(customer bigint, token text, product bigint) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE c uuid := shop.cart_create(customer);
BEGIN
    PERFORM shop.cart_add(c, product, 1);
    RETURN shop.checkout(c, token, 'prom-' || customer);
END $$;
SELECT pg_temp.order_of(701, 'stripe:pm_701', :p1) AS o_paid \gset
SELECT pg_temp.order_of(702, 'stripe:pm_702', :p1) AS o_fail1 \gset
SELECT pg_temp.order_of(703, 'stripe:pm_703', :p1) AS o_fail2 \gset
SELECT pg_temp.order_of(704, 'stripe:pm_704', :p1) AS o_pending \gset
SELECT pg_temp.order_of(705, 'tok_visa', :p1) AS o_card \gset
SELECT shop.payment_confirm(:'o_paid', 'ch_701');
SELECT shop.payment_fail(:'o_fail1', 'card_declined');
SELECT shop.payment_fail(:'o_fail2', 'card_declined');
-- and one more unsettled gateway order, two days old (not today, whatever
-- the time of day): pending, with its payment and its hold
SELECT pg_temp.order_of(707, 'stripe:pm_707', :p1) AS o_old \gset
UPDATE shop."order" SET created_at = now() - interval '2 days' WHERE order_id = :'o_old';
UPDATE shop.payment SET created_at = now() - interval '2 days' WHERE order_id = :'o_old';

-- a hold that lapsed four days ago and no sweep reclaimed (more than three
-- of this cluster's shop.sweep_interval, 1 day: ShopSweeperLagging)
SELECT shop.reserve(:p4, 2, 'lapsed', '1 hour') AS lapsed \gset
UPDATE shop.reservation SET expires_at = now() - interval '4 days' WHERE reservation_id = :'lapsed';
-- an idle cart past its time
SELECT shop.cart_create(706) AS idle_cart \gset
UPDATE shop.cart SET expires_at = now() - interval '1 day' WHERE cart_id = :'idle_cart';
-- a stock row whose reserved no hold explains (written around shop's calls)
UPDATE shop.stock SET reserved = reserved + 1 WHERE product_id = :p4;

-- searches of the last 5 minutes: 1 .. 100 ms, 7 of them found nothing;
-- one older search is outside the window
INSERT INTO shop.search_log (logged_at, query, sort, results, duration_ms)
SELECT now() - interval '1 minute', 'kettle ' || g, 'relevance', CASE WHEN g <= 7 THEN 0 ELSE 3 END, g
  FROM generate_series(1, 100) g;
INSERT INTO shop.search_log (logged_at, query, sort, results, duration_ms)
VALUES (now() - interval '10 minutes', 'old', 'relevance', 1, 5000);

-- consumer groups: both start after the events above; then five events,
-- emitted an hour ago; "mailer" acknowledges a batch of two and has the
-- next two out; "idle" never claims
SELECT count(*) AS none FROM shop.event_claim('mailer');
SELECT count(*) AS none FROM shop.event_claim('idle');
SELECT count(shop._emit('test.metric', jsonb_build_object('n', g))) FROM generate_series(1, 5) g;
UPDATE shop.event SET created_at = now() - interval '1 hour 5 minutes' WHERE topic = 'test.metric';
SELECT batch_id AS b1 FROM shop.event_claim('mailer', 'm1', 2, '1 day') LIMIT 1 \gset
SELECT shop.event_ack('mailer', :b1);
SELECT count(*) AS out FROM shop.event_claim('mailer', 'm1', 2, '1 day');

-- recommendations: two guests bought K-1 and K-2 together four days ago
-- (the only co-purchase lists: 2 of the 4 products); customer 708 bought
-- K-2 three days ago and K-1 two days ago.  Folded in, then evaluated:
-- 708's, 701's and 705's orders (4 counted orders of customers in 7 days).
-- Three of them have no earlier purchase, but all three customers bought
-- K-1, so each has customers like them (the blend reads that source as it
-- is now): no list fell back to popularity.
CREATE FUNCTION pg_temp.past_order(customer bigint, products bigint[], age interval) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE o uuid;
BEGIN
    INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents, created_at)
    VALUES (customer, 'paid', 'USD', 0, 0, now() - age) RETURNING order_id INTO o;
    INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
    SELECT o, n, p, 'K', 'kettle', 100, 1 FROM unnest(products) WITH ORDINALITY u(p, n);
    RETURN o;
END $$;
SELECT count(pg_temp.past_order(NULL, ARRAY[:p1, :p2]::bigint[], '4 days')) FROM generate_series(1, 2);
SELECT pg_temp.past_order(708, ARRAY[:p2]::bigint[], '3 days') IS NOT NULL AS past;
SELECT pg_temp.past_order(708, ARRAY[:p1]::bigint[], '2 days') IS NOT NULL AS past;
SELECT shop.refresh_recommendations() IS NOT NULL AS refreshed;
SELECT shop.reco_evaluate();
