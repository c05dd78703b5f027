-- security: privileges, pinned search_path, signed storefront sessions,
-- a storefront that reaches only its own customer's carts and orders
\i sql/include/prelude.sql

-- the two roles exist and cannot log in
SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname IN ('shop_storefront', 'shop_admin') ORDER BY 1;
-- login roles of a storefront application, a back-office tool, and someone else
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_shop_front, regress_shop_office, regress_shop_nobody;
RESET client_min_messages;
CREATE ROLE regress_shop_front LOGIN IN ROLE shop_storefront;
CREATE ROLE regress_shop_office LOGIN IN ROLE shop_admin;
CREATE ROLE regress_shop_nobody LOGIN;

-- who may execute what
SELECT f AS function,
       has_function_privilege('regress_shop_nobody', f, 'EXECUTE') AS public,
       has_function_privilege('regress_shop_front', f, 'EXECUTE') AS storefront,
       has_function_privilege('regress_shop_office', f, 'EXECUTE') AS admin
  FROM unnest(ARRAY[
        'shop.cart_create(bigint)', 'shop.cart_add(uuid,bigint,int)', 'shop.cart_get(uuid)',
        'shop.cart_merge(uuid,bigint)', 'shop.checkout(uuid,text,text,jsonb)',
        'shop.order_get(uuid)', 'shop.orders_for(bigint,int,timestamptz)',
        'shop.payment_method_add(bigint,text,text,text,int,int)', 'shop.session_begin(text)',
        'shop.session_token(bigint,interval)', 'shop.order_transition(uuid,text,text)',
        'shop.order_ship(uuid,text,text)', 'shop.order_review(uuid,boolean)',
        'shop.payment_confirm(uuid,text)', 'shop.payment_fail(uuid,text)']) f;
-- every function of the cart, order and payment calls pins search_path
SELECT count(*) AS functions,
       count(*) FILTER (WHERE NOT coalesce('search_path=pg_catalog, shop, pg_temp' = ANY (p.proconfig), false)) AS unpinned
  FROM pg_proc p
 WHERE p.pronamespace = 'shop'::regnamespace
   AND p.proname ~ '^(_?cart|checkout|order|payment|session|current_customer|_authorize|_shipping|_tax)';
-- and row level security is on for their tables
SELECT relname, relrowsecurity FROM pg_class
 WHERE relnamespace = 'shop'::regnamespace
   AND relname IN ('cart', 'cart_item', 'order', 'order_line', 'order_event', 'payment', 'payment_method')
 ORDER BY 1;

-- data of two customers, made by a trusted caller (superuser)
SELECT shop.product_upsert('MUG', 'Coffee mug', 1000) AS mug \gset
SELECT shop.stock_set(:mug, 100);
SELECT shop.cart_create(502) AS cart502 \gset
SELECT shop.cart_add(:'cart502', :mug);
SELECT shop.checkout(:'cart502', 'tok_visa', 'x') AS order502 \gset

-- sessions need the server secret
SELECT pg_temp.err($$SELECT shop.session_token(501)$$);
SET shop.session_secret = 'too short';
SELECT pg_temp.err($$SELECT shop.session_token(501)$$);
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.session_token(501, '1 hour') AS token501 \gset
SELECT :'token501' ~ '^v1\.501\.[0-9]+\.[0-9a-f]{64}$' AS token_shape;
SELECT pg_temp.err($$SELECT shop.session_token(501, '0 seconds')$$);
SELECT pg_temp.err($$SELECT shop.session_token(NULL)$$);

