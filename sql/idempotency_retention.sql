-- idempotency keys expire (issue 11): shop.sweep() deletes the keys older
-- than shop.idempotency_retention, never those of sagas still in progress
\i sql/include/prelude.sql
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.product_upsert('MUG', 'Coffee mug', 1200) AS mug \gset
SELECT shop.stock_set(:mug, 100);
SELECT shop.session_token(301, '1 hour') AS tok \gset

-- the default, and who may change it
SELECT current_setting('shop.idempotency_retention') AS retention;
SELECT context, unit, min_val, max_val FROM pg_settings WHERE name = 'shop.idempotency_retention';
SET ROLE shop_admin;
SELECT pg_temp.err($$SET shop.idempotency_retention = '1d'$$) AS admin_set;
RESET ROLE;

-- three checkouts of customer 301 through the storefront, with keys old,
-- kept and new
SET ROLE shop_storefront;
SELECT shop.session_begin(:'tok') AS customer;
SELECT shop.cart_create(301) AS c_old \gset
SELECT shop.cart_add(:'c_old', :mug, 1);
SELECT shop.checkout(:'c_old', 'tok_visa', 'key-old') AS o_old \gset
SELECT shop.cart_create(301) AS c_kept \gset
SELECT shop.cart_add(:'c_kept', :mug, 2);
SELECT shop.checkout(:'c_kept', 'tok_visa', 'key-kept') AS o_kept \gset
SELECT shop.cart_create(301) AS c_new \gset
SELECT shop.cart_add(:'c_new', :mug, 3);
SELECT shop.checkout(:'c_new', 'tok_visa', 'key-new') AS o_new \gset
SELECT shop.session_end();
RESET ROLE;
-- a guest's key, and the key of a saga the router has not finished
SELECT shop.cart_create(NULL) AS c_guest \gset
SELECT shop.cart_add(:'c_guest', :mug, 1);
SELECT shop.checkout(:'c_guest', 'tok_visa', 'key-guest') AS o_guest \gset
SELECT shop.cart_create(302) AS c_saga \gset
SELECT shop.cart_add(:'c_saga', :mug, 1);
SELECT saga_status FROM shop._saga_begin('00000000-0000-4000-8000-0000000000aa', :'c_saga',
                                         'tok_visa', 'key-saga', NULL);

-- age the keys: old and guest by 31 days, kept by 29, the saga's by a year
UPDATE shop.idempotency SET created_at = now() - interval '31 days' WHERE key IN ('key-old', 'key-guest');
UPDATE shop.idempotency SET created_at = now() - interval '29 days' WHERE key = 'key-kept';
UPDATE shop.idempotency SET created_at = now() - interval '1 year' WHERE key = 'key-saga';

-- retention 0 keeps every key
SET shop.idempotency_retention = 0;
SELECT shop.sweep()->'idempotency_keys_expired' AS expired;
RESET shop.idempotency_retention;
-- the sweep (as the back office) deletes the keys older than 30 days, only
SET ROLE shop_admin;
SELECT shop.sweep()->'idempotency_keys_expired' AS expired;
RESET ROLE;
SELECT key FROM shop.idempotency ORDER BY key;
SELECT shop.sweep()->'idempotency_keys_expired' AS expired_again;

SET ROLE shop_storefront;
SELECT shop.session_begin(:'tok') AS customer;
-- a replay of a kept key returns its order, and makes nothing
SELECT shop.checkout(:'c_kept', 'tok_visa', 'key-kept') = :'o_kept' AS same_order;
-- a retry of an expired key for its own cart finds the cart checked out
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'key-old')$$, :'c_old')) AS retry_same_cart;
-- the expired key, before SH003 with another cart, now places a new order
SELECT shop.cart_create(301) AS c_again \gset
SELECT shop.cart_add(:'c_again', :mug, 1);
SELECT shop.checkout(:'c_again', 'tok_visa', 'key-old') AS o_again \gset
SELECT :'o_again' <> :'o_old' AS new_order;
SELECT shop.session_end();
RESET ROLE;
SELECT count(*) AS orders_of_301 FROM shop."order" WHERE customer_id = 301;
SELECT key, order_id = :'o_again' AS names_new_order FROM shop.idempotency WHERE key = 'key-old';

-- the saga's key goes once the saga is done
UPDATE shop.saga SET status = 'done' WHERE order_id = '00000000-0000-4000-8000-0000000000aa';
SELECT shop.sweep()->'idempotency_keys_expired' AS expired_saga;
SELECT count(*) AS saga_key FROM shop.idempotency WHERE key = 'key-saga';

-- the router's claim (shop._saga_begin) claims once more a key gone between
-- its claim and its read; a trigger that skips the key's row is 27000
-- (before: the saga came back 'done' without an order)
CREATE FUNCTION pg_temp.skip() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$;
CREATE TRIGGER skip BEFORE INSERT ON shop.idempotency FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT shop.cart_create(303) AS c_skip \gset
SELECT shop.cart_add(:'c_skip', :mug, 1);
SELECT pg_temp.err(format($$SELECT * FROM shop._saga_begin('00000000-0000-4000-8000-0000000000bb', %L,
                                                           'tok_visa', 'key-skip', NULL)$$, :'c_skip')) AS skipped;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'key-skip')$$, :'c_skip')) AS skipped_checkout;
DROP TRIGGER skip ON shop.idempotency;

-- batches of 1,000: 2,500 old keys take one sweep of three batches
INSERT INTO shop.idempotency (scope, key, fingerprint, order_id, customer_key, created_at)
SELECT 'c:999', 'bulk-' || g, md5(g::text), gen_random_uuid(), 999, now() - interval '40 days'
  FROM generate_series(1, 2500) g;
SELECT shop.sweep()->'idempotency_keys_expired' AS expired_bulk;
SELECT count(*) AS left_bulk FROM shop.idempotency WHERE key LIKE 'bulk-%';

-- the plan at production size reads idempotency_created_idx (1M keys)
BEGIN;
INSERT INTO shop.idempotency (scope, key, fingerprint, order_id, customer_key, created_at)
SELECT 'c:' || (g % 50000), 'k' || g, md5(g::text), gen_random_uuid(), g % 50000,
       now() - (g % 100) * interval '1 day'
  FROM generate_series(1, 1000000) g;
-- and a saga for a tenth of them, done but 10 (which the router has not finished)
INSERT INTO shop.saga (order_id, scope, key, cart_id, customer_id, product_ids, qtys, customer_key, status)
SELECT i.order_id, i.scope, i.key, gen_random_uuid(), i.customer_key, '{1}', '{1}', i.customer_key,
       CASE WHEN i.key LIKE '%00000' THEN 'started' ELSE 'done' END
  FROM shop.idempotency i WHERE i.key LIKE 'k%0';
ANALYZE shop.idempotency;
ANALYZE shop.saga;
EXPLAIN (COSTS OFF)
DELETE FROM shop.idempotency d
 WHERE d.ctid = ANY (ARRAY(
       SELECT i.ctid FROM shop.idempotency i
        WHERE i.created_at < now() - interval '30 days'
          AND NOT EXISTS (SELECT 1 FROM shop.saga g
                           WHERE g.order_id = i.order_id
                             AND g.customer_key = i.customer_key
                             AND g.status IN ('started', 'placed'))
        ORDER BY i.created_at
        LIMIT 1000
          FOR UPDATE OF i SKIP LOCKED));
ROLLBACK;
RESET shop.session_secret;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
