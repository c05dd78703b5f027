-- hostile_event_ack: shop.event_ack of a consumer group that does not
-- exist (a misspelt name, or a group another admin dropped) returned
-- false, which docs/operations.md says means "acknowledged already": the
-- consumer went on, its batch stayed out and came back (redelivered) at
-- every claim, for ever.  Now SH006 "consumer group not found"; false
-- still means acknowledged already, or not the group's batch out.
\i sql/include/prelude.sql

SELECT count(*) AS first_claim FROM shop.event_claim('mailer', 'm1');
SELECT shop._emit('h3.one', '{"n": 1}') > 0 AS emitted;
SELECT batch_id, topic, redelivered FROM shop.event_claim('mailer', 'm1');
-- the misspelt group: refused, and the batch is still out
SELECT pg_temp.err($$SELECT shop.event_ack('mailr', 1)$$) AS misspelt;
SELECT group_name, batch_id, batch_out FROM shop.event_groups;
-- the right name: acknowledged once; then false (acknowledged already), and
-- false for a batch never handed out
SELECT shop.event_ack('mailer', 1) AS acked, shop.event_ack('mailer', 1) AS again,
       shop.event_ack('mailer', 7) AS not_out;
SELECT count(*) AS nothing_left FROM shop.event_claim('mailer', 'm1');
-- a dropped group: refused as well
SELECT shop.event_group_drop('mailer') AS dropped;
SELECT pg_temp.err($$SELECT shop.event_ack('mailer', 1)$$) AS dropped_group;
-- the name is not shown in the error (it is not checked for card numbers)
\set VERBOSITY default
SELECT shop.event_ack('4111 1111 1111 1111', 1);
\set VERBOSITY terse

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