-- the storefront: without a session it may use anonymous carts only
SET ROLE regress_shop_front;
SELECT shop.current_customer() IS NULL AS no_customer;
SELECT shop.cart_create() AS anon \gset
SELECT shop.cart_add(:'anon', :mug, 2);
SELECT pg_temp.err($$SELECT shop.cart_create(501)$$);
SELECT pg_temp.err(format($$SELECT shop.cart_get(%L)$$, :'cart502'));
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s)$$, :'cart502', :mug));
-- it can neither read nor set the secret, nor forge a session
SELECT pg_temp.err($$SELECT current_setting('shop.session_secret')$$);
SELECT pg_temp.err($$SET shop.session_secret = 'mine, all mine, thirty-two characters at least'$$);
SELECT pg_temp.err($$SELECT shop.session_token(501)$$);
SELECT pg_temp.err(format($$SELECT shop.session_begin(%L)$$, regexp_replace(:'token501', '^v1\.501\.', 'v1.502.')));
SELECT pg_temp.err(format($$SELECT shop.session_begin(%L)$$, left(:'token501', -1) || CASE WHEN right(:'token501', 1) = '0' THEN '1' ELSE '0' END));
SELECT pg_temp.err($$SELECT shop.session_begin('502')$$);
SELECT pg_temp.err($$SELECT shop.session_begin(NULL)$$);
SELECT shop.current_customer() IS NULL AS still_no_customer;
-- nor touch the tables or run the admin calls
SELECT pg_temp.err($$INSERT INTO shop."order" (currency, subtotal_cents, total_cents) VALUES ('USD', 0, 0)$$);
SELECT pg_temp.err($$UPDATE shop."order" SET status = 'shipped'$$);
SELECT pg_temp.err($$DELETE FROM shop.cart$$);
SELECT pg_temp.err(format($$SELECT shop.order_transition(%L, 'cancelled')$$, :'order502'));
SELECT pg_temp.err(format($$SELECT shop.payment_confirm(%L, 'x')$$, :'order502'));

-- with a verified session it acts for its customer, and only for them
SELECT shop.session_begin(:'token501') AS customer;
SELECT shop.current_customer();
SELECT shop.cart_create(501) AS cart501 \gset
SELECT shop.cart_add(:'cart501', :mug, 3);
SELECT (shop.cart_get(:'cart501')->>'item_count')::int AS items;
SELECT pg_temp.err($$SELECT shop.cart_create(502)$$);
SELECT pg_temp.err(format($$SELECT shop.cart_get(%L)$$, :'cart502'));
SELECT pg_temp.err(format($$SELECT shop.cart_clear(%L)$$, :'cart502'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'steal')$$, :'cart502'));
SELECT pg_temp.err(format($$SELECT shop.order_get(%L)$$, :'order502'));
SELECT pg_temp.err($$SELECT * FROM shop.orders_for(502)$$);
SELECT pg_temp.err($$SELECT shop.payment_method_add(502, 'tok_visa_x', NULL, NULL, NULL, NULL)$$);
SELECT pg_temp.err(format($$SELECT shop.cart_merge(%L, 502)$$, :'anon'));
-- its own: log in (merge the anonymous cart), save a card token, check out, read the order
SELECT shop.cart_merge(:'anon', 501) = :'cart501' AS merged;
SELECT shop.payment_method_add(501, 'tok_visa_mine', NULL, NULL, 12, 2099) IS NOT NULL AS saved;
SELECT shop.checkout(:'cart501', 'tok_visa_mine', 'order-1') AS order501 \gset
SELECT d->>'status' AS status, d->'lines'->0->'qty' AS qty FROM shop.order_get(:'order501') d;
SELECT count(*) AS my_orders FROM shop.orders_for(501);
-- reading the tables directly, row level security shows only its customer's rows
SELECT customer_id, count(*) FROM shop."order" GROUP BY 1;
SELECT count(*) AS lines FROM shop.order_line;
SELECT count(*) AS carts, bool_and(customer_id = 501) AS all_mine FROM shop.cart;
SELECT count(*) AS methods FROM shop.payment_method;
SELECT count(*) AS payments FROM shop.payment;
-- a failed attempt to switch customers forgets the session
SELECT pg_temp.err($$SELECT shop.session_begin('v1.502.9999999999.0000000000000000000000000000000000000000000000000000000000000000')$$);
SELECT shop.current_customer() IS NULL AS forgotten;
SELECT pg_temp.err(format($$SELECT shop.cart_get(%L)$$, :'cart501'));
SELECT shop.session_begin(:'token501') = 501 AS back;
SELECT shop.session_end();
SELECT pg_temp.err(format($$SELECT shop.cart_get(%L)$$, :'cart501'));
SELECT count(*) AS orders_visible FROM shop."order";
-- guest checkout: an anonymous cart's order is reachable by its id alone
SELECT shop.cart_create() AS guest \gset
SELECT shop.cart_add(:'guest', :mug);
SELECT shop.checkout(:'guest', 'tok_visa', 'guest-1') AS guest_order \gset
SELECT shop.order_get(:'guest_order')->>'status' AS guest_status;
RESET ROLE;

