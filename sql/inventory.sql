-- inventory: stock, reservations, buckets, reorder alerts
\i sql/include/prelude.sql
-- errd(q): the same with the detail, where the detail is the point
CREATE FUNCTION pg_temp.errd(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE d text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || d;
END $f$;
-- check(): the invariant of every stock row, and the product flag
CREATE FUNCTION pg_temp.check() RETURNS text LANGUAGE sql AS $f$
    SELECT coalesce(string_agg(format('%s/%s/%s reserved %s held %s', s.product_id, s.location,
                                      s.bucket, s.reserved, coalesce(h.q, 0)), '; '), 'consistent')
      FROM shop.stock s
      LEFT JOIN (SELECT product_id, location, bucket, sum(qty) AS q FROM shop.reservation
                  WHERE status = 'held' GROUP BY 1, 2, 3) h USING (product_id, location, bucket)
     WHERE s.reserved <> coalesce(h.q, 0) OR s.reserved > s.on_hand OR s.reserved < 0
$f$;

SELECT shop.product_upsert('INV-1', 'Widget', 1000) AS p1 \gset
SELECT shop.product_upsert('INV-2', 'Gadget', 2000) AS p2 \gset
SELECT shop.product_upsert('INV-3', 'Doorbuster TV', 19900) AS p3 \gset

-- stock_set returns the units available; in_stock follows on_hand
SELECT in_stock FROM shop.product WHERE product_id = :p1;
SELECT shop.stock_set(:p1, 10) AS available;
SELECT in_stock FROM shop.product WHERE product_id = :p1;
SELECT shop.stock_set(product_id => :p2, on_hand => 4, location => 'east') AS available;
SELECT shop.stock_available(:p1) AS p1, shop.stock_available(:p2) AS p2, shop.stock_available(:p3) AS p3_no_stock;
SELECT product_id = :p1 AS p1, location, bucket, on_hand, reserved FROM shop.stock ORDER BY product_id, location;

-- reserve: holds come out of availability, never out of on_hand
SELECT shop.reserve(:p1, 3, 'cart-1') AS r1 \gset
SELECT shop.reserve(product_id => :p1, qty => 2) AS r2 \gset
SELECT shop.stock_available(:p1) AS available,
       (SELECT on_hand FROM shop.stock WHERE product_id = :p1) AS on_hand,
       (SELECT reserved FROM shop.stock WHERE product_id = :p1) AS reserved;
SELECT qty, status, ref, expires_at > now() + interval '14 minutes' AS ttl_15min
  FROM shop.reservation WHERE reservation_id = :'r1';
-- asking for more than is available: SH001 naming product, requested, available
SELECT pg_temp.errd(format('SELECT shop.reserve(%s, 6)', :p1));
SELECT pg_temp.errd(format('SELECT shop.reserve(%s, 1)', :p3));
SELECT shop.reserve(:p1, 5) IS NOT NULL AS took_the_rest;
SELECT shop.stock_available(:p1) AS available;
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 1)', :p1));
SELECT pg_temp.check();

-- release gives units back; twice is a no-op; commit of a released hold refused
SELECT shop.reservation_release(:'r1') AS released, shop.reservation_release(:'r1') AS again;
SELECT shop.stock_available(:p1) AS available;
SELECT pg_temp.err(format('SELECT shop.reservation_commit(%L)', :'r1'));
-- commit: the units leave (on_hand and reserved both drop), idempotent
SELECT shop.reservation_commit(:'r2') AS committed, shop.reservation_commit(:'r2') AS again;
SELECT on_hand, reserved FROM shop.stock WHERE product_id = :p1;
SELECT pg_temp.err(format('SELECT shop.reservation_release(%L)', :'r2'));
SELECT status FROM shop.reservation WHERE reservation_id IN (:'r1', :'r2') ORDER BY status;
SELECT delta, on_hand, reason FROM shop.stock_ledger WHERE product_id = :p1 ORDER BY entry_id;
SELECT pg_temp.check();

