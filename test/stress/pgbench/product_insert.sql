-- writer: plain INSERT of a batch of this client's products; one batch in
-- ten has 500 to 700 rows, so the insert itself folds the pending list
-- (SS_PENDING_FLUSH = 500).  Ids already taken are skipped.
\set big random(1, 10)
\set b random(1, 100)
\if :big = 1
\set b random(500, 700)
\endif
\set k random(0, :space / :nw - 1)
\set s random(1, 2000000000)
INSERT INTO shop.product (product_id, sku, title, description, brand, category_id,
                          price_cents, popularity, in_stock)
SELECT id, 'P' || id, stress.title(s), stress.body(s), stress.brand(s), stress.pcat(s),
       stress.price(s), stress.popularity(s), stress.u(s, 22) < 0.6
  FROM generate_series(:k, :k + :b - 1) g,
       LATERAL (SELECT g * :nw + :client_id + 1 AS id, :s::bigint * 7919 + g AS s) x
 WHERE id <= :space
ON CONFLICT (product_id) DO NOTHING;
