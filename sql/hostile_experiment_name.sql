-- hostile_experiment_name: an experiment name that no experiment has is
-- echoed in SH006's detail ("No experiment is named '...'").  A
-- storefront's recommend, also_bought or experiment_assign, and the back
-- office's experiment_stop and experiment_report, given a card number as
-- the experiment, answered SH006 with the number in the detail, and an
-- escape sequence there went into it raw; experiment_create echoed a
-- refused variant (a card number in any of its values) and the name.
-- docs/security.md promises that no error of shop repeats a card number
-- whatever the settings (the log hook masks only with the preload, and
-- only what is logged), and docs/errors.md SH005 for a card in any
-- argument.  Now a card number is SH005 naming the argument and a control
-- character 22023 (shown escaped), before SH006; the names that exist
-- cannot hold either, so a found experiment costs nothing more.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
DROP ROLE IF EXISTS regress_hostile_admin;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
CREATE ROLE regress_hostile_admin LOGIN IN ROLE shop_admin;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.product_upsert('MUG-1', 'Mug', 900) AS p1 \gset
SELECT shop.session_token(501) AS t501 \gset

SET ROLE regress_hostile_admin;
SELECT shop.experiment_create('reco-1', '[{"name": "control", "share": 0.5}, {"name": "b", "share": 0.5}]')
       -> 'experiment' AS created;
RESET ROLE;

SET ROLE regress_hostile_front;
SELECT shop.session_begin(:'t501') AS customer;
-- the experiment that exists, as before
SELECT count(*) >= 0 AS listed FROM shop.recommend(501, 5, 'reco-1');
SELECT count(*) AS assigned FROM shop.experiment_assign('reco-1', 501);
-- names no experiment has: a card number, an escape sequence, a plain one
SELECT c.call, x AS experiment, pg_temp.err(format(c.q, x)) AS result
  FROM (VALUES ('recommend', 'SELECT * FROM shop.recommend(501, 5, %L)'),
               ('also_bought', 'SELECT * FROM shop.also_bought(' || :p1 || ', 5, %L)'),
               ('experiment_assign', 'SELECT * FROM shop.experiment_assign(%L, 501)')) c(call, q),
       unnest(ARRAY['4111 1111 1111 1111', '5555-5555-5555-4444', E'\x1b[2Jreco', 'reco-2']) x
 ORDER BY c.call, x;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT * FROM shop.recommend(501, 5, '4111 1111 1111 1111');
SELECT * FROM shop.recommend(501, 5, E'reco\x1b[2J');
SELECT * FROM shop.recommend(501, 5, 'reco-2');
\set VERBOSITY terse
\set SHOW_CONTEXT errors
RESET ROLE;

SET ROLE regress_hostile_admin;
SELECT c.call, x AS experiment, pg_temp.err(format(c.q, x)) AS result
  FROM (VALUES ('experiment_stop', 'SELECT shop.experiment_stop(%L)'),
               ('experiment_report', 'SELECT * FROM shop.experiment_report(%L)')) c(call, q),
       unnest(ARRAY['4111 1111 1111 1111', E'\x1b[2Jreco', 'reco-2']) x
 ORDER BY c.call, x;
-- experiment_create: a card number in the name or in any value of a
-- variant is SH005 naming the argument (the refused variant was echoed)
SELECT a AS args, pg_temp.err(format('SELECT shop.experiment_create(%s)', a)) AS experiment_create
  FROM unnest(ARRAY[
    $$'4111 1111 1111 1111', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]'$$,
    $$'reco-1', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "k": "4111 1111 1111 1111"}]'$$,
    $$'reco-3', '[{"name": "a", "share": 0.5}, {"name": "b", "share": "5555 5555 5555 4444"}]'$$,
    $$'reco-4', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 4111111111111111}]'$$,
    $$'reco-5', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "method": "nope"}]'$$]) a;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT shop.experiment_create('reco-3', '[{"name": "a", "share": 0.5}, {"name": "b", "share": "5555 5555 5555 4444"}]');
\set VERBOSITY terse
SELECT name FROM shop.experiment ORDER BY name;
RESET ROLE;

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
DROP ROLE regress_hostile_admin;
