-- hostile_echo_values: the errors that name the value they refuse showed
-- it as given.  A storefront's sort (search, browse, a sorted scan), a
-- search query's or search statistics' unknown key (search_scan,
-- search_stats), a query language other than the index's (search_scan)
-- and an unknown stemming language (stem, search_tokens, search_head)
-- holding a card number answered 22023 with the number in the message or
-- detail (masked only by the preloaded log hook, and only when the error
-- is logged), and an escape sequence there went out raw.
-- Now a card number is SH005 naming the argument, as any argument of
-- shop (docs/security.md), and control characters are shown escaped;
-- other values are shown as before.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
SELECT shop.category_add('Mugs') AS cat \gset
SELECT shop.product_upsert('MUG-1', 'Mug', 900, category_id => :cat) IS NOT NULL AS product;

CREATE FUNCTION pg_temp.detail(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    m text;
    d text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || m || ' / ' || left(coalesce(d, ''), 40);
END $f$;

SET ROLE regress_hostile_front;
SELECT c.call, v.what, pg_temp.detail(format(c.q, v.x)) AS result
  FROM (VALUES ('search sort', 'SELECT * FROM shop.search(''mug'', ''{}'', %L)'),
               ('browse sort', 'SELECT * FROM shop.browse(' || :cat || ', %L)'),
               ('sorted scan sort', 'SELECT * FROM shop._search_sorted(''shop.product_search_idx'', ''{"q": "mug"}'', %L, 5)'),
               ('search_scan key', 'SELECT * FROM shop.search_scan(''shop.product_search_idx'', jsonb_build_object(''q'', ''mug'', %L, 1), 5)'),
               ('search_scan language', 'SELECT * FROM shop.search_scan(''shop.product_search_idx'', jsonb_build_object(''q'', ''mug'', ''language'', %L), 5)'),
               ('search_stats key', 'SELECT shop.search_stats(''mug'', ''{}'', jsonb_build_object(%L, 1))'),
               ('stem language', 'SELECT shop.stem(''mugs'', %L)'),
               ('search_tokens language', 'SELECT * FROM shop.search_tokens(''mugs'', %L)')) c(call, q),
       (VALUES ('card', '4111 1111 1111 1111'), ('card, dashes', '5555-5555-5555-4444'),
               ('escape', E'x\x1b[2J'), ('plain', 'cheapest')) v(what, x)
 ORDER BY c.call, v.what;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT * FROM shop.search('mug', '{}', '4111 1111 1111 1111');
SELECT * FROM shop.browse(:cat, E'price\x1b[2J');
\set VERBOSITY terse
\set SHOW_CONTEXT errors
RESET ROLE;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
