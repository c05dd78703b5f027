-- hostile_experiment_variants: shop.experiment_create took a variant's
-- name from any JSON value, spelt as text by ->>: "name": true, 1.50,
-- [1] or {"x": 1} made variants named true, 1.50, [1] and {"x": 1}
-- (shown by experiment_assign, recommend's impressions and the report).
-- docs/recommendations.md says a variant has a name; now a name that is
-- not a JSON string is 22023 invalid variant, and nothing of the
-- experiment is kept.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_admin;
RESET client_min_messages;
CREATE ROLE regress_hostile_admin LOGIN IN ROLE shop_admin;

SET ROLE regress_hostile_admin;
SELECT n AS name, pg_temp.err(format('SELECT shop.experiment_create(%L, %L)', 'exp ' || n,
           format('[{"name": "control", "share": 0.5}, {"name": %s, "share": 0.5}]', n))) AS experiment_create
  FROM unnest(ARRAY['true', '1.50', '-0', '[1]', '{"x": 1}', 'null']) n;
-- nothing of them is kept
SELECT count(*) AS experiments FROM shop.experiment;
SELECT count(*) AS variants FROM shop.experiment_variant;
-- a string name, as before
SELECT shop.experiment_create('exp ok', '[{"name": "control", "share": 0.5}, {"name": "1.50", "share": 0.5}]')
       -> 'variants' -> 1 ->> 'name' AS second_variant;
SELECT e.name, v.name AS variant FROM shop.experiment e JOIN shop.experiment_variant v USING (experiment_id)
 ORDER BY v.variant;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT shop.experiment_create('exp bad', '[{"name": "control", "share": 0.5}, {"name": {"x": 1}, "share": 0.5}]');
\set VERBOSITY terse
\set SHOW_CONTEXT errors
RESET ROLE;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_admin;
