-- saga_recover: shop._saga_open (the router's saga_recover, every minute
-- on every customer shard) lists the sagas a router left unfinished and the
-- orders whose stock has not followed their status.  A shard keeps a saga
-- row for every order the router ever placed: the pass read all of them
-- and joined each to its order (issue 16, the plan audit's "noticed").  It
-- reads the open ones only, by an index the order transitions keep exact.
\i sql/include/prelude.sql
-- a single node has no trigger on its order transitions for sagas (it has
-- none); shop._shard_setup, run by the router's cluster_setup, creates it
SELECT count(*) AS saga_triggers FROM pg_trigger WHERE tgname = 'saga_order_status';
SELECT shop._saga_recover_setup() AS made, shop._saga_recover_setup() AS made_again;
SELECT shop.product_upsert('MUG', 'Coffee mug', 1200) AS mug \gset
SELECT shop.stock_set(:mug, 1000);

-- one saga of each kind, through the steps the router calls; 'stripe:'
-- tokens leave the order pending for the gateway
CREATE FUNCTION pg_temp.saga(label text, customer bigint, token text, place boolean)
RETURNS uuid LANGUAGE plpgsql AS $f$
DECLARE
    o uuid := md5('saga_recover:' || label)::uuid;
    c uuid := shop.cart_create(customer);
BEGIN
    PERFORM shop.cart_add(c, (SELECT product_id FROM shop.product WHERE sku = 'MUG'));
    PERFORM shop._saga_begin(o, c, token, 'recover-' || label, NULL);
    IF place THEN
        PERFORM shop._saga_place(o, ARRAY[(SELECT product_id FROM shop.product WHERE sku = 'MUG')],
                                 ARRAY['MUG'], ARRAY['Coffee mug'], ARRAY[1200]::bigint[], ARRAY[1], token, NULL);
    END IF;
    RETURN o;
END $f$;
CREATE FUNCTION pg_temp.go(label text, VARIADIC steps text[]) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    o uuid := md5('saga_recover:' || label)::uuid;
    s text;
BEGIN
    FOREACH s IN ARRAY steps LOOP
        IF s IN ('done', 'failed') THEN
            PERFORM shop._saga_finish(o, s);
        ELSIF s IN ('committed', 'released') THEN
            PERFORM shop._saga_stock(o, s);
        ELSE
            PERFORM shop.order_transition(o, s);
        END IF;
    END LOOP;
    RETURN (SELECT g.status || '/' || g.stock || '/' || coalesce(o2.status, '-')
              FROM shop.saga g LEFT JOIN shop."order" o2 ON o2.order_id = g.order_id
             WHERE g.order_id = o);
END $f$;
SELECT count(pg_temp.saga(l, c, t, p)) AS sagas
  FROM (VALUES ('started', 1, 'tok_visa', false), ('placed', 2, 'tok_visa', true),
               ('held_shipped', 3, 'tok_visa', true), ('held_cancelled', 4, 'tok_visa', true),
               ('committed_returned', 5, 'tok_visa', true), ('committed_refunded', 6, 'tok_visa', true),
               ('done_pending', 7, 'stripe:pm_recover7', true),
               ('held_paid', 8, 'tok_visa', true), ('committed_delivered', 9, 'tok_visa', true),
               ('released_cancelled', 10, 'tok_visa', true), ('failed', 11, 'tok_visa', false),
               ('returned_refunded', 12, 'tok_visa', true),
               ('pending_paid', 13, 'stripe:pm_recover13', true)) v(l, c, t, p);
-- saga/stock/order after each case's steps
SELECT pg_temp.go('held_shipped', 'done', 'fulfilling', 'shipped');
SELECT pg_temp.go('held_cancelled', 'done', 'cancelled');
SELECT pg_temp.go('committed_returned', 'done', 'fulfilling', 'shipped', 'committed', 'delivered', 'returned');
SELECT pg_temp.go('committed_refunded', 'done', 'fulfilling', 'shipped', 'committed', 'delivered', 'returned',
                  'refunded');
SELECT pg_temp.go('done_pending', 'done');
SELECT pg_temp.go('held_paid', 'done');
SELECT pg_temp.go('committed_delivered', 'done', 'fulfilling', 'shipped', 'committed', 'delivered');
SELECT pg_temp.go('released_cancelled', 'done', 'cancelled', 'released');
SELECT pg_temp.go('failed', 'failed');
SELECT pg_temp.go('returned_refunded', 'done', 'fulfilling', 'shipped', 'committed', 'delivered', 'returned');
SELECT shop._saga_stock(md5('saga_recover:returned_refunded')::uuid, 'returned');
SELECT pg_temp.go('returned_refunded', 'refunded');
-- a pending order the gateway settled: nothing to recover
SELECT pg_temp.go('pending_paid', 'done', 'paid');

CREATE TEMP TABLE label AS
SELECT md5('saga_recover:' || l)::uuid AS order_id, l AS label
  FROM unnest(ARRAY['started', 'placed', 'held_shipped', 'held_cancelled', 'committed_returned',
                    'committed_refunded', 'done_pending', 'held_paid', 'committed_delivered',
                    'released_cancelled', 'failed', 'returned_refunded', 'pending_paid']) l;
-- every kind of open saga is listed, nothing else
SELECT l.label, s.status, s.stock, s.order_status
  FROM shop._saga_open('0 seconds') s JOIN label l USING (order_id)
 ORDER BY l.label;
-- none is older than an hour
SELECT count(*) AS older_than_an_hour FROM shop._saga_open('1 hour');

-- a shard's history: 5,000 orders the router placed, delivered long ago,
-- their sagas done and their stock committed (as the saga steps and the
-- transitions left them), analyzed
SET session_replication_role = replica;
INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents,
                          shipping_cents, tax_cents, total_cents, fraud_score, was_paid,
                          idempotency_key, event_count, created_at, updated_at)
