-- searcher: the user table's index, by @@@ (bitmap scan) and by an
-- ORDER BY <=> LIMIT 10 (ordered index scan), as an application would
\set s random(1, 2000000000)
\set how random(1, 2)
\if :how = 1
SELECT count(*) FROM stress.doc d
 WHERE shop.search_doc(d.title, d.brand, d.body, d.category_id, d.price_cents, d.rating,
                       d.in_stock, d.popularity) OPERATOR(shop.@@@) stress.dquery(:s);
\else
SELECT d.id FROM stress.doc d
 WHERE shop.search_doc(d.title, d.brand, d.body, d.category_id, d.price_cents, d.rating,
                       d.in_stock, d.popularity) OPERATOR(shop.@@@) stress.dquery(:s)
 ORDER BY shop.search_doc(d.title, d.brand, d.body, d.category_id, d.price_cents, d.rating,
                          d.in_stock, d.popularity) OPERATOR(shop.<=>) stress.dquery(:s)
 LIMIT 10;
\endif
