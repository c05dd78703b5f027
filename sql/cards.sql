-- cards: no payment card number is stored in, or logged by, shop
-- (issue 10, docs/security.md "Card numbers").
--   1. the detector: a table of card numbers in every format people type
--      them, and of legitimate digit runs that must go through;
--   2. the guard: every text column of every shop table refuses a card
--      number (SH005) through the API and through INSERT, UPDATE and COPY;
--   3. the server log (statements that fail before shop's checks run are
--      logged with the card number masked) is sql/server_log.sql, which
--      reads make test's log file and is not part of make installcheck.
\i sql/include/prelude.sql

------------------------------------------------------------------------------
-- 1. The detector
------------------------------------------------------------------------------
CREATE TEMP TABLE card_case (id serial, expect boolean, value text, note text);

-- Card numbers: the test numbers the brands' acquirers publish for their
-- test modes (source in each note), written as people write them.
INSERT INTO card_case (expect, value, note) VALUES
-- Stripe, docs.stripe.com/testing
(true, '4242424242424242', 'Stripe: Visa'),
(true, '4000056655665556', 'Stripe: Visa debit'),
(true, '5555555555554444', 'Stripe: Mastercard'),
(true, '2223003122003222', 'Stripe: Mastercard 2-series'),
(true, '5200828282828210', 'Stripe: Mastercard debit'),
(true, '5105105105105100', 'Stripe: Mastercard prepaid'),
(true, '378282246310005', 'Stripe: American Express'),
(true, '371449635398431', 'Stripe: American Express'),
(true, '6011111111111117', 'Stripe: Discover'),
(true, '6011981111111113', 'Stripe: Discover debit'),
(true, '3056930009020004', 'Stripe: Diners Club'),
(true, '36227206271667', 'Stripe: Diners Club 14 digits'),
(true, '6555900000604105', 'Stripe: BCcard and DinaCard'),
(true, '3566002020360505', 'Stripe: JCB'),
(true, '6200000000000005', 'Stripe: UnionPay'),
(true, '6205500000000000004', 'Stripe: UnionPay 19 digits'),
(true, '4000002500003155', 'Stripe: Visa, 3D Secure'),
-- Braintree, developer.paypal.com/braintree/docs/reference/general/testing
(true, '4111111111111111', 'Braintree: Visa'),
(true, '4005519200000004', 'Braintree: Visa'),
(true, '4012000077777777', 'Braintree: Visa'),
(true, '4217651111111119', 'Braintree: Visa'),
(true, '2223000048400011', 'Braintree: Mastercard 2-series'),
(true, '36259600000004', 'Braintree: Diners Club'),
(true, '6011000991300009', 'Braintree: Discover'),
(true, '3530111333300000', 'Braintree: JCB'),
(true, '6304000000000000', 'Braintree: Maestro'),
(true, '6243030000000001', 'Braintree: UnionPay'),
(true, '6221261111117766', 'Braintree: UnionPay / Discover co-brand (622126)'),
-- Adyen, docs.adyen.com/development-resources/testing/test-card-numbers
(true, '4111 1111 4555 1142', 'Adyen: Visa, as printed'),
(true, '2222 4000 7000 0005', 'Adyen: Mastercard 2-series, as printed'),
(true, '3700 0000 0000 002', 'Adyen: American Express, as printed'),
(true, '3600 6666 3333 44', 'Adyen: Diners Club, as printed'),
(true, '3569 9900 1009 5841', 'Adyen: JCB, as printed'),
(true, '6771 7980 2100 0008', 'Adyen: Maestro, as printed'),
(true, '5019 5555 4444 5555', 'Adyen: Dankort, as printed'),
-- Authorize.net, developer.authorize.net/hello_world/testing_guide
(true, '4222222222222', 'Authorize.net: Visa 13 digits'),
(true, '370000000000002', 'Authorize.net: American Express'),
(true, '3088000000000017', 'Authorize.net: JCB (3088 range)'),
(true, '38000000000006', 'Authorize.net: Diners Club / Carte Blanche'),
-- Worldpay test cards
(true, '4917610000000000', 'Worldpay: Visa Electron'),
(true, '6759649826438453', 'Worldpay: Maestro'),
(true, '6799990100000000019', 'Worldpay: Maestro 19 digits'),
-- brands without published test numbers: IIN and length of the brand,
-- Luhn check digit computed (synthetic)
(true, '2200123456789019', 'synthetic: Mir (2200-2204), 16 digits'),
(true, '9792123456789018', 'synthetic: Troy (9792), 16 digits'),
(true, '6080123456789015', 'synthetic: RuPay (60), 16 digits'),
(true, '9860123456789015', 'synthetic: Humo (9860), 16 digits'),
(true, '501800000009', 'synthetic: Maestro 12 digits, the shortest card'),
(true, '4000000000000000006', 'synthetic: Visa 19 digits'),
(true, '501234567890123', 'synthetic: Maestro (50), 15 digits, no phone word before it'),
-- the formats of issue 10: separators people type
(true, '4111.1111.1111.1111', 'issue 10: dots'),
(true, '4111  1111  1111  1111', 'issue 10: double spaces'),
(true, E'4111\t1111\t1111\t1111', 'issue 10: tabs'),
(true, E'4111\n1111\n1111\n1111', 'issue 10: one group per line'),
(true, E'card:\r\n4111\r\n1111\r\n1111\r\n1111', 'CRLF line ends (a pasted e-mail)'),
(true, E'\uFF14\uFF11\uFF11\uFF11\u3000\uFF11\uFF11\uFF11\uFF11\u3000\uFF11\uFF11\uFF11\uFF11\u3000\uFF11\uFF11\uFF11\uFF11', 'issue 10: full-width digits, ideographic spaces (Japanese IME)'),
(true, E'\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12', 'full-width digits, unbroken'),
(true, E'4111\u200B1111\u200B1111\u200B1111', 'issue 10: zero-width spaces between groups'),
(true, E'4\u200B2\u200B4\u200B2\u200B4\u200B2\u200B4\u200B2\u200B4\u200B2\u200B4\u200B2\u200B4\u200B2\u200B4\u200B2', 'zero-width space after every digit'),
(true, 'a4111 1111 1111 1111b', 'issue 10: glued to letters'),
(true, 'card4242424242424242exp1229', 'glued to words on both sides'),
(true, 'cafe4111111111111111', 'glued to a word of hex letters (20 hex digits: no hash)'),
(true, E'4111\u00A01111\u00A01111\u00A01111', 'no-break spaces (word processors)'),
(true, E'5555\u202F5555\u202F5555\u202F4444', 'narrow no-break spaces (French typography)'),
(true, E'5555\u20135555\u20135555\u20134444', 'en dashes (autocorrected hyphens)'),
(true, '4111 - 1111 - 1111 - 1111', 'spaced dashes'),
(true, '4111 1111-1111.1111', 'mixed separators'),
(true, E'4111\u00AD1111\u00AD1111\u00AD1111', 'soft hyphens (HTML &shy; decoded)'),
(true, '4111&nbsp;1111&nbsp;1111&nbsp;1111', 'HTML no-break space entities in a product description'),
(true, E'\u0664\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661', 'Arabic-Indic digits'),
(true, E'\U0001D7D2\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF\U0001D7CF', 'mathematical bold digits (NFKC maps them to 0-9)'),
(true, E'4\uFE0F\u20E32\uFE0F\u20E34\uFE0F\u20E32\uFE0F\u20E3 4\uFE0F\u20E32\uFE0F\u20E34\uFE0F\u20E32\uFE0F\u20E3 4\uFE0F\u20E32\uFE0F\u20E34\uFE0F\u20E32\uFE0F\u20E3 4\uFE0F\u20E32\uFE0F\u20E34\uFE0F\u20E32\uFE0F\u20E3', 'keycap emoji digits'),
(true, '3782 822463 10005', 'American Express as printed: 4-6-5'),
(true, '3056 930902 5904', 'Diners Club as printed: 4-6-4 (PayPal test card 30569309025904)'),
(true, '6205 5000 0000 0000 004', 'UnionPay 19 digits as printed: 4-4-4-4-3'),
(true, 'order 1234 4242 4242 4242 4242', 'after another number'),
(true, '4242 4242 4242 4242 123', 'followed by the CVC'),
(true, '4242424242424242 12/29 123', 'with expiry date and CVC'),
(true, 'Paid with Visa 4111111111111111, thanks!', 'in a sentence'),
(true, '+4111 1111 1111 1111', 'after a plus sign: 16 digits are no phone number'),
(true, 'tel 4111 1111 1111 1111', 'after a phone word: 16 digits are no phone number'),
(true, '5500 0000 0000 0004', 'issue 10: what synonym_add stores for 5500-0000-0000-0004'),
(true, '4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1', 'digit by digit: what synonym_add stores for a zero-width space after every digit'),
(true, '3530111333300000x', 'issue 10: the cart_create customer_id of the 22P02 example'),
(true, '4111\u200B1111\u200B1111\u200B1111', 'zero-width spaces spelled as escapes (statement text, JSON text)'),
(true, '\uFF14\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11', 'full-width digits spelled as escapes');

