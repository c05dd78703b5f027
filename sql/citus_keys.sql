-- citus_keys: every table of shop has a partition class (docs/scale-out.md,
-- "Citus-compatible keys"), and its keys are ones Citus could distribute
-- unchanged: every primary key and unique index of a partitioned table
-- holds its distribution column, which is a NOT NULL bigint; every foreign
-- key between two partitioned tables joins on it; a partitioned table
-- references only its own class or a reference table.  Then the customer
-- key at work: guest and logged-in checkouts, their payments, retries with
-- the same idempotency key, transitions, a guest cart that logs in, rows
-- written directly.
\i sql/include/prelude.sql

CREATE TEMP TABLE partition_class (
    tbl    text PRIMARY KEY,
    class  text NOT NULL CHECK (class IN ('customer', 'product', 'reference', 'local')),
    col    text,               -- the distribution column (customer, product)
    reason text,               -- why a table is local
    CHECK ((class IN ('customer', 'product')) = (col IS NOT NULL)),
    CHECK ((class = 'local') = (reason IS NOT NULL))
);
INSERT INTO partition_class VALUES
    -- customer-partitioned: the customer's shard (a guest's by its cart's bucket)
    ('cart',                'customer', 'customer_key', NULL),
    ('cart_item',           'customer', 'customer_key', NULL),
    ('order',               'customer', 'customer_key', NULL),
    ('order_line',          'customer', 'customer_key', NULL),
    ('order_event',         'customer', 'customer_key', NULL),
    ('payment',             'customer', 'customer_key', NULL),
    ('idempotency',         'customer', 'customer_key', NULL),
    ('saga',                'customer', 'customer_key', NULL),
    ('cart_merged',         'customer', 'customer_key', NULL),
    ('payment_method',      'customer', 'customer_id', NULL),
    ('view_event',          'customer', 'customer_id', NULL),
    ('customer_item',       'customer', 'customer_id', NULL),
    ('customer_neighbour',  'customer', 'customer_id', NULL),
    ('customer_like_queue', 'customer', 'customer_id', NULL),
    ('recommend_cache',     'customer', 'customer_id', NULL),
    -- product-partitioned: the product's shard
    ('product',             'product', 'product_id', NULL),
    ('stock',               'product', 'product_id', NULL),
    ('stock_ledger',        'product', 'product_id', NULL),
    ('reservation',         'product', 'product_id', NULL),
    ('review',              'product', 'product_id', NULL),
    ('copurchase',          'product', 'product_id', NULL),
    ('copurchase_item',     'product', 'product_id', NULL),
    ('copurchase_pair',     'product', 'product_id', NULL),
    ('product_popularity',  'product', 'product_id', NULL),
    ('popularity_pending',  'product', 'product_id', NULL),
    ('also_bought_cache',   'product', 'product_id', NULL),
    ('copurchase_global_pair', 'product', 'product_id', NULL),
    ('copurchase_global',   'product', 'product_id', NULL),
    -- reference: the same rows on every shard
    ('category',            'reference', NULL, NULL),
    ('synonym',             'reference', NULL, NULL),
    ('tax_rate',            'reference', NULL, NULL),
    ('shipping_rate',       'reference', NULL, NULL),
    ('experiment',          'reference', NULL, NULL),
    ('experiment_variant',  'reference', NULL, NULL),
    -- local: each node its own
    ('product_sku',         'local', NULL, 'the SKU index of the node''s products, kept by triggers on product; Citus would distribute it by sku, apart from product'),
    ('event',               'local', NULL, 'the outbox of the node''s own transactions, read by its consumers'),
    ('event_group',         'local', NULL, 'the positions of the node''s outbox consumers'),
    ('search_log',          'local', NULL, 'each node logs the searches it ran'),
    ('search_prior',        'local', NULL, 'the behaviour prior, each node''s own from its search log'),
    ('search_prior_category', 'local', NULL, 'the behaviour prior, each node''s own from its search log'),
    ('search_prior_evidence', 'local', NULL, 'the behaviour prior, each node''s own from its search log'),
    ('search_prior_state',  'local', NULL, 'the behaviour prior''s bookkeeping'),
    ('search_vocab',        'local', NULL, 'the search vocabulary, each node''s own, learned from its products'),
    ('sweep_state',         'local', NULL, 'the node''s sweeper'),
    ('reco_health',         'local', NULL, 'the node''s last evaluation of its recommendations'),
    ('copurchase_delta',    'local', NULL, 'the recommendation refresh''s queue of the node''s orders'),
    ('copurchase_order',    'local', NULL, 'the orders the node''s refresh folded in'),
    ('copurchase_state',    'local', NULL, 'the node''s refresh bookkeeping'),
    ('copurchase_moved_item', 'local', NULL, 'the node''s counts as of its last move across shards'),
    ('copurchase_moved_pair', 'local', NULL, 'the node''s counts as of its last move across shards'),
    ('copurchase_out_item', 'local', NULL, 'the node''s outbox of a move across shards'),
    ('copurchase_out_pair', 'local', NULL, 'the node''s outbox of a move across shards'),
    ('copurchase_global_item', 'local', NULL, 'the cluster''s counts of every product, a copy on every shard (under Citus: the counts themselves)'),
    ('copurchase_global_in', 'local', NULL, 'the last batch of each source shard the node applied'),
    ('copurchase_global_dirty', 'local', NULL, 'the node''s lists to rescore'),
    ('copurchase_global_state', 'local', NULL, 'the node''s move bookkeeping'),
    ('customer_like_state', 'local', NULL, 'the node''s refresh bookkeeping'),
    ('experiment_impression', 'local', NULL, 'what the node showed, for its own attribution'),
    ('experiment_impression_recent', 'local', NULL, 'what the node showed, for its own attribution'),
    ('experiment_outcome',  'local', NULL, 'purchases the node attributed'),
    ('experiment_arm',      'local', NULL, 'the node''s explore/exploit counts'),
    ('popularity_log',      'local', NULL, 'the node''s changes of its counted purchases and views, until the router folds them'),
    ('popularity_dropped',  'local', NULL, 'the counted views the node''s cap dropped, until its next popularity refresh'),
    ('product_deactivation', 'local', NULL, 'the node''s count of transactions that deactivated one of its products, which its recommendation caches compare'),
    ('rates_version',       'local', NULL, 'the version of the node''s copy of the rates (partition 0 counts the cluster''s writes)'),
    ('reservation_dropped', 'local', NULL, 'ids of the node''s part of a routed reserve_many or checkout saga the router released before the node held it');

