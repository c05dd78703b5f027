-- hostile_search_prior_args: shop.search_prior_for (shop_admin) answered
-- a NULL query, a NULL lim, lim 0 or -1 with no rows, as it answers a
-- query nobody searched, and took lim 2,000,000,000: a caller could not
-- tell a mistake from a query without evidence.  Now a NULL query is
-- 22004 and a lim outside 1 to 1000 is 22023 "limit out of range", as
-- every other list of shop (docs/errors.md).
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_admin;
RESET client_min_messages;
CREATE ROLE regress_hostile_admin LOGIN IN ROLE shop_admin;
INSERT INTO shop.product (sku, title, price_cents, status)
VALUES ('C1', 'Acme USB cable', 500, 'active'), ('C2', 'Zeta USB cable', 900, 'active');
SELECT product_id AS c2 FROM shop.product WHERE sku = 'C2' \gset
-- three customers search "usb cable" and buy C2 five minutes later
INSERT INTO shop.search_log (logged_at, query, query_folded, sort, results, duration_ms, customer_id)
SELECT now() - interval '10 minutes', 'usb cable', 'usb cable', 'relevance', 2, 1, c FROM generate_series(1, 3) c;
WITH o AS (
    INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents, created_at)
    SELECT c, 'paid', 'USD', 900, 900, now() - interval '5 minutes' FROM generate_series(1, 3) c
    RETURNING order_id)
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT o.order_id, 1, :c2, 'C2', 'Zeta USB cable', 900, 1 FROM o;
SELECT shop.refresh_search_prior() ->> 'products' AS prior_products;

SET ROLE regress_hostile_admin;
-- the query with evidence, and one without
SELECT kind, id = :c2 AS is_c2, customers FROM shop.search_prior_for('usb cable');
SELECT count(*) AS no_evidence FROM shop.search_prior_for('hdmi cable');
SELECT count(*) AS lim_one FROM shop.search_prior_for('USB  Cable', 1);
-- the bad arguments
SELECT a AS args, pg_temp.err(format('SELECT * FROM shop.search_prior_for(%s)', a)) AS search_prior_for
  FROM unnest(ARRAY['NULL', '''usb cable'', NULL', '''usb cable'', 0', '''usb cable'', -1',
                    '''usb cable'', 1001', '''usb cable'', 2000000000', 'NULL, NULL']) a;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT * FROM shop.search_prior_for('usb cable', -1);
\set VERBOSITY terse
\set SHOW_CONTEXT errors
RESET ROLE;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_admin;