-- Legitimate digit runs: they must go through, or catalog loads break.
INSERT INTO card_case (expect, value, note) VALUES
(false, 'EU sizes 36 37 38 39 40 41 42 43 44 45 46', 'issue 10: shoe sizes'),
(false, 'EU 35 36 37 38 39 40 41 42 43 44 45 46 47 48', 'shoe sizes, more of them'),
(false, 'Waist 28 29 30 31 32 33 34 36 38 40 42', 'trouser sizes'),
(false, 'ISBN 978-1-4028-9462-6', 'issue 10: ISBN-13'),
(false, 'ISBN 978-0-306-40615-7', 'ISBN-13, the example of the ISBN users'' manual'),
(false, '9780131103627', 'ISBN-13 of Kernighan & Ritchie, The C Programming Language, 2nd ed.'),
(false, '978-0-262-03384-8', 'ISBN-13 of Cormen et al., Introduction to Algorithms, 3rd ed.'),
(false, '978-0-201-63361-0', 'ISBN-13 of Gamma et al., Design Patterns'),
(false, '9780262510875', 'ISBN-13 of Abelson & Sussman, SICP, 2nd ed.'),
(false, '4006381333931', 'EAN-13 of the Stabilo Point 88 (the usual EAN-13 example)'),
(false, '5901234123457', 'EAN-13, GS1 specification example'),
(false, '4006381333924', 'synthetic: a GS1-valid EAN-13 that is also Luhn-valid with a Visa IIN'),
(false, '036000291452', 'UPC-A, GS1 example'),
(false, '561234567924', 'synthetic: a GS1-valid UPC-A that is also Luhn-valid with a Maestro IIN'),
(false, '10614141000415', 'GTIN-14, GS1 US example'),
(false, '36000000000081', 'synthetic: a GS1-valid GTIN-14 that is also Luhn-valid with a Diners IIN'),
(false, '04006381333931', 'GTIN-14 of the Stabilo EAN (leading zero)'),
(false, '+1 415 555 2671', 'phone: E.164 example of Twilio''s documentation'),
(false, '+44 20 7946 0958', 'phone: Ofcom''s range reserved for drama'),
(false, '+61 491 570 156', 'phone: ACMA''s range reserved for fiction'),
(false, '+639171234565', 'phone: Philippine mobile, Luhn-valid in the Maestro range (synthetic)'),
(false, 'Tel. 601123456787', 'phone after "Tel.": 12 digits, Luhn-valid, Maestro range (synthetic)'),
(false, '(555) 010-4477', 'phone: North American fiction range'),
(false, '0049 30 1234567', 'phone with international prefix 00'),
(false, 'IMEI 490154203237518', 'IMEI, the example of the IMEI article (Luhn-valid by design)'),
(false, 'IMEI: 501234567890123', 'IMEI whose reporting body is 50 (Luhn-valid, Maestro range)'),
(false, '2024-01-15', 'ISO date'),
(false, '2024-01-15T10:30:00.123456Z', 'ISO timestamp with microseconds'),
(false, '15.01.2024 10:30', 'German date'),
(false, '1705312200000', 'Unix time in milliseconds'),
(false, '20240115103000123', 'compact timestamp, 17 digits'),
(false, '550e8400-e29b-41d4-a716-446655440000', 'uuid, the example of RFC 4122''s Wikipedia article'),
(false, '12345678-1234-5670-abcd-ef0123456789', 'uuid whose digit groups form a Luhn-valid run'),
(false, 'order:07c37119-7506-4185-9d6f-18d4484c9632', 'uuid after a prefix'),
(false, 'order:abcdefab-5555-5555-5555-4444abcdefab', 'uuid with no digit in its first group: its other groups hold a Luhn-valid Mastercard run'),
(false, 'hold FEDCBAFE-4111-1111-1111-1111ABCDEF12 done', 'upper-case uuid with no digit in its first group, Visa-shaped run'),
(false, 'd41d8cd98f00b204e9800998ecf8427e', 'md5 of the empty string'),
(false, 'da39a3ee5e6b4b0d3255bfef95601890afd80709', 'sha1 of the empty string'),
(false, '507f1f77bcf86cd799439011', 'a MongoDB ObjectId (24 hex digits), the example of its documentation'),
(false, 'deadbeef4111111111111111cafe0000', 'synthetic: 32 hex digits (an md5-like token) holding a Luhn-valid run'),
(false, 'DE89 3704 0044 0532 0130 00', 'IBAN, the example of the IBAN registry'),
(false, 'GB82 WEST 1234 5698 7654 32', 'IBAN, UK example'),
(false, '4111 1111 1111 1112', 'card-shaped, Luhn check fails'),
(false, '4242424242424241', 'card-shaped, Luhn check fails'),
(false, '1234 5678 9012 3452', 'Luhn-valid, but no brand issues numbers starting with 1'),
(false, '0000 0000 0000 0000', 'Luhn-valid zeros, no brand'),
(false, '411111111111116', 'Luhn-valid with a Visa IIN, but 15 digits: Visa issues 13, 16, 19'),
(false, '3400000000000000', 'Luhn-valid with an Amex IIN, but 16 digits: Amex issues 15'),
(false, '555555555555558', 'Luhn-valid with a Mastercard IIN, but 15 digits'),
(false, '4111 **** **** 1111', 'a masked card (first six and last four, as receipts print)'),
(false, 'Visa ending in 4242', 'last four only'),
(false, '0.30000000000000004', '0.1 + 0.2 in IEEE double precision'),
(false, '3.141592653589793', 'pi as a double'),
(false, '52.520008, 13.404954', 'coordinates of Berlin'),
(false, '1Z999AA10123456784', 'UPS tracking number example'),
(false, '9400 1000 0000 0000 0000 00', 'USPS tracking number format'),
(false, '449044304137821', 'FedEx Ground tracking number, 15 digits'),
(false, '1462836741258518528', 'a Twitter status id (19 digits)'),
(false, '12345678901234567890123', '23 digits: longer than any card'),
(false, '078-05-1120', 'the Woolworth wallet social security number'),
(false, '192.168.100.200', 'IPv4 address'),
(false, '1200 x 800 x 2000 mm', 'dimensions'),
(false, '1 234 567,89 EUR', 'a price with thin-space grouping'),
(false, 'PN 1234-5678-90 rev 4', 'a part number'),
(false, 'ORD-2024-000123-17', 'an order number'),
(false, 'Rows 1 2 3 4 5 6 7 8 9 10 11 12', 'single digits counted out, no brand''s IIN'),
(false, 'C:\Users\4111\1111\1111\1111', 'a Windows path: backslashes are no separators'),
(false, 'Canon Drum Unit NPG-7 for NP-6030/6031/6022/6025 Original', 'a real catalog title: the printers a part fits, slashes between model numbers'),
(false, 'Epson SIDM Black Ribbon Cartridge for DFX-5000/+/8000/8500 (C13S015055)', 'a real catalog title: models listed with slashes and a plus'),
(false, '2481, 2491, 2581, 2591, 4227 series Automatic Sheet Feeder (wide)', 'a real catalog description: models listed with commas');

