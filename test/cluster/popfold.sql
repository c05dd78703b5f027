-- popfold.sql: the cluster's popularity folded from the shards' change
-- logs (docs/scale-out.md, "Popularity across shards"), run in the
-- "checker" database after holds.sql (test/cluster/run.sh). Each failed
-- check raises an error.
--
-- shop_router.popularity_refresh() keeps every product's decayed mass and
-- folds into it what each shard logged since the last refresh (orders
-- placed, paid, cancelled; views recorded and dropped; an event's time
-- changed) and the events that left the 16 half-lives. After each kind of
-- change, on several shards, the kept values must equal the whole
-- recomputation (shop_router.popularity_cluster: every shard's sums) and a
-- whole refresh must find nothing to move on the shards.
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
\pset tuples_only on
\pset format unaligned
\o /dev/null
SELECT dblink_connect('f_p0', :'p0'), dblink_connect('f_p1', :'p1'), dblink_connect('f_p2', :'p2'),
       dblink_connect('f_p3', :'p3'), dblink_connect('f_rt_su', :'router');
-- a half-life of an hour on every shard (16 hours of window: events can
-- be moved out of it), and a cap of 4 views per customer; the router's
-- new session's shard connections read them
CREATE TABLE f_part (i int PRIMARY KEY, conn text NOT NULL);
INSERT INTO f_part VALUES (0, 'f_p0'), (1, 'f_p1'), (2, 'f_p2'), (3, 'f_p3');
SELECT dblink_exec(conn, format('ALTER DATABASE s%s SET shop.popularity_half_life = ''1h''', i)),
       dblink_exec(conn, format('ALTER DATABASE s%s SET shop.recent_views_cap = 4', i))
  FROM f_part;
SELECT dblink_connect('f_rt', :'router' || ' user=backoffice'), dblink_connect('f_rt_web', :'router' || ' user=web');
CREATE TABLE f_log (k serial PRIMARY KEY, what text, res jsonb);

-- the kept values (the router's masses aged to the cluster's newest
-- event) against every shard's sums recomputed; every product in both
CREATE FUNCTION f_diff() RETURNS TABLE (n bigint, bad bigint, detail text) LANGUAGE sql AS $$
    SELECT count(*), count(*) FILTER (WHERE k.pop IS NULL OR w.pop IS NULL OR abs(k.pop - w.pop) > 1e-6),
           string_agg(format('%s: kept %s, whole %s', product_id, k.pop, w.pop), ', ' ORDER BY product_id)
             FILTER (WHERE k.pop IS NULL OR w.pop IS NULL OR abs(k.pop - w.pop) > 1e-6)
      FROM dblink('f_rt_su', $q$
               SELECT m.product_id, (x.s / (x.s + 10))::float8
                 FROM shop_router.popularity_mass m, shop_router.popularity_state st,
                      LATERAL (SELECT m.mass * exp(-ln(2::float8) * extract(epoch FROM (SELECT max(c.newest) FROM shop_router._popularity_clock() c)
                                                                                   - st.epoch)::float8 / st.half_life) AS s) x$q$)
           k(product_id bigint, pop float8)
      FULL JOIN dblink('f_rt', 'SELECT product_id, popularity FROM shop_router.popularity_cluster()') w(product_id bigint, pop float8)
           USING (product_id)
$$;
-- each product's popularity on its shard
CREATE FUNCTION f_stored() RETURNS TABLE (product_id bigint, popularity real) LANGUAGE sql AS $$
    SELECT x.product_id, x.popularity
      FROM f_part p, dblink(p.conn, 'SELECT product_id, popularity FROM shop.product_popularity') x(product_id bigint, popularity real)
     WHERE hashint8(x.product_id) & 3 = p.i
$$;
CREATE FUNCTION f_refresh(what text, whole boolean DEFAULT false) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO f_log (what, res)
    VALUES (what, val('f_rt', format('SELECT shop_router.popularity_refresh(%L)::text', whole))::jsonb)
    RETURNING res
$$;
-- after an incremental refresh: it folded (not recomputed), its values are
-- the whole recomputation's, and a whole refresh then moves nothing on the
-- shards (every stored value is the one it would write)
CREATE FUNCTION f_check(what text, min_n int DEFAULT 10) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := f_refresh(what);
    d record;
    kept_before text;
    w jsonb;
BEGIN
    SELECT * INTO d FROM f_diff();
    PERFORM fail_if(r ->> 'fold' <> 'incremental' OR d.bad > 0 OR d.n < min_n,
                    format('%s: the folded values are the whole recomputation''s (%s products, %s changes read)',
                           what, d.n, r ->> 'changes'),
                    r::text || ' ' || coalesce(d.detail, ''));
    SELECT string_agg(format('%s=%s', s.product_id, s.popularity), ' ' ORDER BY s.product_id) INTO kept_before FROM f_stored() s;
    w := f_refresh(what || ' (whole)', true);
    PERFORM fail_if((w ->> 'popularity_updated')::int <> 0 OR w ->> 'fold' <> 'whole'
                    OR kept_before IS DISTINCT FROM (SELECT string_agg(format('%s=%s', s.product_id, s.popularity), ' ' ORDER BY s.product_id)
                                                       FROM f_stored() s),
                    format('%s: a whole refresh then moves nothing on the shards', what), w::text);
END
$$;
-- orders through the router: a customer's cart of the given products
CREATE FUNCTION f_order(customer bigint, products bigint[]) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    cart uuid := val('f_rt', format('SELECT shop.cart_create(%s)', customer))::uuid;
    p bigint;
BEGIN
    FOREACH p IN ARRAY products LOOP
        PERFORM val('f_rt', format('SELECT shop.cart_add(%L, %s, 1)', cart, p));
    END LOOP;
    RETURN val('f_rt', format($q$SELECT shop.checkout(%L, 'tok_visa', 'popfold-%s')$q$, cart, cart))::uuid;
END
$$;
SELECT val('f_rt', 'SELECT count(shop.stock_set(p, 1000)) FROM generate_series(1, 60) p');

\echo == the popularity of the cluster folded from the change logs of the shards
SELECT fail_if(count(*) <> 4, 'every shard logs the changes of its counted purchases and views (cluster_setup made the triggers)')
  FROM f_part WHERE val(conn, 'SELECT shop._popularity_log_tracked()') = 't';
SELECT f_order(8100, '{1,2}');
SELECT f_refresh('start', true);
SELECT fail_if(res ->> 'fold' IS DISTINCT FROM 'whole', 'the first refresh of a half-life the router has not kept: a whole one', res::text)
  FROM f_log ORDER BY k DESC LIMIT 1;
SELECT fail_if(res ->> 'fold' IS DISTINCT FROM 'incremental' OR res ->> 'changes' IS DISTINCT FROM '0'
               OR res ->> 'popularity_updated' IS DISTINCT FROM '0',
               'a refresh with nothing new folds, reads no change and writes nothing', res::text)
  FROM f_refresh('nothing new') res;

-- orders on every shard (customers 8001..8012 spread over the 4 shards)
CREATE TABLE f_orders AS
SELECT c AS customer_id, f_order(c, ARRAY[1 + c % 7, 11 + c % 5, 21 + c % 3]) AS order_id FROM generate_series(8001, 8012) c;
SELECT fail_if(count(DISTINCT val('f_rt_su', format('SELECT hashint8(%s) & 3', customer_id))) < 3, 'the orders are on 3 shards or more')
  FROM f_orders;
SELECT f_check('orders on every shard');

-- cancellations of paid orders (on their shards) and a second order
SELECT val('f_rt', format('SELECT shop.order_transition(%L, ''cancelled'')', order_id)) FROM f_orders WHERE customer_id % 3 = 0;
SELECT f_order(8101, '{1,2,3}');
SELECT f_check('orders cancelled');

-- views, a view repeated (its old row dropped), views beyond the cap of 4
-- (the oldest dropped), on several shards
SELECT val('f_rt', format('SELECT shop.view(%s, %s)', c, p))
  FROM generate_series(8001, 8008) c, generate_series(31, 36) p ORDER BY c, p;
SELECT val('f_rt', format('SELECT shop.view(%s, %s)', c, 33)) FROM generate_series(8001, 8004) c;
SELECT fail_if(count(*) <> 4, 'the cap dropped views: at most 4 a customer')
  FROM f_part WHERE val(conn, 'SELECT coalesce(max(n), 0) FROM (SELECT count(*) n FROM shop.view_event WHERE customer_id BETWEEN 8001 AND 8008 GROUP BY customer_id) x')::int <= 4;
SELECT f_check('views recorded, repeated and dropped by the cap');

-- a transaction with an older timestamp that commits after a refresh
-- read its shard: counted by the next one
SELECT dblink_connect('f_late', :'p3');
SELECT dblink_exec('f_late', 'BEGIN');
SELECT dblink_exec('f_late', $$INSERT INTO shop.view_event (customer_id, viewed_at, product_id) VALUES (8203, now() - interval '1 hour', 42)$$);
SELECT f_refresh('a transaction still open');
SELECT dblink_exec('f_late', 'COMMIT');
SELECT dblink_disconnect('f_late');
SELECT f_check('a transaction with an older time committed after the last refresh');

-- a refresh whose router transaction failed after the shards' folds (the
-- shards read their logs under a fold number the router did not keep):
-- the next refresh reads those changes again, each once
SELECT f_order(8102, '{4,5}');
SELECT dblink_exec('f_rt', 'BEGIN');
SELECT val('f_rt', 'SELECT shop_router.popularity_refresh()::text');
SELECT dblink_exec('f_rt', 'ROLLBACK');
SELECT f_order(8103, '{5,6}');
SELECT f_check('a refresh rolled back on the router, then another');

