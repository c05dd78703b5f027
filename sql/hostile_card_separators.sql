-- hostile_card_separators: a card number written with separators other
-- than spaces, dashes and dots went through.  shop.contains_card_number()
-- answered false for '4111/1111/1111/1111' and for the same with _ , + :
-- * | ~ # ( × (multiplication sign) • (bullet) or four spaces between the
-- groups, and for '0.4111 1111 1111 1111' (the decimal rule took the whole
-- window after '0.'); so a storefront's review_add stored such a body,
-- event_claim created a consumer group of that name, experiment_create an
-- experiment, and the server log hook left them unmasked (sql/server_log).
-- Now any run of up to eight punctuation or space characters stands between
-- two groups, and the decimal rule exempts only the one group after the
-- point (docs/security.md, "What counts as a card number").  Dates, times,
-- prices, versions, addresses, phone numbers, barcodes, ISBNs, model
-- numbers and decimals stay accepted.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_card6_front;
DROP ROLE IF EXISTS regress_card6_admin;
RESET client_min_messages;
CREATE ROLE regress_card6_front LOGIN IN ROLE shop_storefront;
CREATE ROLE regress_card6_admin LOGIN IN ROLE shop_admin;
SELECT shop.product_upsert('MUG-1', 'Mug', 900) AS mug \gset

-- the hostile forms: Visa 4111 1111 1111 1111, Mastercard 5555 5555 5555
-- 4444 and Amex 3782 822463 10005 with each separator
CREATE TEMP TABLE card_forms (n int, what text, v text);
INSERT INTO card_forms VALUES
    (1, 'slash', '4111/1111/1111/1111'),
    (2, 'underscore', '4111_1111_1111_1111'),
    (3, 'comma', '4111,1111,1111,1111'),
    (4, 'plus', '4111+1111+1111+1111'),
    (5, 'colon', '5555:5555:5555:4444'),
    (6, 'asterisk', '5555*5555*5555*4444'),
    (7, 'bar', '4111|1111|1111|1111'),
    (8, 'tilde', '4111~1111~1111~1111'),
    (9, 'hash', '4111#1111#1111#1111'),
    (10, 'parentheses', '(4111)(1111)(1111)(1111)'),
    (11, 'multiplication sign', '4111×1111×1111×1111'),
    (12, 'bullet', '4111•1111•1111•1111'),
    (13, 'four spaces', '4111    1111    1111    1111'),
    (14, 'eight spaces', '4111        1111        1111        1111'),
    (15, 'after a decimal', '0.4111 1111 1111 1111'),
    (16, 'after a decimal, dashes', 'total 12.5555-5555-5555-4444'),
    (17, 'comma and space', '3782, 822463, 10005'),
    (18, 'slash and spaces', '3782 / 822463 / 10005'),
    (19, 'quotes', '"4111"''1111''"1111"''1111'''),
    (20, 'brackets and semicolons', '[4111];[1111];[1111];[1111]'),
    (21, 'a lone backslash', '4111\1111\1111\1111'),
    (22, 'ampersand', '4111&1111&1111&1111'),
    (23, 'section sign, guillemets', '4111§1111«1111»1111'),
    (24, 'black circle, arrow', '4111●1111→1111→1111'),
    (25, 'full-width slash', '4111／1111／1111／1111'),
    (26, 'ideographic comma', '4111、1111、1111、1111'),
    (27, 'in a sentence', 'my card: 4111/1111/1111/1111, exp 12/29');
GRANT SELECT ON card_forms TO PUBLIC;

