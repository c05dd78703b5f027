-- orders: checkout, idempotency, totals, the state machine and its side effects
\i sql/include/prelude.sql
-- stock of a product as "on_hand/reserved"
CREATE FUNCTION pg_temp.stock(p bigint) RETURNS text LANGUAGE sql AS $f$
    SELECT sum(on_hand) || '/' || sum(reserved) FROM shop.stock WHERE product_id = p
$f$;
-- the whole picture of one order in one line
CREATE FUNCTION pg_temp.summary(o uuid) RETURNS text LANGUAGE sql AS $f$
    SELECT format('%s paid=%s lines=%s payment=%s events=%s',
                  od.status, od.was_paid,
                  (SELECT count(*) FROM shop.order_line l WHERE l.order_id = o),
                  (SELECT string_agg(p.status, ',') FROM shop.payment p WHERE p.order_id = o),
                  (SELECT string_agg(e.to_status, '>' ORDER BY e.seq) FROM shop.order_event e WHERE e.order_id = o))
      FROM shop."order" od WHERE od.order_id = o
$f$;

SELECT shop.product_upsert('MUG', 'Coffee mug', 1200) AS mug \gset
SELECT shop.product_upsert('TEE', 'T-shirt', 2500) AS tee \gset
SELECT shop.product_upsert('CAP', 'Baseball cap', 1800) AS cap \gset
SELECT shop.stock_set(:mug, 10), shop.stock_set(:tee, 5), shop.stock_set(:cap, 1);

-- a cart with three lines and one saved for later
SELECT shop.cart_create(101) AS cart \gset
SELECT shop.cart_add(:'cart', :mug, 2), shop.cart_add(:'cart', :tee), shop.cart_add(:'cart', :cap);
SELECT shop.cart_add(:'cart', :tee);
SELECT shop.cart_set_qty(:'cart', :tee, 1);
SELECT shop.product_upsert('BAG', 'Tote bag', 900) AS bag \gset
SELECT shop.cart_add(:'cart', :bag);
SELECT shop.cart_save_for_later(:'cart', :bag);
-- the price of the mug changes after it was added: the order charges today's price
UPDATE shop.product SET price_cents = 1100 WHERE product_id = :mug;

SELECT shop.checkout(:'cart', 'tok_visa', 'order-1', '{"name": "Ada", "country": "US", "city": "Boston"}') AS o1 \gset
SELECT pg_temp.summary(:'o1');
SELECT status, customer_id, subtotal_cents, shipping_cents, tax_cents, total_cents, needs_review,
       currency, shipping_address->>'city' AS city
  FROM shop."order" WHERE order_id = :'o1';
SELECT line_no, sku, title, unit_price_cents, qty, reservation_id IS NOT NULL AS held
  FROM shop.order_line WHERE order_id = :'o1' ORDER BY line_no;
SELECT provider, card_brand, last4, status, amount_cents FROM shop.payment WHERE order_id = :'o1';
-- stock is held, not gone: on_hand/reserved
SELECT pg_temp.stock(:mug) AS mug, pg_temp.stock(:tee) AS tee, pg_temp.stock(:cap) AS cap;
SELECT status, expires_at = 'infinity' AS kept_until_shipped FROM shop.reservation
 WHERE reservation_id IN (SELECT reservation_id FROM shop.order_line WHERE order_id = :'o1') ORDER BY product_id;
-- the cart keeps only the saved-for-later line
SELECT shop.cart_get(:'cart')->'lines' AS lines,
       jsonb_array_length(shop.cart_get(:'cart')->'saved_for_later') AS saved;
-- outbox: created, then paid
SELECT topic, payload->>'order_id' = :'o1' AS this_order, payload->>'to' AS to_status
  FROM shop.event WHERE topic LIKE 'order.%' ORDER BY event_id;

-- idempotency: the same key and request returns the same order, doing nothing twice
SELECT shop.checkout(:'cart', 'tok_visa', 'order-1', '{"name": "Ada", "country": "US", "city": "Boston"}') = :'o1' AS same_order;
-- key order in the address does not matter (same jsonb)
SELECT shop.checkout(:'cart', 'tok_visa', 'order-1', '{"city": "Boston", "country": "US", "name": "Ada"}') = :'o1' AS same_order;
SELECT count(*) AS orders, (SELECT count(*) FROM shop.event) AS events, pg_temp.stock(:mug) AS mug FROM shop."order";
-- same key, different request: SH003
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_mastercard', 'order-1', '{"name": "Ada", "country": "US", "city": "Boston"}')$$, :'cart'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'order-1', '{"name": "Bob"}')$$, :'cart'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'order-1')$$, :'cart'));
-- the key belongs to the customer: another cart of the same customer with that key conflicts
SELECT shop.cart_create(101) AS cart1b \gset
SELECT shop.cart_add(:'cart1b', :mug);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'order-1')$$, :'cart1b'));
-- ... while another customer may use the same key string
SELECT shop.cart_create(102) AS cart2 \gset
SELECT shop.cart_add(:'cart2', :mug);
SELECT shop.checkout(:'cart2', 'tok_visa', 'order-1') <> :'o1' AS other_order;

-- empty cart (the checked-out cart holds only a saved line now): SH007
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'order-again')$$, :'cart'));
-- out of stock: SH001 and nothing kept
SELECT shop.cart_create() AS cart3 \gset
SELECT shop.cart_add(:'cart3', :mug), shop.cart_add(:'cart3', :cap);
SELECT count(*) AS orders_before FROM shop."order" \gset
SELECT pg_temp.stock(:mug) AS mug_before, pg_temp.stock(:cap) AS cap_before;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k3')$$, :'cart3'));
SELECT count(*) - :orders_before AS new_orders, pg_temp.stock(:mug) AS mug, pg_temp.stock(:cap) AS cap,
       (SELECT count(*) FROM shop.idempotency WHERE key = 'k3') AS keys
  FROM shop."order";
