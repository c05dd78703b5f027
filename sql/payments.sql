-- payments: test provider, declines, fraud scoring and review, the gateway
-- flow (pending -> confirm / fail), saved payment methods, card refusal
\i sql/include/prelude.sql
CREATE FUNCTION pg_temp.stock(p bigint) RETURNS text LANGUAGE sql AS $f$
    SELECT sum(on_hand) || '/' || sum(reserved) FROM shop.stock WHERE product_id = p
$f$;
-- a fresh cart of customer c holding qty units of product p
CREATE FUNCTION pg_temp.cart(c bigint, p bigint, qty int DEFAULT 1) RETURNS uuid LANGUAGE plpgsql AS $f$
DECLARE id uuid;
BEGIN
    id := shop.cart_create(c);
    PERFORM shop.cart_add(id, p, qty);
    RETURN id;
END $f$;
-- everything that could be left behind, as one line
CREATE FUNCTION pg_temp.world() RETURNS text LANGUAGE sql AS $f$
    SELECT format('orders=%s reservations=%s keys=%s events=%s payments=%s',
                  (SELECT count(*) FROM shop."order"), (SELECT count(*) FROM shop.reservation),
                  (SELECT count(*) FROM shop.idempotency), (SELECT count(*) FROM shop.event),
                  (SELECT count(*) FROM shop.payment))
$f$;

SELECT shop.product_upsert('MUG', 'Coffee mug', 1000) AS mug \gset
SELECT shop.product_upsert('TV', 'Television 65 inch', 150000) AS tv \gset
SELECT shop.product_upsert('LAST', 'Last one', 500) AS last \gset
SELECT shop.stock_set(:mug, 1000), shop.stock_set(:tv, 10), shop.stock_set(:last, 1);

-- a declined card: SH004, and nothing is kept: no order, no hold, no stock change
SELECT pg_temp.cart(1, :mug, 2) AS c1 \gset
SELECT pg_temp.world() AS before, pg_temp.stock(:mug) AS mug;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_chargeDeclined', 'd1')$$, :'c1'));
SELECT pg_temp.world() AS after, pg_temp.stock(:mug) AS mug,
       jsonb_array_length(shop.cart_get(:'c1')->'lines') AS cart_lines_kept;
-- the customer retries with another card and the same cart
SELECT shop.checkout(:'c1', 'tok_mastercard', 'd2') AS o1 \gset
SELECT status, (SELECT card_brand || ' ' || last4 || ' ' || status FROM shop.payment p WHERE p.order_id = o.order_id) AS payment
  FROM shop."order" o WHERE order_id = :'o1';
-- the test provider also takes "test:" and a suffix naming one card
SELECT shop.checkout(pg_temp.cart(1, :mug), 'test:tok_amex_corporate', 'd3') AS o2 \gset
SELECT provider, card_brand, last4, status FROM shop.payment WHERE order_id = :'o2';

-- tok_fraud: the provider's risk check fires; the order is paid but waits for review
SELECT shop.checkout(pg_temp.cart(2, :mug), 'tok_fraud', 'f1') AS f1 \gset
SELECT status, needs_review, fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'f1';
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'fulfilling')$$, :'f1'));
SELECT order_id = :'f1' AS flagged FROM shop.orders_for(2) WHERE needs_review;
SELECT shop.order_review(:'f1', true);
SELECT shop.order_transition(:'f1', 'fulfilling');
SELECT pg_temp.err(format($$SELECT shop.order_review(%L, true)$$, :'f1'));
SELECT jsonb_path_query_array(shop.order_get(:'f1')->'timeline', '$[*].note') AS notes;
-- a rejected review cancels the order and gives the stock back
SELECT pg_temp.stock(:mug) AS mug_before;
SELECT shop.checkout(pg_temp.cart(2, :mug, 5), 'tok_fraud', 'f2') AS f2 \gset
SELECT pg_temp.stock(:mug) AS mug_held;
SELECT shop.order_review(:'f2', false);
SELECT status, needs_review, pg_temp.stock(:mug) AS mug_after FROM shop."order" WHERE order_id = :'f2';
SELECT shop.order_transition(:'f2', 'refunded');
SELECT topic FROM shop.event WHERE payload->>'order_id' IN (:'f1', :'f2') ORDER BY event_id;
SELECT pg_temp.err($$SELECT shop.order_review(NULL, true)$$);
SELECT pg_temp.err(format($$SELECT shop.order_review(%L, NULL)$$, :'f2'));
SELECT pg_temp.err($$SELECT shop.order_review('00000000-0000-0000-0000-000000000000', true)$$);

