-- hostile_event_names: a consumer group's name and its consumer's are
-- shown by shop.event_groups (group_name, leased_to) and are the
-- consumer_group label of the monitor_* metrics that Prometheus and
-- Grafana display.  shop.event_claim checked their length and card
-- numbers, not control characters: a consumer (shop_admin) created the
-- group E'g\x1b[31m' and leased a batch to E'c\x1b[2J'.  Now 22023 as for
-- the other names (docs/security.md, promise 4), and nothing is created.
-- And shop.event_group_drop(NULL) answered false where docs/operations.md
-- says a NULL group is 22004, as event_claim and event_ack answer.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_admin;
RESET client_min_messages;
CREATE ROLE regress_hostile_admin LOGIN IN ROLE shop_admin;
SELECT count(*) AS first_claim FROM shop.event_claim('mailer', 'm1');
SELECT shop._emit('h4.one', '{"n": 1}') > 0 AS emitted;

CREATE TEMP TABLE names (n int, what text, name text);
INSERT INTO names VALUES
    (1, 'plain', 'mailer-2'),
    (2, 'an escape sequence', E'g\x1b[31m'),
    (3, 'a line feed', E'mailer\n3'),
    (4, 'a C1 control', E'mail\u0085er'),
    (5, 'a tab', E'mailer\t5'),
    (6, 'accented', 'mailer-é');
GRANT SELECT ON names TO PUBLIC;

SET ROLE regress_hostile_admin;
SELECT n, what, pg_temp.err(format('SELECT count(*) FROM shop.event_claim(%L, %L)', name, 'm1')) AS as_group,
       pg_temp.err(format('SELECT count(*) FROM shop.event_claim(%L, %L)', 'mailer', name)) AS as_consumer
  FROM names ORDER BY n;
-- the groups made, and the consumer the batch is leased to (the last good one)
SELECT group_name, batch_out, leased_to FROM shop.event_groups ORDER BY group_name;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT count(*) FROM shop.event_claim(E'g\x1b[31m');
\set VERBOSITY terse
-- a NULL group is 22004 for every call of the consumer API (event_group_drop
-- answered false); a group that does not exist is false for the drop
SELECT pg_temp.err($$SELECT count(*) FROM shop.event_claim(NULL)$$) AS claim_null,
       pg_temp.err($$SELECT shop.event_ack(NULL, 1)$$) AS ack_null,
       pg_temp.err($$SELECT shop.event_group_drop(NULL)$$) AS drop_null;
SELECT shop.event_group_drop('no-such-group') AS drop_missing, shop.event_group_drop('mailer-2') AS dropped;
RESET ROLE;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_admin;
