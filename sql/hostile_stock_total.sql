-- hostile_stock_total: a location holds at most 1,000,000,000 units
-- (shop.stock_set, shop.stock_adjust: 22023 beyond), a product any number
-- of locations.  shop.stock_summary summed a product's locations into int,
-- so three full locations made every read of the view, of shop.low_stock
-- and of the operations report fail with 22003 "integer out of range", for
-- every product.  The sums now saturate at 2,147,483,647, as
-- shop.stock_available already does (docs/inventory.md).
\i sql/include/prelude.sql

SELECT shop.product_upsert('BULK-1', 'Screws, loose', 1) AS p1 \gset
SELECT shop.product_upsert('MUG-1', 'Mug', 900) AS p2 \gset
SELECT shop.stock_set(:p2, 3);
SELECT shop.stock_set_reorder_threshold(:p2, 5);
-- three locations of 1,000,000,000 units each: each allowed
SELECT shop.stock_set(:p1, 1000000000, 'east') AS east;
SELECT shop.stock_set(:p1, 1000000000, 'west') AS west;
SELECT shop.stock_set(:p1, 1000000000, 'north') AS north;
SELECT sum(on_hand) AS units FROM shop.stock WHERE product_id = :p1;
SELECT shop.stock_available(:p1);
-- the view and what reads it
SELECT product_id = :p1 AS bulk, on_hand, reserved, available, locations
  FROM shop.stock_summary ORDER BY product_id = :p1;
SELECT sku, on_hand, available, reorder_threshold FROM shop.low_stock ORDER BY product_id;
-- a hold: reserved and available follow
SELECT shop.reserve(:p1, 5) IS NOT NULL AS held;
SELECT on_hand, reserved, available FROM shop.stock_summary WHERE product_id = :p1;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
