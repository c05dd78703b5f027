-- recommend: co-purchase capture and scoring, also_bought, recommend,
-- trending, views, similar products
\i sql/include/prelude.sql

-- the background sweeper folds the log too (shop.sweep); hold the refresh
-- lock for the whole session so that only this script's calls fold it
SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;

-- a small catalog: products 1..9 by sku, in two categories
SELECT shop.category_add('Computers') AS computers \gset
SELECT shop.category_add('Laptops', :computers) AS laptops \gset
SELECT shop.category_add('Phones') AS phones \gset
INSERT INTO shop.product (product_id, sku, title, brand, category_id, price_cents) VALUES
    (1, 'LAPTOP', 'Laptop 14 inch', 'Acme', :laptops, 90000),
    (2, 'BAG', 'Laptop bag', 'Carry', :computers, 4000),
    (3, 'MOUSE', 'Wireless mouse', 'Acme', :computers, 2500),
    (4, 'PHONE', 'Smartphone', 'Fone', :phones, 60000),
    (5, 'CASE', 'Smartphone case', 'Fone', :phones, 1500),
    (6, 'CHARGER', 'Phone charger', 'Fone', :phones, 2000),
    (7, 'STICK', 'USB stick', 'Acme', :computers, 900),
    (8, 'BATTERY', 'Batteries', 'Power', :computers, 500),
    (9, 'LAPTOP2', 'Laptop 15 inch', 'Acme', :laptops, 99000);

