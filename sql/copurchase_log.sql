-- copurchase_log: the rows the capture trigger (order_copurchase_capture)
-- writes to shop.copurchase_delta, the log the recommendation refresh and
-- the customers-like-you queue read.  1.1 runs it in C (issue 11); the
-- rows must be those of 1.0's PL/pgSQL function: one row when an order
-- starts or stops counting (paid, fulfilling, shipped, delivered), at
-- most one pending row per order and customer, and a not-counted row for
-- the old customer of an order moved to another.  The trigger fires at
-- commit, as the committing role (the storefront has no privileges on
-- the log).
\i sql/include/prelude.sql
-- only this script folds the log (the sweeper takes the same lock)
SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'CL-' || g, 'Log product ' || g, 1000 FROM generate_series(1, 3) g;
SELECT count(shop.stock_set(g, 1000)) AS stocked FROM generate_series(1, 3) g;
-- the log as a stable listing: orders by name, customers, counted
CREATE TEMP TABLE names (order_id uuid PRIMARY KEY, name text);
GRANT SELECT, INSERT ON names TO PUBLIC;
CREATE FUNCTION pg_temp.log() RETURNS TABLE (name text, customer_id bigint, counted boolean)
LANGUAGE sql AS $f$
    SELECT coalesce(n.name, d.order_id::text), d.customer_id, d.counted
      FROM shop.copurchase_delta d LEFT JOIN names n USING (order_id)
     ORDER BY d.logged_at, 1, 2
$f$;

-- a guest checkout by the storefront: paid, logged once at commit
SET ROLE shop_storefront;
SELECT shop.cart_create() AS guest_cart \gset
SELECT shop.cart_add(:'guest_cart', 1) IS NOT NULL AS added, shop.cart_add(:'guest_cart', 2) IS NOT NULL AS added;
INSERT INTO names SELECT shop.checkout(:'guest_cart', 'tok_visa', 'log-guest'), 'guest';
RESET ROLE;
SELECT * FROM pg_temp.log();

-- the back office: a customer's paid checkout, a pending one (not logged
-- until paid), a cancelled pending one (never logged)
SET ROLE shop_admin;
SELECT shop.cart_create(7) AS c7 \gset
SELECT shop.cart_add(:'c7', 1) IS NOT NULL AS added;
INSERT INTO names SELECT shop.checkout(:'c7', 'tok_visa', 'log-7a'), 'paid7';
SELECT shop.cart_add(:'c7', 3) IS NOT NULL AS added;
INSERT INTO names SELECT shop.checkout(:'c7', 'stripe:pm_log7', 'log-7b'), 'pending7';
SELECT shop.cart_add(:'c7', 2) IS NOT NULL AS added;
INSERT INTO names SELECT shop.checkout(:'c7', 'stripe:pm_log7c', 'log-7c'), 'dropped7';
RESET ROLE;
SELECT * FROM pg_temp.log();
SELECT order_id AS pending7 FROM names WHERE name = 'pending7' \gset
SELECT order_id AS paid7 FROM names WHERE name = 'paid7' \gset
SELECT order_id AS dropped7 FROM names WHERE name = 'dropped7' \gset
SET ROLE shop_admin;
SELECT shop.order_transition(:'dropped7', 'cancelled');
-- paid later: logged then, counted
SELECT shop.payment_confirm(:'pending7', 'ch_log7');
-- moving along the counted states logs nothing more
SELECT shop.order_transition(:'paid7', 'fulfilling'), shop.order_transition(:'paid7', 'shipped');
RESET ROLE;
SELECT * FROM pg_temp.log();

-- the log folded: a cancellation now logs a not-counted row
SELECT shop.refresh_recommendations() IS NOT NULL AS refreshed;
SELECT count(*) AS log_left FROM shop.copurchase_delta;
SET ROLE shop_admin;
SELECT shop.order_transition(:'pending7', 'cancelled');
-- and a delivery of a counted order logs nothing
SELECT shop.order_transition(:'paid7', 'delivered');
RESET ROLE;
SELECT * FROM pg_temp.log();
-- cancelling again before a refresh: the order has its pending row
-- already (a refund after a cancellation does not count either way)
SET ROLE shop_admin;
SELECT shop.order_transition(:'pending7', 'refunded');
RESET ROLE;
SELECT * FROM pg_temp.log();

