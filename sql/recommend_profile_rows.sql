-- recommend_profile_rows: the refresh's new profiles, read through the
-- indexes in C (shop._like_profile_rows, src/recoprofile.c), are the rows
-- of shop._like_profile, to the bit: counted orders only, a view and a
-- purchase of one product, ties in recency (the lines of one order, a
-- view at an order's time), the shop.reco_like_items cut, customers with
-- views only or nothing; and a refresh through them leaves the tables a
-- refresh through the SQL leaves (issues 11, 14)
\i sql/include/prelude.sql

SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 60) i;
\i sql/include/buy.sql

-- customers 1-40: orders of every status, at times that tie (several
-- lines per order, orders of one customer at the same instant), views,
-- some at an order's time; 41: views only; 42: a cancelled order only;
-- guests
SELECT count(pg_temp.buy(ARRAY(SELECT DISTINCT 1 + (i * 7 + j * (1 + i % 5)) % 60
                                 FROM generate_series(0, i % 6) j),
                         CASE WHEN i % 9 = 0 THEN NULL ELSE 1 + i % 40 END,
                         (ARRAY['paid', 'fulfilling', 'shipped', 'delivered', 'pending', 'cancelled',
                                'paid', 'refunded'])[1 + i % 8],
                         timestamptz '2026-01-01' + (i % 13) * interval '1 hour'))
       AS orders
  FROM generate_series(1, 400) i;
INSERT INTO shop.view_event (customer_id, product_id, viewed_at)
SELECT DISTINCT ON (c, p, t) c, p, t
  FROM (SELECT 1 + i % 41 AS c, 1 + (i * 11) % 60 AS p,
               timestamptz '2026-01-01' + (i % 17) * interval '1 hour' AS t
          FROM generate_series(1, 500) i) x;
SELECT pg_temp.buy(ARRAY[1, 2]::bigint[], 42, 'cancelled') IS NOT NULL AS cancelled_order;

CREATE FUNCTION pg_temp.diff(cs bigint[], OUT c_rows bigint, OUT sql_rows bigint,
                             OUT c_only bigint, OUT sql_only bigint)
LANGUAGE plpgsql AS $f$
BEGIN
    CREATE TEMP TABLE c_rows AS
    SELECT u.* FROM shop._like_profile_rows(cs) x, unnest(x.c, x.p, x.w, x.h) u(customer_id, product_id, weight, h);
    CREATE TEMP TABLE s_rows AS SELECT * FROM shop._like_profile(cs);
    SELECT count(*) INTO c_rows FROM c_rows;
    SELECT count(*) INTO sql_rows FROM s_rows;
    SELECT count(*) INTO c_only FROM (SELECT * FROM c_rows EXCEPT ALL SELECT * FROM s_rows) x;
    SELECT count(*) INTO sql_only FROM (SELECT * FROM s_rows EXCEPT ALL SELECT * FROM c_rows) x;
    DROP TABLE c_rows, s_rows;
END $f$;

-- every customer, some twice, a null, one unknown
SELECT * FROM pg_temp.diff(ARRAY(SELECT generate_series(1, 45)) || ARRAY[3, 7, NULL, 1000]::bigint[]);
-- the arrays come in (customer_id, product_id) order
SELECT bool_and(ok) AS ordered
  FROM (SELECT (u.c, u.p) > lag((u.c, u.p)) OVER (ORDER BY n) OR n = 1 AS ok
          FROM shop._like_profile_rows(ARRAY(SELECT generate_series(40, 1, -1))) x,
               unnest(x.c, x.p) WITH ORDINALITY u(c, p, n)) y;
-- short profiles: the cut by recency, ties by product id
SET shop.reco_like_items = 3;
SELECT * FROM pg_temp.diff(ARRAY(SELECT generate_series(1, 45)));
SET shop.reco_like_items = 1;
SELECT * FROM pg_temp.diff(ARRAY(SELECT generate_series(1, 45)));
RESET shop.reco_like_items;
-- none
SELECT cardinality(x.c) AS no_customers, cardinality(x.w) AS no_weights
  FROM shop._like_profile_rows('{}') x;
SELECT x IS NULL AS null_in_null_out FROM shop._like_profile_rows(NULL) x;

-- an index not as shop made it: NULL, and the refresh takes the SQL
ALTER INDEX shop.view_event_pkey RENAME TO view_event_pkey_renamed;
SELECT x.c IS NULL AS falls_back FROM shop._like_profile_rows(ARRAY[1, 2]::bigint[]) x;
ALTER INDEX shop.view_event_pkey_renamed RENAME TO view_event_pkey;

-- a refresh through the C rows and one through the SQL (the index
-- renamed: _like_profile_rows says NULL) leave the same tables
SELECT shop.rebuild_recommendations() ->> 'orders' AS rebuilt_orders;
SELECT count(pg_temp.buy(ARRAY[1 + i % 60, 1 + (i * 3) % 60]::bigint[], 1 + i % 40, 'paid',
                         timestamptz '2026-02-01' + (i % 5) * interval '1 hour'))
       AS more_orders
  FROM generate_series(1, 60) i;
INSERT INTO shop.view_event (customer_id, product_id, viewed_at)
SELECT 1 + i % 30, 1 + (i * 13) % 60, timestamptz '2026-02-01' + i * interval '1 minute'
  FROM generate_series(1, 40) i;
CREATE FUNCTION pg_temp.refreshed(OUT cp text, OUT nb text, OUT ci text) LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM shop.refresh_recommendations();
    SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) INTO cp FROM shop.copurchase x;
    SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) INTO nb FROM shop.customer_neighbour x;
    SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) INTO ci FROM shop.customer_item x;
    RAISE SQLSTATE 'P0001' USING MESSAGE = 'roll back';
EXCEPTION WHEN SQLSTATE 'P0001' THEN
    RETURN;
END $f$;
CREATE TEMP TABLE through_c AS SELECT * FROM pg_temp.refreshed();
ALTER INDEX shop.view_event_pkey RENAME TO view_event_pkey_renamed;
CREATE TEMP TABLE through_sql AS SELECT * FROM pg_temp.refreshed();
ALTER INDEX shop.view_event_pkey_renamed RENAME TO view_event_pkey;
SELECT (SELECT count(*) FROM (SELECT * FROM through_c EXCEPT SELECT * FROM through_sql) x) AS differ,
       (SELECT count(*) FROM through_c WHERE ci IS NOT NULL) AS compared;
-- the refresh profiled customers (it was not a no-op), through the C
-- rows and without shop._like_profile's statement (whose generic plan,
-- which a session's plan cache takes from its sixth call, scans every
-- order against the array of customers)
SET track_functions = 'all';
BEGIN;
SELECT (shop.refresh_recommendations() ->> 'customers_profiled')::int > 20 AS profiled;
SELECT f.funcname, f.calls FROM pg_stat_xact_user_functions f
 WHERE f.schemaname = 'shop' AND f.funcname IN ('_like_profile', '_like_profile_rows')
 ORDER BY f.funcname;
COMMIT;
RESET track_functions;
SELECT count(*) AS stale_profile_rows
  FROM (SELECT * FROM shop.customer_item EXCEPT ALL SELECT * FROM shop._like_profile(NULL)) x;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
