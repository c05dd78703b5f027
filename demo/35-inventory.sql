-- demo: inventory that never oversells, hot products, alerts, operations
\pset footer off
\echo
\echo '==================== 4. Inventory ===================='
-- the most popular active product with stock, and two more for a cart
SELECT p.product_id AS star, left(p.title, 50) AS star_title
  FROM shop.product p JOIN shop.stock_summary s USING (product_id)
 WHERE p.status = 'active' AND s.available >= 4
 ORDER BY p.popularity DESC, p.product_id LIMIT 1 \gset
SELECT array_agg(product_id ORDER BY product_id) AS cart_products
  FROM (SELECT p.product_id FROM shop.product p JOIN shop.stock_summary s USING (product_id)
         WHERE p.status = 'active' AND s.available >= 3 AND p.product_id <> :star
         ORDER BY p.popularity DESC, p.product_id LIMIT 2) x \gset
\echo 'Stock of the most popular product:' :star_title
SELECT product_id, on_hand, reserved, available, reorder_threshold FROM shop.stock_summary WHERE product_id = :star;

\echo
\echo 'A shopper holds 2 units for 15 minutes: available drops, on hand does not.'
SELECT shop.reserve(:star, 2, 'cart-demo') AS hold \gset
SELECT on_hand, reserved, available FROM shop.stock_summary WHERE product_id = :star;

\echo
\echo 'Asking for more than is available is refused (SQLSTATE SH001), never oversold:'
CREATE FUNCTION pg_temp.try_reserve(p bigint, q int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    PERFORM shop.reserve(p, q);
    RETURN 'held';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' ' || SQLERRM || ': ' || d;
END $$;
SELECT pg_temp.try_reserve(:star, shop.stock_available(:star) + 1) AS "reserve one more than available";

\echo
\echo 'Checkout reserves a whole cart at once (all or nothing, quantities of a repeated product summed):'
SELECT shop.reserve_many(jsonb_build_array(
           jsonb_build_object('product_id', (:'cart_products'::bigint[])[2], 'qty', 1),
           jsonb_build_object('product_id', (:'cart_products'::bigint[])[1], 'qty', 1),
           jsonb_build_object('product_id', (:'cart_products'::bigint[])[2], 'qty', 1)),
       ref => 'order-demo') AS cart_holds \gset
SELECT r.product_id, r.qty, r.status, r.ref
  FROM unnest(:'cart_holds'::uuid[]) id JOIN shop.reservation r ON r.reservation_id = id
 ORDER BY r.product_id;

\echo
\echo 'The parcel ships (commit: on hand and reserved both drop); the other hold is released:'
\o /dev/null
SELECT shop.reservation_commit(:'hold');
SELECT shop.reservation_release(id) FROM unnest(:'cart_holds'::uuid[]) id;
\o
SELECT on_hand, reserved, available FROM shop.stock_summary WHERE product_id = :star;
SELECT delta, on_hand, reason, ref FROM shop.stock_ledger WHERE product_id = :star ORDER BY entry_id DESC LIMIT 1;

\echo
\echo '==================== 5. A Black Friday doorbuster ===================='
\echo '200 free units are spread over 16 bucket rows, so buyers do not queue on one row lock; 150 are sold:'
\o /dev/null
SELECT shop.stock_set(:star, 200 + (SELECT reserved FROM shop.stock_summary WHERE product_id = :star));
SELECT shop.stock_set_buckets(:star, 16);
SELECT shop.reserve(:star, 1, 'doorbuster') FROM generate_series(1, 150);
\o
SELECT count(*) AS bucket_rows, sum(on_hand) AS on_hand, sum(reserved) AS reserved,
       min(on_hand - reserved) AS min_free_per_bucket, max(on_hand - reserved) AS max_free_per_bucket,
       shop.stock_available(:star) AS available
  FROM shop.stock WHERE product_id = :star;
\echo 'A buyer who wants 30 gets them from several buckets, in one reservation:'
SELECT shop.reserve(:star, 30, 'wholesale') AS big \gset
SELECT count(*) AS parts, sum(qty) AS units FROM shop.reservation WHERE reservation_id = :'big';
SELECT shop.stock_available(:star) AS available_now;

\echo
\echo '==================== 6. Alerts and operations ===================='
SELECT shop.stock_available(:star) AS threshold \gset
\echo 'Reorder threshold' :threshold '(what is available now): the next hold crosses it and a stock.low event goes to the outbox:'
\o /dev/null
SELECT shop.stock_set_reorder_threshold(:star, :threshold);
SELECT shop.reserve(:star, 1);
\o
SELECT event_id, topic, payload FROM shop.event WHERE topic = 'stock.low' ORDER BY event_id DESC LIMIT 1;
\echo 'Products below their reorder threshold (shop.low_stock):'
SELECT count(*) AS products_low FROM shop.low_stock;
SELECT product_id, left(title, 40) AS title, available, reorder_threshold
  FROM shop.low_stock ORDER BY available, product_id LIMIT 5;

\echo
\echo 'Holds that lapse are reclaimed by the sweep (or by the next reserve that needs them):'
UPDATE shop.reservation SET expires_at = now() - interval '1 second'
 WHERE product_id = :star AND status = 'held' AND ref = 'doorbuster';
SELECT shop.sweep() AS sweep;
SELECT on_hand, reserved, available FROM shop.stock_summary WHERE product_id = :star;

\echo
\echo 'shop.metrics(): the operations dashboard in one call (abridged):'
SELECT jsonb_pretty(m - 'low_stock' - 'at') AS metrics FROM shop.metrics() m;
-- put the doorbuster back into one row
\o /dev/null
SELECT shop.stock_set_buckets(:star, 1);
\o