-- velocity: the same customer and the same card, again and again within the hour
CREATE TEMP TABLE v AS
SELECT i, shop.checkout(pg_temp.cart(3, :mug), 'tok_visa_alice', 'v' || i) AS id FROM generate_series(1, 11) i;
SELECT v.i, o.fraud_score, o.fraud_reasons, o.needs_review
  FROM v JOIN shop."order" o ON o.order_id = v.id
 WHERE v.i IN (1, 5, 6, 10, 11)
 ORDER BY v.i;
-- the bare test tokens stand for a fresh card each time: no token velocity
CREATE TEMP TABLE b AS
SELECT i, shop.checkout(pg_temp.cart(1000 + i, :mug), 'tok_visa', 'b' || i) AS id FROM generate_series(1, 6) i;
SELECT o.fraud_score, o.fraud_reasons FROM b JOIN shop."order" o ON o.order_id = b.id WHERE b.i = 6;
-- amount against the customer's history; the threshold is a GUC
SELECT count(shop.checkout(pg_temp.cart(4, :mug), 'tok_visa', 'h' || i)) FROM generate_series(1, 3) i;
SET shop.fraud_threshold = 0.3;
SELECT shop.checkout(pg_temp.cart(4, :mug, 100), 'tok_visa', 'h4') AS big \gset
SELECT fraud_score, fraud_reasons, needs_review FROM shop."order" WHERE order_id = :'big';
RESET shop.fraud_threshold;
-- a large first order
SELECT shop.checkout(pg_temp.cart(5, :tv, 2), 'tok_visa', 'n1') AS first \gset
SELECT fraud_score, fraud_reasons, needs_review FROM shop."order" WHERE order_id = :'first';

-- a real gateway: the order waits in pending, holding stock for shop.reservation_ttl
SELECT shop.checkout(pg_temp.cart(6, :mug, 3), 'stripe:pm_1NvGx2', 'g1', '{"country": "US"}') AS g1 \gset
SELECT status, was_paid FROM shop."order" WHERE order_id = :'g1';
SELECT provider, token, status, card_brand IS NULL AS brand_unknown_yet FROM shop.payment WHERE order_id = :'g1';
SELECT DISTINCT status, expires_at BETWEEN now() + interval '14 minutes' AND now() + interval '16 minutes' AS ttl_15min
  FROM shop.reservation WHERE reservation_id IN (SELECT reservation_id FROM shop.order_line WHERE order_id = :'g1');
-- ... the application talks to the gateway outside any transaction, then:
SELECT shop.payment_confirm(:'g1', 'ch_3NvGx2Abc');
SELECT o.status, p.status AS payment, p.provider_ref,
       (SELECT bool_and(expires_at = 'infinity') FROM shop.reservation r
         WHERE r.reservation_id IN (SELECT reservation_id FROM shop.order_line WHERE order_id = :'g1')) AS holds_kept
  FROM shop."order" o JOIN shop.payment p USING (order_id) WHERE o.order_id = :'g1';
