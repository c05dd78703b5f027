-- recommend_like_samples: the customers-like-you lists stay exact when one
-- call of shop._like_lists reads more samples than it keeps (issue 14).
-- A call keeps the product samples it read for its next chunks of lists
-- up to the rows of one chunk (20,000 products times
-- shop.reco_like_sample); past that it drops them and reads again what
-- the next chunks need.  Profiles over 60,000 products, a sample of 2:
-- the lists computed whole in one call, then patched after half the
-- profiles changed, must equal the SQL statement of a list
-- (shop._like_score), with the samples dropped at least once in each call.
\i sql/include/prelude.sql

SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
SET shop.reco_like_sample = 2;
SET shop.reco_like_neighbours = 3;

-- customer c holds 2c, 2c + 1, 2c + 2 (2c + 2 is also the next
-- customer's), one of 500 mid-size products (60 holders each) and one of
-- 7 best-sellers (about 4,300 holders each: their samples of 2 leave most
-- holders out); weights scaled to length 1 as a profile's are.  The
-- changed profile (variant 1) drops 2c + 1, weighs the mid-size product
-- more and holds the next best-seller instead (customers enter and leave
-- the best-sellers' samples).
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
SELECT count(*) AS profile_rows, count(DISTINCT product_id) AS products FROM shop.customer_item;

-- every list whole, in one call: the samples were dropped and read again
SELECT (r ->> 'customers_scored')::int AS lists,
       (r ->> 'samples_reset')::int > 0 AS samples_dropped,
       (r ->> 'sample_rows_read')::int > 20000 * 2 AS read_more_than_kept
  FROM shop._like_lists(ARRAY(SELECT generate_series(1, 30000)::bigint), NULL) r;
CREATE FUNCTION pg_temp.differ() RETURNS bigint LANGUAGE sql AS $f$
    SELECT count(*)
      FROM ((SELECT * FROM shop.customer_neighbour
             EXCEPT SELECT * FROM shop._like_score((SELECT array_agg(DISTINCT customer_id) FROM shop.customer_item)))
            UNION ALL
            (SELECT * FROM shop._like_score((SELECT array_agg(DISTINCT customer_id) FROM shop.customer_item))
             EXCEPT SELECT * FROM shop.customer_neighbour)) d
$f$;
SELECT count(*) AS neighbour_rows, pg_temp.differ() AS differ FROM shop.customer_neighbour;

-- the even customers change (as a refresh's slice does: samples before
-- and after, the customers who entered or left one, the lists to patch);
-- their lists and the flipped ones are computed whole, every other list
-- is patched, in one call that again drops its samples
CREATE TEMP TABLE ch AS SELECT array_agg(c::bigint) AS cs FROM generate_series(2, 30000, 2) c;
CREATE TEMP TABLE items AS
SELECT array_agg(DISTINCT i.product_id) AS ps FROM shop.customer_item i, ch WHERE i.customer_id = ANY (ch.cs);
CREATE TEMP TABLE old_s AS SELECT * FROM shop._like_samples((SELECT ps FROM items));
DELETE FROM shop.customer_item i USING ch WHERE i.customer_id = ANY (ch.cs);
INSERT INTO shop.customer_item (customer_id, product_id, weight, h)
SELECT * FROM pg_temp.profiles((SELECT cs FROM ch), 1);
CREATE TEMP TABLE new_s AS SELECT * FROM shop._like_samples((SELECT ps FROM items));
-- the samples after, as a refresh derives them from those before and the
-- new profile rows (shop._like_samples_after), plus the products it reads
-- again (a full sample that lost a changed customer: the best-sellers
-- here), equal the samples read through the index
CREATE TEMP TABLE derived AS
SELECT d.* FROM ch, old_s,
       LATERAL (SELECT array_agg(p.customer_id) AS c, array_agg(p.product_id) AS p, array_agg(p.h) AS h
                  FROM pg_temp.profiles(ch.cs, 1) p) np,
       shop._like_samples_after(ch.cs, old_s.pids, old_s.cids, np.c, np.p, np.h, 2) d;
SELECT cardinality(reread) AS reread, cardinality(pids) > 10000 AS many_derived FROM derived;
SELECT count(*) AS differ
  FROM ((SELECT u.p, u.c FROM new_s, unnest(new_s.pids, new_s.cids) u(p, c)
         EXCEPT ALL
         (SELECT u.p, u.c FROM derived, unnest(derived.pids, derived.cids) u(p, c)
          UNION ALL
          SELECT u.p, u.c FROM derived, shop._like_samples(derived.reread) r, unnest(r.pids, r.cids) u(p, c)))
        UNION ALL
        ((SELECT u.p, u.c FROM derived, unnest(derived.pids, derived.cids) u(p, c)
          UNION ALL
          SELECT u.p, u.c FROM derived, shop._like_samples(derived.reread) r, unnest(r.pids, r.cids) u(p, c))
         EXCEPT ALL
         SELECT u.p, u.c FROM new_s, unnest(new_s.pids, new_s.cids) u(p, c))) x;
-- bad input: arrays of different lengths, a sample size below 1
SELECT pg_temp.err($$SELECT shop._like_samples_after('{1}', '{1,2}', '{1}', '{}', '{}', '{}', 2)$$);
SELECT pg_temp.err($$SELECT shop._like_samples_after('{1}', '{}', '{}', '{1}', '{1}', '{}', 2)$$);
SELECT pg_temp.err($$SELECT shop._like_samples_after('{1}', '{}', '{}', '{}', '{}', '{}', 0)$$);
CREATE TEMP TABLE sl AS
SELECT x.* FROM ch, old_s, new_s,
       shop._like_slice(ch.cs, old_s.pids, old_s.cids, new_s.pids, new_s.cids) x;
SELECT cardinality(flipped) > 0 AS some_flipped, cardinality(lists) > 15000 AS many_lists FROM sl;
SELECT (r ->> 'customers_patched')::int > 0 AS patched,
       (r ->> 'samples_reset')::int > 0 AS samples_dropped,
       (r ->> 'customers_changed')::int > 0 AS lists_written
  FROM ch, sl, shop._like_lists(ch.cs || sl.flipped, sl.lists) r;
SELECT pg_temp.differ() AS differ;

-- many samples in one call: when the products to read number at least
-- 1/64 of the table's rows and the table fits what a call may keep
-- (20,000 products times shop.reco_like_sample), the samples are read by
-- one scan of shop.customer_item instead of an index range per product;
-- the lists of 2,000 customers (about 4,000 products, of a table of
-- 150,000 rows), with samples of 60, equal the SQL statement's
SET shop.reco_like_sample = 60;
SELECT (r ->> 'sample_scans')::int AS scans, (r ->> 'customers_scored')::int AS lists
  FROM shop._like_lists(ARRAY(SELECT generate_series(1, 2000)::bigint), NULL) r;
SELECT count(*) AS neighbour_rows,
       (SELECT count(*)
          FROM ((SELECT * FROM shop.customer_neighbour WHERE customer_id <= 2000
                 EXCEPT SELECT * FROM shop._like_score(ARRAY(SELECT generate_series(1, 2000)::bigint)))
                UNION ALL
                (SELECT * FROM shop._like_score(ARRAY(SELECT generate_series(1, 2000)::bigint))
                 EXCEPT SELECT * FROM shop.customer_neighbour WHERE customer_id <= 2000)) d) AS differ
  FROM shop.customer_neighbour WHERE customer_id <= 2000;
-- shop._like_samples (the samples a refresh reads before each slice)
-- follows the same rule: by one scan here, the pairs of the statement
CREATE TEMP TABLE ps AS
SELECT array_agg(DISTINCT product_id ORDER BY product_id) AS ps FROM shop.customer_item WHERE customer_id <= 2000;
SELECT count(*) AS sample_pairs,
       (SELECT count(*)
          FROM ((SELECT u.p, u.c FROM ps, shop._like_samples(ps.ps) s, unnest(s.pids, s.cids) u(p, c)
                 EXCEPT ALL
                 SELECT i.pid, x.customer_id FROM ps, unnest(ps.ps) i(pid)
                  CROSS JOIN LATERAL (SELECT c.customer_id FROM shop.customer_item c WHERE c.product_id = i.pid
                                       ORDER BY c.h, c.customer_id LIMIT 60) x)
                UNION ALL
                (SELECT i.pid, x.customer_id FROM ps, unnest(ps.ps) i(pid)
                  CROSS JOIN LATERAL (SELECT c.customer_id FROM shop.customer_item c WHERE c.product_id = i.pid
                                       ORDER BY c.h, c.customer_id LIMIT 60) x
                 EXCEPT ALL
                 SELECT u.p, u.c FROM ps, shop._like_samples(ps.ps) s, unnest(s.pids, s.cids) u(p, c))) d) AS differ
  FROM ps, shop._like_samples(ps.ps) s, unnest(s.pids) u;

RESET shop.reco_like_sample;
RESET shop.reco_like_neighbours;
SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
