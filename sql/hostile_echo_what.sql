-- hostile_echo_what: shop._echo_value(value, what), which the storefront
-- may call (shop.browse and shop._search_global_check are invoker's
-- functions that show a refused value through it), wrote what as given
-- into SH005's detail when value held a card number: an escape sequence
-- or 100,000 characters went into the error (and the server log).  Now
-- what must be an argument's name (1 to 63 of a-z, 0-9, _): 22023
-- otherwise, without echoing it.
\i sql/include/prelude.sql
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_echo_store;
RESET client_min_messages;
CREATE ROLE regress_echo_store LOGIN IN ROLE shop_storefront;
-- SQLSTATE, and the error's detail: its length and whether it holds ESC
CREATE FUNCTION pg_temp.echo(v text, w text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    d text;
BEGIN
    RETURN shop._echo_value(v, w);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' ' || SQLERRM || ' (detail: ' || length(d) || ' characters'
           || CASE WHEN strpos(d, chr(27)) > 0 THEN ', escape sequence' ELSE '' END || ')';
END $f$;
GRANT EXECUTE ON FUNCTION pg_temp.echo(text, text) TO regress_echo_store;

SET ROLE regress_echo_store;
SELECT left(w, 12) AS what, length(w) AS length, pg_temp.echo('4111 1111 1111 1111', w) AS answer
  FROM (VALUES (E'sort\x1b[2J'), (repeat('a', 100000)), (''), ('Sort'), ('sort order'),
               ('a' || repeat('b', 63))) v(w)
 ORDER BY length(w), w;
-- names as the callers give them: the value shown, or SH005 naming it
SELECT pg_temp.echo(E'price\x1b[31m', 'sort') AS shown,
       pg_temp.echo('4111 1111 1111 1111', 'sort') AS card,
       pg_temp.echo('x', 'a' || repeat('b', 62)) AS longest_name;
SELECT pg_temp.err($$SELECT * FROM shop.browse(1, E'x\x1b[2J')$$) AS browse_bad_sort;
RESET ROLE;

DROP FUNCTION pg_temp.echo(text, text);
DROP EXTENSION shop CASCADE;
DROP ROLE regress_echo_store;