-- order helper: a paid guest order (or a customer's) with the given products
\i sql/include/buy.sql

-- the basket set: the USB stick (7) is in every basket
--   laptop+bag x4, laptop+mouse x3, phone+case x4, phone+charger x3,
--   batteries x6; everyone adds a stick
SELECT count(pg_temp.buy(ARRAY[1, 2, 7])) AS orders FROM generate_series(1, 4);
SELECT count(pg_temp.buy(ARRAY[1, 3, 7])) AS orders FROM generate_series(1, 3);
SELECT count(pg_temp.buy(ARRAY[4, 5, 7])) AS orders FROM generate_series(1, 4);
SELECT count(pg_temp.buy(ARRAY[4, 6, 7])) AS orders FROM generate_series(1, 3);
SELECT count(pg_temp.buy(ARRAY[8, 7])) AS orders FROM generate_series(1, 6);
-- pending and cancelled orders do not count
SELECT count(pg_temp.buy(ARRAY[1, 8], st => 'pending')) AS orders FROM generate_series(1, 5);
SELECT count(pg_temp.buy(ARRAY[1, 8], st => 'cancelled')) AS orders FROM generate_series(1, 5);
-- each counted order logged itself, nothing else is written at checkout
SELECT count(*) AS log_rows, bool_and(counted) AS all_counted FROM shop.copurchase_delta;
SELECT count(*) AS copurchase_rows FROM shop.copurchase;

SELECT shop.refresh_recommendations() - 'popularity_updated' AS refresh;
SELECT count(*) AS log_left FROM shop.copurchase_delta;

-- the best-seller trap: by raw count the stick tops the laptop's list;
-- by score the bag and the mouse come first
SELECT other_id, pair_count, round(score::numeric, 3) AS score
  FROM shop.copurchase WHERE product_id = 1 ORDER BY pair_count DESC, other_id;
SELECT * FROM shop.also_bought(1, 3);
SELECT product_id FROM shop.also_bought(4, 2);
-- the stick tops no list but that of the batteries, its only partner
SELECT p.product_id, a.product_id AS top_neighbour
  FROM shop.product p, LATERAL shop.also_bought(p.product_id, 1) a
 ORDER BY 1;
-- the numbers behind the laptop -> bag score: n_bag = 4, s_laptop = 14, T = 54
SELECT product_id, baskets, slots FROM shop.copurchase_item WHERE product_id IN (1, 2, 7) ORDER BY 1;
SELECT sum(baskets) AS t FROM shop.copurchase_item;
SELECT round(((4 - 4 * 14 / 54.0) / sqrt(4 * 14 / 54.0))::numeric, 3) AS expected_laptop_bag,
       round(score::numeric, 3) AS laptop_bag FROM shop.copurchase WHERE product_id = 1 AND other_id = 2;

-- cancellation takes the pairs back out: two phone+laptop orders make a
-- pair (min 2), cancelling one removes it again
SELECT pg_temp.buy(ARRAY[4, 9]) AS o1 \gset
SELECT pg_temp.buy(ARRAY[4, 9]) AS o2 \gset
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT other_id, pair_count FROM shop.copurchase WHERE product_id = 9;
UPDATE shop."order" SET status = 'cancelled' WHERE order_id = :'o2';
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT count(*) AS laptop2_pairs FROM shop.copurchase WHERE product_id = 9;
SELECT other_ids, counts FROM shop.copurchase_pair WHERE product_id = 9;
-- pending -> paid in a later transaction counts; a refund takes it out
UPDATE shop."order" SET status = 'pending' WHERE order_id = :'o2';
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
UPDATE shop."order" SET status = 'paid' WHERE order_id = :'o2';
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT other_id, pair_count FROM shop.copurchase WHERE product_id = 9;
UPDATE shop."order" SET status = 'delivered' WHERE order_id = :'o2';
UPDATE shop."order" SET status = 'returned' WHERE order_id = :'o2';
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT count(*) AS laptop2_pairs FROM shop.copurchase WHERE product_id = 9;
-- lines added after the header in the same transaction are captured
BEGIN;
INSERT INTO shop."order" (order_id, status, currency, subtotal_cents, total_cents)
VALUES ('00000000-0000-0000-0000-00000000beef', 'paid', 'USD', 0, 0);
INSERT INTO shop.order_line VALUES
    ('00000000-0000-0000-0000-00000000beef', 1, 5, 's', 't', 0, 1),
    ('00000000-0000-0000-0000-00000000beef', 2, 6, 's', 't', 0, 1);
COMMIT;
SELECT pair_count AS before FROM shop.copurchase_pair, unnest(other_ids, counts) u(o, pair_count)
 WHERE product_id = 5 AND o = 6;
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT pair_count AS after FROM shop.copurchase_pair, unnest(other_ids, counts) u(o, pair_count)
 WHERE product_id = 5 AND o = 6;

-- capped baskets: with shop.reco_basket_cap = 5, a basket of 9 products
-- gives each of its pairs (5 - 1) / (9 - 1) = 0.5
SET shop.reco_basket_cap = 5;
SELECT pg_temp.buy(ARRAY[1, 2, 3, 4, 5, 6, 7, 8, 9]) AS big \gset
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT counts[array_position(other_ids, 9::bigint)] AS bag_laptop2 FROM shop.copurchase_pair WHERE product_id = 2;
-- heavy buyers: customer 500 orders charger+batteries 40 times; with
-- shop.reco_buyer_cap = 20 the 40 orders weigh 0.5 each
SELECT count(pg_temp.buy(ARRAY[6, 8], 500)) AS orders FROM generate_series(1, 40);
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT counts[array_position(other_ids, 8::bigint)] AS charger_batteries FROM shop.copurchase_pair WHERE product_id = 6;
SELECT DISTINCT weight FROM shop.copurchase_order WHERE customer_id = 500;
-- the 41st order re-weighs all of them (20 / 41)
SELECT pg_temp.buy(ARRAY[6, 8], 500) IS NOT NULL AS bought;
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT round(counts[array_position(other_ids, 8::bigint)]::numeric, 6) AS charger_batteries
  FROM shop.copurchase_pair WHERE product_id = 6;

-- incremental refresh equals a full rebuild
CREATE TEMP TABLE inc_item AS SELECT * FROM shop.copurchase_item;
CREATE TEMP TABLE inc_pair AS SELECT product_id, o, c FROM shop.copurchase_pair, unnest(other_ids, counts) u(o, c);
CREATE TEMP TABLE inc_top AS SELECT * FROM shop.copurchase;
SELECT shop.rebuild_recommendations() - 'popularity_updated' AS rebuild;
SELECT (SELECT count(*) FROM shop.copurchase_item) AS items,
       (SELECT count(*) FROM inc_item i FULL JOIN shop.copurchase_item r USING (product_id)
         WHERE r.product_id IS NULL OR i.product_id IS NULL
            OR abs(i.baskets - r.baskets) > 1e-9 OR abs(i.slots - r.slots) > 1e-9) AS item_diffs,
       (SELECT count(*) FROM inc_pair) AS pairs,
       (SELECT count(*) FROM inc_pair i
          FULL JOIN (SELECT product_id, o, c FROM shop.copurchase_pair, unnest(other_ids, counts) u(o, c)) r
               USING (product_id, o)
         WHERE r.c IS NULL OR i.c IS NULL OR abs(i.c - r.c) > 1e-9) AS pair_diffs,
       (SELECT count(*) FROM shop.copurchase) AS top_rows,
       (SELECT count(*) FROM inc_top i FULL JOIN shop.copurchase r USING (product_id, other_id)
         WHERE r.score IS NULL OR i.score IS NULL OR abs(i.score - r.score) > 1e-4) AS top_diffs;
RESET shop.reco_basket_cap;

-- inactive products are never recommended
UPDATE shop.product SET status = 'archived' WHERE product_id = 2;
SELECT count(*) AS bag_listed FROM shop.also_bought(1, 20) WHERE product_id = 2;

-- thin data: a new laptop nobody bought gets content-based neighbours
INSERT INTO shop.product (product_id, sku, title, brand, category_id, price_cents, attributes)
VALUES (10, 'LAPTOP3', 'Laptop 13 inch', 'Acme', :laptops, 80000, '{"color": "grey"}');
SELECT product_id, round(score::numeric, 3) AS score FROM shop.similar_products(10, 3);
SELECT product_id FROM shop.also_bought(10, 3);
-- the content score's terms in C (shop._title_similarity_to with the
-- source's trigrams kept per call site, shop._attr_overlap) give what the
-- SQL they replaced gave, to the bit: pg_trgm's similarity, and the
-- share of the source's attributes with equal values (jsonb equality:
-- 16 = 16.0, arrays in order, objects by key), as double precision
CREATE TEMP TABLE t(title) AS
SELECT unnest(ARRAY['Laptop 13 inch', 'laptop 13"', 'Laptop 13 inch Pro', 'Ноутбук Acme 15',
                    'ÄÖÜ Straße', '', '  ', 'a', 'ab-cd_ef 12/34', 'USB stick 64 GB', 'usb-stick']);
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE shop._title_similarity_to(a.title, b.title)
                              IS DISTINCT FROM shop._title_similarity(a.title, b.title)) AS differ
  FROM t b CROSS JOIN t a;
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE shop._title_similarity_to(a.title, b.title)
                              IS DISTINCT FROM shop._title_similarity(a.title, b.title)) AS differ
  FROM t a CROSS JOIN t b;