-- inactive product: SH008
SELECT shop.cart_remove(:'cart3', :cap);
UPDATE shop.product SET status = 'draft' WHERE product_id = :mug;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k3')$$, :'cart3'));
UPDATE shop.product SET status = 'active' WHERE product_id = :mug;
-- unknown, merged and expired carts: SH006
SELECT pg_temp.err($$SELECT shop.checkout('00000000-0000-0000-0000-000000000000', 'tok_visa', 'k4')$$);
SELECT shop.cart_create() AS cart4 \gset
SELECT shop.cart_add(:'cart4', :mug);
SELECT shop.cart_merge(:'cart4', 101) IS NOT NULL AS merged;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k4')$$, :'cart4'));
UPDATE shop.cart SET expires_at = now() - interval '1 minute' WHERE cart_id = :'cart3';
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k5')$$, :'cart3'));
-- their details name the cart's old expiry and the cart a merged one went
-- into (checkout's lock of the cart pushes the expiry of an open, live
-- cart only), and a checkout pushes its open cart's expiry forward
CREATE FUNCTION pg_temp.detail(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE d text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END $f$;
SELECT pg_temp.detail(format($$SELECT shop.checkout(%L, 'tok_visa', 'k5')$$, :'cart3'))
       = format('Cart %s expired at %s.', :'cart3',
                (SELECT expires_at FROM shop.cart WHERE cart_id = :'cart3')) AS expiry_named,
       pg_temp.detail(format($$SELECT shop.checkout(%L, 'tok_visa', 'k4')$$, :'cart4'))
       = format('Cart %s was merged into cart %s.', :'cart4',
                (SELECT merged_into FROM shop.cart WHERE cart_id = :'cart4')) AS merge_named;
SELECT shop.cart_create(102) AS cart5 \gset
SELECT shop.cart_add(:'cart5', :mug);
UPDATE shop.cart SET expires_at = now() + interval '1 hour', updated_at = now() - interval '1 day'
 WHERE cart_id = :'cart5';
SELECT shop.checkout(:'cart5', 'tok_visa', 'k6') AS o5 \gset
SELECT status, expires_at > now() + interval '29 days' AS pushed,
       updated_at > now() - interval '1 hour' AS touched
  FROM shop.cart WHERE cart_id = :'cart5';
SELECT shop.order_transition(:'o5', 'cancelled');
-- lines are numbered in product order, whatever order they were added
-- in; a line whose product left the catalog is SH008, and the cart keeps
-- its lines
SELECT shop.cart_create(103) AS cart6 \gset
SELECT shop.cart_add(:'cart6', :tee), shop.cart_add(:'cart6', :mug);
SELECT shop.product_upsert('GONE', 'Withdrawn', 500) AS gone \gset
SELECT shop.cart_add(:'cart6', :gone);
DELETE FROM shop.product WHERE product_id = :gone;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k7')$$, :'cart6')),
       pg_temp.detail(format($$SELECT shop.checkout(%L, 'tok_visa', 'k7')$$, :'cart6'))
       = format('Product %s in cart %s is no longer in the catalog.', :gone, :'cart6') AS detail_ok;
SELECT count(*) AS lines_kept FROM shop.cart_item WHERE cart_id = :'cart6';
DELETE FROM shop.cart_item WHERE cart_id = :'cart6' AND product_id = :gone;
SELECT shop.checkout(:'cart6', 'tok_visa', 'k8') AS o6 \gset
SELECT line_no, sku, qty FROM shop.order_line WHERE order_id = :'o6' ORDER BY line_no;
SELECT shop.order_transition(:'o6', 'cancelled');
-- bad arguments
SELECT pg_temp.err($$SELECT shop.checkout(NULL, 'tok_visa', 'k')$$);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, NULL, 'k')$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', NULL)$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', '')$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', repeat('k', 201))$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k', '"Boston"')$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k', '[1, 2]')$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k', jsonb_build_object('street', repeat('x', 5000)))$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'bogus', 'k')$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_unknown', 'k')$$, :'cart2'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'Bad Provider:x', 'k')$$, :'cart2'));

-- shipping and tax rules: free shipping from 50.00, a state tax
INSERT INTO shop.tax_rate (country, region, basis_points) VALUES ('US', 'MA', 625);
INSERT INTO shop.shipping_rate (country, min_subtotal_cents, cents) VALUES ('CA', 0, 1500);
SELECT shop._shipping_cents(4999, NULL) AS under_50, shop._shipping_cents(5000, NULL) AS from_50,
       shop._shipping_cents(100000, '{"country": "ca"}') AS canada,
       shop._tax_cents(10000, '{"country": "US", "region": "MA"}') AS ma,
       shop._tax_cents(10000, '{"country": "US", "state": "MA"}') AS ma_as_state,
       shop._tax_cents(10000, '{"country": "US", "region": "NH"}') AS nh;
-- the rules (src/orders.c, in C) against their statement in SQL, over
-- addresses of every shape and subtotals at and around each threshold,
-- halves to round, and products past an int64
BEGIN;
INSERT INTO shop.shipping_rate (country, min_subtotal_cents, cents)
VALUES ('US', 0, 700), ('US', 10000, 200), ('DE', 2500, 300);
INSERT INTO shop.tax_rate (country, region, basis_points)
VALUES ('US', NULL, 100), ('DE', NULL, 1900), ('US', 'NY', 5000), ('CA', 'QC', 9975);
WITH a(addr) AS (
    VALUES (NULL::jsonb), ('{}'), ('{"country": "US"}'), ('{"country": "us", "region": "MA"}'),
           ('{"country": "US", "state": "NY"}'), ('{"country": "US", "region": "NY", "state": "MA"}'),
           ('{"country": "US", "region": null, "state": "NY"}'), ('{"country": "US", "region": "ny"}'),
           ('{"country": "DE"}'), ('{"country": "CA", "region": "QC"}'), ('{"country": "ca"}'),
           ('{"country": "FR"}'), ('{"country": null}'), ('{"country": 12}'), ('{"country": ["US"]}')),
     s(sub) AS (
    VALUES (NULL::bigint), (-3), (-1), (0), (1), (3), (199), (2499), (2500), (4999), (5000), (9999),
           (10000), (10001), (123457), (922337203685477), (922337203685478), (9223372036854775807))
SELECT count(*) AS cases,
       count(*) FILTER (WHERE shop._shipping_cents(sub, addr) IS DISTINCT FROM coalesce((
           SELECT r.cents FROM shop.shipping_rate r
            WHERE (r.country IS NULL OR r.country = upper(addr->>'country'))
              AND r.min_subtotal_cents <= sub
            ORDER BY r.country IS NULL, r.min_subtotal_cents DESC LIMIT 1), 0)) AS shipping_differs,
       count(*) FILTER (WHERE shop._tax_cents(sub, addr) IS DISTINCT FROM coalesce((
           SELECT round(sub::numeric * r.basis_points / 10000)::bigint FROM shop.tax_rate r
            WHERE (r.country IS NULL OR r.country = upper(addr->>'country'))
              AND (r.region IS NULL OR r.region = coalesce(addr->>'region', addr->>'state'))
            ORDER BY r.country IS NULL, r.region IS NULL LIMIT 1), 0)) AS tax_differs,
       count(DISTINCT shop._tax_cents(sub, addr)) AS tax_values
  FROM a, s;
ROLLBACK;
-- the rules read their tables as a SELECT of the caller: the storefront,
-- which may not read the rate tables, may not ask them either
SET ROLE shop_storefront;
SELECT pg_temp.err($$SELECT shop._shipping_cents(100, NULL)$$) AS storefront_shipping,
       pg_temp.err($$SELECT shop._tax_cents(100, NULL)$$) AS storefront_tax;
