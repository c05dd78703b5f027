-- server_log: what reaches the server log.  Reads the log file that make
-- test's cluster writes next to its data directory (scripts/test.sh) with
-- its log_line_prefix, so it is left out of `make installcheck` (a server
-- of your own logs elsewhere: the Makefile's REGRESS_SERVER_LOG).  The
-- masking is shop's log hook, active in every backend that loaded shop
-- (make test's cluster preloads it, as docs/security.md says to).
\i sql/include/prelude.sql

------------------------------------------------------------------------------
-- 1. A card number refused in a checkout argument never reaches the log:
--    the failing statement is not logged (docs/payments.md)
------------------------------------------------------------------------------
SELECT shop.product_upsert('MUG', 'Coffee mug', 1000) AS mug \gset
SELECT shop.stock_set(:mug, 10);
SELECT shop.cart_create(10) AS cc \gset
SELECT shop.cart_add(:'cc', :mug);
\set VERBOSITY default
SELECT shop.checkout(:'cc', 'tok_visa', 'log-check', '{"note": "card 4000 0566 5566 5556"}');
\set VERBOSITY terse
SELECT pg_read_file(current_setting('data_directory') || '/../server.log') AS log \gset
SELECT position('card number refused' IN :'log') > 0 AS error_logged,
       position('4000056655665556' IN replace(replace(:'log', ' ', ''), '-', '')) = 0 AS number_not_logged,
       position('log-check' IN :'log') = 0 AS statement_not_logged;

------------------------------------------------------------------------------
-- 2. The server log: statements failing before shop's checks are masked
------------------------------------------------------------------------------
SELECT pg_read_file(current_setting('data_directory') || '/../server.log') AS log_before \gset
\set VERBOSITY default
SELECT * FROM shop.search('cards-log-1 4111111111111111', lim => 0);
SELECT shop.reserve(1, 0, 'cards-log-2 4111111111111111');
SELECT shop.cart_create(customer_id => '3530111333300000x');
SELECT 'cards-log-3 ' || 1 / 0 || E' 4111\u200B1111\u200B1111\u200B1111';
SELECT 'cards-log-5 ' || 1 / 0 || E' \uFF14\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11';
DO $$ BEGIN RAISE WARNING 'cards-log-4 %', '5555-5555-5555-4444' USING DETAIL = 'd 6011 1111 1111 1117', HINT = 'h 3782 822463 10005'; END $$;
-- cards typed with other separators (card7, the list rule): masked too
SELECT 'cards-log-6 ' || 1 / 0 || ' 4111/1111/1111/1111 5555_5555_5555_4444 6011|0009|9130|0009';
SELECT 'cards-log-7 ' || 1 / 0 || ' 4111,1111,1111,1111 4111+1111+1111+1111 card:3782:822463:10005';
DO $$ BEGIN RAISE WARNING 'cards-log-8 %', '4242_4242_4242_4242' USING DETAIL = 'd 5555/5555/5555/4444'; END $$;
\set VERBOSITY terse
SELECT substr(pg_read_file(current_setting('data_directory') || '/../server.log'), length(:'log_before') + 1) AS log \gset
-- the statements are logged, masked; the last four digits stay
SELECT logged FROM (
    SELECT regexp_replace(line, '^\S+ \S+ \S+ \[\d+\] \S+ ', '') AS logged
      FROM regexp_split_to_table(:'log', E'\n') line
     WHERE line ~ 'cards-log-|STATEMENT:.*cart_create|bigint: "|DETAIL:  d |HINT:  h ') l
 ORDER BY logged COLLATE "C";
-- no card number in any line, whatever its separators and digits
SELECT count(*) AS lines_with_a_card FROM regexp_split_to_table(:'log', E'\n') line
 WHERE shop.contains_card_number(line);

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
