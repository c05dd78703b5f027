-- catalog: categories, products, reviews, browse, bulk COPY
\i sql/include/prelude.sql

-- category tree
SELECT shop.category_add('Electronics') AS electronics \gset
SELECT shop.category_add('Computers', :electronics) AS computers \gset
SELECT shop.category_add('Laptops', :computers) AS laptops \gset
SELECT shop.category_add('Phones', :electronics) AS phones \gset
SELECT shop.category_add('Garden') AS garden \gset
-- same name under the same parent: the existing id
SELECT shop.category_add('Laptops', :computers) = :laptops AS same_id;
SELECT slug, path = ARRAY[:electronics, :computers, :laptops]::bigint[] AS path_ok
  FROM shop.category WHERE category_id = :laptops;
SELECT cardinality(shop.category_descendants(:electronics)) AS below_electronics;
SELECT jsonb_path_query_array(shop.category_path(:laptops), '$[*].name') AS breadcrumbs;
-- bad input
SELECT pg_temp.err($$SELECT shop.category_add(NULL)$$);
SELECT pg_temp.err($$SELECT shop.category_add('   ')$$);
SELECT pg_temp.err($$SELECT shop.category_add('Orphan', 999999)$$);
SELECT pg_temp.err($$SELECT shop.category_add(repeat('x', 201))$$);
-- a cycle is refused
SELECT pg_temp.err(format($$UPDATE shop.category SET parent_id = %s WHERE category_id = %s$$, :laptops, :electronics));
-- moving a subtree re-derives the paths below it
UPDATE shop.category SET parent_id = :garden WHERE category_id = :computers;
SELECT path = ARRAY[:garden, :computers, :laptops]::bigint[] AS moved FROM shop.category WHERE category_id = :laptops;
UPDATE shop.category SET parent_id = :electronics WHERE category_id = :computers;

-- products
SELECT shop.product_upsert('LP-1', 'ThinkPad X1 Carbon laptop', 149900,
       description => 'Light business laptop', brand => 'Lenovo', category_id => :laptops,
       attributes => '{"color": "black", "ram_gb": 16}', images => ARRAY['https://cdn.example/lp1.jpg']) AS lp1 \gset
SELECT shop.product_upsert('LP-2', 'MacBook Air 13', 119900, brand => 'Apple', category_id => :laptops) AS lp2 \gset
SELECT shop.product_upsert('PH-1', 'Pixel 8 phone', 69900, brand => 'Google', category_id => :phones) AS ph1 \gset
SELECT shop.product_upsert('PH-2', 'Old phone', 9900, brand => 'Nokia', category_id => :phones, status => 'archived') AS ph2 \gset
-- upsert by sku updates and keeps what is not given
SELECT shop.product_upsert('LP-1', 'ThinkPad X1 Carbon Gen 11', 139900) = :lp1 AS same_product;
SELECT title, price_cents, brand, description, attributes->>'color' AS color, status
  FROM shop.product WHERE product_id = :lp1;
