-- recommend_rebuild: the rebuild fills its tables in bulk (issue 11,
-- src/recorebuild.c) and writes what the 1.0 path wrote, to the bit:
-- shop.copurchase_order as the window-function INSERT, the co-purchase
-- statistics, pair rows and lists as shop._copurchase_rebuild(), the
-- profiles as INSERT ... FROM shop._like_profile(NULL), the customers-like-
-- you lists as batches of shop._like_lists; the indexes built after the
-- rows answer as a scan of the heap does
\i sql/include/prelude.sql

-- a reseller past the buyer cap, baskets past the basket cap, a product
-- twice in one order, guests, orders that do not count, views
SET shop.reco_buyer_cap = 3;
SET shop.reco_basket_cap = 4;
SET shop.reco_neighbours = 3;
-- samples cut short and full lists: 4 customers per product's sample, 5
-- neighbours per list
SET shop.reco_like_sample = 4;
SET shop.reco_like_neighbours = 5;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 120) i;
\i sql/include/buy.sql
SELECT count(pg_temp.buy(
           ARRAY(SELECT 1 + ((i * 7 + j * (1 + i % 4)) % 120) FROM generate_series(0, i % 7) j)
               || CASE WHEN i % 11 = 0 THEN ARRAY[1 + (i * 7) % 120] ELSE '{}' END,
           CASE WHEN i % 6 = 0 THEN NULL WHEN i % 9 = 0 THEN 5 ELSE 1 + i % 40 END,
           CASE WHEN i % 13 = 0 THEN 'cancelled' ELSE 'paid' END,
           timestamptz '2026-11-01' + i * interval '37 minutes')) AS orders
  FROM generate_series(1, 700) i;
INSERT INTO shop.view_event (customer_id, product_id, viewed_at)
SELECT 1 + i % 40, 1 + (i * 13) % 120, timestamptz '2026-11-02' + i * interval '53 minutes'
  FROM generate_series(1, 300) i;

SELECT shop.rebuild_recommendations() - 'popularity_updated' - 'popularity_pending' AS rebuild;

-- every table the bulk path wrote, as text in key order
CREATE FUNCTION pg_temp.tables()
RETURNS TABLE (tbl text, n bigint, md5 text) LANGUAGE sql AS $f$
    SELECT 'copurchase_order', count(*), md5(string_agg(format('%s %s %s', order_id, customer_id, weight), ',' ORDER BY order_id)) FROM shop.copurchase_order
    UNION ALL SELECT 'copurchase_item', count(*), md5(string_agg(format('%s %s %s', product_id, baskets, slots), ',' ORDER BY product_id)) FROM shop.copurchase_item
    UNION ALL SELECT 'copurchase_pair', count(*), md5(string_agg(format('%s %s %s', product_id, other_ids, counts), ',' ORDER BY product_id)) FROM shop.copurchase_pair
    UNION ALL SELECT 'copurchase', count(*), md5(string_agg(format('%s %s %s %s', product_id, other_id, pair_count, score), ',' ORDER BY product_id, other_id)) FROM shop.copurchase
    UNION ALL SELECT 'customer_item', count(*), md5(string_agg(format('%s %s %s %s', customer_id, product_id, weight, h), ',' ORDER BY customer_id, product_id)) FROM shop.customer_item
    UNION ALL SELECT 'customer_neighbour', count(*), md5(string_agg(format('%s %s %s', customer_id, neighbour_id, score), ',' ORDER BY customer_id, neighbour_id)) FROM shop.customer_neighbour
$f$;
CREATE TEMP TABLE bulk AS SELECT * FROM pg_temp.tables();
SELECT tbl, n FROM bulk ORDER BY tbl;

-- the 1.0 path on the same orders
BEGIN;
TRUNCATE shop.copurchase_order;
INSERT INTO shop.copurchase_order (order_id, customer_id, weight)
SELECT o.order_id, o.customer_id,
       CASE WHEN o.customer_id IS NULL THEN 1.0
            ELSE least(1.0, 3::double precision / count(*) OVER (PARTITION BY o.customer_id)) END
  FROM shop."order" o
 WHERE shop._counted(o.status)
 ORDER BY o.order_id;
SELECT shop._copurchase_rebuild() - 'scored_total' AS old_rebuild;
TRUNCATE shop.customer_item;
INSERT INTO shop.customer_item (customer_id, product_id, weight, h)
SELECT p.customer_id, p.product_id, p.weight, p.h FROM shop._like_profile(NULL) p
 ORDER BY p.customer_id, p.product_id;
