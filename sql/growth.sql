-- growth: what one call of the transactional core reads does not grow with
-- the store (issue 11).  A new shop: 40 products, analyzed while small (as
-- autovacuum does soon after CREATE EXTENSION); every call is made several
-- times, so this backend plans and caches its statements on the small
-- store; then the store grows to 20,000 more products and 20,000 paid,
-- unshipped orders (20,000 held reservations, lines, payments, events),
-- with no ANALYZE and nothing that would reset this backend's plans; then
-- each call runs once more and we count, per relation, the rows and index
-- entries it read (the backend's own statistics counters, before and
-- after, in the call's transaction).  A call reading O(lines) touches a
-- handful of entries per relation; a plan that scans every held
-- reservation, or every product, reads 20,000.
\i sql/include/prelude.sql

-- rows read per shop relation (heap rows of sequential scans and fetches,
-- index entries), as counted so far by this backend
CREATE FUNCTION pg_temp.reads() RETURNS TABLE (rel text, n bigint) LANGUAGE sql AS $f$
    SELECT c.relname::text, pg_stat_get_xact_tuples_returned(c.oid) + pg_stat_get_xact_tuples_fetched(c.oid)
      FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
     WHERE s.nspname = 'shop' AND c.relkind IN ('r', 'i')
$f$;
CREATE TEMP TABLE before (rel text, n bigint);
-- run q; the relations it read 100 rows or more of, or 'ok'
CREATE FUNCTION pg_temp.cost(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    r text;
BEGIN
    TRUNCATE before;
    INSERT INTO before SELECT * FROM pg_temp.reads();
    EXECUTE q;
    SELECT string_agg(a.rel || ' ' || (a.n - b.n), ', ' ORDER BY a.rel) INTO r
      FROM pg_temp.reads() a JOIN before b USING (rel)
     WHERE a.n - b.n >= 100;
    RETURN coalesce(r, 'ok');
END $f$;

-- no autovacuum: the plans cached below must serve the grown store as they are
ALTER TABLE shop.reservation SET (autovacuum_enabled = off);
ALTER TABLE shop."order" SET (autovacuum_enabled = off);
ALTER TABLE shop.order_line SET (autovacuum_enabled = off);
ALTER TABLE shop.payment SET (autovacuum_enabled = off);
ALTER TABLE shop.order_event SET (autovacuum_enabled = off);
ALTER TABLE shop.idempotency SET (autovacuum_enabled = off);
ALTER TABLE shop.event SET (autovacuum_enabled = off);
ALTER TABLE shop.stock SET (autovacuum_enabled = off);
ALTER TABLE shop.product SET (autovacuum_enabled = off);

INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'G-' || g, 'Growth product ' || g, 1000 + g FROM generate_series(1, 40) g;
SELECT count(shop.stock_set(g, 1000000)) FROM generate_series(1, 40) g;
ANALYZE shop.product, shop.stock, shop.reservation, shop."order", shop.order_line, shop.payment,
    shop.order_event, shop.idempotency, shop.event, shop.cart, shop.cart_item;

-- every call, eight times on the empty store (plans cached, generic ones too)
CREATE FUNCTION pg_temp.round(n int) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    c uuid;
    o uuid;
    r uuid;
BEGIN
    -- checkout, ship
    c := shop.cart_create(1000 + n);
    PERFORM shop.cart_add(c, 1 + n % 10), shop.cart_add(c, 11 + n % 10, 2), shop.cart_add(c, 21 + n % 10);
    o := shop.checkout(c, 'tok_visa', 'growth-' || n);
    PERFORM shop.order_transition(o, 'fulfilling');
    PERFORM shop.order_ship(o, 'UPS', '1Z' || n);
    PERFORM shop.order_transition(o, 'delivered');
    PERFORM shop.order_transition(o, 'returned');
    PERFORM shop.order_transition(o, 'refunded');
    -- a gateway order, confirmed
    c := shop.cart_create(2000 + n);
    PERFORM shop.cart_add(c, 31 + n % 10);
    o := shop.checkout(c, 'stripe:pm_' || n, 'growth-g-' || n);
    PERFORM shop.payment_confirm(o, 'ch_' || n);
    PERFORM shop.order_transition(o, 'cancelled');
    -- a gateway order that fails
    c := shop.cart_create(3000 + n);
    PERFORM shop.cart_add(c, 31 + n % 10);
    o := shop.checkout(c, 'stripe:pm_f' || n, 'growth-f-' || n);
    PERFORM shop.payment_fail(o, 'card declined');
    -- inventory calls
    r := shop.reserve(1 + n % 10, 1);
    PERFORM shop.reservation_extend(r, '1 hour');
    PERFORM shop.reservation_commit(r);
    r := (shop.reserve_many(jsonb_build_array(jsonb_build_object('product_id', 2, 'qty', 1),
                                              jsonb_build_object('product_id', 3, 'qty', 1))))[1];
    PERFORM shop.reservation_release(r);
    PERFORM shop.stock_adjust(1 + n % 10, 1, 'growth');
    PERFORM shop.stock_available(1 + n % 10);
    -- the read side of a storefront: order history, the order page, the
    -- cart, a product page, recommendations (personal ones for a customer
    -- with orders and for a brand-new one)
    PERFORM count(*) FROM shop.orders_for(1000 + n);
    PERFORM shop.order_get(o);
    PERFORM shop.cart_get(c);
    PERFORM shop.product_get(1 + n % 10);
    PERFORM count(*) FROM shop.also_bought(1 + n % 10);
    PERFORM count(*) FROM shop.recommend(1000 + n);
    PERFORM count(*) FROM shop.recommend(900000 + n);
    PERFORM count(*) FROM shop.recently_viewed(1000 + n);
    PERFORM shop.review_add(1 + n % 10, 1000 + n, 5, 'Good', 'Works.');
    -- carts: a guest's cart merged into the customer's at login
    c := shop.cart_create(NULL);
    PERFORM shop.cart_add(c, 1 + n % 10), shop.cart_add(c, 11 + n % 10);
    PERFORM shop.cart_set_qty(c, 1 + n % 10, 3);
    PERFORM shop.cart_remove(c, 11 + n % 10);
    PERFORM shop.cart_merge(c, 4000 + n);
    PERFORM count(*) FROM shop.autocomplete('gro');
END $f$;
SELECT count(pg_temp.round(n)) FROM generate_series(1, 8) n;

-- the store grows: 20,000 more products (drafts: no search index work) and
-- 20,000 paid orders of yesterday waiting to ship, one held line each
-- (plain INSERTs: session_replication_role, say, would reset the plans)
INSERT INTO shop.product (product_id, sku, title, price_cents, status)
SELECT g, 'G-' || g, 'Growth draft ' || g, 1000, 'draft' FROM generate_series(41, 20040) g;
INSERT INTO shop.stock (product_id, on_hand) SELECT g, 10 FROM generate_series(41, 20040) g;
CREATE TEMP TABLE g AS
SELECT i, gen_random_uuid() AS order_id, gen_random_uuid() AS rid, 1 + i % 40 AS pid
  FROM generate_series(1, 20000) i;
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents, was_paid,
                          event_count, idempotency_key, created_at)
SELECT order_id, 1 + i % 5000, 'paid', 'USD', 1000, 1000, true, 2, 'g-' || i, now() - interval '1 day' FROM g;
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty, reservation_id)
SELECT order_id, 1, pid, 'G-' || pid, 'Growth product', 1000, 1, rid FROM g;
INSERT INTO shop.reservation (product_id, reservation_id, qty, ref, expires_at)
SELECT pid, rid, 1, 'order:' || order_id, 'infinity' FROM g;
INSERT INTO shop.payment (order_id, provider, token, status, amount_cents, created_at, updated_at)
SELECT order_id, 'test', 'tok_visa_' || i, 'captured', 1000, now() - interval '1 day', now() - interval '1 day' FROM g;
INSERT INTO shop.order_event (order_id, seq, from_status, to_status)
SELECT order_id, s, CASE s WHEN 2 THEN 'pending' END, CASE s WHEN 1 THEN 'pending' ELSE 'paid' END
  FROM g, generate_series(1, 2) s;
