-- hostile_visitor: the guest key of an experiment (visitor, of
-- shop.also_bought, shop.experiment_assign and the router's step
-- shop._experiment_choose) is the caller's text, stored in every
-- impression as the unit 'guest:<visitor>'.  It is checked as the other
-- text arguments are: at most 200 characters (22001), no control
-- characters or escape sequences (22023), no card number (SH005); before,
-- a storefront could store a unit of any length (100,000 characters of one
-- letter went in; 6,000 varied ones failed with 54000, the index row size
-- of experiment_impression_recent_unit_idx) and escape sequences
-- (docs/recommendations.md, "Experiments").
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
-- every unit lands in a variant; both show the product's neighbours
SELECT shop.experiment_create('hv', '[{"name": "a", "share": 0.5, "method": "similar"},
                                      {"name": "b", "share": 0.5, "method": "similar"}]') IS NOT NULL AS created;
SELECT count(*) > 0 AS listed FROM shop.also_bought(:p1, 3, 'hv', visitor => 'guest-cart-0');
DELETE FROM shop.experiment_impression_recent;
DELETE FROM shop.experiment_impression;

CREATE TEMP TABLE visitors (what text, visitor text);
INSERT INTO visitors VALUES
    ('a cart id', '0190a3c4-6f1e-7b2a-9c3d-4e5f60718293'),
    ('200 characters', repeat('a', 200)),
    ('201 characters', repeat('a', 201)),
    ('100,000 characters', repeat('v', 100000)),
    ('6,400 varied characters', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i)),
    ('an escape sequence', E'ab\x1b[31mc'),
    ('a line feed', E'cart\n1'),
    ('a card number', '4111111111111111');
GRANT SELECT ON visitors TO PUBLIC;

-- as the storefront of a guest (no session)
SET ROLE regress_hostile_front;
SELECT what,
       pg_temp.err(format('SELECT count(*) FROM shop.also_bought(%s, 3, %L, visitor => %L)', :p1, 'hv', visitor)) AS also_bought,
       pg_temp.err(format('SELECT shop.experiment_assign(%L, visitor => %L)', 'hv', visitor)) AS experiment_assign,
       pg_temp.err(format('SELECT shop._experiment_choose(%L, NULL, %L, false)', 'hv', visitor)) AS experiment_choose
  FROM visitors ORDER BY what;
RESET ROLE;
-- what was stored: the two good units, each once (in the buffer, or in
-- the logged table when a call moved the buffer)
CREATE TEMP VIEW impressions AS
SELECT unit, surface FROM shop.experiment_impression_recent
UNION ALL SELECT unit, surface FROM shop.experiment_impression;
SELECT length(unit) AS unit_length, surface FROM impressions ORDER BY 1;
-- a caller with a session is the session's customer: a bad visitor is
-- still refused (the argument is checked whenever it is given)
SELECT shop.session_token(501, '1 hour') AS tok \gset
SET ROLE regress_hostile_front;
SELECT shop.session_begin(:'tok') = 501 AS began;
SELECT pg_temp.err(format('SELECT count(*) FROM shop.also_bought(%s, 3, %L, visitor => %L)', :p1, 'hv', repeat('v', 201))) AS with_session;
SELECT pg_temp.err(format('SELECT count(*) FROM shop.also_bought(%s, 3, %L, visitor => %L)', :p1, 'hv', 'cart-of-501')) AS with_session_ok;
SELECT shop.session_end();
RESET ROLE;
SELECT unit, surface FROM impressions WHERE unit !~ '^guest:' ORDER BY 1;
-- without an experiment, visitor is not used, but checked when given
-- (hostile4, sql/hostile_also_bought_args; 1.0's call had no visitor)
SELECT pg_temp.err(format('SELECT count(*) FROM shop.also_bought(%s, 3, NULL, visitor => %L)', :p1, repeat('v', 201))) AS without_experiment;
SELECT count(*) > 0 AS listed FROM shop.also_bought(:p1, 3);

DROP VIEW impressions;
DROP EXTENSION shop CASCADE;
DROP ROLE regress_hostile_front;