RESET ROLE;
SELECT shop.cart_create(103) AS cart5 \gset
SELECT shop.cart_add(:'cart5', :tee);
SELECT shop.checkout(:'cart5', 'tok_visa', 'k5', '{"country": "US", "region": "MA"}') AS o5 \gset
SELECT subtotal_cents, shipping_cents, tax_cents, total_cents FROM shop."order" WHERE order_id = :'o5';
-- a DELETE trigger on the cart's lines sees checkout take them out (row and
-- statement triggers: checkout then leaves the lines to its DELETE statement)
BEGIN;
CREATE TEMP TABLE taken (product_id bigint, level text);
CREATE FUNCTION pg_temp.taken() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO taken VALUES (CASE WHEN TG_LEVEL = 'ROW' THEN OLD.product_id END, TG_LEVEL);
    RETURN OLD;
END $f$;
CREATE TRIGGER taken_row AFTER DELETE ON shop.cart_item FOR EACH ROW EXECUTE FUNCTION pg_temp.taken();
CREATE TRIGGER taken_stmt AFTER DELETE ON shop.cart_item FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.taken();
SELECT shop.cart_create(104) AS cart6 \gset
SELECT shop.cart_add(:'cart6', :tee);
SELECT shop.checkout(:'cart6', 'tok_visa', 'k6t') IS NOT NULL AS ordered;
SELECT level, count(*), count(*) FILTER (WHERE product_id = :tee) AS the_tee FROM taken GROUP BY level ORDER BY level;
ROLLBACK;
-- the cart's lock and the idempotency claim (shop's C, or their statements
-- when the table has a statement trigger): row triggers on shop.cart and
-- shop.idempotency fire as for the statements, with the values written;
-- a BEFORE trigger that skips the cart's update makes the cart not found,
-- as the statement does; one that skips the key's row is 27000 (it was an
-- internal XX000 "idempotency row vanished")
BEGIN;
CREATE TEMP TABLE fired (tbl text, level text, pushed boolean, scope text);
CREATE FUNCTION pg_temp.fired() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        INSERT INTO fired VALUES (TG_TABLE_NAME, TG_WHEN || ' ' || TG_LEVEL);
    ELSIF TG_TABLE_NAME = 'cart' THEN
        INSERT INTO fired VALUES (TG_TABLE_NAME, TG_WHEN || ' ' || TG_LEVEL,
                                  NEW.expires_at > OLD.expires_at AND NEW.updated_at = now());
    ELSE
        INSERT INTO fired VALUES (TG_TABLE_NAME, TG_WHEN || ' ' || TG_LEVEL, NULL, NEW.scope);
    END IF;
    RETURN NEW;
END $f$;
CREATE TRIGGER fired_b BEFORE UPDATE ON shop.cart FOR EACH ROW EXECUTE FUNCTION pg_temp.fired();
CREATE TRIGGER fired_a AFTER UPDATE OF expires_at ON shop.cart FOR EACH ROW EXECUTE FUNCTION pg_temp.fired();
CREATE TRIGGER fired_b BEFORE INSERT ON shop.idempotency FOR EACH ROW EXECUTE FUNCTION pg_temp.fired();
CREATE TRIGGER fired_a AFTER INSERT ON shop.idempotency FOR EACH ROW EXECUTE FUNCTION pg_temp.fired();
SELECT shop.cart_create(105) AS cart7 \gset
SELECT shop.cart_add(:'cart7', :tee);
UPDATE shop.cart SET expires_at = now() + interval '1 hour' WHERE cart_id = :'cart7';
DELETE FROM fired;
SELECT shop.checkout(:'cart7', 'tok_visa', 'k7t') IS NOT NULL AS ordered;
SELECT tbl, level, pushed, scope FROM fired ORDER BY tbl, level;
-- with statement triggers too: the statements, the same rows and the statement triggers
CREATE TRIGGER fired_s AFTER UPDATE ON shop.cart FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.fired();
CREATE TRIGGER fired_s AFTER INSERT ON shop.idempotency FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.fired();
SELECT shop.cart_create(106) AS cart8 \gset
SELECT shop.cart_add(:'cart8', :tee);
UPDATE shop.cart SET expires_at = now() + interval '1 hour' WHERE cart_id = :'cart8';
DELETE FROM fired;
SELECT shop.checkout(:'cart8', 'tok_visa', 'k8t') IS NOT NULL AS ordered;
SELECT tbl, level, pushed, scope FROM fired ORDER BY tbl, level;
DROP TRIGGER fired_s ON shop.cart;
DROP TRIGGER fired_s ON shop.idempotency;
-- a BEFORE trigger that skips the row
CREATE FUNCTION pg_temp.skip() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$;
CREATE TRIGGER skip BEFORE INSERT ON shop.idempotency FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT shop.cart_create(107) AS cart9 \gset
SELECT shop.cart_add(:'cart9', :tee);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k9t')$$, :'cart9')) AS key_skipped;
DROP TRIGGER skip ON shop.idempotency;
CREATE TRIGGER skip BEFORE UPDATE ON shop.cart FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k9t')$$, :'cart9')) AS cart_skipped;
DROP TRIGGER skip ON shop.cart;
-- a BEFORE trigger (a DBA's) that skips a row of the order or of its holds:
-- 27000 and nothing of the checkout kept (before: the checkout returned an
-- order without its row, lines, payment or history, or held units without
-- a reservation row, left reserved for ever); shop.reserve the same
CREATE FUNCTION pg_temp.kept() RETURNS text LANGUAGE sql AS $f$
    SELECT format('orders=%s lines=%s payments=%s history=%s holds=%s reserved=%s keys=%s',
                  (SELECT count(*) FROM shop."order"), (SELECT count(*) FROM shop.order_line),
                  (SELECT count(*) FROM shop.payment), (SELECT count(*) FROM shop.order_event),
                  (SELECT count(*) FROM shop.reservation), (SELECT sum(reserved) FROM shop.stock),
                  (SELECT count(*) FROM shop.idempotency))
$f$;
CREATE TEMP TABLE skipped (tbl text, result text, same boolean);
DO $d$
DECLARE
    t text;
    before text;
BEGIN
    FOREACH t IN ARRAY ARRAY['idempotency', 'order', 'order_line', 'payment', 'order_event', 'reservation'] LOOP
        EXECUTE format('CREATE TRIGGER skip BEFORE INSERT ON shop.%I FOR EACH ROW EXECUTE FUNCTION pg_temp.skip()', t);
        before := pg_temp.kept();
        INSERT INTO skipped
        SELECT t, pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', %L)$$,
                                     (SELECT cart_id FROM shop.cart WHERE customer_id = 107), 'k9-' || t)),
               pg_temp.kept() = before;
        EXECUTE format('DROP TRIGGER skip ON shop.%I', t);
    END LOOP;
