-- 10-shopping.sql (make cluster-demo): a shopping session against the
-- router, the same calls as on one node (demo/*.sql); every call below is
-- routed to the shard that owns its key, or to every shard and merged.
\set QUIET 1
\pset null '(null)'
\echo
\echo '== 1. search: every shard searches its part of the catalog, the router merges the pages'
SELECT product_id, title, brand, price_cents, typos
  FROM shop.search('wireles mouse', lim => 5);
SELECT jsonb_pretty(shop.search_facets('headphones') - 'price' - 'rating') AS facets;
SELECT suggestion, kind FROM shop.autocomplete('sen', 5);

\echo '== 2. a product page, from the product''s shard'
SELECT product_id AS laptop FROM shop.search('lenovo laptop', lim => 1) \gset
SELECT p ->> 'title' AS title, p -> 'availability' AS availability, p -> 'category_path' AS path
  FROM shop.product_get(:laptop) p;

\echo '== 3. customer 42''s cart: on customer 42''s shard, with products of every shard'
SELECT shop.cart_create(42) AS cart \gset
SELECT product_id AS mouse FROM shop.search('logitech mouse', lim => 1) \gset
SELECT product_id AS speaker FROM shop.search('bluetooth speaker', lim => 1) \gset
SELECT shop.cart_add(:'cart', :laptop), shop.cart_add(:'cart', :mouse, 2), shop.cart_add(:'cart', :speaker) \g /dev/null
SELECT shop.cart_save_for_later(:'cart', :speaker) \g /dev/null
SELECT l ->> 'title' AS line, l ->> 'qty' AS qty, l ->> 'line_total_cents' AS cents, l ->> 'available_qty' AS in_stock
  FROM jsonb_array_elements(shop.cart_get(:'cart') -> 'lines') l;
SELECT c -> 'subtotal_cents' AS subtotal, c -> 'ready_for_checkout' AS ready,
       jsonb_array_length(c -> 'saved_for_later') AS saved
  FROM shop.cart_get(:'cart') c;

\echo '== 4. checkout: a saga (claim the key, hold on each product''s shard, place, confirm)'
SELECT shop.stock_available(:laptop) AS laptops_before \gset
SELECT shop.checkout(:'cart', 'tok_visa', 'demo-checkout-1',
                     '{"name": "Ada Lovelace", "line1": "12 St James''s Sq", "city": "London", "country": "GB"}')
       AS order_id \gset
SELECT shop.checkout(:'cart', 'tok_visa', 'demo-checkout-1',
                     '{"name": "Ada Lovelace", "line1": "12 St James''s Sq", "city": "London", "country": "GB"}')
       = :'order_id' AS same_key_same_order;
SELECT :laptops_before AS laptops_before, shop.stock_available(:laptop) AS laptops_after;
SELECT o ->> 'status' AS status, o ->> 'total_cents' AS total_cents,
       jsonb_array_length(o -> 'lines') AS lines, o -> 'payments' -> 0 ->> 'status' AS payment
  FROM shop.order_get(:'order_id') o;

\echo '== 5. the warehouse: shipping commits the holds on each product''s shard'
SELECT shop.order_transition(:'order_id', 'fulfilling', 'picked');
SELECT shop.order_ship(:'order_id', 'UPS', '1Z999AA10123456784');
SELECT order_id, status, total_cents, item_count FROM shop.orders_for(42);

\echo '== 6. a cart the stock cannot cover: the saga releases what it held'
SELECT shop.cart_create(43) AS cart2 \gset
SELECT shop.stock_available(:mouse) AS mice_available;
SELECT shop.cart_add(:'cart2', :mouse), shop.cart_add(:'cart2', :speaker, 1000) \g /dev/null
\set VERBOSITY terse
\set ON_ERROR_STOP 0
SELECT shop.checkout(:'cart2', 'tok_visa', 'demo-checkout-2');
\set ON_ERROR_STOP 1
\set VERBOSITY default
SELECT shop.stock_available(:mouse) AS mice_available_again;

\echo '== 7. customers who bought this also bought: counts made on the customers'' shards, moved to the products'''
-- A pair is listed once it was bought together shop.reco_min_pairs times
-- (2, docs/recommendations.md): customer 42's order alone makes no list.
-- Customer 44 buys the laptop with a mouse too; the move folds both
-- orders in on their customers' shards and moves the counts to the shards
-- of the laptop and the mouse, where also_bought reads its lists.
SELECT shop.cart_create(44) AS cart3 \gset
SELECT shop.cart_add(:'cart3', :laptop), shop.cart_add(:'cart3', :mouse) \g /dev/null
SELECT shop.checkout(:'cart3', 'tok_visa', 'demo-checkout-3',
                     '{"name": "Grace Hopper", "line1": "1 Navy Way", "city": "Arlington", "country": "US"}')
       AS order3 \gset
SELECT m -> 'batches' AS batches, m -> 'pairs_applied' AS pairs_applied, m -> 'lists_scored' AS lists_scored
  FROM shop_router.copurchase_move(refresh => true) m;
-- popularity is one node's too: the router sums every shard's decayed
-- purchases and views and writes each product's value to its shard,
-- whose refresh then leaves it alone (docs/scale-out.md, "Popularity
-- across shards"); without it, a product bought only by other shards'
-- customers has popularity 0 on its own shard
SELECT r -> 'products' AS products, r -> 'popularity_updated' AS popularity_updated
  FROM shop_router.popularity_refresh() r;
SELECT a.product_id, p ->> 'title' AS title, round(a.score::numeric, 3) AS score,
       a.product_id = :mouse AS is_the_mouse
  FROM shop.also_bought(:laptop, 3) a, shop.product_get(a.product_id) p;

\echo '== 8. an experiment: the variant of each customer, the lists recorded on their shards, the report summed'
-- created on every shard; a customer's variant is a hash of the name and
-- the customer, the same everywhere; each list shown is recorded on the
-- customer's shard, where their orders and views are attributed to it
SELECT jsonb_path_query_array(shop.experiment_create('demo_also',
           '[{"name": "control", "share": 0.5}, {"name": "similar", "share": 0.5, "method": "similar"}]'),
       '$.variants[*].name') AS variants;
SELECT c AS customer, (shop.experiment_assign('demo_also', c)).variant,
       (SELECT array_agg(a.product_id) FROM shop.also_bought(:laptop, 3, 'demo_also', c) a) AS laptop_also_bought
  FROM unnest(ARRAY[42, 43, 44, 45]) c;
-- customer 45 views the first product of the list it was shown: a click
SELECT shop.view(45, (SELECT a.product_id FROM shop.also_bought(:laptop, 1, 'demo_also', 45) a)) \g /dev/null
SELECT variant, customers, impressions, clicks FROM shop.experiment_report('demo_also');

\echo '== 9. the back office: a tax rule on every shard, a hold outside checkout on its product''s shard'
-- a rate is written on partition 0, then every shard's rate tables are
-- made equal to its (docs/scale-out.md, "Replicated tables")
SELECT shop_router.tax_rate_set('DE', NULL, 1900) AS de_tax_rate_id;
SELECT tbl, count(*) FILTER (WHERE agrees) AS shards_agreeing
  FROM shop_router.replicated_check() GROUP BY tbl ORDER BY tbl;
-- the router makes the hold's id, whose last 16 bits name the laptop's
-- shard: release, commit and extend find it from the id alone
SELECT shop.stock_available(:laptop) AS laptop_available;
SELECT shop.reserve(:laptop, 1, 'showroom', '1 hour') AS hold \gset
SELECT shop.stock_available(:laptop) AS laptop_available_while_held;
SELECT shop.reservation_release(:'hold') AS released;
