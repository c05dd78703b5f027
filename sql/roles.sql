-- roles: the documented roles (docs/security.md) make every call the docs
-- give them, as those roles (SET ROLE), and get 42501 for every call the
-- docs do not give them: the storefront flow (browse, product page, search,
-- facets, autocomplete, did you mean, cart, checkout, order history,
-- recommendations) as shop_storefront, the back office as shop_admin
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_roles_front, regress_roles_office, regress_roles_nobody, regress_roles_monitor;
RESET client_min_messages;
CREATE ROLE regress_roles_front LOGIN IN ROLE shop_storefront;
CREATE ROLE regress_roles_office LOGIN IN ROLE shop_admin;
CREATE ROLE regress_roles_nobody LOGIN;
CREATE ROLE regress_roles_monitor LOGIN IN ROLE shop_monitor;
SET shop.session_secret = 'a server secret of at least thirty-two characters';

-- The roles table of docs/security.md, call by call: who may execute what.
-- Every function of schema shop that is not internal (a leading
-- underscore) or one of the shop_search access method's own functions
-- (whose use is governed by SELECT on the indexed table, docs/search.md)
-- is in this table.
CREATE TEMP TABLE documented (fn regprocedure PRIMARY KEY, storefront boolean, admin boolean);
INSERT INTO documented VALUES
    -- catalog (docs/catalog.md)
    ('shop.browse(bigint,text,int,int)', true, true),
    ('shop.product_get(bigint)', true, true),
    ('shop.category_descendants(bigint)', true, true),
    ('shop.category_path(bigint)', true, true),
    ('shop.review_add(bigint,bigint,int,text,text)', true, true),
    ('shop.review_delete(bigint,bigint)', true, true),
    ('shop.category_add(text,bigint)', false, true),
    ('shop.product_upsert(text,text,bigint,text,text,bigint,jsonb,text[],text,bigint)', false, true),
    -- search (docs/search.md)
    ('shop.search(text,jsonb,text,int,int,bigint)', true, true),
    ('shop.search_facets(text,jsonb)', true, true),
    ('shop.search_facets(text,jsonb,int)', true, true),
    ('shop.search_facets(text,jsonb,int,int)', true, true),
    ('shop.autocomplete(text,int)', true, true),
    ('shop.did_you_mean(text)', true, true),
    ('shop.search_stats(text,jsonb,jsonb)', true, true),
    ('shop.search_cache_stats()', true, true),
    ('shop.search_last_scan()', true, true),
    ('shop.stem(text,text)', true, true),
    ('shop.synonym_add(text,text[])', false, true),
    ('shop.synonym_remove(text)', false, true),
    ('shop.refresh_search_prior()', false, true),
    ('shop.refresh_search_vocab()', false, true),
    ('shop.search_prior_for(text,int)', false, true),
    -- cart (docs/cart.md)
    ('shop.cart_create(bigint)', true, true),
    ('shop.cart_add(uuid,bigint,int)', true, true),
    ('shop.cart_set_qty(uuid,bigint,int)', true, true),
    ('shop.cart_remove(uuid,bigint)', true, true),
    ('shop.cart_save_for_later(uuid,bigint)', true, true),
    ('shop.cart_move_to_cart(uuid,bigint)', true, true),
    ('shop.cart_clear(uuid)', true, true),
    ('shop.cart_get(uuid)', true, true),
    ('shop.cart_merge(uuid,bigint)', true, true),
    -- orders and payments (docs/orders.md, docs/payments.md)
    ('shop.checkout(uuid,text,text,jsonb)', true, true),
    ('shop.order_get(uuid)', true, true),
    ('shop.orders_for(bigint,int,timestamptz)', true, true),
    ('shop.payment_method_add(bigint,text,text,text,int,int)', true, true),
    ('shop.contains_card_number(text)', true, true),
    ('shop.contains_card_number(jsonb)', true, true),
    ('shop.contains_card_number(text[])', true, true),
    ('shop.redact_card_numbers(text)', true, true),
    ('shop.card_number_scan()', false, true),
    ('shop.order_transition(uuid,text,text)', false, true),
    ('shop.order_ship(uuid,text,text)', false, true),
    ('shop.order_review(uuid,boolean)', false, true),
    ('shop.payment_confirm(uuid,text)', false, true),
    ('shop.payment_fail(uuid,text)', false, true),
    -- sessions (docs/security.md)
    ('shop.session_begin(text)', true, true),
    ('shop.session_end()', true, true),
    ('shop.current_customer()', true, true),
    ('shop.session_token(bigint,interval)', false, true),
    -- inventory (docs/inventory.md)
    ('shop.stock_available(bigint)', true, true),
    ('shop.stock_set(bigint,int,text)', false, true),
    ('shop.stock_adjust(bigint,int,text,text)', false, true),
    ('shop.stock_set_buckets(bigint,int)', false, true),
    ('shop.stock_set_reorder_threshold(bigint,int)', false, true),
    ('shop.reserve(bigint,int,text,interval)', false, true),
    ('shop.reserve_many(jsonb,text,interval)', false, true),
    ('shop.reservation_release(uuid)', false, true),
    ('shop.reservation_commit(uuid)', false, true),
    ('shop.reservation_extend(uuid,interval)', false, true),
    -- recommendations (docs/recommendations.md)
    ('shop.also_bought(bigint,int,text,bigint,text)', true, true),
    ('shop.similar_products(bigint,int)', true, true),
    ('shop.trending(bigint,int)', true, true),
    ('shop.recommend(bigint,int,text)', true, true),
    ('shop.view(bigint,bigint)', true, true),
    ('shop.recently_viewed(bigint,int)', true, true),
    ('shop.refresh_recommendations()', false, true),
    ('shop.rebuild_recommendations()', false, true),
    ('shop.popularity_sync(int)', false, true),
    ('shop.experiment_bucket(text,text)', true, true),
    ('shop.experiment_assign(text,bigint,text)', true, true),
    ('shop.experiment_create(text,jsonb,interval)', false, true),
    ('shop.experiment_stop(text)', false, true),
    ('shop.experiment_report(text,float8)', false, true),
    ('shop.reco_evaluate(int,int)', false, true),
    -- operations (docs/operations.md)
    ('shop.sweep()', false, true),
    ('shop.metrics()', false, true),
    ('shop.event_claim(text,text,int,interval)', false, true),
    ('shop.event_ack(text,bigint)', false, true),
    ('shop.event_group_drop(text)', false, true),
    -- monitoring (docs/operations.md, "Monitoring with Prometheus"); also shop_monitor's
    ('shop.monitor_orders()', false, true),
    ('shop.monitor_orders_pending()', false, true),
    ('shop.monitor_payments()', false, true),
    ('shop.monitor_payment_failures()', false, true),
    ('shop.monitor_stock()', false, true),
    ('shop.monitor_search_latency()', false, true),
    ('shop.monitor_search()', false, true),
    ('shop.monitor_sweep()', false, true),
    ('shop.monitor_outbox()', false, true),
    ('shop.monitor_event_groups()', false, true),
    ('shop.monitor_recommendations()', false, true);