-- a retried webhook with the same reference is a no-op; another reference is not
SELECT shop.payment_confirm(:'g1', 'ch_3NvGx2Abc');
SELECT pg_temp.err(format($$SELECT shop.payment_confirm(%L, 'ch_other')$$, :'g1'));
SELECT pg_temp.err(format($$SELECT shop.payment_fail(%L, 'late decline')$$, :'g1'));
SELECT count(*) AS paid_events FROM shop.order_event WHERE order_id = :'g1' AND to_status = 'paid';
-- the gateway declines: payment_fail cancels and releases; the failed payment stays on record
SELECT pg_temp.stock(:mug) AS mug_before;
SELECT shop.checkout(pg_temp.cart(6, :mug, 4), 'stripe:pm_2', 'g2') AS g2 \gset
SELECT pg_temp.stock(:mug) AS mug_held;
SELECT shop.payment_fail(:'g2', 'card_declined: insufficient_funds');
SELECT o.status, p.status AS payment, p.failure_reason, pg_temp.stock(:mug) AS mug_after
  FROM shop."order" o JOIN shop.payment p USING (order_id) WHERE o.order_id = :'g2';
SELECT topic, payload->>'reason' AS reason FROM shop.event
 WHERE payload->>'order_id' = :'g2' AND topic LIKE 'payment.%';
SELECT shop.payment_fail(:'g2', 'card_declined: insufficient_funds');   -- retried: no-op
-- failures over shop.payment_failure_window past shop.payment_failure_threshold raise an alert
SELECT count(*) AS alerts FROM shop.event WHERE topic = 'payment.failures';
SET shop.payment_failure_threshold = 0.03;
SELECT shop.payment_fail(shop.checkout(pg_temp.cart(6, :mug), 'stripe:pm_2b', 'g2b'), 'card_declined');
SELECT payload->'failed' AS failed, payload->'threshold' AS threshold
  FROM shop.event WHERE topic = 'payment.failures';
RESET shop.payment_failure_threshold;
SELECT pg_temp.err(format($$SELECT shop.payment_confirm(%L, 'ch_late')$$, :'g2'));
-- the holds of a pending order expired and someone else took the last unit:
-- confirming is SH001 (the application voids the gateway payment)
SELECT shop.checkout(pg_temp.cart(7, :last), 'stripe:pm_3', 'g3') AS g3 \gset
UPDATE shop.reservation SET expires_at = now() - interval '1 second'
 WHERE reservation_id IN (SELECT reservation_id FROM shop.order_line WHERE order_id = :'g3');
SELECT shop.reserve(:last, 1, 'someone else') IS NOT NULL AS other_buyer_got_it;
SELECT pg_temp.err(format($$SELECT shop.payment_confirm(%L, 'ch_4')$$, :'g3'));
SELECT status FROM shop."order" WHERE order_id = :'g3';
-- the sweep cancels pending orders whose holds expired
SELECT shop.checkout(pg_temp.cart(8, :mug, 2), 'stripe:pm_5', 'g5') AS g5 \gset
UPDATE shop.reservation SET expires_at = now() - interval '1 second'
 WHERE reservation_id IN (SELECT reservation_id FROM shop.order_line WHERE order_id = :'g5');
SELECT (shop.sweep()->>'orders_cancelled')::int >= 1 AS swept;
SELECT status, (SELECT status FROM shop.payment p WHERE p.order_id = o.order_id) AS payment
  FROM shop."order" o WHERE order_id IN (:'g3', :'g5') ORDER BY created_at;
SELECT pg_temp.err($$SELECT shop.payment_confirm(NULL, 'x')$$);
SELECT pg_temp.err(format($$SELECT shop.payment_confirm(%L, NULL)$$, :'g1'));
SELECT pg_temp.err($$SELECT shop.payment_confirm('00000000-0000-0000-0000-000000000000', 'x')$$);
SELECT pg_temp.err(format($$SELECT shop.payment_fail(%L, NULL)$$, :'g1'));
SELECT pg_temp.err(format($$SELECT shop.payment_fail(%L, repeat('r', 501))$$, :'g1'));

