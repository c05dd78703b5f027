-- recommend_like_memory: the refresh's customers-like-you lists computed
-- in memory (shop._like_refresh_lists, issues 11 and 14).  With the
-- profiles of changed customers handed over before they are written, the
-- function reads every profile row once, computes whole the lists that
-- can move and writes only the rows that moved; afterwards the lists
-- equal the SQL statement of a list (shop._like_score) over the new
-- profiles.  Samples of 2 over 30,000 customers: customers enter and
-- leave the best-sellers' samples.  Past shop.reco_like_refresh_rows it
-- returns NULL and writes nothing (the refresh then takes slices).
\i sql/include/prelude.sql

SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
SET shop.reco_like_sample = 2;
SET shop.reco_like_neighbours = 3;

-- customer c holds 2c, 2c + 1, 2c + 2 (2c + 2 is also the next
-- customer's), one of 500 mid-size products and one of 7 best-sellers;
-- the changed profile (variant 1) drops 2c + 1, weighs the mid-size
-- product more and holds the next best-seller instead
CREATE FUNCTION pg_temp.profiles(cs bigint[], variant int)
RETURNS TABLE (customer_id bigint, product_id bigint, weight real, h bigint)
LANGUAGE sql AS $f$
    SELECT c, p, (w / sqrt(sum(w * w) OVER (PARTITION BY c)))::real, hashint8extended(c, p)
      FROM unnest(cs) c
     CROSS JOIN LATERAL (VALUES (2 * c, 1.0), (2 * c + 1, 0.3), (2 * c + 2, 1.0),
                                (1000000 + c % 500, CASE WHEN variant = 0 THEN 0.3 ELSE 1.0 END),
                                (2000000 + (c + variant) % 7, 1.0)) v(p, w)
     WHERE variant = 0 OR p <> 2 * c + 1
$f$;
INSERT INTO shop.customer_item (customer_id, product_id, weight, h)
SELECT * FROM pg_temp.profiles(ARRAY(SELECT generate_series(1, 30000)::bigint), 0);
ANALYZE shop.customer_item;
SELECT (shop._like_lists(ARRAY(SELECT generate_series(1, 30000)::bigint), NULL) ->> 'customers_scored')::int AS lists;
CREATE FUNCTION pg_temp.differ() RETURNS bigint LANGUAGE sql AS $f$
    SELECT count(*)
      FROM ((SELECT * FROM shop.customer_neighbour
             EXCEPT SELECT * FROM shop._like_score((SELECT array_agg(DISTINCT customer_id) FROM shop.customer_item)))
            UNION ALL
            (SELECT * FROM shop._like_score((SELECT array_agg(DISTINCT customer_id) FROM shop.customer_item))
             EXCEPT SELECT * FROM shop.customer_neighbour)) d
$f$;
CREATE TEMP TABLE before_nb AS SELECT * FROM shop.customer_neighbour;

-- the even customers change, and customer 29999 loses its whole profile
-- (its list goes, and it leaves the lists that held it); the new rows are
-- handed over first, written after, as shop._like_refresh does
CREATE TEMP TABLE ch AS SELECT array_agg(c::bigint) || 29999::bigint AS cs FROM generate_series(2, 30000, 2) c;
CREATE TEMP TABLE np AS
SELECT array_agg(p.customer_id ORDER BY p.customer_id, p.product_id) AS c,
       array_agg(p.product_id ORDER BY p.customer_id, p.product_id) AS p,
       array_agg(p.weight ORDER BY p.customer_id, p.product_id) AS w,
       array_agg(p.h ORDER BY p.customer_id, p.product_id) AS h
  FROM ch, pg_temp.profiles(ARRAY(SELECT generate_series(2, 30000, 2)::bigint), 1) p;
CREATE TEMP TABLE r AS SELECT shop._like_refresh_lists(ch.cs, np.c, np.p, np.w, np.h) AS r FROM ch, np;
DELETE FROM shop.customer_item i USING ch WHERE i.customer_id = ANY (ch.cs);
INSERT INTO shop.customer_item (customer_id, product_id, weight, h)
SELECT u.* FROM np, unnest(np.c, np.p, np.w, np.h) u;
-- lists computed whole: the changed customers and those of their samples
-- (not every customer); the rows written are only those that moved
SELECT (r ->> 'customers_scored')::int AS lists_computed,
       (r ->> 'customers_patched')::int AS patched,
       (r ->> 'customers_changed')::int > 0 AS lists_written,
       (r ->> 'neighbour_rows_written')::int =
       (SELECT count(*) FROM before_nb b FULL JOIN shop.customer_neighbour n USING (customer_id, neighbour_id)
         WHERE b.score IS DISTINCT FROM n.score) AS only_moved_rows_written
  FROM r;
SELECT pg_temp.differ() AS differ,
       (SELECT count(*) FROM shop.customer_neighbour WHERE 29999 IN (customer_id, neighbour_id)) AS rows_of_29999;

-- nothing changed (the same profiles handed over again): nothing written
SELECT (r ->> 'customers_changed')::int AS changed, (r ->> 'neighbour_rows_written')::int AS written
  FROM ch, np, shop._like_refresh_lists(ch.cs, np.c, np.p, np.w, np.h) r;

-- past shop.reco_like_refresh_rows (or at 0): NULL, nothing written.
-- Customer 1's list lost, its profile handed over unchanged: computed
-- and written again only when the rows fit
CREATE TEMP TABLE one AS
SELECT array_agg(customer_id ORDER BY product_id) AS c, array_agg(product_id ORDER BY product_id) AS p,
       array_agg(weight ORDER BY product_id) AS w, array_agg(h ORDER BY product_id) AS h
  FROM shop.customer_item WHERE customer_id = 1;
DELETE FROM shop.customer_neighbour WHERE customer_id = 1;
SET shop.reco_like_refresh_rows = 1000;
SELECT shop._like_refresh_lists('{1}', c, p, w, h) IS NULL AS too_many_rows,
       (SELECT count(*) FROM shop.customer_neighbour WHERE customer_id = 1) AS list_of_1
  FROM one;
SET shop.reco_like_refresh_rows = 0;
SELECT shop._like_refresh_lists('{1}', c, p, w, h) IS NULL AS off FROM one;
RESET shop.reco_like_refresh_rows;
SELECT (shop._like_refresh_lists('{1}', c, p, w, h) ->> 'customers_changed')::int AS lists_written FROM one;
SELECT count(*) AS list_of_1, pg_temp.differ() AS differ FROM shop.customer_neighbour WHERE customer_id = 1;

-- bad input: arrays of different lengths, a row of a customer not in cs, nulls
SELECT pg_temp.err($$SELECT shop._like_refresh_lists('{1}', '{1}', '{}', '{}', '{}')$$);
SELECT pg_temp.err($$SELECT shop._like_refresh_lists('{1}', '{2}', '{5}', '{1}', '{7}')$$);
SELECT pg_temp.err($$SELECT shop._like_refresh_lists('{1}', '{1}', '{5}', '{NULL}', '{7}')$$);
SELECT pg_temp.err($$SELECT shop._like_refresh_lists(NULL, '{}', '{}', '{}', '{}')$$);
-- internal: not callable by the storefront
SET ROLE shop_storefront;
SELECT pg_temp.err($$SELECT shop._like_refresh_lists('{1}', '{}', '{}', '{}', '{}')$$);
RESET ROLE;
-- a refresh in rounds on a small shop (recommend_like's history: many
-- customers with small, overlapping histories; samples of 4, profiles of
-- 5, lists of 3): new orders of old and new customers, a cancelled order
-- and a view per round, each its own transaction; every refresh takes
-- the in-memory path, computes some lists (not all), patches none, and
-- leaves the profiles and lists a rebuild writes
TRUNCATE shop.customer_item, shop.customer_neighbour;
SET shop.reco_like_sample = 4;
SET shop.reco_like_items = 5;
SET shop.reco_like_neighbours = 3;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 60) i;
\i sql/include/buy.sql
CREATE FUNCTION pg_temp.basket(i int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT array_agg(DISTINCT 1 + ((i * i * 7) % 60 + j * (1 + i % 4)) % 60)
      FROM generate_series(0, i % 3) j
$f$;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 150)) AS orders
  FROM generate_series(1, 600) i;
