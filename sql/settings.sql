-- settings: the SQL of shop reads each shop.* setting through shop._guc,
-- so that its default is written once, in C (src/shop.c), and cannot drift
\i sql/include/prelude.sql

-- every function and view of shop, with the text SQL reads a setting in
CREATE TEMP VIEW code AS
SELECT p.oid::regprocedure::text AS obj, p.prosrc AS body
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')
UNION ALL
SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
  FROM pg_class c
 WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind IN ('v', 'm');

-- 1. No function or view repeats a default in SQL: none reads a shop.*
-- setting with current_setting(name, true) and a COALESCE, or with
-- shop._setting(name, default).  (shop._search_query, the search's query
-- preparation, is left to its owner; its default is checked in 2.)
SELECT obj, m[1] AS setting
  FROM code, regexp_matches(body, '(?:current_setting|_setting)\(''(shop\.\w+)''', 'g') m
 WHERE obj <> 'shop._search_query(text,jsonb,bigint)'
 ORDER BY 1, 2;

-- 2. Where SQL still writes a default (shop._search_query), it is the C
-- default (boot_val, in the unit of the setting): NULL, nothing drifted.
CREATE TEMP VIEW sql_default AS
SELECT obj, m[1] AS setting, m[2] AS written
  FROM code, regexp_matches(body,
           '(?:current_setting\(''(shop\.\w+)''(?:::text)?, true\), ''([^'']*)''|_setting\(''(shop\.\w+)''(?:::text)?, ''([^'']*)'')',
           'g') r,
       LATERAL (SELECT ARRAY[coalesce(r[1], r[3]), coalesce(r[2], r[4])]) x(m);
SELECT string_agg(d.obj || ' ' || d.setting || ' ' || d.written || ' <> ' || s.boot_val || coalesce(s.unit, ''), '; ')
           FILTER (WHERE s.name IS NULL OR CASE
                   WHEN s.unit = 's' THEN d.written::interval <> s.boot_val::int * interval '1 second'
                   WHEN s.vartype IN ('integer', 'real') THEN d.written::numeric <> s.boot_val::numeric
                   ELSE d.written <> s.boot_val END) AS drifted
  FROM sql_default d LEFT JOIN pg_settings s ON s.name = d.setting;

-- 3. Every setting SQL reads through shop._guc is defined in C, and
-- shop._guc reads what SHOW shows: its C default unless the server's
-- configuration sets it.
CREATE TEMP VIEW guc_read AS
SELECT DISTINCT m[1] AS setting
  FROM code, regexp_matches(body, '_guc\(''(shop\.\w+)''', 'g') m;
CREATE FUNCTION pg_temp.show(setting text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE v text;
BEGIN
    EXECUTE format('SHOW %I', setting) INTO v;
    RETURN v;
END $f$;
SELECT count(*) >= 10 AS many_read,
       string_agg(g.setting, ', ' ORDER BY g.setting) FILTER (WHERE s.name IS NULL) AS not_in_c,
       string_agg(g.setting, ', ' ORDER BY g.setting)
           FILTER (WHERE CASE WHEN s.name IS NULL THEN false
                         ELSE shop._guc(g.setting) IS DISTINCT FROM pg_temp.show(g.setting) END) AS not_as_shown,
       string_agg(g.setting, ', ' ORDER BY g.setting)
           FILTER (WHERE s.source = 'default' AND s.setting IS DISTINCT FROM s.boot_val) AS not_c_default
  FROM guc_read g LEFT JOIN pg_settings s ON s.name = g.setting;
-- a session's own value is what the functions read
SET shop.recent_views_cap = 7;
SELECT shop._guc('shop.recent_views_cap') AS cap;
RESET shop.recent_views_cap;
SELECT shop._guc('shop.recent_views_cap') = (SELECT boot_val FROM pg_settings WHERE name = 'shop.recent_views_cap') AS c_default;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