END $d$;
SELECT tbl, result, same AS nothing_kept FROM skipped ORDER BY tbl;
CREATE TRIGGER skip BEFORE INSERT ON shop.reservation FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT pg_temp.kept() AS before \gset
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 1)', :tee)) AS reserve_skipped,
       pg_temp.kept() = :'before' AS nothing_kept;
DROP TRIGGER skip ON shop.reservation;
CREATE TRIGGER skip BEFORE UPDATE ON shop.stock FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 1)', :tee)) AS stock_skipped,
       pg_temp.kept() = :'before' AS nothing_kept;
DROP TRIGGER skip ON shop.stock;
-- the same checkout with no trigger left goes through
SELECT shop.checkout(:'cart9', 'tok_visa', 'k9t') AS o9 \gset
-- a BEFORE trigger that skips an order's transition: 27000, the history
-- and the order as they were (before: the server crashed, reading the
-- update's row that was not there)
CREATE TRIGGER skip BEFORE UPDATE ON shop."order" FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'fulfilling')$$, :'o9')) AS transition_skipped;
DROP TRIGGER skip ON shop."order";
SELECT status, event_count, (SELECT count(*) FROM shop.order_event e WHERE e.order_id = o.order_id) AS history
  FROM shop."order" o WHERE order_id = :'o9';
-- one that skips the transition's outbox row: the transition is made
-- without that event, as checkout's skipped rows are (the server crashed,
-- reading the INSERT's row that was not there); shop._emit gives NULL
CREATE TRIGGER skip BEFORE INSERT ON shop.event FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT (SELECT count(*) FROM shop.event) AS events_before \gset
SELECT shop.order_transition(:'o9', 'fulfilling') AS transition_event_skipped;
SELECT shop._emit('test.skipped', '{}') IS NULL AS emit_skipped;
DROP TRIGGER skip ON shop.event;
SELECT status, (SELECT count(*) FROM shop.event) - :events_before AS new_events
  FROM shop."order" WHERE order_id = :'o9';
ROLLBACK;

-- the order's rows (shop's C, or st_place's statement when one of its
-- tables has a statement trigger, here shop.event): row triggers on the
-- six tables fire in the statement's order, with the values and defaults
-- written; a saved payment method's brand and last4 go to the payment; a
-- guest's pending order; a CHECK constraint and a partial unique index
-- added to the tables give the statement's errors; a BEFORE trigger that
-- skips the order.paid outbox row leaves that event out
BEGIN;
CREATE TEMP SEQUENCE placed_n;
SELECT shop.product_upsert('PL1', 'Placed one', 700) AS plc1 \gset
SELECT shop.product_upsert('PL2', 'Placed two', 300) AS plc2 \gset
SELECT shop.stock_set(:plc1, 1000), shop.stock_set(:plc2, 1000);
CREATE TEMP TABLE placed (n int, how text, tbl text, level text, what text);
CREATE FUNCTION pg_temp.placed() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE
    j jsonb;
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        INSERT INTO placed VALUES (nextval('placed_n'), current_setting('shop_test.how'),
                                   TG_TABLE_NAME, TG_WHEN || ' ' || TG_LEVEL);
        RETURN NULL;
    END IF;
    j := to_jsonb(NEW);
    INSERT INTO placed VALUES (nextval('placed_n'), current_setting('shop_test.how'),
        TG_TABLE_NAME, TG_WHEN || ' ' || TG_LEVEL,
        CASE TG_TABLE_NAME
            WHEN 'event' THEN concat_ws(' ', j->>'topic', j->>'event_id' IS NOT NULL, j->>'tx' IS NOT NULL,
                                        (j->>'created_at')::timestamptz = now())
            WHEN 'copurchase_delta' THEN concat_ws(' ', j->>'counted', j->>'logged_at' IS NOT NULL)
            WHEN 'order_event' THEN concat_ws(' ', j->>'seq', j->>'from_status', j->>'to_status', j->>'note',
                                              j->>'customer_key' IS NOT NULL)
            WHEN 'payment' THEN concat_ws(' ', j->>'status', j->>'provider', j->>'card_brand', j->>'last4',
                                          j->>'amount_cents', j->>'payment_id' IS NOT NULL,
                                          j->>'customer_key' IS NOT NULL)
            WHEN 'order_line' THEN concat_ws(' ', j->>'line_no', j->>'sku', j->>'qty', j->>'unit_price_cents',
                                             j->>'reservation_id' IS NOT NULL, j->>'customer_key' IS NOT NULL)
            ELSE concat_ws(' ', j->>'status', j->>'event_count', j->>'was_paid', j->>'total_cents',
                           j->>'fraud_reasons', j->>'needs_review', j->>'customer_key' IS NOT NULL)
        END);
    RETURN NEW;
END $f$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['order', 'order_line', 'payment', 'order_event', 'copurchase_delta', 'event'] LOOP
        EXECUTE format('CREATE TRIGGER placed_b BEFORE INSERT ON shop.%I FOR EACH ROW EXECUTE FUNCTION pg_temp.placed()', t);
        EXECUTE format('CREATE TRIGGER placed_a AFTER INSERT ON shop.%I FOR EACH ROW EXECUTE FUNCTION pg_temp.placed()', t);
    END LOOP;
END $$;
SELECT shop.cart_create(110) AS pc1 \gset
SELECT shop.cart_add(:'pc1', :plc1), shop.cart_add(:'pc1', :plc2, 2);
SELECT set_config('shop_test.how', 'c', true);
SELECT shop.checkout(:'pc1', 'tok_visa', 'pk1') IS NOT NULL AS ordered;
CREATE TRIGGER placed_s AFTER INSERT ON shop.event FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.placed();
SELECT shop.cart_create(111) AS pc2 \gset
SELECT shop.cart_add(:'pc2', :plc1), shop.cart_add(:'pc2', :plc2, 2);
SELECT set_config('shop_test.how', 'statement', true);
SELECT shop.checkout(:'pc2', 'tok_visa', 'pk2') IS NOT NULL AS ordered;
-- the C rows beside the statement's, in firing order
SELECT k, c.tbl, c.level, c.what, s.tbl IS NOT DISTINCT FROM c.tbl AND s.level IS NOT DISTINCT FROM c.level
                                  AND s.what IS NOT DISTINCT FROM c.what AS same
  FROM (SELECT row_number() OVER (ORDER BY n) k, * FROM placed WHERE how = 'c') c
  FULL JOIN (SELECT row_number() OVER (ORDER BY n) k, * FROM placed
              WHERE how = 'statement' AND level NOT LIKE '%STATEMENT') s USING (k)
 ORDER BY k;
