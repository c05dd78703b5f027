-- race.sql: the checks of the oversell race (test/cluster/race.sh), in the
-- "checker" database after saga.sql: every shard read with dblink.
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
\pset tuples_only on
\pset format unaligned
\o /dev/null
SELECT dblink_connect('p0', :'p0'), dblink_connect('p1', :'p1'), dblink_connect('p2', :'p2'),
       dblink_connect('p3', :'p3'), dblink_connect('router', :'router');

CREATE TEMP TABLE rp AS
SELECT * FROM dblink('router', 'SELECT product_id, part FROM race_product') AS t(product_id bigint, part int);
CREATE TEMP TABLE rr AS
SELECT * FROM dblink('router', 'SELECT client, order_id, outcome FROM race_result') AS t(client int, order_id uuid, outcome text);
-- each race product's stock, holds and order lines, on every shard
CREATE TEMP TABLE rs AS
SELECT t.*, p.i FROM part p, dblink(p.conn, 'SELECT product_id, sum(on_hand), sum(reserved) FROM shop.stock
                                          WHERE product_id BETWEEN 900001 AND 900100 GROUP BY 1')
       AS t(product_id bigint, on_hand bigint, reserved bigint);
CREATE TEMP TABLE rh AS
SELECT t.* FROM part, dblink(conn, 'SELECT product_id, substr(ref, 7)::uuid, status, sum(qty), bool_and(expires_at = ''infinity'')
                                      FROM shop.reservation WHERE product_id BETWEEN 900001 AND 900100 GROUP BY 1, 2, 3')
       AS t(product_id bigint, order_id uuid, status text, qty bigint, forever boolean);
CREATE TEMP TABLE ro AS
SELECT t.* FROM part, dblink(conn, 'SELECT o.order_id, o.status, l.product_id, l.qty FROM shop."order" o
                                      JOIN shop.order_line l ON l.order_id = o.order_id
                                     WHERE l.product_id BETWEEN 900001 AND 900100')
       AS t(order_id uuid, status text, product_id bigint, qty int);

SELECT fail_if((SELECT count(*) FROM rs WHERE on_hand = 12) <> 8
               OR (SELECT count(*) FROM rs r JOIN rp USING (product_id) WHERE r.i = rp.part) <> 8
               OR (SELECT count(DISTINCT part) FROM rp) <> 4,
               'the race''s 8 products, 12 units each, sit 2 on each of the 4 shards');
SELECT fail_if(count(*) = 0 OR count(*) FILTER (WHERE outcome = 'sold out') = 0
               OR count(*) FILTER (WHERE outcome = 'ok') = 0,
               'the race sold out: some checkouts were paid, others refused with SH001',
               format('%s checkouts', count(*)))
  FROM rr;
SELECT fail_if(count(*) > 0, 'nothing oversold: each product''s paid lines are at most its 12 units',
               string_agg(format('%s: %s', product_id, sold), ', '))
  FROM (SELECT product_id, sum(qty) AS sold FROM ro WHERE status = 'paid' GROUP BY 1) x
 WHERE sold > 12;
SELECT fail_if(count(*) > 0, 'each product''s reserved count is its held units, and its paid order lines',
               string_agg(format('%s: reserved %s, held %s, paid %s', s.product_id, s.reserved, h.held, o.paid), ', '))
  FROM rs s
  LEFT JOIN (SELECT product_id, sum(qty) AS held FROM rh WHERE status = 'held' GROUP BY 1) h USING (product_id)
  LEFT JOIN (SELECT product_id, sum(qty) AS paid FROM ro WHERE status = 'paid' GROUP BY 1) o USING (product_id)
 WHERE s.reserved <> coalesce(h.held, 0) OR s.reserved <> coalesce(o.paid, 0);
SELECT fail_if(count(*) > 0, 'every checkout that returned an order has it, paid, exactly once',
               string_agg(rr.order_id::text, ', '))
  FROM rr
 WHERE rr.outcome = 'ok'
   AND (SELECT count(DISTINCT ro.status) FILTER (WHERE ro.status = 'paid') FROM ro WHERE ro.order_id = rr.order_id) <> 1;
SELECT fail_if(count(*) > 0, 'no stuck hold after the TTL, the sweeps and saga_recover: every held unit is a paid order''s, kept until it ships',
               string_agg(format('%s of %s', h.product_id, h.order_id), ', '))
  FROM rh h
 WHERE h.status = 'held'
   AND (NOT h.forever OR NOT EXISTS (SELECT FROM ro WHERE ro.order_id = h.order_id AND ro.status = 'paid'));
SELECT fail_if(count(*) > 0, 'every paid order''s lines are held on their shards',
               string_agg(o.order_id::text, ', '))
  FROM ro o
 WHERE o.status = 'paid'
   AND NOT EXISTS (SELECT FROM rh h WHERE h.order_id = o.order_id AND h.product_id = o.product_id
                                      AND h.status = 'held' AND h.qty = o.qty);
SELECT fail_if(all_parts('SELECT count(*) FROM shop.saga WHERE status IN (''started'', ''placed'')') <> 0,
               'no saga left open');
SELECT fail_if(count(*) > 0, 'reserved = the units of live holds, on every shard', string_agg(t.pid::text, ','))
  FROM part, dblink(conn, 'SELECT s.product_id, s.reserved, coalesce((SELECT sum(r.qty) FROM shop.reservation r
                            WHERE r.product_id = s.product_id AND r.status = ''held''), 0) FROM shop.stock s')
       AS t(pid bigint, reserved int, held bigint)
 WHERE t.reserved <> t.held;
\o
SELECT format('   %s checkouts: %s paid, %s sold out; %s of 96 units sold',
              (SELECT count(*) FROM rr), (SELECT count(*) FROM rr WHERE outcome = 'ok'),
              (SELECT count(*) FROM rr WHERE outcome = 'sold out'),
              (SELECT coalesce(sum(qty), 0) FROM ro WHERE status = 'paid'));