-- legitimate values: none holds a card number
CREATE TEMP TABLE legit (n int, what text, v text);
INSERT INTO legit VALUES
    (1, 'date', '2026/12/07'),
    (2, 'date, dots', '07.12.2026'),
    (3, 'date range', '2026/12/07 – 2026/12/24'),
    (4, 'timestamp', '2026-12-07 23:59:59.999999+00'),
    (5, 'times', '10:30:45 / 12:00:00 / 23:59:59'),
    (6, 'prices', '$1,299.00 – $2,499.00, was 1.299,00 €'),
    (7, 'a big price', '1,234,567,890,123.45'),
    (8, 'version', '1.2.3.4'),
    (9, 'versions', 'v10.4.1234.5678 (build 2026.12.07.1811)'),
    (10, 'IPv4', '192.168.100.200:8080, 10.0.0.1'),
    (11, 'phone', '+1 (415) 555-2671'),
    (12, 'phones', '+44 20 7946 0958, +44 20 7946 0959'),
    (13, 'phones, slash', '+49 30 1234567 / +49 30 7654321'),
    (14, 'phone with a word', 'Tel: 0041 44 668 18 00 / 0041 44 668 18 01'),
    (15, 'EAN-13', '4006381333931'),
    (16, 'EAN-13 printed', 'EAN 4 006381 333931'),
    (17, 'EAN-13 pair', '4006381333931/5901234123457'),
    (18, 'GTIN-14 with AI', '(01)09506000134352'),
    (19, 'UPC-A printed', '0 36000 29145 2'),
    (20, 'ISBN-13', 'ISBN 978-0-306-40615-7'),
    (21, 'ISBN-13 bare', '9780306406157'),
    (22, 'model numbers', 'WH-1000XM4, SM-G991B/DS, RX100 VII, A2337/MGN63LL/A'),
    (23, 'decimal', '3.14159265358979'),
    (24, 'float', '0.30000000000000004'),
    (25, 'coordinates', '-122.4194155, 37.7749295'),
    (26, 'sizes', '36/37/38/39/40/41/42/43/44/45/46'),
    (27, 'dimensions', '120 × 80 × 60 cm, 1.5 kg'),
    (28, 'bullets', '• 2 mugs • 4 plates • 12 glasses'),
    (29, 'order numbers', '#10045, #10046 (2026/12/07)'),
    (30, 'nine spaces', '4111         1111         1111         1111');
GRANT SELECT ON legit TO PUBLIC;

SELECT n, what, shop.contains_card_number(v) AS card FROM card_forms ORDER BY n;
SELECT n, what, shop.contains_card_number(v) AS card FROM legit ORDER BY n;

-- the writes of the report, as the roles that make them: refused (SH005),
-- nothing stored
RESET ROLE;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.session_token(501, '1 hour') AS token \gset
SET ROLE regress_card6_front;
SELECT shop.session_begin(:'token') AS customer;
SELECT n, what, pg_temp.err(format('SELECT shop.review_add(%s, 501, 5, %L, %L)', :mug, 't', v)) AS review_body,
       pg_temp.err(format('SELECT shop.review_add(%s, 501, 5, %L, %L)', :mug, v, 'b')) AS review_title
  FROM card_forms ORDER BY n;
SET ROLE regress_card6_admin;
SELECT n, what, pg_temp.err(format('SELECT count(*) FROM shop.event_claim(%L, %L)', v, 'c')) AS event_group,
       pg_temp.err(format('SELECT shop.experiment_create(%L, %L)', v,
                          '[{"name": "control", "share": 0.5}, {"name": "b", "share": 0.5}]')) AS experiment
  FROM card_forms ORDER BY n;
RESET ROLE;
SELECT (SELECT count(*) FROM shop.review) AS reviews,
       (SELECT count(*) FROM shop.event_groups) AS event_groups,
       (SELECT count(*) FROM shop.experiment) AS experiments;

-- the legitimate values are accepted by the same writes
SET ROLE regress_card6_front;
SELECT count(*) FILTER (WHERE pg_temp.err(format('SELECT shop.review_add(%s, 501, 5, %L, %L)', :mug, 't', v)) = 'ok') AS reviews_ok,
       count(*) AS values
  FROM legit;
SET ROLE regress_card6_admin;
SELECT n, what, pg_temp.err(format('SELECT count(*) FROM shop.event_claim(%L, %L)', 'g' || n || ' ' || v, 'c')) AS event_group,
       pg_temp.err(format('SELECT shop.experiment_create(%L, %L)', 'x' || n || ' ' || v,
                          '[{"name": "control", "share": 0.5}, {"name": "b", "share": 0.5}]')) AS experiment
  FROM legit ORDER BY n;
RESET ROLE;
SELECT (SELECT count(*) FROM shop.event_groups) AS event_groups,
       (SELECT count(*) FROM shop.experiment) AS experiments;

-- the prefilter (eight bytes at a time, sql/card_guard_paths) counts only
-- digit-like bytes: a card with the new separators at every offset of a
-- word is still found; fifteen digits of a Visa are not a card
SELECT count(*) FILTER (WHERE shop.contains_card_number(repeat('x', k) || '4111/1111/1111/1111' || repeat('y', k % 3))) AS slash,
       count(*) FILTER (WHERE shop.contains_card_number(repeat('÷', k) || '4111_1111_1111_1111')) AS underscore,
       count(*) FILTER (WHERE shop.contains_card_number(repeat('x', k) || '0.4111 1111 1111 1111')) AS decimal,
       count(*) FILTER (WHERE shop.contains_card_number(repeat('x', k) || '4111/1111/1111/111')) AS fifteen_digits,
       count(*) AS offsets
  FROM generate_series(0, 17) k;

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_card6_front;
DROP ROLE regress_card6_admin;