SELECT expect, count(*) AS cases,
       count(*) FILTER (WHERE shop.contains_card_number(value) = expect) AS right
  FROM card_case GROUP BY expect ORDER BY expect;
-- the cases the detector gets wrong (none)
SELECT id, expect, note FROM card_case
 WHERE shop.contains_card_number(value) IS DISTINCT FROM expect ORDER BY id;

-- masking (the log hook's): no card survives it, the last four digits stay,
-- the length in characters stays (error positions), legitimate runs are kept
SELECT count(*) FILTER (WHERE shop.contains_card_number(shop.redact_card_numbers(value))) AS still_cards,
       count(*) FILTER (WHERE length(shop.redact_card_numbers(value)) <> length(value)) AS length_changed
  FROM card_case WHERE expect;
SELECT count(*) AS changed FROM card_case
 WHERE NOT expect AND shop.redact_card_numbers(value) <> value;
SELECT shop.redact_card_numbers('paid 4111 1111 1111 1111, refund to 5555-5555-5555-4444') AS masked,
       shop.redact_card_numbers(E'\uFF14\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11') AS full_width;

-- jsonb: keys, strings and numbers at any depth; a phone key's value may
-- be a phone number up to 15 digits
SELECT shop.contains_card_number('{"a": [1, {"b": "card 4111 1111 1111 1111"}]}'::jsonb) AS nested,
       shop.contains_card_number('{"n": 4111111111111111}'::jsonb) AS number,
       shop.contains_card_number('{"4111111111111111": true}'::jsonb) AS key,
       shop.contains_card_number('"4111111111111111"'::jsonb) AS scalar,
       shop.contains_card_number('{"phone": "639171234565"}'::jsonb) AS phone_field,
       shop.contains_card_number('{"note": "639171234565"}'::jsonb) AS same_digits_elsewhere,
       shop.contains_card_number('{"phone": "4111111111111111"}'::jsonb) AS card_in_phone_field,
       shop.contains_card_number('{"gtin": 4006381333931, "price": 0.30000000000000004}'::jsonb) AS barcode_and_float;
SELECT shop.contains_card_number(ARRAY['a', NULL, 'b 4111-1111-1111-1111']) AS array_element,
       shop.contains_card_number(ARRAY['36', '37', '38']) AS sizes;

-- Cards typed with another separator between the groups (card7): the list
-- rule.  Exactly a card's grouping, the same punctuation character between
-- every two groups, the groups the whole list; everywhere but in catalog
-- text (shop._holds_card_number(value, true) reads as the guard reads a
-- column marked catalog), where the real catalog's model lists have the
-- same shape.
CREATE TEMP TABLE list_case (id serial, expect boolean, catalog boolean, value text, note text);
INSERT INTO list_case (expect, catalog, value, note) VALUES
(true, false, '4111/1111/1111/1111', 'slashes'),
(true, false, '4111_1111_1111_1111', 'underscores'),
(true, false, '4111,1111,1111,1111', 'commas'),
(true, false, '4111+1111+1111+1111', 'plus signs'),
(true, false, '4111|1111|1111|1111', 'bars'),
(true, false, '4111:1111:1111:1111', 'colons'),
(true, false, '4111*1111*1111*1111', 'asterisks'),
(true, false, '4111#1111#1111#1111', 'hashes'),
(true, false, '4111~1111~1111~1111', 'tildes'),
(true, false, 'my card is 5555/5555/5555/4444, thanks', 'in a sentence'),
(true, false, 'card:4111:1111:1111:1111', 'after a word and the same separator'),
(true, false, '(4242_4242_4242_4242)', 'in parentheses'),
(true, false, '3782/822463/10005', 'Amex 4-6-5'),
(true, false, '3056,930902,5904', 'Diners 4-6-4'),
(true, false, '4000/0000/0000/0000/006', 'Visa 19 digits, 4-4-4-4-3 (synthetic)'),
(true, false, E'name 6011|0009|9130|0009\nline 2', 'a line of an address'),
(false, false, '4111/1111/1111/1112', 'Luhn check fails'),
(false, false, '4111/1111_1111/1111', 'two different separators'),
(false, false, '4111//1111//1111//1111', 'two separator characters'),
(false, false, '411/11111/1111/1111', 'not a card''s grouping'),
(false, false, '41111111/11111111', 'not a card''s grouping: two halves'),
(false, false, '1/4111/1111/1111/1111', 'the list holds one more number'),
(false, false, '4111/1111/1111/1111/2222', 'the list holds one more group of four'),
(false, false, '4111/1111/1111/1111/M1120', 'the list goes on with a model number'),
(false, false, 'IR6800/5800/6870/5870.', 'a real catalog value: glued to a model prefix'),
(false, false, 'NP-6030/6031/6022/6025', 'a real catalog value: after a model prefix and a dash'),
(false, false, 'HP LaserJet 1012/1018/1020/1022/3015/3020/3030/3050/3052/3055/M1120/M1319', 'a real catalog value: a longer list'),
(false, false, '2133,2400,2666,2800,2933,3000,3200,3300,3333,3400,3466,3600', 'a real catalog value: memory clock speeds'),
(false, false, '2481, 2491, 2581, 2591, 4227 series', 'a real catalog value: a comma and a space'),
(false, false, 'C:\Users\4111\1111\1111\1111', 'a Windows path: backslashes are no separators'),
(false, false, '2026/12/08 01:15:00', 'a date and a time'),
(false, false, '1,234,567,890,123', 'thousands separators'),
(false, false, '10.0.0.1:5432/4111', 'an address and a port'),
-- catalog text: the list rule does not apply, the windows do
(false, true, 'WorkCentre 5735/5740/5745/5755', 'a real catalog value, read as catalog text'),
(false, true, 'IPF/5000/6000/5100/6100', 'a real catalog value, read as catalog text'),
(false, true, '4111/1111/1111/1111', 'slashes, read as catalog text'),
(true, true, '4111 1111 1111 1111', 'spaces: a card in catalog text too');
SELECT expect, catalog, count(*) AS cases,
       count(*) FILTER (WHERE shop._holds_card_number(value, catalog) = expect) AS right
  FROM list_case GROUP BY expect, catalog ORDER BY expect, catalog;
SELECT id, expect, catalog, note FROM list_case
 WHERE shop._holds_card_number(value, catalog) IS DISTINCT FROM expect ORDER BY id;
-- outside catalog text the same model lists are refused (a review that
-- names them must write them otherwise); the log masks them (harmless)
SELECT shop.contains_card_number('WorkCentre 5735/5740/5745/5755') AS model_list_elsewhere,
       shop.redact_card_numbers('WorkCentre 5735/5740/5745/5755') AS model_list_in_log;
-- masking: every list-shaped card, the last four digits stay
SELECT count(*) FILTER (WHERE shop.contains_card_number(shop.redact_card_numbers(value))) AS still_cards,
       count(*) FILTER (WHERE length(shop.redact_card_numbers(value)) <> length(value)) AS length_changed
  FROM list_case WHERE expect;
SELECT count(*) AS changed FROM list_case
 WHERE NOT expect AND NOT catalog AND shop.redact_card_numbers(value) <> value;
SELECT shop.redact_card_numbers('paid 4111/1111/1111/1111 and 5555_5555_5555_4444, card:3782:822463:10005') AS masked;
SELECT shop.contains_card_number('{"note": "4111/1111/1111/1111"}'::jsonb) AS jsonb_value,
       shop.contains_card_number('{"4111|1111|1111|1111": 1}'::jsonb) AS jsonb_key,
       shop._holds_card_number('{"model": "5735/5740/5745/5755"}'::jsonb, true) AS jsonb_catalog,
       shop.contains_card_number(ARRAY['ok', '4111+1111+1111+1111']) AS array_element;

------------------------------------------------------------------------------
-- 2. The guard: every stored text column
------------------------------------------------------------------------------

-- Every column of a shop table that can hold text is read by the guard, and
-- its table has the guard trigger, enabled always.  A column of a type the
-- guard cannot read (composite, bytea, tsvector, ...) is listed too (transaction
-- ids and snapshots, shop.event and shop.event_group, hold no text): a new
-- column without protection fails this test.
SELECT c.oid::regclass AS table_name, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       shop._card_guard_reads(a.atttypid) AS read_by_guard,
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'zz_card_guard'
                AND t.tgenabled = 'A' AND t.tgfoid = 'shop._card_guard()'::regprocedure) AS guarded
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid
  JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_type el ON el.oid = ty.typelem AND ty.typcategory = 'A'
 WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
   AND coalesce(el.typcategory, ty.typcategory) NOT IN ('N', 'B', 'D', 'T', 'I')
   AND coalesce(el.oid, ty.oid) NOT IN ('uuid'::regtype, 'oid'::regtype, 'regclass'::regtype,
                                        'xid8'::regtype, 'pg_snapshot'::regtype)
   AND NOT (shop._card_guard_reads(a.atttypid)
            AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'zz_card_guard'
                         AND t.tgenabled = 'A' AND t.tgfoid = 'shop._card_guard()'::regprocedure));
