-- prelude of every regression test (\i sql/include/prelude.sql): a fresh
-- shop, terse errors, and err(q), which runs q and shows its SQLSTATE and
-- message (q runs in a subtransaction: nothing it wrote survives an error)
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $f$;
