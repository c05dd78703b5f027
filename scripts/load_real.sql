-- load_real.sql: load the real data sets of ../shared/data into shop.
-- psql -v datadir=/path/to/shared/data -f scripts/load_real.sql
--
-- 1. Icecat electronics (chorus_icecat_supahands): products keep their
--    Icecat product_id (so the relevance judgments match), brand, price,
--    colour, image and every attribute (attr_t_/attr_n_/attr_b_ prefixes
--    dropped). Icecat has no category tree (product type is filled for
--    about 8% of products), so a two-level tree is derived from title and
--    description keywords; the Icecat product type is the second level
--    where present.
-- 2. UCI Online Retail (uci_online_retail): the gift retailer's items become
--    products (product_id 900000000 + n, sku UCI-<StockCode>) and its
--    22,061 sales invoices become delivered orders of that customer (guest
--    when the customer is unknown), one line per item, prices in store
--    currency units as given. Cancellations (C...) and adjustments (A...)
--    are dropped, as are non-product codes (postage, fees).
\set ON_ERROR_STOP 1
\timing off
SET client_min_messages = warning;

BEGIN;
CREATE TEMP TABLE icecat (product_id bigint, title text, description text, brand text,
    category text, price numeric, model_name text, ean text, date_released text,
    colour text, image_url text);
\set f :datadir '/chorus_icecat_supahands/products.csv'
COPY icecat FROM :'f' WITH (FORMAT csv, HEADER true);
CREATE TEMP TABLE icecat_attr (product_id bigint, attribute text, value text);
\set f :datadir '/chorus_icecat_supahands/product_attributes.csv'
COPY icecat_attr FROM :'f' WITH (FORMAT csv, HEADER true);

-- departments and their keyword rules, first match wins
CREATE TEMP TABLE dept (ord int, dept text, sub text, pattern text);
INSERT INTO dept VALUES
 (-3, 'Peripherals', 'Cases & bags', '\m(case|cases|bag|backpack|sleeve|slipcase|messenger|carrying)\M'),
 (-2, 'Computers', 'Spare parts', '\m(spare part|spare parts|replacement part)\M'),
 (-1, 'Office', 'Office supplies', '\m(post-it|writing notebook|sticky notes?|binder|stapler)\M'),
 (1, 'Printing', 'Ink cartridges', '\m(ink|inkjet cartridge|printhead)\M'),
 (2, 'Printing', 'Toner & drums', '\m(toner|drum|imaging unit|fuser|developer)\M'),
 (3, 'Printing', 'Printers & scanners', '\m(printer|scanner|multifunction|plotter|mfp|copier)\M'),
 (4, 'Printing', 'Paper & labels', '\m(paper|labels?|photo paper|ribbon|tape cassette)\M'),
 (5, 'Computers', 'Laptops', '\m(notebook|laptop|chromebook|ultrabook|netbook|2-in-1)\M'),
 (6, 'Computers', 'Desktops & workstations', '\m(desktop|workstation|all-in-one|pc|thin client|mini pc)\M'),
 (7, 'Computers', 'Processors', '\m(processor|cpu|xeon|core i[3579]|pentium|celeron|ryzen)\M'),
 (8, 'Computers', 'Motherboards', '\m(motherboard|desktop board|server board|mainboard)\M'),
 (9, 'Computers', 'Servers', '\m(server|rack server|blade)\M'),
 (-6, 'Computers', 'Memory', '\m(memory module|ddr[2345]?|dimm|ram)\M'),
 (11, 'Storage', 'Drives', '\m(hdd|ssd|hard drive|hard disk|solid state|nas|storage)\M'),
 (-5, 'Storage', 'Flash & cards', '\m(usb flash|flash drive|memory card|sd card|microsd|pen drive)\M'),
 (-9, 'Cables & adapters', 'Cables', '\m(cable|cord|patch|lead)\M'),
 (-8, 'Cables & adapters', 'Adapters & hubs', '\m(adapter|adaptor|converter|hub|dock|docking|splitter|switch box|kvm)\M'),
 (15, 'Power', 'UPS & surge', '\m(ups|surge|uninterruptible|pdu|power distribution|battery backup)\M'),
 (-7, 'Power', 'Batteries & chargers', '\m(battery|batteries|charger|power supply|power adapter|psu)\M'),
 (17, 'Audio', 'Headphones & headsets', '\m(headphones?|headsets?|earphones?|earbuds?)\M'),
 (18, 'Audio', 'Speakers', '\m(speakers?|soundbar|subwoofer)\M'),
 (19, 'TV & video', 'Monitors', '\m(monitor|display)\M'),
 (20, 'TV & video', 'TVs & projectors', '\m(tv|television|projector|screen)\M'),
 (21, 'Networking', 'Network equipment', '\m(router|switch|access point|network|ethernet|wireless|wifi|wi-fi|modem|firewall|transceiver|sfp)\M'),
 (22, 'Phones & tablets', 'Phones & tablets', '\m(smartphone|phone|tablet|ipad|mobile)\M'),
 (23, 'Cameras', 'Cameras', '\m(camera|camcorder|lens|webcam)\M'),
 (24, 'Peripherals', 'Keyboards & mice', '\m(keyboard|mouse|mice|trackball|presenter)\M'),
 (25, 'Peripherals', 'Cases & bags', '\m(cover|skin|protector)\M'),
 (26, 'Office', 'Office supplies', '\m(binder|folder|stapler|pen|marker|envelope|notebook cover|laminat)\M'),
 (27, 'Home', 'Kitchen appliances', '\m(coffee|kettle|toaster|blender|espresso)\M');

