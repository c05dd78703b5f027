-- hostile_deactivation_setting: the cached recommendation lists are served
-- while shop.product_deactivation.n has the value they were computed with
-- (docs/recommendations.md).  Its trigger counted a transaction once by a
-- transaction-local setting, shop_internal.product_deactivated, and any
-- role could SET it for its session: every later archive in that backend
-- left the counter where it was, and the lists holding the archived
-- product kept being served.  Now the trigger reads no setting: the row
-- written by this transaction is the record (shop._xact_wrote(xmin)).
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_deact_admin;
RESET client_min_messages;
CREATE ROLE regress_deact_admin LOGIN IN ROLE shop_admin;
SELECT count(shop.product_upsert('DA-' || k, 'Product ' || k, 100 * k)) AS made
  FROM generate_series(1, 6) k;
CREATE FUNCTION pg_temp.deact() RETURNS bigint LANGUAGE sql AS $f$
    SELECT coalesce((SELECT n FROM shop.product_deactivation), 0);
$f$;
SELECT pg_temp.deact() AS d0 \gset

SET ROLE regress_deact_admin;
-- the setting, as a session setting and as a transaction's: no effect
SET shop_internal.product_deactivated = 'on';
SELECT shop.product_upsert('DA-1', 'Product 1', 100, status => 'archived') IS NOT NULL AS archived_1;
RESET ROLE;
SELECT pg_temp.deact() - :d0 AS moved_with_session_setting;
SELECT pg_temp.deact() AS d0 \gset
SET ROLE regress_deact_admin;
BEGIN;
SET LOCAL shop_internal.product_deactivated = 'on';
SELECT shop.product_upsert('DA-2', 'Product 2', 200, status => 'archived') IS NOT NULL AS archived_2;
COMMIT;
RESET ROLE;
SELECT pg_temp.deact() - :d0 AS moved_with_local_setting;
RESET shop_internal.product_deactivated;
SELECT pg_temp.deact() AS d0 \gset

-- still once per transaction: three archives in one, one in a kept
-- savepoint and one after it, one in a rolled-back savepoint and one after
BEGIN;
UPDATE shop.product SET status = 'archived' WHERE sku IN ('DA-3', 'DA-4');
UPDATE shop.product SET status = 'draft' WHERE sku = 'DA-5';
COMMIT;
SELECT pg_temp.deact() - :d0 AS moved_once_for_three;
SELECT sku, status FROM shop.product WHERE sku LIKE 'DA-%' ORDER BY sku;
UPDATE shop.product SET status = 'active' WHERE sku LIKE 'DA-%';
SELECT pg_temp.deact() AS d0 \gset
BEGIN;
SAVEPOINT s;
UPDATE shop.product SET status = 'archived' WHERE sku IN ('DA-1', 'DA-2');
RELEASE SAVEPOINT s;
UPDATE shop.product SET status = 'archived' WHERE sku = 'DA-3';
COMMIT;
SELECT pg_temp.deact() - :d0 AS moved_with_kept_savepoint;
SELECT pg_temp.deact() AS d0 \gset
BEGIN;
SAVEPOINT s;
UPDATE shop.product SET status = 'archived' WHERE sku = 'DA-4';
ROLLBACK TO SAVEPOINT s;
UPDATE shop.product SET status = 'archived' WHERE sku = 'DA-5';
COMMIT;
SELECT pg_temp.deact() - :d0 AS moved_after_rolled_back_savepoint;
-- the helper is internal
SELECT has_function_privilege('regress_deact_admin', 'shop._xact_wrote(xid)', 'EXECUTE') AS admin_may_call;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_deact_admin;