-- unknown and NULL ids
SELECT pg_temp.err($$SELECT shop.reservation_release('00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.err($$SELECT shop.reservation_commit('00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.err($$SELECT shop.reservation_extend('00000000-0000-0000-0000-000000000000', '1 hour')$$);
SELECT pg_temp.err($$SELECT shop.reservation_release(NULL)$$);
SELECT pg_temp.err($$SELECT shop.reservation_commit(NULL)$$);
SELECT pg_temp.err($$SELECT shop.stock_available(NULL)$$);
SELECT pg_temp.err($$SELECT shop.stock_available(999999)$$);

-- bad reserve arguments: nothing is held
SELECT count(*) AS reservations_before FROM shop.reservation \gset
SELECT pg_temp.err($$SELECT shop.reserve(NULL, 1)$$);
SELECT pg_temp.err(format('SELECT shop.reserve(%s, NULL)', :p1));
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 0)', :p1));
SELECT pg_temp.err(format('SELECT shop.reserve(%s, -2)', :p1));
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 2000000)', :p1));
SELECT pg_temp.errd('SELECT shop.reserve(999999, 1)');
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 1, ttl => NULL)', :p1));
SELECT pg_temp.err(format($$SELECT shop.reserve(%s, 1, ttl => '0 seconds')$$, :p1));
SELECT pg_temp.err(format($$SELECT shop.reserve(%s, 1, ttl => '-5 minutes')$$, :p1));
SELECT pg_temp.err(format($$SELECT shop.reserve(%s, 1, ttl => '2 years')$$, :p1));
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 1, %L)', :p1, repeat('r', 201)));
SELECT pg_temp.errd(format('SELECT shop.reserve(%s, 1, %L)', :p1, 'card 4242 4242 4242 4242'));
SELECT count(*) = :reservations_before AS nothing_held FROM shop.reservation;

-- expiry: an expired hold is free again at once (stock_available), and the
-- next reserve that needs it reclaims it without any sweep
SELECT shop.stock_set(:p2, 3, 'east');
SELECT shop.reserve(:p2, 3, 'cart-old', ttl => '1 second') AS old \gset
SELECT shop.stock_available(:p2) AS available_while_held;
UPDATE shop.reservation SET expires_at = now() - interval '1 second' WHERE reservation_id = :'old';
SELECT shop.stock_available(:p2) AS available_once_expired;
SELECT shop.reserve(:p2, 2, 'cart-new') AS new \gset
SELECT status FROM shop.reservation WHERE reservation_id = :'old';
SELECT shop.reservation_release(:'old') AS release_of_expired;
SELECT pg_temp.err(format('SELECT shop.reservation_commit(%L)', :'old'));
SELECT pg_temp.err(format($$SELECT shop.reservation_extend(%L, '1 hour')$$, :'old'));
SELECT pg_temp.check();

-- extend: a paid order keeps its hold (NULL ttl: no expiry)
SELECT shop.reservation_extend(:'new', '2 hours') > now() + interval '119 minutes' AS extended;
SELECT shop.reservation_extend(:'new', NULL) AS expires_at;
SELECT pg_temp.err(format($$SELECT shop.reservation_extend(%L, '-1 hour')$$, :'new'));
SELECT pg_temp.err($$SELECT shop.reservation_extend(NULL, '1 hour')$$);

-- reserve_many: repeated products summed, one id per product in product order
SELECT shop.stock_set(:p1, 10);
SELECT shop.stock_set(:p3, 5);
SELECT shop.reserve_many(format('[{"product_id": %s, "qty": 2}, {"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 3}]',
                                :p3, :p1, :p3)::jsonb, 'order-7') AS ids \gset
SELECT cardinality(:'ids'::uuid[]) AS ids;
SELECT r.product_id = :p1 AS is_p1, r.qty, r.ref
  FROM unnest(:'ids'::uuid[]) WITH ORDINALITY AS u(id, n)
  JOIN shop.reservation r ON r.reservation_id = u.id ORDER BY u.n;
SELECT shop.stock_available(:p1) AS p1, shop.stock_available(:p3) AS p3;
-- all or nothing: the second line fails, the first is not held either
SELECT pg_temp.err(format('SELECT shop.reserve_many(%L)',
                          format('[{"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 1}]', :p1, :p3)));