-- another customer's carts are, to the storefront, carts that never
-- existed (sec4): cart_merge of customer 502's open cart, and every call
-- on its merged one, answer as an id no cart has (SQLSTATE, message and
-- detail); 502's open cart named to cart_get or cart_add stays 42501
SELECT shop.cart_create(502) AS old502 \gset
SELECT shop.cart_create(502) AS new502 \gset
SELECT shop.cart_merge(:'old502', 502) = :'new502' AS merged502;
SET ROLE regress_shop_front;
SELECT shop.session_begin(:'token501') AS customer;
CREATE FUNCTION pg_temp.err_detail(q text, id uuid) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE d text;
BEGIN
    EXECUTE format(q, id);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' | ' || replace(d, id::text, '<id>');
END $f$;
SELECT c AS call, pg_temp.err_detail(c, :'new502') AS open_502, pg_temp.err_detail(c, :'old502') AS merged_502,
       pg_temp.err_detail(c, gen_random_uuid()) AS never_existed
  FROM unnest(ARRAY['SELECT shop.cart_merge(%L, 501)', 'SELECT shop.cart_get(%L)',
                    'SELECT shop.cart_add(%L, (SELECT min(product_id) FROM shop.product))']) c;
SELECT shop.session_end();
RESET ROLE;
-- the back office still gets the precise error
SELECT pg_temp.err(format($$SELECT shop.cart_merge(%L, 501)$$, :'new502'));

-- tokens expire, and so do the sessions they began
SELECT shop.session_token(501, '3 seconds') AS short \gset
SET ROLE regress_shop_front;
SELECT shop.session_begin(:'short') AS begun;
SELECT pg_sleep(4);
SELECT shop.current_customer() IS NULL AS expired;
SELECT pg_temp.err(format($$SELECT shop.cart_get(%L)$$, :'cart501'));
SELECT pg_temp.err(format($$SELECT shop.session_begin(%L)$$, :'short'));
RESET ROLE;
-- rotating the secret revokes every token signed with the old one, and
-- every session they began
SET ROLE regress_shop_front;
SELECT shop.session_begin(:'token501') AS begun;
RESET ROLE;
SET shop.session_secret = 'a brand new server secret, also thirty-two characters';
SET ROLE regress_shop_front;
SELECT shop.current_customer() IS NULL AS revoked;
SELECT pg_temp.err(format($$SELECT shop.session_begin(%L)$$, :'token501'));
RESET ROLE;

-- the back office acts for anyone and runs the admin calls; it sees every row
SET ROLE regress_shop_office;
SELECT shop.cart_get(:'cart502')->'customer_id' AS other_customer_cart;
SELECT shop.order_transition(:'order501', 'fulfilling');
SELECT shop.order_ship(:'order501', 'DHL', 'JD014600006281230704');
SELECT count(DISTINCT customer_id) AS customers_seen FROM shop."order";
RESET ROLE;

