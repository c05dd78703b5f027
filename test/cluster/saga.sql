-- saga.sql: carts, checkout (the saga) and orders through the router, run
-- in the "checker" database after checks.sql (test/cluster/run.sh), with
-- the same psql variables. Each failed check raises an error.
--
-- The router database is reached as three sessions: "router" (superuser,
-- where the test-only setting shop_router.saga_test_stop makes the router
-- stop after a step as if it died there), "rb" as the back office and "rw"
-- as the storefront; every shard by its partition number. The reference
-- node "one" runs the same calls for comparison.
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
\pset tuples_only on
\pset format unaligned
\o /dev/null

SELECT dblink_connect('p0', :'p0'), dblink_connect('p1', :'p1'), dblink_connect('p2', :'p2'),
       dblink_connect('p3', :'p3'), dblink_connect('one', :'one'), dblink_connect('router', :'router'),
       dblink_connect('rb', :'router' || ' user=backoffice'), dblink_connect('rw', :'router' || ' user=web');

-- the SQLSTATE of a statement on a connection ('00000': it succeeded)
CREATE FUNCTION state(conn text, sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM dblink(conn, sql) AS t(v text);
    RETURN '00000';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
-- run a one-column SELECT on a connection, for its effect
CREATE FUNCTION run(conn text, sql text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM dblink(conn, sql) AS t(v text);
END
$$;
-- one value from the shard that holds a product, or a cart or order id
CREATE FUNCTION on_part(i int, sql text) RETURNS text LANGUAGE sql AS $$
    SELECT val('p' || i, sql)
$$;
CREATE FUNCTION pid_part(id bigint) RETURNS int LANGUAGE sql AS $$ SELECT hashint8(id) & 3 $$;
CREATE FUNCTION uuid_part(id uuid) RETURNS int LANGUAGE sql AS $$
    SELECT ('x' || right(id::text, 4))::bit(16)::int & 3
$$;
-- the sum over every shard of an integer query
CREATE FUNCTION all_parts(sql text) RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(t.v)::bigint FROM part, dblink(conn, sql) AS t(v bigint)
$$;
-- a product's stock row on its shard: on_hand, reserved, available
CREATE FUNCTION stock(id bigint) RETURNS text LANGUAGE sql AS $$
    SELECT on_part(pid_part(id), format(
        'SELECT format(''%%s/%%s/%%s'', sum(on_hand), sum(reserved), shop.stock_available(%s)) FROM shop.stock WHERE product_id = %s',
        id, id))
$$;
-- what holds() says of holds all in one status: (product, qty) pairs
CREATE FUNCTION hl(st text, VARIADIC x bigint[]) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(format('%s:%s:%s:t', x[2 * k - 1], st, x[2 * k]), ' ' ORDER BY x[2 * k - 1])
      FROM generate_series(1, cardinality(x) / 2) k
$$;
-- the order's holds on the product shards: status and expiry of each, in product order
CREATE FUNCTION holds(o uuid) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s:%s:%s:%s', t.pid, t.status, t.qty, t.forever), ' ' ORDER BY t.pid), '')
      FROM part, dblink(conn, format(
        'SELECT product_id, status, qty, expires_at = ''infinity'' FROM shop.reservation WHERE ref = %L',
        'order:' || o)) AS t(pid bigint, status text, qty int, forever boolean)
$$;

\echo == products for the saga: four, on four shards, with stock
-- the first products of the fixture that sit on partitions 0, 1, 2, 3
CREATE TABLE sp AS
SELECT DISTINCT ON (pid_part(g)) pid_part(g) AS i, g::bigint AS id
  FROM generate_series(1, 60) g ORDER BY pid_part(g), g;
SELECT fail_if(count(*) <> 4, 'the saga''s products span the 4 partitions') FROM sp;
SELECT run('rb', format('SELECT shop.stock_set(%s, 10)', id)),
       run('one', format('SELECT shop.stock_set(%s, 10)', id))
  FROM sp;
SELECT set_config('t.a', (SELECT id FROM sp WHERE i = 0)::text, false),
       set_config('t.b', (SELECT id FROM sp WHERE i = 1)::text, false),
       set_config('t.c', (SELECT id FROM sp WHERE i = 2)::text, false),
       set_config('t.d', (SELECT id FROM sp WHERE i = 3)::text, false);
CREATE FUNCTION a() RETURNS bigint LANGUAGE sql AS $$ SELECT current_setting('t.a')::bigint $$;
CREATE FUNCTION b() RETURNS bigint LANGUAGE sql AS $$ SELECT current_setting('t.b')::bigint $$;
CREATE FUNCTION c() RETURNS bigint LANGUAGE sql AS $$ SELECT current_setting('t.c')::bigint $$;
CREATE FUNCTION d() RETURNS bigint LANGUAGE sql AS $$ SELECT current_setting('t.d')::bigint $$;

-- a cart of customer cust with lines (product, qty), through conn
CREATE FUNCTION new_cart(conn text, cust bigint, lines bigint[]) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    id uuid := val(conn, format('SELECT shop.cart_create(%s)', coalesce(cust::text, 'NULL')))::uuid;
BEGIN
    FOR k IN 1..cardinality(lines) / 2 LOOP
        PERFORM run(conn, format('SELECT shop.cart_add(%L, %s, %s)', id, lines[2 * k - 1], lines[2 * k]));
    END LOOP;
    RETURN id;
END
$$;
-- cart_get without what differs between two carts of the same content
CREATE FUNCTION cart_doc(conn text, id uuid) RETURNS jsonb LANGUAGE sql AS $$
    SELECT d - 'cart_id' - 'updated_at' - 'expires_at'
           || jsonb_build_object('lines', (SELECT coalesce(jsonb_agg(l - 'added_at'), '[]') FROM jsonb_array_elements(d -> 'lines') l),
                                 'saved_for_later', (SELECT coalesce(jsonb_agg(l - 'added_at'), '[]') FROM jsonb_array_elements(d -> 'saved_for_later') l))
      FROM (SELECT val(conn, format('SELECT shop.cart_get(%L)', id))::jsonb AS d) x
$$;
-- order_get without what differs between two orders of the same cart
CREATE FUNCTION order_doc(conn text, id uuid) RETURNS jsonb LANGUAGE sql AS $$
    SELECT d - 'order_id' - 'created_at' - 'updated_at'
           || jsonb_build_object('payments', (SELECT jsonb_agg(p - 'payment_id') FROM jsonb_array_elements(d -> 'payments') p),
                                 'timeline', (SELECT jsonb_agg(e - 'at') FROM jsonb_array_elements(d -> 'timeline') e))
      FROM (SELECT val(conn, format('SELECT shop.order_get(%L)', id))::jsonb AS d) x
$$;

\echo == carts: on the customer shard, with products of every shard
SELECT set_config('t.cart', new_cart('rb', 501, ARRAY[a(), 2, b(), 1, c(), 1, d(), 3])::text, false),
       set_config('t.cart1', new_cart('one', 501, ARRAY[a(), 2, b(), 1, c(), 1, d(), 3])::text, false);
CREATE FUNCTION cart() RETURNS uuid LANGUAGE sql AS $$ SELECT current_setting('t.cart')::uuid $$;
CREATE FUNCTION cart1() RETURNS uuid LANGUAGE sql AS $$ SELECT current_setting('t.cart1')::uuid $$;
SELECT fail_if(uuid_part(cart()) <> pid_part(501), 'a customer''s cart id names the customer''s partition');
-- and is time-ordered as a node's own ids (version 7, the milliseconds of
-- its 65,536 ms window first): checked on a cart and an order id below
CREATE FUNCTION v7_now(id uuid) RETURNS boolean LANGUAGE sql AS $$
    SELECT substr(id::text, 15, 1) = '7' AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')
       AND abs(('x' || lpad(substr(replace(id::text, '-', ''), 1, 12), 16, '0'))::bit(64)::bigint
               - ((extract(epoch FROM now()) * 1000)::bigint & ~65535::bigint)) <= 2 * 65536
$$;
SELECT fail_if(NOT v7_now(cart()), 'a router-made cart id is time-ordered (version 7, this window''s milliseconds)', cart()::text);
SELECT fail_if(all_parts(format('SELECT count(*) FROM shop.cart_item WHERE cart_id = %L', cart())) <> 4
               OR on_part(pid_part(501), format('SELECT count(*) FROM shop.cart_item WHERE cart_id = %L', cart())) <> '4',
               'the cart and its 4 lines are on the customer''s shard, and only there');
SELECT run(conn, format('SELECT shop.cart_save_for_later(%L, %s)', id, d())),
       run(conn, format('SELECT shop.cart_set_qty(%L, %s, 3)', id, a())),
       run(conn, format('SELECT shop.cart_remove(%L, %s)', id, c())),
       run(conn, format('SELECT shop.cart_add(%L, %s, 1)', id, c())),
       run(conn, format('SELECT shop.cart_set_qty(%L, %s, 2)', id, a()))
  FROM (VALUES ('rb', cart()), ('one', cart1())) v(conn, id);
SELECT fail_if(cart_doc('rb', cart()) IS DISTINCT FROM cart_doc('one', cart1()),
               'cart_get through the router is one node''s cart_get (lines, prices, stock, saved for later, totals)',
               format('router %s, one node %s', cart_doc('rb', cart()), cart_doc('one', cart1())));
SELECT fail_if((cart_doc('rb', cart()) ->> 'item_count') <> '4'
               OR jsonb_array_length(cart_doc('rb', cart()) -> 'saved_for_later') <> 1,
               'the cart holds 4 units in 3 lines and one line saved for later');
SELECT fail_if(state('rb', format('SELECT shop.cart_move_to_cart(%L, %s)', cart(), d())) <> '00000'
               OR state('rb', format('SELECT shop.cart_save_for_later(%L, %s)', cart(), d())) <> '00000',
               'a saved line moves back to the cart and out again');
SELECT fail_if(state('rb', format('SELECT shop.cart_add(%L, 999999999)', cart())) <> 'SH006'
               OR state('rb', format('SELECT shop.cart_add(%L, %s, 0)', cart(), a())) <> '22023'
               OR state('rb', 'SELECT shop.cart_get(''00000000-0000-0000-0000-000000000000'')') <> 'SH006',
               'cart errors keep one node''s SQLSTATEs');
SELECT set_config('t.guest', val('rb', 'SELECT shop.cart_create()'), false);
SELECT fail_if(state('rb', format('SELECT shop.cart_add(%L, %s, 1)', current_setting('t.guest'), b())) <> '00000'
               OR on_part(uuid_part(current_setting('t.guest')::uuid),
                          format('SELECT count(*) FROM shop.cart_item WHERE cart_id = %L', current_setting('t.guest'))) <> '1',
               'a guest cart lives on the partition its id names');
SELECT fail_if(state('rw', 'SELECT shop.cart_create(501)') <> '42501'
               OR state('rw', format('SELECT shop.cart_get(%L)', cart())) <> '42501'
               OR state('rw', format('SELECT shop.cart_add(%L, %s)', cart(), a())) <> '42501',
               'without a session the storefront may not open, read or fill a customer''s cart (42501)');
SELECT fail_if(state('rw', format('SELECT shop.cart_get(%L)', current_setting('t.guest'))) <> '00000',
               'a guest cart is the storefront''s by its id, as on one node');

\echo == checkout: a saga over the customer shard and the product shards
SELECT set_config('t.o', val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-1'', ''{"country": "US"}'')', cart())), false),
       set_config('t.o1', val('one', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-1'', ''{"country": "US"}'')', cart1())), false);
CREATE FUNCTION o() RETURNS uuid LANGUAGE sql AS $$ SELECT current_setting('t.o')::uuid $$;
SELECT fail_if(NOT v7_now(o()) OR uuid_part(o()) <> pid_part(501),
               'a routed order id is time-ordered and names its customer''s partition', o()::text);
SELECT fail_if(order_doc('rb', o()) IS DISTINCT FROM order_doc('one', current_setting('t.o1')::uuid),
               'the order through the router is the order one node makes of the same cart (lines, prices, totals, payment, timeline)',
               format('router %s, one node %s', order_doc('rb', o()), order_doc('one', current_setting('t.o1')::uuid)));
SELECT fail_if(holds(o()) <> hl('held', a(), 2, b(), 1, c(), 1),
               'each line is held on its product''s shard until the order ships', holds(o()));
SELECT fail_if(stock(a()) <> '10/2/8' OR stock(b()) <> '10/1/9' OR stock(d()) <> '10/0/10',
               'stock is reserved on the products'' shards', format('%s %s %s', stock(a()), stock(b()), stock(d())));
SELECT fail_if(val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-1'', ''{"country": "US"}'')', cart()))::uuid <> o()
               OR holds(o()) <> hl('held', a(), 2, b(), 1, c(), 1),
               'a repeat with the same key returns the same order and holds nothing more');
SELECT fail_if(state('rb', format('SELECT shop.checkout(%L, ''tok_mastercard'', ''key-1'')', cart())) <> 'SH003',
               'the same key with another request is SH003');
SELECT fail_if(cart_doc('rb', cart()) -> 'lines' <> '[]' OR jsonb_array_length(cart_doc('rb', cart()) -> 'saved_for_later') <> 1,
               'the ordered lines left the cart; the saved line stayed');
SELECT fail_if(state('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-2'')', cart())) <> 'SH007',
               'an empty cart is SH007, and keeps no key');

