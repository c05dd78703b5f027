-- searcher: shop.search_facets
\set s random(1, 2000000000)
SELECT shop.search_facets(stress.qtext(:s), stress.qfilters(:s)) IS NOT NULL;
