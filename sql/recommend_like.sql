-- recommend_like: customers like you and the blend of shop.recommend
-- (issue 14).  Two customers who share purchases are each other's
-- neighbours; recommend proposes what a neighbour bought; a refresh after
-- new orders and views leaves the profiles and lists a rebuild writes; a
-- new customer gets popularity; the storefront calls it for its customer.
\i sql/include/prelude.sql

-- hold the refresh lock for the whole session: only this script folds
SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;

INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 300) i;

\i sql/include/buy.sql

-- 1. Customers 1001 and 1002 bought the same three products; 1002 also
-- bought product 4.  Customer 1003 bought other things.  Product 200 is
-- the best seller, then 201 and 202 (guest orders).
SELECT pg_temp.buy(ARRAY[1, 2, 3], 1001) IS NOT NULL AS bought;
SELECT pg_temp.buy(ARRAY[1, 2], 1002) IS NOT NULL AS bought;
SELECT pg_temp.buy(ARRAY[3, 4], 1002) IS NOT NULL AS bought;
SELECT pg_temp.buy(ARRAY[10, 11], 1003) IS NOT NULL AS bought;
SELECT count(pg_temp.buy(ARRAY[200])) AS guest_orders FROM generate_series(1, 5);
SELECT count(pg_temp.buy(ARRAY[201])) AS guest_orders FROM generate_series(1, 4);
SELECT count(pg_temp.buy(ARRAY[202])) AS guest_orders FROM generate_series(1, 3);
SET ROLE shop_admin;
SELECT r ->> 'customers_profiled' AS profiled FROM shop.refresh_recommendations() r;
RESET ROLE;
-- each other's only neighbour, with the cosine of their profiles: 3
-- shared products of 3 and 4, 3 / sqrt(3 * 4)
SELECT customer_id, neighbour_id, round(score::numeric, 4) AS score
  FROM shop.customer_neighbour ORDER BY customer_id, neighbour_id;
SELECT round((3 / sqrt(12))::numeric, 4) AS expected;
-- the neighbour's product 4 is proposed (no co-purchase list holds it:
-- each pair was bought once, below shop.reco_min_pairs), between the two
-- best sellers and the next; what the customer bought never is
SELECT product_id, round(score::numeric, 4) AS score FROM shop.recommend(1001, 4);
-- customers like you alone: product 4 first, popularity fills the rest
SET shop.reco_weight_item = 0;
SET shop.reco_weight_popular = 0;
SELECT product_id, round(score::numeric, 4) AS score FROM shop.recommend(1001, 4);
RESET shop.reco_weight_item;
RESET shop.reco_weight_popular;

-- content: customer 1004 bought a lamp nobody else bought (no
-- co-purchase list, no neighbour); the other lamp of its category and
-- brand comes first, with content on (it is off by default) and
-- popularity off (in this small shop the best sellers outweigh it)
SELECT shop.category_add('Lamps') AS lamps \gset
UPDATE shop.product SET category_id = :lamps, brand = 'Lumo', title = 'Lumo desk lamp ' || product_id
 WHERE product_id IN (50, 51);
SELECT pg_temp.buy(ARRAY[50], 1004) IS NOT NULL AS bought;
SELECT r ->> 'customers_profiled' AS profiled FROM shop.refresh_recommendations() r;
SET shop.reco_weight_popular = 0;
SET shop.reco_weight_content = 0.2;
SELECT product_id FROM shop.recommend(1004, 2);
SET shop.reco_weight_content = 0;
SELECT product_id FROM shop.recommend(1004, 2);
RESET shop.reco_weight_content;
RESET shop.reco_weight_popular;

-- 2. A new customer (no order, no view) gets the popular products, in
-- trending's order
SELECT array_agg(product_id) AS recommended FROM shop.recommend(424242, 3);
SELECT array_agg(product_id) AS trending FROM shop.trending(NULL, 3);

-- 3. The storefront of customer 1001 calls it for its own customer only
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.session_token(1001, '1 hour') AS tok \gset
SET ROLE shop_storefront;
SELECT shop.session_begin(:'tok') AS customer;
SELECT product_id FROM shop.recommend(1001, 1);
SELECT pg_temp.err($$SELECT * FROM shop.recommend(1002, 1)$$) AS other_customer;
SELECT pg_temp.err($$SELECT count(*) FROM shop.customer_neighbour$$) AS read_neighbours;
SELECT shop.session_end();
RESET ROLE;
RESET shop.session_secret;

