-- load_synthetic.sql: the built-in synthetic catalog, for clones without
-- ../shared/data.  psql -v scale=20000 -f scripts/load_synthetic.sql
-- Deterministic (setseed): electronics with brands, models, prices,
-- colours, stock, and a history of orders in which products of one
-- category are bought together, so recommendations have something to learn.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;
SELECT setseed(0.42) \g /dev/null
SELECT shop.category_add('Electronics') AS root \gset
CREATE TEMP TABLE syn_cat (dept text, sub text, nouns text[], lo int, hi int, brands text[]);
INSERT INTO syn_cat VALUES
 ('Computers', 'Laptops', '{laptop,notebook,ultrabook}', 30000, 300000, '{Lenovo,HP,Dell,Asus,Acer,Apple}'),
 ('Computers', 'Desktops', '{desktop,workstation,"mini pc"}', 40000, 250000, '{HP,Dell,Lenovo,Fujitsu}'),
 ('Computers', 'Processors', '{processor,cpu}', 8000, 90000, '{Intel,AMD}'),
 ('Printing', 'Ink cartridges', '{"ink cartridge","ink pack"}', 1500, 9000, '{HP,Canon,Epson,Brother}'),
 ('Printing', 'Toner', '{"toner cartridge",drum}', 4000, 30000, '{HP,Xerox,Brother,Kyocera}'),
 ('Printing', 'Printers', '{printer,"laser printer","inkjet printer"}', 8000, 120000, '{HP,Canon,Epson,Brother,Xerox}'),
 ('Cables & adapters', 'Cables', '{"usb cable","hdmi cable","ethernet cable","power cord"}', 300, 4000, '{StarTech.com,C2G,"Tripp Lite",Belkin}'),
 ('Cables & adapters', 'Adapters', '{adapter,"usb hub","docking station"}', 1000, 30000, '{StarTech.com,Belkin,"Tripp Lite"}'),
 ('Power', 'UPS', '{ups,"surge protector"}', 3000, 150000, '{APC,"Tripp Lite",Eaton}'),
 ('Audio', 'Headphones', '{headphones,headset,earbuds}', 1500, 40000, '{Sony,Philips,Jabra,Logitech}'),
 ('Audio', 'Speakers', '{speaker,"bluetooth speaker",soundbar}', 2000, 60000, '{Sony,JBL,Philips,Logitech}'),
 ('TV & video', 'Monitors', '{monitor,display}', 8000, 150000, '{Samsung,LG,Dell,Philips}'),
 ('Networking', 'Network', '{router,switch,"access point"}', 3000, 90000, '{Cisco,Netgear,TP-Link,D-Link}'),
 ('Peripherals', 'Keyboards & mice', '{keyboard,mouse,"wireless mouse"}', 900, 15000, '{Logitech,Microsoft,Cherry}');
CREATE TEMP TABLE syn_cat_id AS
SELECT s.*, shop.category_add(s.sub, shop.category_add(s.dept, :root)) AS category_id,
       row_number() OVER () AS n
  FROM syn_cat s;
INSERT INTO shop.product (product_id, sku, title, description, brand, category_id, price_cents,
                          attributes, popularity)
SELECT g, 'SYN-' || g,
       format('%s %s %s-%s %s', b.brand, initcap(m.model), upper(substr(md5(g::text), 1, 2)),
              100 + g % 900, n.noun),
       format('%s %s with %s, %s colour.', b.brand, n.noun, f.feat, col.colour),
       b.brand, c.category_id,
       (c.lo + (c.hi - c.lo) * power(random(), 2))::bigint / 100 * 100 - 1,
       jsonb_build_object('colour', col.colour),
       round((100 * power(random(), 8))::numeric, 2)
  FROM generate_series(1, :scale) g
  JOIN syn_cat_id c ON c.n = 1 + g % (SELECT count(*) FROM syn_cat)
  CROSS JOIN LATERAL (SELECT c.brands[1 + (g / 7) % cardinality(c.brands)] AS brand) b
  CROSS JOIN LATERAL (SELECT c.nouns[1 + (g / 3) % cardinality(c.nouns)] AS noun) n
  CROSS JOIN LATERAL (SELECT (ARRAY['pro','elite','prime','nova','swift','vision','core','max','air','zen'])[1 + g % 10] AS model) m
  CROSS JOIN LATERAL (SELECT (ARRAY['black','white','silver','blue','red','grey'])[1 + g % 6] AS colour) col
  CROSS JOIN LATERAL (SELECT (ARRAY['fast charging','long battery life','wireless connectivity','compact design','energy saving mode','high resolution'])[1 + (g / 11) % 6] AS feat) f;
INSERT INTO shop.stock (product_id, on_hand, reorder_threshold)
SELECT product_id, (hashtext(sku) & 63), 5 FROM shop.product;
UPDATE shop.product p SET in_stock = true FROM shop.stock s WHERE s.product_id = p.product_id AND s.on_hand > 0;
-- order history: each basket mostly within one category
SET LOCAL session_replication_role = replica;
CREATE TEMP TABLE syn_orders AS
SELECT md5('syn-order-' || o)::uuid AS order_id, 1 + (random() * (:scale / 10))::bigint AS customer_id,
       now() - random() * interval '365 days' AS ts, 1 + o % (SELECT count(*) FROM syn_cat) AS cat
  FROM generate_series(1, :scale / 2) o;
SELECT count(*) AS ncat FROM syn_cat \gset
CREATE TEMP TABLE syn_lines AS
SELECT DISTINCT ON (o.order_id, p.product_id) o.order_id, p.product_id, p.sku, p.title, p.price_cents
  FROM syn_orders o
  CROSS JOIN LATERAL generate_series(1, 2 + (random() * 3)::int) k
  -- product g is in category 1 + g % ncat: pick one of the order's
  -- category, the low ids far more often (a few best-sellers per category)
  CROSS JOIN LATERAL (SELECT ((o.cat - 1) + :ncat * (1 + floor(power(random() + k * 0, 3) * (:scale / :ncat - 2))))::bigint AS product_id) x
  JOIN shop.product p USING (product_id);
INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents, total_cents, was_paid, created_at)
SELECT o.order_id, o.customer_id, o.customer_id, 'delivered', current_setting('shop.currency'), t.total, t.total, true, o.ts
  FROM syn_orders o JOIN (SELECT order_id, sum(price_cents) AS total FROM syn_lines GROUP BY order_id) t USING (order_id);
INSERT INTO shop.order_line (order_id, customer_key, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT l.order_id, o.customer_key, row_number() OVER (PARTITION BY l.order_id ORDER BY l.product_id),
       l.product_id, l.sku, l.title, l.price_cents, 1
  FROM syn_lines l JOIN shop."order" o USING (order_id);
COMMIT;
-- then scripts/load_finish.sql (recommendations, VACUUM ANALYZE)
SELECT count(*) AS products, (SELECT count(*) FROM shop."order") AS orders FROM shop.product \gset
\echo loaded :products synthetic products and :orders synthetic past orders
