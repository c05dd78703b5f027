-- hostile_storefront_login: a storefront LOGIN role (not SET ROLE from a
-- superuser session: its own connection, session_user and role settings,
-- as the storefront application logs in) makes every storefront call of
-- docs/security.md end to end: session, browse, product page, search,
-- facets, autocomplete, did you mean, stats, stem, view and recently
-- viewed, the cart (add, quantity, save for later, move back, remove,
-- clear, merge), checkout, order history, a saved payment method,
-- reviews, recommendations (also bought, similar, trending, recommend,
-- with an experiment), stock, and reading its own rows of the row level
-- security tables; and reads no other customer's rows there.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_login_web;
RESET client_min_messages;
CREATE ROLE regress_login_web LOGIN IN ROLE shop_storefront;
-- the secret as a deployment sets it for the storefront's login
-- (docs/security.md: postgresql.conf, ALTER SYSTEM or ALTER ... SET)
ALTER ROLE regress_login_web SET shop.session_secret = 'a server secret of at least thirty-two characters';
SET shop.session_secret = 'a server secret of at least thirty-two characters';

-- the back office: catalog, stock, an experiment, another customer's order
SELECT shop.category_add('Laptops') AS cat \gset
SELECT shop.product_upsert('LOGIN-TP1', 'ThinkPad X1 Carbon laptop', 150000, 'A light laptop', 'Lenovo', :cat) AS p1 \gset
SELECT shop.product_upsert('LOGIN-TP2', 'ThinkPad T14 laptop', 120000, 'A sturdy laptop', 'Lenovo', :cat) AS p2 \gset
SELECT shop.product_upsert('LOGIN-MS1', 'Wireless mouse', 2500, 'A small mouse', 'Logitech', :cat) AS p3 \gset
SELECT shop.stock_set(:p1, 10, 'main') + shop.stock_set(:p2, 10, 'main') + shop.stock_set(:p3, 10, 'main') AS stock;
SELECT shop.experiment_create('login_exp', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS experiment;
SELECT shop.cart_create(602) AS cart602 \gset
SELECT shop.cart_add(:'cart602', :p1, 1);
SELECT shop.cart_add(:'cart602', :p3, 1);
SELECT shop.checkout(:'cart602', 'tok_visa', 'login-602') IS NOT NULL AS order602;
SELECT shop.payment_method_add(602, 'tok_visa_602', 'visa', '4242', 12, 2099) IS NOT NULL AS pm602;
SELECT shop.refresh_recommendations() ? 'orders_applied' AS refreshed;
SELECT shop.session_token(601, '1 hour') AS tok601 \gset

\c - regress_login_web
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $f$;
SELECT session_user = 'regress_login_web' AS logged_in, current_user = 'regress_login_web' AS as_itself;
SELECT shop.session_begin(:'tok601') AS customer;
SELECT shop.current_customer();
-- catalog and search
SELECT count(*) AS browsed FROM shop.browse(:cat);
SELECT shop.product_get(:p1) ->> 'sku' AS product_page;
SELECT shop.category_path(:cat) -> 0 ->> 'name' AS path, cardinality(shop.category_descendants(:cat)) AS descendants;
SELECT title FROM shop.search('thinkpad laptop') ORDER BY title;
SELECT title FROM shop.search('thinkpad', customer_id => 601) ORDER BY title;
SELECT (shop.search_facets('laptop', '{}') ->> 'total')::int AS facet_total;
SELECT (shop.search_facets('laptop', '{}', 5) ->> 'total')::int AS facet_total_bounded;
SELECT suggestion FROM shop.autocomplete('think') ORDER BY suggestion;
SELECT shop.did_you_mean('thinkpda');
SELECT shop.search_stats('laptop') ? 'docs' AS stats;
SELECT count(*) > 0 AS cache_stats FROM shop.search_cache_stats();
SELECT evaluations >= 0 AS last_scan FROM shop.search_last_scan();
SELECT shop.stem('laptops', 'english');
SELECT shop.stock_available(:p2);
-- views
SELECT shop.view(601, :p2);
SELECT product_id = :p2 AS viewed FROM shop.recently_viewed(601);
-- the cart
SELECT shop.cart_create(601) AS cart \gset
SELECT shop.cart_add(:'cart', :p1, 2);
SELECT shop.cart_add(:'cart', :p3, 1);
SELECT shop.cart_save_for_later(:'cart', :p3);
SELECT shop.cart_move_to_cart(:'cart', :p3);
SELECT shop.cart_set_qty(:'cart', :p3, 3);
SELECT shop.cart_remove(:'cart', :p3);
SELECT jsonb_array_length(shop.cart_get(:'cart') -> 'lines') AS lines;
SELECT shop.cart_create() AS anon \gset
SELECT shop.cart_add(:'anon', :p2, 1);
SELECT shop.cart_clear(:'anon');
SELECT shop.cart_add(:'anon', :p2, 1);
SELECT shop.cart_merge(:'anon', 601) = :'cart' AS merged_into_own;
SELECT jsonb_array_length(shop.cart_get(:'cart') -> 'lines') AS lines_after_merge;
-- checkout and orders
SELECT shop.payment_method_add(601, 'tok_visa_601', 'visa', '4242', 12, 2099) IS NOT NULL AS payment_method;
SELECT shop.checkout(:'cart', 'tok_visa', 'login-601', '{"country": "US"}') AS ord \gset
SELECT shop.order_get(:'ord') ->> 'status' AS status, (shop.order_get(:'ord') ->> 'total_cents')::bigint AS total;
SELECT count(*) AS orders FROM shop.orders_for(601);
SELECT shop.contains_card_number('4111 1111 1111 1111'), shop.redact_card_numbers('card 4111 1111 1111 1111');
-- reviews
SELECT shop.review_add(:p1, 601, 5, 'Great', 'Light and fast');
SELECT shop.review_delete(:p1, 601);
-- recommendations
SELECT count(*) >= 0 AS also_bought FROM shop.also_bought(:p1);
SELECT count(*) >= 0 AS similar FROM shop.similar_products(:p1);
SELECT count(*) >= 0 AS trending FROM shop.trending();
SELECT count(*) >= 0 AS recommend FROM shop.recommend(601);
SELECT count(*) >= 0 AS recommend_exp FROM shop.recommend(601, 5, 'login_exp');
SELECT shop.experiment_bucket('login_exp', 'visitor-1') BETWEEN 0 AND 9999 AS bucket;
SELECT variant IN ('a', 'b') AS assigned FROM shop.experiment_assign('login_exp', 601);
-- its own rows under row level security, and none of customer 602's
SELECT count(*) AS carts FROM shop.cart;
SELECT count(*) AS orders, bool_and(customer_id = 601) AS own FROM shop."order";
SELECT count(*) AS lines FROM shop.order_line;
SELECT count(*) AS events FROM shop.order_event;
SELECT count(*) AS payments FROM shop.payment;
SELECT count(*) AS methods, bool_and(customer_id = 601) AS own FROM shop.payment_method;
-- another customer's calls stay refused for this login
SELECT pg_temp.err('SELECT * FROM shop.orders_for(602)');
SELECT shop.session_end();
SELECT shop.current_customer();

\c - postgres
ALTER ROLE regress_login_web RESET ALL;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_login_web;