-- 4. Incremental refresh.  Many customers with small, overlapping
-- histories; small samples, profiles and lists, so that sampling, the
-- profile cap and full lists all matter.
SET shop.reco_like_sample = 4;
SET shop.reco_like_items = 5;
SET shop.reco_like_neighbours = 3;
CREATE FUNCTION pg_temp.basket(i int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT array_agg(DISTINCT 1 + ((i * i * 7) % 60 + j * (1 + i % 4)) % 60)
      FROM generate_series(0, i % 3) j
$f$;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 150)) AS orders
  FROM generate_series(1, 600) i;
SELECT shop.rebuild_recommendations() ->> 'customer_neighbours' AS neighbour_rows;
-- the sliced refresh that patches lists (a shop whose profile rows pass
-- shop.reco_like_refresh_rows; 0 here): the in-memory one is tested by
-- recommend_like_memory
SET shop.reco_like_refresh_rows = 0;

CREATE FUNCTION pg_temp.snapshot() RETURNS void LANGUAGE sql AS $f$
    DROP TABLE IF EXISTS snap_item, snap_nb;
    CREATE TEMP TABLE snap_item AS SELECT * FROM shop.customer_item;
    CREATE TEMP TABLE snap_nb AS SELECT * FROM shop.customer_neighbour;
$f$;
SET client_min_messages = warning;
SELECT pg_temp.snapshot();
RESET client_min_messages;
CREATE FUNCTION pg_temp.diffs()
RETURNS TABLE (profile_rows bigint, profile_diffs bigint, neighbour_rows bigint, neighbour_diffs bigint)
LANGUAGE sql AS $f$
    SELECT (SELECT count(*) FROM shop.customer_item),
           (SELECT count(*) FROM snap_item s FULL JOIN shop.customer_item r USING (customer_id, product_id)
             WHERE r.weight IS NULL OR s.weight IS NULL OR abs(s.weight - r.weight) > 1e-6 OR s.h <> r.h),
           (SELECT count(*) FROM shop.customer_neighbour),
           (SELECT count(*) FROM snap_nb s FULL JOIN shop.customer_neighbour r USING (customer_id, neighbour_id)
             WHERE r.score IS NULL OR s.score IS NULL OR abs(s.score - r.score) > 1e-6)
$f$;

-- new orders of old and new customers, a cancelled order, views
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 170)) AS orders
  FROM generate_series(601, 640) i;
UPDATE shop."order" SET status = 'cancelled'
 WHERE order_id = (SELECT order_id FROM shop."order" WHERE customer_id = 42 ORDER BY created_at, order_id LIMIT 1);
SELECT shop.view(43, 59), shop.view(44, 1), shop.view(180, 7);
SELECT r ->> 'customers_profiled' AS profiled,
       (r ->> 'customers_scored')::int BETWEEN 1 AND 169 AS some_lists_not_all,
       (r ->> 'customers_patched')::int > 0 AS some_lists_patched
  FROM shop.refresh_recommendations() r;
-- the refresh changed something, and left what a rebuild writes
SELECT (SELECT count(*) FROM snap_nb s FULL JOIN shop.customer_neighbour r USING (customer_id, neighbour_id)
         WHERE r.score IS NULL OR s.score IS NULL OR s.score <> r.score) > 0 AS lists_moved;
SET client_min_messages = warning;
SELECT pg_temp.snapshot();
RESET client_min_messages;
SELECT shop.rebuild_recommendations() IS NOT NULL AS rebuilt;
SELECT * FROM pg_temp.diffs();
-- the lists the C writes are those of the SQL statement of a list
SELECT count(*) AS differ
  FROM ((SELECT * FROM shop.customer_neighbour
         EXCEPT SELECT * FROM shop._like_score((SELECT array_agg(DISTINCT customer_id) FROM shop.customer_item)))
        UNION ALL
        (SELECT * FROM shop._like_score((SELECT array_agg(DISTINCT customer_id) FROM shop.customer_item))
         EXCEPT SELECT * FROM shop.customer_neighbour)) d;