-- an order moved to another customer (an import's correction): a row for
-- the new customer, and a not-counted one for the old
SELECT shop.refresh_recommendations() IS NOT NULL AS refreshed;
UPDATE shop."order" SET customer_id = 8 WHERE order_id = :'paid7';
SELECT * FROM pg_temp.log();
-- to a guest, and back: NULL is a customer of its own, once per order
UPDATE shop."order" SET customer_id = NULL WHERE order_id = :'paid7';
UPDATE shop."order" SET customer_id = 8 WHERE order_id = :'paid7';
SELECT * FROM pg_temp.log();
-- a not-counted order moved: a not-counted row for each of its customers
SELECT shop.refresh_recommendations() IS NOT NULL AS refreshed;
UPDATE shop."order" SET customer_id = 9 WHERE order_id = :'pending7';
SELECT * FROM pg_temp.log();
-- an update that changes neither status nor customer fires nothing
SELECT shop.refresh_recommendations() IS NOT NULL AS refreshed;
UPDATE shop."order" SET customer_id = 9, status = 'refunded' WHERE order_id = :'pending7';
SELECT count(*) AS log_rows FROM shop.copurchase_delta;

-- an order whose row is in the log already (as after a pg_restore, which
-- restores the log and then fires the trigger again): not logged twice
INSERT INTO shop.copurchase_delta (customer_id, order_id, counted)
VALUES (11, '00000000-0000-0000-0000-0000000000aa', true),
       (NULL, '00000000-0000-0000-0000-0000000000bb', true);
INSERT INTO names VALUES ('00000000-0000-0000-0000-0000000000aa', 'restored11'),
                         ('00000000-0000-0000-0000-0000000000bb', 'restoredguest'),
                         ('00000000-0000-0000-0000-0000000000cc', 'other12');
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents) VALUES
    ('00000000-0000-0000-0000-0000000000aa', 11, 'paid', 'USD', 0, 0),
    ('00000000-0000-0000-0000-0000000000bb', NULL, 'delivered', 'USD', 0, 0),
    ('00000000-0000-0000-0000-0000000000cc', 12, 'shipped', 'USD', 0, 0);
SELECT * FROM pg_temp.log();
-- rolled back: nothing logged
BEGIN;
INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents)
VALUES (13, 'paid', 'USD', 0, 0);
ROLLBACK;
SELECT count(*) AS log_rows FROM shop.copurchase_delta;
-- the refresh folds all of it: the orders counted now, with their
-- customers now
SELECT shop.refresh_recommendations() IS NOT NULL AS refreshed;
SELECT count(*) AS log_left FROM shop.copurchase_delta;
SELECT coalesce(n.name, o.order_id::text) AS name, o.customer_id
  FROM shop.copurchase_order o LEFT JOIN names n USING (order_id) ORDER BY 1;

-- a paid checkout logs its order in its own write statement (issue 11),
-- and the trigger adds nothing at commit: one row per paid order, also
-- when the order is cancelled in the same transaction, and none for a
-- checkout undone by a rollback to a savepoint (its cart's lines come
-- back, and a second checkout of them in the transaction is logged)
SET ROLE shop_admin;
SELECT shop.cart_create(14) AS c14 \gset
SELECT shop.cart_add(:'c14', 1) IS NOT NULL AS added;
BEGIN;
INSERT INTO names SELECT shop.checkout(:'c14', 'tok_visa', 'log-14a'), 'cancelled14';
SELECT shop.order_transition(order_id, 'cancelled') FROM names WHERE name = 'cancelled14';
COMMIT;
SELECT shop.cart_add(:'c14', 2) IS NOT NULL AS added;
BEGIN;
SAVEPOINT undo;
SELECT shop.checkout(:'c14', 'tok_visa', 'log-14b') IS NOT NULL AS undone;
ROLLBACK TO SAVEPOINT undo;
INSERT INTO names SELECT shop.checkout(:'c14', 'tok_visa', 'log-14c'), 'paid14';
COMMIT;
RESET ROLE;
SELECT * FROM pg_temp.log();
SELECT count(*) AS orders_14 FROM shop."order" WHERE customer_id = 14;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