CREATE TEMP TABLE j(attrs) AS
SELECT unnest(ARRAY['{}', '{"color": "grey"}', '{"color": "grey", "ram": 16}', '{"ram": 16.0}',
                    '{"ram": "16"}', '{"tags": ["a", "b"], "dims": {"w": 1, "h": 2}}',
                    '{"tags": ["b", "a"], "dims": {"h": 2, "w": 1}}', '{"color": null}',
                    '{"a": 1, "b": 2, "c": 3}', '[1, 2]', '"grey"',
                    '{"ram": 16.00, "color": "Grey"}', '{"ram": 1.6e1, "on": true}', '{"on": "true"}',
                    '{"on": false, "color": null}', '{"ram": [16], "tags": "a"}']::jsonb[]);
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE 0.1 * coalesce(shop._attr_overlap(a.attrs, s.attrs), 0)
                              IS DISTINCT FROM
                              0.1 * coalesce((SELECT count(*) FROM jsonb_each(s.attrs) e
                                               WHERE a.attrs -> e.key = e.value)::real
                                             / nullif((SELECT count(*) FROM jsonb_object_keys(s.attrs)), 0), 0))
         AS differ,
       count(*) FILTER (WHERE shop._attr_overlap(a.attrs, s.attrs) NOT IN (0, 1)) AS partial
  FROM j a, j s
 WHERE jsonb_typeof(s.attrs) = 'object';