-- events' times changed on the shards directly (an order's and views'
-- moved 10 hours back), then the window: a view 17 hours ahead on one
-- shard moves the cluster's newest event, and every event older than 16
-- hours before it leaves the window
SELECT val(conn, $$WITH u AS (UPDATE shop.view_event SET viewed_at = viewed_at - interval '10 hours'
                                 WHERE customer_id IN (8001, 8002, 8005) RETURNING 1) SELECT count(*) FROM u$$),
       val(conn, $$WITH u AS (UPDATE shop."order" SET created_at = created_at - interval '10 hours'
                                 WHERE customer_id IN (8004, 8007, 8010) RETURNING 1) SELECT count(*) FROM u$$)
  FROM f_part;
SELECT f_check('events moved back in time');
SELECT val('f_p1', $$INSERT INTO shop.view_event (customer_id, viewed_at, product_id) VALUES (8201, now() + interval '7 hours', 40) RETURNING 'x'$$);
SELECT f_check('the window moved 7 hours: events 10 hours back left it');
SELECT val('f_p2', $$INSERT INTO shop.view_event (customer_id, viewed_at, product_id) VALUES (8202, now() + interval '17 hours', 41) RETURNING 'x'$$);
SELECT f_check('the window moved 17 hours: every event of the test but two left it', 2);