TRUNCATE shop.customer_neighbour;
SELECT sum((shop._like_lists(cs, NULL) ->> 'customers_scored')::int) AS lists_in_batches
  FROM (SELECT array_agg(customer_id ORDER BY customer_id) cs
          FROM (SELECT DISTINCT customer_id FROM shop.customer_item) c
         GROUP BY customer_id % 3) b;
SELECT t.tbl, t.n, t.md5 = b.md5 AS same
  FROM pg_temp.tables() t JOIN bulk b USING (tbl) ORDER BY t.tbl;
ROLLBACK;

-- the indexes built after the rows: each key read through its index
-- finds what the heap holds
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shop.copurchase_order i WHERE i.order_id = o.order_id)) AS orders_missed,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shop.copurchase_order i
                                           WHERE i.customer_id = o.customer_id AND i.order_id = o.order_id)
                        AND o.customer_id IS NOT NULL) AS by_customer_missed
  FROM (SELECT order_id, customer_id FROM shop.copurchase_order OFFSET 0) o;
SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shop.customer_item i
                                           WHERE i.customer_id = c.customer_id AND i.product_id = c.product_id)) AS pkey_missed,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shop.customer_item i
                                           WHERE i.product_id = c.product_id AND i.h = c.h
                                             AND i.customer_id = c.customer_id)) AS sample_missed
  FROM (SELECT customer_id, product_id, h FROM shop.customer_item OFFSET 0) c;
EXPLAIN (COSTS OFF) SELECT customer_id FROM shop.customer_item WHERE product_id = 3 ORDER BY h LIMIT 5;
SELECT count(*) = (SELECT count(*) FROM shop.copurchase_pair) AS pair_rows_by_key
  FROM shop.copurchase_pair p WHERE EXISTS (SELECT 1 FROM shop.copurchase_pair q WHERE q.product_id = p.product_id);
RESET enable_seqscan;
RESET enable_bitmapscan;

-- the loaders fill only a table truncated in the same transaction
SELECT pg_temp.err('SELECT shop._rebuild_orders(3)');
SELECT pg_temp.err('SELECT shop._rebuild_customer_items()');
SELECT pg_temp.err('SELECT shop._rebuild_like_lists()');
SELECT count(*) AS orders_kept FROM shop.copurchase_order;
-- and are the owner's: shop_admin rebuilds through the public call
SET ROLE shop_admin;
SELECT pg_temp.err('SELECT shop._rebuild_pairs()');
SELECT pg_temp.err('SELECT shop._rebuild_like_lists()');
SELECT shop.rebuild_recommendations() ->> 'copurchase_rows' AS admin_rebuild_rows;
RESET ROLE;
SELECT t.tbl, t.md5 = b.md5 AS same_again FROM pg_temp.tables() t JOIN bulk b USING (tbl) ORDER BY t.tbl;

-- popularity: the rebuild's (shop._rebuild_popularity, its sums in C)
-- writes what shop._popularity_refresh() writes, with an order that
-- counts and is not folded yet (paid after the rebuild) and a folded one
-- that stopped counting (cancelled after it), on the rebuild's rows and
-- on none (a new epoch, every row written); all rolled back
BEGIN;
UPDATE shop."order" SET status = 'cancelled'
 WHERE order_id = (SELECT order_id FROM shop.copurchase_order WHERE weight = 1 ORDER BY order_id LIMIT 1);
SELECT pg_temp.buy(ARRAY[7, 8, 9, 7]::bigint[], 3, 'paid', timestamptz '2026-11-21') IS NOT NULL AS paid_later;
CREATE FUNCTION pg_temp.pop() RETURNS text LANGUAGE sql AS $f$
    SELECT concat_ws(' | ', (SELECT count(*) FROM shop.product_popularity),
        md5(concat_ws('|',
            (SELECT string_agg(format('%s %s %s', product_id, popularity, mass::real), ',' ORDER BY product_id)
               FROM shop.product_popularity),
            (SELECT string_agg(product_id::text, ',' ORDER BY product_id) FROM shop.popularity_pending),
            (SELECT format('%s %s %s', popularity_ref, popularity_epoch, popularity_epoch_half_life)
               FROM shop.copurchase_state))))