SELECT tbl, level, count(*) FROM placed WHERE level LIKE '%STATEMENT' GROUP BY 1, 2;
-- a saved payment method, a guest's pending order: with C, then with the statement
SELECT shop.payment_method_add(112, 'tok_visa_saved', 'amex', '1234', 12, 2030) IS NOT NULL AS saved;
SELECT shop.payment_method_add(113, 'tok_visa_saved', 'visa', NULL, 12, 2030) IS NOT NULL AS saved;
DROP TRIGGER placed_s ON shop.event;
SELECT shop.cart_create(112) AS pc3 \gset
SELECT shop.cart_add(:'pc3', :plc1);
SELECT shop.checkout(:'pc3', 'tok_visa_saved', 'pk3') AS po3 \gset
SELECT shop.cart_create() AS pc4 \gset
SELECT shop.cart_add(:'pc4', :plc1);
SELECT shop.checkout(:'pc4', 'stripe:pm_card_1', 'pk4') AS po4 \gset
CREATE TRIGGER placed_s AFTER INSERT ON shop.event FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.placed();
SELECT shop.cart_create(113) AS pc5 \gset
SELECT shop.cart_add(:'pc5', :plc1);
SELECT shop.checkout(:'pc5', 'tok_visa_saved', 'pk5') AS po5 \gset
SELECT shop.cart_create() AS pc6 \gset
SELECT shop.cart_add(:'pc6', :plc1);
SELECT shop.checkout(:'pc6', 'stripe:pm_card_1', 'pk6') AS po6 \gset
SELECT o.n, pg_temp.summary(o.id), p.card_brand, p.last4, od.customer_id, od.event_count,
       (SELECT string_agg(e.topic, ',' ORDER BY e.event_id) FROM shop.event e WHERE e.payload->>'order_id' = o.id::text) AS events
  FROM (VALUES (3, :'po3'::uuid), (4, :'po4'), (5, :'po5'), (6, :'po6')) o(n, id)
  JOIN shop.payment p ON p.order_id = o.id JOIN shop."order" od ON od.order_id = o.id
 ORDER BY o.n;
DROP TRIGGER placed_s ON shop.event;
-- a default changed after checkouts: the next checkout's row has the new one
ALTER TABLE shop.payment ALTER COLUMN failure_reason SET DEFAULT 'placed default';
SELECT shop.cart_create(119) AS pc12 \gset
SELECT shop.cart_add(:'pc12', :plc1);
SELECT shop.checkout(:'pc12', 'tok_visa', 'pk12') AS po12 \gset
SELECT failure_reason FROM shop.payment WHERE order_id = :'po12';
ALTER TABLE shop.payment ALTER COLUMN failure_reason DROP DEFAULT;
-- constraints added by the store: with C, then with the statement
ALTER TABLE shop.order_line ADD CONSTRAINT placed_small CHECK (qty < 3) NOT VALID;
CREATE UNIQUE INDEX placed_once ON shop.payment (token) WHERE token = 'tok_visa_once';
SELECT shop.cart_create(114) AS pc7 \gset
SELECT shop.cart_add(:'pc7', :plc2, 3);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'pk7')$$, :'pc7')) AS c_check;
SELECT shop.cart_create(115) AS pc8 \gset
SELECT shop.cart_add(:'pc8', :plc2);
SELECT shop.checkout(:'pc8', 'tok_visa_once', 'pk8') IS NOT NULL AS ordered;
SELECT shop.cart_create(116) AS pc9 \gset
SELECT shop.cart_add(:'pc9', :plc2);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa_once', 'pk9')$$, :'pc9')) AS c_unique;
CREATE TRIGGER placed_s AFTER INSERT ON shop.event FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.placed();
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'pk7')$$, :'pc7')) AS statement_check;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa_once', 'pk9')$$, :'pc9')) AS statement_unique;
DROP TRIGGER placed_s ON shop.event;
-- a BEFORE trigger that skips order.paid: the order is paid, its event is not written
CREATE FUNCTION pg_temp.skip_paid() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    RETURN CASE WHEN NEW.topic = 'order.paid' THEN NULL ELSE NEW END;
END $f$;
CREATE TRIGGER placed_skip BEFORE INSERT ON shop.event FOR EACH ROW EXECUTE FUNCTION pg_temp.skip_paid();
SELECT shop.cart_create(117) AS pc10 \gset
SELECT shop.cart_add(:'pc10', :plc2);
SELECT shop.checkout(:'pc10', 'tok_visa', 'pk10') AS po10 \gset
CREATE TRIGGER placed_s AFTER INSERT ON shop.event FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.placed();
SELECT shop.cart_create(118) AS pc11 \gset
SELECT shop.cart_add(:'pc11', :plc2);
SELECT shop.checkout(:'pc11', 'tok_visa', 'pk11') AS po11 \gset
SELECT o.n, pg_temp.summary(o.id),
       (SELECT string_agg(e.topic, ',' ORDER BY e.event_id) FROM shop.event e WHERE e.payload->>'order_id' = o.id::text) AS events
  FROM (VALUES (10, :'po10'::uuid), (11, :'po11')) o(n, id) ORDER BY o.n;
DROP TRIGGER placed_s ON shop.event;
-- a BEFORE trigger that rewrites a line: the row written and its index
-- entries hold the trigger's values, with C, then with the statement
CREATE FUNCTION pg_temp.rewrite_line() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    NEW.sku := 'rewritten-' || NEW.sku;
    NEW.title := upper(NEW.title);
    RETURN NEW;
END $f$;
CREATE TRIGGER placed_rewrite BEFORE INSERT ON shop.order_line FOR EACH ROW EXECUTE FUNCTION pg_temp.rewrite_line();
CREATE INDEX placed_sku ON shop.order_line (sku);
SELECT shop.cart_create(120) AS pc13 \gset
SELECT shop.cart_add(:'pc13', :plc1), shop.cart_add(:'pc13', :plc2);
SELECT shop.checkout(:'pc13', 'tok_visa', 'pk13') AS po13 \gset
CREATE TRIGGER placed_s AFTER INSERT ON shop.event FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.placed();
SELECT shop.cart_create(121) AS pc14 \gset
SELECT shop.cart_add(:'pc14', :plc1), shop.cart_add(:'pc14', :plc2);
SELECT shop.checkout(:'pc14', 'tok_visa', 'pk14') AS po14 \gset
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT l.line_no FROM shop.order_line l WHERE l.sku IN ('rewritten-PL1', 'rewritten-PL2');
SELECT CASE l.order_id WHEN :'po13' THEN 'c' WHEN :'po14' THEN 'statement' END AS how,
       l.line_no, l.sku, l.title
  FROM shop.order_line l WHERE l.sku IN ('rewritten-PL1', 'rewritten-PL2')
 ORDER BY 1, 2;
