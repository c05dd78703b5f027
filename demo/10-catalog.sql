-- demo: the catalog
\pset footer off
\echo
\echo '==================== 1. The catalog ===================='
\echo 'Departments, with how many active products each holds (descendants included):'
SELECT r.name || ' > ' || c.name AS department,
       (SELECT count(*) FROM shop.product p
         WHERE p.status = 'active' AND p.category_id = ANY (shop.category_descendants(c.category_id))) AS products
  FROM shop.category c JOIN shop.category r ON r.category_id = c.path[1]
 WHERE cardinality(c.path) = 2
 ORDER BY products DESC
 LIMIT 8;

SELECT category_id AS laptops FROM shop.category WHERE name IN ('Laptops') ORDER BY category_id LIMIT 1 \gset
\echo
\echo 'shop.browse: the cheapest laptops (category and its descendants):'
SELECT product_id, left(title, 60) AS title, brand, (price_cents / 100.0)::numeric(12,2) AS price
  FROM shop.browse(:laptops, 'price_asc', 5);

\echo
\echo 'A customer reviews a laptop; the rating aggregates stay exact:'
SELECT product_id AS demo_product FROM shop.browse(:laptops, 'popularity', 1) \gset
\o /dev/null
SELECT shop.review_add(:demo_product, 1001, 5, 'Great machine', 'Fast, light, good keyboard.');
SELECT shop.review_add(:demo_product, 1002, 4, 'Good', 'Battery could be better.');
SELECT shop.review_add(:demo_product, 1002, 3, 'Changed my mind', 'Battery is weak.');
\o
SELECT rating_avg, rating_count FROM shop.product WHERE product_id = :demo_product;

\echo
\echo 'shop.product_get: a product page in one call (abridged):'
SELECT jsonb_pretty(jsonb_build_object(
           'title', p -> 'title', 'brand', p -> 'brand', 'price_cents', p -> 'price_cents',
           'category_path', jsonb_path_query_array(p, '$.category_path[*].name'),
           'rating', p -> 'rating', 'availability', p -> 'availability',
           'image', p -> 'images' -> 0))
  FROM shop.product_get(:demo_product) p;
