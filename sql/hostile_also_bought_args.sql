-- hostile_also_bought_args: shop.also_bought(product_id, lim, experiment,
-- customer_id, visitor) checked the unit's arguments only with an
-- experiment.  Without one, a storefront's call with customer 0, with
-- another customer's id, or with a visitor key of 100,000 characters, an
-- escape sequence or a card number went through and served the list,
-- while docs/recommendations.md says the key is checked whenever it is
-- given, and docs/security.md that a customer id below 1 is refused
-- wherever a call takes one.  Now the same checks with and without an
-- experiment: 22023 below 1, 42501 another customer, 22001, 22023, SH005
-- for the key.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.session_token(501, '1 hour') AS tok501 \gset

SELECT shop.category_add('Mugs') AS cat \gset
SELECT count(shop.product_upsert('MUG-' || n, 'Mug ' || n, 900 + n, brand => 'Acme', category_id => :cat)) AS products
  FROM generate_series(1, 4) n;
SELECT min(product_id) AS p1 FROM shop.product \gset
SELECT shop.experiment_create('hab', '[{"name": "a", "share": 0.5, "method": "similar"},
                                       {"name": "b", "share": 0.5, "method": "similar"}]') IS NOT NULL AS created;
CREATE TEMP TABLE args (n int, what text, customer_id bigint, visitor text);
INSERT INTO args VALUES
    (1, 'none', NULL, NULL),
    (2, 'its customer', 501, NULL),
    (3, 'a guest key', NULL, 'guest-cart-1'),
    (4, 'customer 0', 0, NULL),
    (5, 'another customer', 502, NULL),
    (6, '100,000 characters', NULL, repeat('v', 100000)),
    (7, 'an escape sequence', NULL, E'v\x1b[2J'),
    (8, 'a card number', NULL, '4111 1111 1111 1111');
GRANT SELECT ON args TO PUBLIC;

SET ROLE regress_hostile_front;
SELECT shop.session_begin(:'tok501') = 501 AS began;
SELECT n, what,
       pg_temp.err(format('SELECT count(*) FROM shop.also_bought(%s, 3, NULL, %L, %L)', :p1, customer_id, visitor)) AS without,
       pg_temp.err(format('SELECT count(*) FROM shop.also_bought(%s, 3, %L, %L, %L)', :p1, 'hab', customer_id, visitor)) AS with_experiment
  FROM args ORDER BY n;
SELECT shop.session_end();
RESET ROLE;

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
