-- experiments: named A/B experiments on recommend and also_bought
-- (docs/recommendations.md, "Experiments"): stable assignment by the
-- documented hash, one impression per list, attribution of views,
-- add-to-carts and purchases within the window, the report's statistics
-- (a simulated experiment with a known effect is found; 200 simulated
-- A/A experiments give about alpha false positives), and the roles
\i sql/include/prelude.sql

-- the background sweeper folds the log too (shop.sweep); hold the refresh
-- lock for the whole session so that only this script's calls fold it
SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_exp_front, regress_exp_office;
RESET client_min_messages;
CREATE ROLE regress_exp_front LOGIN IN ROLE shop_storefront;
CREATE ROLE regress_exp_office LOGIN IN ROLE shop_admin;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
-- impressions are written to an unlogged buffer first and moved to
-- shop.experiment_impression now and then: the test reads both
-- (every 200th list on average moves the buffer: random() decides, seeded
-- here so that the counts below are the same every run)
SELECT setseed(0.25);
CREATE TEMP VIEW impressions AS
SELECT * FROM shop.experiment_impression UNION ALL SELECT * FROM shop.experiment_impression_recent;

-- products 1..9 (recommend.sql's basket set, so lists are not empty)
SELECT shop.category_add('Computers') AS computers \gset
INSERT INTO shop.product (product_id, sku, title, brand, category_id, price_cents) VALUES
    (1, 'LAPTOP', 'Laptop 14 inch', 'Acme', :computers, 90000),
    (2, 'BAG', 'Laptop bag', 'Carry', :computers, 4000),
    (3, 'MOUSE', 'Wireless mouse', 'Acme', :computers, 2500),
    (4, 'PHONE', 'Smartphone', 'Fone', :computers, 60000),
    (5, 'CASE', 'Smartphone case', 'Fone', :computers, 1500),
    (6, 'CHARGER', 'Phone charger', 'Fone', :computers, 2000),
    (7, 'STICK', 'USB stick', 'Acme', :computers, 900),
    (8, 'BATTERY', 'Batteries', 'Power', :computers, 500),
    (9, 'LAPTOP2', 'Laptop 15 inch', 'Acme', :computers, 99000);

-- a paid order of the given products (a customer's, or a guest's cart's)
\i sql/include/buy.sql
SELECT count(pg_temp.buy(ARRAY[1, 2, 7], price => 1000)) FROM generate_series(1, 4);
SELECT count(pg_temp.buy(ARRAY[1, 3, 7], price => 1000)) FROM generate_series(1, 3);
SELECT count(pg_temp.buy(ARRAY[4, 5, 7], price => 1000)) FROM generate_series(1, 4);
SELECT count(pg_temp.buy(ARRAY[8, 7], price => 1000)) FROM generate_series(1, 6);
SELECT shop.refresh_recommendations() ->> 'orders_applied' AS applied;

-- The assignment hash: the first 32 bits of SHA-256 of '<name>:<unit>'
-- modulo 10,000 (the example of docs/recommendations.md), recomputed here
-- from the digest; it splits units evenly.
SELECT shop.experiment_bucket('reco-2026-12', '12748') AS bucket,
       ('x' || left(encode(sha256('reco-2026-12:12748'), 'hex'), 8))::bit(32)::bigint % 10000 AS by_hand;
SELECT count(*) FILTER (WHERE shop.experiment_bucket('even', g::text) < 5000) BETWEEN 4850 AND 5150 AS half,
       count(*) FILTER (WHERE shop.experiment_bucket('even', g::text) < 1000) BETWEEN 920 AND 1080 AS tenth,
       min(shop.experiment_bucket('even', g::text)) >= 0 AND max(shop.experiment_bucket('even', g::text)) < 10000 AS in_range
  FROM generate_series(1, 10000) g;

-- Creating experiments: the variants' buckets follow their shares; the
-- first variant is the control.
SELECT shop.experiment_create('ab', '[{"name": "control", "share": 0.5},
                                      {"name": "popular", "share": 0.5, "method": "popularity"}]');
SELECT shop.experiment_create('partial', '[{"name": "a", "share": 0.1}, {"name": "b", "share": 0.1}]',
                              attribution_window => '2 hours') -> 'variants' AS variants;
SELECT pg_temp.err($$SELECT shop.experiment_create('ab', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.6}, {"name": "b", "share": 0.5}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 1}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "method": "magic"}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.5}, {"name": "b", "share": "half"}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]', '1 year')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create(E'x\ny', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create(NULL, '[]')$$);
SELECT pg_temp.err($$SELECT * FROM shop.recommend(1, 3, 'no such experiment')$$);
SELECT count(*) AS experiments FROM shop.experiment;