\echo == compensation: a failed step releases what the saga held
-- product d has 10 units: 11 cannot be held, after a, b, c were
SELECT set_config('t.cart2', new_cart('rb', 502, ARRAY[a(), 1, b(), 1, d(), 11])::text, false);
SELECT fail_if(state('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-3'')', current_setting('t.cart2'))) <> 'SH001',
               'a line the stock cannot cover fails the checkout with SH001');
SELECT fail_if(stock(a()) <> '10/2/8' OR stock(b()) <> '10/1/9' OR stock(d()) <> '10/0/10'
               OR all_parts('SELECT count(*) FROM shop.reservation WHERE status = ''held'' AND expires_at < ''infinity''') <> 0,
               'the holds the saga took on other shards were released',
               format('%s %s %s', stock(a()), stock(b()), stock(d())));
SELECT run('rb', format('SELECT shop.cart_set_qty(%L, %s, 1)', current_setting('t.cart2'), d()));
SELECT fail_if(state('rb', format('SELECT shop.checkout(%L, ''tok_chargeDeclined'', ''key-3'')', current_setting('t.cart2'))) <> 'SH004'
               OR all_parts('SELECT count(*) FROM shop.reservation WHERE status = ''held'' AND expires_at < ''infinity''') <> 0
               OR stock(d()) <> '10/0/10',
               'after a failed checkout the key is free again; a declined payment (SH004) releases the holds too');
SELECT set_config('t.o2', val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-3'')', current_setting('t.cart2'))), false);
SELECT fail_if(holds(current_setting('t.o2')::uuid) <> hl('held', a(), 1, b(), 1, d(), 1),
               'the same key then makes the order');

