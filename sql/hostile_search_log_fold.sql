-- hostile_search_log_fold: shop.search refused a card number in its query
-- as the detector reads it, but the search log also stores the query
-- folded (shop._search_fold: every character that is not a letter or a
-- digit becomes a space).  '4111_1111_1111_1111' or '4111/1111/1111/1111'
-- is no card to the detector ('_' and '/' are no card separators) and
-- '4111 1111 1111 1111' once folded: a storefront's search went into the
-- ring, and the next flush (the sweeper's round, or whichever customer's
-- search found the ring half full) failed on the guard of
-- search_log.query_folded with SH005: shop.sweep() failed as a whole
-- (carts, holds, recommendations not swept) and every record taken from
-- the ring, other customers' searches too, was lost.  Now the search
-- refuses a query whose folded form holds a card number (SH005, naming
-- query), and the flush leaves out a record it could not store instead of
-- failing.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SELECT count(shop.product_upsert('MUG-' || n, 'Mug ' || n, 900 + n)) AS mugs FROM generate_series(1, 3) n;
SELECT shop.sweep() ? 'search_log_flushed' AS swept_before;

SET ROLE regress_hostile_front;
SELECT count(*) AS mugs_found FROM shop.search('mug');
-- each separator the fold turns into a space: refused as the query itself
SELECT s AS query, pg_temp.err(format('SELECT count(*) FROM shop.search(%L)', s)) AS search
  FROM unnest(ARRAY['4111_1111_1111_1111', '4111/1111/1111/1111', 'mug 5555+5555+5555+4444',
                    '3782:822463:10005', '4111    1111 1111 1111', '4111•1111•1111•1111']) s;
-- a query whose folded form is no card is still searched
SELECT count(*) AS dates_found FROM shop.search('mug 2026/12/07');
RESET ROLE;

-- the sweep runs, and the log holds the storefront's two searches and
-- nothing else (whether this sweep or the sweeper wrote them)
SELECT shop.sweep() ? 'search_log_flushed' AS swept;
SELECT query, query_folded FROM shop.search_log ORDER BY query;
SELECT count(*) AS card_rows FROM shop.search_log
 WHERE shop.contains_card_number(query) OR shop.contains_card_number(query_folded);

-- a record the flush cannot store (put into the ring by hand: shop.search
-- refuses it now) is left out; the others are written and the sweep runs
SELECT shop._search_log_add('shop.search_log', 'cup', '{}', 'relevance', 1, 1.0, NULL) IS NOT NULL AS ring;
SELECT shop._search_log_add('shop.search_log', '4111_1111_1111_1111', '{}', 'relevance', 0, 1.0, NULL) IS NOT NULL AS ring;
SELECT shop._search_log_add('shop.search_log', 'plate', '{}', 'relevance', 2, 1.0, NULL) IS NOT NULL AS ring;
SELECT shop.sweep() ? 'search_log_flushed' AS swept_around_card;
SELECT query FROM shop.search_log ORDER BY query;
SELECT count(*) AS left_in_ring FROM shop._search_log_take('shop.search_log', NULL, true);

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
