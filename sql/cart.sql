-- cart: create, add, set qty, remove, save for later, clear, get, merge, expiry
\i sql/include/prelude.sql
-- lines of a cart as "product x qty" text, for compact output
CREATE FUNCTION pg_temp.lines(c uuid, list text DEFAULT 'lines') RETURNS text LANGUAGE sql AS $f$
    SELECT coalesce(string_agg((l->>'sku') || ' x' || (l->>'qty'), ', '
                               ORDER BY l->>'sku'), '-')
      FROM jsonb_array_elements(shop.cart_get(c)->list) l
$f$;

SELECT shop.product_upsert('MUG', 'Coffee mug', 1200) AS mug \gset
SELECT shop.product_upsert('TEE', 'T-shirt', 2500) AS tee \gset
SELECT shop.product_upsert('CAP', 'Baseball cap', 1800) AS cap \gset
SELECT shop.product_upsert('OLD', 'Discontinued lamp', 4000, status => 'archived') AS old \gset
SELECT shop.stock_set(:mug, 100), shop.stock_set(:tee, 2);

-- an anonymous cart
SELECT shop.cart_create() AS anon \gset
SELECT customer_id IS NULL AS anonymous, status,
       expires_at BETWEEN now() + interval '29 days' AND now() + interval '31 days' AS expires_in_30_days
  FROM shop.cart WHERE cart_id = :'anon';
SELECT shop.cart_add(:'anon', :mug);
SELECT shop.cart_add(:'anon', :mug, 2);          -- adds to the line
SELECT shop.cart_add(:'anon', :tee, 3);          -- more than in stock: allowed in a cart
SELECT pg_temp.lines(:'anon');
SELECT c->'item_count' AS items, c->'subtotal_cents' AS subtotal, c->'ready_for_checkout' AS ready,
       c->'price_changed' AS price_changed
  FROM shop.cart_get(:'anon') c;
-- availability per line: the T-shirt line wants 3, 2 are in stock
SELECT l->>'sku' AS sku, l->'qty' AS qty, l->'available_qty' AS avail, l->'available' AS ok,
       l->'unit_price_cents' AS price, l->'line_total_cents' AS line_total
  FROM jsonb_array_elements(shop.cart_get(:'anon')->'lines') l ORDER BY 1;

-- a price change shows up as price_changed, the subtotal uses today's price
UPDATE shop.product SET price_cents = 1000 WHERE product_id = :mug;
SELECT l->'price_cents_at_add' AS at_add, l->'unit_price_cents' AS now, l->'price_changed' AS changed
  FROM jsonb_array_elements(shop.cart_get(:'anon')->'lines') l WHERE (l->>'product_id')::bigint = :mug;
SELECT c->'subtotal_cents' AS subtotal, c->'price_changed' AS price_changed FROM shop.cart_get(:'anon') c;
-- adding again takes the new price as seen
SELECT shop.cart_add(:'anon', :mug);
SELECT l->'price_changed' AS changed, l->'qty' AS qty
  FROM jsonb_array_elements(shop.cart_get(:'anon')->'lines') l WHERE (l->>'product_id')::bigint = :mug;

-- set quantity, 0 removes
SELECT shop.cart_set_qty(:'anon', :tee, 1);
SELECT shop.cart_set_qty(:'anon', :mug, 0);
SELECT pg_temp.lines(:'anon');
SELECT pg_temp.err(format($$SELECT shop.cart_set_qty(%L, %s, 5)$$, :'anon', :mug));  -- gone now

-- save for later and back
SELECT shop.cart_add(:'anon', :cap);
SELECT shop.cart_save_for_later(:'anon', :cap);
SELECT pg_temp.lines(:'anon') AS cart, pg_temp.lines(:'anon', 'saved_for_later') AS saved;
SELECT (shop.cart_get(:'anon')->>'subtotal_cents')::int AS subtotal_without_saved;
SELECT shop.cart_move_to_cart(:'anon', :cap);
SELECT pg_temp.lines(:'anon') AS cart, pg_temp.lines(:'anon', 'saved_for_later') AS saved;
-- adding a saved product brings it back too
SELECT shop.cart_save_for_later(:'anon', :cap);
SELECT shop.cart_add(:'anon', :cap);
SELECT pg_temp.lines(:'anon') AS cart, pg_temp.lines(:'anon', 'saved_for_later') AS saved;

-- remove (absent product: nothing happens), clear keeps saved-for-later
SELECT shop.cart_remove(:'anon', :tee);
SELECT shop.cart_remove(:'anon', :tee);
SELECT shop.cart_add(:'anon', :mug, 4);
SELECT shop.cart_save_for_later(:'anon', :cap);
SELECT shop.cart_clear(:'anon');
SELECT pg_temp.lines(:'anon') AS cart, pg_temp.lines(:'anon', 'saved_for_later') AS saved;

-- every change pushes the expiry forward
UPDATE shop.cart SET expires_at = now() + interval '1 hour' WHERE cart_id = :'anon';
SELECT shop.cart_add(:'anon', :mug);
SELECT expires_at > now() + interval '29 days' AS extended FROM shop.cart WHERE cart_id = :'anon';

