-- operations: outbox, sweep, metrics, alerts
\i sql/include/prelude.sql

-- _emit: a row in the outbox (the NOTIFY side is in specs/outbox_notify.spec)
SELECT shop._emit('test.hello', '{"n": 1}') > 0 AS emitted;
SELECT topic, payload FROM shop.event ORDER BY event_id;
BEGIN;
SELECT shop._emit('test.rolled_back', '{}') > 0 AS emitted;
ROLLBACK;
SELECT count(*) AS rolled_back_events FROM shop.event WHERE topic = 'test.rolled_back';
-- a payload too large for NOTIFY is still stored whole
SELECT shop._emit('test.big', jsonb_build_object('blob', repeat('x', 9000))) > 0 AS emitted;
SELECT length(payload->>'blob') FROM shop.event WHERE topic = 'test.big';
SELECT pg_temp.err($$SELECT shop._emit(NULL, '{}')$$);
SELECT pg_temp.err($$SELECT shop._emit('x', NULL)$$);

-- sweep: expired holds, idle carts
SELECT shop.product_upsert('OPS-1', 'Lamp', 2500) AS p1 \gset
SELECT shop.stock_set(:p1, 10);
SELECT shop.reserve(:p1, 4, 'cart-a') AS a \gset
SELECT shop.reserve(:p1, 3, 'cart-b') AS b \gset
SELECT shop.reserve(:p1, 2, 'cart-c', ttl => '1 hour') AS c \gset
UPDATE shop.reservation SET expires_at = now() - interval '1 minute'
 WHERE reservation_id IN (:'a', :'b');
INSERT INTO shop.cart (expires_at) VALUES (now() - interval '1 day'), (now() + interval '1 day');
SELECT shop.sweep() - 'recommendations' - 'orders_cancelled' - 'orders_not_cancelled' AS sweep;
SELECT reservation_id = :'c' AS is_c, status FROM shop.reservation ORDER BY status, qty;
SELECT on_hand, reserved, shop.stock_available(:p1) AS available FROM shop.stock WHERE product_id = :p1;
SELECT count(*) AS carts_left FROM shop.cart;
-- nothing left to do: all counts zero
SELECT shop.sweep() - 'recommendations' - 'orders_cancelled' - 'orders_not_cancelled' AS sweep;
-- one more expired hold: released by the next run, the count stays exact
SELECT shop.reserve(:p1, 1, ttl => '1 hour') AS d \gset
UPDATE shop.reservation SET expires_at = now() - interval '1 second' WHERE reservation_id = :'d';
SELECT (shop.sweep()->>'units_released')::int AS units_released;
SELECT reserved FROM shop.stock WHERE product_id = :p1;

-- a pending order whose hold expired: cancelled by the orders subsystem's
-- transition when it is installed; in either case its hold stops counting
SELECT shop.reserve(:p1, 1, 'order', ttl => '1 hour') AS e \gset
INSERT INTO shop."order" (order_id, status, currency, subtotal_cents, total_cents)
VALUES ('11111111-1111-1111-1111-111111111111', 'pending', 'USD', 2500, 2500);
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty, reservation_id)
VALUES ('11111111-1111-1111-1111-111111111111', 1, :p1, 'OPS-1', 'Lamp', 2500, 1, :'e');
UPDATE shop.reservation SET expires_at = now() - interval '1 second' WHERE reservation_id = :'e';
SELECT (s->>'orders_cancelled')::int =
       CASE WHEN to_regprocedure('shop.order_transition(uuid,text,text)') IS NULL THEN 0 ELSE 1 END AS orders_ok
  FROM shop.sweep() s;
SELECT status <> 'held' AS hold_gone FROM shop.reservation WHERE reservation_id = :'e';
SELECT status = CASE WHEN to_regprocedure('shop.order_transition(uuid,text,text)') IS NULL
                     THEN 'pending' ELSE 'cancelled' END AS order_ok
  FROM shop."order" WHERE order_id = '11111111-1111-1111-1111-111111111111';
SELECT reserved FROM shop.stock WHERE product_id = :p1;

-- metrics: orders and revenue today, conversion, payments, holds, low stock
INSERT INTO shop.cart (expires_at) SELECT now() + interval '1 day' FROM generate_series(1, 3);
INSERT INTO shop."order" (order_id, cart_id, status, currency, subtotal_cents, total_cents)
VALUES ('22222222-2222-2222-2222-222222222222', gen_random_uuid(), 'paid', 'USD', 5000, 5400),
       ('33333333-3333-3333-3333-333333333333', gen_random_uuid(), 'shipped', 'USD', 1000, 1000),
       ('44444444-4444-4444-4444-444444444444', gen_random_uuid(), 'cancelled', 'USD', 700, 700);
SELECT orders, paid_orders, pending_orders, cancelled_orders, revenue_cents, avg_order_cents, currency
  FROM shop.metrics_orders_today;