-- a shard that refuses while another is still holding (issue 16, race2):
-- PL/Proxy raised the refusal (SH001 on d's shard) at once, the router
-- compensated on new connections while a's shard, slowed by a lock on its
-- shop.reservation, still held; that hold must not survive the release
-- (it would last until shop_router.hold_ttl otherwise). Since ha4 the
-- refusal is an answer (shop._saga_reserve_try) and the router waits for
-- a's before it compensates; no hold survives either way
SELECT set_config('t.cart9', new_cart('rb', 520, ARRAY[a(), 1, d(), 50])::text, false),
       set_config('t.a_before', stock(a()), false);
SELECT dblink_connect('slk', CASE pid_part(a()) WHEN 0 THEN :'p0' WHEN 1 THEN :'p1' WHEN 2 THEN :'p2' ELSE :'p3' END),
       dblink_connect('swt', CASE pid_part(a()) WHEN 0 THEN :'p0' WHEN 1 THEN :'p1' WHEN 2 THEN :'p2' ELSE :'p3' END),
       dblink_connect('srt', :'router' || ' user=backoffice');
-- on a's shard: a backend running the shard step fn that waits for a lock
CREATE FUNCTION s_waiting(fn text) RETURNS boolean LANGUAGE sql AS $$
    SELECT val('swt', format($q$SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%%shop.%s(%%'
                                   AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()$q$, fn))::boolean
$$;
SELECT dblink_exec('slk', 'BEGIN'), dblink_exec('slk', 'LOCK TABLE shop.reservation IN EXCLUSIVE MODE');
SELECT dblink_send_query('srt', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-9'')', current_setting('t.cart9')));
CREATE FUNCTION s_wait(what text, fn text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..1200 LOOP
        IF dblink_is_busy('srt') = 0 OR s_waiting(fn) THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    PERFORM fail_if(true, what);
END
$$;
-- a's hold waits for the lock (or, if the release came first, the call is over)
SELECT s_wait('a''s shard''s hold waits for the lock', '_saga_reserve_try');
-- d's shard answers its refusal as data (issue 16, ha4: shop._saga_reserve_try):
-- the router waits for a's answer before it compensates (before, PL/Proxy
-- raised the refusal at once and the release could pass the hold)
SELECT pg_sleep(0.5);
SELECT fail_if(dblink_is_busy('srt') = 0, 'the router waits for the slow shard''s hold before it compensates');
SELECT dblink_exec('slk', 'COMMIT');
CREATE FUNCTION s_result() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    SELECT v INTO r FROM dblink_get_result('srt') AS t(v text);
    RETURN coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
SELECT fail_if(s_result() <> 'SH001', 'a checkout refused by one shard while another is slow is SH001');
SELECT count(*) FROM dblink_get_result('srt', false) AS t(v text);
-- the slow shard's hold and the release end
CREATE FUNCTION s_busy() RETURNS boolean LANGUAGE sql AS $$
    SELECT val('swt', $q$SELECT count(*) > 0 FROM pg_stat_activity WHERE (query LIKE '%shop._saga_reserve_try(%'
                            OR query LIKE '%shop._saga_release_signed(%') AND state = 'active'
                            AND pid <> pg_backend_pid()$q$)::boolean
$$;
DO $$
BEGIN
    FOR i IN 1..1200 LOOP
        EXIT WHEN NOT s_busy();
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT fail_if(all_parts('SELECT count(*) FROM shop.reservation WHERE status = ''held'' AND expires_at < ''infinity''') <> 0
               OR stock(a()) <> current_setting('t.a_before'),
               'a checkout refused by one shard while another was still holding leaves no hold behind',
               format('a: %s (before %s), held: %s', stock(a()), current_setting('t.a_before'),
                      all_parts('SELECT count(*) FROM shop.reservation WHERE status = ''held'' AND expires_at < ''infinity''')));
SELECT dblink_disconnect('slk'), dblink_disconnect('swt'), dblink_disconnect('srt');
-- and when the release reaches a shard before its hold starts: the hold,
-- coming later, makes nothing (on the shard, as the router calls them)
SELECT fail_if(on_part(pid_part(a()), format('SELECT shop._saga_release(%L, ARRAY[%s]::bigint[])', u.id, a())) <> '0'
               OR on_part(pid_part(a()), format('SELECT count(*) FROM shop._saga_reserve(%L, ARRAY[%s]::bigint[], ARRAY[1], ''1 hour'') WHERE status IS NULL',
                                                u.id, a())) <> '1'
               OR on_part(pid_part(a()), format('SELECT count(*) FROM shop.reservation WHERE ref = %L', 'order:' || u.id)) <> '0',
               'a saga''s hold that comes after the router released the saga makes nothing')
  FROM (SELECT gen_random_uuid() AS id) u;
-- the same key then works: a new order, held (then cancelled: the stock as before)
SELECT run('rb', format('SELECT shop.cart_set_qty(%L, %s, 1)', current_setting('t.cart9'), d()));
SELECT set_config('t.o9', val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-9'')', current_setting('t.cart9'))), false);
SELECT fail_if(holds(current_setting('t.o9')::uuid) <> hl('held', a(), 1, d(), 1),
               'after that compensation the same key makes the order', holds(current_setting('t.o9')::uuid));
SELECT fail_if(val('rb', format('SELECT shop.order_transition(%L, ''cancelled'')', current_setting('t.o9'))) <> 'cancelled'
               OR stock(a()) <> current_setting('t.a_before'),
               'its cancellation releases its holds', stock(a()));

\echo == a router that dies between steps: a retry with the same key completes
CREATE FUNCTION crash_then_retry(step text, key text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    cart uuid := new_cart('rb', 503, ARRAY[a(), 1, c(), 2]);
    o uuid;
    mid text;
    sql text := format('SELECT shop.checkout(%L, ''tok_visa'', %L)', cart, key);
BEGIN
    PERFORM dblink_exec('router', format('SET shop_router.saga_test_stop = %L', step));
    IF state('router', sql) = '00000' THEN
        RAISE EXCEPTION 'FAIL: the checkout went on after the step %', step;
    END IF;
    PERFORM dblink_exec('router', 'RESET shop_router.saga_test_stop');
    mid := format('%s|%s', stock(a()), stock(c()));
    o := val('router', sql)::uuid;
    RETURN format('%s -> %s|%s %s', mid, stock(a()), stock(c()), holds(o));
END
$$;
-- before: a 10/3/7 (orders 1 and 2 hold 3), c 10/1/9 (order 1 holds 1)
SELECT fail_if(r <> '10/3/7|10/1/9 -> 10/4/6|10/3/7 ' || hl('held', a(), 1, c(), 2),
               'stopped after claiming the key: nothing held; the retry holds once and completes', r)
  FROM crash_then_retry('claim', 'key-4') r;
SELECT fail_if(r <> '10/5/5|10/5/5 -> 10/5/5|10/5/5 ' || hl('held', a(), 1, c(), 2),
               'stopped after reserving: the retry holds nothing twice and completes', r)
  FROM crash_then_retry('reserve', 'key-5') r;
SELECT fail_if(r <> '10/6/4|10/7/3 -> 10/6/4|10/7/3 ' || hl('held', a(), 1, c(), 2),
               'stopped after placing the order: the retry confirms it', r)
  FROM crash_then_retry('place', 'key-6') r;
-- the place step commits but its answer is lost: the router's compensation
-- must leave the placed order's holds alone; the retry confirms it
SELECT fail_if(r <> '10/7/3|10/9/1 -> 10/7/3|10/9/1 ' || hl('held', a(), 1, c(), 2),
               'an error after the place step committed releases nothing; the retry confirms the order', r)
  FROM crash_then_retry('place_lost', 'key-6b') r;
SELECT fail_if(all_parts('SELECT count(*) FROM shop.saga WHERE status IN (''started'', ''placed'')') <> 0
               OR all_parts('SELECT count(*) FROM shop.idempotency') <>
                  all_parts('SELECT count(DISTINCT order_id) FROM shop."order" WHERE customer_id IS NOT NULL'),
               'no saga is left open; every key names one order');

\echo == one checkout of a cart at a time
-- a checkout stopped after reserving is still started: a checkout of the
-- same cart under another key is refused (one node's second checkout of a
-- cart waits for the first and finds it empty), the first key completes
-- it, and the other key then finds the cart empty, as on one node
SELECT set_config('t.c2k', new_cart('rb', 510, ARRAY[a(), 1])::text, false);
SELECT dblink_exec('router', 'SET shop_router.saga_test_stop = ''reserve''');
SELECT fail_if(state('router', format('SELECT shop.checkout(%L, ''tok_visa'', ''two-1'')', current_setting('t.c2k'))) = '00000',
               'a checkout stops after reserving');
SELECT dblink_exec('router', 'RESET shop_router.saga_test_stop');
SELECT fail_if(state('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''two-2'')', current_setting('t.c2k'))) <> '55006',
               'a checkout of the same cart under another key is refused while it is started (55006)');
SELECT set_config('t.o2k', val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''two-1'')', current_setting('t.c2k'))), false);
SELECT fail_if(state('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''two-2'')', current_setting('t.c2k'))) <> 'SH007'
               OR holds(current_setting('t.o2k')::uuid) <> hl('held', a(), 1)
               OR on_part(pid_part(510), 'SELECT count(*) FROM shop."order" WHERE customer_id = 510') <> '1',
               'the first key completes it; the other then finds the cart empty (SH007): one order, held once');

\echo == an abandoned saga: its holds expire (TTL and sweep), recovery compensates it
SELECT dblink_exec('router', 'SET shop_router.hold_ttl = ''1 second''');
SELECT dblink_exec('router', 'SET shop_router.saga_test_stop = ''reserve''');
SELECT set_config('t.cart7', new_cart('rb', 504, ARRAY[b(), 4])::text, false),
       set_config('t.cart8', new_cart('rb', 505, ARRAY[b(), 1])::text, false);
SELECT fail_if(state('router', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-7'')', current_setting('t.cart7'))) = '00000'
               OR state('router', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-8'')', current_setting('t.cart8'))) = '00000',
               'two checkouts stop after reserving');
SELECT dblink_exec('router', 'RESET shop_router.saga_test_stop'), dblink_exec('router', 'RESET shop_router.hold_ttl');
SELECT fail_if(stock(b()) <> '10/7/3', 'their holds count', stock(b()));
SELECT pg_sleep(1.2);
SELECT fail_if(stock(b()) <> '10/7/8', 'lapsed holds are not available stock any more', stock(b()));
SELECT val('p' || pid_part(b()), 'SELECT shop.sweep()');
SELECT fail_if(stock(b()) <> '10/2/8'
               OR on_part(pid_part(b()), 'SELECT count(*) FROM shop.reservation WHERE status = ''expired''') <> '2',
               'the product shard''s sweep expires them', stock(b()));
SELECT set_config('t.o7', val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-7'')', current_setting('t.cart7'))), false);
SELECT fail_if(stock(b()) <> '10/6/4' OR holds(current_setting('t.o7')::uuid) <> hl('held', b(), 4),
               'a retry of an abandoned saga whose holds lapsed starts over under its key and completes', stock(b()));
SELECT fail_if(val('rb', 'SELECT shop_router.saga_recover(''0 seconds'')') <> '1'
               OR all_parts('SELECT count(*) FROM shop.saga WHERE status = ''failed''') <> 5
               OR all_parts('SELECT count(*) FROM shop.saga WHERE status IN (''started'', ''placed'')') <> 0,
               'recovery compensates the other abandoned saga (failed: its key is free again, as are those of the three compensated checkouts and the lapsed one)');
SELECT fail_if(state('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''key-8'')', current_setting('t.cart8'))) <> '00000'
               OR stock(b()) <> '10/7/3',
               'and its retry makes the order', stock(b()));