-- Assignment is by customer: a function of the experiment's name and the
-- customer id only, so the same in every session, on every server
-- (customers whose bucket is below 5000 are in the control).
SELECT c, shop.experiment_bucket('ab', c::text) AS bucket, (shop.experiment_assign('ab', c)).variant
  FROM generate_series(501, 506) c ORDER BY c;
-- outside every share: no variant, the default list, nothing recorded
SELECT c, shop.experiment_bucket('partial', c::text) AS bucket, (shop.experiment_assign('partial', c)).variant
  FROM generate_series(501, 506) c ORDER BY c;
SELECT count(*) AS rows FROM shop.recommend(501, 3, 'partial');
SELECT count(*) AS impressions FROM pg_temp.impressions;

-- The storefront of customer 501 (control) and 504 (popular): the lists
-- follow the variant, one impression per list.
SELECT shop.session_token(501, '1 hour') AS tok501 \gset
SELECT shop.session_token(504, '1 hour') AS tok504 \gset
SELECT pg_temp.buy(ARRAY[1], 501, price => 1000) IS NOT NULL AS bought;
SELECT shop.refresh_recommendations() ->> 'orders_applied' AS applied;
SET ROLE regress_exp_front;
SELECT shop.session_begin(:'tok501') AS customer;
SELECT product_id, round(score::numeric, 4) AS score FROM shop.recommend(501, 3);
SELECT product_id, round(score::numeric, 4) AS score FROM shop.recommend(501, 3, 'ab');
SELECT pg_temp.err($$SELECT * FROM shop.recommend(504, 3, 'ab')$$) AS other_customer;
SELECT * FROM shop.also_bought(1, 3, 'ab');
SELECT shop.session_begin(:'tok504') AS customer;
SELECT product_id FROM shop.recommend(504, 3, 'ab');
SELECT product_id FROM shop.trending(lim => 3);
SELECT product_id FROM shop.also_bought(1, 2, 'ab');   -- (3rd place is a tie)
SELECT pg_temp.err($$SELECT count(*) FROM shop.experiment_impression$$) AS read_impressions;
SELECT pg_temp.err($$SELECT * FROM shop.experiment_report('ab')$$) AS report;
SELECT pg_temp.err($$SELECT shop.experiment_stop('ab')$$) AS stop;
SELECT pg_temp.err($$SELECT shop.experiment_create('x', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]')$$) AS create;
SELECT shop.session_end();
RESET ROLE;
SELECT i.unit, v.name AS variant, i.surface, i.products
  FROM pg_temp.impressions i JOIN shop.experiment_variant v USING (experiment_id, variant)
 ORDER BY i.shown_at;

-- Attribution, as the storefront: a view, an add-to-cart and a purchase
-- of a listed product go to the impression that listed it; a product
-- that was not listed is not attributed.
SET ROLE regress_exp_front;
SELECT shop.session_begin(:'tok504') AS customer;
SELECT shop.view(504, 8);                  -- listed (popular)
SELECT shop.view(504, 9);                  -- not listed
SELECT shop.cart_create(504) AS cart504 \gset
RESET ROLE;
SELECT count(shop.stock_set(p, 10)) AS stocked FROM generate_series(1, 9) p;
SET ROLE regress_exp_front;
SELECT shop.cart_add(:'cart504', 8);       -- listed
SELECT shop.cart_add(:'cart504', 9);       -- not listed
SELECT shop.checkout(:'cart504', 'tok_visa', 'exp-504') AS order504 \gset
SELECT shop.session_end();
RESET ROLE;
SELECT status FROM shop."order" WHERE order_id = :'order504';
SELECT v.name AS variant, i.surface, o.kind, o.product_id, o.revenue_cents
  FROM shop.experiment_outcome o
  JOIN pg_temp.impressions i USING (impression_id)
  JOIN shop.experiment_variant v ON v.experiment_id = o.experiment_id AND v.variant = o.variant
 ORDER BY o.kind, o.product_id, i.surface;

-- A guest, by its cart id: also_bought with visitor, then the guest adds
-- to that cart and checks out as a guest.
-- (a fixed cart id, so that the guest's variant is the same every run)
SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' AS guest_cart \gset
INSERT INTO shop.cart (cart_id, expires_at) VALUES (:'guest_cart', now() + interval '1 day');
SET ROLE regress_exp_front;
SELECT count(*) AS listed FROM shop.also_bought(1, 3, 'ab', visitor => :'guest_cart');
SELECT pg_temp.err($$SELECT * FROM shop.also_bought(1, 3, 'ab', 502)$$) AS other_customer;
RESET ROLE;
SELECT (shop.experiment_assign('ab', visitor => :'guest_cart')).variant = v.name AS same_variant,
       shop.experiment_bucket('ab', 'guest:' || :'guest_cart') BETWEEN v.bucket_lo AND v.bucket_hi - 1 AS by_hash
  FROM pg_temp.impressions i JOIN shop.experiment_variant v USING (experiment_id, variant)
 WHERE i.unit = 'guest:' || :'guest_cart';
SELECT products[1] AS guest_pick FROM pg_temp.impressions WHERE unit = 'guest:' || :'guest_cart' \gset
SET ROLE regress_exp_front;
SELECT shop.cart_add(:'guest_cart', :guest_pick);
RESET ROLE;
SELECT pg_temp.buy(ARRAY[:guest_pick]::bigint[], NULL, price => 1000, cart => :'guest_cart') IS NOT NULL AS guest_bought;
SELECT o.kind, o.product_id = :guest_pick AS listed_product
  FROM shop.experiment_outcome o JOIN pg_temp.impressions i USING (impression_id)
 WHERE i.unit = 'guest:' || :'guest_cart' ORDER BY o.kind;

-- The buffer: a move keeps every impression and its outcomes; lists
-- shown when the oldest buffered one is over a minute old move them.
SELECT count(*) AS buffered, (SELECT count(*) FROM shop.experiment_impression) AS moved
  FROM shop.experiment_impression_recent;
SELECT count(*) AS attributed FROM shop.experiment_outcome o JOIN pg_temp.impressions i USING (impression_id);
SELECT shop._experiment_flush() AS flushed;
SELECT count(*) AS buffered, (SELECT count(*) FROM shop.experiment_impression) AS moved
  FROM shop.experiment_impression_recent;
SELECT count(*) AS attributed FROM shop.experiment_outcome o JOIN pg_temp.impressions i USING (impression_id);
SELECT count(*) AS listed FROM shop.recommend(501, 3, 'ab');
UPDATE shop.experiment_impression_recent SET shown_at = shown_at - interval '61 seconds';
-- (one list in 20 looks at the buffer's age)
SELECT count(*) AS listed FROM generate_series(1, 100) g, LATERAL shop.recommend(501 + 0 * g, 3, 'ab');
SELECT count(*) AS buffered, (SELECT count(*) FROM shop.experiment_impression) AS moved
  FROM shop.experiment_impression_recent;

-- The window: an impression older than the experiment's attribution
-- window gets nothing; a cancelled order leaves the report.
UPDATE shop.experiment_impression SET shown_at = shown_at - interval '2 days' WHERE unit = '501';
UPDATE shop.experiment_impression_recent SET shown_at = shown_at - interval '2 days' WHERE unit = '501';
SELECT shop.view(501, products[1]) FROM pg_temp.impressions WHERE unit = '501' AND surface = 'recommend';
SELECT count(*) AS attributed_to_501 FROM shop.experiment_outcome o JOIN pg_temp.impressions i USING (impression_id)
 WHERE i.unit = '501';

-- The report is the back office's.
SET ROLE regress_exp_office;
SELECT variant, control, customers, impressions, clicks, add_to_carts, conversions, revenue_cents,
       round(revenue_per_impression::numeric, 2) AS rpi
  FROM shop.experiment_report('ab');
RESET ROLE;
UPDATE shop."order" SET status = 'cancelled' WHERE order_id = :'order504';
SET ROLE regress_exp_office;
SELECT variant, conversions, revenue_cents FROM shop.experiment_report('ab');
SELECT pg_temp.err($$SELECT * FROM shop.experiment_report('ab', 0.7)$$) AS bad_alpha;
SELECT pg_temp.err($$SELECT * FROM shop.experiment_report('nope')$$) AS unknown;
-- stopping: the default list again, nothing more recorded
SELECT shop.experiment_stop('ab') IS NOT NULL AS stopped;
RESET ROLE;
SELECT count(*) AS impressions_before FROM pg_temp.impressions \gset
SELECT (SELECT array_agg(product_id) FROM shop.recommend(504, 3, 'ab')) =
       (SELECT array_agg(product_id) FROM shop.recommend(504, 3)) AS default_list;
SELECT count(*) - :impressions_before AS new_impressions FROM pg_temp.impressions;
SELECT (shop.experiment_assign('ab', 504)).variant;

-- A simulated experiment with a known effect.  1,000 new customers are
-- each shown recommend's list; the control's lists are bought from with
-- probability 0.10, the treatment's with 0.20 (by construction); both
-- are viewed with probability 0.3.  The report must find the conversion
-- effect and put each true rate inside its 95% interval.
SELECT shop.experiment_create('sim', '[{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5}]') IS NOT NULL AS created;
SELECT setseed(0.3);
CREATE TEMP TABLE shown AS
SELECT c, variant, products, random() AS r_view, random() AS r_buy
  FROM (SELECT c, (shop.experiment_assign('sim', c)).variant,
               (SELECT array_agg(r.product_id) FROM shop.recommend(c, 3, 'sim') r) AS products
          FROM generate_series(200001, 201000) c) x;
SELECT count(shop.view(c, products[1])) AS views FROM shown WHERE r_view < 0.3;
SELECT count(pg_temp.buy(products[1:1], c, price => 2000)) AS orders
  FROM shown WHERE r_buy < CASE variant WHEN 'treatment' THEN 0.20 ELSE 0.10 END;
SELECT variant, impressions BETWEEN 400 AND 600 AS about_half,
       conversion_p < 0.001 AS conversion_p_tiny, conversion_significant, revenue_significant,
       click_through_significant
  FROM shop.experiment_report('sim');
-- the true rates lie inside the 99.9% intervals
SELECT variant,
       conversion_low < CASE variant WHEN 'control' THEN 0.10 ELSE 0.20 END
         AND conversion_high > CASE variant WHEN 'control' THEN 0.10 ELSE 0.20 END AS true_conversion_inside,
       click_through_low < 0.3 AND click_through_high > 0.3 AS true_ctr_inside,
       revenue_per_impression_low < CASE variant WHEN 'control' THEN 200 ELSE 400 END
         AND revenue_per_impression_high > CASE variant WHEN 'control' THEN 200 ELSE 400 END AS true_rpi_inside
  FROM shop.experiment_report('sim', alpha => 0.001);

-- 200 simulated A/A experiments (both variants identical: 10% of
-- impressions convert with a revenue drawn from one distribution, 20%
-- click): at alpha 0.05 the tests must call about 10 of them significant.
-- Binomial(200, 0.05) lies in 2..20 with probability 0.998.
SELECT pg_temp.buy(ARRAY[1], price => 1000) AS sim_order \gset
SELECT count(shop.experiment_create('aa-' || s, '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]')) AS created
  FROM generate_series(1, 200) s;
SELECT setseed(0.5);
INSERT INTO shop.experiment_impression (experiment_id, variant, unit, surface, products)
SELECT e.experiment_id, CASE WHEN shop.experiment_bucket(e.name, u::text) < 5000 THEN 0 ELSE 1 END,
       u::text, 'recommend', '{1}'
  FROM shop.experiment e, generate_series(1, 400) u
 WHERE e.name LIKE 'aa-%';
INSERT INTO shop.experiment_outcome (impression_id, experiment_id, variant, kind, product_id, order_id, revenue_cents)
SELECT i.impression_id, i.experiment_id, i.variant, o.kind, 1,
       CASE WHEN o.kind = 'purchase' THEN :'sim_order'::uuid END,
       CASE WHEN o.kind = 'purchase' THEN round(1000 * -ln(1 - random())) ELSE 0 END
  -- (in a fixed order, so that the seeded draws fall the same every run)
  FROM (SELECT i.impression_id, i.experiment_id, i.variant
          FROM shop.experiment_impression i
          JOIN shop.experiment e ON e.experiment_id = i.experiment_id AND e.name LIKE 'aa-%'
         ORDER BY i.experiment_id, i.unit OFFSET 0) i
  CROSS JOIN LATERAL (SELECT 'view' AS kind WHERE random() < 0.2 AND i.impression_id IS NOT NULL
                      UNION ALL
                      SELECT 'purchase' WHERE random() < 0.1 AND i.impression_id IS NOT NULL) o;
SELECT count(*) FILTER (WHERE r.click_through_significant) AS click_through_positives,
       count(*) FILTER (WHERE r.conversion_significant) AS conversion_positives,
       count(*) FILTER (WHERE r.revenue_significant) AS revenue_positives
  FROM generate_series(1, 200) s, shop.experiment_report('aa-' || s) r
 WHERE NOT r.control;
SELECT count(*) FILTER (WHERE r.click_through_significant) BETWEEN 2 AND 20 AS click_through_fp_ok,
       count(*) FILTER (WHERE r.conversion_significant) BETWEEN 2 AND 20 AS conversion_fp_ok,
       count(*) FILTER (WHERE r.revenue_significant) BETWEEN 2 AND 20 AS revenue_fp_ok,
       count(*) AS comparisons
  FROM generate_series(1, 200) s, shop.experiment_report('aa-' || s) r
 WHERE NOT r.control;

-- The distributions behind the tests, against textbook values.
SELECT round(shop._stat_quantile(0.05, NULL)::numeric, 4) AS z_975,
       round(shop._stat_quantile(0.05, 5)::numeric, 4) AS t5_975,
       round(shop._stat_tail(2.0, 10)::numeric, 4) AS p_t10,
       round(shop._stat_tail(3.0, 1)::numeric, 4) AS p_t1,
       round(shop._stat_tail(1.0, NULL)::numeric, 4) AS p_z1;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP VIEW pg_temp.impressions;
RESET shop.session_secret;
DROP ROLE regress_exp_front, regress_exp_office;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
