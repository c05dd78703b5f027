-- recommend_refresh_write: the refresh writes the scores that moved
-- (shop.copurchase's on a full rescore, shop.customer_neighbour's) by
-- heap_update on the ctid read with each row (src/recowrite.c), not
-- through the executor; a table with a trigger (an audit a store adds)
-- keeps the statements, so the trigger sees every row the refresh
-- updates, and the tables are still what a rebuild writes (issues 11, 14)
\i sql/include/prelude.sql

SELECT pg_advisory_lock(hashtext('shop.recommendations')) IS NOT NULL AS locked;
SET shop.reco_neighbours = 3;

INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 120) i;

\i sql/include/buy.sql
CREATE FUNCTION pg_temp.basket(i int) RETURNS bigint[] LANGUAGE sql AS $f$
    SELECT array_agg(DISTINCT 1 + ((i * i * 7) % 120 + j * (1 + i % 3)) % 120)
      FROM generate_series(0, 1 + i % 4) j
$f$;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 90)) AS orders FROM generate_series(1, 600) i;
SELECT shop.rebuild_recommendations() ->> 'orders' AS rebuilt_orders;

-- the rows as they are, and the scores that differ from them now
CREATE FUNCTION pg_temp.keep() RETURNS void LANGUAGE sql AS $f$
    DROP TABLE IF EXISTS kept_cp, kept_nb;
    CREATE TEMP TABLE kept_cp AS SELECT * FROM shop.copurchase;
    CREATE TEMP TABLE kept_nb AS SELECT * FROM shop.customer_neighbour;
$f$;
CREATE FUNCTION pg_temp.moved(OUT copurchase bigint, OUT neighbours bigint) LANGUAGE plpgsql AS $f$
BEGIN
    SELECT count(*) INTO copurchase FROM kept_cp k JOIN shop.copurchase c USING (product_id, other_id)
     WHERE (k.pair_count, k.score) IS DISTINCT FROM (c.pair_count, c.score);
    SELECT count(*) INTO neighbours FROM kept_nb k JOIN shop.customer_neighbour c USING (customer_id, neighbour_id)
     WHERE k.score IS DISTINCT FROM c.score;
END $f$;
-- the four tables against a rebuild of the same orders, in a
-- transaction rolled back
CREATE FUNCTION pg_temp.against_rebuild(OUT copurchase_diffs bigint, OUT neighbour_diffs bigint)
LANGUAGE plpgsql AS $f$
BEGIN
    CREATE TEMP TABLE r_cp AS SELECT * FROM shop.copurchase;
    CREATE TEMP TABLE r_nb AS SELECT * FROM shop.customer_neighbour;
    PERFORM shop.rebuild_recommendations();
    SELECT count(*) INTO copurchase_diffs
      FROM r_cp i FULL JOIN shop.copurchase r USING (product_id, other_id)
     WHERE r.score IS NULL OR i.score IS NULL OR abs(i.pair_count - r.pair_count) > 1e-6
        OR abs(i.score - r.score) > 1e-6 * greatest(1, abs(r.score));
    SELECT count(*) INTO neighbour_diffs
      FROM r_nb i FULL JOIN shop.customer_neighbour r USING (customer_id, neighbour_id)
     WHERE r.score IS NULL OR i.score IS NULL OR abs(i.score - r.score) > 1e-6 * greatest(1, abs(r.score));
    DROP TABLE r_cp, r_nb;
    RAISE SQLSTATE 'P0001' USING MESSAGE = 'roll back';
EXCEPTION WHEN SQLSTATE 'P0001' THEN
    RETURN;
END $f$;

-- 1. enough orders to move the scoring total: every list rescored, the
-- moved scores written by ctid; the result is a rebuild's
SET client_min_messages = warning;
SELECT pg_temp.keep();
RESET client_min_messages;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 90)) AS orders FROM generate_series(601, 800) i;
SELECT r ->> 'full_rescore' AS full_rescore FROM shop.refresh_recommendations() r;
SELECT copurchase > 100 AS copurchase_moved FROM pg_temp.moved();
SELECT * FROM pg_temp.against_rebuild();