-- explicit product_id
SELECT shop.product_upsert('TB-1', 'Tablet', 29900, product_id => 5000, category_id => :electronics);
SELECT pg_temp.err($$SELECT shop.product_upsert('TB-1', 'Tablet', 29900, product_id => 5001)$$);
-- bad input: nothing is written
SELECT count(*) AS products_before FROM shop.product;
SELECT pg_temp.err($$SELECT shop.product_upsert(NULL, 'x', 1)$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', NULL, 1)$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', NULL)$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', -5)$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', 1, category_id => 424242)$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', 1, attributes => '[1,2]')$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', 1, attributes => '{"a": 1')$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', repeat('t', 501), 1)$$);
SELECT pg_temp.err($$SELECT shop.product_upsert(repeat('s', 101), 'x', 1)$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', 1, status => 'deleted')$$);
SELECT pg_temp.err(format($$SELECT shop.product_upsert('X-1', 'x', 1, images => ARRAY[NULL]:%s[])$$, :text));
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', 1, product_id => -3)$$);
-- a card number anywhere is refused without being echoed
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', 1, description => 'pay with 4111 1111 1111 1111')$$);
SELECT pg_temp.err($$SELECT shop.product_upsert('X-1', 'x', 1, attributes => '{"note": "4242-4242-4242-4242"}')$$);
-- a barcode is not a card number
SELECT shop.contains_card_number('EAN 0882780756328') AS ean, shop.contains_card_number('4111111111111111') AS visa,
       shop.contains_card_number('amex 3782 822463 10005') AS amex, shop.contains_card_number('order 12345') AS short;
SELECT count(*) AS products_after FROM shop.product;

-- plain INSERT and COPY work, and keep SKUs unique
INSERT INTO shop.product (sku, title, price_cents, brand, category_id)
VALUES ('IN-1', 'Inserted laptop', 50000, 'Acer', :laptops);
COPY shop.product (sku, title, price_cents, brand, category_id) FROM stdin;
CP-1	Copied phone one	10000	Nokia	4
CP-2	Copied phone two	20000	Nokia	4
\.
SELECT sku, title FROM shop.product WHERE sku IN ('IN-1', 'CP-1', 'CP-2') ORDER BY sku;
SELECT shop.product_upsert('CP-1', 'Copied phone one, renamed', 10500) = (SELECT product_id FROM shop.product WHERE sku = 'CP-1') AS found_by_sku;
SELECT pg_temp.err($$INSERT INTO shop.product (sku, title, price_cents) VALUES ('CP-1', 'duplicate', 1)$$);
UPDATE shop.product SET sku = 'CP-1B' WHERE sku = 'CP-1';
SELECT sku FROM shop.product_sku WHERE sku LIKE 'CP-%' ORDER BY 1;
SELECT pg_temp.err($$INSERT INTO shop.product (sku, title, price_cents) VALUES ('NEG', 'negative', -1)$$);
SELECT pg_temp.err($$INSERT INTO shop.product (sku, title, price_cents, attributes) VALUES ('ARR', 'array attrs', 1, '[]')$$);

-- reviews keep exact aggregates
SELECT shop.review_add(:lp1, 1, 5, 'Great', 'Fast and light');
SELECT shop.review_add(:lp1, 2, 4);
SELECT shop.review_add(:lp1, 3, 4);
SELECT rating_avg, rating_count, rating_sum FROM shop.product WHERE product_id = :lp1;
-- the same customer again replaces the first review
SELECT shop.review_add(:lp1, 1, 1, 'Broke', 'Changed my mind');
SELECT rating_avg, rating_count, rating_sum FROM shop.product WHERE product_id = :lp1;
SELECT shop.review_delete(:lp1, 2), shop.review_delete(:lp1, 2);
SELECT rating_avg, rating_count FROM shop.product WHERE product_id = :lp1;
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 4, 0)$$, :lp1));
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 4, 6)$$, :lp1));
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 4, NULL)$$, :lp1));
SELECT pg_temp.err($$SELECT shop.review_add(NULL, 4, 3)$$);
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, NULL, 3)$$, :lp1));
SELECT pg_temp.err($$SELECT shop.review_add(987654321, 4, 3)$$);
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 4, 3, body => repeat('b', 10001))$$, :lp1));
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 4, 3, body => 'my card is 5555 5555 5555 4444')$$, :lp1));
SELECT count(*) AS reviews FROM shop.review WHERE product_id = :lp1;
-- verified purchase: customer 7 has a paid order with the product
INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents)
VALUES ('00000000-0000-0000-0000-000000000001', 7, 'paid', 'USD', 139900, 139900);
INSERT INTO shop.order_line VALUES ('00000000-0000-0000-0000-000000000001', 1, :lp1, 'LP-1', 'ThinkPad', 139900, 1);
SELECT shop.review_add(:lp1, 7, 5);
SELECT shop.review_add(:lp1, 8, 5);
SELECT customer_id, verified_purchase FROM shop.review WHERE product_id = :lp1 ORDER BY customer_id;