$f$;
SAVEPOINT s;
SELECT shop._popularity_refresh() AS n_sql, pg_temp.pop() AS pop_sql \gset
ROLLBACK TO SAVEPOINT s;
SELECT shop._rebuild_popularity() = :n_sql AS same_queued, pg_temp.pop() = :'pop_sql' AS same_popularity;
ROLLBACK TO SAVEPOINT s;
DELETE FROM shop.product_popularity;
UPDATE shop.copurchase_state SET popularity_epoch = NULL, popularity_epoch_half_life = NULL;
SAVEPOINT t;
SELECT shop._popularity_refresh() AS n_sql, pg_temp.pop() AS pop_sql \gset
ROLLBACK TO SAVEPOINT t;
SELECT shop._rebuild_popularity() AS queued_from_none, shop._rebuild_popularity() AS queued_again;
SELECT pg_temp.pop() = :'pop_sql' AS same_popularity_from_none, :n_sql AS sql_queued_from_none;
ROLLBACK;

-- the rebuild reads the orders and their lines once: shop._rebuild_orders
-- keeps them for the later steps of the same statement.  Popularity
-- computed from none inside the rebuild is shop._popularity_refresh()'s;
-- a later statement reads the tables again (a line deleted after
-- shop._rebuild_orders is not in shop._rebuild_pairs' baskets); all
-- rolled back.  The lines are matched with their orders in the heap
-- order of both tables; orders moved in the heap by an update (every
-- third one) are found by id.
BEGIN;
UPDATE shop."order" SET total_cents = total_cents WHERE created_at::time < '08:00';
DELETE FROM shop.product_popularity;
UPDATE shop.copurchase_state SET popularity_epoch = NULL, popularity_epoch_half_life = NULL;
CREATE FUNCTION pg_temp.pop_rows() RETURNS text LANGUAGE sql AS $f$
    SELECT concat_ws(' | ', (SELECT count(*) FROM shop.product_popularity),
        md5(concat_ws('|',
            (SELECT string_agg(format('%s %s %s', product_id, popularity, mass::real), ',' ORDER BY product_id)
               FROM shop.product_popularity),
            (SELECT format('%s %s %s', popularity_ref, popularity_epoch, popularity_epoch_half_life)
               FROM shop.copurchase_state))))
$f$;
SAVEPOINT u;
SELECT shop._popularity_refresh() AS n_sql, pg_temp.pop_rows() AS rows_sql \gset
ROLLBACK TO SAVEPOINT u;
SELECT (shop.rebuild_recommendations() ->> 'popularity_updated')::bigint = :n_sql AS rebuild_same_queued,
       pg_temp.pop_rows() = :'rows_sql' AS rebuild_same_popularity, :n_sql AS queued;
SELECT t.tbl, t.md5 = b.md5 AS same_in_rebuild FROM pg_temp.tables() t JOIN bulk b USING (tbl) ORDER BY t.tbl;
ROLLBACK;
BEGIN;
TRUNCATE shop.copurchase_order;
SELECT shop._rebuild_orders(3) AS folded;
DELETE FROM shop.order_line
 WHERE order_id = (SELECT order_id FROM shop.copurchase_order ORDER BY order_id LIMIT 1);
SELECT (shop._rebuild_pairs() ->> 'order_lines')::bigint
       = (SELECT count(*) FROM shop.order_line l JOIN shop.copurchase_order o USING (order_id)) AS pairs_read_lines_again;
ROLLBACK;

-- past 20,000 * shop.reco_like_sample profile rows (the bound of the
-- lists in memory) the rebuild takes the batches of shop._like_lists:
-- 1,001 more customers with 40 viewed products each, past 40,000 rows at
-- a sample of 2; the lists are those of the SQL statement of a list
SET shop.reco_like_sample = 2;
INSERT INTO shop.view_event (customer_id, product_id, viewed_at)
SELECT 1000 + i / 40, 1 + (i * 7) % 120, timestamptz '2026-11-20' + i * interval '1 second'
  FROM generate_series(0, 40039) i;
SELECT r ->> 'customers' AS customers, r ->> 'customer_neighbours' AS neighbours
  FROM shop.rebuild_recommendations() r;
SELECT count(*) AS profile_rows, count(*) > 20000 * 2 AS past_the_bound FROM shop.customer_item;
SELECT count(*) AS lists_differ FROM (
    (SELECT customer_id, neighbour_id, score FROM shop.customer_neighbour
     EXCEPT ALL SELECT * FROM shop._like_score(ARRAY(SELECT DISTINCT customer_id FROM shop.customer_item)))
    UNION ALL
    (SELECT * FROM shop._like_score(ARRAY(SELECT DISTINCT customer_id FROM shop.customer_item))
     EXCEPT ALL SELECT customer_id, neighbour_id, score FROM shop.customer_neighbour)) d;
-- below the bound (a sample of 3: 60,000 rows) the lists in memory, the same
SET shop.reco_like_sample = 3;
SELECT r ->> 'customers' AS customers, r ->> 'customer_neighbours' AS neighbours
  FROM shop.rebuild_recommendations() r;
SELECT count(*) AS lists_differ FROM (
    (SELECT customer_id, neighbour_id, score FROM shop.customer_neighbour
     EXCEPT ALL SELECT * FROM shop._like_score(ARRAY(SELECT DISTINCT customer_id FROM shop.customer_item)))
    UNION ALL
    (SELECT * FROM shop._like_score(ARRAY(SELECT DISTINCT customer_id FROM shop.customer_item))
     EXCEPT ALL SELECT customer_id, neighbour_id, score FROM shop.customer_neighbour)) d;
-- those lists are cut inside ties (a candidate left out with the score
-- of one kept): the rebuild keeps the lowest neighbour ids of a tie, as
-- the SQL statement does (it ranks by the customers' dense index, which
-- is in id order, src/recorebuild.c)
SET shop.reco_like_neighbours = 1000;
CREATE TEMP TABLE every_score AS
SELECT * FROM shop._like_score(ARRAY(SELECT DISTINCT customer_id FROM shop.customer_item));
SET shop.reco_like_neighbours = 5;
SELECT count(DISTINCT a.customer_id) > 0 AS lists_cut_inside_a_tie
  FROM every_score a
  JOIN shop.customer_neighbour n ON n.customer_id = a.customer_id AND n.score = a.score
 WHERE NOT EXISTS (SELECT 1 FROM shop.customer_neighbour k
                    WHERE k.customer_id = a.customer_id AND k.neighbour_id = a.neighbour_id);

-- the rebuild's ANALYZE (shop._rebuild_analyze): a table that has
-- statistics of about as many rows is left to autovacuum, which analyzes
-- it after the rebuild commits (its inserts count as changes since the
-- last ANALYZE); a table below autovacuum's threshold is analyzed by the
-- rebuild.  As shop_admin, through the public call.
SELECT pg_stat_clear_snapshot();
CREATE TEMP TABLE analyzed AS
SELECT s.relname, s.analyze_count, c.reltuples
  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname = 'shop'
   AND s.relname IN ('copurchase', 'copurchase_item', 'copurchase_order', 'customer_item', 'customer_neighbour');
GRANT SELECT ON analyzed TO shop_admin;
SET ROLE shop_admin;
SELECT (shop.rebuild_recommendations() ->> 'customers') IS NOT NULL AS rebuilt;
RESET ROLE;
SELECT pg_stat_clear_snapshot();
SELECT a.relname, c.reltuples = a.reltuples AS same_rows,
       c.reltuples > current_setting('autovacuum_analyze_threshold')::real
                     + current_setting('autovacuum_analyze_scale_factor')::real * c.reltuples AS above_threshold,
       s.analyze_count - a.analyze_count AS analyzed_by_rebuild
  FROM analyzed a JOIN pg_stat_user_tables s ON s.schemaname = 'shop' AND s.relname = a.relname
  JOIN pg_class c ON c.oid = s.relid
 ORDER BY 1;
-- and it analyzes where autovacuum's would come too late: no count before
-- (a first rebuild), a count that moved by more than
-- autovacuum_analyze_scale_factor (0.1), autovacuum off for the table
SELECT shop._rebuild_analyze('shop.customer_neighbour', c.reltuples) AS same_count,
       shop._rebuild_analyze('shop.customer_neighbour', -1) AS never_counted,
       shop._rebuild_analyze('shop.customer_neighbour', (c.reltuples * 1.05)::real) AS moved_down_5pct,
       shop._rebuild_analyze('shop.customer_neighbour', (c.reltuples * 1.2)::real) AS moved_down_17pct,
       shop._rebuild_analyze('shop.customer_neighbour', (c.reltuples / 1.2)::real) AS moved_up_20pct
  FROM pg_class c WHERE c.oid = 'shop.customer_neighbour'::regclass;
ALTER TABLE shop.customer_neighbour SET (autovacuum_enabled = false);
SELECT shop._rebuild_analyze('shop.customer_neighbour', c.reltuples) AS autovacuum_off
  FROM pg_class c WHERE c.oid = 'shop.customer_neighbour'::regclass;
ALTER TABLE shop.customer_neighbour RESET (autovacuum_enabled);

RESET shop.reco_buyer_cap;
RESET shop.reco_basket_cap;
RESET shop.reco_neighbours;
RESET shop.reco_like_sample;
RESET shop.reco_like_neighbours;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
