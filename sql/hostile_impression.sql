-- hostile_impression: the router's step shop._experiment_impress, which a
-- storefront may call, records the list shown to a unit under the
-- assignment shop._experiment_choose signed.  The signature covers the
-- experiment, variant, unit and time, not the list (the router computes
-- it after the choice), and the list was stored as given: a storefront
-- stored 3,000,000 product ids (and NULLs, and ids below 1) in one
-- impression, which every later view, cart line and order of the unit is
-- searched against (up to 1000 impressions each).  Now at most 1000 ids
-- (the largest lim of recommend and also_bought), none NULL or below 1:
-- 22023 malformed impression, nothing stored.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';

SELECT shop.category_add('Mugs') AS cat \gset
SELECT count(shop.product_upsert('MUG-' || n, 'Mug ' || n, 900 + n, brand => 'Acme', category_id => :cat)) AS products
  FROM generate_series(1, 4) n;
SELECT min(product_id) AS p1 FROM shop.product \gset
SELECT shop.experiment_create('hi', '[{"name": "a", "share": 0.5, "method": "similar"},
                                      {"name": "b", "share": 0.5, "method": "similar"}]') IS NOT NULL AS created;
CREATE TEMP TABLE lists (n int, what text, products bigint[]);
INSERT INTO lists VALUES
    (1, 'two products', ARRAY[:p1, :p1 + 1]),
    (2, 'empty', '{}'),
    (3, '1000 ids', (SELECT array_agg(g) FROM generate_series(1, 1000) g)),
    (4, '1001 ids', (SELECT array_agg(g) FROM generate_series(1, 1001) g)),
    (5, '100,000 ids', (SELECT array_agg(g) FROM generate_series(1, 100000) g)),
    (6, 'a NULL', ARRAY[:p1, NULL]),
    (7, 'zero and negative', ARRAY[0, -5]::bigint[]);
GRANT SELECT ON lists TO PUBLIC;

SET ROLE regress_hostile_front;
-- the guest's assignment, signed for the impression
SELECT * FROM shop._experiment_choose('hi', NULL, 'guest-cart-1', false) \gset c_
SELECT :'c_unit' AS unit, :'c_sig' <> '' AS signed;
SELECT n, what, pg_temp.err(format('SELECT shop._experiment_impress(%s, %s::smallint, %L, %L, %L::bigint[], %s, %L)',
                                   :c_experiment_id, :c_variant, :'c_unit', 'also_bought', products,
                                   :c_valid_until, :'c_sig')) AS impressed
  FROM lists ORDER BY n;
RESET ROLE;
-- what is stored: the two good lists with products (an empty one is not
-- stored), in the buffer or already moved out of it
SELECT unit, surface, cardinality(products) AS shown
  FROM (SELECT unit, surface, products FROM shop.experiment_impression_recent
        UNION ALL SELECT unit, surface, products FROM shop.experiment_impression) i
 ORDER BY shown;

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