\echo == orders through the router: order_get, orders_for, ship and cancel reach the product shards
SELECT fail_if(val('rb', 'SELECT count(*) FROM shop.orders_for(503)') <> '4'
               OR val('rb', 'SELECT string_agg(order_id::text, '','' ORDER BY order_id) FROM shop.orders_for(503)')
                  <> on_part(pid_part(503), 'SELECT string_agg(order_id::text, '','' ORDER BY order_id) FROM shop."order" WHERE customer_id = 503'),
               'orders_for reads the customer''s shard');
SELECT run('rb', format('SELECT shop.order_transition(%L, ''fulfilling'')', o())),
       run('rb', format('SELECT shop.order_ship(%L, ''UPS'', ''1Z999'')', o()));
SELECT fail_if(holds(o()) <> hl('committed', a(), 2, b(), 1, c(), 1)
               OR stock(b()) <> '9/6/3',
               'shipping commits the holds on the product shards: the units leave', holds(o()) || ' ' || stock(b()));
SELECT run('rb', format('SELECT shop.order_transition(%L, ''cancelled'', ''changed my mind'')', current_setting('t.o2')));
SELECT fail_if(holds(current_setting('t.o2')::uuid) <> hl('released', a(), 1, b(), 1, d(), 1)
               OR stock(d()) <> '10/0/10' OR stock(b()) <> '9/5/4',
               'cancelling releases them', holds(current_setting('t.o2')::uuid));
SELECT fail_if(state('rw', format('SELECT shop.order_ship(%L, ''UPS'', ''1Z'')', o())) <> '42501'
               OR state('rw', format('SELECT shop.order_get(%L)', o())) <> '42501',
               'the storefront may not ship, nor read a customer''s order without a session');

\echo == a guest cart checks out
SELECT fail_if(state('rw', format('SELECT shop.checkout(%L, ''tok_visa'', ''guest-1'')', current_setting('t.guest'))) <> '00000',
               'the storefront checks out a guest cart without a session');
SELECT set_config('t.og', val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', ''guest-1'')', current_setting('t.guest'))), false);
SELECT fail_if(val('rb', format('SELECT shop.order_get(%L) ->> ''status''', current_setting('t.og'))) <> 'paid'
               OR uuid_part(current_setting('t.og')::uuid) <> uuid_part(current_setting('t.guest')::uuid)
               OR holds(current_setting('t.og')::uuid) <> hl('held', b(), 1),
               'a guest order lives with its cart and holds its stock');

\echo == gateway payments: a pending order holds its stock until paid, or until its holds lapse
SELECT run('rb', format('SELECT shop.stock_set(%s, 20)', c()));
SELECT set_config('t.cp', new_cart('rb', 506, ARRAY[c(), 1])::text, false),
       set_config('t.cq', new_cart('rb', 507, ARRAY[c(), 2])::text, false);
SELECT set_config('t.op', val('rb', format('SELECT shop.checkout(%L, ''stripe:pm_1'', ''key-p'')', current_setting('t.cp'))), false);
SELECT dblink_exec('router', 'SET shop_router.hold_ttl = ''1 second''');
SELECT set_config('t.oq', val('router', format('SELECT shop.checkout(%L, ''stripe:pm_2'', ''key-q'')', current_setting('t.cq'))), false);
SELECT dblink_exec('router', 'RESET shop_router.hold_ttl');
SELECT fail_if(val('rb', format('SELECT shop.order_get(%L) ->> ''status''', current_setting('t.op'))) <> 'pending'
               OR holds(current_setting('t.op')::uuid) <> format('%s:held:1:f', c())
               OR stock(c()) NOT LIKE '20/11/%',
               'a gateway order is pending, its holds expire', holds(current_setting('t.op')::uuid) || ' ' || stock(c()));
SELECT run('rb', format('SELECT shop.payment_confirm(%L, ''ch_1'')', current_setting('t.op')));
SELECT fail_if(val('rb', format('SELECT shop.order_get(%L) ->> ''status''', current_setting('t.op'))) <> 'paid'
               OR holds(current_setting('t.op')::uuid) <> hl('held', c(), 1),
               'payment_confirm through the router: paid, and its holds are kept until it ships');
SELECT pg_sleep(1.2);
SELECT fail_if(val('rb', 'SELECT shop_router.saga_recover(''0 seconds'')') <> '1'
               OR val('rb', format('SELECT shop.order_get(%L) ->> ''status''', current_setting('t.oq'))) <> 'cancelled'
               OR holds(current_setting('t.oq')::uuid) <> format('%s:released:2:f', c())
               OR stock(c()) <> '20/9/11',
               'recovery cancels a pending order whose holds lapsed, as one node''s sweep does, and releases them',
               holds(current_setting('t.oq')::uuid) || ' ' || stock(c()));
SELECT run('rb', format('SELECT shop.order_transition(%L, ''delivered'')', o()));

\echo == returns through the router: the units go back on the product shards, once
-- the units of a product on its shard, and the return entries of an order's
-- ledger on every shard (product:units, in product order)
CREATE FUNCTION onhand(id bigint) RETURNS int LANGUAGE sql AS $$
    SELECT on_part(pid_part(id), format('SELECT sum(on_hand) FROM shop.stock WHERE product_id = %s', id))::int
$$;
CREATE FUNCTION back(o uuid) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s:%s', t.pid, t.delta), ' ' ORDER BY t.pid, t.delta), '')
      FROM part, dblink(conn, format('SELECT product_id, delta FROM shop.stock_ledger WHERE reason = %L',
                                     'return of order ' || o)) AS t(pid bigint, delta int)
$$;
-- what back() says of (product, units) pairs
CREATE FUNCTION units(VARIADIC x bigint[]) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(format('%s:%s', x[2 * k - 1], x[2 * k]), ' ' ORDER BY x[2 * k - 1])
      FROM generate_series(1, cardinality(x) / 2) k
$$;
CREATE FUNCTION saga_stock(o uuid) RETURNS text LANGUAGE sql AS $$
    SELECT on_part(uuid_part(o), format('SELECT stock FROM shop.saga WHERE order_id = %L', o))