SELECT * FROM shop.metrics_conversion;
SELECT shop.stock_set_reorder_threshold(:p1, 50);
SELECT product_id = :p1 AS p1, sku, on_hand, reserved, available, reorder_threshold FROM shop.low_stock;
SELECT m->'orders_today'->>'revenue_cents' AS revenue,
       m->'conversion'->>'conversion' AS conversion,
       m->'reservations' AS reservations,
       m->>'low_stock_count' AS low_stock_count,
       jsonb_array_length(m->'low_stock') AS low_stock_listed,
       m ? 'search_latency_ms' AS has_search_latency,
       m->'payments'->>'payments' AS payments
  FROM shop.metrics() m;

-- search latency percentiles come from shop.search_log when it exists
SELECT shop._search_latency() IS NULL
       OR (shop._search_latency() ? 'p99') AS search_latency_ok;

-- payment.failures: emitted once per window when the failure rate passes
-- shop.payment_failure_threshold (default 0.5) over at least 5 payments
INSERT INTO shop.payment (order_id, provider, token, status, amount_cents)
SELECT '22222222-2222-2222-2222-222222222222', 'test', 'tok_visa', 'captured', 5400
  FROM generate_series(1, 2);
INSERT INTO shop.payment (order_id, provider, token, status, amount_cents, failure_reason)
SELECT '22222222-2222-2222-2222-222222222222', 'test', 'tok_chargeDeclined', 'failed', 5400, 'declined'
  FROM generate_series(1, 2);
SELECT shop._check_payment_failures() AS alert_at_2_of_4;
INSERT INTO shop.payment (order_id, provider, token, status, amount_cents, failure_reason)
VALUES ('22222222-2222-2222-2222-222222222222', 'test', 'tok_chargeDeclined', 'failed', 5400, 'declined');
SELECT shop._check_payment_failures() AS alert_at_3_of_5;
SELECT shop._check_payment_failures() AS again_in_same_window;
SELECT payload FROM shop.event WHERE topic = 'payment.failures';
SELECT payments, failed, failure_rate FROM shop.metrics_payments;
SET shop.payment_failure_threshold = 0.9;
DELETE FROM shop.event WHERE topic = 'payment.failures';
SELECT shop._check_payment_failures() AS alert_above_threshold_0_9;
RESET shop.payment_failure_threshold;