-- rounds of new orders, a cancelled order and views: each refresh
-- computes a few lists whole and patches others (a full list that lost
-- an entry is computed whole again), and leaves what a rebuild writes
CREATE TEMP TABLE rounds (round int, profiled int, whole int, patched int, redone int,
                          profile_diffs bigint, neighbour_diffs bigint);
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
    PERFORM pg_temp.snapshot();
    PERFORM shop.rebuild_recommendations();
    INSERT INTO rounds
    SELECT rnd, (r ->> 'customers_profiled')::int, (r ->> 'customers_scored')::int,
           (r ->> 'customers_patched')::int, (r ->> 'customers_redone')::int, d.profile_diffs, d.neighbour_diffs
      FROM pg_temp.diffs() d;
END $f$;
SET client_min_messages = warning;
-- profiles in slices of 3 customers: the lists of several slices are
-- computed or patched in one call, which comes early when the gathered
-- similarities pass one slice's worst case (3 * 5 * 4)
SET shop.reco_like_slice = 3;
-- each its own transaction (orders reach the log at commit)
SELECT format('DO $d$ BEGIN PERFORM pg_temp.changes(%s); END $d$', rnd),
       format('DO $d$ BEGIN PERFORM pg_temp.check(%s); END $d$', rnd)
  FROM generate_series(1, 8) rnd \gexec
RESET shop.reco_like_slice;
RESET client_min_messages;
SELECT count(*) AS rounds, sum(profiled) > 8 AS profiled, sum(profile_diffs) AS profile_diffs,
       sum(neighbour_diffs) AS neighbour_diffs, bool_and(whole < 175) AS never_all_whole, sum(patched) > 0 AS patched, sum(redone) > 0 AS redone
  FROM rounds;

RESET shop.reco_like_refresh_rows;

-- the refresh cap: one customer per refresh, the others stay queued
SET shop.reco_like_refresh_cap = 1;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 170)) AS orders
  FROM generate_series(641, 643) i;
SELECT r ->> 'customers_profiled' AS profiled, r ->> 'customers_queued' AS queued
  FROM shop.refresh_recommendations() r;
SELECT r ->> 'customers_profiled' AS profiled, r ->> 'customers_queued' AS queued
  FROM shop.refresh_recommendations() r;
SELECT r ->> 'customers_profiled' AS profiled, r ->> 'customers_queued' AS queued
  FROM shop.refresh_recommendations() r;
RESET shop.reco_like_refresh_cap;

-- more customers queued than the cap, and the same customers ordering
-- again every round (steady traffic): the queue is taken oldest first,
-- so every queued customer is profiled within queued / cap rounds, and
-- the queue stays at what arrives between two rounds.  (Taken by
-- customer id, 1 and 2 went first every round and 3..6 never did.)
SET shop.reco_like_refresh_cap = 2;
SELECT count(pg_temp.buy(ARRAY[280 + c], c)) AS orders FROM generate_series(1, 6) c;
SELECT r ->> 'customers_profiled' AS profiled, r ->> 'customers_queued' AS queued
  FROM shop.refresh_recommendations() r;
SELECT format('SELECT count(pg_temp.buy(ARRAY[7, 8], c)) FROM generate_series(1, 2) c'),
       'SELECT shop.refresh_recommendations() IS NOT NULL'
  FROM generate_series(1, 2) \gexec
-- 3..6 were profiled (their orders are in their profiles); 1 and 2 wait
SELECT c AS customer, EXISTS (SELECT 1 FROM shop.customer_item i
                               WHERE i.customer_id = c AND i.product_id = 280 + c) AS profiled
  FROM generate_series(3, 6) c;
SELECT array_agg(customer_id ORDER BY customer_id) AS queued FROM shop.customer_like_queue;
RESET shop.reco_like_refresh_cap;
SELECT r ->> 'customers_queued' AS queued FROM shop.refresh_recommendations() r;
SET client_min_messages = warning;
SELECT pg_temp.snapshot();
RESET client_min_messages;
SELECT shop.rebuild_recommendations() IS NOT NULL AS rebuilt;
SELECT * FROM pg_temp.diffs();

