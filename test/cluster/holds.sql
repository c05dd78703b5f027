-- holds.sql: direct holds and replicated rates through the router
-- (docs/scale-out.md, "Direct holds" and "Replicated tables"), run in the
-- "checker" database at the end of test/cluster/run.sh (the functions
-- fail_if and val are checks.sql's). Each failed check raises an error.
--
--   1. shop.reserve, reserve_many, reservation_release, _commit and
--      _extend through the router give one node's answers and errors
--      (SQLSTATE) for the same calls on the same stock, each hold on its
--      product's shard under an id that names that shard; a reserve_many
--      refused by one shard leaves no hold on the others (also when another
--      shard is still holding as the refusal comes, or gets the release
--      before it holds: issue 16's hold left under load); a hold made on a
--      shard directly is found by id; the storefront may call none of
--      them (42501), as on one node.
--   2. shop_router.tax_rate_set and shipping_rate_set write every shard;
--      a shard whose step fails makes the call fail after the others
--      applied it, and the retry makes every shard agree (replicated_check);
--      so does rates_sync after a shard was written directly.
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
\pset tuples_only on
\pset format unaligned
\o /dev/null
SELECT dblink_connect('h_one', :'one' || ' user=backoffice'), dblink_connect('h_rt', :'router' || ' user=backoffice'),
       dblink_connect('h_one_web', :'one' || ' user=web'), dblink_connect('h_rt_web', :'router' || ' user=web'),
       dblink_connect('h_p0', :'p0'), dblink_connect('h_p1', :'p1'), dblink_connect('h_p2', :'p2'),
       dblink_connect('h_p3', :'p3'), dblink_connect('h_one_su', :'one');
CREATE TABLE h_part (i int PRIMARY KEY, conn text NOT NULL);
INSERT INTO h_part VALUES (0, 'h_p0'), (1, 'h_p1'), (2, 'h_p2'), (3, 'h_p3');

-- the SQLSTATE of a call, or its value
CREATE FUNCTION h_call(conn text, sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN coalesce(val(conn, sql), 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE;
END
$$;
-- the same call on one node and through the router: both answers
CREATE TABLE h_log (k serial PRIMARY KEY, what text, router text, one text);
CREATE FUNCTION h_both(what text, sql text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO h_log (what, router, one) VALUES (what, h_call('h_rt', sql), h_call('h_one', sql));
$$;

\echo == direct holds through the router
-- eight products of their own, the same ids on one node and in the
-- cluster, 10 units each
SELECT val(c, $$SELECT count(shop.stock_set(shop.product_upsert(format('HOLD-%s', g), format('Hold test crate %s', g), 1000 + g,
                                                                product_id => 9000 + g), 10))::text
                  FROM generate_series(1, 8) g$$)
  FROM unnest(ARRAY['h_rt', 'h_one']) c;
SELECT fail_if(count(DISTINCT hashint8(9000 + g) & 3) <> 3, 'the hold test''s products sit on 3 shards (0, 1 and 3)')
  FROM generate_series(1, 8) g;
CREATE FUNCTION h_avail() RETURNS text LANGUAGE sql AS $$
    SELECT 'SELECT array_agg(shop.stock_available(9000 + g) ORDER BY g)::text FROM generate_series(1, 8) g'
$$;

-- reserve: an id naming the product's shard, the hold there only
CREATE TABLE h_ids (k text PRIMARY KEY, router uuid, one uuid);
CREATE FUNCTION h_hold(k text, sql text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO h_ids VALUES (k, val('h_rt', sql)::uuid, val('h_one', sql)::uuid);
$$;
SELECT h_hold('a', $$SELECT shop.reserve(9001, 3, 'hold-test')$$);
SELECT h_hold('b', $$SELECT shop.reserve(9002, 2, 'hold-test', '1 hour')$$);
SELECT h_hold('c', $$SELECT shop.reserve(9003, 4, 'hold-test')$$);
SELECT fail_if(count(*) <> 3 OR bool_or(router IS NULL OR one IS NULL), 'reserve through the router returns a hold id, as one node')
  FROM h_ids;
SELECT fail_if(count(*) > 0, 'a routed hold''s id names its product''s shard (its last 16 bits: the product''s hash bucket)',
               string_agg(k, ', '))
  FROM h_ids h JOIN (VALUES ('a', 9001), ('b', 9002), ('c', 9003)) v(k, p) USING (k)
 WHERE (('x' || right(h.router::text, 4))::bit(16)::int & 3) <> (hashint8(v.p) & 3);
SELECT fail_if(count(*) <> 3 OR count(*) FILTER (WHERE i = hashint8(t.product_id) & 3) <> 3,
               'each routed hold is on its product''s shard, and only there',
               string_agg(format('%s on p%s', t.product_id, i), ', '))
  FROM h_part, h_ids h,
       dblink(conn, format('SELECT DISTINCT product_id, qty FROM shop.reservation WHERE reservation_id = %L', h.router))
       AS t(product_id bigint, qty int);
SELECT h_both('stock_available after three holds', h_avail());

-- release, commit, extend by id: one node's answers and errors
CREATE FUNCTION h_by_id(what text, k text, sql text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO h_log (what, router, one)
    SELECT what, h_call('h_rt', format(sql, h.router)), h_call('h_one', format(sql, h.one)) FROM h_ids h WHERE h.k = $2;
$$;
SELECT h_by_id('release', 'a', 'SELECT shop.reservation_release(%L)');
SELECT h_by_id('release again', 'a', 'SELECT shop.reservation_release(%L)');
SELECT h_by_id('commit a released hold', 'a', 'SELECT shop.reservation_commit(%L)');
SELECT h_by_id('extend a released hold', 'a', 'SELECT shop.reservation_extend(%L, ''1 hour'')');
SELECT h_by_id('extend 10 minutes', 'b', 'SELECT shop.reservation_extend(%L, ''10 minutes'') > now()');
SELECT h_by_id('extend for ever', 'b', 'SELECT shop.reservation_extend(%L, NULL)');
SELECT h_by_id('extend, ttl out of range', 'b', 'SELECT shop.reservation_extend(%L, ''400 days'')');
SELECT h_by_id('commit', 'b', 'SELECT shop.reservation_commit(%L)');
SELECT h_by_id('commit again', 'b', 'SELECT shop.reservation_commit(%L)');
SELECT h_by_id('release a committed hold', 'b', 'SELECT shop.reservation_release(%L)');
SELECT h_both('release an unknown id', $$SELECT shop.reservation_release('00000000-0000-4000-8000-000000000001')$$);
SELECT h_both('commit an unknown id', $$SELECT shop.reservation_commit('00000000-0000-4000-8000-000000000002')$$);
SELECT h_both('extend an unknown id', $$SELECT shop.reservation_extend('00000000-0000-4000-8000-000000000003', '1 hour')$$);
SELECT h_both('release NULL', $$SELECT shop.reservation_release(NULL)$$);
SELECT h_both('commit NULL', $$SELECT shop.reservation_commit(NULL)$$);
SELECT h_both('extend NULL', $$SELECT shop.reservation_extend(NULL, '1 hour')$$);
-- reserve's own checks
SELECT h_both('reserve qty 0', $$SELECT shop.reserve(9004, 0)$$);
SELECT h_both('reserve qty NULL', $$SELECT shop.reserve(9004, NULL)$$);
SELECT h_both('reserve product NULL', $$SELECT shop.reserve(NULL, 1)$$);
SELECT h_both('reserve an unknown product', $$SELECT shop.reserve(999999, 1)$$);
SELECT h_both('reserve more than there is', $$SELECT shop.reserve(9004, 11)$$);
SELECT h_both('reserve, ttl out of range', $$SELECT shop.reserve(9004, 1, NULL, '400 days')$$);
SELECT h_both('reserve, ttl NULL', $$SELECT shop.reserve(9004, 1, NULL, NULL)$$);
SELECT h_both('reserve, ref too long', $$SELECT shop.reserve(9004, 1, repeat('r', 201))$$);
SELECT h_both('reserve, a card number as ref', $$SELECT shop.reserve(9004, 1, 'card 4111 1111 1111 1111')$$);
SELECT h_both('stock_available after release and commit', h_avail());

-- reserve_many: lines on several shards, a product named twice
DROP TABLE h_ids;
CREATE TABLE h_ids (k text PRIMARY KEY, router uuid, one uuid);
INSERT INTO h_ids SELECT 'm' || o, r, n
  FROM unnest(val('h_rt', $$SELECT shop.reserve_many('[{"product_id": 9001, "qty": 1}, {"product_id": 9004, "qty": 2},
                                                        {"product_id": 9003, "qty": 1}, {"product_id": 9001, "qty": 1},
                                                        {"product_id": 9007.0, "qty": 2.0}, {"product_id": 9008, "qty": 3}]',
                                                      'hold-test')::text$$)::uuid[],
              val('h_one', $$SELECT shop.reserve_many('[{"product_id": 9001, "qty": 1}, {"product_id": 9004, "qty": 2},
                                                         {"product_id": 9003, "qty": 1}, {"product_id": 9001, "qty": 1},
                                                         {"product_id": 9007.0, "qty": 2.0}, {"product_id": 9008, "qty": 3}]',
                                                       'hold-test')::text$$)::uuid[])
       WITH ORDINALITY u(r, n, o);
SELECT fail_if(count(*) <> 5 OR count(r) <> 5 OR count(n) <> 5,
               'reserve_many through the router: one id per distinct product, as one node', count(*)::text)
  FROM (SELECT router AS r, one AS n FROM h_ids) x;
SELECT fail_if(count(*) <> 5 OR count(DISTINCT h_part.i) <> 3, 'reserve_many: the ids in product_id order, each on its product''s shard (3 shards)',
               string_agg(format('%s: %s', h.k, t.product_id), ', '))
  FROM h_part, h_ids h
  JOIN (VALUES ('m1', 9001), ('m2', 9003), ('m3', 9004), ('m4', 9007), ('m5', 9008)) v(k, p) USING (k),
       dblink(conn, format('SELECT product_id, sum(qty)::int FROM shop.reservation WHERE reservation_id = %L GROUP BY 1', h.router))
       AS t(product_id bigint, qty int)
 WHERE t.product_id = v.p AND h_part.i = hashint8(v.p) & 3
   AND t.qty = CASE v.p WHEN 9003 THEN 1 WHEN 9008 THEN 3 ELSE 2 END;
SELECT h_both('stock_available after reserve_many', h_avail());
SELECT h_by_id('release a reserve_many hold', 'm2', 'SELECT shop.reservation_release(%L)');
SELECT h_by_id('commit a reserve_many hold', 'm4', 'SELECT shop.reservation_commit(%L)');
-- all or nothing: a line one shard cannot hold, and nothing held anywhere
SELECT h_both('reserve_many with a line short of stock on one shard',
              $$SELECT shop.reserve_many('[{"product_id": 9001, "qty": 1}, {"product_id": 9002, "qty": 1},
                                           {"product_id": 9003, "qty": 1}, {"product_id": 9006, "qty": 50},
                                           {"product_id": 9008, "qty": 1}]', 'hold-fail')$$);
SELECT h_both('reserve_many with an unknown product',
              $$SELECT shop.reserve_many('[{"product_id": 9001, "qty": 1}, {"product_id": 999999, "qty": 1}]', 'hold-fail')$$);
SELECT fail_if(sum(t.n) > 0, 'a reserve_many one shard refused holds nothing on the other shards',
               string_agg(format('p%s: %s', i, t.n), ', '))
  FROM h_part, dblink(conn, $$SELECT count(*) FROM shop.reservation WHERE ref = 'hold-fail' AND status = 'held'$$) AS t(n bigint);
SELECT h_both('stock_available after the refused reserve_many', h_avail());
-- a shard that refuses while another is still holding (issue 16: a hold
-- left under load): PL/Proxy raised the refusal at once and left the slow
-- shard's connection behind (a new one carried the router's release) while
-- the old backend went on holding; that hold must not survive. The slow
-- shard is made slow by a lock on its shop.reservation (the insert waits).
-- Since ha5 the refusal is an answer (shop._reserve_many_try) and the
-- router waits for the slow shard's before it releases; no hold survives
-- either way.
CREATE TABLE h_late AS
SELECT min(9000 + g) AS p FROM generate_series(1, 8) g WHERE hashint8(9000 + g) & 3 <> hashint8(9006::bigint) & 3;
SELECT dblink_connect('h_lock', (ARRAY[:'p0', :'p1', :'p2', :'p3'])[1 + (hashint8(p) & 3)]),
       dblink_connect('h_watch', (ARRAY[:'p0', :'p1', :'p2', :'p3'])[1 + (hashint8(p) & 3)])
  FROM h_late;
-- true once the local boolean expression cond holds (polled for 60 s)
CREATE FUNCTION h_until(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    FOR i IN 1..1200 LOOP
        EXECUTE 'SELECT ' || cond INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;
-- on the slow shard: a backend running fn that waits for a lock
CREATE FUNCTION h_waiting(fn text) RETURNS text LANGUAGE sql AS $$
    SELECT format($q$val('h_watch', 'SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE ''%%shop.%s(%%''
                                       AND wait_event_type = ''Lock'' AND pid <> pg_backend_pid()')::boolean$q$, fn)
$$;
CREATE FUNCTION h_late_call() RETURNS text LANGUAGE sql AS $$
    SELECT format($q$SELECT shop.reserve_many('[{"product_id": %s, "qty": 1}, {"product_id": 9006, "qty": 50}]', 'hold-late')$q$, p)
      FROM h_late
$$;
SELECT dblink_exec('h_lock', 'BEGIN'), dblink_exec('h_lock', 'LOCK TABLE shop.reservation IN EXCLUSIVE MODE');
SELECT dblink_send_query('h_rt', h_late_call());
-- (or, if the router's release reached the shard first, the call is over)
SELECT fail_if(NOT h_until(h_waiting('_reserve_many_try') || ' OR dblink_is_busy(''h_rt'') = 0'),
               'the slow shard''s hold waits for the lock');
-- the refusing shard answers its refusal as data (issue 16, ha5): the
-- router waits for the slow shard's answer before it releases (before,
-- PL/Proxy raised the refusal at once and the release could pass the hold)
SELECT pg_sleep(0.5);
SELECT fail_if(dblink_is_busy('h_rt') = 0, 'the router waits for the slow shard''s hold before it releases');
SELECT dblink_exec('h_lock', 'COMMIT');
CREATE FUNCTION h_late_result() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    SELECT v INTO r FROM dblink_get_result('h_rt') AS t(v text);
    RETURN coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE;
END
$$;
INSERT INTO h_log (what, router, one)
SELECT 'reserve_many refused by one shard while another is slow', h_late_result(), h_call('h_one', h_late_call());
SELECT count(*) FROM dblink_get_result('h_rt', false) AS t(v text);
SELECT fail_if(NOT h_until($$NOT val('h_watch', 'SELECT count(*) > 0 FROM pg_stat_activity WHERE (query LIKE ''%shop._reserve_many_try(%''
                                     OR query LIKE ''%shop._reservations_drop(%'') AND state = ''active''
                                     AND pid <> pg_backend_pid()')::boolean$$),
               'the slow shard''s hold and release end');
SELECT fail_if(sum(t.n) > 0, 'a reserve_many refused by one shard while another was still holding holds nothing',
               string_agg(format('p%s: %s', i, t.n), ', '))
  FROM h_part, dblink(conn, $$SELECT count(*) FROM shop.reservation WHERE ref = 'hold-late' AND status = 'held'$$) AS t(n bigint);
SELECT h_both('stock_available after the refused reserve_many with a slow shard', h_avail());
SELECT dblink_disconnect('h_lock'), dblink_disconnect('h_watch');
-- and when the release reaches that shard before its hold starts: the
-- hold, coming later, makes nothing (on the shard, as the router calls it)
SELECT fail_if(val(c.conn, format($$SELECT shop._reservations_drop(ARRAY[9001], ARRAY[%L]::uuid[])$$, u.id)) <> '0'
               OR val(c.conn, format($$SELECT shop._reserve_many_routed(ARRAY[9001], ARRAY[1], 'hold-late', '1 hour', ARRAY[%L]::uuid[])$$,
                                     u.id)) <> '0'
               OR val(c.conn, format($$SELECT count(*) FROM shop.reservation WHERE reservation_id = %L$$, u.id)) <> '0',
               'a routed reserve_many''s hold that comes after the router released the call makes nothing')
  FROM h_part c, (SELECT gen_random_uuid() AS id) u WHERE c.i = hashint8(9001::bigint) & 3;
-- one node's checks of the items, ref and ttl
SELECT h_both('reserve_many ' || what, format('SELECT shop.reserve_many(%s)', args))
  FROM (VALUES ('NULL items', 'NULL'), ('an object', $$'{}'$$), ('an empty array', $$'[]'$$),
               ('not an object', $$'[1]'$$), ('no product_id', $$'[{"qty": 1}]'$$),
               ('a fractional product_id', $$'[{"product_id": 9001.5, "qty": 1}]'$$),
               ('a product_id as a string', $$'[{"product_id": "9001", "qty": 1}]'$$),
               ('a product_id out of range', $$'[{"product_id": 1e30, "qty": 1}]'$$),
               ('qty 0', $$'[{"product_id": 9001, "qty": 0}]'$$),
               ('qty 1000001', $$'[{"product_id": 9001, "qty": 1000001}]'$$),
               ('a product summed above 1000000', $$'[{"product_id": 9001, "qty": 600000}, {"product_id": 9001, "qty": 600000}]'$$),
               ('1001 items', $$(SELECT jsonb_agg(jsonb_build_object('product_id', 9001, 'qty', 1)) FROM generate_series(1, 1001))$$),
               ('ttl 0 and a bad item', $$'[1]', NULL, '0'$$),
               ('ttl NULL', $$'[{"product_id": 9001, "qty": 1}]', NULL, NULL$$),
               ('ttl out of range', $$'[{"product_id": 9001, "qty": 1}]', NULL, '400 days'$$),
               ('ref too long and a bad item', $$'[{"qty": 1}]', repeat('r', 201)$$),
               ('ref too long', $$'[{"product_id": 9001, "qty": 1}]', repeat('r', 201)$$),
               ('a product with too little stock', $$'[{"product_id": 9006, "qty": 11}]'$$)) v(what, args);
SELECT h_both('stock_available after the refused calls', h_avail());
-- a hold the router did not make (on a shard directly), under an id whose
-- last 16 bits name another shard: found by id on every shard
SELECT val(c.conn, format($$UPDATE shop.reservation SET reservation_id = '00000000-0000-4000-8000-00000000%s'
                             WHERE reservation_id = %L RETURNING 'x'$$,
                          lpad(to_hex(((hashint8(9005::bigint) & 3) + 1) & 3), 4, '0'),
                          val(c.conn, $$SELECT shop.reserve(9005, 1, 'hold-direct')$$)))
  FROM h_part c WHERE c.i = hashint8(9005::bigint) & 3;
SELECT fail_if(h_call('h_rt', format($$SELECT shop.reservation_release('00000000-0000-4000-8000-00000000%s')$$,
                                     lpad(to_hex(((hashint8(9005::bigint) & 3) + 1) & 3), 4, '0'))) <> 't',
               'a hold made on its shard directly, its id naming another shard, is released through the router');
-- the storefront: no direct holds, on one node as through the router
INSERT INTO h_log (what, router, one)
SELECT 'the storefront: ' || s, h_call('h_rt_web', s), h_call('h_one_web', s)
  FROM unnest(ARRAY[$$SELECT shop.reserve(9001, 1)$$,
                    $$SELECT shop.reserve_many('[{"product_id": 9001, "qty": 1}]')$$,
                    $$SELECT shop.reservation_release('00000000-0000-4000-8000-000000000001')$$,
                    $$SELECT shop.reservation_commit('00000000-0000-4000-8000-000000000001')$$,
                    $$SELECT shop.reservation_extend('00000000-0000-4000-8000-000000000001', '1 hour')$$]) s;
-- a storefront connected to a shard itself: none of the shard-side steps
SELECT dblink_connect('h_p1_web', :'p1' || ' user=web');
SELECT fail_if(count(*) > 0, 'a storefront on a shard may call none of the router''s hold and rate steps (42501)',
               string_agg(s || ': ' || h_call('h_p1_web', s), '; '))
  FROM unnest(ARRAY[$$SELECT shop._reserve_routed(9002, 1, NULL, '1 hour', gen_random_uuid())$$,
                    $$SELECT shop._reserve_many_routed('{9002}', '{1}', NULL, '1 hour', ARRAY[gen_random_uuid()])$$,
                    $$SELECT shop._reservations_drop('{9002}', ARRAY[gen_random_uuid()])$$,
                    $$SELECT shop._rates_tax_put('DE', NULL, 0)$$, $$SELECT shop._rates_shipping_put('DE', 0, 0)$$,
                    $$SELECT shop._rates_replace('{"tax": [], "shipping": []}')$$, $$SELECT shop._rates_doc()$$,
                    $$SELECT count(*) FROM shop._replicated_digest()$$]) s
 WHERE h_call('h_p1_web', s) <> 'ERROR 42501';
SELECT dblink_disconnect('h_p1_web');
\o
SELECT format('%s: %s', what, router) FROM h_log ORDER BY k;
\o /dev/null
SELECT fail_if(count(*) > 0, 'direct holds through the router: one node''s answers and errors',
               string_agg(format('%s: router %s, one node %s', what, router, one), '; ' ORDER BY k))
  FROM h_log WHERE router IS DISTINCT FROM one;
SELECT fail_if(count(*) <> 59, 'direct holds: every call of the list was made', count(*)::text) FROM h_log;
-- every hold of the test released, on both sides
SELECT val(c, $$SELECT count(shop.reservation_release(reservation_id))::text
                  FROM (SELECT DISTINCT reservation_id FROM shop.reservation
                         WHERE ref LIKE 'hold-%' AND status = 'held') r$$)
  FROM unnest(ARRAY['h_one_su', 'h_p0', 'h_p1', 'h_p2', 'h_p3']) c;

\echo == replicated rates through the router
CREATE FUNCTION h_agree() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s on p%s', tbl, partition), ', ' ORDER BY tbl, partition), '')
      FROM dblink('h_rt', 'SELECT tbl, partition FROM shop_router.replicated_check() WHERE NOT agrees') t(tbl text, partition int)
$$;
CREATE FUNCTION h_rates(conn text) RETURNS text LANGUAGE sql AS $$
    SELECT val(conn, $q$SELECT concat((SELECT string_agg(format('%s/%s/%s', country, region, basis_points), ' ' ORDER BY country, region)
                                         FROM shop.tax_rate),
                                      ' | ', (SELECT string_agg(format('%s/%s/%s', country, min_subtotal_cents, cents), ' '
                                                               ORDER BY country, min_subtotal_cents) FROM shop.shipping_rate))$q$)
$$;
SELECT fail_if(h_agree() <> '', 'every replicated table (categories, synonyms, rates, experiments) agrees on every shard', h_agree());
SELECT fail_if(val('h_rt', $$SELECT count(*) FROM shop_router.replicated_check()$$) <> '20',
               'replicated_check: 5 tables on 4 shards');
-- the same rules on one node, written as one node writes them (SQL as the owner)
SELECT val('h_one_su', $$INSERT INTO shop.tax_rate (country, region, basis_points) VALUES ('DE', NULL, 1900), ('US', 'CA', 725)
                         ON CONFLICT (country, region) DO UPDATE SET basis_points = excluded.basis_points RETURNING 1$$),
       val('h_one_su', $$INSERT INTO shop.shipping_rate (country, min_subtotal_cents, cents) VALUES ('DE', 0, 599), ('DE', 10000, 0)
                         ON CONFLICT (country, min_subtotal_cents) DO UPDATE SET cents = excluded.cents RETURNING 1$$);
SELECT val('h_rt', $$SELECT shop_router.tax_rate_set('DE', NULL, 1900)$$), val('h_rt', $$SELECT shop_router.tax_rate_set('US', 'CA', 725)$$),
       val('h_rt', $$SELECT shop_router.shipping_rate_set('DE', 0, 599)$$), val('h_rt', $$SELECT shop_router.shipping_rate_set('DE', 10000, 0)$$);
SELECT fail_if(count(*) <> 4 OR count(*) FILTER (WHERE h_rates(conn) = h_rates('h_one_su')) <> 4 OR h_agree() <> '',
               'rates written through the router: on every shard, the rules of one node',
               string_agg(format('p%s: %s', i, h_rates(conn)), '; ') || ' / one node: ' || h_rates('h_one_su'))
  FROM h_part;
SELECT fail_if(count(*) FILTER (WHERE val(conn, $$SELECT concat(shop._tax_cents(5000, '{"country": "DE"}'), ' ',
                                                      shop._shipping_cents(5000, '{"country": "de"}'), ' ',
                                                      shop._tax_cents(10000, '{"country": "US", "region": "CA"}'))$$)
                                   = '950 599 725') <> 4,
               'every shard prices an order by the new rules (tax and shipping of a customer''s checkout)')
  FROM h_part;
-- a checkout through the router (on the customer's shard) charges what
-- one node charges under the same rules
CREATE FUNCTION h_checkout(conn text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    cart uuid := val(conn, 'SELECT shop.cart_create(7001)')::uuid;
    o uuid;
BEGIN
    PERFORM val(conn, format('SELECT shop.cart_add(%L, 9001, 2)', cart));
    o := val(conn, format($q$SELECT shop.checkout(%L, 'tok_visa', 'rates-%s', '{"country": "DE"}')$q$, cart, cart))::uuid;
    RETURN val(conn, format($q$SELECT concat_ws(' ', d->>'status', d->>'subtotal_cents', d->>'shipping_cents', d->>'tax_cents',
                                                 d->>'total_cents') FROM shop.order_get(%L) d$q$, o));
END
$$;
CREATE TABLE h_orders AS SELECT h_checkout('h_rt') AS router, h_checkout('h_one') AS one;
SELECT fail_if(router IS DISTINCT FROM one OR router <> 'paid 2002 599 380 2981',
               'a checkout through the router charges the new rules, as one node does (subtotal, shipping, tax, total)',
               router || ' / one node: ' || one)
  FROM h_orders;
SELECT fail_if(val('h_rt', $$SELECT shop_router.tax_rate_set('DE', NULL, 1600) = shop_router.tax_rate_set('DE', NULL, 1900)$$) <> 't'
               OR h_rates('h_p3') <> h_rates('h_one_su'),
               'a rule set again keeps its rate_id, and its last value');
-- a delayed copy: the copy of an earlier write (a second router's, slow)
-- arrives after a later write's copy; every shard keeps the later rules
-- (partition 0's version of its copy is older than theirs)
CREATE TABLE h_old_doc AS SELECT val('h_rt', 'SELECT shop_router._rates_doc(0)::text')::jsonb AS doc;
SELECT val('h_rt', $$SELECT shop_router.tax_rate_set('DE', NULL, 1700)$$);
SELECT fail_if(val('h_rt', format('SELECT sum(x) FROM shop_router._rates_replace(%L) x', doc)) <> '0'
               OR (SELECT count(*) FROM h_part WHERE val(conn, $$SELECT basis_points FROM shop.tax_rate WHERE country = 'DE'$$) = '1700') <> 4
               OR h_agree() <> '',
               'a delayed copy of older rules changes no shard: every shard keeps the later write', h_agree())
  FROM h_old_doc;
-- two routers writing at once (two sessions, each setting its own rule
-- many times): every shard ends with partition 0's rules
SELECT dblink_connect('h_rt2', :'router' || ' user=backoffice'), dblink_connect('h_rt3', :'router' || ' user=backoffice');
SELECT dblink_send_query('h_rt2', $$SELECT count(shop_router.tax_rate_set('DE', NULL, 1000 + g)) FROM generate_series(1, 30) g$$),
       dblink_send_query('h_rt3', $$SELECT count(shop_router.tax_rate_set('DE', NULL, 2000 + g)) FROM generate_series(1, 30) g$$);
SELECT * FROM dblink_get_result('h_rt2') AS t(n bigint);
SELECT * FROM dblink_get_result('h_rt3') AS t(n bigint);
SELECT dblink_disconnect('h_rt2'), dblink_disconnect('h_rt3');
SELECT fail_if(h_agree() <> '' OR (SELECT count(DISTINCT h_rates(conn)) FROM h_part) <> 1,
               'two routers writing rates at once: every shard ends with partition 0''s rules', h_agree());
-- partition 0 restored from an older backup (its copy's version behind
-- the shards'): rates_sync from it changes nothing, rates_sync from
-- another partition makes that one's rules the cluster's, and partition
-- 0's next write reaches every shard
SELECT val('h_p0', $$UPDATE shop.rates_version SET version = 1 RETURNING 'x'$$),
       val('h_p0', $$UPDATE shop.tax_rate SET basis_points = 5 WHERE country = 'DE' RETURNING 'x'$$);
SELECT fail_if(val('h_rt', 'SELECT shop_router.rates_sync()') <> '0' OR h_agree() !~ '^tax_rate on p1, tax_rate on p2, tax_rate on p3$',
               'rates_sync from an older partition 0 changes no other shard', h_agree());
SELECT fail_if(val('h_rt', 'SELECT shop_router.rates_sync(from_partition => 2)') <> '2' OR h_agree() <> ''
               OR val('h_rt', $$SELECT shop_router.tax_rate_set('DE', NULL, 1900)$$) IS NULL
               OR (SELECT count(*) FROM h_part WHERE val(conn, $$SELECT basis_points FROM shop.tax_rate WHERE country = 'DE'$$) = '1900') <> 4,
               'rates_sync(from_partition => 2) repairs partition 0, whose next write reaches every shard', h_agree());
-- a shard whose step fails: the call fails after the others applied it,
-- the retry converges
SELECT val('h_p3', $$CREATE FUNCTION public.h_down() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''shard p3 is down''; END';
                     CREATE TRIGGER h_down BEFORE INSERT OR DELETE ON shop.tax_rate FOR EACH STATEMENT EXECUTE FUNCTION public.h_down();
                     SELECT 'x'$$);
SELECT fail_if(h_call('h_rt', $$SELECT shop_router.tax_rate_set('FR', NULL, 2000)$$) <> 'ERROR P0001',
               'a rate write with one shard failing fails');
-- (PL/Proxy cancels the other shards' statements still running when one
-- fails: each shard either applied the write or did not)
SELECT fail_if(h_agree() !~ 'tax_rate on p3$' OR h_agree() ~ 'shipping_rate|tax_rate on p0'
               OR val('h_p3', $$SELECT count(*) FROM shop.tax_rate WHERE country = 'FR'$$) <> '0'
               OR val('h_p0', $$SELECT basis_points FROM shop.tax_rate WHERE country = 'FR'$$) <> '2000',
               'partition 0 has the rule, the failed shard does not; replicated_check names it', h_agree());
SELECT val('h_p3', $$DROP TRIGGER h_down ON shop.tax_rate; DROP FUNCTION public.h_down(); SELECT 'x'$$);
SELECT fail_if(h_call('h_rt', $$SELECT shop_router.tax_rate_set('FR', NULL, 2000)$$)
                   IS DISTINCT FROM val('h_p0', $$SELECT rate_id FROM shop.tax_rate WHERE country = 'FR'$$)
               OR h_agree() <> ''
               OR (SELECT count(*) FROM h_part WHERE val(conn, $$SELECT basis_points FROM shop.tax_rate WHERE country = 'FR'$$) = '2000') <> 4,
               'the retry of the call: the same rate_id, every shard agrees', h_agree());
-- a shard that cannot be reached: the partition's connection string names
-- no server (new router sessions read it); the call fails, replicated_check
-- names the shard with no digest; the retry once it is back converges
SELECT dblink_connect('h_rt_su', :'router');
SELECT dblink_exec('h_rt_su', format('ALTER SERVER shop_cluster OPTIONS (SET p3 %L)',
                                     regexp_replace(:'p3', 'port=[0-9]+', 'port=1') || ' connect_timeout=2'));
SELECT dblink_connect('h_rt_down', :'router' || ' user=backoffice');
SELECT fail_if(h_call('h_rt_down', $$SELECT shop_router.tax_rate_set('IT', NULL, 2200)$$) !~ '^ERROR'
               OR val('h_p0', $$SELECT basis_points FROM shop.tax_rate WHERE country = 'IT'$$) <> '2200'
               OR (SELECT count(*) FROM dblink('h_rt_down', 'SELECT tbl, n, agrees FROM shop_router.replicated_check() WHERE partition = 3')
                                        AS t(tbl text, n bigint, agrees boolean) WHERE n IS NULL AND NOT agrees) <> 5,
               'a rate write with a shard down fails after partition 0 took it; replicated_check lists the shard, unreachable');
SELECT dblink_disconnect('h_rt_down');
SELECT dblink_exec('h_rt_su', format('ALTER SERVER shop_cluster OPTIONS (SET p3 %L)', :'p3'));
SELECT dblink_disconnect('h_rt_su');
SELECT dblink_disconnect('h_rt'), dblink_connect('h_rt', :'router' || ' user=backoffice');
SELECT fail_if(h_call('h_rt', $$SELECT shop_router.tax_rate_set('IT', NULL, 2200)$$)
                   IS DISTINCT FROM val('h_p0', $$SELECT rate_id FROM shop.tax_rate WHERE country = 'IT'$$)
               OR h_agree() <> ''
               OR (SELECT count(*) FROM h_part WHERE val(conn, $$SELECT basis_points FROM shop.tax_rate WHERE country = 'IT'$$) = '2200') <> 4,
               'the shard back, the retry: every shard has the rule', h_agree());
SELECT val('h_rt', $$SELECT shop_router.tax_rate_set('IT', NULL, NULL)$$);
-- a shard written directly (or restored from an older backup): rates_sync
SELECT val('h_p2', $$DELETE FROM shop.shipping_rate WHERE country = 'DE' AND min_subtotal_cents = 10000 RETURNING 'x'$$),
       val('h_p1', $$UPDATE shop.tax_rate SET basis_points = 1 WHERE country = 'US' RETURNING 'x'$$);
SELECT fail_if(h_agree() <> 'shipping_rate on p2, tax_rate on p1', 'replicated_check names the shards written directly', h_agree());
SELECT fail_if(val('h_rt', 'SELECT shop_router.rates_sync()') <> '3' OR val('h_rt', 'SELECT shop_router.rates_sync()') <> '0'
               OR h_agree() <> '',
               'rates_sync puts partition 0''s rules back (3 rows written), then has nothing to do', h_agree());
-- removal, bad input, the storefront
SELECT fail_if(h_call('h_rt', $$SELECT shop_router.tax_rate_set('FR', NULL, NULL) IS NOT NULL$$) <> 't'
               OR h_call('h_rt', $$SELECT shop_router.tax_rate_set('FR', NULL, NULL)$$) <> 'NULL'
               OR (SELECT count(*) FROM h_part WHERE val(conn, $$SELECT count(*) FROM shop.tax_rate WHERE country = 'FR'$$) = '0') <> 4,
               'a rule removed through the router is gone from every shard (a second removal: NULL)');
SELECT fail_if(h_call('h_rt', $$SELECT shop_router.tax_rate_set('fr', NULL, 2000)$$) <> 'ERROR 23514'
               OR h_call('h_rt', $$SELECT shop_router.tax_rate_set('FR', NULL, 10001)$$) <> 'ERROR 23514'
               OR h_call('h_rt', $$SELECT shop_router.shipping_rate_set('FR', NULL, 100)$$) <> 'ERROR 22004'
               OR h_call('h_rt', $$SELECT shop_router.rates_sync(4)$$) <> 'ERROR 22023'
               OR h_agree() <> ''
               OR (SELECT count(*) FROM h_part WHERE val(conn, $$SELECT count(*) FROM shop.tax_rate WHERE country IN ('FR', 'fr')$$) = '0') <> 4,
               'a rule the table refuses: one node''s SQLSTATE, written nowhere');
SELECT fail_if(count(*) > 0, 'the storefront may not write or check rates through the router (42501)', string_agg(s, ', '))
  FROM unnest(ARRAY[$$SELECT shop_router.tax_rate_set('DE', NULL, 1900)$$, $$SELECT shop_router.shipping_rate_set('DE', 0, 1)$$,
                    $$SELECT shop_router.rates_sync()$$, $$SELECT count(*) FROM shop_router.replicated_check()$$]) s
 WHERE h_call('h_rt_web', s) <> 'ERROR 42501';
-- the rules back as they were
SELECT val('h_rt', $$SELECT shop_router.tax_rate_set('DE', NULL, NULL)$$), val('h_rt', $$SELECT shop_router.tax_rate_set('US', 'CA', NULL)$$),
       val('h_rt', $$SELECT shop_router.shipping_rate_set('DE', 0, NULL)$$), val('h_rt', $$SELECT shop_router.shipping_rate_set('DE', 10000, NULL)$$),
       val('h_one_su', $$DELETE FROM shop.tax_rate WHERE NOT builtin RETURNING 1$$),
       val('h_one_su', $$DELETE FROM shop.shipping_rate WHERE NOT builtin RETURNING 1$$);
SELECT fail_if(count(*) FILTER (WHERE h_rates(conn) = h_rates('h_one_su')) <> 4 OR h_agree() <> '',
               'the rules removed through the router: the built-in ones on every shard')
  FROM h_part;

SELECT dblink_disconnect(c) FROM unnest(ARRAY['h_one', 'h_rt', 'h_one_web', 'h_rt_web', 'h_p0', 'h_p1', 'h_p2', 'h_p3', 'h_one_su']) c;