-- bad input: errors, and nothing changes
SELECT pg_temp.err($$SELECT shop.cart_add(NULL, 1)$$);
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, NULL)$$, :'anon'));
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s, NULL)$$, :'anon', :mug));
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s, 0)$$, :'anon', :mug));
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s, -3)$$, :'anon', :mug));
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s, 10001)$$, :'anon', :mug));
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s, 10000)$$, :'anon', :mug));  -- the line would exceed 10000
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, 999999)$$, :'anon'));
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s)$$, :'anon', :old));
SELECT pg_temp.err($$SELECT shop.cart_add('00000000-0000-0000-0000-000000000000', 1)$$);
SELECT pg_temp.err(format($$SELECT shop.cart_set_qty(%L, %s, -1)$$, :'anon', :mug));
SELECT pg_temp.err(format($$SELECT shop.cart_set_qty(%L, %s, NULL)$$, :'anon', :mug));
SELECT pg_temp.err(format($$SELECT shop.cart_save_for_later(%L, %s)$$, :'anon', :tee));
SELECT pg_temp.err($$SELECT shop.cart_get(NULL)$$);
SELECT pg_temp.err($$SELECT shop.cart_get('00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.err($$SELECT shop.cart_clear('00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.lines(:'anon') AS unchanged;
-- a line of a product archived after it was added: the cart shows it, move_to_cart refuses it
SELECT shop.cart_add(:'anon', :tee);
SELECT shop.cart_save_for_later(:'anon', :tee);
UPDATE shop.product SET status = 'archived' WHERE product_id = :tee;
SELECT l->>'product_status' AS status, l->'available' AS available
  FROM jsonb_array_elements(shop.cart_get(:'anon')->'saved_for_later') l WHERE (l->>'product_id')::bigint = :tee;
SELECT pg_temp.err(format($$SELECT shop.cart_move_to_cart(%L, %s)$$, :'anon', :tee));
UPDATE shop.product SET status = 'active' WHERE product_id = :tee;

-- a cart is limited to 500 lines
SELECT shop.cart_create() AS big \gset
INSERT INTO shop.product (sku, title, price_cents) SELECT 'BULK-' || i, 'Bulk ' || i, 100 FROM generate_series(1, 501) i;
SELECT count(shop.cart_add(:'big', product_id)) FROM shop.product WHERE sku LIKE 'BULK-%' AND sku <> 'BULK-501';
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s)$$, :'big', (SELECT product_id FROM shop.product WHERE sku = 'BULK-501')));

-- expired carts are gone for every call
SELECT shop.cart_create() AS stale \gset
SELECT shop.cart_add(:'stale', :mug);
UPDATE shop.cart SET expires_at = now() - interval '1 second' WHERE cart_id = :'stale';
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s)$$, :'stale', :mug));
SELECT pg_temp.err(format($$SELECT shop.cart_get(%L)$$, :'stale'));
-- shop.cart_ttl decides the lifetime
SET shop.cart_ttl = '2h';
SELECT shop.cart_create() AS short \gset
SELECT expires_at BETWEEN now() + interval '119 minutes' AND now() + interval '121 minutes' AS two_hours
  FROM shop.cart WHERE cart_id = :'short';
RESET shop.cart_ttl;

-- merge at login: the customer has no cart yet -> the anonymous cart becomes theirs
SELECT shop.cart_create() AS a1 \gset
SELECT shop.cart_add(:'a1', :mug, 2);
SELECT shop.cart_merge(:'a1', 7) = :'a1' AS adopted;
SELECT customer_id FROM shop.cart WHERE cart_id = :'a1';
-- the customer has a cart -> lines are merged into it, quantities summed
SELECT shop.cart_create() AS a2 \gset
SELECT shop.cart_add(:'a2', :mug, 3), shop.cart_add(:'a2', :cap);
SELECT shop.cart_save_for_later(:'a2', :cap);
SELECT shop.cart_merge(:'a2', 7) AS merged_into \gset
SELECT :'merged_into' = :'a1' AS into_customer_cart;
SELECT pg_temp.lines(:'a1') AS cart, pg_temp.lines(:'a1', 'saved_for_later') AS saved;
SELECT status, merged_into = :'a1' AS points_to_survivor,
       (SELECT count(*) FROM shop.cart_item WHERE cart_id = :'a2') AS lines_left
  FROM shop.cart WHERE cart_id = :'a2';
SELECT pg_temp.err(format($$SELECT shop.cart_add(%L, %s)$$, :'a2', :mug));
-- an active line wins over a saved one, quantities are capped at 10000
SELECT shop.cart_create() AS a3 \gset
SELECT shop.cart_add(:'a3', :mug, 9999), shop.cart_add(:'a3', :cap);
SELECT shop.cart_merge(:'a3', 7) = :'a1' AS merged;
SELECT pg_temp.lines(:'a1') AS cart, pg_temp.lines(:'a1', 'saved_for_later') AS saved;
-- another customer's cart cannot be merged
SELECT shop.cart_create(8) AS c8 \gset
SELECT pg_temp.err(format($$SELECT shop.cart_merge(%L, 7)$$, :'c8'));
SELECT pg_temp.err(format($$SELECT shop.cart_merge(%L, NULL)$$, :'c8'));
SELECT pg_temp.err($$SELECT shop.cart_merge(NULL, 7)$$);
-- merging the customer's own cart returns it
SELECT shop.cart_merge(:'c8', 8) = :'c8' AS own;

-- every cart call pins search_path and runs with the definer's rights
SELECT p.proname, p.prosecdef, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'shop'::regnamespace AND p.proname LIKE 'cart\_%'
 ORDER BY 1;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