ROLLBACK;
-- a table replaced between two checkouts of one session (checkout keeps
-- the tables' ids per backend): the second checkout writes into the new
-- table, not the renamed one
BEGIN;
SELECT shop.product_upsert('PL3', 'Placed three', 500) AS plc3 \gset
SELECT shop.stock_set(:plc3, 100);
SELECT shop.cart_create(122) AS pc15 \gset
SELECT shop.cart_add(:'pc15', :plc3);
SELECT shop.checkout(:'pc15', 'tok_visa', 'pk15') AS po15 \gset
ALTER TABLE shop.copurchase_delta RENAME TO copurchase_delta_before;
CREATE TABLE shop.copurchase_delta (LIKE shop.copurchase_delta_before INCLUDING ALL);
SELECT shop.cart_create(123) AS pc16 \gset
SELECT shop.cart_add(:'pc16', :plc3);
SELECT shop.checkout(:'pc16', 'tok_visa', 'pk16') AS po16 \gset
SELECT t.tbl, count(*) FILTER (WHERE d.order_id = :'po15') AS first_order,
       count(*) FILTER (WHERE d.order_id = :'po16') AS second_order
  FROM (SELECT 'copurchase_delta_before' AS tbl, order_id FROM shop.copurchase_delta_before
        UNION ALL SELECT 'copurchase_delta', order_id FROM shop.copurchase_delta) d
  RIGHT JOIN (VALUES ('copurchase_delta_before'), ('copurchase_delta')) t(tbl) ON t.tbl = d.tbl
 GROUP BY t.tbl ORDER BY t.tbl;
ROLLBACK;

-- the state machine: paid -> fulfilling -> shipped -> delivered -> returned -> refunded
SELECT shop.order_transition(:'o1', 'fulfilling', 'picked');
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'delivered')$$, :'o1'));
SELECT shop.order_ship(:'o1', 'UPS', '1Z999AA10123456784');
SELECT carrier, tracking_number, shipped_at IS NOT NULL AS shipped_at FROM shop."order" WHERE order_id = :'o1';
-- shipping committed the holds: the units left the building
SELECT pg_temp.stock(:mug) AS mug, pg_temp.stock(:tee) AS tee, pg_temp.stock(:cap) AS cap;
SELECT DISTINCT status FROM shop.reservation
 WHERE reservation_id IN (SELECT reservation_id FROM shop.order_line WHERE order_id = :'o1');
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'cancelled')$$, :'o1'));
SELECT shop.order_transition(:'o1', 'delivered');
SELECT shop.order_transition(:'o1', 'returned', 'wrong size');
-- returned restocks every line
SELECT pg_temp.stock(:mug) AS mug, pg_temp.stock(:tee) AS tee, pg_temp.stock(:cap) AS cap;
SELECT shop.order_transition(:'o1', 'refunded');
SELECT pg_temp.summary(:'o1');
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'paid')$$, :'o1'));
-- the timeline and tracking in order_get
SELECT jsonb_path_query_array(d->'timeline', '$[*].to') AS timeline,
       d->'timeline'->3->>'note' AS ship_note,
       d->'tracking'->>'carrier' AS carrier, d->>'status' AS status,
       jsonb_array_length(d->'lines') AS lines, d->'total_cents' AS total,
       d->'payments'->0->>'status' AS payment
  FROM shop.order_get(:'o1') d;
SELECT topic FROM shop.event WHERE payload->>'order_id' = :'o1' ORDER BY event_id;

-- cancel from paid: the holds are released, the payment stays captured until refunded
SELECT pg_temp.stock(:tee) AS tee_before;
SELECT shop.order_transition(:'o5', 'cancelled', 'customer changed their mind');
SELECT pg_temp.stock(:tee) AS tee_after, pg_temp.summary(:'o5');
SELECT shop.order_transition(:'o5', 'refunded');
SELECT pg_temp.summary(:'o5');

-- every transition outside the table is SH002, naming both states
SELECT shop.cart_create(104) AS cart6 \gset
SELECT shop.cart_add(:'cart6', :mug);
SELECT shop.checkout(:'cart6', 'tok_visa', 'k6') AS o6 \gset
SELECT s AS to_status, pg_temp.err(format($$SELECT shop.order_transition(%L, %L)$$, :'o6', s)) AS result
  FROM unnest(ARRAY['pending', 'paid', 'shipped', 'delivered', 'returned', 'refunded']) s;
SELECT pg_temp.summary(:'o6');
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'lost')$$, :'o6'));
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, NULL)$$, :'o6'));
SELECT pg_temp.err($$SELECT shop.order_transition(NULL, 'paid')$$);
SELECT pg_temp.err($$SELECT shop.order_transition('00000000-0000-0000-0000-000000000000', 'paid')$$);
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'fulfilling', repeat('n', 1001))$$, :'o6'));
SELECT pg_temp.err(format($$SELECT shop.order_ship(%L, NULL, 'x')$$, :'o6'));
SELECT pg_temp.err(format($$SELECT shop.order_ship(%L, 'UPS', '')$$, :'o6'));
SELECT pg_temp.err(format($$SELECT shop.order_ship(%L, 'UPS', '1Z')$$, :'o6'));  -- paid, not fulfilling
SELECT pg_temp.summary(:'o6');
-- an order cancelled before payment cannot be refunded (gateway flow: pending)
SELECT shop.cart_create(105) AS cart7 \gset
SELECT shop.cart_add(:'cart7', :mug);
SELECT shop.checkout(:'cart7', 'stripe:pm_card_1', 'k7') AS o7 \gset
SELECT shop.order_transition(:'o7', 'cancelled');
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'refunded')$$, :'o7'));
SELECT pg_temp.summary(:'o7');

