-- crash.sql: the invariants after the kills of test/cluster/crash.sh, in
-- the "checker" database: every shard read with dblink.
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
\pset tuples_only on
\pset format unaligned
\o /dev/null
SELECT dblink_connect('p0', :'p0'), dblink_connect('p1', :'p1'), dblink_connect('p2', :'p2'),
       dblink_connect('p3', :'p3'), dblink_connect('router', :'router');

CREATE TEMP TABLE cr AS
SELECT * FROM dblink('router', 'SELECT client, order_id, outcome FROM race_result') AS t(client int, order_id uuid, outcome text);
CREATE TEMP TABLE co AS
SELECT t.* FROM part, dblink(conn, 'SELECT o.order_id, o.status, o.customer_id, o.idempotency_key,
        (SELECT count(*) FROM shop.order_line l WHERE l.order_id = o.order_id),
        (SELECT count(*) FROM shop.payment p WHERE p.order_id = o.order_id) FROM shop."order" o')
       AS t(order_id uuid, status text, customer_id bigint, key text, lines bigint, payments bigint);
CREATE TEMP TABLE cl AS
SELECT t.* FROM part, dblink(conn, 'SELECT order_id, product_id, qty FROM shop.order_line')
       AS t(order_id uuid, product_id bigint, qty int);
CREATE TEMP TABLE ch AS
SELECT t.* FROM part, dblink(conn, 'SELECT substr(ref, 7)::uuid, product_id, status, sum(qty), bool_and(expires_at = ''infinity'')
                                      FROM shop.reservation WHERE ref LIKE ''order:%'' GROUP BY 1, 2, 3')
       AS t(order_id uuid, product_id bigint, status text, qty bigint, forever boolean);

SELECT fail_if(count(*) = 0, 'checkouts went through between the kills', format('%s orders', count(*)))
  FROM cr WHERE outcome = 'ok';
SELECT fail_if(count(*) > 0, 'reserved = the units of live holds, on every shard', string_agg(t.pid::text, ','))
  FROM part, dblink(conn, 'SELECT s.product_id, s.reserved, coalesce((SELECT sum(r.qty) FROM shop.reservation r
                            WHERE r.product_id = s.product_id AND r.status = ''held''), 0) FROM shop.stock s')
       AS t(pid bigint, reserved int, held bigint)
 WHERE t.reserved <> t.held;
SELECT fail_if(count(*) > 0, 'no order without its lines and payment', string_agg(order_id::text, ','))
  FROM co WHERE lines = 0 OR payments = 0;
SELECT fail_if(count(*) > 0, 'no paid order without its reservations: every line held (or committed) on its shard',
               string_agg(l.order_id::text, ','))
  FROM co o JOIN cl l ON l.order_id = o.order_id
 WHERE o.status IN ('paid', 'fulfilling', 'shipped')
   AND NOT EXISTS (SELECT FROM ch h WHERE h.order_id = l.order_id AND h.product_id = l.product_id
                                      AND h.status IN ('held', 'committed') AND h.qty = l.qty);
SELECT fail_if(count(*) > 0, 'every held unit belongs to a live order; a paid order''s holds never expire',
               string_agg(h.order_id::text, ','))
  FROM ch h
 WHERE h.status = 'held'
   AND NOT EXISTS (SELECT FROM co o WHERE o.order_id = h.order_id
                     AND (o.status IN ('paid', 'fulfilling') AND h.forever OR o.status = 'pending'));
SELECT fail_if(all_parts('SELECT count(*) FROM shop.saga WHERE status IN (''started'', ''placed'')') <> 0,
               'no saga left open');
SELECT fail_if(count(*) > 0, 'no idempotency key with two orders', string_agg(key, ','))
  FROM (SELECT customer_id, key FROM co WHERE key IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) x;
SELECT fail_if(all_parts('SELECT count(*) FROM shop.idempotency i WHERE NOT EXISTS (SELECT FROM shop."order" o WHERE o.order_id = i.order_id)') <> 0,
               'every claimed key names an order');
SELECT fail_if(count(*) > 0, 'every order a checkout returned is there, paid',
               string_agg(cr.order_id::text, ','))
  FROM cr WHERE cr.outcome = 'ok'
   AND NOT EXISTS (SELECT FROM co WHERE co.order_id = cr.order_id AND co.status = 'paid');
\o
SELECT format('   %s orders placed through the kills, %s cancelled by recovery',
              (SELECT count(*) FROM co WHERE customer_id BETWEEN 70000 AND 70063),
              (SELECT count(*) FROM co WHERE customer_id BETWEEN 70000 AND 70063 AND status = 'cancelled'));
