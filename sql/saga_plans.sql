-- saga_plans: the router's place step, shop._saga_place (run on the
-- customer's shard), counts the customer's orders and the token's
-- payments of the last hour for the fraud rules.  With many orders in the
-- last hour (Black Friday) and statistics from before them, those counts
-- were planned on order_created_idx and payment_created_idx and read
-- every order and payment of the hour, whoever placed it (issue 11); they
-- read the customer's and the token's index, whatever the statistics say.
\i sql/include/prelude.sql
SELECT shop.product_upsert('MUG', 'Coffee mug', 1200) AS mug \gset
SELECT shop.stock_set(:mug, 100);
ALTER TABLE shop."order" SET (autovacuum_enabled = off);
ALTER TABLE shop.payment SET (autovacuum_enabled = off);

-- a season: 3,000 orders of 1,000 customers over 90 days, analyzed
SET session_replication_role = replica;
CREATE FUNCTION pg_temp.orders(n int, first int, customers int, newest timestamptz, span interval)
RETURNS void LANGUAGE sql AS $f$
    WITH o AS (
        INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents,
                                  shipping_cents, tax_cents, total_cents, fraud_score, was_paid,
                                  idempotency_key, event_count, created_at, updated_at)
        SELECT md5('saga_plans' || (first + g))::uuid, 1 + (first + g) % customers, 1 + (first + g) % customers,
               'delivered', 'USD', 5000, 0, 0, 5000, 0, true, 'sp-' || (first + g), 4,
               newest - span * g / n, newest - span * g / n
          FROM generate_series(1, n) g
        RETURNING order_id, customer_id, created_at)
    INSERT INTO shop.payment (order_id, customer_key, provider, token, card_brand, last4, status,
                              amount_cents, fraud_score, created_at, updated_at)
    SELECT o.order_id, o.customer_id, 'test', 'tok_visa_c' || o.customer_id, 'visa', '4242', 'captured',
           5000, 0, o.created_at, o.created_at
      FROM o
$f$;
SELECT pg_temp.orders(3000, 0, 1000, now() - interval '1 hour', interval '89 days');
RESET session_replication_role;
ANALYZE shop."order", shop.payment;
-- then a busy hour: 120 orders of 10 customers, not yet analyzed;
-- customer 7 placed 12 of them, each paid with its card.  Reading the
-- hour by order_created_idx or payment_created_idx reads all 120
SET session_replication_role = replica;
SELECT pg_temp.orders(120, 100000, 10, now() - interval '1 second', interval '50 minutes');
RESET session_replication_role;
SELECT count(*) AS customer_7_last_hour FROM shop."order"
 WHERE customer_id = 7 AND created_at > now() - interval '1 hour';

-- customer 7 checks out through the router's steps, with its card
SELECT shop.cart_create(7) AS cart \gset
SELECT shop.cart_add(:'cart', :mug) IS NOT NULL AS added;
SELECT count(*) AS begun FROM shop._saga_begin('00000000-0000-4000-8000-00000000fa11', :'cart', 'tok_visa_c7',
                                               'saga-plans', NULL);
-- index entries each index returned during the place step (the
-- transaction's own counters)
CREATE FUNCTION pg_temp.entries() RETURNS TABLE (idx text, n bigint) LANGUAGE sql AS $f$
    SELECT c.relname::text, pg_stat_get_xact_tuples_returned(c.oid)
      FROM pg_class c
     WHERE c.relnamespace = 'shop'::regnamespace
       AND c.relname IN ('order_created_idx', 'payment_created_idx', 'order_customer_idx', 'payment_token_idx')
$f$;
BEGIN;
CREATE TEMP TABLE before_place AS SELECT * FROM pg_temp.entries();
SELECT shop._saga_place('00000000-0000-4000-8000-00000000fa11', ARRAY[:mug]::bigint[], ARRAY['MUG'],
                        ARRAY['Coffee mug'], ARRAY[1200]::bigint[], ARRAY[1], 'tok_visa_c7', NULL) AS placed;
SELECT a.idx, a.n - b.n < 100 AS under_100_entries
  FROM pg_temp.entries() a JOIN before_place b USING (idx)
 ORDER BY a.idx;
COMMIT;
-- the rules saw the hour as before: customer velocity (12 orders, >= 10)
-- and token velocity (12 payments with the card)
SELECT status, fraud_score, fraud_reasons FROM shop."order"
 WHERE order_id = '00000000-0000-4000-8000-00000000fa11';

-- customer 8 with 2,000 orders never paid (cancelled before payment) newer
-- than its paid ones: the place step reads the last 50 paid orders by
-- order_customer_paid_idx, not by passing over the 2,000 unpaid ones in
-- order_customer_idx (2,050 entries before)
SET session_replication_role = replica;
INSERT INTO shop."order" (order_id, customer_id, customer_key, status, currency, subtotal_cents, total_cents,
                          was_paid, created_at, updated_at)
SELECT md5('saga_plans_unpaid' || g)::uuid, 8, 8, 'cancelled', 'USD', 100, 100, false,
       now() - interval '2 hours' - g * interval '1 minute', now() - interval '2 hours'
  FROM generate_series(1, 2000) g;
RESET session_replication_role;
SELECT shop.cart_create(8) AS cart8 \gset
SELECT shop.cart_add(:'cart8', :mug) IS NOT NULL AS added;
SELECT count(*) AS begun FROM shop._saga_begin('00000000-0000-4000-8000-00000000fa12', :'cart8', 'tok_visa_c8',
                                               'saga-plans-8', NULL);
CREATE FUNCTION pg_temp.order_entries() RETURNS bigint LANGUAGE sql AS $f$
    SELECT sum(pg_stat_get_xact_tuples_returned(i.indexrelid))::bigint
      FROM pg_index i WHERE i.indrelid = 'shop."order"'::regclass
$f$;
BEGIN;
CREATE TEMP TABLE before_place8 AS SELECT pg_temp.order_entries() AS n;
SELECT shop._saga_place('00000000-0000-4000-8000-00000000fa12', ARRAY[:mug]::bigint[], ARRAY['MUG'],
                        ARRAY['Coffee mug'], ARRAY[1200]::bigint[], ARRAY[1], 'tok_visa_c8', NULL) AS placed;
SELECT pg_temp.order_entries() - n < 100 AS under_100_order_entries FROM before_place8;
COMMIT;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