-- orders_for: newest first, keyset pages with before
SELECT count(*) AS n FROM shop.orders_for(101);
SELECT shop.cart_create(101) AS c8 \gset
SELECT shop.cart_add(:'c8', :cap);
-- the returned cap can be sold again
SELECT shop.checkout(:'c8', 'tok_visa', 'k8') IS NOT NULL AS sold_again;
SELECT order_id = :'o1' AS is_o1, status, total_cents, item_count FROM shop.orders_for(101) ORDER BY created_at;
SELECT count(*) AS page2 FROM shop.orders_for(101, 1, (SELECT max(created_at) FROM shop."order" WHERE customer_id = 101));
SELECT count(*) AS none FROM shop.orders_for(999);
SELECT pg_temp.err($$SELECT * FROM shop.orders_for(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.orders_for(101, 0)$$);
SELECT pg_temp.err($$SELECT * FROM shop.orders_for(101, 1001)$$);
SELECT pg_temp.err($$SELECT shop.order_get(NULL)$$);
SELECT pg_temp.err($$SELECT shop.order_get('00000000-0000-0000-0000-000000000000')$$);

-- an order imported with its own history (event_count left at 0) moves on safely
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents, was_paid)
VALUES ('00000000-0000-4000-8000-000000000001', 106, 'delivered', 'USD', 1000, 1000, true);
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
VALUES ('00000000-0000-4000-8000-000000000001', 1, :mug, 'MUG', 'Coffee mug', 1000, 1);
INSERT INTO shop.order_event (order_id, seq, from_status, to_status, note)
VALUES ('00000000-0000-4000-8000-000000000001', 1, NULL, 'delivered', 'imported');
SELECT shop.order_transition('00000000-0000-4000-8000-000000000001', 'returned');
SELECT seq, to_status FROM shop.order_event WHERE order_id = '00000000-0000-4000-8000-000000000001' ORDER BY seq;

-- invariants over everything above
SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shop.order_line l WHERE l.order_id = o.order_id)) AS without_lines,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shop.payment p WHERE p.order_id = o.order_id)) AS without_payment,
       count(*) FILTER (WHERE o.event_count <> (SELECT count(*) FROM shop.order_event e WHERE e.order_id = o.order_id)) AS event_mismatch
  FROM shop."order" o WHERE o.idempotency_key IS NOT NULL;    -- the orders checkout made
SELECT count(*) AS stock_mismatch FROM shop.stock s
 WHERE s.reserved <> coalesce((SELECT sum(r.qty) FROM shop.reservation r
                                WHERE r.product_id = s.product_id AND r.location = s.location
                                  AND r.bucket = s.bucket AND r.status = 'held'), 0);

-- a 500-line cart checks out with a handful of transaction ids: its holds
-- are taken by one statement in one subtransaction, not a subtransaction
-- per line (past 64 a backend's subtransaction cache overflows, which
-- slows every snapshot of every session)
SELECT count(shop.product_upsert('BIG-' || g, 'Bulk item ' || g, 100)) FROM generate_series(1, 500) g;
SELECT count(shop.stock_set(product_id, 10)) FROM shop.product WHERE sku LIKE 'BIG-%';
SELECT shop.cart_create(9999) AS big \gset
SELECT count(shop.cart_add(:'big', product_id)) FROM shop.product WHERE sku LIKE 'BIG-%';
SELECT txid_current() AS xid_before \gset
SELECT shop.checkout(:'big', 'tok_visa', 'big-cart') IS NOT NULL AS ordered;
SELECT txid_current() - :xid_before <= 5 AS few_xids,
       (SELECT count(*) FROM shop.order_line l JOIN shop."order" o USING (order_id)
         WHERE o.idempotency_key = 'big-cart') AS lines,
       (SELECT count(*) FROM shop.reservation WHERE status = 'held' AND ref =
               (SELECT 'order:' || order_id FROM shop."order" WHERE idempotency_key = 'big-cart')) AS holds;

-- the router's checkout places lines at its caller's prices: without the
-- amount CHECKs of order, order_line and payment (1.1), shop._saga_place
-- refuses a negative price or a quantity below 1 itself, writing nothing
SELECT shop.cart_create(9998) AS sagacart \gset
SELECT shop.cart_add(:'sagacart', :mug);
SELECT count(*) FROM shop._saga_begin('00000000-0000-4000-8000-0000000000aa', :'sagacart', 'tok_visa', 'saga-neg', NULL);
SELECT pg_temp.err(format($$SELECT shop._saga_place('00000000-0000-4000-8000-0000000000aa', ARRAY[%s]::bigint[], ARRAY['MUG'], ARRAY['Mug'], ARRAY[-1000]::bigint[], ARRAY[1], 'tok_visa', NULL)$$, :mug));
SELECT pg_temp.err(format($$SELECT shop._saga_place('00000000-0000-4000-8000-0000000000aa', ARRAY[%s]::bigint[], ARRAY['MUG'], ARRAY['Mug'], ARRAY[1000]::bigint[], ARRAY[0], 'tok_visa', NULL)$$, :mug));
SELECT count(*) AS orders_written FROM shop."order" WHERE order_id = '00000000-0000-4000-8000-0000000000aa';
SELECT shop._saga_place('00000000-0000-4000-8000-0000000000aa', ARRAY[:mug]::bigint[], ARRAY['MUG'], ARRAY['Mug'],
                        ARRAY[1000]::bigint[], ARRAY[1], 'tok_visa', NULL) AS placed;