SELECT pg_temp.err(format('SELECT shop.reserve_many(%L)',
                          format('[{"product_id": %s, "qty": 1}, {"product_id": 999999, "qty": 1}]', :p1)));
SELECT shop.stock_available(:p1) AS p1_unchanged;
-- malformed items
SELECT pg_temp.err($$SELECT shop.reserve_many(NULL)$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('{"product_id": 1, "qty": 1}')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('[]')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('7')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('[1, 2]')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('[{"product_id": 1}]')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('[{"qty": 1}]')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('[{"product_id": "1", "qty": 1}]')$$);
SELECT pg_temp.errd($$SELECT shop.reserve_many('[{"product_id": 1, "qty": 1.5}]')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('[{"product_id": 1e30, "qty": 1}]')$$);
SELECT pg_temp.err($$SELECT shop.reserve_many('[{"product_id": 1, "qty": 0}]')$$);
SELECT pg_temp.err(format('SELECT shop.reserve_many(%L)',
                          format('[{"product_id": %s, "qty": 600000}, {"product_id": %s, "qty": 600000}]', :p1, :p1)));
SELECT pg_temp.err(format('SELECT shop.reserve_many(%L, ttl => NULL)',
                          format('[{"product_id": %s, "qty": 1}]', :p1)));
SELECT pg_temp.err(format('SELECT shop.reserve_many(%L)',
                          (SELECT jsonb_agg(jsonb_build_object('product_id', :p1, 'qty', 1)) FROM generate_series(1, 1001))));
SELECT pg_temp.check();

-- stock_adjust: removes only unreserved units, with a reason in the ledger
SELECT shop.stock_set(:p2, 5, 'east');
SELECT on_hand, reserved FROM shop.stock WHERE product_id = :p2;
SELECT shop.stock_adjust(:p2, -3, 'damaged in storage', 'east') AS available;
SELECT pg_temp.errd(format($$SELECT shop.stock_adjust(%s, -1, 'lost', 'east')$$, :p2));
SELECT shop.stock_adjust(:p2, 7, 'delivery from supplier', 'east') AS available;
SELECT shop.stock_adjust(:p2, 2, 'opened second store', 'west') AS available;
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, -1, 'lost', 'north')$$, :p2));
SELECT location, delta, on_hand, reason FROM shop.stock_ledger WHERE product_id = :p2 ORDER BY entry_id;
SELECT pg_temp.err($$SELECT shop.stock_adjust(NULL, 1, 'x')$$);
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, NULL, 'x')$$, :p2));
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, 0, 'x')$$, :p2));
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, 1, NULL)$$, :p2));
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, 1, '')$$, :p2));
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, 1, %L)$$, :p2, repeat('x', 201)));
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, 1, 'x', NULL)$$, :p2));
SELECT pg_temp.err(format($$SELECT shop.stock_adjust(%s, 1, 'x', '')$$, :p2));
SELECT pg_temp.err($$SELECT shop.stock_adjust(999999, 1, 'x')$$);
-- stock_set: bad input, and never below what is reserved
SELECT pg_temp.errd(format('SELECT shop.stock_set(%s, 1, %L)', :p2, 'east'));
SELECT pg_temp.err($$SELECT shop.stock_set(NULL, 1)$$);
SELECT pg_temp.err(format('SELECT shop.stock_set(%s, NULL)', :p2));
SELECT pg_temp.err(format('SELECT shop.stock_set(%s, -1)', :p2));
SELECT pg_temp.err(format('SELECT shop.stock_set(%s, 1, %L)', :p2, repeat('l', 101)));
SELECT pg_temp.err('SELECT shop.stock_set(999999, 1)');
SELECT sum(on_hand) AS p2_on_hand FROM shop.stock WHERE product_id = :p2;
-- in_stock clears when the last unit leaves
SELECT shop.stock_set(:p2, 0, 'west');
SELECT shop.reservation_release(:'new');
SELECT shop.stock_set(:p2, 0, 'east');
SELECT in_stock FROM shop.product WHERE product_id = :p2;
SELECT pg_temp.check();

