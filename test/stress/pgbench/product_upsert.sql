-- writer: shop.product_upsert of one of this client's products (insert
-- or update, by sku / product_id).  Variables: space (id space), nw (id
-- partitions: writers own ids = client_id + 1 modulo nw).
\set k random(0, :space / :nw - 1)
\set s random(1, 2000000000)
SELECT shop.product_upsert('P' || id, stress.title(s), stress.price(s),
                           description => stress.body(s), brand => stress.brand(s),
                           category_id => stress.pcat(s), product_id => id)
  FROM (SELECT :k * :nw + :client_id + 1 AS id, :s::bigint AS s) x
 WHERE id <= :space;
