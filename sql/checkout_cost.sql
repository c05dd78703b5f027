-- checkout_cost: the work a checkout leaves out (issue 11).
-- The experiment attribution trigger (order_experiment) queues an event,
-- and runs its PL/pgSQL at commit, only while an order could be
-- attributed: an experiment runs, or stopped less than its attribution
-- window (and an hour) ago.  track_functions counts the trigger's calls;
-- SET CONSTRAINTS ... IMMEDIATE fires what the checkout queued before the
-- count is read, in the checkout's own transaction.
\i sql/include/prelude.sql
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'CC-' || g, 'Cost product ' || g, 1000 FROM generate_series(1, 3) g;
SELECT count(shop.stock_set(g, 1000)) AS stocked FROM generate_series(1, 3) g;
SET track_functions = 'all';
-- the trigger's calls counted so far by this backend (not yet flushed to
-- the statistics: a difference of two readings is what happened between)
CREATE FUNCTION pg_temp.trg_calls() RETURNS bigint LANGUAGE sql AS $f$
    SELECT coalesce(sum(f.calls), 0)::bigint FROM pg_stat_xact_user_functions f
     WHERE f.schemaname = 'shop' AND f.funcname = '_experiment_order_trg'
$f$;
-- a paid checkout of customer c; how often the trigger ran for it, and
-- how many purchases it attributed
CREATE FUNCTION pg_temp.checkout_calls(c bigint, OUT trigger_calls bigint, OUT purchases bigint)
LANGUAGE plpgsql AS $f$
DECLARE cart uuid := shop.cart_create(c);
        o uuid;
        before bigint := pg_temp.trg_calls();
BEGIN
    PERFORM shop.cart_add(cart, 1);
    PERFORM shop.cart_add(cart, 2);
    o := shop.checkout(cart, 'tok_visa', 'cost-' || c);
    SET CONSTRAINTS shop.order_experiment IMMEDIATE;
    trigger_calls := pg_temp.trg_calls() - before;
    SELECT count(*) INTO purchases FROM shop.experiment_outcome x WHERE x.order_id = o;
    SET CONSTRAINTS shop.order_experiment DEFERRED;
END $f$;

-- no experiment at all: the trigger does not run
SELECT * FROM pg_temp.checkout_calls(1);
-- an experiment running: it runs, and attributes a listed product
SELECT shop.experiment_create('cost', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]', '1 day') IS NOT NULL AS created;
INSERT INTO shop.experiment_impression (experiment_id, variant, unit, surface, products)
SELECT experiment_id, 0, '2', 'recommend', ARRAY[1::bigint] FROM shop.experiment WHERE name = 'cost';
SELECT * FROM pg_temp.checkout_calls(2);
-- stopped 2 hours ago, window 1 day: impressions may still be in it
SELECT shop.experiment_stop('cost') IS NOT NULL AS stopped;
UPDATE shop.experiment SET stopped_at = now() - interval '2 hours';
INSERT INTO shop.experiment_impression (experiment_id, variant, unit, surface, products, shown_at)
SELECT experiment_id, 0, '3', 'recommend', ARRAY[2::bigint], now() - interval '3 hours'
  FROM shop.experiment WHERE name = 'cost';
SELECT * FROM pg_temp.checkout_calls(3);
-- stopped 2 days ago with a 1-day window: nothing can be attributed, the
-- trigger does not run
UPDATE shop.experiment SET stopped_at = now() - interval '2 days';
SELECT * FROM pg_temp.checkout_calls(4);
-- the window made longer: it runs again (the change is seen at once)
UPDATE shop.experiment SET attribution_window = '7 days';
SELECT * FROM pg_temp.checkout_calls(5);
-- every experiment gone: it does not run
DELETE FROM shop.experiment;
SELECT * FROM pg_temp.checkout_calls(6);
-- a running experiment, and the same as the storefront would see it
SELECT shop.experiment_create('cost2', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS created;
SELECT * FROM pg_temp.checkout_calls(7);
TRUNCATE shop.experiment CASCADE;
SELECT * FROM pg_temp.checkout_calls(8);
-- a pending order (a gateway token) is not counted: the trigger is not
-- queued by its insert whatever the experiments (as before)
SELECT shop.experiment_create('cost3', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS created;
SELECT shop.cart_create(9) AS cart9 \gset
SELECT shop.cart_add(:'cart9', 1) IS NOT NULL AS added;
BEGIN;
SELECT pg_temp.trg_calls() AS before \gset
SELECT shop.checkout(:'cart9', 'stripe:pm_cost9', 'cost-9') IS NOT NULL AS ordered;
SET CONSTRAINTS shop.order_experiment IMMEDIATE;
SELECT pg_temp.trg_calls() - :before AS trigger_calls;
COMMIT;

-- The order's lines, payments and events have no foreign key to the
-- order in 1.1 (shop writes them with their order); deleting an order
-- still removes them, as the keys' ON DELETE CASCADE did, and so does
-- TRUNCATE.
SELECT (SELECT count(*) FROM shop."order") AS orders, (SELECT count(*) FROM shop.order_line) AS lines,
       (SELECT count(*) FROM shop.payment) AS payments, (SELECT count(*) FROM shop.order_event) AS events;
DELETE FROM shop."order" WHERE customer_id IN (1, 2);
SELECT (SELECT count(*) FROM shop."order") AS orders, (SELECT count(*) FROM shop.order_line) AS lines,
       (SELECT count(*) FROM shop.payment) AS payments, (SELECT count(*) FROM shop.order_event) AS events;
SELECT count(*) AS orphans FROM shop.order_line l
 WHERE NOT EXISTS (SELECT FROM shop."order" o WHERE o.order_id = l.order_id);
TRUNCATE shop."order";
SELECT (SELECT count(*) FROM shop."order") AS orders, (SELECT count(*) FROM shop.order_line) AS lines,
       (SELECT count(*) FROM shop.payment) AS payments, (SELECT count(*) FROM shop.order_event) AS events;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
