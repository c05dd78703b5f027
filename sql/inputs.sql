-- inputs: values shop refuses whichever way they come in, through the calls
-- or by plain INSERT/UPDATE/COPY: customer ids <= 0, control characters and
-- escape sequences in text, prices that could overflow a cart's total
\i sql/include/prelude.sql

-- errd(q): like err(q), with the error's detail
CREATE FUNCTION pg_temp.errd(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE d text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' / ' || nullif(d, ''), '');
END $f$;

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_inputs_front;
RESET client_min_messages;
CREATE ROLE regress_inputs_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.category_add('Mugs') AS cat \gset
SELECT shop.product_upsert('MUG-1', 'Coffee mug', 1000, category_id => :cat) AS mug \gset
SELECT shop.stock_set(:mug, 100);
SELECT shop.cart_create() AS anon \gset
SELECT shop.cart_add(:'anon', :mug);

-- 1. Customer ids are positive: 22023 naming the value, before anything
-- else is looked at, for a trusted caller and a storefront alike
SELECT regexp_replace(c, '''[0-9a-f-]{36}''', '<cart>') AS call, pg_temp.errd(c) AS result FROM unnest(ARRAY[
    'SELECT shop.cart_create(0)',
    'SELECT shop.cart_create(-1)',
    format('SELECT shop.cart_merge(%L, 0)', :'anon'),
    'SELECT * FROM shop.orders_for(0)',
    'SELECT * FROM shop.orders_for(-9223372036854775808)',
    format('SELECT shop.review_add(%s, 0, 5)', :mug),
    format('SELECT shop.review_delete(%s, -1)', :mug),
    format('SELECT shop.view(0, %s)', :mug),
    'SELECT * FROM shop.recently_viewed(-5)',
    'SELECT * FROM shop.recommend(0)',
    'SELECT * FROM shop.search(''mug'', customer_id => 0)',
    'SELECT shop.payment_method_add(0, ''tok_visa'', NULL, NULL, NULL, NULL)',
    'SELECT shop.session_token(0)',
    'SELECT shop.session_token(-42)'
]) c;
SELECT shop.session_token(501) AS tok \gset
SET ROLE regress_inputs_front;
SELECT shop.session_begin(:'tok') AS customer;
SELECT pg_temp.errd('SELECT shop.cart_create(-501)') AS storefront_negative;
SELECT pg_temp.errd('SELECT * FROM shop.orders_for(0)') AS storefront_zero;
RESET ROLE;
-- and the tables refuse them too (NULL is still an anonymous cart, a guest)
SELECT t AS statement, pg_temp.err(t) AS result FROM unnest(ARRAY[
    'INSERT INTO shop.cart (customer_id, expires_at) VALUES (0, now() + interval ''1 day'')',
    'INSERT INTO shop."order" (customer_id, currency, subtotal_cents, total_cents) VALUES (-1, ''USD'', 0, 0)',
    format('INSERT INTO shop.review (product_id, customer_id, rating) VALUES (%s, 0, 5)', :mug),
    'INSERT INTO shop.payment_method (customer_id, token) VALUES (0, ''tok_visa'')',
    format('INSERT INTO shop.view_event (customer_id, product_id) VALUES (-7, %s)', :mug),
    'INSERT INTO shop.search_log (query, sort, results, duration_ms, customer_id) VALUES (''x'', ''relevance'', 0, 1, 0)',
    'INSERT INTO shop.cart (customer_id, expires_at) VALUES (NULL, now() + interval ''1 day'')'
]) t;

