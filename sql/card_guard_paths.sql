-- card_guard_paths: the card guard's short cuts (issue 11) skip only what
-- cannot hold a card.  A text value of fewer than 12 bytes is not read by
-- the trigger; a value that is exactly a uuid is not scanned; the prefilter
-- counts digit-like bytes eight at a time; a jsonb key's phone context is
-- asked for only when its value holds a card without it.  Each case here is
-- the nearest value that must still be found, or still be let through.
\i sql/include/prelude.sql

-- the shortest card (12 digits, Maestro 5018) is 12 bytes: refused by the
-- trigger, in a column written directly and through the API
SELECT shop.contains_card_number('501800000009') AS maestro_12,
       shop.contains_card_number('50180000000') AS eleven_digits;
SELECT pg_temp.err($$SELECT shop.product_upsert('P12', '501800000009', 100)$$) AS name_12_bytes;
SELECT pg_temp.err($$SELECT shop.product_upsert('P11', '50180000000', 100)$$) AS name_11_bytes;
SELECT pg_temp.err($$UPDATE shop.product SET title = '501800000009' WHERE sku = 'P11'$$) AS update_to_12;
SELECT title FROM shop.product WHERE sku = 'P11';
SELECT pg_temp.err($$UPDATE shop.product SET title = '5018000000' || '09' WHERE sku = 'P11'$$) AS update_expr;
SELECT pg_temp.err($$INSERT INTO shop.product (sku, title, price_cents) VALUES ('P13', '501800000009', 1)$$) AS insert_12;

-- the prefilter reads eight bytes at a time, the rest one by one: a card
-- at every offset of a word, in ASCII, full-width digits (3 bytes each) and
-- backslash escapes, and an 11-digit run at every offset (never a card)
SELECT count(*) FILTER (WHERE shop.contains_card_number(repeat('x', k) || '4111 1111 1111 1111' || repeat('y', k % 3))) AS ascii,
       count(*) FILTER (WHERE shop.contains_card_number(repeat('é', k) || '４１１１１１１１１１１１１１１１' || repeat('z', k))) AS fullwidth,
       count(*) FILTER (WHERE shop.contains_card_number(repeat('x', k) || '\u0034111 1111 1111 1111')) AS escaped,
       count(*) FILTER (WHERE shop.contains_card_number(repeat('x', k) || '41111111111' || repeat('\', k))) AS eleven,
       count(*) AS offsets
  FROM generate_series(0, 17) k;

-- a uuid is not a card; 36 characters shaped almost like one still hold it
SELECT shop.contains_card_number('123e4567-e89b-12d3-a456-426614174000') AS uuid,
       shop.contains_card_number('3782 822-4631-0005-zzzz-aaaaaaaaaaaa') AS amex_not_uuid,
       shop.contains_card_number('3782 822-4631-0005-abcd-abcdefabcdef') AS amex_hex_tail;
-- ids shop writes as text: a uuid after a prefix without digits (a hold's
-- ref), one long hexadecimal word (a fingerprint); the same with a card
-- before them or in place of the word still hold one
SELECT shop.contains_card_number('order:123e4567-e89b-12d3-a456-426614174000') AS ref,
       shop.contains_card_number('order 4111111111111111:123e4567-e89b-12d3-a456-426614174000') AS card_then_uuid,
       shop.contains_card_number('ab123e4567-e89b-12d3-a456-426614174000') AS glued,
       shop.contains_card_number('ed9e544f2085b3ee9c9b2fa2d7f5aff3') AS fingerprint,
       shop.contains_card_number('4111111111111111abcdefab') AS in_hex_word,
       shop.contains_card_number('4111111111111111 abcdefab') AS before_word,
       shop.contains_card_number('4111111111111111abcdefa') AS short_hex_word;
SELECT pg_temp.err($$SELECT shop.product_upsert('U1', '3782 822-4631-0005-abcd-abcdefabcdef', 100)$$) AS name_36;
SELECT pg_temp.err($$SELECT shop.product_upsert('U2', '123e4567-e89b-12d3-a456-426614174000', 100)$$) AS name_uuid;

-- phone keys: a number that reads as a card in a phone field is a phone
-- number only when it is short enough for one (15 digits), at any depth
SELECT shop.contains_card_number('{"phone": "639171234565"}'::jsonb) AS phone,
       shop.contains_card_number('{"phone": {"home": "639171234565"}}'::jsonb) AS phone_nested,
       shop.contains_card_number('{"fax": 639171234565}'::jsonb) AS fax_number,
       shop.contains_card_number('{"phone": {"home": "4111111111111111"}}'::jsonb) AS card_nested,
       shop.contains_card_number('{"mobile": ["639171234565", "4111 1111 1111 1111"]}'::jsonb) AS card_in_list,
       shop.contains_card_number('{"note": "639171234565"}'::jsonb) AS not_phone;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