-- a refresh with nothing to do (the sweeper's every minute) writes
-- nothing: no transaction id is assigned
SELECT r ->> 'customers_profiled' AS profiled FROM shop.refresh_recommendations() r;
BEGIN;
SELECT r ->> 'customers_profiled' AS profiled, r ->> 'log_rows' AS log_rows
  FROM shop.refresh_recommendations() r;
SELECT pg_current_xact_id_if_assigned() IS NULL AS wrote_nothing;
COMMIT;

RESET shop.reco_like_sample;
RESET shop.reco_like_items;
RESET shop.reco_like_neighbours;
-- 5. The cache of the blended list: a second call serves the stored
-- list (marked here: its scores set to 42), until another lim or
-- weights, a view, a new order, an archived product or a refresh make the
-- next call compute it again
CREATE FUNCTION pg_temp.mark(c bigint) RETURNS void LANGUAGE sql AS $f$
    SELECT count(*) FROM shop.recommend(c, 4);
    UPDATE shop.recommend_cache SET scores = array_fill(42::real, ARRAY[cardinality(ids)]) WHERE customer_id = c;
$f$;
CREATE FUNCTION pg_temp.cached(c bigint) RETURNS boolean LANGUAGE sql AS $f$
    SELECT bool_and(score = 42) FROM shop.recommend(c, 4);
$f$;
SELECT pg_temp.mark(5);
SELECT pg_temp.cached(5) AS served;
SELECT count(*) AS other_lim FROM shop.recommend(5, 3) WHERE score = 42;
SELECT pg_temp.mark(5);
SET shop.reco_weight_popular = 0.5;
SELECT pg_temp.cached(5) AS other_weights;
RESET shop.reco_weight_popular;
SELECT pg_temp.mark(5);
SELECT shop.view(5, 58) IS NULL AS viewed;
SELECT pg_temp.cached(5) AS after_view, 58 IN (SELECT product_id FROM shop.recommend(5, 4)) AS viewed_listed;
SELECT pg_temp.mark(5);
SELECT (SELECT product_id FROM shop.recommend(5, 1)) AS first \gset
SELECT pg_temp.mark(5);
SELECT pg_temp.buy(ARRAY[:first]::bigint[], 5) IS NOT NULL AS bought_first;
SELECT pg_temp.cached(5) AS after_order, :first IN (SELECT product_id FROM shop.recommend(5, 4)) AS bought_listed;
SELECT pg_temp.mark(5);
SELECT (SELECT product_id FROM shop.recommend(5, 1)) AS first \gset
SELECT pg_temp.mark(5);
UPDATE shop.product SET status = 'archived' WHERE product_id = :first;
SELECT pg_temp.cached(5) AS after_archive, :first IN (SELECT product_id FROM shop.recommend(5, 4)) AS archived_listed;
UPDATE shop.product SET status = 'active' WHERE product_id = :first;
-- _recommend_default is C (issue 14, reco13): for every customer, the
-- first call's list is the blend's, the served one the same, and the
-- stored key is the one its PL/pgSQL computed (generation, deactivation
-- counter, md5 of the counted orders' ids, the views' count and newest)
TRUNCATE shop.recommend_cache;
CREATE TEMP TABLE rd_first AS
SELECT c, x.* FROM (SELECT DISTINCT customer_id FROM shop."order" WHERE customer_id IS NOT NULL) o(c),
       shop._recommend_default(c, 7) WITH ORDINALITY x;
CREATE TEMP TABLE rd_served AS
SELECT c, x.* FROM (SELECT DISTINCT customer_id FROM shop."order" WHERE customer_id IS NOT NULL) o(c),
       shop._recommend_default(c, 7) WITH ORDINALITY x;
CREATE TEMP TABLE rd_blend AS
SELECT c, x.* FROM (SELECT DISTINCT customer_id FROM shop."order" WHERE customer_id IS NOT NULL) o(c),
       shop._recommend_blend(c, 7) WITH ORDINALITY x;
SELECT (SELECT count(DISTINCT c) FROM rd_blend) > 100 AS customers,
       (SELECT count(*) FROM (SELECT * FROM rd_first EXCEPT ALL SELECT * FROM rd_blend) d)
     + (SELECT count(*) FROM (SELECT * FROM rd_blend EXCEPT ALL SELECT * FROM rd_first) d) AS first_differ,
       (SELECT count(*) FROM (SELECT * FROM rd_served EXCEPT ALL SELECT * FROM rd_blend) d)
     + (SELECT count(*) FROM (SELECT * FROM rd_blend EXCEPT ALL SELECT * FROM rd_served) d) AS served_differ;
SELECT count(*) AS cached,
       count(*) FILTER (WHERE r.gen = (SELECT last_value FROM shop.recommend_cache_gen)
                          AND r.deact = coalesce((SELECT n FROM shop.product_deactivation), 0)
                          AND r.lim = 7
                          AND r.weights = ARRAY[shop._guc('shop.reco_weight_item')::float8, shop._guc('shop.reco_weight_like')::float8,
                                                shop._guc('shop.reco_weight_content')::float8, shop._guc('shop.reco_weight_popular')::float8]
                          AND r.orders_key = (SELECT md5(coalesce(string_agg(x.order_id::text, ',' ORDER BY x.order_id), ''))::uuid
                                                FROM shop."order" x WHERE x.customer_id = r.customer_id AND shop._counted(x.status))
                          AND r.views_n = (SELECT count(*) FROM shop.view_event y WHERE y.customer_id = r.customer_id)
                          AND r.views_at IS NOT DISTINCT FROM (SELECT max(y.viewed_at) FROM shop.view_event y
                                                               WHERE y.customer_id = r.customer_id)
                          AND r.ids = ARRAY(SELECT b.product_id FROM rd_blend b WHERE b.c = r.customer_id ORDER BY b.ordinality)
                          AND r.scores = ARRAY(SELECT b.score FROM rd_blend b WHERE b.c = r.customer_id ORDER BY b.ordinality))
         AS as_keyed
  FROM shop.recommend_cache r;
-- the key is read in C (rec9): for every customer with an order or a
-- view, those with views and no counted order (md5 of '') and those with
-- no view (views_at NULL) among them, the stored key is the SQL's, and a
-- second call serves it (the stored scores marked, as pg_temp.mark does)
TRUNCATE shop.recommend_cache;
CREATE TEMP TABLE rk_cust AS
SELECT customer_id AS c FROM shop.view_event
 UNION SELECT customer_id FROM shop."order" WHERE customer_id IS NOT NULL;
SELECT count(*) > 0 AS listed FROM rk_cust, shop._recommend_default(c, 5);
SELECT count(*) = (SELECT count(*) FROM rk_cust) AS all_cached,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shop."order" x
                                           WHERE x.customer_id = r.customer_id AND shop._counted(x.status))) > 0
         AS some_without_orders,
       count(*) FILTER (WHERE r.views_at IS NULL) > 0 AS some_without_views,
       count(*) FILTER (WHERE NOT (r.gen = (SELECT last_value FROM shop.recommend_cache_gen)
                          AND r.deact = coalesce((SELECT n FROM shop.product_deactivation), 0)
                          AND r.lim = 5
                          AND r.orders_key = (SELECT md5(coalesce(string_agg(x.order_id::text, ',' ORDER BY x.order_id), ''))::uuid
                                                FROM shop."order" x WHERE x.customer_id = r.customer_id AND shop._counted(x.status))
                          AND r.views_n = (SELECT count(*) FROM shop.view_event y WHERE y.customer_id = r.customer_id)
                          AND r.views_at IS NOT DISTINCT FROM (SELECT max(y.viewed_at) FROM shop.view_event y
                                                               WHERE y.customer_id = r.customer_id))) AS not_keyed
  FROM shop.recommend_cache r;