-- shop's C writers keep the planned CHECK constraints and partial-index
-- predicates of the tables they write per backend (src/spi.c): a CHECK
-- or a partial index added, dropped or changed between two checkouts of
-- one session applies to the next checkout
SELECT shop.product_upsert('PEN', 'Pen', 100) AS pen \gset
SELECT shop.stock_set(:pen, 100);
CREATE FUNCTION pg_temp.pen_checkout(customer bigint, pen bigint, k text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE c uuid := shop.cart_create(customer);
BEGIN
    PERFORM shop.cart_add(c, pen);
    RETURN pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', %L)$$, c, k));
END $f$;
SELECT pg_temp.pen_checkout(201, :pen, 'pen-1') AS before_check;
ALTER TABLE shop."order" ADD CONSTRAINT order_pen_test CHECK (total_cents < 1000000) NOT VALID;
SELECT pg_temp.pen_checkout(201, :pen, 'pen-2a') AS check_added;
-- (as many CHECKs as before, one of them another)
ALTER TABLE shop."order" DROP CONSTRAINT order_pen_test,
                         ADD CONSTRAINT order_pen_test CHECK (total_cents < 50) NOT VALID;
SELECT pg_temp.pen_checkout(201, :pen, 'pen-2') AS check_replaced;
ALTER TABLE shop."order" DROP CONSTRAINT order_pen_test;
SELECT pg_temp.pen_checkout(201, :pen, 'pen-3') AS check_dropped;
-- a CHECK calling a SQL function (inlined when the CHECK is planned), the function replaced
CREATE FUNCTION public.orders_pen_cap(bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 < 1000000 $f$;
ALTER TABLE shop."order" ADD CONSTRAINT order_pen_cap CHECK (public.orders_pen_cap(total_cents));
SELECT pg_temp.pen_checkout(201, :pen, 'pen-4') AS cap_check;
CREATE OR REPLACE FUNCTION public.orders_pen_cap(bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 < 50 $f$;
SELECT pg_temp.pen_checkout(201, :pen, 'pen-5') AS cap_replaced;
ALTER TABLE shop."order" DROP CONSTRAINT order_pen_cap;
DROP FUNCTION public.orders_pen_cap(bigint);
-- shop.stock's CHECKs (the hold's update)
ALTER TABLE shop.stock ADD CONSTRAINT stock_pen_test CHECK (product_id <> :pen OR reserved <= 0) NOT VALID;
SELECT pg_temp.pen_checkout(201, :pen, 'pen-6') AS stock_check_added;
ALTER TABLE shop.stock DROP CONSTRAINT stock_pen_test;
SELECT pg_temp.pen_checkout(201, :pen, 'pen-7') AS stock_check_dropped;
-- partial unique indexes on shop."order": one whose predicate the new orders miss, one they match
SELECT pg_temp.pen_checkout(202, :pen, 'pen-8') AS first_order;
CREATE UNIQUE INDEX order_pen_other_idx ON shop."order" (customer_id) WHERE customer_id = 202 AND status = 'refunded';
SELECT pg_temp.pen_checkout(202, :pen, 'pen-9') AS other_predicate;
CREATE UNIQUE INDEX order_pen_one_idx ON shop."order" (customer_id) WHERE customer_id = 203;
SELECT pg_temp.pen_checkout(203, :pen, 'pen-10') AS index_added_first;
SELECT pg_temp.pen_checkout(203, :pen, 'pen-11') AS index_added_second;
DROP INDEX shop.order_pen_one_idx;
DROP INDEX shop.order_pen_other_idx;
SELECT pg_temp.pen_checkout(203, :pen, 'pen-12') AS index_dropped;
-- shop's C writers also keep each index's IndexInfo and the tables'
-- trigger WHEN clauses per backend (src/spi.c).  An index not yet ready
-- for inserts (as CREATE INDEX CONCURRENTLY leaves it in its first phase)
-- gets no entries; once ready, the next checkout's row goes into it: the
-- third order of customer 204 is refused by the unique index (the first,
-- written while it was not ready, is not in it)
CREATE UNIQUE INDEX order_pen_ready_idx ON shop."order" (customer_id) WHERE customer_id = 204;
UPDATE pg_index SET indisready = false, indisvalid = false
 WHERE indexrelid = 'shop.order_pen_ready_idx'::regclass;
SELECT pg_temp.pen_checkout(204, :pen, 'pen-13') AS index_not_ready;
UPDATE pg_index SET indisready = true, indisvalid = true
 WHERE indexrelid = 'shop.order_pen_ready_idx'::regclass;
SELECT pg_temp.pen_checkout(204, :pen, 'pen-14') AS index_ready;
SELECT pg_temp.pen_checkout(204, :pen, 'pen-15') AS index_ready_second;
DROP INDEX shop.order_pen_ready_idx;
-- a trigger's WHEN clause calling a SQL function (inlined when planned),
-- the function replaced between checkouts: the next checkout fires the
-- trigger by the new body
CREATE TABLE public.pen_fired (customer_id bigint, idempotency_key text);
CREATE FUNCTION public.pen_when(bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 = 205 $f$;
CREATE FUNCTION public.pen_fire() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.pen_fired VALUES (NEW.customer_id, NEW.idempotency_key);
    RETURN NULL;
END $f$;
CREATE TRIGGER order_pen_when AFTER INSERT ON shop."order"
    FOR EACH ROW WHEN (public.pen_when(NEW.customer_id)) EXECUTE FUNCTION public.pen_fire();
SELECT pg_temp.pen_checkout(205, :pen, 'pen-16') AS when_205;
SELECT pg_temp.pen_checkout(206, :pen, 'pen-17') AS when_206;
CREATE OR REPLACE FUNCTION public.pen_when(bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 = 206 $f$;
SELECT pg_temp.pen_checkout(205, :pen, 'pen-18') AS replaced_205;
SELECT pg_temp.pen_checkout(206, :pen, 'pen-19') AS replaced_206;
-- the trigger disabled, then dropped and made again with another clause
ALTER TABLE shop."order" DISABLE TRIGGER order_pen_when;
SELECT pg_temp.pen_checkout(206, :pen, 'pen-20') AS disabled_206;
ALTER TABLE shop."order" ENABLE TRIGGER order_pen_when;
DROP TRIGGER order_pen_when ON shop."order";
CREATE TRIGGER order_pen_when AFTER INSERT ON shop."order"
    FOR EACH ROW WHEN (NEW.customer_id = 207) EXECUTE FUNCTION public.pen_fire();
SELECT pg_temp.pen_checkout(206, :pen, 'pen-21') AS recreated_206;
SELECT pg_temp.pen_checkout(207, :pen, 'pen-22') AS recreated_207;
SELECT * FROM public.pen_fired ORDER BY idempotency_key;
DROP TRIGGER order_pen_when ON shop."order";
-- the trigger functions' lookups are kept per backend too (src/spi.c): a
-- row trigger's function replaced between checkouts of one session runs
-- by its new body, and by its new language (an internal function meant
-- for UPDATE only, which refuses the payment's INSERT; its checkout rolls
-- back)
CREATE FUNCTION public.pen_brand() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.pen_fired VALUES (NEW.amount_cents, 'brand-one');
    RETURN NEW;
END $f$;
CREATE TRIGGER payment_pen_brand BEFORE INSERT ON shop.payment
    FOR EACH ROW EXECUTE FUNCTION public.pen_brand();
SELECT pg_temp.pen_checkout(208, :pen, 'pen-23') AS fn_first;
CREATE OR REPLACE FUNCTION public.pen_brand() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.pen_fired VALUES (NEW.amount_cents, 'brand-two');
    RETURN NEW;
END $f$;
SELECT pg_temp.pen_checkout(208, :pen, 'pen-24') AS fn_replaced;
CREATE OR REPLACE FUNCTION public.pen_brand() RETURNS trigger LANGUAGE internal
    AS 'suppress_redundant_updates_trigger';
SELECT pg_temp.pen_checkout(208, :pen, 'pen-25') AS fn_internal;
DROP TRIGGER payment_pen_brand ON shop.payment;
SELECT pg_temp.pen_checkout(208, :pen, 'pen-26') AS fn_dropped;
SELECT idempotency_key, count(*) FROM public.pen_fired WHERE idempotency_key LIKE 'brand-%'
 GROUP BY 1 ORDER BY 1;
SELECT count(*) AS fn_orders FROM shop."order" WHERE customer_id = 208;
DROP TABLE public.pen_fired;
DROP FUNCTION public.pen_when(bigint), public.pen_fire(), public.pen_brand();
SELECT count(*) AS pen_orders, count(DISTINCT customer_id) AS customers
  FROM shop."order" WHERE idempotency_key LIKE 'pen-%';

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
