-- order_ids: the ids shop makes for carts, orders and payments are
-- time-ordered uuids (RFC 9562 version 7: 48 bits of Unix milliseconds,
-- rounded down to a window of 2^16 ms, the version, the variant, 74 random
-- bits), so that the b-trees that lead with them grow at one end, over the
-- leaves of the current window (issue 11); ids the caller gives
-- are kept as given (the router's carry the customer's bucket in their
-- last 16 bits).  As the storefront role, with an anonymous cart as a
-- guest's, and as the back office.
\i sql/include/prelude.sql
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_ids_front;
RESET client_min_messages;
CREATE ROLE regress_ids_front LOGIN IN ROLE shop_storefront;
SELECT shop.product_upsert('ID-1', 'Id lamp', 1500) AS p1 \gset
SELECT shop.product_upsert('ID-2', 'Id desk', 2500) AS p2 \gset
SELECT count(shop.stock_set(p, 1000)) AS stocked FROM unnest(ARRAY[:p1, :p2]::bigint[]) p;
-- what an id says: its version, its variant, its milliseconds
CREATE FUNCTION pg_temp.v(u uuid) RETURNS int LANGUAGE sql AS
$f$ SELECT get_byte(uuid_send(u), 6) >> 4 $f$;
CREATE FUNCTION pg_temp.variant_ok(u uuid) RETURNS boolean LANGUAGE sql AS
$f$ SELECT get_byte(uuid_send(u), 8) >> 6 = 2 $f$;
CREATE FUNCTION pg_temp.ms(u uuid) RETURNS bigint LANGUAGE sql AS
$f$ SELECT ('x' || lpad(substr(replace(u::text, '-', ''), 1, 12), 16, '0'))::bit(64)::bigint $f$;
CREATE TABLE pg_temp.made (what text, id uuid, at_ms bigint);

-- a guest's checkout through the storefront
SET ROLE regress_ids_front;
SELECT shop.cart_create() AS guest_cart \gset
SELECT shop.cart_add(:'guest_cart', :p1, 2) IS NOT NULL AS added;
SELECT shop.checkout(:'guest_cart', 'tok_visa', 'ids-guest') AS guest_order \gset
RESET ROLE;
INSERT INTO pg_temp.made VALUES ('cart', :'guest_cart', (extract(epoch FROM now()) * 1000)::bigint),
                                ('order', :'guest_order', (extract(epoch FROM now()) * 1000)::bigint);
INSERT INTO pg_temp.made
SELECT 'payment', payment_id, (extract(epoch FROM now()) * 1000)::bigint FROM shop.payment WHERE order_id = :'guest_order';
-- holds keep random version 4 ids (a hot product's holds would all go to
-- the newest leaves of its range of reservation_pkey): the checkout's and
-- one made directly
SELECT shop.reserve(:p2, 1, 'ids-hold', '1 hour') AS hold \gset
SELECT count(*) AS holds, count(*) FILTER (WHERE pg_temp.v(r) = 4 AND pg_temp.variant_ok(r)) AS v4
  FROM (SELECT DISTINCT reservation_id AS r FROM shop.reservation WHERE ref = 'order:' || :'guest_order'
        UNION ALL SELECT :'hold'::uuid) h;
-- version 7, the RFC variant, and the time of the transaction that made it,
-- rounded down to its window of 65,536 ms (the clock is read when the id
-- is made: a second of slack)
SELECT what, pg_temp.v(id) AS version, pg_temp.variant_ok(id) AS variant_ok,
       pg_temp.ms(id) % 65536 = 0 AS window_start,
       pg_temp.ms(id) BETWEEN at_ms - 65536 - 1000 AND at_ms + 1000 AS time_now
  FROM pg_temp.made ORDER BY what;

-- ids made later never sort before earlier ones by their time (one per
-- transaction, 20 ms apart), and none repeats among 10,000 made at once
SELECT shop.cart_create() AS c1 \gset
SELECT pg_sleep(0.02);
SELECT shop.cart_create() AS c2 \gset
SELECT pg_sleep(0.02);
SELECT shop.cart_create() AS c3 \gset
SELECT pg_temp.ms(:'c1') <= pg_temp.ms(:'c2') AND pg_temp.ms(:'c2') <= pg_temp.ms(:'c3') AS ordered;
SELECT count(*) AS made, count(DISTINCT u) AS distinct_ids,
       count(*) FILTER (WHERE pg_temp.v(u) = 7 AND pg_temp.variant_ok(u)) AS v7
  FROM (SELECT shop._new_id() AS u FROM generate_series(1, 10000)) s;
-- 74 bits are random: of the 80 bits after the milliseconds, all but the
-- version's 4 and the variant's 2 take both values among 1,000 ids
-- (get_bit numbers a byte's bits from its lowest: the version is bits
-- 52-55, the variant bits 70 and 71)
WITH ids AS (SELECT uuid_send(shop._new_id()) AS b FROM generate_series(1, 1000)),
bits AS (SELECT i, get_bit(b, i) AS v FROM ids, generate_series(48, 127) i
          WHERE i NOT BETWEEN 52 AND 55 AND i NOT IN (70, 71))
SELECT count(*) AS random_bits FROM (SELECT i FROM bits GROUP BY i HAVING min(v) = 0 AND max(v) = 1) s;

-- an id the caller gives is kept as given: the router's cart ids carry
-- their bucket in the last 16 bits
SELECT shop._cart_create_with_id('6f1c2a3b-4d5e-4f60-8a7b-0000000012ab', 7) AS routed_cart;
SELECT cart_id FROM shop.cart WHERE cart_id = '6f1c2a3b-4d5e-4f60-8a7b-0000000012ab';

DROP OWNED BY regress_ids_front;
DROP ROLE regress_ids_front;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