-- every table of shop is listed, and every listed table exists
SELECT c.relname AS unlisted_table
  FROM pg_class c
 WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind IN ('r', 'p')
   AND c.relname NOT IN (SELECT tbl FROM partition_class)
 ORDER BY 1;
SELECT tbl AS listed_but_missing
  FROM partition_class WHERE to_regclass(format('shop.%I', tbl)) IS NULL ORDER BY 1;

-- the distribution column of a partitioned table: a NOT NULL bigint
SELECT p.tbl, p.col, a.atttypid::regtype AS type, a.attnotnull AS not_null
  FROM partition_class p
  LEFT JOIN pg_attribute a ON a.attrelid = format('shop.%I', p.tbl)::regclass
                          AND a.attname = p.col AND NOT a.attisdropped
 WHERE p.col IS NOT NULL
   AND (a.attnum IS NULL OR a.atttypid <> 'bigint'::regtype OR NOT a.attnotnull)
 ORDER BY 1;

-- every primary key and unique index of a partitioned table holds the
-- distribution column among its key columns
SELECT p.tbl, i.indexrelid::regclass AS unique_index, pg_get_indexdef(i.indexrelid) AS definition
  FROM partition_class p
  JOIN pg_index i ON i.indrelid = format('shop.%I', p.tbl)::regclass
                 AND (i.indisunique OR i.indisprimary)
 WHERE p.col IS NOT NULL
   AND NOT EXISTS (SELECT 1
                     FROM generate_series(0, i.indnkeyatts - 1) k
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k]
                    WHERE a.attname = p.col)
 ORDER BY 1, 2;