-- buckets: a hot product's stock spread over rows, availability exact
SELECT shop.stock_set(:p3, 100);
SELECT shop.stock_available(:p3) AS before;
SELECT shop.stock_set_buckets(:p3, 4);
SELECT bucket, on_hand, reserved FROM shop.stock WHERE product_id = :p3 ORDER BY bucket;
SELECT shop.stock_available(:p3) AS after;
SELECT count(*) AS holds FROM (SELECT shop.reserve(:p3, 1) FROM generate_series(1, 30)) x;
SELECT shop.stock_available(:p3) AS available, sum(on_hand) AS on_hand, sum(reserved) AS reserved,
       count(*) FILTER (WHERE reserved > 0) > 1 AS spread_over_buckets
  FROM shop.stock WHERE product_id = :p3;
-- a hold larger than any one bucket takes several parts
SELECT shop.reserve(:p3, 60, 'big') AS big \gset
SELECT count(*) > 1 AS parts, sum(qty) AS qty FROM shop.reservation WHERE reservation_id = :'big';
SELECT shop.stock_available(:p3) AS available;
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 6)', :p3));
SELECT shop.reservation_release(:'big') AS released;
SELECT shop.stock_available(:p3) AS available;
-- fewer buckets: holds move with their units, nothing lost
SELECT shop.stock_set_buckets(:p3, 2);
-- (which bucket a hold lands on is random: show totals and the even spread of free units)
SELECT count(*) AS buckets, sum(on_hand) AS on_hand, sum(reserved) AS reserved,
       max(on_hand - reserved) - min(on_hand - reserved) <= 1 AS free_spread_evenly
  FROM shop.stock WHERE product_id = :p3;
SELECT shop.stock_available(:p3) AS available;
SELECT shop.stock_set(:p3, 80) AS set_spreads;
SELECT count(*) AS buckets, sum(on_hand) AS on_hand, sum(reserved) AS reserved,
       max(on_hand - reserved) - min(on_hand - reserved) <= 1 AS free_spread_evenly
  FROM shop.stock WHERE product_id = :p3;
SELECT shop.stock_set_buckets(:p3, 1);
SELECT count(*) AS rows, sum(on_hand) AS on_hand FROM shop.stock WHERE product_id = :p3;
SELECT pg_temp.err(format('SELECT shop.stock_set_buckets(%s, 0)', :p3));
SELECT pg_temp.err(format('SELECT shop.stock_set_buckets(%s, 257)', :p3));
SELECT pg_temp.err(format('SELECT shop.stock_set_buckets(%s, NULL)', :p3));
SELECT pg_temp.err('SELECT shop.stock_set_buckets(999999, 2)');
SELECT pg_temp.check();
SELECT * FROM shop.stock_summary WHERE product_id = :p3;

-- reorder threshold: stock.low goes to the outbox (and NOTIFY) on crossing
SELECT shop.product_upsert('INV-4', 'Toner', 5000) AS p4 \gset
SELECT shop.stock_set(:p4, 10);
SELECT shop.stock_set_reorder_threshold(:p4, 5);
SELECT count(*) AS events_before FROM shop.event WHERE topic = 'stock.low' \gset
SELECT shop.reserve(:p4, 5) IS NOT NULL AS at_threshold;
SELECT count(*) - :events_before AS new_alerts FROM shop.event WHERE topic = 'stock.low';
SELECT shop.reserve(:p4, 1) IS NOT NULL AS below;
SELECT shop.reserve(:p4, 1) IS NOT NULL AS further_below;
SELECT payload - 'product_id' AS payload, (payload->>'product_id')::bigint = :p4 AS product
  FROM shop.event WHERE topic = 'stock.low' ORDER BY event_id;
SELECT product_id = :p4 AS p4, available, reorder_threshold FROM shop.low_stock;
SELECT pg_temp.errd(format($$SELECT shop.stock_adjust(%s, -4, 'shrinkage')$$, :p4));
SELECT shop.stock_adjust(:p4, -2, 'shrinkage') AS available;
-- still below: no second alert until it has been back above
SELECT count(*) AS alerts FROM shop.event WHERE topic = 'stock.low';
SELECT pg_temp.err(format('SELECT shop.stock_set_reorder_threshold(%s, -1)', :p4));
SELECT pg_temp.err('SELECT shop.stock_set_reorder_threshold(999999, 1)');
SELECT shop.stock_set_reorder_threshold(:p4, NULL);
SELECT count(*) AS low_stock FROM shop.low_stock;