SELECT count(*) AS guarded_columns, count(DISTINCT table_name) AS guarded_tables FROM shop._card_columns();

-- the three statements of issue 10, through the API and plain SQL
SELECT pg_temp.err($$SELECT shop.product_upsert('X', 't', 100, images => ARRAY['4111 1111 1111 1111'])$$);
SELECT pg_temp.err($$SELECT shop.synonym_add('card', ARRAY['5500-0000-0000-0004'])$$);
SELECT pg_temp.err($$INSERT INTO shop.product(sku, title, price_cents, description) VALUES ('Y', 't', 1, 'paid 378282246310005')$$);
SELECT count(*) AS products, (SELECT count(*) FROM shop.synonym) AS synonyms FROM shop.product;

-- the error names the column, never the number
\set VERBOSITY default
INSERT INTO shop.product (sku, title, price_cents, attributes)
VALUES ('Z', 'Mug', 100, '{"colour": "red", "notes": ["pay by 6011 0009 9130 0009"]}');
\set VERBOSITY terse

-- the API, as the roles of docs/security.md
CREATE ROLE cards_admin LOGIN IN ROLE shop_admin;
CREATE ROLE cards_web LOGIN IN ROLE shop_storefront;
SELECT shop.category_add('Mugs') AS cat \gset
SELECT shop.product_upsert('MUG-1', 'Mug', 1000, category_id => :cat) AS mug \gset
SELECT shop.stock_set(:mug, 10);
SET ROLE cards_admin;
SELECT pg_temp.err(format($$SELECT shop.product_upsert('MUG-1', 'Mug', 1000, description => %L)$$,
                          E'card \uFF14\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11'));