SELECT md5('saga_recover_old' || g)::uuid, 100 + g % 1000, 100 + g % 1000, 'shipped', 'USD', 1200, 0, 0, 1200,
       0, true, 'sr-' || g, 4, now() - interval '1 day' * (g % 90 + 1), now() - interval '1 day' * (g % 90 + 1)
  FROM generate_series(1, 5000) g;
INSERT INTO shop.saga (order_id, scope, key, cart_id, customer_id, customer_key, product_ids, qtys, status,
                       stock, created_at, updated_at)
SELECT md5('saga_recover_old' || g)::uuid, 'c:' || (100 + g % 1000), 'sr-' || g,
       md5('saga_recover_cart' || g)::uuid, 100 + g % 1000, 100 + g % 1000, ARRAY[:mug]::bigint[], ARRAY[1],
       'done', 'held', now() - interval '1 day' * (g % 90 + 1), now() - interval '1 day' * (g % 90 + 1)
  FROM generate_series(1, 5000) g;
RESET session_replication_role;
UPDATE shop."order" SET status = 'delivered' WHERE idempotency_key LIKE 'sr-%';
UPDATE shop.saga SET stock = 'committed' WHERE key LIKE 'sr-%';
ANALYZE shop.saga, shop."order";

-- rows of shop.saga and shop."order" and entries of order_pkey one recovery
-- pass reads (the transaction's own counters): the open sagas, not the
-- shard's history
CREATE FUNCTION pg_temp.reads() RETURNS TABLE (rel text, n bigint) LANGUAGE sql AS $f$
    SELECT c.relname::text,
           pg_stat_get_xact_tuples_returned(c.oid) + coalesce(pg_stat_get_xact_tuples_fetched(c.oid), 0)
      FROM pg_class c
     WHERE c.relnamespace = 'shop'::regnamespace AND c.relname IN ('saga', 'order', 'order_pkey')
$f$;
BEGIN;
CREATE TEMP TABLE before_pass AS SELECT * FROM pg_temp.reads();
SELECT count(*) AS open_sagas FROM shop._saga_open('0 seconds');
SELECT a.rel, a.n - b.n < 100 AS under_100_reads
  FROM pg_temp.reads() a JOIN before_pass b USING (rel)
 ORDER BY a.rel;
COMMIT;

-- an old saga whose order the back office then returns is open again, at
-- once (the router's saga_recover runs as shop_admin)
SET ROLE shop_admin;
SELECT shop.order_transition(md5('saga_recover_old17')::uuid, 'returned') AS returned;
SELECT count(*) AS old_open FROM shop._saga_open('0 seconds') s
 WHERE s.order_id = md5('saga_recover_old17')::uuid AND s.order_status = 'returned';
SELECT count(*) AS open_sagas FROM shop._saga_open('0 seconds');
-- the router finishes the return: closed again
SELECT shop._saga_stock(md5('saga_recover_old17')::uuid, 'returned');
SELECT count(*) AS open_sagas FROM shop._saga_open('0 seconds');
RESET ROLE;

-- a write that fires no trigger (replica role) leaves order_status behind:
-- the saga is missed until order_status is brought level by the repair
-- statement of docs/scale-out.md, run here as the page has it (read from
-- the page: the two cannot drift)
SET session_replication_role = replica;
UPDATE shop."order" SET status = 'returned' WHERE order_id = md5('saga_recover_old18')::uuid;
RESET session_replication_role;
SELECT count(*) AS old18_open FROM shop._saga_open('0 seconds') WHERE order_id = md5('saga_recover_old18')::uuid;
\set repair `awk 'BEGIN { q = sprintf("%c%c%c", 96, 96, 96) } /^bring them level \(as the shard.s owner/ { f = 1; next } f && $0 == q "sql" { b = 1; next } b && index($0, q) == 1 { exit } b { print }' docs/scale-out.md`
SELECT :'repair' ~ '^UPDATE shop[.]saga g SET order_status = o[.]status' AS repair_documented;
:repair
SELECT count(*) AS old18_open FROM shop._saga_open('0 seconds') WHERE order_id = md5('saga_recover_old18')::uuid;

-- without the trigger (a node never made a shard), _saga_open reads every
-- saga and lists the same sagas by their orders' own status
CREATE TEMP TABLE listed AS SELECT order_id FROM shop._saga_open('0 seconds');
DROP TRIGGER saga_order_status ON shop."order";
SET session_replication_role = replica;
UPDATE shop."order" SET status = 'returned' WHERE order_id = md5('saga_recover_old19')::uuid;
RESET session_replication_role;
SELECT count(*) AS listed_untracked,
       count(*) FILTER (WHERE order_id NOT IN (SELECT order_id FROM listed)) AS new_ones
  FROM shop._saga_open('0 seconds');
-- creating it again brings order_status level: the same list by the index
SELECT shop._saga_recover_setup() AS made;
SELECT count(*) AS listed_tracked FROM shop._saga_open('0 seconds');

-- the trigger (C, src/saga.c) does what its statement did,
--   UPDATE shop.saga SET order_status = NEW.status WHERE <the order's saga>:
-- a status set to itself leaves the saga row alone
CREATE TEMP TABLE old20 AS
SELECT xmin::text AS x FROM shop.saga WHERE order_id = md5('saga_recover_old20')::uuid;
UPDATE shop."order" SET status = status WHERE order_id = md5('saga_recover_old20')::uuid;
SELECT g.xmin::text = o.x AS saga_untouched
  FROM shop.saga g, old20 o WHERE g.order_id = md5('saga_recover_old20')::uuid;
-- a statement of the transitions' user that updates several orders
-- updates each one's saga, and only theirs
UPDATE shop."order" SET status = 'returned'
 WHERE order_id IN (md5('saga_recover_old21')::uuid, md5('saga_recover_old22')::uuid);
SELECT count(*) FILTER (WHERE order_status = 'returned') AS sagas_returned,
       count(*) FILTER (WHERE order_status = 'delivered') AS sagas_delivered
  FROM shop.saga WHERE key LIKE 'sr-%';
-- a rule on shop.saga is kept: the statement runs (the rule's row is logged)
CREATE TABLE public.saga_rule_log (order_id uuid, order_status text);
CREATE RULE saga_log AS ON UPDATE TO shop.saga
    DO ALSO INSERT INTO public.saga_rule_log VALUES (NEW.order_id, NEW.order_status);
UPDATE shop."order" SET status = 'refunded' WHERE order_id = md5('saga_recover_old21')::uuid;
SELECT order_id = md5('saga_recover_old21')::uuid AS old21, order_status FROM public.saga_rule_log;
DROP RULE saga_log ON shop.saga;
DROP TABLE public.saga_rule_log;
SELECT order_status FROM shop.saga WHERE order_id = md5('saga_recover_old21')::uuid;
-- an order of one node's checkout (no saga), delivered
SET session_replication_role = replica;
INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents,
                          shipping_cents, tax_cents, total_cents, fraud_score, was_paid,
                          idempotency_key, event_count)
VALUES (md5('saga_recover_nosaga')::uuid, 99, 99, 'delivered', 'USD', 1200, 0, 0, 1200, 0, true, 'sr-nosaga', 4);
RESET session_replication_role;
-- a user who may update an order's status but not the sagas is refused,
-- as the statement refuses it, whether the order has a saga or not (a
-- back-office clerk outside shop's roles, who bypasses shop's row security)
CREATE ROLE saga_recover_clerk BYPASSRLS;
GRANT USAGE ON SCHEMA shop TO saga_recover_clerk;
GRANT SELECT, UPDATE (status) ON shop."order" TO saga_recover_clerk;
GRANT EXECUTE ON FUNCTION shop._order_attributable(text) TO saga_recover_clerk;
SET ROLE saga_recover_clerk;
SELECT pg_temp.err($$UPDATE shop."order" SET status = 'returned'
                      WHERE order_id = md5('saga_recover_old23')::uuid$$) AS routed;
SELECT pg_temp.err($$UPDATE shop."order" SET status = 'returned'
                      WHERE order_id = md5('saga_recover_nosaga')::uuid$$) AS no_saga;
RESET ROLE;
SELECT order_status FROM shop.saga WHERE order_id = md5('saga_recover_old23')::uuid;
-- with UPDATE of order_status and SELECT on shop.saga, the clerk's
-- transition keeps the saga as the back office's does
GRANT SELECT (order_id, customer_key), UPDATE (order_status) ON shop.saga TO saga_recover_clerk;
SET ROLE saga_recover_clerk;
SELECT pg_temp.err($$UPDATE shop."order" SET status = 'returned'
                      WHERE order_id = md5('saga_recover_old23')::uuid$$) AS routed;
SELECT pg_temp.err($$UPDATE shop."order" SET status = 'returned'
                      WHERE order_id = md5('saga_recover_nosaga')::uuid$$) AS no_saga;
RESET ROLE;
SELECT o.status, g.order_status
  FROM shop."order" o LEFT JOIN shop.saga g USING (order_id)
 WHERE o.order_id IN (md5('saga_recover_old23')::uuid, md5('saga_recover_nosaga')::uuid)
 ORDER BY o.idempotency_key;
REVOKE ALL ON shop.saga, shop."order" FROM saga_recover_clerk;
REVOKE ALL ON FUNCTION shop._order_attributable(text) FROM saga_recover_clerk;
REVOKE ALL ON SCHEMA shop FROM saga_recover_clerk;
DROP ROLE saga_recover_clerk;

-- a transition that keeps what recovery reads of the status (paid to
-- fulfilling: not shipped, returned or pending) updates the saga row HOT:
-- saga_recover_idx reads order_stage, not order_status, so no index gets
-- a new entry (room on the row's page made by VACUUM)
VACUUM shop.saga;
SET ROLE shop_admin;
BEGIN;
CREATE TEMP TABLE saga_upd AS
SELECT pg_stat_get_xact_tuples_updated('shop.saga'::regclass) AS upd,
       pg_stat_get_xact_tuples_hot_updated('shop.saga'::regclass) AS hot;
SELECT shop.order_transition(md5('saga_recover:held_paid')::uuid, 'fulfilling') AS fulfilling;
SELECT pg_stat_get_xact_tuples_updated('shop.saga'::regclass) - upd AS saga_updates,
       pg_stat_get_xact_tuples_hot_updated('shop.saga'::regclass) - hot AS hot_updates
  FROM saga_upd;
COMMIT;
RESET ROLE;
SELECT order_status, order_stage FROM shop.saga WHERE order_id = md5('saga_recover:held_paid')::uuid;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