-- saved payment methods: tokens only; saving a token again updates it
SELECT shop.payment_method_add(9, 'stripe:pm_saved', 'visa', '1881', 12, 2099) AS pm \gset
SELECT shop.payment_method_add(9, 'stripe:pm_saved', 'visa', '1881', 11, 2099) = :'pm' AS same_method;
SELECT brand, last4, exp_month, exp_year FROM shop.payment_method WHERE customer_id = 9;
-- the test provider fills in brand and last four of its own tokens
SELECT shop.payment_method_add(9, 'tok_mastercard_work', NULL, NULL, 1, 2099) IS NOT NULL AS saved;
SELECT token, brand, last4 FROM shop.payment_method WHERE customer_id = 9 ORDER BY token;
-- paying with a saved token shows its brand and last four on the payment
SELECT shop.checkout(pg_temp.cart(9, :mug), 'stripe:pm_saved', 's1') AS s1 \gset
SELECT card_brand, last4, status FROM shop.payment WHERE order_id = :'s1';
SELECT pg_temp.err($$SELECT shop.payment_method_add(NULL, 'tok_visa', 'visa', '4242', 1, 2099)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, NULL, 'visa', '4242', 1, 2099)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, 'nonsense', 'visa', '4242', 1, 2099)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, 'tok_visa_x', 'visa', '42', 1, 2099)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, 'tok_visa_x', 'visa', '4242', 13, 2099)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, 'tok_visa_x', 'visa', '4242', 1, 1999)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, 'tok_visa_x', 'visa', '4242', 1, NULL)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, 'tok_visa_x', 'visa', '4242', 1, 2001)$$);

-- card numbers are refused everywhere, and never echoed
SELECT pg_temp.world() AS before;
SELECT shop.cart_create(10) AS cc \gset
SELECT shop.cart_add(:'cc', :mug);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, '4242424242424242', 'c1')$$, :'cc'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'stripe:4242 4242 4242 4242', 'c1')$$, :'cc'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'key-5555-5555-5555-4444')$$, :'cc'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'c1', '{"name": "Ada", "notes": ["pay with 378282246310005"]}')$$, :'cc'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'c1', '{"card": 4111111111111111}')$$, :'cc'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'c1', '{"4111111111111111": "key"}')$$, :'cc'));
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, '4000056655665556', 'visa', '5556', 1, 2099)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(9, 'tok_visa_y', 'visa 4000056655665556', '5556', 1, 2099)$$);
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'fulfilling', 'card 4000056655665556')$$, :'o1'));
SELECT pg_temp.err(format($$SELECT shop.order_ship(%L, 'UPS', '4000056655665556')$$, :'o1'));
SELECT pg_temp.err(format($$SELECT shop.payment_confirm(%L, '4000056655665556')$$, :'g1'));
SELECT pg_temp.err(format($$SELECT shop.payment_fail(%L, 'card 4000056655665556 declined')$$, :'g1'));
-- uuids are not card numbers, even when three of their groups form a Luhn-valid run
SELECT shop.contains_card_number('12345678-1234-5670-abcd-ef0123456789') AS uuid_is_card,
       shop.contains_card_number('order:07c37119-7506-4185-9d6f-18d4484c9632') AS hex_glued_is_card,
       shop.contains_card_number('4000-0566-5566-5556') AS grouped_is_card;
-- a 16-digit number that fails the Luhn check is an ordinary value
SELECT shop.checkout(:'cc', 'tok_visa', 'c1', '{"phone": "4242424242424241"}') IS NOT NULL AS not_a_card;
\set cards '(4242.?4242.?4242.?4242|5555.?5555.?5555.?4444|378282246310005|4111111111111111|4000056655665556)'
SELECT (SELECT count(*) FROM shop."order" o WHERE o.shipping_address::text ~ :'cards')
     + (SELECT count(*) FROM shop.payment p WHERE p.token ~ :'cards')
     + (SELECT count(*) FROM shop.payment_method m WHERE m.token ~ :'cards' OR m.brand ~ :'cards')
     + (SELECT count(*) FROM shop.idempotency k WHERE k.key ~ :'cards')
     + (SELECT count(*) FROM shop.event e WHERE e.payload::text ~ :'cards') AS stored_anywhere,
       (SELECT count(*) FROM shop."order" o WHERE o.shipping_address ? 'phone') AS phone_kept;
