-- read_only: a read-only transaction (BEGIN READ ONLY,
-- default_transaction_read_only, every transaction of a hot standby)
-- refuses shop's writes with 25006, also those shop makes from C without
-- a statement (a hold's stock row and reservation, the cart's lock, the
-- idempotency claim, the cart's lines), and keeps nothing of them
\i sql/include/prelude.sql
SELECT shop.product_upsert('RO-1', 'Read-only widget', 1000) AS p1 \gset
SELECT shop.stock_set(:p1, 10) AS available;
SELECT shop.cart_create(7) AS cart \gset
SELECT shop.cart_add(:'cart', :p1, 2) IS NOT NULL AS added;

BEGIN READ ONLY;
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 3)', :p1)) AS reserve;
SELECT pg_temp.err(format($$SELECT shop.reserve_many('[{"product_id": %s, "qty": 1}]')$$, :p1)) AS reserve_many;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'ro-1')$$, :'cart')) AS checkout;
COMMIT;

SET default_transaction_read_only = on;
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 1)', :p1)) AS reserve;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'ro-2')$$, :'cart')) AS checkout;
RESET default_transaction_read_only;

-- nothing was written
SELECT on_hand, reserved FROM shop.stock WHERE product_id = :p1;
SELECT (SELECT count(*) FROM shop.reservation) AS reservations,
       (SELECT count(*) FROM shop."order") AS orders,
       (SELECT count(*) FROM shop.idempotency) AS keys,
       (SELECT sum(qty) FROM shop.cart_item WHERE cart_id = :'cart') AS cart_units;

-- outside it the same calls write
SELECT shop.reserve(:p1, 3) IS NOT NULL AS held;
SELECT shop.checkout(:'cart', 'tok_visa', 'ro-1') IS NOT NULL AS placed;
SELECT on_hand, reserved FROM shop.stock WHERE product_id = :p1;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
