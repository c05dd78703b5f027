-- trigger_skip_reco: a DBA's BEFORE trigger that skips the rows shop's
-- co-purchase apply writes (shop.copurchase_item's upsert) gives a
-- clear 27000 and keeps nothing; it crashed the server before (the C read
-- row 0 of the upsert's empty result)
\i sql/include/prelude.sql

INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 5) i;
\i sql/include/buy.sql
SELECT count(pg_temp.buy(ARRAY[1, 2, 3]::bigint[], c)) AS orders FROM generate_series(1, 3) c;
SELECT shop.rebuild_recommendations() ->> 'orders' AS rebuilt_orders;
SELECT product_id, baskets FROM shop.copurchase_item ORDER BY product_id;

CREATE FUNCTION pg_temp.skip() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN RETURN NULL; END $f$;
CREATE TRIGGER skip BEFORE INSERT OR UPDATE ON shop.copurchase_item
    FOR EACH ROW EXECUTE FUNCTION pg_temp.skip();
SELECT pg_temp.buy(ARRAY[1, 2, 4]::bigint[], 4) AS o4 \gset
-- the apply step of the co-purchase log (shop._copurchase_apply, its C
-- reads the upsert's returned counts)
SELECT pg_temp.err(format('SELECT shop._copurchase_apply(ARRAY[%L]::uuid[], ARRAY[1.0]::float8[])', :'o4')) AS apply_skipped;
-- nothing kept: the counts are the rebuild's
SELECT product_id, baskets FROM shop.copurchase_item ORDER BY product_id;
DROP TRIGGER skip ON shop.copurchase_item;
SELECT array(SELECT unnest(shop._copurchase_apply(ARRAY[:'o4']::uuid[], ARRAY[1.0]::float8[])) ORDER BY 1) AS changed;
SELECT product_id, baskets FROM shop.copurchase_item ORDER BY product_id;