SELECT pg_temp.err($$SELECT shop._attr_overlap('{}', '[1]')$$);
-- the candidates whose bound (their category, brand and popularity, the
-- title and attribute terms at their most) is below the lim-th score of
-- the best-bounded ones are not scored (issue 14): the lists are those of
-- scoring every candidate, over a catalog whose popularity spreads far
-- past the content terms (so that most candidates are cut) and has many
-- exact ties (equal titles, attributes and popularity), for several lim
-- and exclusions; rolled back
BEGIN;
INSERT INTO shop.product (product_id, sku, title, brand, category_id, price_cents, attributes, popularity)
SELECT 1000 + i, 'SIM' || i, 'Widget ' || (i % 5) || CASE WHEN i % 4 = 0 THEN ' pro' ELSE '' END,
       CASE WHEN i % 3 = 0 THEN 'Acme' ELSE 'Zed' END, CASE WHEN i % 2 = 0 THEN :laptops ELSE :phones END, 100,
       CASE i % 3 WHEN 0 THEN '{"color": "grey"}' WHEN 1 THEN '{"color": "red", "ram": 16}' ELSE '{}' END::jsonb,
       CASE WHEN i % 6 = 0 THEN (i % 7) * 1000.0 ELSE power(1.6, i % 23) / 100 END
  FROM generate_series(1, 400) i;
CREATE FUNCTION pg_temp.similar_all(src_id bigint, src_category bigint, src_brand text, src_title text,
                                    src_attributes jsonb, exclude bigint[], lim int)
RETURNS SETOF shop.scored_product LANGUAGE sql STABLE AS $f$
    WITH ids AS (
        (SELECT p.product_id FROM shop.product p
          WHERE src_category IS NOT NULL AND p.category_id = src_category
            AND p.status = 'active' AND p.product_id <> src_id
          ORDER BY p.popularity DESC, p.product_id LIMIT 100)
        UNION
        (SELECT p.product_id FROM shop.product p
          WHERE src_brand IS NOT NULL AND p.brand = src_brand
            AND p.status = 'active' AND p.product_id <> src_id
          ORDER BY p.popularity DESC, p.product_id LIMIT 100))
    SELECT c.product_id,
           (0.4 * (c.category_id IS NOT DISTINCT FROM src_category)::int
            + 0.2 * (c.brand IS NOT DISTINCT FROM src_brand)::int
            + 0.3 * shop._title_similarity_to(c.title, src_title)
            + 0.1 * coalesce(shop._attr_overlap(c.attributes, src_attributes), 0)
            + 0.001 * c.popularity)::real AS s
      FROM ids JOIN shop.product c ON c.product_id = ids.product_id
     WHERE c.product_id <> ALL (exclude)
     ORDER BY s DESC, c.product_id
     LIMIT lim
$f$;
WITH runs AS (
    SELECT p.*, l, CASE WHEN l = 4 THEN ARRAY[1003::bigint, 1006, 1012, 1030] ELSE '{}' END AS ex
      FROM shop.product p, unnest(ARRAY[1, 4, 10, 30, 200]) l
     WHERE p.product_id BETWEEN 1001 AND 1400 AND p.product_id % 7 IN (0, 1, 3)
), got AS (
    SELECT r.product_id AS src, r.l, s.n, s.product_id, s.score
      FROM runs r, shop._similar_candidates(r.product_id, r.category_id, r.brand, r.title, r.attributes, r.ex, r.l)
                   WITH ORDINALITY s(product_id, score, n)
), want AS (
    SELECT r.product_id AS src, r.l, s.n, s.product_id, s.score
      FROM runs r, pg_temp.similar_all(r.product_id, r.category_id, r.brand, r.title, r.attributes, r.ex, r.l)
                   WITH ORDINALITY s(product_id, score, n)
)
SELECT (SELECT count(*) FROM want) AS rows,
       (SELECT count(*) FROM want w JOIN want v ON v.src = w.src AND v.l = w.l AND v.n = w.n + 1
         WHERE v.score = w.score) AS ties,
       (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) d) AS extra,
       (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) d) AS missing;