UPDATE shop.recommend_cache SET scores = array_fill(42::real, ARRAY[cardinality(ids)]);
SELECT count(*) FILTER (WHERE x.score <> 42) AS not_served, count(*) > 0 AS rows
  FROM rk_cust, shop._recommend_default(c, 5) x;
TRUNCATE shop.recommend_cache;
-- also_bought's fill from similar products (lamp 50 has no co-purchase
-- list: lamp 51 fills it) is cached per product the same way
SELECT array_agg(product_id) AS also_bought FROM shop.also_bought(50, 5);
UPDATE shop.also_bought_cache SET scores = array_fill(42::real, ARRAY[cardinality(ids)]) WHERE product_id = 50;
SELECT array_agg(score) AS fill_served FROM shop.also_bought(50, 5);
SELECT pg_temp.mark(5);
SELECT pg_temp.buy(ARRAY[1, 2], 77) IS NOT NULL AS other_customer_bought;
SELECT pg_temp.cached(5) AS before_refresh;
SELECT shop.refresh_recommendations() ->> 'log_rows' AS log_rows;
SELECT pg_temp.cached(5) AS after_refresh, (SELECT array_agg(score) FROM shop.also_bought(50, 5)) <> '{42}' AS fill_recomputed;
UPDATE shop.also_bought_cache SET scores = array_fill(42::real, ARRAY[cardinality(ids)]) WHERE product_id = 50;
UPDATE shop.product SET status = 'archived' WHERE product_id = 51;
SELECT array_agg(product_id) AS also_bought_archived FROM shop.also_bought(50, 5);
UPDATE shop.product SET status = 'active' WHERE product_id = 51;
-- the stored lists are served without reading their products: a counter
-- of the transactions that took a product out of 'active'
-- (shop.product_deactivation) stands for the check.  It moves once per
-- such transaction (an update of the status, a delete), not for other
-- updates nor for a rolled-back deactivation
CREATE FUNCTION pg_temp.deact() RETURNS bigint LANGUAGE sql AS $f$
    SELECT coalesce((SELECT n FROM shop.product_deactivation), 0);