SELECT pg_temp.err(format($$SELECT shop.product_upsert('MUG-1', 'Mug', 1000, attributes => %L)$$,
                          '{"size": {"eu": [36, 37], "ref": "4111.1111.1111.1111"}}'));
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 5, 4, 'great', %L)$$, :mug, E'paid with 4111\t1111\t1111\t1111'));
SELECT pg_temp.err($$SELECT shop.category_add('a4111 1111 1111 1111b')$$);
RESET ROLE;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.session_token(77, '1 hour') AS token \gset
SET ROLE cards_web;
SELECT shop.session_begin(:'token') AS customer;
SELECT shop.cart_create(77) AS cart \gset
SELECT shop.cart_add(:'cart', :mug, 1);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k1', %L)$$, :'cart',
                          '{"name": "Ada", "line2": "4111 1111 1111 1111"}'));
SELECT shop.checkout(:'cart', 'tok_visa', 'k2', '{"name": "Ada", "phone": "+44 20 7946 0958", "zip": "10115"}') IS NOT NULL AS ordered;
-- cards typed with other separators, as the storefront (card7)
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 77, 5, %L)$$, :mug, 'paid 4111/1111/1111/1111'));
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 77, 5, 'great', %L)$$, :mug, 'card 5555_5555_5555_4444 exp 12/29'));
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 77, 5, 'fits', %L)$$, :mug, 'fits my WorkCentre 5735/5740/5745/5755'));
SELECT shop.cart_create(77) AS cart2 \gset
SELECT shop.cart_add(:'cart2', :mug, 1);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k3', %L)$$, :'cart2',
                          '{"name": "Ada 4111|1111|1111|1111", "zip": "10115"}'));