-- functions the table does not classify (none: add new calls to the table
-- and to docs/security.md)
SELECT p.oid::regprocedure AS unclassified
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace
   AND p.proname !~ '^_'
   AND p.proname !~ '^search_(scan|verify|index_info|tokens|head|doc|match|distance|handler)$'
   AND p.oid NOT IN (SELECT fn FROM documented)
 ORDER BY 1;
-- EXECUTE as documented (none differ)
SELECT d.fn, d.storefront, has_function_privilege('regress_roles_front', d.fn, 'EXECUTE') AS front_has,
       d.admin, has_function_privilege('regress_roles_office', d.fn, 'EXECUTE') AS admin_has
  FROM documented d
 WHERE d.storefront IS DISTINCT FROM has_function_privilege('regress_roles_front', d.fn, 'EXECUTE')
    OR d.admin IS DISTINCT FROM has_function_privilege('regress_roles_office', d.fn, 'EXECUTE')
 ORDER BY 1;
-- a role outside both has nothing: no USAGE on the schema
SELECT has_schema_privilege('regress_roles_nobody', 'shop', 'USAGE') AS nobody_usage;
-- shop_monitor may call the monitor functions and nothing else that
-- PUBLIC may not, and reads no table or view of shop
SELECT p.oid::regprocedure AS monitor_may_call
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace
   AND has_function_privilege('regress_roles_monitor', p.oid, 'EXECUTE')
   AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT c.oid::regclass AS monitor_may_read
  FROM pg_class c
 WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
   AND has_table_privilege('regress_roles_monitor', c.oid, 'SELECT');