-- consumer groups (the concurrency is in specs/event_consumers.spec):
-- a group starts empty and gets what commits after it was created, in
-- batches it acknowledges
SELECT count(*) AS first_claim FROM shop.event_claim('ops');
SELECT shop._emit('ops.one', '{"n": 1}') > 0 AS emitted;
SELECT shop._emit('ops.two', '{"n": 2}') > 0 AS emitted;
SELECT batch_id, topic, payload, redelivered FROM shop.event_claim('ops', 'worker-1', max_events => 1);
-- the batch is out: the same consumer asking again gets it again
SELECT batch_id, topic, redelivered FROM shop.event_claim('ops', 'worker-1', max_events => 1);
SELECT shop.event_ack('ops', 1) AS acked, shop.event_ack('ops', 1) AS again;
SELECT batch_id, topic, redelivered FROM shop.event_claim('ops', 'worker-1');
SELECT shop.event_ack('ops', 2) AS acked;
SELECT count(*) AS nothing_left FROM shop.event_claim('ops', 'worker-1');
-- an event of a transaction that claims too (a worker that emits and
-- claims in one transaction) is delivered once that transaction commits
BEGIN;
SELECT shop._emit('ops.same_tx', '{"n": 3}') > 0 AS emitted;
SELECT count(*) AS not_before_commit FROM shop.event_claim('other', 'worker-2');
COMMIT;
SELECT batch_id, topic, redelivered FROM shop.event_claim('ops', 'worker-1');
SELECT shop.event_ack('ops', 3) AS acked;
SELECT shop.event_group_drop('other') AS dropped;
SELECT group_name, batch_id, batch_out, leased_to FROM shop.event_groups;
SELECT shop.event_group_drop('ops') AS dropped, shop.event_group_drop('ops') AS again;
SELECT pg_temp.err($$SELECT * FROM shop.event_claim(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.event_claim('')$$);
SELECT pg_temp.err($$SELECT * FROM shop.event_claim(repeat('g', 101))$$);
SELECT pg_temp.err($$SELECT * FROM shop.event_claim('g', max_events => 0)$$);
SELECT pg_temp.err($$SELECT * FROM shop.event_claim('g', lease => '0 s')$$);
SELECT pg_temp.err($$SELECT * FROM shop.event_claim('g', lease => '2 days')$$);
SELECT pg_temp.err($$SELECT * FROM shop.event_claim('g', '4111 1111 1111 1111')$$);
SELECT pg_temp.err($$SELECT shop.event_ack('g', NULL)$$);
-- shop.notify_events: batch (the default), each (1.0), off; 1.0's
-- boolean spellings still work
SHOW shop.notify_events;
SET shop.notify_events = on;
SHOW shop.notify_events;
SET shop.notify_events = false;
SHOW shop.notify_events;
SET shop.notify_events = each;
SHOW shop.notify_events;
SELECT pg_temp.err($$SET shop.notify_events = sometimes$$);
RESET shop.notify_events;

-- privileges
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can
  FROM pg_proc p WHERE p.pronamespace = 'shop'::regnamespace
   AND p.proname IN ('sweep', 'metrics', '_emit', '_check_payment_failures', 'event_claim',
                     'event_ack', 'event_group_drop', '_event_window')
 ORDER BY 1;

-- the sweeper's settings (their defaults: the server's own values differ,
-- make test's cluster sweeps every hour)
SELECT name, boot_val, unit, context FROM pg_settings
 WHERE name IN ('shop.sweep_interval', 'shop.sweep_databases') ORDER BY name;

-- the sweep trims the search log to shop.search_log_retention
INSERT INTO shop.search_log (logged_at, query, sort, results, duration_ms)
VALUES (now() - interval '40 days', 'old', 'relevance', 1, 1.0),
       (now() - interval '2 days', 'recent', 'relevance', 1, 1.0);
SELECT shop.sweep() -> 'search_log_trimmed' AS trimmed;
SET shop.search_log_retention = '1d';
SELECT shop.sweep() -> 'search_log_trimmed' AS trimmed;
SELECT count(*) AS left FROM shop.search_log;
RESET shop.search_log_retention;

-- the sweep purges the cart merge records (shop.cart_merged,
-- docs/scale-out.md) older than shop.cart_ttl (30 days): a repeat of a
-- merge starts from the guest cart, which has expired by then
INSERT INTO shop.cart_merged (from_cart, customer_key, into_cart, merged_at)
VALUES ('00000000-0000-4000-8000-0000000000c1', 41, '00000000-0000-4000-8000-0000000000d1', now() - interval '31 days'),
       ('00000000-0000-4000-8000-0000000000c2', 41, '00000000-0000-4000-8000-0000000000d1', now() - interval '2 days');
-- what the next sweep purges (docs/scale-out.md)
SELECT count(*) AS to_purge FROM shop.cart_merged
 WHERE merged_at < now() - current_setting('shop.cart_ttl')::interval;
SET ROLE shop_admin;
SELECT shop.sweep() -> 'cart_merges_purged' AS purged;
RESET ROLE;
SELECT from_cart, merged_at > now() - interval '3 days' AS recent FROM shop.cart_merged;
SET shop.cart_ttl = '1d';
SELECT shop.sweep() -> 'cart_merges_purged' AS purged;
SELECT count(*) AS left FROM shop.cart_merged;
RESET shop.cart_ttl;

-- every sweep records its run in shop.sweep_state, which the monitoring
-- functions report (docs/operations.md, "Monitoring with Prometheus")
SELECT runs AS runs_before, clock_timestamp() AS t0 FROM shop.sweep_state \gset
SELECT shop.sweep() IS NOT NULL AS swept;
SELECT runs - :runs_before AS new_runs, last_run_at >= :'t0' AS recorded FROM shop.sweep_state;
SELECT m.runs = s.runs AS same_runs, m.last_run_timestamp_seconds = extract(epoch FROM s.last_run_at) AS same_time
  FROM shop.monitor_sweep() m, shop.sweep_state s;
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can,
       has_function_privilege('shop_admin', p.oid, 'EXECUTE') AS admin_can
  FROM pg_proc p WHERE p.pronamespace = 'shop'::regnamespace AND p.proname IN ('sweep', '_sweep_once')
 ORDER BY 1;

-- shop.monitor_stock counts what shop.low_stock and shop.stock_summary
-- show: a lapsed hold not reclaimed yet is available again, a product at
-- zero is out of stock
SELECT shop.product_upsert('OPS-LOW', 'Low lamp', 900) AS low \gset
SELECT shop.product_upsert('OPS-OUT', 'Gone lamp', 900) AS out \gset
SELECT shop.stock_set(:low, 10), shop.stock_set(:out, 1);
SELECT shop.stock_set_reorder_threshold(:low, 9);
SELECT shop.reserve(:low, 2, 'live', '1 hour') IS NOT NULL AS held;
SELECT shop.reserve(:low, 1, 'lapsing', '1 hour') AS lapsing \gset
UPDATE shop.reservation SET expires_at = now() - interval '1 minute' WHERE reservation_id = :'lapsing';
SELECT shop.reserve(:out, 1, 'last', '1 hour') IS NOT NULL AS held;
SELECT product_id = :low AS is_low, available FROM shop.low_stock;
SELECT m.low_products, m.low_products = (SELECT count(*) FROM shop.low_stock) AS as_low_stock,
       m.out_of_stock_products,
       m.out_of_stock_products = (SELECT count(*) FROM shop.stock_summary WHERE available <= 0) AS as_summary,
       m.invariant_violations
  FROM shop.monitor_stock() m;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