SELECT shop.review_add(:mug, 77, 5, 'fits', 'fits NP-6030/6031/6022/6025 and IR6800/5800/6870/5870');
RESET ROLE;
SET ROLE cards_admin;
SELECT pg_temp.err($$SELECT count(*) FROM shop.event_claim('4111,1111,1111,1111')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('exp 4111:1111:1111:1111', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]')$$);
SELECT pg_temp.err($$SELECT shop.experiment_create('exp', '[{"name": "4111+1111+1111+1111", "share": 0.5}, {"name": "b", "share": 0.5}]')$$);
-- catalog text keeps the windows only: the real catalog's model lists load
SELECT shop.product_upsert('WC-1', 'Toner for WorkCentre 5735/5740/5745/5755', 3000,
                           description => 'Drum unit for IPF/5000/6000/5100/6100',
                           attributes => '{"compatibility": "WorkCentre 5735/5740/5745/5755"}') IS NOT NULL AS catalog_model_list;
RESET ROLE;
SELECT (SELECT count(*) FROM shop.review WHERE body LIKE '%4111%' OR body LIKE '%5555%' OR body LIKE '%5735%') AS card_reviews,
       (SELECT count(*) FROM shop.experiment WHERE name LIKE 'exp%') AS experiments,
       (SELECT count(*) FROM shop.event_group WHERE group_name LIKE '4111%') AS groups;
-- and such a product is bought: its title is copied into order_line (catalog text)
SELECT shop.stock_set(product_id, 5) FROM shop.product WHERE sku = 'WC-1';
SET ROLE cards_web;
SELECT shop.cart_create(77) AS cart3 \gset
SELECT shop.cart_add(:'cart3', (SELECT product_id FROM shop.product WHERE sku = 'WC-1'), 1);
SELECT shop.checkout(:'cart3', 'tok_visa', 'k4', '{"name": "Ada", "zip": "10115"}') IS NOT NULL AS ordered_model_list;
RESET ROLE;
SELECT (SELECT count(*) FROM shop."order") AS orders, (SELECT count(*) FROM shop.review) AS reviews,
       (SELECT description FROM shop.product WHERE product_id = :mug) AS description;

-- plain INSERT, UPDATE and COPY, into each kind of column
SELECT pg_temp.err($$INSERT INTO shop.category (name) VALUES ('card 4111 1111 1111 1111')$$);
SELECT pg_temp.err(format($$UPDATE shop.product SET title = 'Mug 4242 4242 4242 4242' WHERE product_id = %s$$, :mug));
SELECT pg_temp.err(format($$UPDATE shop.product SET images = ARRAY['https://img/x.jpg', 'https://img/4242424242424242.jpg'] WHERE product_id = %s$$, :mug));
SELECT pg_temp.err(format($$UPDATE shop.product SET attributes = '{"n": 378282246310005}' WHERE product_id = %s$$, :mug));
SELECT pg_temp.err($$UPDATE shop."order" SET shipping_address = shipping_address || '{"note": "3566 0020 2036 0505"}'$$);
SELECT pg_temp.err($$UPDATE shop.order_event SET note = 'card 6011000990139424'$$);
SELECT pg_temp.err($$UPDATE shop.payment SET provider_ref = '5555555555554444'$$);
SELECT pg_temp.err($$INSERT INTO shop.synonym VALUES ('mug', ARRAY['cup', '5555 5555 5555 4444'])$$);
SELECT pg_temp.err($$INSERT INTO shop.search_log (query, sort, results, duration_ms) VALUES ('4111111111111111', 'relevance', 0, 1)$$);
SELECT pg_temp.err($$INSERT INTO shop.event (topic, payload) VALUES ('x', '{"card": "4111 1111 1111 1111"}')$$);
SELECT pg_temp.err(format($$INSERT INTO shop.stock_ledger (product_id, location, delta, on_hand, reason, ref) VALUES (%s, 'default', 1, 1, 'adjust', '4111111111111111')$$, :mug));
-- COPY: the row is refused, the load stops, nothing of it stays
COPY shop.product (sku, title, price_cents, description) FROM STDIN;
COPY-1	Plate	500	Dishwasher safe
COPY-2	Bowl	600	paid with 5105 1051 0510 5100
\.
SELECT count(*) AS copied FROM shop.product WHERE sku LIKE 'COPY-%';
-- and legitimate digit runs load
COPY shop.product (sku, title, price_cents, description, attributes) FROM STDIN;
COPY-3	Sneaker	5000	EU sizes 36 37 38 39 40 41 42 43 44 45 46	{"ean": "4006381333931", "gtin": 10614141000415}
COPY-4	Book	2000	ISBN 978-1-4028-9462-6	{"isbn": "9780131103627", "weight_kg": 0.30000000000000004}
\.
SELECT sku FROM shop.product WHERE sku LIKE 'COPY-%' ORDER BY sku;

-- Rows stored before 1.1 (here: with the guard switched off by the table
-- owner): found by card_number_scan, never shown; other columns of the row
-- can still be updated, the column itself only to a clean value.
ALTER TABLE shop.product DISABLE TRIGGER zz_card_guard;
UPDATE shop.product SET description = 'old note: card 4111 1111 1111 1111' WHERE sku = 'COPY-3';
ALTER TABLE shop.product ENABLE ALWAYS TRIGGER zz_card_guard;
SELECT * FROM shop.card_number_scan();
UPDATE shop.product SET price_cents = 5100 WHERE sku = 'COPY-3';
SELECT pg_temp.err($$UPDATE shop.product SET description = description || ' (sale)' WHERE sku = 'COPY-3'$$);
UPDATE shop.product SET description = shop.redact_card_numbers(description)
 WHERE shop.contains_card_number(description);
SELECT description FROM shop.product WHERE sku = 'COPY-3';
SELECT count(*) AS columns_with_cards FROM shop.card_number_scan();
SET ROLE cards_web;
SELECT pg_temp.err('SELECT * FROM shop.card_number_scan()');
RESET ROLE;

-- The guard keeps what it reads of a table for the life of the backend
-- (issue 11: working it out cost more than the scan); a column that
-- changes type is read from then on, and one that stops being text is not.
CREATE TABLE public.guard_cache (id int, note int, memo text);
CREATE TRIGGER zz_card_guard BEFORE INSERT OR UPDATE ON public.guard_cache
    FOR EACH ROW EXECUTE FUNCTION shop._card_guard();
INSERT INTO public.guard_cache VALUES (1, 4111, 'fine');
ALTER TABLE public.guard_cache ALTER COLUMN note TYPE text;
SELECT pg_temp.err($$INSERT INTO public.guard_cache VALUES (2, '4111 1111 1111 1111', 'fine')$$);
SELECT pg_temp.err($$UPDATE public.guard_cache SET note = '4111 1111 1111 1111' WHERE id = 1$$);
ALTER TABLE public.guard_cache ALTER COLUMN memo TYPE text[] USING ARRAY[memo];
SELECT pg_temp.err($$INSERT INTO public.guard_cache VALUES (3, 'x', ARRAY['5500-0000-0000-0004'])$$);
ALTER TABLE public.guard_cache DROP COLUMN note;
ALTER TABLE public.guard_cache ADD COLUMN note jsonb;
SELECT pg_temp.err($$INSERT INTO public.guard_cache VALUES (4, ARRAY['ok'], '{"pan": "4111111111111111"}')$$);
ALTER TABLE public.guard_cache ALTER COLUMN memo TYPE int USING 0;
INSERT INTO public.guard_cache (id, memo) VALUES (5, 41111111);
SELECT id, memo, note FROM public.guard_cache ORDER BY id;
DROP TABLE public.guard_cache;

DROP ROLE cards_admin;
DROP ROLE cards_web;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