-- _similar_candidates is C (issue 14, reco13): the same lists, scores and
-- order as its SQL body (_similar_candidates_sql) on the same catalog,
-- with products without a brand or a category, archived and draft ones,
-- products on both lists, several lim and exclusions (ids in both lists,
-- absent ones), and the arguments the C leaves to the SQL (NULL brand,
-- category, attributes, exclude; lim 0): every row equal, in order
INSERT INTO shop.product (product_id, sku, title, brand, category_id, price_cents, attributes, popularity, status)
SELECT 1500 + i, 'SIMN' || i, 'Gadget ' || (i % 3),
       CASE WHEN i % 4 <> 0 THEN 'Acme' END, CASE WHEN i % 5 <> 0 THEN :laptops END, 100,
       CASE WHEN i % 2 = 0 THEN '{"color": "grey"}' ELSE '{"ram": 16}' END::jsonb,
       (i % 9) * 0.5, CASE i % 11 WHEN 0 THEN 'archived' WHEN 1 THEN 'draft' ELSE 'active' END
  FROM generate_series(1, 60) i;
WITH runs AS (
    SELECT p.product_id, p.category_id, p.brand, p.title, p.attributes, l, ex
      FROM shop.product p, unnest(ARRAY[1, 4, 10, 30, 200, 1000]) l, unnest(ARRAY[1, 2]) k,
           LATERAL (SELECT CASE WHEN k = 1 THEN '{}'::bigint[]
                                ELSE ARRAY[1003::bigint, 1006, 1012, 1030, 1502, 1503, 99999] END AS ex) x
     WHERE (p.product_id BETWEEN 1001 AND 1400 AND p.product_id % 13 IN (0, 5))
        OR p.product_id BETWEEN 1501 AND 1560
), runs2 AS (
    SELECT * FROM runs
    UNION ALL
    -- what the C leaves to the SQL
    SELECT 1002, NULL, 'Acme', 'Widget 2', '{}', 10, '{}'
    UNION ALL SELECT 1002, 2, NULL, 'Widget 2', NULL, 10, '{}'
    UNION ALL SELECT 1002, 2, 'Acme', 'Widget 2', '{}', 10, NULL
    UNION ALL SELECT 1002, 2, 'Acme', 'Widget 2', '{}', 10, '{NULL}'
    UNION ALL SELECT 1002, 2, 'Acme', 'Widget 2', '{}', 0, '{}'
), got AS (
    SELECT r.product_id AS src, r.l, r.ex, s.n, s.product_id, s.score
      FROM runs2 r, shop._similar_candidates(r.product_id, r.category_id, r.brand, r.title, r.attributes, r.ex, r.l)
                    WITH ORDINALITY s(product_id, score, n)
), want AS (
    SELECT r.product_id AS src, r.l, r.ex, s.n, s.product_id, s.score
      FROM runs2 r, shop._similar_candidates_sql(r.product_id, r.category_id, r.brand, r.title, r.attributes, r.ex, r.l)
                    WITH ORDINALITY s(product_id, score, n)
)
SELECT (SELECT count(*) FROM want) > 10000 AS many_rows,
       (SELECT count(DISTINCT (src, l, ex)) FROM want) AS lists,
       (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) d) AS extra,
       (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) d) AS missing;
-- the title trigrams a backend keeps (shop.similar_title_cache, issue 14,
-- rec8) serve only the title they were made from: after half of the
-- products are renamed, the C lists (whose candidates' trigrams were kept
-- by the calls above) are still the SQL body's, and so they are with the
-- cache emptied every few calls (5 entries) and off (0)
CREATE TEMP VIEW sim_diff AS
WITH runs AS (
    SELECT p.product_id, p.category_id, p.brand, p.title, p.attributes, l
      FROM shop.product p, unnest(ARRAY[3, 10]) l
     WHERE p.product_id BETWEEN 1001 AND 1400 AND p.product_id % 13 IN (0, 5)
), got AS (
    SELECT r.product_id AS src, r.l, s.n, s.product_id, s.score
      FROM runs r, shop._similar_candidates(r.product_id, r.category_id, r.brand, r.title, r.attributes, '{}', r.l)
                   WITH ORDINALITY s(product_id, score, n)
), want AS (
    SELECT r.product_id AS src, r.l, s.n, s.product_id, s.score
      FROM runs r, shop._similar_candidates_sql(r.product_id, r.category_id, r.brand, r.title, r.attributes, '{}', r.l)
                   WITH ORDINALITY s(product_id, score, n)
)
SELECT (SELECT count(*) FROM want) AS rows,
       (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) d) AS extra,
       (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) d) AS missing;