$$;
-- an order of customer cust with lines (product, qty), paid, shipped and delivered
CREATE FUNCTION delivered_order(cust bigint, key text, lines bigint[]) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    o uuid := val('rb', format('SELECT shop.checkout(%L, ''tok_visa'', %L)', new_cart('rb', cust, lines), key));
BEGIN
    PERFORM run('rb', format('SELECT shop.order_transition(%L, ''fulfilling'')', o)),
            run('rb', format('SELECT shop.order_ship(%L, ''UPS'', ''1Z1'')', o)),
            run('rb', format('SELECT shop.order_transition(%L, ''delivered'')', o));
    RETURN o;
END
$$;
SELECT fail_if(state('rw', format('SELECT shop.order_transition(%L, ''returned'')', o())) <> '42501',
               'the storefront may not return an order (42501), as on one node');
-- a router that dies after the order moved to returned on its shard:
-- nothing is back yet, on any shard; recovery puts every unit back once
SELECT set_config('t.before', format('%s %s %s', onhand(a()), onhand(b()), onhand(c())), false);
SELECT dblink_exec('router', 'SET shop_router.saga_test_stop = ''return''');
SELECT fail_if(state('router', format('SELECT shop.order_transition(%L, ''returned'')', o())) = '00000',
               'a return stops after its transition on the customer shard');
SELECT dblink_exec('router', 'RESET shop_router.saga_test_stop');
SELECT fail_if(val('rb', format('SELECT shop.order_get(%L) ->> ''status''', o())) <> 'returned'
               OR back(o()) <> ''
               OR format('%s %s %s', onhand(a()), onhand(b()), onhand(c())) <> current_setting('t.before'),
               'the order is returned on its shard; no unit is back yet, on the customer shard neither',
               back(o()));
SELECT fail_if(val('rb', 'SELECT shop_router.saga_recover(''0 seconds'')') <> '1'
               OR back(o()) <> units(a(), 2, b(), 1, c(), 1)
               OR format('%s %s %s', onhand(a()) - 2, onhand(b()) - 1, onhand(c()) - 1) <> current_setting('t.before')
               OR saga_stock(o()) <> 'returned',
               'recovery puts the order''s units back on each product''s shard (2, 1, 1)', back(o()));
SELECT fail_if(val('rb', 'SELECT shop_router.saga_recover(''0 seconds'')') <> '0'
               OR val('rb', format('SELECT shop.order_transition(%L, ''refunded'')', o())) <> 'refunded'
               OR back(o()) <> units(a(), 2, b(), 1, c(), 1)
               OR format('%s %s %s', onhand(a()) - 2, onhand(b()) - 1, onhand(c()) - 1) <> current_setting('t.before'),
               'recovery and the refund after it put nothing back twice', back(o()));
-- a router that dies after the product shards put the units back, before
-- the customer shard recorded it: the refund repeats the step, which adds
-- nothing twice
SELECT run('rb', format('SELECT shop.stock_set(%s, 10)', id)) FROM sp;
SELECT set_config('t.or', delivered_order(508, 'key-r', ARRAY[b(), 1, d(), 2])::text, false);
SELECT dblink_exec('router', 'SET shop_router.saga_test_stop = ''restock''');
SELECT fail_if(state('router', format('SELECT shop.order_transition(%L, ''returned'')', current_setting('t.or'))) = '00000',
               'a return stops after the product shards put its units back');
SELECT dblink_exec('router', 'RESET shop_router.saga_test_stop');
SELECT fail_if(back(current_setting('t.or')::uuid) <> units(b(), 1, d(), 2)
               OR saga_stock(current_setting('t.or')::uuid) <> 'committed'
               OR onhand(b()) <> 10 OR onhand(d()) <> 10,
               'its units are back (1 and 2: 10 on hand again), its saga does not know yet', back(current_setting('t.or')::uuid));
SELECT fail_if(val('rb', format('SELECT shop.order_transition(%L, ''refunded'')', current_setting('t.or'))) <> 'refunded'
               OR back(current_setting('t.or')::uuid) <> units(b(), 1, d(), 2)
               OR onhand(b()) <> 10 OR onhand(d()) <> 10
               OR saga_stock(current_setting('t.or')::uuid) <> 'returned',
               'the refund finishes the return and puts nothing back twice', back(current_setting('t.or')::uuid));
-- a product shard's step fails (a lock it waits for times out) while the
-- others put their units back: the transition stands, the failed shard's
-- units are not back; recovery completes it, each unit once
SELECT set_config('t.of', delivered_order(509, 'key-f', ARRAY[a(), 1, b(), 2, c(), 1])::text, false);
SELECT dblink_connect('lk', CASE pid_part(b()) WHEN 0 THEN :'p0' WHEN 1 THEN :'p1' WHEN 2 THEN :'p2' ELSE :'p3' END);
SELECT dblink_exec('lk', 'ALTER ROLE backoffice SET lock_timeout = ''200ms''');
SELECT dblink_exec('lk', 'BEGIN');
SELECT val('lk', format('SELECT pg_advisory_xact_lock(hashtextextended(''shop-return:'' || shop._saga_hold_id(%L, %s), 0))::text',
                        current_setting('t.of'), b()));
-- a new router session: its connections to the shards take the timeout
SELECT dblink_connect('rb2', :'router' || ' user=backoffice');
SELECT fail_if(state('rb2', format('SELECT shop.order_transition(%L, ''returned'')', current_setting('t.of'))) = '00000'
               OR val('rb', format('SELECT shop.order_get(%L) ->> ''status''', current_setting('t.of'))) <> 'returned'
               OR ' ' || back(current_setting('t.of')::uuid) LIKE format('%% %s:%%', b())
               OR onhand(b()) <> 8,
               'a return whose step fails on one product shard: returned, that shard''s units not back',
               back(current_setting('t.of')::uuid));
SELECT dblink_exec('lk', 'ROLLBACK'), dblink_exec('lk', 'ALTER ROLE backoffice RESET lock_timeout');
SELECT dblink_disconnect('lk'), dblink_disconnect('rb2');
SELECT fail_if(val('rb', 'SELECT shop_router.saga_recover(''0 seconds'')') <> '1'
               OR back(current_setting('t.of')::uuid) <> units(a(), 1, b(), 2, c(), 1)
               OR onhand(a()) <> 10 OR onhand(b()) <> 10 OR onhand(c()) <> 10
               OR saga_stock(current_setting('t.of')::uuid) <> 'returned',
               'recovery puts the rest back; every unit is back once', back(current_setting('t.of')::uuid));

\echo == the storefront through the router: its session reaches the shards, and nothing more
-- four more products, one on each shard, with stock of their own
CREATE TABLE sq AS
SELECT DISTINCT ON (pid_part(g)) pid_part(g) AS i, g::bigint AS id
  FROM generate_series(61, 120) g ORDER BY pid_part(g), g;
SELECT run('rb', format('SELECT shop.stock_set(%s, 10)', id)) FROM sq;
CREATE FUNCTION q(k int) RETURNS bigint LANGUAGE sql AS $$ SELECT id FROM sq WHERE i = k $$;
-- the back office mints the tokens through the router (every shard has the secret)
SELECT set_config('t.tok', val('rb', 'SELECT shop.session_token(601)'), false),
       set_config('t.tok602', val('rb', 'SELECT shop.session_token(602)'), false);
SELECT fail_if(val('rw', format('SELECT shop.session_begin(%L)', current_setting('t.tok'))) <> '601'
               OR val('rw', 'SELECT shop.current_customer()') <> '601',
               'session_begin through the router verifies the token on a shard and acts for its customer');
SELECT set_config('t.sc', new_cart('rw', 601, ARRAY[q(0), 1, q(1), 2, q(2), 1, q(3), 1])::text, false);
CREATE FUNCTION sc() RETURNS uuid LANGUAGE sql AS $$ SELECT current_setting('t.sc')::uuid $$;
SELECT fail_if(cart_doc('rw', sc()) IS DISTINCT FROM cart_doc('rb', sc())
               OR (cart_doc('rw', sc()) ->> 'item_count') <> '5',
               'the storefront opens, fills and reads its customer''s cart through the router',
               cart_doc('rw', sc())::text);
SELECT fail_if(state('rw', format('SELECT shop.cart_set_qty(%L, %s, 1)', sc(), q(1))) <> '00000'
               OR state('rw', format('SELECT shop.cart_save_for_later(%L, %s)', sc(), q(3))) <> '00000'
               OR state('rw', format('SELECT shop.cart_move_to_cart(%L, %s)', sc(), q(3))) <> '00000'
               OR state('rw', format('SELECT shop.cart_remove(%L, %s)', sc(), q(2))) <> '00000'
               OR state('rw', format('SELECT shop.cart_add(%L, %s, 1)', sc(), q(2))) <> '00000',
               'and changes its lines');
