-- invariants.sql: the shop's invariants after a crash, a failover or a
-- restore, as one row per check: the check's name and its number of
-- violations (0 when it holds).  Read by test/failover and test/pitr, which
-- fail on any row whose count is not 0.  Read-only: runs on a standby too.
SELECT 'orders without lines', count(*) FROM shop."order" o
 WHERE NOT EXISTS (SELECT 1 FROM shop.order_line l WHERE l.order_id = o.order_id)
UNION ALL
SELECT 'orders without exactly one payment', count(*) FROM shop."order" o
 WHERE (SELECT count(*) FROM shop.payment p WHERE p.order_id = o.order_id) <> 1
UNION ALL
SELECT 'payments not matching their order', count(*) FROM shop.payment p JOIN shop."order" o USING (order_id)
 WHERE (o.status = 'paid' AND p.status <> 'captured')
    OR (o.status = 'pending' AND p.status <> 'pending')
    OR p.amount_cents <> o.total_cents
UNION ALL
SELECT 'orders whose events do not match', count(*) FROM shop."order" o
 WHERE (SELECT count(*) FROM shop.order_event e WHERE e.order_id = o.order_id) <> o.event_count
    OR (SELECT max(seq) FROM shop.order_event e WHERE e.order_id = o.order_id) <> o.event_count
    OR (SELECT to_status FROM shop.order_event e WHERE e.order_id = o.order_id AND seq = 1) <> 'pending'
    OR (SELECT to_status FROM shop.order_event e WHERE e.order_id = o.order_id
         ORDER BY seq DESC LIMIT 1) <> o.status
UNION ALL
SELECT 'order lines without a hold', count(*) FROM shop.order_line l
 WHERE l.reservation_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM shop.reservation r
                    WHERE r.product_id = l.product_id AND r.reservation_id = l.reservation_id)
UNION ALL
SELECT 'holds not matching their order''s status', count(*) FROM shop.order_line l
  JOIN shop."order" o USING (order_id)
  JOIN shop.reservation r ON r.product_id = l.product_id AND r.reservation_id = l.reservation_id
 WHERE (o.status IN ('paid', 'fulfilling') AND r.status <> 'held')
    OR (o.status = 'pending' AND r.status NOT IN ('held', 'expired'))
    OR (o.status = 'shipped' AND r.status <> 'committed')
    OR (o.status = 'cancelled' AND r.status = 'held')
UNION ALL
SELECT 'stock rows where reserved <> the sum of live holds', count(*) FROM shop.stock s
 WHERE s.reserved <> coalesce((SELECT sum(r.qty) FROM shop.reservation r
                                WHERE r.product_id = s.product_id AND r.location = s.location
                                  AND r.bucket = s.bucket AND r.status = 'held'), 0)
UNION ALL
SELECT 'stock rows out of bounds', count(*) FROM shop.stock
 WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand
UNION ALL
SELECT 'idempotency keys without their order', count(*) FROM shop.idempotency k
 WHERE k.order_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM shop."order" o WHERE o.order_id = k.order_id)
UNION ALL
SELECT 'idempotency keys with two orders', count(*)
  FROM (SELECT 1 FROM shop."order" o WHERE o.idempotency_key IS NOT NULL
         GROUP BY coalesce('c:' || o.customer_id, 'k:' || o.cart_id), o.idempotency_key
        HAVING count(*) > 1) d
UNION ALL
SELECT 'search_verify findings on product_search_idx', count(*)
  FROM shop.search_verify('shop.product_search_idx');