-- 2. Control characters.  One-line text (sku, title, brand, category and
-- review titles, image URLs) takes none; long text (description, review
-- body) takes tab, line feed and CRLF.  The detail shows the value with the
-- control characters escaped, never raw.
SELECT label, pg_temp.errd(q) AS result FROM (VALUES
    ('ANSI colour in a title', format('SELECT shop.product_upsert(%L, %L, 100)', 'A-1', E'Red \x1b[31mmug\x1b[0m')),
    ('cursor movement in a title', format('SELECT shop.product_upsert(%L, %L, 100)', 'A-2', E'Mug\x1b[2J\x1b[H')),
    ('tab in a sku', format('SELECT shop.product_upsert(%L, %L, 100)', E'A\t3', 'Mug')),
    ('newline in a title', format('SELECT shop.product_upsert(%L, %L, 100)', 'A-4', E'Mug\nFREE SHIPPING')),
    ('carriage return in a brand', format('SELECT shop.product_upsert(%L, %L, 100, brand => %L)', 'A-5', 'Mug', E'Acme\rEvil')),
    ('DEL in a title', format('SELECT shop.product_upsert(%L, %L, 100)', 'A-6', E'Mug\x7f')),
    ('bell in a title', format('SELECT shop.product_upsert(%L, %L, 100)', 'A-7', E'Mug\x07')),
    ('C1 CSI (U+009B) in a title', format('SELECT shop.product_upsert(%L, %L, 100)', 'A-8', E'Mug \u009b31m')),
    ('C1 NEL (U+0085) in a brand', format('SELECT shop.product_upsert(%L, %L, 100, brand => %L)', 'A-9', 'Mug', E'Acme\u0085')),
    ('ESC in a description', format('SELECT shop.product_upsert(%L, %L, 100, description => %L)', 'A-10', 'Mug', E'Nice\x1b]0;owned\x07')),
    ('lone CR in a description', format('SELECT shop.product_upsert(%L, %L, 100, description => %L)', 'A-11', 'Mug', E'line one\rline two')),
    ('control character in an image URL', format('SELECT shop.product_upsert(%L, %L, 100, images => ARRAY[%L])', 'A-12', 'Mug', E'https://cdn.example.com/a\x1b.jpg')),
    ('newline in a category name', format('SELECT shop.category_add(%L)', E'Mugs\nand cups')),
    ('ESC in a review title', format('SELECT shop.review_add(%s, 501, 5, %L)', :mug, E'\x1b[1mBEST\x1b[0m')),
    ('ESC in a review body', format('SELECT shop.review_add(%s, 501, 5, %L, %L)', :mug, 'Fine', E'Good\n\x1b[8mhidden')),
    ('a long value is cut in the detail', format('SELECT shop.product_upsert(%L, %L, 100)', 'A-13', repeat('x', 70) || E'\x1b')),
    -- what stays allowed
    ('tab, newline and CRLF in a description', format('SELECT shop.product_upsert(%L, %L, 100, description => %L)', 'B-1', 'Mug', E'Size:\t350 ml\nDishwasher safe\r\nMade in Portugal')),
    ('tab and newline in a review body', format('SELECT shop.review_add(%s, 501, 5, %L, %L)', :mug, 'Fine', E'Pros:\tlight\nCons:\tnone')),
    ('letters, punctuation, NBSP, emoji', format('SELECT shop.product_upsert(%L, %L, 100, brand => %L)', 'B-2', E'Tasse \u00e0 caf\u00e9 \u2014 \u201cMokka\u201d\u00a0350 ml \u2615', E'M\u00fcller & S\u00f6hne')),
    ('a category with an ampersand', format('SELECT shop.category_add(%L)', 'Cups & saucers'))
) v(label, q);
-- a value that also holds a card number is not echoed (docs/errors.md)
SELECT pg_temp.errd(format('INSERT INTO shop.product (sku, title, price_cents) VALUES (%L, %L, 1)',
                           'C-1', E'paid with 4111 1111 1111 1111\x1b[0m')) AS card_not_echoed;
