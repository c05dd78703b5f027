-- writer: UPDATE a range of this client's rows of the user table, one kind
-- of change at a time (note only: HOT)
\set k random(0, :space / :nw - 1)
\set r random(1, 30)
\set s random(1, 2000000000)
\set what random(1, 8)
UPDATE stress.doc SET
    title       = CASE WHEN :what IN (1, 2) THEN stress.title(:s::bigint + id) ELSE title END,
    body        = CASE WHEN :what IN (2, 3) THEN stress.body(:s::bigint + id) ELSE body END,
    price_cents = CASE WHEN :what = 4 THEN stress.price(:s::bigint + id) ELSE price_cents END,
    category_id = CASE WHEN :what = 5 THEN stress.dcat(:s::bigint + id) ELSE category_id END,
    brand       = CASE WHEN :what = 5 THEN stress.brand(:s::bigint + id) ELSE brand END,
    rating      = CASE WHEN :what = 6 THEN stress.rating(:s::bigint + id) ELSE rating END,
    in_stock    = CASE WHEN :what = 6 THEN stress.in_stock(:s::bigint + id) ELSE in_stock END,
    popularity  = CASE WHEN :what = 7 THEN stress.popularity(:s::bigint + id) ELSE popularity END,
    note        = CASE WHEN :what = 8 THEN 'note ' || :s ELSE note END
 WHERE id BETWEEN :k * :nw + 1 AND (:k + :r) * :nw
   AND id % :nw = (:client_id + 1) % :nw;
