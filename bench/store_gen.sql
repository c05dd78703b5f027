-- bench/store_gen.sql: a store at production size, written straight into
-- shop's tables with set-based SQL (minutes, not hours): the history a busy
-- shop has after a season, so that plans and costs can be looked at as
-- they will be on Black Friday.  Used by bench/plan_audit.sh and by the
-- checkout_growth workload; run it on a database with shop installed.
--
--   psql -v products=1000000 -v customers=1000000 -v orders=2000000 \
--        -v unshipped=400000 -v max_lines=4 -f bench/store_gen.sql
--
-- products   catalog size: products 1..products are created when missing
--            (an existing catalog, e.g. the bench's, is kept), each with
--            1,000,000 units on hand at location 'default'
-- customers  customers 1..customers own the orders, 1 to 6 each
-- orders     orders in all, created over the last 90 days; each has 1 to
--            max_lines lines of random products, a captured payment, its events and
--            outbox rows, an idempotency key; 'delivered' with committed
--            holds, except
-- unshipped  the newest orders, 'paid' and not shipped: their holds are
--            'held' with expires_at = infinity, as checkout leaves them
--            (about (1 + max_lines) / 2 held reservations per order)
--
-- live       when set (-v live=1), then bench/store_gen_live.sql: what a
--            running shop holds besides its history, the open carts' lines
--            and a running experiment with its impressions
--
-- Everything is written with session_replication_role = replica: no
-- trigger (foreign keys, the SKU registry, the co-purchase capture) fires;
-- the script keeps what those would keep (product_sku, in_stock, reserved
-- = sum of held holds) itself.  The secondary indexes of the tables it
-- fills are dropped first and built again at the end (same definitions),
-- which is several times faster than maintaining them row by row.  It ends
-- with VACUUM ANALYZE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET session_replication_role = replica;
SET synchronous_commit = off;
SET maintenance_work_mem = '1GB';

\echo store_gen: dropping secondary indexes
CREATE TEMP TABLE sg_index AS
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid IN ('shop.product'::regclass, 'shop.stock'::regclass, 'shop."order"'::regclass,
                      'shop.order_line'::regclass, 'shop.reservation'::regclass,
                      'shop.payment'::regclass, 'shop.order_event'::regclass,
                      'shop.idempotency'::regclass, 'shop.event'::regclass, 'shop.cart'::regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid);
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM sg_index LOOP
        EXECUTE format('DROP INDEX shop.%I', r.name);
    END LOOP;
END
$$;

\echo store_gen: products
INSERT INTO shop.product (product_id, sku, title, price_cents, in_stock)
SELECT g, 'SG-' || g, 'Store product ' || g, 100 + (g::bigint * 7919) % 50000, true
  FROM generate_series(1, :products) g
 WHERE NOT EXISTS (SELECT 1 FROM shop.product p WHERE p.product_id = g);
INSERT INTO shop.product_sku (sku, product_id)
SELECT p.sku, p.product_id FROM shop.product p
 WHERE NOT EXISTS (SELECT 1 FROM shop.product_sku s WHERE s.sku = p.sku);
SELECT setval(pg_get_serial_sequence('shop.product', 'product_id'),
              greatest((SELECT max(product_id) FROM shop.product), 1));
INSERT INTO shop.stock (product_id, location, bucket, on_hand, reserved)
SELECT p.product_id, 'default', 0, 1000000, 0 FROM shop.product p
 WHERE p.product_id <= :products
ON CONFLICT (product_id, location, bucket) DO UPDATE SET on_hand = 1000000, reserved = 0;
UPDATE shop.product SET in_stock = true WHERE product_id <= :products AND NOT in_stock;

\echo store_gen: orders
-- order i (1..orders): customer 1 + hash(i) % customers, created i seconds
-- apart ending now, lines 1 + i % 4; the last :unshipped ones are paid
CREATE TEMP TABLE sg_order AS
SELECT i, gen_random_uuid() AS order_id,
       1 + (i::bigint * 2654435761) % :customers AS customer_id,
       now() - make_interval(secs => (:orders - i) * (90 * 86400.0 / :orders)) AS created_at,
       1 + i % :max_lines AS nlines,
       i > :orders - :unshipped AS unshipped
  FROM generate_series(1, :orders) i;
CREATE TEMP TABLE sg_line AS
SELECT o.i, o.order_id, l AS line_no,
       1 + ((o.i::bigint * 40503 + l * 2654435761) % :products) AS product_id,
       1 + (o.i + l) % 3 AS qty, o.unshipped, o.created_at,
       gen_random_uuid() AS reservation_id
  FROM sg_order o, generate_series(1, o.nlines) l;
-- two lines of one order on one product: keep the first (one hold per
-- product and order, as reserve_many makes them)
DELETE FROM sg_line a USING sg_line b
 WHERE a.order_id = b.order_id AND a.product_id = b.product_id AND a.line_no > b.line_no;

INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents, shipping_cents,
                          tax_cents, total_cents, fraud_score, was_paid, idempotency_key,
                          event_count, created_at, updated_at, shipped_at, carrier, tracking_number)