SELECT fail_if(state('rw', format('SELECT shop.cart_get(%L)', cart())) <> '42501'
               OR state('rw', format('SELECT shop.cart_add(%L, %s)', cart(), a())) <> '42501'
               OR state('rw', 'SELECT shop.cart_create(602)') <> '42501'
               OR state('rw', 'SELECT count(*) FROM shop.orders_for(501)') <> '42501'
               OR state('rw', format('SELECT shop.order_get(%L)', o())) <> '42501'
               OR state('rw', format('SELECT shop.checkout(%L, ''tok_visa'', ''sf-x'')', cart())) <> '42501'
               OR state('rw', 'SELECT shop.payment_method_add(602, ''tok_visa'', ''visa'', ''4242'', 12, 2030)') <> '42501',
               'another customer''s carts, orders and payment methods are refused (42501), as on one node');
SELECT fail_if(state('rw', format('SELECT shop.order_ship(%L, ''UPS'', ''1Z'')', o())) <> '42501'
               OR state('rw', 'SELECT shop_router.saga_recover()') <> '42501'
               OR state('rw', 'SELECT shop.session_token(601)') <> '42501'
               OR state('rw', format('SELECT shop.stock_set(%s, 99)', q(0))) <> '42501',
               'the back office''s calls are refused to the storefront (42501)');
SELECT fail_if(state('rw', 'SELECT shop.payment_method_add(601, ''tok_visa'', ''visa'', ''4242'', 12, 2030)') <> '00000',
               'payment_method_add through the router, for its customer');
-- personalized search and reviews act for a customer: the session reaches
-- the shards with them
SELECT fail_if(state('rw', 'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 601)') <> '00000'
               OR val('rw', 'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 601)') <> '5',
               'the storefront searches for its customer through the router (personalized)');
SELECT fail_if(state('rw', format('SELECT shop.review_add(%s, 601, 5, ''Great'', ''Works well.'')', q(0))) <> '00000'
               OR on_part(pid_part(q(0)), format('SELECT count(*) FROM shop.review WHERE product_id = %s AND customer_id = 601 AND rating = 5', q(0))) <> '1'
               OR state('rw', format('SELECT shop.review_add(%s, 601, 4)', q(1))) <> '00000',
               'the storefront reviews products of any shard for its customer through the router');
SELECT fail_if(state('rw', 'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 602)') <> '42501'
               OR state('rw', format('SELECT shop.review_add(%s, 602, 1)', q(0))) <> '42501'
               OR state('rw', format('SELECT shop.review_delete(%s, 602)', q(0))) <> '42501'
               OR on_part(pid_part(q(0)), format('SELECT count(*) FROM shop.review WHERE product_id = %s AND customer_id = 602', q(0))) <> '0',
               'a session of customer 601 can neither search as 602 nor review for 602 (42501)');
SELECT fail_if(val('rw', format('SELECT shop.review_delete(%s, 601)', q(1))) <> 't'
               OR on_part(pid_part(q(1)), format('SELECT count(*) FROM shop.review WHERE product_id = %s AND customer_id = 601', q(1))) <> '0',
               'the storefront deletes its customer''s review through the router');
SELECT set_config('t.so', val('rw', format('SELECT shop.checkout(%L, ''tok_visa'', ''sf-1'', ''{"country": "US"}'')', sc())), false);
CREATE FUNCTION so() RETURNS uuid LANGUAGE sql AS $$ SELECT current_setting('t.so')::uuid $$;
SELECT fail_if(val('rw', format('SELECT shop.order_get(%L) ->> ''status''', so())) <> 'paid'
               OR holds(so()) <> hl('held', q(0), 1, q(1), 1, q(2), 1, q(3), 1)
               OR val('rw', 'SELECT string_agg(order_id::text, '','') FROM shop.orders_for(601)') <> so()::text
               OR val('rw', format('SELECT shop.checkout(%L, ''tok_visa'', ''sf-1'', ''{"country": "US"}'')', sc()))::uuid <> so(),
               'the storefront checks out through the router: a paid order whose holds on 4 shards never expire; orders_for and a repeat with its key find it',
               holds(so()));
-- a checkout that fails is compensated with the storefront's rights
SELECT set_config('t.sc2', new_cart('rw', 601, ARRAY[q(0), 1, q(3), 11])::text, false);
SELECT fail_if(state('rw', format('SELECT shop.checkout(%L, ''tok_visa'', ''sf-2'')', current_setting('t.sc2'))) <> 'SH001'
               OR stock(q(0)) <> '10/1/9'
               OR all_parts('SELECT count(*) FROM shop.reservation WHERE status = ''held'' AND expires_at < ''infinity''') <> 0,
               'a storefront checkout the stock cannot cover (SH001) releases what it held', stock(q(0)));
SELECT run('rw', format('SELECT shop.cart_set_qty(%L, %s, 1)', current_setting('t.sc2'), q(3)));
SELECT fail_if(state('rw', format('SELECT shop.checkout(%L, ''tok_chargeDeclined'', ''sf-2'')', current_setting('t.sc2'))) <> 'SH004'
               OR stock(q(0)) <> '10/1/9',
               'a declined payment (SH004) too', stock(q(0)));
-- a router that stops after a step: the storefront's retry completes
SELECT dblink_exec('rw', 'SET shop_router.saga_test_stop = ''place''');
SELECT fail_if(state('rw', format('SELECT shop.checkout(%L, ''tok_visa'', ''sf-2'')', current_setting('t.sc2'))) = '00000',
               'a storefront checkout stops after placing its order');
SELECT dblink_exec('rw', 'RESET shop_router.saga_test_stop');
SELECT set_config('t.so2', val('rw', format('SELECT shop.checkout(%L, ''tok_visa'', ''sf-2'')', current_setting('t.sc2'))), false);
SELECT fail_if(holds(current_setting('t.so2')::uuid) <> hl('held', q(0), 1, q(3), 1)
               OR stock(q(0)) <> '10/2/8',
               'its retry confirms the order: its holds never expire', holds(current_setting('t.so2')::uuid));
-- a forged or another customer's session is the shard's 28000 / 42501
SELECT fail_if(state('rw', format('SELECT shop.session_begin(%L)', 'v1.601.9999999999.' || repeat('0', 64))) <> '28000'
               OR val('rw', 'SELECT shop.current_customer()') <> '601',
               'a forged token is refused by the shards (28000); the session stays');
SELECT dblink_exec('rw', format('SET shop.session = %L', current_setting('t.tok602')));
SELECT fail_if(state('rw', format('SELECT shop.cart_get(%L)', sc())) <> '42501'
               OR state('rw', 'SELECT shop.cart_create(602)') <> '00000',
               'a session of customer 602 may use 602''s carts, not 601''s');
SELECT dblink_exec('rw', 'SET shop.session = ''v1.601.9999999999.00''');
SELECT fail_if(state('rw', format('SELECT shop.cart_get(%L)', sc())) <> '28000',
               'a forged token SET on the router is refused by the shard (28000)',
               state('rw', format('SELECT shop.cart_get(%L)', sc())));
SELECT run('rw', 'SELECT shop.session_end()');
SELECT fail_if(state('rw', format('SELECT shop.cart_get(%L)', sc())) <> '42501',
               'after session_end the customer''s cart is refused again');
-- the storefront connected to a shard itself: the steps that act on
-- another shard's word want that shard's signature
CREATE TABLE pconn (i int PRIMARY KEY, s text);
INSERT INTO pconn VALUES (0, :'p0'), (1, :'p1'), (2, :'p2'), (3, :'p3');
SELECT dblink_connect('w0', (SELECT s FROM pconn WHERE i = 0) || ' user=web'),
       dblink_connect('wc', (SELECT s FROM pconn WHERE i = pid_part(601)) || ' user=web');