-- a shard whose log cannot be trusted (a TRUNCATE of its views): the
-- next refresh is a whole one, then folds again
SELECT val('f_p0', $$WITH d AS (DELETE FROM shop.view_event WHERE customer_id = 8201 RETURNING 1) SELECT count(*) FROM d$$);
SELECT dblink_exec('f_p0', 'CREATE TEMP TABLE f_keep AS SELECT * FROM shop.view_event');
SELECT dblink_exec('f_p0', 'TRUNCATE shop.view_event');
SELECT dblink_exec('f_p0', 'INSERT INTO shop.view_event SELECT * FROM f_keep');
SELECT fail_if(f_refresh('after a TRUNCATE') ->> 'fold' <> 'whole', 'a TRUNCATE on a shard: the next refresh is a whole one');
SELECT val('f_p1', $$INSERT INTO shop.view_event (customer_id, viewed_at, product_id) VALUES (8204, now() + interval '16 hours 30 minutes', 43) RETURNING 'x'$$);
SELECT f_check('after the whole refresh, folds again', 2);

-- the storefront may not fold or read the log
SELECT dblink_connect('f_p0_web', :'p0' || ' user=web');
SELECT fail_if(count(*) > 0, 'a storefront may not call the fold''s steps on a shard or the router (42501)', string_agg(s, ', '))
  FROM unnest(ARRAY[$$SELECT count(*) FROM shop._popularity_fold(1, true, now(), NULL, now(), 3600)$$,
                    $$SELECT count(*) FROM shop._popularity_put('{}', '{}', '{}', false)$$,
                    $$SELECT count(*) FROM shop.popularity_log$$]) s
 WHERE api_state('f_p0_web', s) <> '42501';
SELECT dblink_disconnect('f_p0_web');
SELECT fail_if(api_state('f_rt_web', 'SELECT shop_router.popularity_refresh(true)::text') <> '42501',
               'a storefront may not refresh through the router (42501)');
SELECT fail_if(api_state('f_p0', 'SELECT count(*) FROM shop._popularity_fold(1, false, now(), now(), now() - interval ''1 hour'', 3600)') <> '22023',
               'a fold whose window goes back: 22023');

\o
SELECT format('%s: %s', what, res) FROM f_log ORDER BY k;
\o /dev/null
SELECT dblink_exec(conn, format('ALTER DATABASE s%s RESET shop.popularity_half_life', i)),
       dblink_exec(conn, format('ALTER DATABASE s%s RESET shop.recent_views_cap', i))
  FROM f_part;
SELECT dblink_disconnect(c) FROM unnest(ARRAY['f_p0', 'f_p1', 'f_p2', 'f_p3', 'f_rt', 'f_rt_su', 'f_rt_web']) c;