-- plain INSERT, UPDATE and COPY refuse the same values with the same error
SELECT pg_temp.errd(format('INSERT INTO shop.product (sku, title, price_cents) VALUES (%L, %L, 1)', 'D-1', E'Mug\x1b[31m')) AS by_insert;
SELECT pg_temp.errd(format('UPDATE shop.product SET title = %L WHERE product_id = %s', E'Mug\x1b[31m', :mug)) AS by_update;
SELECT pg_temp.errd(format('UPDATE shop.product SET description = %L WHERE product_id = %s', E'\x1b[2J', :mug)) AS description_by_update;
SELECT pg_temp.errd(format('UPDATE shop.category SET name = %L WHERE category_id = %s', E'Mugs\t', :cat)) AS category_by_update;
SELECT pg_temp.errd(format('UPDATE shop.review SET body = %L', E'\u009b')) AS review_by_update;
COPY shop.product (sku, title, price_cents) FROM STDIN;
D-2	Mug \033[5mblink	100
\.
SELECT count(*) AS refused_rows_stored FROM shop.product WHERE sku LIKE 'A-%' OR sku LIKE 'D-%' OR sku LIKE 'C-%';
SELECT sku, title FROM shop.product WHERE sku LIKE 'B-%' ORDER BY sku;

-- 3. Prices.  A cart holds at most 500 lines of at most 10000 units; at
-- the bound of 100000000000 cents a maximal cart's subtotal is 5 * 10^17,
-- tax (at most 100%) and shipping (at most the bound) keep the total under
-- 1.0000001 * 10^18, far from bigint's 9.2 * 10^18.
SELECT pg_temp.errd('SELECT shop.product_upsert(''BIG-0'', ''Big'', 9223372036854775807)') AS max_bigint;
-- (in 1.0 it was accepted, and a cart of two made cart_get fail with 22003)
SELECT shop.cart_create() AS bigcart \gset
SELECT pg_temp.err(format('SELECT shop.cart_add(%L, (SELECT product_id FROM shop.product WHERE sku = ''BIG-0''), 2)', :'bigcart')) AS add_two;
SELECT pg_temp.err(format('SELECT shop.cart_get(%L)', :'bigcart')) AS cart_get;
SELECT pg_temp.errd('SELECT shop.product_upsert(''BIG-1'', ''Big'', 100000000001)') AS just_above;
SELECT pg_temp.errd(format('UPDATE shop.product SET price_cents = 100000000001 WHERE product_id = %s', :mug)) AS by_update;
SELECT pg_temp.errd('INSERT INTO shop.product (sku, title, price_cents) VALUES (''BIG-2'', ''Big'', 4611686018427387904)') AS by_insert;
SELECT pg_temp.err('INSERT INTO shop.shipping_rate (country, cents) VALUES (''XX'', 100000000001)') AS shipping_above;
-- a maximal cart at the largest price, 100% tax and the largest shipping:
-- cart_get and checkout add it up without overflow
INSERT INTO shop.tax_rate (country, basis_points) VALUES ('XX', 10000);
INSERT INTO shop.shipping_rate (country, min_subtotal_cents, cents) VALUES ('XX', 0, 100000000000);
SELECT count(*) AS products
  FROM (SELECT shop.product_upsert('MAX-' || g, 'Most expensive ' || g, 100000000000) AS id
          FROM generate_series(1, 500) g) p, LATERAL shop.stock_set(p.id, 10000) s;
SELECT shop.cart_create(777) AS maxcart \gset
SELECT count(shop.cart_add(:'maxcart', p.product_id, 10000)) AS lines
  FROM shop.product p WHERE p.sku LIKE 'MAX-%';
SELECT pg_temp.err(format('SELECT shop.cart_add(%L, %s)', :'maxcart', :mug)) AS line_501;
SELECT (d->>'item_count')::bigint AS units, (d->>'subtotal_cents')::numeric AS subtotal_cents,
       (d->'lines'->0->>'line_total_cents')::bigint AS line_total_cents
  FROM shop.cart_get(:'maxcart') d;
SELECT shop.checkout(:'maxcart', 'tok_visa', 'max-1', '{"country": "XX"}') AS maxorder \gset
SELECT subtotal_cents, tax_cents, shipping_cents, total_cents FROM shop."order" WHERE order_id = :'maxorder';
-- a merge cannot grow a cart past 500 lines
SELECT shop.cart_create(778) AS full1 \gset
SELECT count(shop.cart_add(:'full1', p.product_id)) FROM shop.product p
 WHERE (p.sku LIKE 'MAX-%' AND p.product_id % 2 = 0) OR p.sku = 'MUG-1';
SELECT shop.cart_create() AS full2 \gset
SELECT count(shop.cart_add(:'full2', p.product_id)) FROM shop.product p WHERE p.sku LIKE 'MAX-%';
SELECT pg_temp.err(format('SELECT shop.cart_merge(%L, 778)', :'full2')) AS merge_past_500;
SELECT count(*) AS lines_kept FROM shop.cart_item WHERE cart_id = :'full1';

RESET shop.session_secret;
DROP ROLE regress_inputs_front;
DROP EXTENSION shop;

-- 4. An update from 1.0 over rows that break these checks stops and says
-- which; once they are corrected it goes through.
SET client_min_messages = warning;
CREATE EXTENSION shop VERSION '1.0';
RESET client_min_messages;
INSERT INTO shop.product (sku, title, price_cents) VALUES ('OLD-1', E'Old\x1b[31m', 100), ('OLD-2', 'Pricey', 100000000001);
INSERT INTO shop.cart (customer_id, expires_at) VALUES (0, now() + interval '1 day');
\set VERBOSITY default
\set SHOW_CONTEXT never
ALTER EXTENSION shop UPDATE;
\set VERBOSITY terse
SELECT extversion FROM pg_extension WHERE extname = 'shop';
UPDATE shop.product SET title = regexp_replace(title, E'[\\x01-\\x1f\\x7f]', '', 'g') WHERE sku = 'OLD-1';
UPDATE shop.product SET price_cents = 100000000000 WHERE sku = 'OLD-2';
UPDATE shop.cart SET customer_id = NULL WHERE customer_id <= 0;
ALTER EXTENSION shop UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'shop';
SELECT sku, title, price_cents FROM shop.product ORDER BY sku;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
