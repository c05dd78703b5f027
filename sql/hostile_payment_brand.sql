-- hostile_payment_brand: a saved payment method's brand is shown on the
-- customer's account page and to the back office, and the storefront
-- names it (shop.payment_method_add(.., brand, ..)).  It was the one text
-- the storefront writes that took control characters and escape
-- sequences (docs/security.md, promise 4): now a table constraint, 22023
-- as for the other names, from the call and from a plain INSERT alike.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.session_token(501, '1 hour') AS tok501 \gset

SET ROLE regress_hostile_front;
SELECT shop.session_begin(:'tok501') = 501 AS began;
SELECT b AS brand, pg_temp.err(format('SELECT shop.payment_method_add(501, %L, %L, %L, 12, 2030)', 'tok_visa', b, '4242')) AS added
  FROM unnest(ARRAY['visa', E'vi\x1b[2Jsa', E'visa\n', E'vi\u0085sa', 'Visa Électron']) WITH ORDINALITY u(b, n)
 ORDER BY n;
SELECT shop.session_end();
RESET ROLE;
SELECT pg_temp.err($$INSERT INTO shop.payment_method (customer_id, token, brand, last4, exp_month, exp_year)
                     VALUES (502, 'tok_mastercard', E'master\x07card', '4444', 1, 2031)$$) AS plain_insert;
-- what is stored: the last good brand (the token's row is updated in place)
SELECT customer_id, brand FROM shop.payment_method ORDER BY 1, 2;

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