SELECT shop.rebuild_recommendations() ->> 'customer_neighbours' AS neighbour_rows;
CREATE TEMP TABLE rounds (round int, profiled int, whole int, patched int, redone int,
                          profile_diffs bigint, neighbour_diffs bigint, index_diffs bigint);
CREATE FUNCTION pg_temp.changes(rnd int) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM pg_temp.buy(pg_temp.basket(i), 1 + (i * 7) % 175) FROM generate_series(700 + rnd * 10, 709 + rnd * 10) i;
    UPDATE shop."order" SET status = 'cancelled'
     WHERE order_id = (SELECT order_id FROM shop."order" WHERE customer_id = 1 + (rnd * 37) % 150
                          AND status = 'paid' ORDER BY created_at, order_id LIMIT 1);
    PERFORM shop.view(1 + (rnd * 13) % 170, 1 + (rnd * 17) % 60);
END $f$;
CREATE FUNCTION pg_temp.check(rnd int) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    r jsonb := shop.refresh_recommendations();
BEGIN
    DROP TABLE IF EXISTS snap_item, snap_nb, snap_idx;
    CREATE TEMP TABLE snap_item AS SELECT * FROM shop.customer_item;
    CREATE TEMP TABLE snap_nb AS SELECT * FROM shop.customer_neighbour;
    -- the profiles as the sample index holds them (its entries of the
    -- written rows are added sorted, after the rows: recowrite.c)
    PERFORM set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true);
    CREATE TEMP TABLE snap_idx AS
    SELECT product_id, h, customer_id, weight FROM shop.customer_item ORDER BY product_id, h, customer_id;
    PERFORM set_config('enable_seqscan', 'on', true), set_config('enable_bitmapscan', 'on', true);
    PERFORM shop.rebuild_recommendations();
    INSERT INTO rounds
    SELECT rnd, (r ->> 'customers_profiled')::int, (r ->> 'customers_scored')::int,
           (r ->> 'customers_patched')::int, (r ->> 'customers_redone')::int,
           (SELECT count(*) FROM snap_item s FULL JOIN shop.customer_item x USING (customer_id, product_id)
             WHERE x.weight IS NULL OR s.weight IS NULL OR s.weight <> x.weight OR s.h <> x.h),
           (SELECT count(*) FROM snap_nb s FULL JOIN shop.customer_neighbour x USING (customer_id, neighbour_id)
             WHERE x.score IS NULL OR s.score IS NULL OR s.score <> x.score),
           (SELECT count(*) FROM ((SELECT product_id, h, customer_id, weight FROM snap_item
                                   EXCEPT ALL SELECT * FROM snap_idx)
                                  UNION ALL
                                  (SELECT * FROM snap_idx
                                   EXCEPT ALL SELECT product_id, h, customer_id, weight FROM snap_item)) d);
END $f$;
SET client_min_messages = warning;
SELECT format('DO $d$ BEGIN PERFORM pg_temp.changes(%s); END $d$', rnd),
       format('DO $d$ BEGIN PERFORM pg_temp.check(%s); END $d$', rnd)
  FROM generate_series(1, 8) rnd \gexec
RESET client_min_messages;
SELECT count(*) AS rounds, bool_and(profiled > 0) AS profiled, sum(profile_diffs) AS profile_diffs,
       sum(neighbour_diffs) AS neighbour_diffs, sum(index_diffs) AS index_diffs,
       bool_and(whole >= profiled) AND bool_or(whole < (SELECT count(DISTINCT customer_id) FROM shop.customer_item))
         AS some_lists_not_all,
       sum(patched) AS patched, sum(redone) AS redone
  FROM rounds;
RESET shop.reco_like_items;
RESET shop.reco_like_sample;
RESET shop.reco_like_neighbours;
SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