-- that the number never reaches the server log: sql/server_log.sql

-- the history's edges: orders older than an hour are not velocity, only the
-- last 50 paid orders make the average (an older big one does not), unpaid
-- orders none; the same answer when order_customer_idx is gone (checkout then
-- counts with a statement instead of walking the index)
SELECT count(shop.checkout(pg_temp.cart(8, :mug), 'tok_visa', 'e' || i)) FROM generate_series(1, 51) i;
UPDATE shop."order" o SET created_at = now() - interval '2 hours' - r.n * interval '1 minute',
                          total_cents = CASE WHEN r.n = 51 THEN 100000000 ELSE o.total_cents END
  FROM (SELECT order_id, row_number() OVER (ORDER BY created_at, order_id) AS n
          FROM shop."order" WHERE customer_id = 8) r
 WHERE o.order_id = r.order_id;
SELECT count(shop.checkout(pg_temp.cart(8, :mug), 'stripe:pm_e' || i, 'p' || i)) FROM generate_series(1, 6) i;
BEGIN;
SELECT shop.checkout(pg_temp.cart(8, :mug, 4), 'tok_visa', 'e-big') AS e_big \gset
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'e_big';
ROLLBACK;
BEGIN;
DROP INDEX shop.order_customer_idx;
SELECT shop.checkout(pg_temp.cart(8, :mug, 4), 'tok_visa', 'e-big') AS e_big \gset
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'e_big';
ROLLBACK;
-- the token's payments of the hour, with payment_token_idx and without it:
-- 3 of its 11 payments made older than an hour leave 8 (0.25)
SELECT count(*) AS alice_payments FROM shop.payment WHERE token = 'tok_visa_alice';
UPDATE shop.payment SET created_at = now() - interval '61 minutes'
 WHERE payment_id IN (SELECT payment_id FROM shop.payment WHERE token = 'tok_visa_alice'
                       ORDER BY payment_id LIMIT 3);
BEGIN;
SELECT shop.checkout(pg_temp.cart(9, :mug), 'tok_visa_alice', 't-1') AS t1 \gset
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'t1';
ROLLBACK;
BEGIN;
DROP INDEX shop.payment_token_idx;
SELECT shop.checkout(pg_temp.cart(9, :mug), 'tok_visa_alice', 't-1') AS t1 \gset
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'t1';
ROLLBACK;
-- a card tried again and again (card testing: 300 payments in the hour):
-- checkout's walk of the token's hour stops at 10, the rule's top tier,
-- instead of reading every attempt of the hour
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO shop.payment (order_id, customer_key, provider, token, card_brand, last4, status, amount_cents,
                          fraud_score, created_at, updated_at)
SELECT gen_random_uuid(), 10, 'test', 'tok_visa_tester', 'visa', '4242', 'failed', 100, 0,
       now() - g * interval '10 seconds', now() - g * interval '10 seconds'
  FROM generate_series(1, 300) g;
SET LOCAL session_replication_role = origin;
CREATE TEMP TABLE token_entries AS
SELECT pg_stat_get_xact_tuples_returned('shop.payment_token_idx'::regclass) AS n;
SELECT shop.checkout(pg_temp.cart(10, :mug), 'tok_visa_tester', 'ct-1') AS ct \gset
SELECT pg_stat_get_xact_tuples_returned('shop.payment_token_idx'::regclass) - n <= 11 AS at_most_11_entries
  FROM token_entries;
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'ct';
ROLLBACK;

