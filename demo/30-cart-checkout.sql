-- demo: cart, login, checkout, idempotency, a declined card, card numbers refused
\pset footer off
\echo
\echo '==================== 3. Cart and checkout ===================='
-- three popular active products with stock to spare
SELECT array_agg(product_id ORDER BY popularity DESC, product_id) AS picks
  FROM (SELECT p.product_id, p.popularity FROM shop.product p
         WHERE p.status = 'active' AND shop.stock_available(p.product_id) >= 10
         ORDER BY p.popularity DESC, p.product_id LIMIT 3) x \gset
SELECT (:'picks'::bigint[])[1] AS p1, (:'picks'::bigint[])[2] AS p2, (:'picks'::bigint[])[3] AS p3 \gset
-- a customer who has not ordered before
SELECT coalesce(max(customer_id), 0) + 1 AS customer FROM shop."order" \gset

\echo 'An anonymous visitor fills a cart: two of one product, one of another, one of a third.'
\o /dev/null
SELECT shop.cart_create() AS cart \gset
SELECT shop.cart_add(:'cart', :p1, 2), shop.cart_add(:'cart', :p2), shop.cart_add(:'cart', :p3);
\o
\echo 'Meanwhile the price of the second product drops by 10%; the cart shows it:'
UPDATE shop.product SET price_cents = price_cents * 9 / 10 WHERE product_id = :p2;
SELECT l.sku, left(l.title, 40) AS title, l.qty, l.price_cents_at_add AS was, l.unit_price_cents AS now,
       l.price_changed, l.available_qty AS in_stock
  FROM jsonb_to_recordset(shop.cart_get(:'cart')->'lines')
       AS l(sku text, title text, qty int, price_cents_at_add bigint, unit_price_cents bigint,
            price_changed boolean, available_qty int);

\echo
\echo 'The visitor logs in as customer' :customer '(shop.cart_merge) and saves the third product for later:'
\o /dev/null
SELECT shop.cart_merge(:'cart', :customer) AS cart \gset
SELECT shop.cart_save_for_later(:'cart', :p3);
\o
SELECT c->'customer_id' AS customer, c->'item_count' AS items, c->'subtotal_cents' AS subtotal_cents,
       jsonb_array_length(c->'saved_for_later') AS saved_for_later, c->'ready_for_checkout' AS ready
  FROM shop.cart_get(:'cart') c;

\echo
\echo 'Checkout, shipping to Massachusetts (a 6.25% tax rule is added for the demo):'
INSERT INTO shop.tax_rate (country, region, basis_points) VALUES ('US', 'MA', 625)
    ON CONFLICT DO NOTHING;
SELECT shop.checkout(:'cart', 'tok_visa', 'demo-checkout-1',
       '{"name": "Ada Lovelace", "line1": "1 Main St", "city": "Boston", "region": "MA", "country": "US"}')
       AS order_id \gset
SELECT d->>'status' AS status, d->'subtotal_cents' AS subtotal, d->'shipping_cents' AS shipping,
       d->'tax_cents' AS tax, d->'total_cents' AS total,
       (d->'payments'->0->>'card_brand') || ' ' || (d->'payments'->0->>'last4') AS card
  FROM shop.order_get(:'order_id') d;
\echo 'Its lines are snapshots, charged at the current price:'
SELECT line_no, sku, left(title, 40) AS title, unit_price_cents, qty, reservation_id IS NOT NULL AS stock_held
  FROM shop.order_line WHERE order_id = :'order_id' ORDER BY line_no;
\echo 'The cart keeps only the saved-for-later line:'
SELECT jsonb_array_length(c->'lines') AS lines, jsonb_array_length(c->'saved_for_later') AS saved_for_later
  FROM shop.cart_get(:'cart') c;

\echo
\echo 'The app times out and retries with the same idempotency key: the same order, nothing done twice.'
SELECT shop.checkout(:'cart', 'tok_visa', 'demo-checkout-1',
       '{"name": "Ada Lovelace", "line1": "1 Main St", "city": "Boston", "region": "MA", "country": "US"}')
       = :'order_id' AS same_order,
       (SELECT count(*) FROM shop."order" WHERE idempotency_key = 'demo-checkout-1') AS orders_with_that_key;

\echo
\echo 'A declined card (tok_chargeDeclined): SQLSTATE SH004, and nothing is kept.'
\o /dev/null
SELECT shop.cart_create(:customer) AS cart2 \gset
SELECT shop.cart_add(:'cart2', :p1, 3);
\o
SELECT count(*) AS orders_before, shop.stock_available(:p1) AS p1_available_before FROM shop."order" \gset
SELECT set_config('demo.cart2', :'cart2', false) \g /dev/null
DO $$
BEGIN
    PERFORM shop.checkout(current_setting('demo.cart2')::uuid, 'tok_chargeDeclined', 'demo-declined');
EXCEPTION WHEN SQLSTATE 'SH004' THEN
    RAISE NOTICE 'checkout refused: % (SQLSTATE %)', SQLERRM, SQLSTATE;
END
$$;
SELECT count(*) - :orders_before AS new_orders,
       shop.stock_available(:p1) - :p1_available_before AS stock_change,
       jsonb_array_length(shop.cart_get(:'cart2')->'lines') AS cart_lines_kept
  FROM shop."order";

\echo
\echo 'A card number typed into the address is refused (SH005) and never echoed, logged or stored:'
DO $$
BEGIN
    PERFORM shop.checkout(current_setting('demo.cart2')::uuid, 'tok_visa', 'demo-card',
                          '{"name": "Bob", "note": "my card is 4242 4242 4242 4242"}');
EXCEPTION WHEN SQLSTATE 'SH005' THEN
    RAISE NOTICE 'checkout refused: % (SQLSTATE %)', SQLERRM, SQLSTATE;
END
$$;
\echo 'The shopper pays with a mastercard instead:'
SELECT shop.checkout(:'cart2', 'tok_mastercard', 'demo-checkout-2') IS NOT NULL AS ordered;
UPDATE shop.product SET price_cents = price_cents * 10 / 9 WHERE product_id = :p2;