SELECT * FROM sim_diff;
UPDATE shop.product SET title = 'Gizmo ' || (product_id % 7) || ' widget'
 WHERE product_id BETWEEN 1001 AND 1400 AND product_id % 2 = 0;
SELECT * FROM sim_diff;
SET shop.similar_title_cache = 5;
SELECT * FROM sim_diff;
SET shop.similar_title_cache = 0;
SELECT * FROM sim_diff;
RESET shop.similar_title_cache;
ROLLBACK;
-- a product with a short co-purchase list (the laptop: mouse, stick; the
-- bag is archived) is filled from similar products, scored below the list
SELECT a.product_id, c.other_id IS NOT NULL AS copurchase,
       a.score < min(c.score) OVER () AS below_copurchase
  FROM shop.also_bought(1, 5) a
  LEFT JOIN shop.copurchase c ON c.product_id = 1 AND c.other_id = a.product_id;

-- views, recently viewed and the cap
SET shop.recent_views_cap = 3;
SELECT count(*) AS views FROM (SELECT shop.view(42, p) FROM unnest(ARRAY[1, 3, 4, 5]) p) v;
SELECT count(*) AS views FROM (SELECT shop.view(42, 3)) v;  -- seen again: moves to the front
SELECT product_id FROM shop.recently_viewed(42);
SELECT count(*) AS kept FROM shop.view_event WHERE customer_id = 42;
SELECT product_id FROM shop.recently_viewed(42, 1);
RESET shop.recent_views_cap;

-- personal recommendations: customer 7 bought the phone; the case comes
-- first (the charger is bought so often, by the reseller, that buying it
-- with a phone is less of a signal), never the phone again
SELECT pg_temp.buy(ARRAY[4], 7) IS NOT NULL AS bought;
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT product_id FROM shop.recommend(7, 2);
SELECT count(*) AS phone_again FROM shop.recommend(7, 20) WHERE product_id = 4;
-- views count too: customer 42 viewed the mouse, phone and case (the
-- laptop fell out of the capped history); their neighbours are proposed,
-- not the viewed products themselves
SELECT product_id FROM shop.recommend(42, 3);
-- no history at all: trending
SELECT (SELECT array_agg(product_id) FROM shop.recommend(123456, 3))
     = (SELECT array_agg(product_id) FROM shop.trending(NULL, 3)) AS falls_back_to_trending;

-- trending and popularity: the batteries were bought most (the reseller's
-- 41 orders); popularity is bounded by 1; a category includes its
-- descendants (the laptops under computers); archived (2) and never bought
-- (10) products are not trending
SELECT product_id, round(popularity::numeric, 3) AS popularity FROM shop.product WHERE popularity = (SELECT max(popularity) FROM shop.product);
SELECT bool_and(popularity BETWEEN 0 AND 1) AS bounded FROM shop.product;
SELECT product_id FROM shop.trending(NULL, 3);
SELECT product_id FROM shop.trending(:computers, 10) ORDER BY product_id;
SELECT product_id FROM shop.trending(:phones, 2);
-- recent purchases outweigh old ones: 30 mouse orders from 60 days ago
-- (8.6 half-lives) do not make the mouse trend
SELECT count(pg_temp.buy(ARRAY[3], at => now() - interval '60 days')) AS orders FROM generate_series(1, 30);
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT product_id FROM shop.trending(NULL, 1);
SELECT count(pg_temp.buy(ARRAY[3])) AS orders FROM generate_series(1, 60);
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT product_id FROM shop.trending(NULL, 1);

