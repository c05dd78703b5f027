-- bench/store_gen_live.sql: what a running shop holds besides its history,
-- for bench/store_gen.sql (which includes it before building its indexes)
-- or on its own on a store it made (then with the indexes in place):
--
--   psql -v products=1000000 -v customers=1000000 -f bench/store_gen_live.sql
--
-- * open carts' lines: each cart store_gen.sql made (one per customer)
--   gets 0 to 4 lines of random products (2 on average), one in five
--   saved for later, as shoppers leave them;
-- * a running experiment on the lists ('sg-lists', four variants, made by
--   shop.experiment_create) with 2 impressions per customer over the
--   last 7 days (10 products each), as shop._experiment_flush leaves them,
--   and an outcome for one in ten.
--
-- Without these, the tables are empty at audit time and their statements'
-- plans (cart lines, attribution of views, carts and orders) are chosen
-- for empty tables, not for the ones Black Friday has.  Written with
-- session_replication_role = replica (no trigger fires); ends with
-- ANALYZE of the tables it fills.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET session_replication_role = replica;
SET synchronous_commit = off;

\echo store_gen: lines of the open carts
INSERT INTO shop.cart_item (cart_id, product_id, qty, saved_for_later, price_cents_at_add, added_at, customer_key)
SELECT DISTINCT ON (c.cart_id, l.pid) c.cart_id, l.pid, 1 + (l.h % 3)::int, l.h % 5 = 0, p.price_cents,
       c.updated_at, c.customer_key
  FROM shop.cart c
 CROSS JOIN LATERAL (SELECT 1 + ((hashint8(c.customer_key * 8 + s) & 2147483647) % :products)::bigint AS pid,
                            (hashint8(c.customer_key * 16 + s) & 2147483647) AS h
                       FROM generate_series(1, ((hashint8(c.customer_key) & 2147483647) % 5)::int) s) l
  JOIN shop.product p ON p.product_id = l.pid
 WHERE c.status = 'open'
   AND NOT EXISTS (SELECT 1 FROM shop.cart_item x WHERE x.cart_id = c.cart_id)
 ORDER BY c.cart_id, l.pid;

\echo store_gen: a running experiment and its impressions
SET session_replication_role = origin;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM shop.experiment WHERE name = 'sg-lists') THEN
        PERFORM shop.experiment_create('sg-lists',
            '[{"name": "control", "share": 0.25},
              {"name": "personal", "share": 0.25, "method": "personal"},
              {"name": "popularity", "share": 0.25, "method": "popularity"},
              {"name": "similar", "share": 0.25, "method": "similar"}]', '1 day');
    END IF;
END
$$;
SET session_replication_role = replica;
UPDATE shop.experiment SET started_at = now() - interval '7 days' WHERE name = 'sg-lists';
INSERT INTO shop.experiment_impression (experiment_id, variant, unit, shown_at, surface, products)
SELECT e.experiment_id, v.variant, u.c::text,
       now() - interval '7 days' * ((hashint8(u.c * 2 + k) & 2147483647) % 100000) / 100000.0,
       CASE WHEN k = 1 THEN 'recommend' ELSE 'also_bought' END,
       ARRAY(SELECT 1 + ((hashint8(u.c * 32 + k * 16 + j) & 2147483647) % :products)::bigint
               FROM generate_series(1, 10) j)
  FROM shop.experiment e
 CROSS JOIN generate_series(1, :customers) u(c)
 CROSS JOIN generate_series(1, 2) k
  JOIN shop.experiment_variant v ON v.experiment_id = e.experiment_id
   AND shop.experiment_bucket(e.name, u.c::text) >= v.bucket_lo
   AND shop.experiment_bucket(e.name, u.c::text) < v.bucket_hi
 WHERE e.name = 'sg-lists'
   AND NOT EXISTS (SELECT 1 FROM shop.experiment_impression x WHERE x.experiment_id = e.experiment_id);
INSERT INTO shop.experiment_outcome (impression_id, experiment_id, variant, kind, product_id, happened_at)
SELECT i.impression_id, i.experiment_id, i.variant, 'view', i.products[1], i.shown_at + interval '1 minute'
  FROM shop.experiment_impression i JOIN shop.experiment e USING (experiment_id)
 WHERE e.name = 'sg-lists' AND (hashtext(i.impression_id::text) & 2147483647) % 10 = 0
   AND NOT EXISTS (SELECT 1 FROM shop.experiment_outcome o WHERE o.experiment_id = e.experiment_id);
RESET session_replication_role;
ANALYZE shop.cart_item, shop.experiment, shop.experiment_variant, shop.experiment_impression,
    shop.experiment_outcome;
SELECT format('store_gen: %s cart lines in %s carts, %s impressions and %s outcomes of experiment sg-lists',
              (SELECT count(*) FROM shop.cart_item), (SELECT count(DISTINCT cart_id) FROM shop.cart_item),
              (SELECT count(*) FROM shop.experiment_impression),
              (SELECT count(*) FROM shop.experiment_outcome)) AS summary;