-- several locations: a hold may take from several when none has enough
SELECT shop.product_upsert('INV-5', 'Chair', 4000) AS p5 \gset
SELECT shop.stock_set(:p5, 2, 'north'), shop.stock_set(:p5, 2, 'south');
SELECT shop.reserve(:p5, 3) AS split \gset
SELECT location, qty FROM shop.reservation WHERE reservation_id = :'split' ORDER BY location;
SELECT shop.reservation_commit(:'split');
SELECT location, on_hand, reserved FROM shop.stock WHERE product_id = :p5 ORDER BY location;
SELECT pg_temp.check();

-- a hold on a hot product reads about one of its bucket rows, not all
-- of them (issue 11): in a store of 2,000 other stocked products, with
-- plans made on its statistics, one shop.reserve on a product with 64
-- buckets fetches at most 6 stock rows (1.0 fetched all 64 to sort them,
-- and its one-row statements read them again in the UPDATE)
SELECT count(shop.stock_set(shop.product_upsert('INV-F' || g, 'Filler ' || g, 100), 10))
  FROM generate_series(1, 2000) g;
SELECT shop.product_upsert('INV-HOT', 'Doorbuster', 100) AS p6 \gset
SELECT shop.stock_set(:p6, 6400), shop.stock_set_buckets(:p6, 64);
ANALYZE shop.stock;
BEGIN;
SELECT idx_tup_fetch + seq_tup_read AS read_before
  FROM pg_stat_xact_user_tables WHERE relid = 'shop.stock'::regclass \gset
SELECT shop.reserve(:p6, 1) IS NOT NULL AS held;
SELECT idx_tup_fetch + seq_tup_read - :read_before <= 6 AS few_stock_rows_read
  FROM pg_stat_xact_user_tables WHERE relid = 'shop.stock'::regclass;
COMMIT;
SELECT shop.stock_available(:p6);
SELECT pg_temp.check();

-- a multi-line hold (reserve_many, checkout) takes each line's start
-- bucket from the session's cache of last buckets, bucket 0 for a product
-- not in it (issue 11): a line that lands past bucket 0 (bucket 0 has too
-- few free units, or is locked) teaches the session the product's buckets,
-- and its next carts start at random buckets; every line is still held,
-- from whichever bucket has the units
SELECT shop.product_upsert('INV-HOT2', 'Second doorbuster', 100) AS p7 \gset
SELECT shop.stock_set(:p7, 3), shop.stock_set_buckets(:p7, 4);
SELECT bucket, on_hand - reserved AS free FROM shop.stock WHERE product_id = :p7 ORDER BY bucket;
SELECT cardinality(shop.reserve_many(format('[{"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 1}]',
                                            :p1, :p7)::jsonb, 'cart-b' || g)) AS held
  FROM generate_series(1, 3) g;
SELECT r.ref, r.bucket FROM shop.reservation r
 WHERE r.product_id = :p7 AND r.ref LIKE 'cart-b%' ORDER BY r.ref;
SELECT shop.stock_available(:p7) AS p7_available;
SELECT pg_temp.err(format('SELECT shop.reserve_many(%L)',
                          format('[{"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 1}]', :p1, :p7))) AS sold_out;
SELECT pg_temp.check();

-- the constraint behind never-oversell (1.1: one CHECK, 0 <= reserved <=
-- on_hand, instead of three): a write that bypasses shop's calls still
-- cannot leave a row with more reserved than on hand, a negative reserved
-- or a negative on_hand
SELECT pg_temp.err(format('UPDATE shop.stock SET reserved = on_hand + 1 WHERE product_id = %s', :p6)) AS over,
       pg_temp.err(format('UPDATE shop.stock SET reserved = -1 WHERE product_id = %s', :p6)) AS negative_reserved,
       pg_temp.err(format('UPDATE shop.stock SET on_hand = -1, reserved = 0 WHERE product_id = %s', :p6)) AS negative_on_hand;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'shop.stock'::regclass AND contype = 'c';