-- _also_bought_list is C (issue 14, reco13): the rows, scores and order
-- of its PL/pgSQL body (_also_bought_list_sql), for every product and
-- several lim, on first calls (cache emptied before each side) and when
-- served from the cache the other side wrote; with a product archived
-- (rolled back)
BEGIN;
UPDATE shop.product SET status = 'archived' WHERE product_id = 3;
CREATE TEMP TABLE ab_runs AS
SELECT p.product_id, l FROM shop.product p, unnest(ARRAY[1, 2, 3, 5, 10, 40]) l;
TRUNCATE shop.also_bought_cache;
CREATE TEMP TABLE ab_c AS
SELECT r.product_id AS src, r.l, x.* FROM ab_runs r, shop._also_bought_list(r.product_id, r.l) WITH ORDINALITY x;
TRUNCATE shop.also_bought_cache;
CREATE TEMP TABLE ab_sql AS
SELECT r.product_id AS src, r.l, x.* FROM ab_runs r, shop._also_bought_list_sql(r.product_id, r.l) WITH ORDINALITY x;
CREATE TEMP TABLE ab_c_served AS
SELECT r.product_id AS src, r.l, x.* FROM ab_runs r, shop._also_bought_list(r.product_id, r.l) WITH ORDINALITY x;
SELECT (SELECT count(*) FROM ab_sql) AS rows,
       (SELECT count(*) FROM ab_sql a WHERE NOT EXISTS (SELECT 1 FROM shop.copurchase c
                                                         WHERE c.product_id = a.src AND c.other_id = a.product_id)) AS filled,
       (SELECT count(*) FROM (SELECT * FROM ab_c EXCEPT ALL SELECT * FROM ab_sql) d) AS extra,
       (SELECT count(*) FROM (SELECT * FROM ab_sql EXCEPT ALL SELECT * FROM ab_c) d) AS missing,
       (SELECT count(*) FROM (SELECT * FROM ab_c_served EXCEPT ALL SELECT * FROM ab_sql) d) AS served_extra,
       (SELECT count(*) FROM (SELECT * FROM ab_sql EXCEPT ALL SELECT * FROM ab_c_served) d) AS served_missing;
ROLLBACK;

-- bad input
SELECT pg_temp.err($$SELECT * FROM shop.also_bought(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.also_bought(99999)$$);
SELECT pg_temp.err($$SELECT * FROM shop.also_bought(1, 0)$$);
SELECT pg_temp.err($$SELECT * FROM shop.also_bought(1, 1001)$$);
SELECT pg_temp.err($$SELECT * FROM shop.similar_products(99999)$$);
SELECT pg_temp.err($$SELECT * FROM shop.similar_products(1, -1)$$);
SELECT pg_temp.err($$SELECT * FROM shop.recommend(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.recommend(1, NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.trending(99999)$$);
SELECT pg_temp.err($$SELECT * FROM shop.trending(NULL, 5000)$$);
SELECT pg_temp.err($$SELECT shop.view(NULL, 1)$$);
SELECT pg_temp.err($$SELECT shop.view(1, NULL)$$);
SELECT pg_temp.err($$SELECT shop.view(1, 99999)$$);
SELECT pg_temp.err($$SELECT * FROM shop.recently_viewed(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM shop.recently_viewed(1, 0)$$);

-- a popularity loaded with the catalog is kept until the product's own
-- events replace it
UPDATE shop.product SET popularity = 0.5 WHERE product_id = 10;
SELECT (shop.refresh_recommendations() ->> 'orders_applied') AS applied;
SELECT popularity FROM shop.product WHERE product_id = 10;

-- privileges: a storefront reads the catalog lists, and the personal ones
-- only for the customer of its session; refresh is an admin call
SET ROLE shop_storefront;
SELECT count(*) AS also_bought_rows FROM shop.also_bought(1, 3);
SELECT count(*) AS trending_rows FROM shop.trending(NULL, 3);
SELECT pg_temp.err($$SELECT * FROM shop.recommend(7)$$);
SELECT pg_temp.err($$SELECT shop.view(7, 1)$$);
SELECT pg_temp.err($$SELECT * FROM shop.recently_viewed(42)$$);
SELECT pg_temp.err($$SELECT shop.refresh_recommendations()$$);
SELECT pg_temp.err($$SELECT count(*) FROM shop.copurchase$$);
RESET ROLE;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