-- foreign keys of partitioned tables: between two of the same class, on
-- the distribution column of both; else only to a reference table.  A
-- reference table references reference tables only.
SELECT c.conrelid::regclass AS referencing, c.confrelid::regclass AS referenced,
       pg_get_constraintdef(c.oid) AS definition
  FROM pg_constraint c
  JOIN partition_class f ON format('shop.%I', f.tbl)::regclass = c.conrelid
  JOIN partition_class t ON format('shop.%I', t.tbl)::regclass = c.confrelid
 WHERE c.contype = 'f'
   AND f.class <> 'local'
   AND NOT (t.class = 'reference'
            OR (f.class = t.class
                AND EXISTS (SELECT 1 FROM generate_subscripts(c.conkey, 1) k
                             WHERE c.conkey[k] = (SELECT attnum FROM pg_attribute
                                                   WHERE attrelid = c.conrelid AND attname = f.col)
                               AND c.confkey[k] = (SELECT attnum FROM pg_attribute
                                                    WHERE attrelid = c.confrelid AND attname = t.col))))
 ORDER BY 1, 2;

-- the classes, counted
SELECT class, count(*) AS tables FROM partition_class GROUP BY class ORDER BY 1;

--
-- The customer key at work.  A storefront (its own login role, with a
-- session for customer 601) and a guest.
--
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_keys_front;
RESET client_min_messages;
CREATE ROLE regress_keys_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.session_token(601, '1 hour') AS token601 \gset
SELECT shop.session_token(603, '1 hour') AS token603 \gset
SELECT shop.product_upsert('KEY-1', 'Key lamp', 1500) AS p1 \gset
SELECT shop.product_upsert('KEY-2', 'Key desk', 2500) AS p2 \gset
SELECT count(shop.stock_set(p, 100)) AS stocked FROM unnest(ARRAY[:p1, :p2]::bigint[]) p;

-- the key of every row an order wrote, its cart's, its idempotency row's
CREATE FUNCTION pg_temp.keys(o uuid) RETURNS TABLE (tbl text, customer_key bigint, n bigint)
LANGUAGE sql AS $f$
    SELECT 'cart', c.customer_key, 1 FROM shop.cart c JOIN shop."order" x ON x.cart_id = c.cart_id WHERE x.order_id = o
    UNION ALL SELECT 'order', customer_key, 1 FROM shop."order" WHERE order_id = o
    UNION ALL SELECT 'order_line', customer_key, count(*) FROM shop.order_line WHERE order_id = o GROUP BY 2
    UNION ALL SELECT 'order_event', customer_key, count(*) FROM shop.order_event WHERE order_id = o GROUP BY 2
    UNION ALL SELECT 'payment', customer_key, count(*) FROM shop.payment WHERE order_id = o GROUP BY 2
    UNION ALL SELECT 'idempotency', customer_key, count(*) FROM shop.idempotency WHERE order_id = o GROUP BY 2
$f$;

SET ROLE regress_keys_front;
-- a guest: cart, lines, checkout, a retry with the same key
SELECT shop.cart_create() AS guest_cart \gset
SELECT shop.cart_add(:'guest_cart', :p1, 2);
SELECT shop.cart_add(:'guest_cart', :p2);
SELECT shop.checkout(:'guest_cart', 'tok_visa', 'guest-1') AS guest_order \gset
SELECT shop.checkout(:'guest_cart', 'tok_visa', 'guest-1') = :'guest_order' AS same_order;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_mastercard', 'guest-1')$$, :'guest_cart'));
SELECT shop.order_get(:'guest_order') ->> 'status' AS guest_status;
-- a customer with a session: the same, and a declined payment keeps nothing
SELECT shop.session_begin(:'token601') AS customer;
SELECT shop.cart_create(601) AS cart601 \gset
SELECT shop.cart_add(:'cart601', :p1);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_chargeDeclined', 'c601-1')$$, :'cart601'));
SELECT shop.checkout(:'cart601', 'tok_visa', 'c601-1') AS order601 \gset
SELECT shop.checkout(:'cart601', 'tok_visa', 'c601-1') = :'order601' AS same_order;
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_amex', 'c601-1')$$, :'cart601'));
SELECT status, total_cents FROM shop.orders_for(601);
-- a guest cart that logs in (customer 603 has no cart) keeps its key; its
-- next order is the customer's, here a gateway's, pending
SELECT shop.session_end();
SELECT shop.cart_create() AS anon \gset
SELECT shop.cart_add(:'anon', :p2);
SELECT shop.session_begin(:'token603') AS customer;
SELECT shop.cart_merge(:'anon', 603) = :'anon' AS became_customers;
SELECT shop.checkout(:'anon', 'stripe:pm_603', 'c603-1') AS order603 \gset
SELECT shop.order_get(:'order603') ->> 'status' AS gateway_status;
RESET ROLE;
SELECT shop.session_end();