-- shop.reservation has no CHECK on qty since 1.1 (it was planned again in
-- every hold): inventory's C checks every quantity before it writes one, so
-- a hold of 0 or fewer units is still refused through each call that holds
SELECT conname FROM pg_constraint
 WHERE conrelid = 'shop.reservation'::regclass AND contype = 'c';
SELECT pg_temp.err(format('SELECT shop.reserve(%s, -1)', :p6)) AS reserve_negative,
       pg_temp.err(format('SELECT shop.reserve(%s, 0)', :p6)) AS reserve_zero,
       pg_temp.err(format($$SELECT shop.reserve_many('[{"product_id": %s, "qty": -1}]')$$, :p6)) AS many_negative,
       pg_temp.err(format($$SELECT shop.reserve_many('[{"product_id": %s, "qty": 2}, {"product_id": %s, "qty": -2}]')$$,
                          :p6, :p6)) AS many_summed_zero;
SELECT count(*) AS holds_without_units FROM shop.reservation WHERE qty <= 0;

-- a hold (one line, or a cart's lines at once) writes its reservation
-- rows without an INSERT statement (src/inventory.c, inv_insert_holds)
-- but with everything an INSERT does:
-- the card guard still reads the row's text columns (location comes from
-- the stock row: one written past the stock's own guard is refused when a
-- hold copies it), the table's other triggers fire, BEFORE and AFTER, and
-- the row is what the INSERT wrote
SELECT shop.product_upsert('INV-GUARD', 'Guarded', 100) AS p8 \gset
ALTER TABLE shop.stock DISABLE TRIGGER zz_card_guard;
INSERT INTO shop.stock (product_id, location, bucket, on_hand, reserved)
VALUES (:p8, 'bin 4111 1111 1111 1111', 0, 5, 0);
ALTER TABLE shop.stock ENABLE ALWAYS TRIGGER zz_card_guard;
SELECT shop.product_upsert('INV-GUARD2', 'Guarded too', 100) AS p9 \gset
SELECT shop.stock_set(:p9, 5);
SELECT pg_temp.errd(format('SELECT shop.reserve(%s, 1)', :p8)) AS hold_of_a_card_location,
       pg_temp.errd(format($$SELECT shop.reserve_many('[{"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 1}]')$$,
                           :p8, :p9)) AS cart_of_a_card_location;
DELETE FROM shop.stock WHERE product_id = :p8;
SELECT shop.stock_set(:p8, 5);
CREATE TABLE public.inv_trigger_log (at text, ref text, qty int);
CREATE FUNCTION public.inv_trigger_note() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.inv_trigger_log VALUES (TG_WHEN, NEW.ref, NEW.qty);
    IF TG_WHEN = 'BEFORE' THEN
        NEW.ref := NEW.ref || ' (seen)';
    END IF;
    RETURN NEW;
END $f$;
CREATE TRIGGER inv_before BEFORE INSERT ON shop.reservation
    FOR EACH ROW EXECUTE FUNCTION public.inv_trigger_note();
CREATE TRIGGER inv_after AFTER INSERT ON shop.reservation
    FOR EACH ROW EXECUTE FUNCTION public.inv_trigger_note();
BEGIN;
SELECT shop.reserve(:p8, 2, 'trigger-test') AS r8 \gset
SELECT shop.reserve_many(format('[{"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 3}]', :p8, :p9)::jsonb,
                         'cart-test', '1 hour') AS r9 \gset
SELECT at, ref, qty FROM public.inv_trigger_log ORDER BY ref, at DESC, qty;
SELECT CASE product_id WHEN :p8 THEN 'p8' WHEN :p9 THEN 'p9' END AS product, part, location, bucket, qty, status, ref,
       created_at = now() AS created_now, expires_at - now() AS expires_in
  FROM shop.reservation WHERE reservation_id = :'r8' OR reservation_id = ANY (:'r9'::uuid[])
 ORDER BY ref DESC, product_id;
