-- demo: recommendations (docs/recommendations.md)
\pset footer off
\echo
\echo '==================== 8. Recommendations ===================='
\echo 'The retailer''s past orders were folded in by shop.rebuild_recommendations() at load time.'
SELECT (SELECT count(*) FROM shop.copurchase_order) AS orders_counted,
       (SELECT count(*) FROM shop.copurchase_item) AS products_bought,
       (SELECT count(*) FROM shop.copurchase) AS neighbour_rows;

-- the best-selling product of the history, and a mid-list one
SELECT product_id AS best_seller FROM shop.copurchase_item i
  JOIN shop.product p USING (product_id) WHERE p.status = 'active'
 ORDER BY i.baskets DESC, product_id LIMIT 1 \gset
SELECT product_id AS mid_product FROM shop.copurchase_item i
  JOIN shop.product p USING (product_id) WHERE p.status = 'active'
 ORDER BY i.baskets DESC, product_id OFFSET 200 LIMIT 1 \gset

\echo
\echo 'Customers who bought the best-seller also bought (shop.also_bought):'
SELECT title AS product FROM shop.product WHERE product_id = :best_seller;
SELECT a.product_id, left(p.title, 50) AS title, round(a.score::numeric, 1) AS score
  FROM shop.also_bought(:best_seller, 8) a JOIN shop.product p USING (product_id);

\echo
\echo 'The same list by raw co-purchase count would be led by other best-sellers:'
SELECT u.other_id AS product_id, left(p.title, 50) AS title, round(u.n::numeric, 1) AS weighted_times_together
  FROM shop.copurchase_pair c, unnest(c.other_ids, c.counts) u(other_id, n)
  JOIN shop.product p ON p.product_id = u.other_id
 WHERE c.product_id = :best_seller
 ORDER BY u.n DESC LIMIT 5;

\echo
\echo 'A product further down the sales list:'
SELECT title AS product FROM shop.product WHERE product_id = :mid_product;
SELECT a.product_id, left(p.title, 50) AS title, round(a.score::numeric, 1) AS score
  FROM shop.also_bought(:mid_product, 5) a JOIN shop.product p USING (product_id);

\echo
\echo 'The product page carries the list too (shop.product_get -> also_bought):'
SELECT jsonb_path_query_array(shop.product_get(:mid_product), '$.also_bought[*].title') AS also_bought;

-- a regular customer: the one with the most orders below 30
SELECT customer_id AS regular FROM shop."order" WHERE customer_id IS NOT NULL
 GROUP BY customer_id HAVING count(*) < 30 ORDER BY count(*) DESC, customer_id LIMIT 1 \gset
\echo
\echo 'A regular customer''s latest purchases:'
SELECT DISTINCT ON (o.created_at, l.product_id) o.created_at::date AS bought, left(l.title, 50) AS title
  FROM shop."order" o JOIN shop.order_line l USING (order_id)
 WHERE o.customer_id = :regular
 ORDER BY o.created_at DESC, l.product_id LIMIT 5;
\echo 'and what shop.recommend proposes (nothing they already bought):'
SELECT r.product_id, left(p.title, 50) AS title, round(r.score::numeric, 1) AS score
  FROM shop.recommend(:regular, 6) r JOIN shop.product p USING (product_id);

\echo
\echo '(the live part below runs in a transaction that is rolled back, so the'
\echo ' loaded history and its popularity stay as they were)'
BEGIN;
\echo 'A new visitor (customer 777000001) looks at a few products (shop.view):'
\o /dev/null
SELECT shop.view(777000001, :mid_product);
SELECT shop.view(777000001, a.product_id) FROM shop.also_bought(:best_seller, 3) a
 WHERE a.product_id <> :mid_product;
\o
SELECT v.product_id, left(p.title, 50) AS title
  FROM shop.recently_viewed(777000001) v JOIN shop.product p USING (product_id);
\echo 'shop.recommend from those views alone (the viewed products themselves are left out):'
SELECT r.product_id, left(p.title, 50) AS title, round(r.score::numeric, 1) AS score
  FROM shop.recommend(777000001, 5) r JOIN shop.product p USING (product_id);
\echo 'and for a customer with no history at all, trending fills in:'
SELECT r.product_id, left(p.title, 50) AS title
  FROM shop.recommend(777000002, 3) r JOIN shop.product p USING (product_id);

\echo
\echo 'Trending (time-decayed purchases and views, half-life shop.popularity_half_life):'
SELECT t.product_id, left(p.title, 50) AS title, round(t.score::numeric, 3) AS popularity
  FROM shop.trending(NULL, 5) t JOIN shop.product p USING (product_id);
SELECT category_id AS busy_category, name AS busy_name FROM shop.category c
 WHERE EXISTS (SELECT 1 FROM shop.product p WHERE p.category_id = c.category_id AND p.popularity > 0)
 ORDER BY (SELECT sum(popularity) FROM shop.product p WHERE p.category_id = c.category_id) DESC, category_id
 LIMIT 1 \gset
\echo 'Trending in' :'busy_name'
SELECT t.product_id, left(p.title, 50) AS title
  FROM shop.trending(:busy_category, 3) t JOIN shop.product p USING (product_id);

\echo
\echo 'A new product nobody has bought yet gets content-based neighbours (shop.similar_products):'
SELECT product_id AS fresh FROM shop.product p
 WHERE status = 'active' AND category_id IS NOT NULL AND brand IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM shop.copurchase_item i WHERE i.product_id = p.product_id)
 ORDER BY product_id LIMIT 1 \gset
SELECT left(title, 60) AS product, brand FROM shop.product WHERE product_id = :fresh;
SELECT s.product_id, left(p.title, 60) AS title, p.brand, round(s.score::numeric, 2) AS score
  FROM shop.similar_products(:fresh, 5) s JOIN shop.product p USING (product_id);

\echo
\echo 'Checkout appends to a log; shop.refresh_recommendations() folds it in (the sweeper runs it):'
\o /dev/null
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents)
VALUES ('00000000-0000-0000-0000-0000000d3300', 777000001, 'paid', current_setting('shop.currency'), 0, 0);
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT '00000000-0000-0000-0000-0000000d3300', n, v.product_id, p.sku, p.title, p.price_cents, 1
  FROM (SELECT product_id, row_number() OVER () AS n FROM shop.recently_viewed(777000001)) v
  JOIN shop.product p USING (product_id);
-- the capture trigger is deferred to COMMIT; fire it now, inside the demo's transaction
SET CONSTRAINTS ALL IMMEDIATE;
\o
SELECT customer_id, counted FROM shop.copurchase_delta;
SELECT shop.refresh_recommendations() AS refresh;
\echo '(popularity_updated: the products this order and the views touched; every product'
\echo ' is re-decayed only once per 1/100 of shop.popularity_half_life. popularity_pending:'
\echo ' values still to be written into shop.product, by the sweeper, a batch per transaction.'
\echo ' The ROLLBACK below undoes the order, the views and the refresh.)'
ROLLBACK;