INSERT INTO shop.idempotency (scope, key, fingerprint, order_id)
SELECT 'c:' || (1 + i % 5000), 'g-' || i, md5(i::text), order_id FROM g;
INSERT INTO shop.event (topic, payload, created_at)
SELECT 'order.paid', jsonb_build_object('order_id', order_id), now() - interval '1 day' FROM g;
UPDATE shop.stock s SET reserved = s.reserved + x.n
  FROM (SELECT pid, count(*)::int AS n FROM g GROUP BY pid) x WHERE s.product_id = x.pid;
SELECT count(*) AS held FROM shop.reservation WHERE status = 'held';
-- and 20,000 open carts (a quarter of them guests'), a line each, and
-- 20,000 logged searches
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
SELECT gen_random_uuid(), CASE WHEN i % 4 > 0 THEN 1 + i % 5000 END, now() + interval '30 days'
  FROM generate_series(1, 20000) i;
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
SELECT cart_id, 1 + (row_number() OVER ()) % 40, 1, 1000 FROM shop.cart c
 WHERE (customer_id IS NULL OR customer_id <= 5000)
   -- only the new carts: which earlier cart (with lines) a row number
   -- falls on depends on the table's physical order
   AND NOT EXISTS (SELECT 1 FROM shop.cart_item i WHERE i.cart_id = c.cart_id);
INSERT INTO shop.search_log (query, query_folded, sort, results, duration_ms)
SELECT 'growth ' || i % 100, 'growth ' || i % 100, 'relevance', 40, 1 FROM generate_series(1, 20000) i;

-- each call once more: what it read
SELECT shop.cart_create(9001) AS c1 \gset
SELECT shop.cart_add(:'c1', 5), shop.cart_add(:'c1', 15, 2), shop.cart_add(:'c1', 25);
SELECT pg_temp.cost(format($$SELECT shop.checkout(%L, 'tok_visa', 'after')$$, :'c1')) AS checkout;
SELECT order_id AS o1 FROM shop."order" WHERE idempotency_key = 'after' \gset
SELECT pg_temp.cost(format($$SELECT shop.order_transition(%L, 'fulfilling')$$, :'o1')) AS fulfilling;
SELECT pg_temp.cost(format($$SELECT shop.order_ship(%L, 'UPS', '1Z')$$, :'o1')) AS shipped;
SELECT pg_temp.cost(format($$SELECT shop.order_transition(%L, 'delivered')$$, :'o1')) AS delivered;
SELECT pg_temp.cost(format($$SELECT shop.order_transition(%L, 'returned')$$, :'o1')) AS returned;
SELECT pg_temp.cost(format($$SELECT shop.order_transition(%L, 'refunded')$$, :'o1')) AS refunded;
SELECT shop.cart_create(9002) AS c2 \gset
SELECT shop.cart_add(:'c2', 35);
SELECT pg_temp.cost(format($$SELECT shop.checkout(%L, 'stripe:pm_x', 'after-g')$$, :'c2')) AS checkout_gateway;
SELECT order_id AS o2 FROM shop."order" WHERE idempotency_key = 'after-g' \gset
SELECT pg_temp.cost(format($$SELECT shop.payment_confirm(%L, 'ch_x')$$, :'o2')) AS payment_confirm;
SELECT pg_temp.cost(format($$SELECT shop.order_transition(%L, 'cancelled')$$, :'o2')) AS cancelled;
SELECT shop.cart_create(9003) AS c3 \gset
SELECT shop.cart_add(:'c3', 35);
SELECT shop.checkout(:'c3', 'stripe:pm_y', 'after-f') AS o3 \gset
SELECT pg_temp.cost(format($$SELECT shop.payment_fail(%L, 'declined')$$, :'o3')) AS payment_fail;
SELECT pg_temp.cost($$SELECT shop.reserve(7, 1)$$) AS reserve;
SELECT shop.reserve(7, 1) AS r1 \gset
SELECT pg_temp.cost(format($$SELECT shop.reservation_extend(%L, '1 hour')$$, :'r1')) AS extend;
SELECT pg_temp.cost(format($$SELECT shop.reservation_commit(%L)$$, :'r1')) AS commit;
SELECT pg_temp.cost($$SELECT shop.reserve_many('[{"product_id": 8, "qty": 1}, {"product_id": 9, "qty": 1}]')$$) AS reserve_many;
SELECT shop.reserve(7, 1) AS r2 \gset
SELECT pg_temp.cost(format($$SELECT shop.reservation_release(%L)$$, :'r2')) AS release;
SELECT pg_temp.cost($$SELECT shop.stock_adjust(7, 1, 'growth')$$) AS stock_adjust;
SELECT pg_temp.cost($$SELECT shop.stock_available(7)$$) AS stock_available;

-- The read side (PL/pgSQL), after the ANALYZE autovacuum makes as a table
-- grows (50 rows + 10%).  Unlike the C calls above, PL/pgSQL cannot replan
-- a cached plan because its tables grew: its plans made on the small store
-- read every cart and order until an ANALYZE replaces them (planning each
-- call instead tripled order_get + orders_for + recommend).  What is
-- checked here is that, with statistics, each call reads by its key:
-- customer 1001 now has 4 of the grown store's orders.
ANALYZE shop."order", shop.order_line, shop.order_event, shop.payment, shop.cart, shop.cart_item,
    shop.review, shop.view_event, shop.search_log, shop.product;
SELECT pg_temp.cost($$SELECT count(*) FROM shop.orders_for(1001)$$) AS orders_for;
SELECT pg_temp.cost(format($$SELECT shop.order_get(%L)$$, :'o1')) AS order_get;
SELECT pg_temp.cost(format($$SELECT shop.cart_get(%L)$$, :'c3')) AS cart_get;
SELECT pg_temp.cost($$SELECT shop.product_get(7)$$) AS product_get;
SELECT pg_temp.cost($$SELECT count(*) FROM shop.also_bought(7)$$) AS also_bought;
SELECT pg_temp.cost($$SELECT count(*) FROM shop.recommend(1001)$$) AS recommend;
SELECT pg_temp.cost($$SELECT count(*) FROM shop.recommend(999999)$$) AS recommend_new_customer;
SELECT pg_temp.cost($$SELECT count(*) FROM shop.recently_viewed(1001)$$) AS recently_viewed;
SELECT pg_temp.cost($$SELECT shop.review_add(5, 9001, 4, 'Fine', 'As described.')$$) AS review_add;
SELECT shop.cart_create(NULL) AS c4 \gset
SELECT pg_temp.cost(format($$SELECT shop.cart_add(%L, 5)$$, :'c4')) AS cart_add;
SELECT shop.cart_add(:'c4', 6) IS NOT NULL AS added;
SELECT pg_temp.cost(format($$SELECT shop.cart_set_qty(%L, 5, 2)$$, :'c4')) AS cart_set_qty;
SELECT pg_temp.cost(format($$SELECT shop.cart_remove(%L, 6)$$, :'c4')) AS cart_remove;
SELECT pg_temp.cost(format($$SELECT shop.cart_merge(%L, 4001)$$, :'c4')) AS cart_merge;
-- (autocomplete reads the latest 2,000 logged searches, by design: a
-- bound that does not grow with the log; each counts as entry and fetch)
SELECT pg_temp.cost($$SELECT count(*) FROM shop.autocomplete('gro')$$) AS autocomplete;

-- the store-wide popular list on a store analyzed before its first
-- popularity refresh (a bulk load): 5,000 products on sale, all at
-- popularity 0, analyzed; the list's plan is made then; the refresh gives
-- them popularity (no ANALYZE yet); a list of ten reads ten, not all
UPDATE shop.product SET status = 'active' WHERE product_id BETWEEN 41 AND 5040;
ANALYZE shop.product;
SELECT count(*) FROM generate_series(1, 8) n, shop.trending();
UPDATE shop.product SET popularity = 0.001 * (1 + product_id % 997) WHERE product_id BETWEEN 41 AND 5040;
SELECT pg_temp.cost($$SELECT * FROM shop.trending()$$) AS trending;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