COMMIT;
DROP TRIGGER inv_before ON shop.reservation;
DROP TRIGGER inv_after ON shop.reservation;
DROP FUNCTION public.inv_trigger_note();
DROP TABLE public.inv_trigger_log;
SELECT shop.reservation_release(:'r8') AS released, shop.reservation_release((:'r9'::uuid[])[1]) AS released_1,
       shop.reservation_release((:'r9'::uuid[])[2]) AS released_2, pg_temp.check();

-- the stock row of a hold (one line, or a cart's lines) is updated
-- without an UPDATE statement (src/inventory.c, inv_take) but with what an
-- UPDATE does: the row triggers of shop.stock fire, BEFORE and AFTER, a
-- column trigger on reserved too, with the row before and after; the
-- BEFORE trigger's change is what is stored; an error it raises undoes
-- the hold; the CHECK still refuses reserved above on_hand
CREATE TABLE public.inv_stock_log (at text, product_id bigint, old_reserved int, new_reserved int);
CREATE FUNCTION public.inv_stock_note() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.inv_stock_log VALUES (TG_WHEN || ' ' || TG_NAME, NEW.product_id, OLD.reserved, NEW.reserved);
    IF TG_WHEN = 'BEFORE' THEN
        NEW.updated_at := '2000-01-01';
        IF NEW.reserved = 4 THEN
            RAISE EXCEPTION 'no fourth unit' USING ERRCODE = 'P0001';
        END IF;
        IF NEW.reserved = 5 THEN
            NEW.on_hand := 4;
        END IF;
    END IF;
    RETURN NEW;
END $f$;
CREATE TRIGGER inv_stock_before BEFORE UPDATE ON shop.stock
    FOR EACH ROW EXECUTE FUNCTION public.inv_stock_note();
CREATE TRIGGER inv_stock_after AFTER UPDATE OF reserved ON shop.stock
    FOR EACH ROW EXECUTE FUNCTION public.inv_stock_note();
BEGIN;
SELECT shop.reserve(:p8, 2, 'stock-trigger') IS NOT NULL AS held_one;
SELECT shop.reserve_many(format('[{"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 3}]', :p8, :p9)::jsonb,
                         'stock-trigger-cart') IS NOT NULL AS held_cart;
SELECT at, CASE product_id WHEN :p8 THEN 'p8' WHEN :p9 THEN 'p9' END AS product, old_reserved, new_reserved
  FROM public.inv_stock_log ORDER BY new_reserved, product_id, at DESC;
SELECT CASE product_id WHEN :p8 THEN 'p8' WHEN :p9 THEN 'p9' END AS product, on_hand, reserved,
       updated_at = '2000-01-01' AS before_trigger_stored
  FROM shop.stock WHERE product_id IN (:p8, :p9) ORDER BY product_id;
SELECT pg_temp.err(format('SELECT shop.reserve(%s, 1)', :p8)) AS fourth_unit_refused_by_trigger,
       pg_temp.err(format('SELECT shop.reserve(%s, 2)', :p8)) AS check_refuses_trigger_change,
       pg_temp.err(format($$SELECT shop.reserve_many('[{"product_id": %s, "qty": 1}, {"product_id": %s, "qty": 1}]')$$,
                           :p8, :p9)) AS cart_refused_by_trigger,
       pg_temp.check();
ROLLBACK;
DROP TRIGGER inv_stock_before ON shop.stock;
DROP TRIGGER inv_stock_after ON shop.stock;
DROP FUNCTION public.inv_stock_note();
DROP TABLE public.inv_stock_log;
SELECT pg_temp.check();

-- privileges: admin calls are not for PUBLIC, and since 1.1 neither are
-- holds outside checkout (reserve, reserve_many, reservation_release:
-- docs/inventory.md, "Privileges")
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can
  FROM pg_proc p WHERE p.pronamespace = 'shop'::regnamespace
   AND p.proname IN ('stock_set', 'stock_adjust', 'stock_set_buckets', 'stock_set_reorder_threshold',
                     'reservation_commit', 'reservation_extend', 'reserve', 'reserve_many',
                     'reservation_release', 'stock_available')
 ORDER BY 1;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
