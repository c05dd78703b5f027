-- writer: DELETE a range of this client's products (dead rows for VACUUM,
-- freed heap slots for later inserts)
\set k random(0, :space / :nw - 1)
\set r random(1, 200)
DELETE FROM shop.product
 WHERE product_id BETWEEN :k * :nw + 1 AND (:k + :r) * :nw
   AND product_id % :nw = (:client_id + 1) % :nw;