SELECT o.order_id, o.customer_id, o.customer_id, CASE WHEN o.unshipped THEN 'paid' ELSE 'delivered' END, 'USD',
       5000, 0, 0, 5000, 0, true, 'sg-' || o.i, CASE WHEN o.unshipped THEN 2 ELSE 4 END,
       o.created_at, o.created_at,
       CASE WHEN NOT o.unshipped THEN o.created_at + interval '1 day' END,
       CASE WHEN NOT o.unshipped THEN 'UPS' END,
       CASE WHEN NOT o.unshipped THEN '1Z' || o.i END
  FROM sg_order o;
INSERT INTO shop.order_line (order_id, customer_key, line_no, product_id, sku, title, unit_price_cents, qty, reservation_id)
SELECT l.order_id, o.customer_id, l.line_no, l.product_id, 'SG-' || l.product_id, 'Store product ' || l.product_id,
       1000, l.qty, l.reservation_id
  FROM sg_line l JOIN sg_order o USING (order_id);
INSERT INTO shop.reservation (product_id, reservation_id, part, location, bucket, qty, status, ref,
                              created_at, expires_at)
SELECT l.product_id, l.reservation_id, 0, 'default', 0, l.qty,
       CASE WHEN l.unshipped THEN 'held' ELSE 'committed' END, 'order:' || l.order_id,
       l.created_at, CASE WHEN l.unshipped THEN 'infinity' ELSE l.created_at + interval '15 minutes' END
  FROM sg_line l;
INSERT INTO shop.payment (order_id, customer_key, provider, token, card_brand, last4, status, amount_cents,
                          fraud_score, created_at, updated_at)
SELECT o.order_id, o.customer_id, 'test', 'tok_visa_' || o.customer_id, 'visa', '4242', 'captured', 5000, 0,
       o.created_at, o.created_at
  FROM sg_order o;
INSERT INTO shop.order_event (order_id, customer_key, seq, from_status, to_status, note, at)
SELECT o.order_id, o.customer_id, s.seq, s.f, s.t, 'store_gen', o.created_at
  FROM sg_order o,
       LATERAL (VALUES (1, NULL, 'pending'), (2, 'pending', 'paid'),
                       (3, 'paid', 'shipped'), (4, 'shipped', 'delivered')) s(seq, f, t)
 WHERE s.seq <= CASE WHEN o.unshipped THEN 2 ELSE 4 END;
INSERT INTO shop.idempotency (scope, key, customer_key, fingerprint, order_id, created_at)
SELECT 'c:' || o.customer_id, 'sg-' || o.i, o.customer_id, md5(o.i::text), o.order_id, o.created_at FROM sg_order o;
INSERT INTO shop.event (topic, payload, created_at)
SELECT t, jsonb_build_object('order_id', o.order_id, 'customer_id', o.customer_id), o.created_at
  FROM sg_order o, unnest(ARRAY['order.created', 'order.paid']) t
 ORDER BY o.i;
INSERT INTO shop.cart (cart_id, customer_id, customer_key, created_at, updated_at, expires_at)
SELECT gen_random_uuid(), c, c, now() - interval '1 day', now() - interval '1 day', now() + interval '29 days'
  FROM generate_series(1, least(:customers, :orders)) c;

\echo store_gen: stock.reserved = held units
UPDATE shop.stock s SET reserved = h.q
  FROM (SELECT product_id, sum(qty)::int AS q FROM sg_line WHERE unshipped GROUP BY 1) h
 WHERE s.product_id = h.product_id AND s.location = 'default' AND s.bucket = 0;
DROP TABLE sg_order, sg_line;
RESET session_replication_role;

\echo store_gen: building the secondary indexes
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM sg_index LOOP
        EXECUTE r.def;
    END LOOP;
END
$$;
DROP TABLE sg_index;

\echo store_gen: VACUUM ANALYZE
VACUUM ANALYZE shop.product, shop.product_sku, shop.stock, shop."order", shop.order_line,
    shop.reservation, shop.payment, shop.order_event, shop.idempotency, shop.event, shop.cart;
SELECT format('store_gen: %s products, %s orders (%s paid, unshipped), %s held reservations, %s order lines',
              (SELECT count(*) FROM shop.product), (SELECT count(*) FROM shop."order"),
              (SELECT count(*) FROM shop."order" WHERE status = 'paid'),
              (SELECT count(*) FROM shop.reservation WHERE status = 'held'),
              (SELECT count(*) FROM shop.order_line)) AS summary;
-- with -v live=1 (bench/plan_audit.sh): the open carts' lines and an experiment
\if :{?live}
\ir store_gen_live.sql
\endif
