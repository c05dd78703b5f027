-- writer: INSERT a batch of this client's rows into the user table; one
-- batch in ten folds the pending list itself (500 to 700 rows)
\set big random(1, 10)
\set b random(1, 100)
\if :big = 1
\set b random(500, 700)
\endif
\set k random(0, :space / :nw - 1)
\set s random(1, 2000000000)
INSERT INTO stress.doc
SELECT id, stress.title(s), stress.brand(s), stress.body(s), stress.dcat(s), stress.price(s),
       stress.rating(s), stress.in_stock(s), stress.popularity(s), NULL
  FROM generate_series(:k, :k + :b - 1) g,
       LATERAL (SELECT g * :nw + :client_id + 1 AS id, :s::bigint * 7919 + g AS s) x
 WHERE id <= :space
ON CONFLICT (id) DO NOTHING;