SELECT dblink_exec('wc', format('SET shop.session = %L', current_setting('t.tok')));
SELECT fail_if(state('w0', format('SELECT shop._saga_reserve(gen_random_uuid(), ARRAY[%s]::bigint[], ARRAY[5], ''1 minute'')', q(0))) <> '42501'
               OR state('w0', format('SELECT count(*) FROM shop._saga_reserve_signed(gen_random_uuid(), ARRAY[%s]::bigint[], ARRAY[5], ''1 minute'', ARRAY[%s]::bigint[], ARRAY[5], %L)',
                                     q(0), q(0), repeat('0', 64))) <> '42501'
               OR state('w0', format('SELECT count(*) FROM shop._saga_keep_signed(%L, ARRAY[%s]::bigint[], NULL)', current_setting('t.so2'), q(0))) <> '42501'
               OR state('w0', format('SELECT shop._saga_release_signed(%L, ARRAY[%s]::bigint[], NULL)', current_setting('t.so2'), q(0))) <> '42501'
               OR stock(q(0)) <> '10/2/8',
               'on a product shard the storefront can neither hold stock nor keep or release holds without the customer shard''s signature (42501)');
SELECT fail_if(state('wc', format('SELECT shop._cart_add_priced(%L, %s, 1, 1)', sc(), q(0))) <> '42501'
               OR state('wc', format('SELECT shop._cart_add_signed(%L, %s, 1, 1, 9999999999, %L)', sc(), q(0), repeat('0', 64))) <> '42501',
               'on the customer shard the storefront cannot price a cart line itself (42501)');
SELECT set_config('t.sc3', new_cart('rb', 602, ARRAY[q(1), 1])::text, false);
SELECT dblink_connect('wd', (SELECT s FROM pconn WHERE i = pid_part(602)) || ' user=web');
SELECT dblink_exec('wd', format('SET shop.session = %L', current_setting('t.tok602')));
SELECT set_config('t.so3', val('wd', format('SELECT saga_order_id FROM shop._saga_begin_signed(gen_random_uuid(), %L, ''tok_visa'', ''sf-3'', NULL)',
                                         current_setting('t.sc3'))), false);
SELECT fail_if(state('wd', format('SELECT count(*) FROM shop._saga_place_signed(%L, ARRAY[%s]::bigint[], ARRAY[''x''], ARRAY[''x''], ARRAY[1]::bigint[], ARRAY[1], ''tok_visa'', NULL, ARRAY[%L])',
                                  current_setting('t.so3'), q(1), repeat('0', 64))) <> '42501'
               OR state('wd', format('SELECT count(*) FROM shop._saga_place(%L, ARRAY[%s]::bigint[], ARRAY[''x''], ARRAY[''x''], ARRAY[1]::bigint[], ARRAY[1], ''tok_visa'', NULL)',
                                     current_setting('t.so3'), q(1))) <> '42501'
               OR on_part(pid_part(602), format('SELECT count(*) FROM shop."order" WHERE order_id = %L', current_setting('t.so3'))) <> '0',
               'nor place an order at a price of its choosing (42501)');
SELECT fail_if(val('wd', format('SELECT moved FROM shop._saga_finish_signed(%L, ''failed'', NULL, NULL)', current_setting('t.so3'))) <> 't',
               'the storefront abandons that saga (failed, its key free again)');
-- one checkout of a cart at a time: a second saga under another key would
-- hold the cart's lines again
SELECT set_config('t.so4', val('wd', format('SELECT saga_order_id FROM shop._saga_begin_signed(gen_random_uuid(), %L, ''tok_visa'', ''sf-4'', NULL)',
                                         current_setting('t.sc3'))), false);
SELECT fail_if(state('wd', format('SELECT saga_order_id FROM shop._saga_begin_signed(gen_random_uuid(), %L, ''tok_visa'', ''sf-5'', NULL)',
                                  current_setting('t.sc3'))) <> '55006'
               OR on_part(pid_part(602), format('SELECT count(*) FROM shop.saga WHERE cart_id = %L AND status = ''started''',
                                               current_setting('t.sc3'))) <> '1',
               'on its customer''s shard the storefront cannot open a second saga on a cart while one is started (55006)');
SELECT fail_if(val('wd', format('SELECT moved FROM shop._saga_finish_signed(%L, ''failed'', NULL, NULL)', current_setting('t.so4'))) <> 't',
               'the storefront abandons that saga too');
SELECT dblink_disconnect('w0'), dblink_disconnect('wc'), dblink_disconnect('wd');
SELECT dblink_exec('rw', 'RESET shop.session');

\echo == cart_merge: a guest cart joins the cart of its customer, on the customer shard
-- a guest cart (through conn) on a partition other than the customer's,
-- or on the customer's when same; lines (product, qty)
CREATE FUNCTION guest_cart(conn text, cust bigint, same boolean, lines bigint[]) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    id uuid;
BEGIN
    LOOP
        id := val(conn, 'SELECT shop.cart_create()')::uuid;
        EXIT WHEN (uuid_part(id) = pid_part(cust)) = same;
    END LOOP;
    FOR k IN 1..cardinality(lines) / 2 LOOP
        PERFORM run(conn, format('SELECT shop.cart_add(%L, %s, %s)', id, lines[2 * k - 1], lines[2 * k]));
    END LOOP;
    RETURN id;
END
$$;
-- the lines of a cart on every shard: product:qty, in product order
CREATE FUNCTION cart_rows(id uuid) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s:%s', t.pid, t.qty), ' ' ORDER BY t.pid), '')
      FROM part, dblink(conn, format('SELECT product_id, qty FROM shop.cart_item WHERE cart_id = %L', id))
           AS t(pid bigint, qty int)
$$;
-- what cart_rows says of (product, qty) pairs
CREATE FUNCTION rws(VARIADIC x bigint[]) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(format('%s:%s', x[2 * k - 1], x[2 * k]), ' ' ORDER BY x[2 * k - 1])
      FROM generate_series(1, cardinality(x) / 2) k
$$;
-- cart_doc without stock (the router's shards sold more than one node)
CREATE FUNCTION cart_shape(conn text, id uuid) RETURNS jsonb LANGUAGE sql AS $$
    SELECT d - 'ready_for_checkout'
           || jsonb_build_object('lines', (SELECT coalesce(jsonb_agg(l - 'available' - 'available_qty'), '[]')
                                             FROM jsonb_array_elements(d -> 'lines') l),
                                 'saved_for_later', (SELECT coalesce(jsonb_agg(l - 'available' - 'available_qty'), '[]')
                                                       FROM jsonb_array_elements(d -> 'saved_for_later') l))
      FROM (SELECT cart_doc(conn, id) AS d) x
$$;
-- customer 701 has a cart (a 1, b 2); the guest cart (b 3, c 1, d saved
-- for later) sits on another shard; the same calls on one node
SELECT set_config('t.mc', new_cart('rb', 701, ARRAY[a(), 1, b(), 2])::text, false),
       set_config('t.mc1', new_cart('one', 701, ARRAY[a(), 1, b(), 2])::text, false),
       set_config('t.mg', guest_cart('rb', 701, false, ARRAY[b(), 3, c(), 1, d(), 1])::text, false),
       set_config('t.mg1', new_cart('one', NULL, ARRAY[b(), 3, c(), 1, d(), 1])::text, false);
SELECT run(conn, format('SELECT shop.cart_save_for_later(%L, %s)', id, d()))
  FROM (VALUES ('rb', current_setting('t.mg')), ('one', current_setting('t.mg1'))) v(conn, id);
SELECT fail_if(val('rb', format('SELECT shop.cart_merge(%L, 701)', current_setting('t.mg'))) <> current_setting('t.mc')
               OR val('one', format('SELECT shop.cart_merge(%L, 701)', current_setting('t.mg1'))) <> current_setting('t.mc1'),
               'cart_merge through the router returns the customer''s cart, as one node does');
SELECT fail_if(cart_shape('rb', current_setting('t.mc')::uuid) IS DISTINCT FROM cart_shape('one', current_setting('t.mc1')::uuid),
               'the merged cart through the router is one node''s merged cart (summed quantities, the saved line)',
               format('router %s, one node %s', cart_shape('rb', current_setting('t.mc')::uuid),
                      cart_shape('one', current_setting('t.mc1')::uuid)));
SELECT fail_if(cart_rows(current_setting('t.mg')::uuid) <> ''
               OR on_part(uuid_part(current_setting('t.mg')::uuid),
                          format('SELECT status || '':'' || merged_into FROM shop.cart WHERE cart_id = %L', current_setting('t.mg')))
                  <> 'merged:' || current_setting('t.mc')
               OR state('rb', format('SELECT shop.cart_get(%L)', current_setting('t.mg'))) <> 'SH006'
               OR state('rb', format('SELECT shop.cart_merge(%L, 701)', current_setting('t.mg'))) <> 'SH006',
               'the guest cart is merged on its shard, its lines gone, and every later call is SH006 as on one node');
-- a router that dies after the customer's shard took the lines: the lines
-- are in both carts; the repeat adds none twice and merges the guest cart
SELECT set_config('t.mg2', guest_cart('rb', 701, false, ARRAY[c(), 2])::text, false);
SELECT dblink_exec('router', 'SET shop_router.saga_test_stop = merge_in');
SELECT fail_if(state('router', format('SELECT shop.cart_merge(%L, 701)', current_setting('t.mg2'))) = '00000',
               'the merge stops after its step in');
SELECT dblink_exec('router', 'RESET shop_router.saga_test_stop');
SELECT fail_if(cart_rows(current_setting('t.mc')::uuid) <> rws(a(), 1, b(), 5, c(), 3, d(), 1)
               OR cart_rows(current_setting('t.mg2')::uuid) <> rws(c(), 2),
               'stopped after in: the customer''s cart has the lines, the guest cart still has them',
               cart_rows(current_setting('t.mc')::uuid));
SELECT fail_if(val('rb', format('SELECT shop.cart_merge(%L, 701)', current_setting('t.mg2'))) <> current_setting('t.mc')
               OR cart_rows(current_setting('t.mc')::uuid) <> rws(a(), 1, b(), 5, c(), 3, d(), 1)
               OR cart_rows(current_setting('t.mg2')::uuid) <> '',
               'the repeated merge adds nothing twice and finishes the guest cart',
               cart_rows(current_setting('t.mc')::uuid));
-- a customer without a cart: a new cart on the customer's shard (one node
-- adopts the guest cart, whose id names another shard)
SELECT set_config('t.mg3', guest_cart('rb', 702, false, ARRAY[a(), 2, d(), 1])::text, false);
SELECT set_config('t.mc3', val('rb', format('SELECT shop.cart_merge(%L, 702)', current_setting('t.mg3'))), false);
SELECT fail_if(current_setting('t.mc3') = current_setting('t.mg3')
               OR uuid_part(current_setting('t.mc3')::uuid) <> pid_part(702)
               OR cart_rows(current_setting('t.mc3')::uuid) <> rws(a(), 2, d(), 1)
               OR (cart_doc('rb', current_setting('t.mc3')::uuid) ->> 'customer_id') <> '702'
               OR state('rb', format('SELECT shop.cart_get(%L)', current_setting('t.mg3'))) <> 'SH006',
               'a customer without a cart gets a new one on their shard with the guest''s lines');
