-- ids: ids the caller chooses (COPY and INSERT with explicit ids, as the
-- loaders and docs/catalog.md do, and product_upsert(product_id => ...))
-- never collide with the ids shop assigns later (docs/catalog.md, "Ids").
-- The tables with an identity column the caller may set: category,
-- product, shipping_rate, tax_rate.
\i sql/include/prelude.sql

-- a bulk load with explicit ids, the way docs/catalog.md shows it
COPY shop.category (category_id, name) FROM stdin;
1	Electronics
2	Garden
40	Toys
\.
COPY shop.product (product_id, sku, title, price_cents, category_id) FROM stdin;
1	BL-1	Loaded lamp	1000	1
2	BL-2	Loaded desk	2000	1
1000	BL-1000	Loaded chair	3000	40
\.
-- the README's first calls, after the load: new ids, past the loaded ones
SELECT shop.category_add('Laptops') AS laptops \gset
SELECT :laptops > 40 AS category_id_after_loaded;
SELECT shop.product_upsert('LP-1', 'ThinkPad X1 Carbon', 149900, brand => 'Lenovo', category_id => :laptops) AS lp1 \gset
SELECT :lp1 > 1000 AS product_id_after_loaded;
SELECT sku FROM shop.product WHERE product_id = 1;
-- a plain INSERT without an id, and one with
INSERT INTO shop.product (sku, title, price_cents) VALUES ('PI-1', 'Inserted', 10) RETURNING product_id > :lp1 AS fresh;
INSERT INTO shop.product (product_id, sku, title, price_cents) VALUES (5000, 'PI-2', 'Inserted with an id', 10);
SELECT shop.product_upsert('PI-3', 'After 5000', 10) > 5000 AS after_insert;
-- INSERT ... SELECT of many rows
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT 10000 + g, 'IS-' || g, 'Bulk ' || g, g FROM generate_series(1, 500) g;
SELECT shop.product_upsert('PI-4', 'After the bulk insert', 10) > 10500 AS after_insert_select;
-- product_upsert with a caller's id
SELECT shop.product_upsert('UP-1', 'Upserted with an id', 10, product_id => 20000);
SELECT shop.product_upsert('UP-2', 'Upserted without', 10) > 20000 AS after_upsert_id;
-- an id below the sequence does not move it back
SELECT shop.product_upsert('UP-3', 'Low id', 10, product_id => 3);
SELECT shop.product_upsert('UP-4', 'Without', 10) > 20001 AS not_moved_back;
-- a load rolled back leaves a gap, never a collision
BEGIN;
INSERT INTO shop.product (product_id, sku, title, price_cents) VALUES (40000, 'RB-1', 'Rolled back', 10);
ROLLBACK;
SELECT shop.product_upsert('UP-6', 'After the rollback', 10) > 40000 AS after_rollback;
-- a category inserted with an id, under a loaded one
INSERT INTO shop.category (category_id, name, parent_id) VALUES (500, 'Loaded child', 40);
SELECT shop.category_add('New child', 40) > 500 AS category_after_insert;
SELECT category_id, slug FROM shop.category WHERE category_id IN (40, 500) ORDER BY 1;

-- shipping and tax rules with the caller's ids
INSERT INTO shop.shipping_rate (rate_id, country, cents) VALUES (100, 'DE', 700);
INSERT INTO shop.shipping_rate (country, cents) VALUES ('FR', 800) RETURNING rate_id > 100 AS shipping_fresh;
INSERT INTO shop.tax_rate (rate_id, country, basis_points) VALUES (100, 'DE', 1900);
INSERT INTO shop.tax_rate (country, basis_points) VALUES ('FR', 2000) RETURNING rate_id > 100 AS tax_fresh;

-- the back office (shop_admin) upserts with and without ids through the
-- calls; the triggers run with the extension's rights
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_ids_office;
RESET client_min_messages;
CREATE ROLE regress_ids_office IN ROLE shop_admin;
SET ROLE regress_ids_office;
SELECT shop.product_upsert('AD-1', 'Admin with an id', 10, product_id => 50000);
SELECT shop.product_upsert('AD-2', 'Admin without', 10) > 50000 AS admin_after_id;
SELECT shop.category_add('Admin category') > 500 AS admin_category;
RESET ROLE;

-- every id unique, every sku found
SELECT count(*) = count(DISTINCT product_id) AS ids_unique, count(*) AS products FROM shop.product;
SELECT count(*) AS skus FROM shop.product_sku;

DROP ROLE regress_ids_office;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
