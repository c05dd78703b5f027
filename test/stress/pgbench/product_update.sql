-- writer: plain UPDATE of a range of this client's products, one kind of
-- change at a time: title, description, price, category and brand,
-- popularity, status (draft products leave the partial index), or only
-- attributes (not indexed: a HOT update when the page has room).
\set k random(0, :space / :nw - 1)
\set r random(1, 30)
\set s random(1, 2000000000)
\set what random(1, 8)
UPDATE shop.product SET
    title       = CASE WHEN :what IN (1, 2) THEN stress.title(:s::bigint + product_id) ELSE title END,
    description = CASE WHEN :what IN (2, 3) THEN stress.body(:s::bigint + product_id) ELSE description END,
    price_cents = CASE WHEN :what = 4 THEN stress.price(:s::bigint + product_id) ELSE price_cents END,
    category_id = CASE WHEN :what = 5 THEN stress.pcat(:s::bigint + product_id) ELSE category_id END,
    brand       = CASE WHEN :what = 5 THEN stress.brand(:s::bigint + product_id) ELSE brand END,
    popularity  = CASE WHEN :what = 6 THEN stress.popularity(:s::bigint + product_id) ELSE popularity END,
    status      = CASE WHEN :what <> 7 THEN status
                       WHEN status = 'active' AND stress.u(:s::bigint + product_id, 23) < 0.2 THEN 'draft'
                       ELSE 'active' END,
    attributes  = CASE WHEN :what = 8 THEN jsonb_build_object('v', :s) ELSE attributes END
 WHERE product_id BETWEEN :k * :nw + 1 AND (:k + :r) * :nw
   AND product_id % :nw = (:client_id + 1) % :nw;