-- no internal function is both SECURITY DEFINER and executable by the
-- storefront, but the shard-side steps the router calls for it, which
-- authorize the cart's customer or check another shard's signature
-- themselves (docs/security.md, "Through the router"), and the router's
-- autocomplete, similar_products, also_bought and recommend steps, which
-- read what the public calls read, and the customers-like-you and
-- experiment steps, which authorize the customer or check the signature
-- of the customer's shard, and the router's search and facet steps, which
-- check the cluster's sums and set the superuser-only shop.search_global
-- for the call (hostile4)
SELECT p.oid::regprocedure AS internal_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace AND p.proname ~ '^_' AND p.prosecdef
   AND p.prorettype <> 'trigger'::regtype
   AND has_function_privilege('regress_roles_front', p.oid, 'EXECUTE')
 ORDER BY 1;

-- A catalog, stock, synonyms, and order history, made by a trusted caller.
SELECT shop.category_add('Laptops') AS cat \gset
SELECT shop.product_upsert('LP-1', 'ThinkPad X1 Carbon', 149900, brand => 'Lenovo', category_id => :cat,
                           description => 'Light business laptop') AS p1 \gset
SELECT shop.product_upsert('LP-2', 'ThinkPad T14', 99900, brand => 'Lenovo', category_id => :cat) AS p2 \gset
SELECT shop.product_upsert('LP-3', 'ThinkPad E16', 69900, brand => 'Lenovo', category_id => :cat) AS p3 \gset
SELECT count(shop.stock_set(p, 100)) AS stocked FROM unnest(ARRAY[:p1, :p2, :p3]::bigint[]) p;
SELECT shop.synonym_add('laptop', ARRAY['notebook']);
-- (did_you_mean draws on the index's merged vocabulary)
VACUUM shop.product;
-- customers 601-606 bought two laptops together (co-purchases for also_bought)
DO $$
DECLARE c bigint; cart uuid;
BEGIN
    FOR c IN SELECT generate_series(601, 606) LOOP
        cart := shop.cart_create(c);
        PERFORM shop.cart_add(cart, p.product_id, 1)
           FROM shop.product p WHERE p.sku IN ('LP-1', 'LP-2');
        PERFORM shop.checkout(cart, 'tok_visa', 'hist-' || c);
    END LOOP;
END
$$;
SELECT shop.refresh_recommendations() IS NOT NULL AS refreshed;
-- customer 502's cart and order, which the storefront of 501 must not reach
SELECT shop.cart_create(502) AS cart502 \gset
SELECT shop.cart_add(:'cart502', :p1);
SELECT shop.checkout(:'cart502', 'tok_visa', 'k502') AS order502 \gset
SELECT shop.cart_add(:'cart502', :p2);
-- customer 501's earlier order
SELECT shop.cart_create(501) AS cart501 \gset
SELECT shop.cart_add(:'cart501', :p3);
SELECT shop.checkout(:'cart501', 'tok_visa', 'k501') AS order501 \gset
SELECT shop.session_token(501, '1 hour') AS tok501 \gset

-- pg_temp.calls(role, calls): run each call as role (SET ROLE), each in a
-- subtransaction; the result is ok, or the error's SQLSTATE and message.
-- as_documented: allowed and ok, or not allowed and 42501.
CREATE FUNCTION pg_temp.calls(r name, calls text[])
RETURNS TABLE (n int, call text, allowed boolean, result text, as_documented boolean)
LANGUAGE plpgsql AS $f$
DECLARE c text;
BEGIN
    EXECUTE format('SET ROLE %I', r);
    n := 0;
    FOREACH c IN ARRAY calls LOOP
        n := n + 1;
        allowed := c !~ '^!';
        result := pg_temp.err(ltrim(c, '! '));
        -- the call as shown: ids and tokens differ from run to run
        call := regexp_replace(regexp_replace(ltrim(c, '! '),
                    '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g'),
                    'v1\.[0-9]+\.[0-9]+\.[0-9a-f]{64}', '<token>', 'g');
        as_documented := CASE WHEN allowed THEN result = 'ok' ELSE result ~ '^42501' END;
        RETURN NEXT;
    END LOOP;
    RESET ROLE;
END
$f$;

-- The storefront of customer 501: every documented call works, every other
-- call (admin calls, another customer's rows, internal tables) is 42501.
-- (A leading ! marks a call the role may not make.)
SELECT * FROM pg_temp.calls('regress_roles_front', ARRAY[
    format('SELECT shop.session_begin(%L)', :'tok501'),
    'SELECT shop.current_customer()',
    -- browse and the product page
    format('SELECT * FROM shop.browse(%s)', :cat),
    format('SELECT shop.product_get(%s)', :p1),
    format('SELECT shop.category_path(%s), shop.category_descendants(%s)', :cat, :cat),
    format('SELECT shop.stock_available(%s)', :p1),
    format('SELECT count(*) FROM shop.product WHERE category_id = %s', :cat),
    'SELECT count(*) FROM shop.category',
    'SELECT count(*) FROM shop.review',
    -- search, facets, autocomplete, did you mean
    'SELECT * FROM shop.search(''thinkpad'')',
    'SELECT * FROM shop.search(''notebook'')',
    'SELECT * FROM shop.search(''thinkpad'', customer_id => 501)',
    'SELECT * FROM shop.search(''thinkpad carbon'', sort => ''price_asc'')',
    'SELECT shop.search_facets(''thinkpad'')',
    'SELECT shop.search_facets(''thinkpad'', ''{"attributes": {}}'')',
    'SELECT * FROM shop.autocomplete(''thin'')',
    'SELECT shop.did_you_mean(''thinkpd'')',
    'SELECT shop.stem(''laptops'')',
    -- the cart
    'SELECT shop.cart_create()',
    'SELECT shop.cart_create(501)',
    format('SELECT shop.cart_add(%L, %s, 2)', :'cart501', :p1),
    format('SELECT shop.cart_add(%L, %s)', :'cart501', :p2),
    format('SELECT shop.cart_set_qty(%L, %s, 3)', :'cart501', :p1),
    format('SELECT shop.cart_save_for_later(%L, %s)', :'cart501', :p2),
    format('SELECT shop.cart_move_to_cart(%L, %s)', :'cart501', :p2),
    format('SELECT shop.cart_remove(%L, %s)', :'cart501', :p2),
    format('SELECT shop.cart_get(%L)', :'cart501'),
    format('SELECT shop.cart_merge(shop.cart_create(), 501)'),
    format('SELECT count(*) FROM shop.cart_item WHERE cart_id = %L', :'cart501'),
    -- checkout and order history
    'SELECT shop.payment_method_add(501, ''tok_visa_501'', ''visa'', ''4242'', 12, 2099)',
    format('SELECT shop.checkout(%L, ''tok_visa'', ''front-1'', ''{"country": "US"}'')', :'cart501'),
    format('SELECT shop.order_get(%L)', :'order501'),
    'SELECT * FROM shop.orders_for(501)',
    'SELECT count(*) FROM shop."order"',
    'SELECT count(*) FROM shop.order_line',
    'SELECT count(*) FROM shop.payment',
    'SELECT count(*) FROM shop.payment_method',
    -- reviews and recommendations
    format('SELECT shop.review_add(%s, 501, 5, ''Great'', ''Light and fast'')', :p3),
    format('SELECT shop.view(501, %s)', :p1),
    'SELECT * FROM shop.recently_viewed(501)',
    'SELECT * FROM shop.recommend(501)',
    format('SELECT * FROM shop.also_bought(%s)', :p1),
    format('SELECT * FROM shop.similar_products(%s)', :p1),
    'SELECT * FROM shop.trending()',
    format('SELECT * FROM shop.trending(%s)', :cat),
    format('SELECT shop.review_delete(%s, 501)', :p3),
    'SELECT shop.contains_card_number(''4111 1111 1111 1111'')',
    -- another customer's rows
    '! SELECT shop.cart_create(502)',
    format('! SELECT shop.cart_get(%L)', :'cart502'),
    format('! SELECT shop.cart_add(%L, %s)', :'cart502', :p1),
    format('! SELECT shop.cart_merge(shop.cart_create(), 502)'),
    format('! SELECT shop.checkout(%L, ''tok_visa'', ''steal'')', :'cart502'),
    format('! SELECT shop.order_get(%L)', :'order502'),
    '! SELECT * FROM shop.orders_for(502)',
    '! SELECT shop.payment_method_add(502, ''tok_visa_x'', NULL, NULL, NULL, NULL)',
    '! SELECT * FROM shop.search(''thinkpad'', customer_id => 502)',
    format('! SELECT shop.review_add(%s, 502, 1)', :p1),
    format('! SELECT shop.review_delete(%s, 502)', :p1),
    format('! SELECT shop.view(502, %s)', :p1),
    '! SELECT * FROM shop.recently_viewed(502)',
    '! SELECT * FROM shop.recommend(502)',
    -- admin calls
    '! SELECT shop.category_add(''Phones'')',
    '! SELECT shop.product_upsert(''X-1'', ''x'', 100)',
    '! SELECT shop.synonym_add(''tv'', ARRAY[''television''])',
    '! SELECT shop.synonym_remove(''laptop'')',
    '! SELECT shop.refresh_search_prior()',
    '! SELECT shop.refresh_search_vocab()',
    '! SELECT * FROM shop.search_prior_for(''laptop'')',
    format('! SELECT shop.stock_set(%s, 1)', :p1),
    format('! SELECT shop.stock_adjust(%s, 1, ''found one'')', :p1),
    format('! SELECT shop.stock_set_buckets(%s, 2)', :p1),
    format('! SELECT shop.stock_set_reorder_threshold(%s, 5)', :p1),
    format('! SELECT shop.reserve(%s, 1)', :p1),
    format('! SELECT shop.reserve_many(''[{"product_id": %s, "qty": 1}]'')', :p1),
    format('! SELECT shop.reservation_release(%L)', (SELECT reservation_id FROM shop.order_line WHERE order_id = :'order501')),
    format('! SELECT shop.reservation_commit(%L)', (SELECT reservation_id FROM shop.order_line WHERE order_id = :'order501')),
    format('! SELECT shop.reservation_extend(%L, ''1 day'')', (SELECT reservation_id FROM shop.order_line WHERE order_id = :'order501')),
    format('! SELECT shop.order_transition(%L, ''cancelled'')', :'order501'),
    format('! SELECT shop.order_ship(%L, ''UPS'', ''1Z'')', :'order501'),
    format('! SELECT shop.order_review(%L, true)', :'order501'),
    format('! SELECT shop.payment_confirm(%L, ''ch_1'')', :'order501'),
    format('! SELECT shop.payment_fail(%L, ''declined'')', :'order501'),
    '! SELECT shop.session_token(501)',
    '! SELECT shop.refresh_recommendations()',
    '! SELECT shop.rebuild_recommendations()',
    '! SELECT shop.sweep()',
    '! SELECT shop.metrics()',
    '! SELECT * FROM shop.event_claim(''mail'')',
    '! SELECT shop.event_ack(''mail'', 1)',
    '! SELECT shop.event_group_drop(''mail'')',
    '! SELECT count(*) FROM shop.event_groups',
    -- tables it may not read or write
    '! SELECT count(*) FROM shop.search_log',
    '! SELECT count(*) FROM shop.stock',
    '! SELECT count(*) FROM shop.reservation',
    '! SELECT count(*) FROM shop.stock_summary',
    '! SELECT count(*) FROM shop.event',
    '! SELECT count(*) FROM shop.synonym',
    '! SELECT count(*) FROM shop.view_event',
    '! SELECT count(*) FROM shop.idempotency',
    '! INSERT INTO shop.search_log (query, sort, results, duration_ms) VALUES (''x'', ''relevance'', 0, 0)',
    '! INSERT INTO shop.product (sku, title, price_cents) VALUES (''Y'', ''y'', 1)',
    '! UPDATE shop."order" SET status = ''shipped''',
    '! DELETE FROM shop.cart',
    '! SELECT shop._emit(''x'', ''{}'')',
    'SELECT shop.session_end()'
]);

-- What the storefront saw: its own rows only, and the search log has its
-- searches (written for it, not readable by it)
SET ROLE regress_roles_front;
SELECT shop.session_begin(:'tok501') AS customer;
SELECT DISTINCT customer_id FROM shop."order";
SELECT count(*) > 0 AS my_carts, bool_and(customer_id = 501) AS all_mine FROM shop.cart;
SELECT title FROM shop.search('notebook') ORDER BY product_id;
SELECT shop.did_you_mean('thinkpd');
SELECT (shop.search_facets('thinkpad')->>'total')::int AS facet_total;
SELECT shop.session_end();
RESET ROLE;
-- (the records wait in the shared-memory ring until a flush: the
-- sweeper's, or this one)
SELECT shop._search_log_flush() >= 0 AS flushed;
SELECT count(*) AS logged, count(*) FILTER (WHERE customer_id = 501) AS logged_for_501
  FROM shop.search_log;

-- The back office: everything of the storefront for any customer, plus the
-- admin calls; internal functions and direct writes are still 42501.
UPDATE shop."order" SET needs_review = true WHERE order_id = :'order502';
SELECT shop.cart_create(503) AS cart503 \gset
SELECT shop.cart_add(:'cart503', :p2);
SELECT shop.checkout(:'cart503', 'stripe:pm_503', 'k503') AS order503 \gset
SELECT shop.cart_create(504) AS cart504 \gset
SELECT shop.cart_add(:'cart504', :p2);
SELECT shop.checkout(:'cart504', 'stripe:pm_504', 'k504') AS order504 \gset
SELECT * FROM pg_temp.calls('regress_roles_office', ARRAY[
    format('SELECT * FROM shop.browse(%s)', :cat),
    format('SELECT shop.product_get(%s)', :p1),
    'SELECT * FROM shop.search(''thinkpad'', customer_id => 502)',
    'SELECT shop.search_facets(''thinkpad'')',
    'SELECT * FROM shop.autocomplete(''thin'')',
    'SELECT shop.did_you_mean(''thinkpd'')',
    'SELECT shop.cart_create(502)',
    format('SELECT shop.cart_add(%L, %s)', :'cart502', :p3),
    format('SELECT shop.cart_set_qty(%L, %s, 2)', :'cart502', :p3),
    format('SELECT shop.cart_save_for_later(%L, %s)', :'cart502', :p3),
    format('SELECT shop.cart_move_to_cart(%L, %s)', :'cart502', :p3),
    format('SELECT shop.cart_remove(%L, %s)', :'cart502', :p3),
    format('SELECT shop.cart_get(%L)', :'cart502'),
    'SELECT shop.cart_merge(shop.cart_create(), 502)',
    format('SELECT shop.checkout(%L, ''tok_visa'', ''office-1'')', :'cart502'),
    format('SELECT shop.cart_clear(%L)', :'cart502'),
    format('SELECT shop.order_get(%L)', :'order501'),
    'SELECT * FROM shop.orders_for(501)',
    'SELECT shop.payment_method_add(502, ''tok_visa_502'', NULL, NULL, NULL, NULL)',
    format('SELECT shop.review_add(%s, 502, 4)', :p1),
    format('SELECT shop.review_delete(%s, 502)', :p1),
    format('SELECT shop.view(502, %s)', :p1),
    'SELECT * FROM shop.recently_viewed(502)',
    'SELECT * FROM shop.recommend(502)',
    format('SELECT * FROM shop.also_bought(%s)', :p1),
    format('SELECT * FROM shop.similar_products(%s)', :p1),
    'SELECT * FROM shop.trending()',
    'SELECT count(*) FROM shop."order"',
    'SELECT count(*) FROM shop.cart',
    -- admin calls
    'SELECT shop.category_add(''Phones'')',
    'SELECT shop.product_upsert(''X-1'', ''Phone X'', 100)',
    'SELECT shop.synonym_add(''tv'', ARRAY[''television''])',
    'SELECT shop.synonym_remove(''tv'')',
    'SELECT shop.refresh_search_prior()',
    'SELECT shop.refresh_search_vocab()',
    'SELECT * FROM shop.search_prior_for(''tv'')',
    format('SELECT shop.stock_set(%s, 50)', :p3),
    format('SELECT shop.stock_adjust(%s, 5, ''found five'')', :p3),
    format('SELECT shop.stock_set_buckets(%s, 2)', :p3),
    format('SELECT shop.stock_set_reorder_threshold(%s, 5)', :p3),
    format('SELECT shop.reserve(%s, 1, ''phone order'')', :p3),
    format('SELECT shop.reserve_many(''[{"product_id": %s, "qty": 1}]'')', :p3),
    format('SELECT shop.reservation_release(shop.reserve(%s, 1))', :p3),
    format('SELECT shop.reservation_extend(shop.reserve(%s, 1), ''1 day'')', :p3),
    format('SELECT shop.reservation_commit(shop.reserve(%s, 1))', :p3),
    format('SELECT shop.order_review(%L, true)', :'order502'),
    format('SELECT shop.order_transition(%L, ''fulfilling'')', :'order502'),
    format('SELECT shop.order_ship(%L, ''UPS'', ''1Z999'')', :'order502'),
    format('SELECT shop.payment_confirm(%L, ''ch_503'')', :'order503'),
    format('SELECT shop.payment_fail(%L, ''card declined'')', :'order504'),
    'SELECT shop.session_token(501)',
    'SELECT shop.refresh_recommendations()',
    'SELECT shop.rebuild_recommendations()',
    'SELECT shop.sweep()',
    'SELECT shop.metrics()',
    'SELECT count(*) FROM shop.stock_summary',
    'SELECT count(*) FROM shop.low_stock',
    'SELECT count(*) FROM shop.search_log',
    'SELECT count(*) FROM shop.event',
    'SELECT * FROM shop.event_claim(''mail'', ''office'')',
    'SELECT shop.event_ack(''mail'', 1)',
    'SELECT count(*) FROM shop.event_groups',
    'SELECT shop.event_group_drop(''mail'')',
    -- not even the back office
    '! SELECT shop._emit(''x'', ''{}'')',
    '! SELECT shop._copurchase_rebuild()',
    '! INSERT INTO shop.product (sku, title, price_cents) VALUES (''Y'', ''y'', 1)',
    '! UPDATE shop."order" SET status = ''shipped''',
    '! DELETE FROM shop.search_log',
    '! UPDATE shop.stock SET on_hand = 0'
]);

-- a role of neither kind can make no call at all
SELECT * FROM pg_temp.calls('regress_roles_nobody', ARRAY[
    '! SELECT shop.current_customer()',
    format('! SELECT * FROM shop.browse(%s)', :cat),
    '! SELECT * FROM shop.search(''thinkpad'')',
    '! SELECT shop.cart_create()',
    '! SELECT count(*) FROM shop.product'
]);

-- the monitoring role: its calls, and nothing of the shop's data
SELECT * FROM pg_temp.calls('regress_roles_monitor', ARRAY[
    'SELECT count(*) FROM shop.monitor_orders()',
    'SELECT count(*) FROM shop.monitor_stock()',
    'SELECT count(*) FROM shop.monitor_event_groups()',
    '! SELECT shop.metrics()',
    '! SELECT shop.sweep()',
    '! SELECT count(*) FROM shop.metrics_orders_today',
    '! SELECT count(*) FROM shop."order"',
    '! SELECT count(*) FROM shop.sweep_state'
]);

RESET shop.session_secret;
DROP ROLE regress_roles_front, regress_roles_office, regress_roles_nobody, regress_roles_monitor;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