-- on one shard: that shard's own merge (adopts the guest cart as one node does)
SELECT set_config('t.mg4', guest_cart('rb', 703, true, ARRAY[b(), 1])::text, false);
SELECT fail_if(val('rb', format('SELECT shop.cart_merge(%L, 703)', current_setting('t.mg4'))) <> current_setting('t.mg4')
               OR (cart_doc('rb', current_setting('t.mg4')::uuid) ->> 'customer_id') <> '703',
               'a guest cart on the customer''s shard becomes the customer''s, as on one node');
-- one node's errors
SELECT fail_if(state('rb', format('SELECT shop.cart_merge(%L, 702)', current_setting('t.mc'))) <> '22023'
               OR state('rb', format('SELECT shop.cart_merge(%L, NULL)', current_setting('t.mc'))) <> '22004'
               OR state('rb', 'SELECT shop.cart_merge(NULL, 701)') <> '22004'
               OR state('rb', 'SELECT shop.cart_merge(shop.cart_create(), 0)') <> '22023'
               OR state('rb', 'SELECT shop.cart_merge(''00000000-0000-0000-0000-00000000ffff'', 701)') <> 'SH006',
               'cart_merge errors keep one node''s SQLSTATEs');
-- the storefront: its customer's merge, nobody else's; on a shard itself
-- it cannot make lines up nor mark a guest cart merged
SELECT set_config('t.mg5', guest_cart('rw', 601, false, ARRAY[c(), 1])::text, false),
       set_config('t.mg6', guest_cart('rw', 602, false, ARRAY[c(), 1])::text, false);
SELECT fail_if(state('rw', format('SELECT shop.cart_merge(%L, 602)', current_setting('t.mg6'))) <> '42501',
               'without a session the storefront may not merge into a customer''s cart (42501)');
SELECT run('rw', format('SELECT shop.session_begin(%L)', current_setting('t.tok')));
SELECT set_config('t.mt5', val('rw', format('SELECT shop.cart_merge(%L, 601)', current_setting('t.mg5'))), false);
SELECT fail_if(uuid_part(current_setting('t.mt5')::uuid) <> pid_part(601)
               OR (cart_doc('rw', current_setting('t.mt5')::uuid) ->> 'customer_id') <> '601'
               OR cart_rows(current_setting('t.mg5')::uuid) <> ''
               OR state('rw', format('SELECT shop.cart_merge(%L, 602)', current_setting('t.mg6'))) <> '42501',
               'with its session the storefront merges a guest cart into its customer''s cart, not another''s');
SELECT dblink_connect('wm', (SELECT s FROM pconn WHERE i = pid_part(601)) || ' user=web'),
       dblink_connect('wg', (SELECT s FROM pconn WHERE i = uuid_part(current_setting('t.mg6')::uuid)) || ' user=web');
SELECT dblink_exec('wm', format('SET shop.session = %L', current_setting('t.tok')));
SELECT fail_if(state('wm', format('SELECT count(*) FROM shop._cart_merge_in(gen_random_uuid(), 601, gen_random_uuid(), ''[[%s, 9, false, 1, "2026-01-01"]]'', %L)',
                                  c(), repeat('0', 64))) <> '42501'
               OR state('wg', format('SELECT shop._cart_merge_done(%L, %L, %L)', current_setting('t.mg6'), sc(), repeat('0', 64))) <> '42501'
               OR cart_rows(current_setting('t.mg6')::uuid) <> rws(c(), 1),
               'on a shard the storefront cannot add lines a guest cart''s shard did not sign, nor mark a guest cart merged (42501)');
SELECT dblink_disconnect('wm'), dblink_disconnect('wg');
SELECT run('rw', 'SELECT shop.session_end()');

\echo == invariants on every shard and across them
SELECT fail_if(count(*) > 0, 'reserved = the units of live holds, on every shard', string_agg(t.pid::text, ','))
  FROM part, dblink(conn, 'SELECT s.product_id, s.reserved, coalesce((SELECT sum(r.qty) FROM shop.reservation r
                            WHERE r.product_id = s.product_id AND r.status = ''held''), 0) FROM shop.stock s')
       AS t(pid bigint, reserved int, held bigint)
 WHERE t.reserved <> t.held;
CREATE TABLE all_orders AS
SELECT t.* FROM part, dblink(conn, 'SELECT o.order_id, o.status,
        (SELECT count(*) FROM shop.order_line l WHERE l.order_id = o.order_id),
        (SELECT count(*) FROM shop.payment p WHERE p.order_id = o.order_id) FROM shop."order" o')
       AS t(order_id uuid, status text, lines bigint, payments bigint);
SELECT fail_if(count(*) > 0, 'no order without its lines and payment') FROM all_orders WHERE lines = 0 OR payments = 0;
CREATE TABLE all_holds AS
SELECT t.* FROM part, dblink(conn, 'SELECT substr(ref, 7)::uuid, status FROM shop.reservation WHERE ref LIKE ''order:%''')
       AS t(order_id uuid, status text);
SELECT fail_if(count(*) > 0, 'every paid order''s lines are held or committed on their shards')
  FROM all_orders o
 WHERE o.status IN ('paid', 'fulfilling', 'shipped')
   AND (SELECT count(*) FROM all_holds h WHERE h.order_id = o.order_id AND h.status IN ('held', 'committed')) <> o.lines;
SELECT fail_if(count(*) > 0, 'every held reservation belongs to a live order', string_agg(h.order_id::text, ','))
  FROM all_holds h
 WHERE h.status = 'held'
   AND NOT EXISTS (SELECT FROM all_orders o WHERE o.order_id = h.order_id AND o.status IN ('paid', 'fulfilling', 'pending'));
