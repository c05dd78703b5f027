/* shop--1.0--1.1.sql: update shop from 1.0 to 1.1.
 *
 * 1.1 has no install script of its own: CREATE EXTENSION shop runs
 * shop--1.0.sql and then this file, so a fresh install and an update of a
 * 1.0 install run the very same statements and end with the same objects
 * (test/upgrade checks that, object by object). shop--1.0.sql never
 * changes again; everything new or changed since 1.0 goes here, in the
 * subsystem sections below, and docs/upgrading.md says what each release
 * changed for users.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION shop UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- Security: card numbers (issue 10) -----------------------------------------
--
-- One detector (src/textutil.c) for the argument checks, a guard trigger on
-- every shop table that stores text, and log redaction (src/redact.c, active
-- when shop is loaded; preload it: docs/security.md).
------------------------------------------------------------------------------

COMMENT ON FUNCTION shop._card_number_check(text, text) IS
'internal: raise SH005 (card_number_refused) if value holds a card number (brand IIN and length, Luhn; docs/security.md); "what" names the argument';
COMMENT ON FUNCTION shop._card_number_check(jsonb, text) IS
'internal: raise SH005 (card_number_refused) if any key, string or number of value holds a card number';
COMMENT ON FUNCTION shop.contains_card_number(text) IS
'true when value holds a payment card number: a brand''s IIN and length, Luhn-valid, unbroken or grouped as cards are written (docs/security.md)';

CREATE FUNCTION shop.contains_card_number(value jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_contains_card_number_any'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop.contains_card_number(jsonb) IS
'true when any key, string or number of value holds a payment card number';

CREATE FUNCTION shop.contains_card_number(value text[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_contains_card_number_any'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop.contains_card_number(text[]) IS
'true when any element of value holds a payment card number';

CREATE FUNCTION shop._holds_card_number(value anyelement)
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_contains_card_number_any'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop._holds_card_number(anyelement) IS
'internal: true when a value of any type the card guard reads (text-like, jsonb, arrays and domains of them) holds a card number; NULL for other types';

CREATE FUNCTION shop.redact_card_numbers(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_redact_card_numbers'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop.redact_card_numbers(text) IS
'value with every card number masked as in the server log: its digits become *, the last four stay';

CREATE FUNCTION shop._card_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'shop_card_guard'
LANGUAGE C;
COMMENT ON FUNCTION shop._card_guard() IS
'internal: BEFORE INSERT OR UPDATE row trigger; raises SH005 when a text, jsonb or text[] column of the row holds a card number';
REVOKE EXECUTE ON FUNCTION shop._card_guard() FROM PUBLIC;

CREATE FUNCTION shop._card_guard_reads(type regtype)
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_card_guard_reads'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop._card_guard_reads(regtype) IS
'internal: true when the card guard reads columns of this type';

-- The columns the guard reads: every column of a table in schema shop whose
-- type the guard understands.  The guard trigger goes on each such table,
-- and sql/cards.sql fails when a column that can hold text is not covered.
CREATE FUNCTION shop._card_columns()
RETURNS TABLE (table_name regclass, column_name name, column_type regtype)
LANGUAGE sql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT c.oid::regclass, a.attname, a.atttypid::regtype
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid
     WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p')
       AND a.attnum > 0 AND NOT a.attisdropped
       AND shop._card_guard_reads(a.atttypid)
     ORDER BY c.oid, a.attnum
$$;
COMMENT ON FUNCTION shop._card_columns() IS
'internal: the columns of shop''s tables that the card guard reads';

-- The guard itself, on every table with such a column.  Named to sort after
-- every other BEFORE trigger (they fire in name order), so that it sees the
-- row as it is stored; ENABLE ALWAYS keeps it on under
-- session_replication_role = replica.  A section of this script (or a
-- later update script) that creates a table with text columns after this
-- point runs SELECT shop._card_guard_install(); again: sql/cards.sql fails
-- otherwise.
CREATE FUNCTION shop._card_guard_install()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT DISTINCT c.table_name FROM shop._card_columns() c
              WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g
                                 WHERE g.tgrelid = c.table_name AND g.tgname = 'zz_card_guard') LOOP
        EXECUTE format('CREATE TRIGGER zz_card_guard BEFORE INSERT OR UPDATE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION shop._card_guard()', t);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_card_guard', t);
    END LOOP;
END
$$;
COMMENT ON FUNCTION shop._card_guard_install() IS
'internal: puts the card guard trigger on every table of schema shop with a text-like column that lacks it';
REVOKE EXECUTE ON FUNCTION shop._card_guard_install() FROM PUBLIC;
SELECT shop._card_guard_install();

-- Card numbers stored before 1.1: counted per column, never printed; one
-- pass over each table.
CREATE FUNCTION shop.card_number_scan()
RETURNS TABLE (table_name regclass, column_name name, rows bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    t record;
    counts bigint[];
BEGIN
    FOR t IN SELECT c.table_name AS tab, array_agg(c.column_name ORDER BY c.column_name) AS cols
               FROM shop._card_columns() c GROUP BY c.table_name ORDER BY c.table_name LOOP
        EXECUTE format('SELECT ARRAY[%s] FROM %s',
                       (SELECT string_agg(format('count(*) FILTER (WHERE shop._holds_card_number(%I))', col), ', '
                                          ORDER BY ord)
                          FROM unnest(t.cols) WITH ORDINALITY u(col, ord)),
                       t.tab) INTO counts;
        FOR i IN 1 .. cardinality(t.cols) LOOP
            IF counts[i] > 0 THEN
                table_name := t.tab;
                column_name := t.cols[i];
                rows := counts[i];
                RETURN NEXT;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION shop.card_number_scan() IS
'columns of shop''s tables that hold card numbers (stored before 1.1 refused them), with the number of rows; the numbers are not shown';
REVOKE EXECUTE ON FUNCTION shop.card_number_scan() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.card_number_scan() TO shop_admin;

-- Updating a 1.0 database that already holds card numbers: the update goes
-- through (refusing it would leave the numbers where they are, unguarded),
-- and says where they are; docs/security.md says how to remove them.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT format('%I.%I.%I', n.nspname, c.relname, s.column_name) AS col, s.rows
               FROM shop.card_number_scan() s
               JOIN pg_class c ON c.oid = s.table_name
               JOIN pg_namespace n ON n.oid = c.relnamespace LOOP
        RAISE WARNING 'card numbers stored in column %', r.col
            USING DETAIL = format('Rows holding one: %s. shop 1.1 refuses new card numbers; these were stored before.', r.rows),
                  HINT = 'Mask them with shop.redact_card_numbers() and VACUUM FULL the table: see "Card numbers stored before 1.1" in docs/security.md.';
    END LOOP;
END
$$;