CREATE TEMP TABLE icecat_cat AS
SELECT i.product_id,
       coalesce(d.dept, 'Other') AS dept,
       coalesce(nullif(nullif(i.category, ''), '1'), d.sub, 'Other') AS sub
  FROM icecat i
  LEFT JOIN LATERAL (SELECT dept, sub FROM dept
                      WHERE lower(i.title || ' ' || coalesce(i.description, '')) ~ pattern
                      ORDER BY ord LIMIT 1) d ON true;

SELECT shop.category_add('Electronics') AS root \gset
CREATE TEMP TABLE cat_map AS
SELECT dept, sub, NULL::bigint AS dept_id, NULL::bigint AS sub_id
  FROM (SELECT DISTINCT dept, sub FROM icecat_cat) x;
UPDATE cat_map SET dept_id = shop.category_add(dept, :root);
UPDATE cat_map SET sub_id = shop.category_add(sub, dept_id);

INSERT INTO shop.product (product_id, sku, title, description, brand, category_id,
                          price_cents, attributes, images, created_at)
SELECT i.product_id, 'ICECAT-' || i.product_id, left(i.title, 500), nullif(i.description, ''),
       nullif(i.brand, ''), m.sub_id, round(i.price * 100)::bigint,
       coalesce(a.attrs, '{}')
         || jsonb_strip_nulls(jsonb_build_object('colour', nullif(i.colour, ''),
                                                'model', nullif(i.model_name, ''),
                                                'ean', nullif(i.ean, ''))),
       CASE WHEN coalesce(i.image_url, '') = '' THEN '{}' ELSE ARRAY[i.image_url] END,
       coalesce(to_date(nullif(i.date_released, ''), 'YYYY-MM-DD')::timestamptz, now())
  FROM icecat i
  JOIN icecat_cat c USING (product_id)
  JOIN cat_map m ON m.dept = c.dept AND m.sub = c.sub
  LEFT JOIN (SELECT product_id,
                    jsonb_object_agg(regexp_replace(attribute, '^attr_[tnb]_', ''), value) AS attrs
               FROM icecat_attr GROUP BY product_id) a USING (product_id);
COMMIT;

-- UCI Online Retail: items, then invoices as orders
BEGIN;
CREATE TEMP TABLE uci_item (item_id text, name text, median_unit_price numeric, n_rows int, alt_names text);
\set f :datadir '/uci_online_retail/items.csv'
COPY uci_item FROM :'f' WITH (FORMAT csv, HEADER true);
CREATE TEMP TABLE uci_basket (basket_id text, item_id text, customer_id bigint, ts timestamp,
                              quantity int, unit_price numeric, country text);
\set f :datadir '/uci_online_retail/baskets.csv'
COPY uci_basket FROM :'f' WITH (FORMAT csv, HEADER true);
DELETE FROM uci_basket
 WHERE basket_id ~ '^[CA]' OR quantity <= 0 OR unit_price < 0
    OR item_id IN ('POST', 'DOT', 'M', 'C2', 'BANK CHARGES', 'AMAZONFEE', 'B', 'S', 'D', 'PADS', 'CRUK');

SELECT shop.category_add('Gifts & home') AS gifts \gset
CREATE TEMP TABLE gift_dept (ord int, sub text, pattern text);
INSERT INTO gift_dept VALUES
 (1, 'Christmas', '\m(christmas|xmas|advent|santa|reindeer|snowflake)\M'),
 (2, 'Bags', '\m(bag|bags|tote|purse|charlotte)\M'),
 (3, 'Candles & lights', '\m(candle|t-light|tlight|lantern|lights?|lamp)\M'),
 (4, 'Kitchen & dining', '\m(mug|cup|plate|bowl|teapot|cake|baking|jar|tin|lunch box|napkins|spoon|kitchen|tray)\M'),
 (5, 'Cards & wrap', '\m(card|cards|wrap|ribbon|tissue|paper|gift tape|stickers?)\M'),
 (6, 'Decorations', '\m(heart|hanging|decoration|garland|bunting|sign|frame|clock|mirror|ornament|wreath)\M'),
 (7, 'Toys & games', '\m(toy|game|doll|puzzle|skipping|spaceboy|children|kids|dolly)\M'),
 (8, 'Garden', '\m(garden|plant|pot|watering|bird)\M');
