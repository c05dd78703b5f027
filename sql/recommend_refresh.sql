-- recommend_refresh: an incremental refresh leaves the recommendation
-- tables exactly as a full rebuild of the same orders would (issue 11),
-- whether or not the scoring total moved, with orders added, cancelled,
-- refunded and re-weighted (a customer passing shop.reco_buyer_cap)
\i sql/include/prelude.sql

-- hold the refresh lock for the whole session: only this script folds
SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;

-- short lists, so that most are full and a changed neighbour has to beat
-- the last entry to get in
SET shop.reco_neighbours = 3;

INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 300) i;

\i sql/include/buy.sql

-- order i: 1 to 5 products near an anchor; customers 1..400, every fifth
-- order a guest's; customer 7 buys often (19 orders, under the cap of 20)
CREATE FUNCTION pg_temp.basket(i int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT array_agg(DISTINCT 1 + ((i * i * 13) % 300 + j * (1 + i % 3)) % 300)
      FROM generate_series(0, i % 5) j
$f$;
CREATE FUNCTION pg_temp.customer(i int) RETURNS bigint LANGUAGE sql AS $f$
    SELECT CASE WHEN i % 5 = 0 THEN NULL WHEN i % 100 = 1 THEN 7 ELSE 1 + i % 400 END
$f$;
SELECT count(pg_temp.buy(pg_temp.basket(i), pg_temp.customer(i))) AS orders
  FROM generate_series(1, 1900) i;
SELECT shop.rebuild_recommendations() ->> 'orders' AS rebuilt_orders;

-- the three tables as they are now, and their differences from another copy
CREATE FUNCTION pg_temp.snapshot() RETURNS void LANGUAGE sql AS $f$
    DROP TABLE IF EXISTS snap_item, snap_pair, snap_top;
    CREATE TEMP TABLE snap_item AS SELECT * FROM shop.copurchase_item;
    CREATE TEMP TABLE snap_pair AS
        SELECT product_id, o, c FROM shop.copurchase_pair, unnest(other_ids, counts) u(o, c);
    CREATE TEMP TABLE snap_top AS SELECT * FROM shop.copurchase;
$f$;
SET client_min_messages = warning;
SELECT pg_temp.snapshot();
RESET client_min_messages;
CREATE FUNCTION pg_temp.diffs()
RETURNS TABLE (items bigint, item_diffs bigint, pairs bigint, pair_diffs bigint,
               top_rows bigint, top_diffs bigint)
LANGUAGE sql AS $f$
    SELECT (SELECT count(*) FROM shop.copurchase_item),
           (SELECT count(*) FROM snap_item i FULL JOIN shop.copurchase_item r USING (product_id)
             WHERE r.product_id IS NULL OR i.product_id IS NULL
                OR abs(i.baskets - r.baskets) > 1e-9 OR abs(i.slots - r.slots) > 1e-9),
           (SELECT count(*) FROM snap_pair),
           (SELECT count(*) FROM snap_pair i
              FULL JOIN (SELECT product_id, o, c FROM shop.copurchase_pair, unnest(other_ids, counts) u(o, c)) r
                   USING (product_id, o)
             WHERE r.c IS NULL OR i.c IS NULL OR abs(i.c - r.c) > 1e-9),
           (SELECT count(*) FROM shop.copurchase),
           (SELECT count(*) FROM snap_top i FULL JOIN shop.copurchase r USING (product_id, other_id)
             WHERE r.score IS NULL OR i.score IS NULL OR abs(i.pair_count - r.pair_count) > 1e-6
                OR abs(i.score - r.score) > 1e-6 * greatest(1, abs(r.score)))
$f$;

-- 1. a few orders: new ones (one of them makes customer 7 pass the cap,
-- re-weighting all of their orders), one cancelled, one refunded.  The
-- scoring total stays where it was, so the refresh rewrites only the
-- lists these orders can change: fewer than all of them
SELECT pg_temp.buy(pg_temp.basket(i), pg_temp.customer(i)) IS NOT NULL AS bought
  FROM generate_series(1901, 1906) i;
SELECT count(pg_temp.buy(ARRAY[11, 12, 13], 7)) AS reseller_orders FROM generate_series(1, 3);
UPDATE shop."order" SET status = 'cancelled'
 WHERE order_id = (SELECT order_id FROM shop."order" WHERE customer_id = 42 ORDER BY created_at, order_id LIMIT 1);
UPDATE shop."order" SET status = 'refunded'
 WHERE order_id = (SELECT order_id FROM shop."order" WHERE customer_id = 43 ORDER BY created_at, order_id LIMIT 1);
SET ROLE shop_admin;
SELECT shop.refresh_recommendations() AS r \gset
RESET ROLE;
SELECT :'r'::jsonb ->> 'full_rescore' AS full_rescore, (:'r'::jsonb ->> 'orders_applied')::int > 20 AS reweighted,
       (:'r'::jsonb ->> 'products_scored')::int < (SELECT count(*) FROM shop.copurchase_pair) AS fewer_than_all;
SELECT pg_temp.snapshot();
SELECT shop.rebuild_recommendations() IS NOT NULL AS rebuilt;
SELECT * FROM pg_temp.diffs();

-- 1b. a basket bought twice gets its pairs listed; cancelling both
-- orders takes the products out of every table and every list again
SELECT count(pg_temp.buy(ARRAY[286, 288, 294])) AS orders FROM generate_series(1, 2);
SELECT r ->> 'full_rescore' AS full_rescore FROM shop.refresh_recommendations() r;
SELECT count(*) AS listed FROM shop.copurchase WHERE product_id IN (286, 288, 294) OR other_id IN (286, 288, 294);
SELECT pg_temp.snapshot();
SELECT shop.rebuild_recommendations() IS NOT NULL AS rebuilt;
SELECT * FROM pg_temp.diffs();
UPDATE shop."order" o SET status = 'cancelled'
  FROM shop.order_line l
 WHERE l.order_id = o.order_id AND l.product_id = 286 AND o.status = 'paid';
SELECT r ->> 'full_rescore' AS full_rescore FROM shop.refresh_recommendations() r;
SELECT (SELECT count(*) FROM shop.copurchase WHERE product_id IN (286, 288, 294) OR other_id IN (286, 288, 294)) AS listed,
       (SELECT count(*) FROM shop.copurchase_item WHERE product_id IN (286, 288, 294)) AS items;
SELECT pg_temp.snapshot();
SELECT shop.rebuild_recommendations() IS NOT NULL AS rebuilt;
SELECT * FROM pg_temp.diffs();

-- 2. enough orders to move the scoring total: every list is rescored,
-- and again the tables are those of a rebuild
SELECT count(pg_temp.buy(pg_temp.basket(i), pg_temp.customer(i))) AS orders
  FROM generate_series(1907, 2200) i;
UPDATE shop."order" SET status = 'cancelled'
 WHERE order_id = (SELECT order_id FROM shop."order" WHERE customer_id = 44 ORDER BY created_at, order_id LIMIT 1);
SELECT r ->> 'full_rescore' AS full_rescore FROM shop.refresh_recommendations() r;
SELECT pg_temp.snapshot();
SELECT shop.rebuild_recommendations() IS NOT NULL AS rebuilt;
SELECT * FROM pg_temp.diffs();

-- 3. a refresh with nothing to fold leaves everything as it is
SELECT pg_temp.snapshot();
SELECT r ->> 'orders_applied' AS applied FROM shop.refresh_recommendations() r;
SELECT * FROM pg_temp.diffs();

RESET shop.reco_neighbours;
SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