$f$;
SELECT pg_temp.deact() AS d0 \gset
TRUNCATE shop.also_bought_cache;
SELECT count(*) AS fill FROM shop.also_bought(50, 5);
UPDATE shop.also_bought_cache SET scores = array_fill(42::real, ARRAY[cardinality(ids)]) WHERE product_id = 50;
SELECT pg_temp.mark(5);
UPDATE shop.product SET title = title || '', status = 'active' WHERE product_id IN (50, 51);
SELECT pg_temp.deact() - :d0 AS moved_by_other_updates, pg_temp.cached(5) AS still_served,
       (SELECT array_agg(score) FROM shop.also_bought(50, 5)) = '{42}' AS fill_still_served;
BEGIN;
UPDATE shop.product SET status = 'draft' WHERE product_id IN (50, 51);
ROLLBACK;
SELECT pg_temp.deact() - :d0 AS moved_by_rollback, pg_temp.cached(5) AS served_after_rollback;
BEGIN;
UPDATE shop.product SET status = 'draft' WHERE product_id IN (52, 53);
UPDATE shop.product SET status = 'archived' WHERE product_id = 51;
UPDATE shop.product SET status = 'active' WHERE product_id IN (51, 52, 53);
COMMIT;
SELECT pg_temp.deact() - :d0 AS moved_once_for_three;
-- a deactivation in a subtransaction rolled back after one that stays
BEGIN;
UPDATE shop.product SET status = 'draft' WHERE product_id = 52;
SAVEPOINT s;
UPDATE shop.product SET status = 'draft' WHERE product_id = 53;
ROLLBACK TO SAVEPOINT s;
UPDATE shop.product SET status = 'active' WHERE product_id = 52;
COMMIT;
SELECT pg_temp.deact() - :d0 AS moved_with_savepoint;
BEGIN;
SAVEPOINT s;
UPDATE shop.product SET status = 'draft' WHERE product_id = 53;
ROLLBACK TO SAVEPOINT s;
UPDATE shop.product SET status = 'draft' WHERE product_id = 52;
UPDATE shop.product SET status = 'active' WHERE product_id = 52;
COMMIT;
SELECT pg_temp.deact() - :d0 AS moved_after_rolled_back_savepoint;
-- any deactivation ends the stored lists (they are computed again), and
-- a product taken out is never served: by its status, as shop_admin
-- through product_upsert, or deleted
SELECT pg_temp.mark(5);
SELECT (SELECT product_id FROM shop.recommend(5, 1)) AS first \gset
SELECT sku AS first_sku, title AS first_title, price_cents AS first_price FROM shop.product WHERE product_id = :first \gset
SET ROLE shop_admin;
SELECT shop.product_upsert(:'first_sku', :'first_title', :first_price, status => 'draft') = :first AS drafted;
RESET ROLE;
SELECT pg_temp.cached(5) AS after_draft, :first IN (SELECT product_id FROM shop.recommend(5, 4)) AS draft_listed;
UPDATE shop.product SET status = 'active' WHERE product_id = :first;
SELECT count(*) AS fill FROM shop.also_bought(50, 5);
INSERT INTO shop.product (product_id, sku, title, price_cents, category_id, brand)
SELECT 990051, 'RL-990051', title, price_cents, category_id, brand FROM shop.product WHERE product_id = 51;
UPDATE shop.product SET status = 'archived' WHERE product_id = 51;
SELECT array_agg(product_id ORDER BY product_id) AS fill_with_copy FROM shop.also_bought(50, 5);
UPDATE shop.also_bought_cache SET scores = array_fill(42::real, ARRAY[cardinality(ids)]) WHERE product_id = 50;
DELETE FROM shop.product WHERE product_id = 990051;
SELECT array_agg(product_id) AS fill_after_delete, pg_temp.deact() - :d0 AS moved
  FROM shop.also_bought(50, 5);
