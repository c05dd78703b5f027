-- searcher: shop.search with a generated query, filters, sort and page
\set s random(1, 2000000000)
\set sort random(1, 7)
\set lim random(1, 50)
\set page random(0, 3)
SELECT count(*)
  FROM shop.search(stress.qtext(:s), stress.qfilters(:s),
                   (ARRAY['relevance', 'relevance', 'price_asc', 'price_desc', 'rating',
                          'newest', 'popularity'])[:sort],
                   :lim, :page * :lim);