-- 2. a store's audit trigger on both tables: it sees every row whose
-- score the refresh moved (the refresh keeps its UPDATE statements for
-- a table with a trigger), and the result is still a rebuild's
CREATE TABLE public.score_audit (tbl text, k1 bigint, k2 bigint);
CREATE FUNCTION public.score_audit_trg() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.score_audit VALUES (TG_TABLE_NAME, (to_jsonb(NEW) -> TG_ARGV[0])::bigint,
                                          (to_jsonb(NEW) -> TG_ARGV[1])::bigint);
    RETURN NULL;
END $f$;
CREATE TRIGGER score_audit AFTER UPDATE ON shop.copurchase
    FOR EACH ROW EXECUTE FUNCTION public.score_audit_trg('product_id', 'other_id');
CREATE TRIGGER score_audit AFTER UPDATE ON shop.customer_neighbour
    FOR EACH ROW EXECUTE FUNCTION public.score_audit_trg('customer_id', 'neighbour_id');
SET client_min_messages = warning;
SELECT pg_temp.keep();
RESET client_min_messages;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 90)) AS orders FROM generate_series(801, 1100) i;
SELECT r ->> 'full_rescore' AS full_rescore FROM shop.refresh_recommendations() r;
SELECT m.copurchase > 100 AS copurchase_moved,
       m.copurchase = (SELECT count(*) FROM public.score_audit WHERE tbl = 'copurchase') AS audit_saw_copurchase,
       m.neighbours = (SELECT count(*) FROM public.score_audit WHERE tbl = 'customer_neighbour') AS audit_saw_neighbours
  FROM pg_temp.moved() m;
-- (the rebuild's bulk fill refuses tables with triggers)
DROP TRIGGER score_audit ON shop.copurchase;
DROP TRIGGER score_audit ON shop.customer_neighbour;
SELECT * FROM pg_temp.against_rebuild();

-- 3. the profiles (shop.customer_item) and the lists' new and dropped
-- rows are written straight to the heap too (a profile row whose weight
-- is unchanged stays, a moved weight is updated in place): the profiles
-- after a refresh are those computed from the orders, as a rebuild
-- writes them, and the lists a rebuild's
CREATE FUNCTION pg_temp.profile_diffs() RETURNS bigint LANGUAGE sql AS $f$
    SELECT count(*) FROM shop.customer_item c FULL JOIN shop._like_profile(NULL) p USING (customer_id, product_id)
     WHERE c.weight IS NULL OR p.weight IS NULL OR c.weight <> p.weight OR c.h <> p.h
$f$;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 97)) AS orders FROM generate_series(1101, 1300) i;
SELECT (r ->> 'customers_profiled')::int > 50 AS profiled FROM shop.refresh_recommendations() r;
SELECT pg_temp.profile_diffs() AS profile_diffs;
SELECT * FROM pg_temp.against_rebuild();

-- 4. a store's audit trigger on every write of both tables: they keep
-- the statements, so it sees each profile row deleted and inserted and
-- each list row dropped and added, and the result is the same
TRUNCATE public.score_audit;
CREATE OR REPLACE FUNCTION public.score_audit_trg() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.score_audit
    SELECT TG_TABLE_NAME || ' ' || lower(TG_OP), (to_jsonb(r) -> TG_ARGV[0])::bigint, (to_jsonb(r) -> TG_ARGV[1])::bigint
      FROM (SELECT CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END) x(r);
    RETURN NULL;
END $f$;
CREATE TRIGGER score_audit AFTER INSERT OR DELETE ON shop.customer_neighbour
    FOR EACH ROW EXECUTE FUNCTION public.score_audit_trg('customer_id', 'neighbour_id');
CREATE TRIGGER score_audit AFTER INSERT OR UPDATE OR DELETE ON shop.customer_item
    FOR EACH ROW EXECUTE FUNCTION public.score_audit_trg('customer_id', 'product_id');