UPDATE shop.product SET status = 'active' WHERE product_id = 51;

-- an experiment's variant names its list: "personal" is the 1.1 list
-- (item-to-item, trending fills it), "blend" (or "default") the blend;
-- customers like you alone, so that the two lists differ
SET shop.reco_weight_item = 0;
SET shop.reco_weight_popular = 0;
SELECT shop.experiment_create('lists', '[{"name": "blend", "share": 0.5, "method": "blend"},
                                         {"name": "personal", "share": 0.5, "method": "personal"}]') IS NOT NULL AS created;
SELECT c AS customer, (shop.experiment_assign('lists', c)).variant,
       s.shown = ARRAY(SELECT product_id FROM shop._recommend_personal(c, 4)) AS shows_personal,
       s.shown = ARRAY(SELECT product_id FROM shop._recommend_blend(c, 4)) AS shows_blend
  FROM unnest(ARRAY[1, 2, 3, 4, 5, 6]::bigint[]) c,
       LATERAL (SELECT ARRAY(SELECT product_id FROM shop.recommend(c, 4, 'lists')) AS shown) s;
SELECT pg_temp.err($$SELECT shop.experiment_create('lists2', '[{"name": "a", "share": 0.5, "method": "nearest"},
                                                              {"name": "b", "share": 0.5}]')$$) AS bad_method;
RESET shop.reco_weight_item;
RESET shop.reco_weight_popular;

-- the blend is computed in C (src/recoblend.c); its statement stays as
-- shop._recommend_blend_sql, which keeps its generic plan (plan_cache_mode
-- on the function: planned per call it cost more than it ran)
SELECT p.proconfig @> '{plan_cache_mode=force_generic_plan}' AS blend_sql_generic_plan
  FROM pg_proc p WHERE p.oid = 'shop._recommend_blend_sql(bigint, int, timestamptz)'::regprocedure;
-- planned per call, the statement gives the same lists
CREATE TEMP TABLE blend_generic AS
SELECT c, ARRAY(SELECT row(b.product_id, b.score)::text FROM shop._recommend_blend_sql(c, 10, NULL) b) AS l
  FROM unnest(ARRAY[1, 2, 3, 4, 5, 6, 77]::bigint[]) c;
BEGIN;
ALTER FUNCTION shop._recommend_blend_sql(bigint, int, timestamptz) SET plan_cache_mode = force_custom_plan;
SELECT count(*) AS customers, count(*) FILTER (WHERE cardinality(g.l) > 0) AS with_list,
       count(*) FILTER (WHERE g.l = ARRAY(SELECT row(b.product_id, b.score)::text
                                            FROM shop._recommend_blend_sql(g.c, 10, NULL) b)) AS same_lists
  FROM blend_generic g;
ROLLBACK;
-- the C gives the statement's lists (products, order, scores to the bit):
-- every customer with an order, a view or neighbours and one with none,
-- at several weights (each source alone, the defaults, others), limits
-- (200: the trending fill runs) and cut-offs (the orders before the
-- median order, as the nightly HR@10 asks)
CREATE TEMP TABLE blend_who AS
SELECT DISTINCT c FROM (SELECT customer_id FROM shop."order" UNION ALL SELECT customer_id FROM shop.view_event
                        UNION ALL SELECT customer_id FROM shop.customer_neighbour UNION ALL SELECT 77) x(c)
 WHERE c IS NOT NULL;
CREATE FUNCTION pg_temp.blend_same(w text[], lim int, cut boolean)
RETURNS TABLE (customers bigint, rows_c bigint, rows_sql bigint, same_lists bigint)
LANGUAGE plpgsql AS $f$
DECLARE
    t timestamptz;
BEGIN
    IF cut THEN
        SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY o.created_at) INTO t FROM shop."order" o;
    END IF;
    PERFORM set_config('shop.reco_weight_item', w[1], true), set_config('shop.reco_weight_like', w[2], true),
            set_config('shop.reco_weight_popular', w[3], true);
    RETURN QUERY
    SELECT count(*), sum(cardinality(y.a)), sum(cardinality(y.b)), count(*) FILTER (WHERE y.a = y.b)
      FROM (SELECT ARRAY(SELECT row(x.product_id, x.score)::text FROM shop._recommend_blend(b.c, lim, t) x) AS a,
                   ARRAY(SELECT row(x.product_id, x.score)::text FROM shop._recommend_blend_sql(b.c, lim, t) x) AS b
              FROM blend_who b) y;
