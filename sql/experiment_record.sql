-- experiment_record: the impression of a list shown in an experiment,
-- written by shop._experiment_record (C, rec10: src/expshow.c) as the
-- INSERT of recommend and also_bought wrote it: the columns' defaults,
-- BEFORE ROW triggers (a store's, and the card guard), constraints and
-- indexes; the statement where the table has other triggers; 25006 in a
-- read-only transaction; nothing for an empty list.  Run as the
-- storefront (docs/recommendations.md, "Experiments").
\i sql/include/prelude.sql

SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_rec_front;
RESET client_min_messages;
CREATE ROLE regress_rec_front LOGIN IN ROLE shop_storefront;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT setseed(0.5);
CREATE TEMP VIEW impressions AS
SELECT * FROM shop.experiment_impression UNION ALL SELECT * FROM shop.experiment_impression_recent;
GRANT SELECT ON impressions TO PUBLIC;

SELECT shop.category_add('Computers') AS computers \gset
INSERT INTO shop.product (product_id, sku, title, brand, category_id, price_cents) VALUES
    (1, 'LAPTOP', 'Laptop 14 inch', 'Acme', :computers, 90000),
    (2, 'BAG', 'Laptop bag', 'Carry', :computers, 4000),
    (3, 'MOUSE', 'Wireless mouse', 'Acme', :computers, 2500),
    (7, 'STICK', 'USB stick', 'Acme', :computers, 900);
\i sql/include/buy.sql
SELECT count(pg_temp.buy(ARRAY[1, 2, 7], 501)) FROM generate_series(1, 4);
SELECT count(pg_temp.buy(ARRAY[1, 3, 7])) FROM generate_series(1, 3);
SELECT shop.refresh_recommendations() ->> 'orders_applied' AS applied;
-- every unit is in one of the two variants
SELECT shop.experiment_create('all-in', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS created;
SELECT shop.session_token(501, '1 hour') AS tok501 \gset

-- a customer's list and a guest's: one row each, the list as shown
SET ROLE regress_rec_front;
SELECT shop.session_begin(:'tok501') AS customer;
SELECT array_agg(product_id ORDER BY product_id) AS listed FROM shop.recommend(501, 3, 'all-in');
SELECT shop.session_end();
SELECT array_agg(product_id ORDER BY product_id) AS listed FROM shop.also_bought(1, 2, 'all-in', NULL, 'cart-1');
RESET ROLE;
SELECT unit, surface, variant, array(SELECT unnest(products) ORDER BY 1) AS products,
       impression_id IS NOT NULL AS has_id, shown_at <= clock_timestamp() AS shown_before_now
  FROM impressions ORDER BY shown_at;

-- a read-only transaction: refused as the INSERT refused it, nothing written
BEGIN READ ONLY;
SELECT pg_temp.err($$SELECT * FROM shop.also_bought(1, 2, 'all-in', NULL, 'cart-2')$$) AS read_only;
ROLLBACK;
SELECT count(*) AS rows_cart2 FROM impressions WHERE unit = 'guest:cart-2';

-- a stopped experiment and a list nobody is in: the default list, no row
SELECT shop.experiment_create('stopped', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS created;
SELECT shop.experiment_stop('stopped') IS NOT NULL AS stopped;
SELECT count(*) AS listed FROM shop.also_bought(1, 2, 'stopped', NULL, 'cart-3');
SELECT count(*) AS listed FROM shop.also_bought(1, 2, 'all-in');   -- no unit
SELECT count(*) AS rows_now FROM impressions;

-- a default the store changed: the next row takes it (the kept defaults
-- are dropped with the table's relcache entry)
ALTER TABLE shop.experiment_impression_recent ALTER COLUMN shown_at SET DEFAULT '2001-02-03 04:05:06+00';
SET ROLE regress_rec_front;
SELECT count(*) AS listed FROM shop.also_bought(1, 2, 'all-in', NULL, 'cart-4');
RESET ROLE;
SELECT unit, shown_at = '2001-02-03 04:05:06+00' AS new_default FROM impressions WHERE unit = 'guest:cart-4';
ALTER TABLE shop.experiment_impression_recent ALTER COLUMN shown_at SET DEFAULT clock_timestamp();

-- a store's BEFORE ROW trigger: it sees the row and may change it or skip it
CREATE FUNCTION pg_temp.tag_unit() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF NEW.unit = 'guest:skip-me' THEN
        RETURN NULL;
    END IF;
    NEW.unit := NEW.unit || ':tagged';
    RETURN NEW;
END $f$;
CREATE TRIGGER a_tag BEFORE INSERT ON shop.experiment_impression_recent
    FOR EACH ROW EXECUTE FUNCTION pg_temp.tag_unit();
SET ROLE regress_rec_front;
SELECT count(*) AS listed FROM shop.also_bought(1, 2, 'all-in', NULL, 'cart-5');
SELECT count(*) AS listed FROM shop.also_bought(1, 2, 'all-in', NULL, 'skip-me');
RESET ROLE;
SELECT unit FROM impressions WHERE unit LIKE 'guest:cart-5%' OR unit LIKE 'guest:skip-me%' ORDER BY unit;
DROP TRIGGER a_tag ON shop.experiment_impression_recent;

-- a store's AFTER ROW trigger: the row goes through the INSERT statement,
-- and the trigger sees it
CREATE TEMP TABLE seen (unit text, surface text);
GRANT INSERT ON seen TO PUBLIC;
CREATE FUNCTION pg_temp.see() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO pg_temp.seen VALUES (NEW.unit, NEW.surface);
    RETURN NULL;
END $f$;
CREATE TRIGGER z_see AFTER INSERT ON shop.experiment_impression_recent
    FOR EACH ROW EXECUTE FUNCTION pg_temp.see();
SET ROLE regress_rec_front;
SELECT count(*) AS listed FROM shop.also_bought(1, 2, 'all-in', NULL, 'cart-6');
SELECT shop.session_begin(:'tok501') AS customer;
SELECT count(*) AS listed FROM shop.recommend(501, 3, 'all-in');
SELECT shop.session_end();
RESET ROLE;
SELECT * FROM seen ORDER BY unit;
SELECT count(*) AS rows_cart6 FROM impressions WHERE unit = 'guest:cart-6';
DROP TRIGGER z_see ON shop.experiment_impression_recent;

-- the storefront cannot call the internal functions
SET ROLE regress_rec_front;
SELECT pg_temp.err($$SELECT shop._experiment_record(1, 0::smallint, 'x', 'recommend', '{1}')$$) AS record;
SELECT pg_temp.err($$SELECT shop._experiment_variant('all-in', 'x')$$) AS variant;
RESET ROLE;
-- the variant as the documented hash and the variant table give it
SELECT (shop._experiment_variant('all-in', '501')).variant AS v501,
       (shop._experiment_variant('stopped', '501')).variant IS NULL AS stopped_none,
       (shop._experiment_variant('nope', '501')).experiment_id IS NULL AS unknown_none,
       (shop._experiment_variant('all-in', NULL)).variant IS NULL AS no_unit_none;

SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP VIEW pg_temp.impressions;
DROP TABLE pg_temp.seen;
RESET shop.session_secret;
SET client_min_messages = warning;
DROP OWNED BY regress_rec_front;
DROP ROLE regress_rec_front;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