SET client_min_messages = warning;
SELECT pg_temp.keep();
DROP TABLE IF EXISTS kept_ci;
CREATE TEMP TABLE kept_ci AS SELECT * FROM shop.customer_item;
RESET client_min_messages;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + (i * 7) % 97)) AS orders FROM generate_series(1301, 1500) i;
SELECT (r ->> 'customers_profiled')::int > 50 AS profiled FROM shop.refresh_recommendations() r;
-- every list row added or dropped, every profile row of a customer
-- profiled again (deleted and inserted by the statements), is in the audit
SELECT (SELECT count(*) FROM shop.customer_neighbour c WHERE NOT EXISTS
          (SELECT 1 FROM kept_nb k WHERE (k.customer_id, k.neighbour_id) = (c.customer_id, c.neighbour_id)))
       = (SELECT count(*) FROM public.score_audit WHERE tbl = 'customer_neighbour insert') AS audit_saw_added,
       (SELECT count(*) FROM kept_nb k WHERE NOT EXISTS
          (SELECT 1 FROM shop.customer_neighbour c WHERE (k.customer_id, k.neighbour_id) = (c.customer_id, c.neighbour_id)))
       = (SELECT count(*) FROM public.score_audit WHERE tbl = 'customer_neighbour delete') AS audit_saw_dropped,
       (SELECT count(*) FROM public.score_audit WHERE tbl = 'customer_item insert') > 0 AS audit_saw_profiles,
       (SELECT count(*) FROM public.score_audit WHERE tbl = 'customer_item insert')
       = (SELECT count(*) FROM shop.customer_item c
           WHERE c.customer_id IN (SELECT a.k1 FROM public.score_audit a WHERE a.tbl = 'customer_item delete')
              OR NOT EXISTS (SELECT 1 FROM kept_ci k WHERE k.customer_id = c.customer_id)) AS audit_saw_all_profile_rows;
SELECT pg_temp.profile_diffs() AS profile_diffs;
DROP TRIGGER score_audit ON shop.customer_neighbour;
DROP TRIGGER score_audit ON shop.customer_item;
SELECT * FROM pg_temp.against_rebuild();
DROP TABLE public.score_audit;
DROP FUNCTION public.score_audit_trg();

-- 5. a CHECK constraint a store adds (here one that notes every row it
-- checks) is checked on every row the refresh writes: a table with one
-- keeps the statements (the direct writes skipped the check of the
-- moved scores)
CREATE TABLE public.check_audit (tbl text, k1 bigint, k2 bigint);
CREATE FUNCTION public.checked(t text, a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.check_audit VALUES (t, a, b);
    RETURN true;
END $f$;
ALTER TABLE shop.copurchase ADD CONSTRAINT copurchase_checked
    CHECK (public.checked('copurchase', product_id, other_id)) NOT VALID;
ALTER TABLE shop.customer_neighbour ADD CONSTRAINT neighbour_checked
    CHECK (public.checked('customer_neighbour', customer_id, neighbour_id)) NOT VALID;
SET client_min_messages = warning;
SELECT pg_temp.keep();
RESET client_min_messages;
SELECT count(pg_temp.buy(pg_temp.basket(i), 1 + i % 90)) AS orders FROM generate_series(1501, 1800) i;
SELECT r ->> 'full_rescore' AS full_rescore FROM shop.refresh_recommendations() r;
-- every moved score was checked
SELECT m.copurchase > 100 AS copurchase_moved,
       (SELECT count(*) FROM kept_cp k JOIN shop.copurchase c USING (product_id, other_id)
         WHERE (k.pair_count, k.score) IS DISTINCT FROM (c.pair_count, c.score)
           AND NOT EXISTS (SELECT 1 FROM public.check_audit a
                            WHERE a.tbl = 'copurchase' AND (a.k1, a.k2) = (c.product_id, c.other_id))) AS unchecked_copurchase,
       (SELECT count(*) FROM kept_nb k JOIN shop.customer_neighbour c USING (customer_id, neighbour_id)
         WHERE k.score IS DISTINCT FROM c.score
           AND NOT EXISTS (SELECT 1 FROM public.check_audit a
                            WHERE a.tbl = 'customer_neighbour' AND (a.k1, a.k2) = (c.customer_id, c.neighbour_id))) AS unchecked_neighbours
  FROM pg_temp.moved() m;
ALTER TABLE shop.copurchase DROP CONSTRAINT copurchase_checked;
ALTER TABLE shop.customer_neighbour DROP CONSTRAINT neighbour_checked;
SELECT * FROM pg_temp.against_rebuild();
DROP TABLE public.check_audit;
DROP FUNCTION public.checked(text, bigint, bigint);

RESET shop.reco_neighbours;
SELECT pg_advisory_unlock(hashtext('shop.recommendations')) AS unlocked;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