END
$f$;
SELECT v.w, l.lim, k.cut, s.*
  FROM (VALUES (1, '{1,0.5,1}'::text[]), (2, '{1,0,0}'), (3, '{0,1,0}'), (4, '{0,0,1}'), (5, '{0,0,0}'),
               (6, '{0.7,2,0.3}')) v(n, w),
       unnest(ARRAY[3, 10, 200]) l(lim), unnest(ARRAY[false, true]) k(cut),
       LATERAL pg_temp.blend_same(v.w, l.lim, k.cut) s
 ORDER BY v.n, l.lim, k.cut;
-- an index the C expects missing (or a table it cannot read plainly):
-- the statement computes the list instead, the same list
CREATE TEMP TABLE blend_c AS
SELECT b.c, ARRAY(SELECT row(x.product_id, x.score)::text FROM shop._recommend_blend(b.c, 10, NULL) x) AS l
  FROM blend_who b;
BEGIN;
DROP INDEX shop.product_popularity_idx;
SELECT count(*) AS customers, count(*) FILTER (WHERE cardinality(g.l) > 0) AS with_list,
       count(*) FILTER (WHERE g.l = ARRAY(SELECT row(x.product_id, x.score)::text
                                            FROM shop._recommend_blend(g.c, 10, NULL) x)) AS same_lists
  FROM blend_c g;
ROLLBACK;
-- the popularity source reads product_popularity_idx index only (rec8):
-- with the product pages all visible (after a VACUUM) the lists are still
-- the statement's; and under an index of that name whose predicate is not
-- status = 'active' (here drafts too, the most popular product one of
-- them) the C reads the rows and checks their status, as the statement
-- does: the same lists, no draft in them
VACUUM shop.product;
SELECT v.w, s.*
  FROM (VALUES (1, '{1,0.5,1}'::text[]), (2, '{0,0,1}')) v(n, w), LATERAL pg_temp.blend_same(v.w, 10, false) s
 ORDER BY v.n;
BEGIN;
UPDATE shop.product SET status = 'draft', popularity = 1e6
 WHERE product_id = (SELECT min(product_id) FROM shop.product WHERE status = 'active' AND popularity > 0);
DROP INDEX shop.product_popularity_idx;
CREATE INDEX product_popularity_idx ON shop.product (popularity DESC, product_id) WHERE status IN ('active', 'draft');
SELECT v.w, s.*
  FROM (VALUES (1, '{1,0.5,1}'::text[]), (2, '{0,0,1}')) v(n, w), LATERAL pg_temp.blend_same(v.w, 10, false) s
 ORDER BY v.n;
SELECT count(*) AS drafts_listed
  FROM blend_who b, shop._recommend_blend(b.c, 10, NULL) x JOIN shop.product p USING (product_id)
 WHERE p.status <> 'active';
ROLLBACK;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