CREATE TEMP TABLE uci_products AS
SELECT 900000000 + row_number() OVER (ORDER BY i.item_id) AS product_id, i.item_id,
       initcap(lower(btrim(i.name))) AS title, i.median_unit_price,
       coalesce((SELECT sub FROM gift_dept g WHERE lower(i.name) ~ g.pattern ORDER BY ord LIMIT 1),
                'Other gifts') AS sub
  FROM uci_item i
 WHERE coalesce(btrim(i.name), '') <> ''
   AND i.item_id NOT IN ('POST', 'DOT', 'M', 'C2', 'BANK CHARGES', 'AMAZONFEE', 'B', 'S', 'D', 'PADS', 'CRUK')
   AND i.median_unit_price IS NOT NULL;
CREATE TEMP TABLE gift_map AS
SELECT sub, shop.category_add(sub, :gifts) AS category_id FROM (SELECT DISTINCT sub FROM uci_products) s;
INSERT INTO shop.product (product_id, sku, title, brand, category_id, price_cents, attributes)
SELECT u.product_id, 'UCI-' || u.item_id, left(u.title, 500), NULL, g.category_id,
       round(u.median_unit_price * 100)::bigint, jsonb_build_object('stock_code', u.item_id)
  FROM uci_products u JOIN gift_map g USING (sub);

-- history is imported as it stands: no triggers (the recommendation
-- capture would count every invoice one by one; the tables are rebuilt
-- from the whole history below instead), so the rows name their
-- customer_key themselves (docs/scale-out.md)
SET LOCAL session_replication_role = replica;
CREATE TEMP TABLE uci_lines AS
SELECT b.basket_id, p.product_id, 'UCI-' || b.item_id AS sku, p.title,
       round(avg(b.unit_price) * 100)::bigint AS unit_price_cents, sum(b.quantity)::int AS qty,
       min(b.customer_id) AS customer_id, min(b.ts) AS ts
  FROM uci_basket b JOIN uci_products p USING (item_id)
 GROUP BY b.basket_id, p.product_id, b.item_id, p.title;
CREATE TEMP TABLE uci_orders AS
SELECT basket_id, md5('uci-invoice-' || basket_id)::uuid AS order_id, min(customer_id) AS customer_id,
       min(ts) AS ts, sum(unit_price_cents * qty) AS total
  FROM uci_lines GROUP BY basket_id;
INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents, total_cents,
                          was_paid, created_at, updated_at)
SELECT order_id, customer_id, shop._customer_key(customer_id, order_id), 'delivered', current_setting('shop.currency'), total, total, true,
       ts::timestamptz, ts::timestamptz
  FROM uci_orders;
INSERT INTO shop.order_line (order_id, customer_key, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT o.order_id, shop._customer_key(o.customer_id, o.order_id),
       row_number() OVER (PARTITION BY l.basket_id ORDER BY l.product_id),
       l.product_id, l.sku, l.title, l.unit_price_cents, l.qty
  FROM uci_lines l JOIN uci_orders o USING (basket_id);
INSERT INTO shop.order_event (order_id, customer_key, seq, from_status, to_status, note, at)
SELECT order_id, shop._customer_key(customer_id, order_id), 1, NULL, 'delivered', 'imported from the UCI Online Retail history', ts::timestamptz
  FROM uci_orders;
COMMIT;

-- stock for everything: a deterministic 0..60 units per product (about one
-- in twelve sold out)
INSERT INTO shop.stock (product_id, on_hand, reorder_threshold)
SELECT product_id, greatest(0, (hashtext(sku) & 127) % 66 - 5), 5 FROM shop.product;
UPDATE shop.product p SET in_stock = true
  FROM shop.stock s WHERE s.product_id = p.product_id AND s.on_hand > 0;

-- then scripts/load_finish.sql (recommendations, VACUUM ANALYZE)
SELECT count(*) FILTER (WHERE sku LIKE 'ICECAT-%') AS icecat_products,
       count(*) FILTER (WHERE sku LIKE 'UCI-%') AS retail_products,
       (SELECT count(*) FROM shop.category) AS categories,
       (SELECT count(*) FROM shop."order") AS orders,
       (SELECT count(*) FROM shop.order_line) AS order_lines
  FROM shop.product \gset
\echo loaded :icecat_products Icecat products, :retail_products retailer products, :categories categories, :orders past orders with :order_lines lines