-- browse: category and descendants, active only, sorted
UPDATE shop.product SET popularity = 10 WHERE product_id = :lp2;
SELECT sku, price_cents FROM shop.browse(:electronics, 'popularity');
SELECT sku FROM shop.browse(:electronics, 'price_asc', 3);
SELECT sku FROM shop.browse(:electronics, 'price_desc', 2, 1);
SELECT sku FROM shop.browse(:electronics, 'rating', 1);
SELECT sku FROM shop.browse(:laptops, 'title');
SELECT count(*) FROM shop.browse(:garden);
SELECT pg_temp.err(format($$SELECT 1 FROM shop.browse(%s, 'cheapest')$$, :electronics));
SELECT pg_temp.err(format($$SELECT 1 FROM shop.browse(%s, lim => 0)$$, :electronics));
SELECT pg_temp.err(format($$SELECT 1 FROM shop.browse(%s, lim => 1000000)$$, :electronics));
SELECT pg_temp.err(format($$SELECT 1 FROM shop.browse(%s, off => -1)$$, :electronics));
SELECT pg_temp.err($$SELECT 1 FROM shop.browse(NULL)$$);
SELECT pg_temp.err($$SELECT 1 FROM shop.browse(31337)$$);

-- product page
INSERT INTO shop.stock (product_id, on_hand, reserved) VALUES (:lp1, 7, 2);
INSERT INTO shop.copurchase VALUES (:lp1, :lp2, 3, 2.5), (:lp1, :ph1, 5, 1.0), (:lp1, :ph2, 9, 9.0);
SELECT jsonb_pretty(shop.product_get(:lp1) - 'created_at' - 'updated_at' - 'reviews' - 'also_bought');
SELECT jsonb_path_query_array(shop.product_get(:lp1), '$.reviews[*].customer_id') AS review_customers,
       jsonb_path_query_array(shop.product_get(:lp1), '$.also_bought[0 to 1].product_id') = jsonb_build_array(:lp2, :ph1) AS also_bought_active_by_score;
SELECT shop.product_get(:ph1) -> 'category_path' -> 0 ->> 'name' AS root, shop.product_get(:ph1) -> 'rating' AS no_ratings;
SELECT pg_temp.err($$SELECT shop.product_get(NULL)$$);
SELECT pg_temp.err($$SELECT shop.product_get(-1)$$);

-- privileges: a storefront reads the catalog, writes reviews only as its
-- session's customer, and cannot change the catalog
CREATE ROLE regress_catalog_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'catalog regression secret, thirty-two characters or more';
SELECT shop.session_token(4242, '1 hour') AS token \gset
SET ROLE regress_catalog_front;
SELECT count(*) > 0 AS can_browse FROM shop.browse(:electronics);
SELECT shop.product_get(:lp1) ->> 'sku' AS page_sku;
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 4242, 4)$$, :lp1));
SELECT shop.session_begin(:'token') AS acting_for;
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 4242, 4, 'Mine')$$, :lp1));
SELECT pg_temp.err(format($$SELECT shop.review_add(%s, 1, 1, 'Not mine')$$, :lp1));
SELECT pg_temp.err($$SELECT shop.product_upsert('EVIL-1', 'evil', 1)$$);
SELECT pg_temp.err($$SELECT shop.category_add('Evil')$$);
SELECT pg_temp.err($$UPDATE shop.product SET price_cents = 1$$);
SELECT shop.session_end();
RESET ROLE;
RESET shop.session_secret;
SELECT customer_id, rating, title FROM shop.review WHERE product_id = :lp1 AND customer_id IN (1, 4242) ORDER BY 1;
DROP ROLE regress_catalog_front;

-- stemmer is linked in
SELECT shop.stem('Running'), shop.stem('laptops'), shop.stem('Häuser', 'german');
SELECT pg_temp.err($$SELECT shop.stem('x', 'klingon')$$);

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