-- a plain role can do nothing with shop
SET ROLE regress_shop_nobody;
SELECT pg_temp.err($$SELECT shop.cart_create()$$);
SELECT pg_temp.err($$SELECT count(*) FROM shop."order"$$);
RESET ROLE;
-- a caller's search_path cannot hijack the calls: a now() that makes every
-- cart look expired changes nothing inside shop
CREATE SCHEMA regress_evil;
CREATE FUNCTION regress_evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
SET search_path = regress_evil, pg_catalog, public;
SELECT now() = 'infinity' AS hijacked_here;
SELECT shop.cart_get(:'cart502')->'customer_id' AS cart_still_open;
RESET search_path;
DROP SCHEMA regress_evil CASCADE;

-- The session's customer is the setting shop.session, whose value is the
-- token: SET accepts only a genuine one, SHOW never shows it, and RESET,
-- RESET ALL, DISCARD ALL (a pooler's reset) and rollbacks forget it.
SELECT shop.session_token(501, '1 hour') AS tok \gset
SET ROLE regress_shop_front;
SELECT pg_temp.err($$SET shop.session = 'v1.502.9999999999.0000000000000000000000000000000000000000000000000000000000000000'$$);
SELECT pg_temp.err($$SET shop.session = 'not a token'$$);
SET shop.session = :'tok';
SELECT shop.current_customer(), current_setting('shop.session') AS shown;
SELECT count(*) AS my_orders FROM shop.orders_for(501);
RESET shop.session;
SELECT shop.current_customer() IS NULL AS after_reset;
SET shop.session = :'tok';
RESET ALL;
SELECT shop.current_customer() IS NULL AS after_reset_all, current_user AS still;
-- (RESET ALL reset the secret too)
RESET ROLE;
SET shop.session_secret = 'a brand new server secret, also thirty-two characters';
SET ROLE regress_shop_front;
-- SET LOCAL lasts one transaction; a rolled back SET or session_begin is undone
BEGIN;
SET LOCAL shop.session = :'tok';
SELECT shop.current_customer() AS in_transaction;
COMMIT;
SELECT shop.current_customer() IS NULL AS after_commit;
BEGIN;
SELECT shop.session_begin(:'tok') AS begun;
ROLLBACK;
SELECT shop.current_customer() IS NULL AS after_rollback;
-- session_end forgets it, even when its own transaction rolls back
SELECT shop.session_begin(:'tok') AS begun;
BEGIN;
SELECT shop.session_end();
ROLLBACK;
SELECT shop.current_customer() IS NULL AS ended;
-- shop.session_scope is the superuser's: a storefront cannot widen it
SELECT pg_temp.err($$SET shop.session_scope = 'session'$$);
RESET ROLE;
-- with shop.session_scope = transaction (ALTER ROLE ... SET for the login
-- role behind a transaction pooler) every session lasts one transaction
SET shop.session_scope = 'transaction';
SET ROLE regress_shop_front;
SELECT shop.session_begin(:'tok') AS begun;
SELECT shop.current_customer() IS NULL AS next_statement;
SET shop.session = :'tok';
SELECT shop.current_customer() IS NULL AS after_plain_set;
BEGIN;
SELECT shop.session_begin(:'tok') AS begun;
SELECT count(*) AS my_orders FROM shop.orders_for(501);
COMMIT;
SELECT pg_temp.err($$SELECT * FROM shop.orders_for(501)$$);
RESET ROLE;
RESET shop.session_scope;
-- DISCARD ALL, what PgBouncer runs between two clients in session pooling
-- (it also drops pg_temp.err and resets the secret; it comes last)
SET ROLE regress_shop_front;
SELECT shop.session_begin(:'tok') AS begun;
DISCARD ALL;
SELECT shop.current_customer() IS NULL AS after_discard_all, current_user AS back_to;

RESET shop.session_secret;
DROP ROLE regress_shop_front, regress_shop_office, regress_shop_nobody;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
