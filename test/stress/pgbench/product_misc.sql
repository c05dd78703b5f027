-- writer: reviews (rating_avg, an indexed value, moves) and stock counts
-- (in_stock moves) of two of this client's products
\set k random(0, :space / :nw - 1)
\set cust random(1, 50)
\set rating random(1, 5)
\set n random(0, 3)
SELECT shop.review_add(product_id, :cust, :rating)
  FROM shop.product
 WHERE product_id BETWEEN :k * :nw + 1 AND (:k + 10) * :nw
   AND product_id % :nw = (:client_id + 1) % :nw
 ORDER BY product_id LIMIT 2;
SELECT shop.stock_set(product_id, :n)
  FROM shop.product
 WHERE product_id BETWEEN :k * :nw + 1 AND (:k + 10) * :nw
   AND product_id % :nw = (:client_id + 1) % :nw
 ORDER BY product_id LIMIT 2;