-- the guest's rows share one key, a negative one made of the cart id's
-- last 16 bits; the customer's rows have the customer's id
SELECT tbl, customer_key = -1 - ('x' || right(:'guest_cart', 4))::bit(16)::int AS guest_key, n
  FROM pg_temp.keys(:'guest_order');
SELECT tbl, customer_key, n FROM pg_temp.keys(:'order601');
SELECT customer_id, customer_key = -1 - ('x' || right(:'anon', 4))::bit(16)::int AS kept_guest_key
  FROM shop.cart WHERE cart_id = :'anon';
SELECT tbl, customer_key, n FROM pg_temp.keys(:'order603') WHERE tbl <> 'cart';

-- the back office: transitions, a gateway payment confirmed, a cancel;
-- every event they add has the order's key
SELECT shop.order_transition(:'order601', 'fulfilling');
SELECT shop.order_ship(:'order601', 'UPS', '1Z-KEYS');
SELECT shop.payment_confirm(:'order603', 'ch_603');
SELECT shop.order_transition(:'guest_order', 'cancelled', 'keys test');
SELECT tbl, customer_key, n FROM pg_temp.keys(:'order601') WHERE tbl IN ('order_event', 'payment');
SELECT tbl, customer_key < 0 AS guest_key, n FROM pg_temp.keys(:'guest_order') WHERE tbl IN ('order_event', 'payment');
SELECT o.status, p.status AS payment FROM shop."order" o JOIN shop.payment p USING (order_id)
 WHERE o.order_id IN (:'order601', :'order603', :'guest_order') ORDER BY o.created_at;
-- a key names one order: no idempotency row of these keys twice
SELECT scope LIKE 'c:%' AS customer_scope, count(*) AS keys, count(DISTINCT order_id) AS orders
  FROM shop.idempotency GROUP BY 1 ORDER BY 1;

-- rows written directly (loads, tests) get their key from their columns
INSERT INTO shop.cart (cart_id, customer_id, expires_at)
VALUES ('00000000-0000-4000-8000-00000000abcd', NULL, now() + interval '1 day'),
       ('00000000-0000-4000-8000-000000000001', 602, now() + interval '1 day');
INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
VALUES ('00000000-0000-4000-8000-00000000abcd', :p1, 1, 100);
INSERT INTO shop."order" (order_id, customer_id, cart_id, status, currency, subtotal_cents, total_cents)
VALUES ('00000000-0000-4000-8000-000000000002', NULL, '00000000-0000-4000-8000-00000000abcd', 'paid', 'USD', 100, 100),
       ('00000000-0000-4000-8000-000000000003', 602, NULL, 'paid', 'USD', 100, 100);
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
VALUES ('00000000-0000-4000-8000-000000000002', 1, :p1, 'KEY-1', 'Key lamp', 100, 1);
INSERT INTO shop.idempotency (scope, key, fingerprint, order_id)
VALUES ('k:00000000-0000-4000-8000-00000000abcd', 'direct', 'x', '00000000-0000-4000-8000-000000000002'),
       ('c:602', 'direct', 'x', '00000000-0000-4000-8000-000000000003');
SELECT 'cart' AS tbl, cart_id::text AS id, customer_key FROM shop.cart WHERE cart_id::text LIKE '00000000-%'
UNION ALL SELECT 'cart_item', cart_id::text, customer_key FROM shop.cart_item WHERE cart_id::text LIKE '00000000-%'
UNION ALL SELECT 'order', order_id::text, customer_key FROM shop."order" WHERE order_id::text LIKE '00000000-%'
UNION ALL SELECT 'order_line', order_id::text, customer_key FROM shop.order_line WHERE order_id::text LIKE '00000000-%'
UNION ALL SELECT 'idempotency', scope, customer_key FROM shop.idempotency WHERE key = 'direct'
ORDER BY 1, 2;
-- a line of a cart that does not exist is refused as the foreign key refuses it
SELECT pg_temp.err($$INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
                     VALUES ('00000000-0000-4000-8000-0000000000ff', 1, 1, 100)$$);

DROP ROLE regress_keys_front;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
