-- search_log_ring: with shop preloaded, a search writes nothing (no XID,
-- no row): its record waits in a shared-memory ring until the sweeper, or
-- a search finding half the ring in use, moves the records into
-- shop.search_log in one INSERT (issue 12)
\i sql/include/prelude.sql

INSERT INTO shop.product (sku, title, brand, price_cents)
SELECT 'R' || g, 'Ring product ' || g || CASE WHEN g % 2 = 0 THEN ' laptop' ELSE ' cable' END, 'Acme', 100 * g
  FROM generate_series(1, 40) g;
SELECT shop._search_log_flush() >= 0 AS flushed_earlier_records;
DELETE FROM shop.search_log;

-- a search is a read: no transaction id, no row
BEGIN;
SELECT count(*) AS found FROM shop.search('laptop');
SELECT txid_current_if_assigned() IS NULL AS no_xid;
COMMIT;
SELECT count(*) AS found FROM shop.search('cable', '{"price_max": 2000}', 'price_asc', 5);
SELECT count(*) AS found FROM shop.search('nothing-like-this');
BEGIN READ ONLY;
SELECT count(*) AS found FROM shop.search('laptop', lim => 3);
COMMIT;
SELECT count(*) AS rows_in_table FROM shop.search_log;
-- the monitor counts what waits in the ring
SELECT * FROM shop.monitor_search();
SELECT buffered >= 4 AS buffered, capacity FROM shop._search_log_stats();

-- the sweep writes them out, in order, with everything 1.0 logged
SELECT shop.sweep() -> 'search_log_flushed' AS flushed;
SELECT query, query_folded, filters, sort, results, duration_ms >= 0 AS timed, customer_id
  FROM shop.search_log ORDER BY logged_at, query;
SELECT * FROM shop.monitor_search();
SELECT shop.sweep() -> 'search_log_flushed' AS flushed_again;

-- filters too long for a ring slot are logged as truncated, not cut
SELECT count(*) AS found
  FROM shop.search('laptop', jsonb_build_object('attributes', jsonb_build_object('note', repeat('x', 600))));
SELECT shop._search_log_flush() AS flushed;
SELECT filters FROM shop.search_log WHERE filters ? 'truncated';

-- a busy shop never waits for the sweeper: a search that finds half the
-- ring in use writes the records out itself
DO $$
BEGIN
    FOR i IN 1 .. (SELECT capacity FROM shop._search_log_stats()) / 2 + 10 LOOP
        PERFORM count(*) FROM shop.search('ring');
    END LOOP;
END $$;
SELECT count(*) >= (SELECT capacity FROM shop._search_log_stats()) / 2 AS written_without_sweep
  FROM shop.search_log WHERE query = 'ring';
SELECT buffered < 100 AS few_left FROM shop._search_log_stats();

-- records of an install dropped since never reach a new one
SELECT count(*) AS found FROM shop.search('laptop');
DROP EXTENSION shop;
SET client_min_messages = warning;
CREATE EXTENSION shop;
RESET client_min_messages;
SELECT shop._search_log_flush() AS flushed_into_new_install;
SELECT count(*) AS rows_in_new_table FROM shop.search_log;

-- nobody but the owner reads or writes the ring (other shoppers' searches)
SET ROLE shop_storefront;
SELECT pg_temp.err($$SELECT * FROM shop._search_log_take('shop.search_log')$$);
SELECT pg_temp.err($$SELECT shop._search_log_flush()$$);
SELECT pg_temp.err($$SELECT shop._search_log_add('shop.search_log', 'x', '{}', 'relevance', 0, 0, NULL)$$);
RESET ROLE;
SET ROLE shop_admin;
SELECT pg_temp.err($$SELECT * FROM shop._search_log_take('shop.search_log')$$);
RESET ROLE;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