-- a customer placing hundreds of orders in the hour (300 paid): the
-- walk of the customer's orders stops once it has the velocity rule's top
-- tier (10) and the 50 paid orders the history needs, instead of reading
-- every order of the hour; the statement (index dropped) scores the same
CREATE FUNCTION pg_temp.busy_customer() RETURNS void LANGUAGE sql AS $$
INSERT INTO shop."order" (customer_id, customer_key, status, currency, subtotal_cents, total_cents, was_paid,
                          created_at, updated_at)
SELECT 11, 11, 'paid', 'USD', 100000, 100000, true,
       now() - g * interval '10 seconds', now() - g * interval '10 seconds'
  FROM generate_series(1, 300) g;
$$;
BEGIN;
SET LOCAL session_replication_role = replica;
SELECT pg_temp.busy_customer();
SET LOCAL session_replication_role = origin;
CREATE TEMP TABLE customer_entries AS
SELECT pg_stat_get_xact_tuples_returned('shop.order_customer_idx'::regclass) AS n;
SELECT shop.checkout(pg_temp.cart(11, :mug), 'tok_visa', 'cv-1') AS cv \gset
SELECT pg_stat_get_xact_tuples_returned('shop.order_customer_idx'::regclass) - n <= 51 AS at_most_51_entries
  FROM customer_entries;
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'cv';
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
SELECT pg_temp.busy_customer();
SET LOCAL session_replication_role = origin;
DROP INDEX shop.order_customer_idx;
SELECT shop.checkout(pg_temp.cart(11, :mug), 'tok_visa', 'cv-1') AS cv \gset
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'cv';
ROLLBACK;

-- a customer with 3,000 orders never paid (cancelled before payment) newer
-- than its 60 paid ones: past 50 unpaid orders the walk of the customer's
-- orders gives up on the paid ones and reads them from
-- order_customer_paid_idx, so the checkout reads at most 151 entries of
-- shop.order's indexes (the hour's, up to 49 paid and 51 unpaid, then the
-- 50 paid) instead of passing over the 3,000 unpaid ones to reach them
-- (3,050 before); the same score by the statements (the C walk's index
-- dropped)
CREATE FUNCTION pg_temp.unpaid_customer() RETURNS void LANGUAGE sql AS $$
INSERT INTO shop."order" (customer_id, customer_key, status, currency, subtotal_cents, total_cents, was_paid,
                          created_at, updated_at)
SELECT 12, 12, 'paid', 'USD', 1000, 1000, true,
       now() - interval '3 hours' - g * interval '1 minute', now() - interval '3 hours'
  FROM generate_series(1, 60) g;
INSERT INTO shop."order" (customer_id, customer_key, status, currency, subtotal_cents, total_cents, was_paid,
                          created_at, updated_at)
SELECT 12, 12, 'cancelled', 'USD', 100, 100, false,
       now() - g * interval '2 seconds', now() - g * interval '2 seconds'
  FROM generate_series(1, 3000) g;
$$;
CREATE FUNCTION pg_temp.order_entries() RETURNS bigint LANGUAGE sql AS $$
SELECT sum(pg_stat_get_xact_tuples_returned(i.indexrelid))::bigint
  FROM pg_index i WHERE i.indrelid = 'shop."order"'::regclass
$$;
BEGIN;
SET LOCAL session_replication_role = replica;
SELECT pg_temp.unpaid_customer();
SET LOCAL session_replication_role = origin;
CREATE TEMP TABLE unpaid_entries AS SELECT pg_temp.order_entries() AS n;
SELECT shop.checkout(pg_temp.cart(12, :mug, 4), 'tok_visa', 'cu-1') AS cu \gset
SELECT pg_temp.order_entries() - n <= 151 AS at_most_151_entries FROM unpaid_entries;
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'cu';
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
SELECT pg_temp.unpaid_customer();
SET LOCAL session_replication_role = origin;
DROP INDEX shop.order_customer_idx;
SELECT shop.checkout(pg_temp.cart(12, :mug, 4), 'tok_visa', 'cu-1') AS cu \gset
SELECT fraud_score, fraud_reasons FROM shop."order" WHERE order_id = :'cu';
ROLLBACK;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
