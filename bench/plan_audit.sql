-- bench/plan_audit.sql: one round of every call of shop's transactional
-- core (cart, checkout, order transitions, payments, inventory, events and
-- a consumer group claiming them, recommendations and an experiment on
-- them, the router's checkout steps on one node, sweep), on a store made
-- by bench/store_gen.sql.
-- bench/plan_audit.sh runs several rounds with auto_explain logging every
-- nested statement, so that each statement's settled plan (generic ones
-- included) can be read from the server log.
--
-- audit_round(i, products, customers, run): customers and products are the
-- store's sizes; round i uses products and customers of its own; run tags
-- the idempotency keys, the experiment and the sagas' orders, so that a
-- store can be audited again.
--
-- What auto_explain cannot see: the reads shop's C code makes itself
-- (checkout's cart lock, idempotency claim, cart lines and order history,
-- the holds of src/inventory.c) are index walks, not statements.  After
-- each call, public.audit_mark(i, call) records into public.audit_io what
-- the call read from each relation of schema shop: index entries returned
-- (idx_tup_read), heap tuples returned by sequential scans (seq_tup_read),
-- buffers (idx_blks/heap_blks hit + read) and scans, taken from this
-- transaction's counters (pg_stat_get_xact_*) before and after the call;
-- everything a call runs, statements and C, is in them.
SET client_min_messages = warning;
DROP FUNCTION IF EXISTS public.audit_round(int, bigint, bigint, text);
CREATE TABLE IF NOT EXISTS public.audit_io (
    round    int NOT NULL,
    seq      int NOT NULL,           -- the call's place in the round
    call     text NOT NULL,
    relname  text NOT NULL,
    relkind  "char" NOT NULL,        -- 'r' table, 'i' index
    tuples   bigint NOT NULL,        -- index entries returned / heap tuples of sequential scans
    fetched  bigint NOT NULL,        -- heap tuples fetched through the index / by bitmap scans
    blocks   bigint NOT NULL,        -- buffers read or hit
    scans    bigint NOT NULL
);
-- counters of the transaction so far, of the relations of schema shop
CREATE OR REPLACE FUNCTION public.audit_counters()
RETURNS TABLE (relid oid, relname text, relkind "char", tuples bigint, fetched bigint, blocks bigint, scans bigint)
LANGUAGE sql VOLATILE AS $$
    SELECT c.oid, c.relname::text, c.relkind,
           pg_stat_get_xact_tuples_returned(c.oid), pg_stat_get_xact_tuples_fetched(c.oid),
           pg_stat_get_xact_blocks_fetched(c.oid), pg_stat_get_xact_numscans(c.oid)
      FROM pg_class c
     WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind IN ('r', 'i', 'm', 'p')
$$;
-- what the relations of schema shop read since the last mark, as call
-- number seq of round i (label NULL: only the new starting point)
CREATE OR REPLACE FUNCTION public.audit_mark(i int, label text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    IF to_regclass('pg_temp.audit_prev') IS NULL THEN
        CREATE TEMP TABLE audit_prev (relid oid PRIMARY KEY, tuples bigint, fetched bigint,
                                      blocks bigint, scans bigint);
    END IF;
    IF label IS NOT NULL THEN
        -- numbered within the round, across its transactions
        n := coalesce((SELECT max(a.seq) FROM public.audit_io a WHERE a.round = i), 0) + 1;
        INSERT INTO public.audit_io
        SELECT i, n, label, c.relname, c.relkind, c.tuples - coalesce(p.tuples, 0),
               c.fetched - coalesce(p.fetched, 0), c.blocks - coalesce(p.blocks, 0),
               c.scans - coalesce(p.scans, 0)
          FROM public.audit_counters() c LEFT JOIN audit_prev p ON p.relid = c.relid
         WHERE (c.tuples, c.fetched, c.blocks, c.scans)
               IS DISTINCT FROM (p.tuples, p.fetched, p.blocks, p.scans);
    END IF;
    TRUNCATE audit_prev;
    INSERT INTO audit_prev SELECT c.relid, c.tuples, c.fetched, c.blocks, c.scans
      FROM public.audit_counters() c;
END
$$;
CREATE FUNCTION public.audit_round(i int, products bigint, customers bigint, run text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p bigint := 1 + (i::bigint * 104729) % (products - 30);
    c bigint := 1 + (i::bigint * 7919) % customers;
    exp text := 'audit-' || run;
    cart uuid;
    anon uuid;
    o uuid;
    r uuid;
    ids uuid[];
    b record;
    pids bigint[];
    skus text[];
    titles text[];
    prices bigint[];
    qtys int[];
BEGIN
    PERFORM public.audit_mark(i, NULL);
    -- cart calls
    cart := shop.cart_create(c);
    PERFORM public.audit_mark(i, 'cart_create');
    PERFORM shop.cart_add(cart, p), shop.cart_add(cart, p + 1, 2), shop.cart_add(cart, p + 2);
    PERFORM public.audit_mark(i, 'cart_add x3');
    PERFORM shop.cart_set_qty(cart, p + 2, 3);
    PERFORM public.audit_mark(i, 'cart_set_qty');
    PERFORM shop.cart_add(cart, p + 3);
    PERFORM public.audit_mark(i, 'cart_add');
    PERFORM shop.cart_save_for_later(cart, p + 3);
    PERFORM public.audit_mark(i, 'cart_save_for_later');
    PERFORM shop.cart_move_to_cart(cart, p + 3);
    PERFORM public.audit_mark(i, 'cart_move_to_cart');
    PERFORM shop.cart_remove(cart, p + 3);
    PERFORM public.audit_mark(i, 'cart_remove');
    PERFORM shop.cart_get(cart);
    PERFORM public.audit_mark(i, 'cart_get');
    anon := shop.cart_create();
    PERFORM shop.cart_add(anon, p + 4);
    PERFORM public.audit_mark(i, 'cart_create (guest), cart_add');
    PERFORM shop.cart_merge(anon, c);
    PERFORM public.audit_mark(i, 'cart_merge');
    -- checkout with the test provider, then the warehouse
    o := shop.checkout(cart, 'tok_visa', 'audit-' || run || '-' || i, '{"country": "US", "state": "CA"}');
    PERFORM public.audit_mark(i, 'checkout (tok_visa, 4 lines)');
    PERFORM shop.order_get(o);
    PERFORM public.audit_mark(i, 'order_get');
    PERFORM * FROM shop.orders_for(c);
    PERFORM public.audit_mark(i, 'orders_for');
    PERFORM shop.order_transition(o, 'fulfilling');
    PERFORM public.audit_mark(i, 'order_transition fulfilling');
    PERFORM shop.order_ship(o, 'UPS', '1Z' || i);
    PERFORM public.audit_mark(i, 'order_ship');
    PERFORM shop.order_transition(o, 'delivered');
    PERFORM public.audit_mark(i, 'order_transition delivered');
    PERFORM shop.order_transition(o, 'returned');
    PERFORM public.audit_mark(i, 'order_transition returned');
    PERFORM shop.order_transition(o, 'refunded');
    PERFORM public.audit_mark(i, 'order_transition refunded');
    -- a gateway order confirmed, then cancelled
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 5);
    PERFORM public.audit_mark(i, 'cart_create, cart_add');
    o := shop.checkout(cart, 'stripe:pm_' || i, 'audit-g-' || run || '-' || i);
    PERFORM public.audit_mark(i, 'checkout (gateway)');
    PERFORM shop.payment_confirm(o, 'ch_' || i);
    PERFORM public.audit_mark(i, 'payment_confirm');
    PERFORM shop.order_transition(o, 'cancelled');
    PERFORM public.audit_mark(i, 'order_transition cancelled');
    -- a gateway order that fails
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 6);
    PERFORM public.audit_mark(i, 'cart_create, cart_add');
    o := shop.checkout(cart, 'stripe:pm_f' || i, 'audit-f-' || run || '-' || i);
    PERFORM public.audit_mark(i, 'checkout (gateway, to fail)');
    PERFORM shop.payment_fail(o, 'card declined');
    PERFORM public.audit_mark(i, 'payment_fail');
    -- an order flagged for review, approved
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 7);
    PERFORM public.audit_mark(i, 'cart_create, cart_add');
    o := shop.checkout(cart, 'tok_fraud', 'audit-r-' || run || '-' || i);
    PERFORM public.audit_mark(i, 'checkout (tok_fraud)');
    PERFORM shop.order_review(o, true);
    PERFORM public.audit_mark(i, 'order_review');
    PERFORM shop.payment_method_add(c, 'tok_visa_audit' || i, NULL, NULL, NULL, NULL);
    PERFORM public.audit_mark(i, 'payment_method_add');
    -- inventory
    r := shop.reserve(p + 8, 1, 'audit', '10 minutes');
    PERFORM public.audit_mark(i, 'reserve');
    PERFORM shop.reservation_extend(r, '20 minutes');
    PERFORM public.audit_mark(i, 'reservation_extend');
    PERFORM shop.reservation_commit(r);
    PERFORM public.audit_mark(i, 'reservation_commit');
    ids := shop.reserve_many(jsonb_build_array(jsonb_build_object('product_id', p + 9, 'qty', 1),
                                               jsonb_build_object('product_id', p + 10, 'qty', 2)));
    PERFORM public.audit_mark(i, 'reserve_many (2 lines)');
    PERFORM shop.reservation_release(ids[1]);
    PERFORM shop.reservation_release(ids[2]);
    PERFORM public.audit_mark(i, 'reservation_release x2');
    PERFORM shop.stock_adjust(p + 11, 5, 'audit delivery');
    PERFORM public.audit_mark(i, 'stock_adjust');
    PERFORM shop.stock_set(p + 11, 1000000);
    PERFORM public.audit_mark(i, 'stock_set');
    PERFORM shop.stock_available(p + 12);
    PERFORM public.audit_mark(i, 'stock_available');
    PERFORM shop.stock_set_reorder_threshold(p + 13, 10);
    PERFORM public.audit_mark(i, 'stock_set_reorder_threshold');
    -- recommendations
    PERFORM shop.view(c, p);
    PERFORM public.audit_mark(i, 'view');
    PERFORM * FROM shop.recently_viewed(c);
    PERFORM public.audit_mark(i, 'recently_viewed');
    PERFORM * FROM shop.also_bought(p);
    PERFORM public.audit_mark(i, 'also_bought');
    PERFORM * FROM shop.similar_products(p);
    PERFORM public.audit_mark(i, 'similar_products');
    PERFORM * FROM shop.recommend(c);
    PERFORM public.audit_mark(i, 'recommend');
    PERFORM * FROM shop.trending();
    PERFORM public.audit_mark(i, 'trending');
    -- an experiment on the lists (made by round 1 of a run): one variant
    -- per method, so that the rounds' customers meet each; each list is
    -- an impression, a later view, add to cart and order are attributed
    -- to it
    IF NOT EXISTS (SELECT FROM shop.experiment e WHERE e.name = exp) THEN
        PERFORM shop.experiment_create(exp,
            '[{"name": "control", "share": 0.25},
              {"name": "personal", "share": 0.25, "method": "personal"},
              {"name": "popularity", "share": 0.25, "method": "popularity", "explore": 0.2},
              {"name": "similar", "share": 0.25, "method": "similar"}]');
        PERFORM public.audit_mark(i, 'experiment_create');
    END IF;
    PERFORM shop.experiment_assign(exp, c);
    PERFORM public.audit_mark(i, 'experiment_assign');
    PERFORM * FROM shop.recommend(c, 10, exp);
    PERFORM public.audit_mark(i, 'recommend with experiment');
    PERFORM * FROM shop.also_bought(p + 15, 10, exp, c);
    PERFORM public.audit_mark(i, 'also_bought with experiment');
    PERFORM shop._experiment_flush();
    PERFORM public.audit_mark(i, '_experiment_flush');
    PERFORM shop.view(c, p + 15);
    PERFORM public.audit_mark(i, 'view (attributed)');
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 15);
    PERFORM public.audit_mark(i, 'cart_create, cart_add (attributed)');
    o := shop.checkout(cart, 'tok_visa', 'audit-x-' || run || '-' || i);
    PERFORM public.audit_mark(i, 'checkout (attributed)');
    -- a checkout as the router runs it, its steps on one node (the
    -- saga's: shop_router.checkout, docs/scale-out.md): begin, reserve,
    -- place, keep, done; shipped: commit; then one compensated
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 16), shop.cart_add(cart, p + 17, 2);
    PERFORM public.audit_mark(i, 'cart_create, cart_add x2');
    o := md5('audit-saga-' || run || '-' || i)::uuid;
    SELECT * INTO b FROM shop._saga_begin(o, cart, 'tok_visa', 'audit-s-' || run || '-' || i, NULL);
    PERFORM public.audit_mark(i, '_saga_begin');
    SELECT array_agg(h.product_id ORDER BY h.product_id), array_agg(h.sku ORDER BY h.product_id),
           array_agg(h.title ORDER BY h.product_id), array_agg(h.price_cents ORDER BY h.product_id)
      INTO pids, skus, titles, prices
      FROM shop._saga_reserve(o, b.saga_product_ids, b.saga_qtys, '10 minutes') h;
    PERFORM public.audit_mark(i, '_saga_reserve (2 lines)');
    SELECT array_agg(u.q ORDER BY u.p) INTO qtys FROM unnest(b.saga_product_ids, b.saga_qtys) u(p, q);
    PERFORM shop._saga_place(o, pids, skus, titles, prices, qtys, 'tok_visa', NULL);
    PERFORM public.audit_mark(i, '_saga_place');
    PERFORM shop._saga_keep(o, pids);
    PERFORM public.audit_mark(i, '_saga_keep');
    PERFORM shop._saga_held(o, pids);
    PERFORM public.audit_mark(i, '_saga_held');
    PERFORM shop._saga_finish(o, 'done');
    PERFORM public.audit_mark(i, '_saga_finish done');
    PERFORM shop._saga_get(o);
    PERFORM public.audit_mark(i, '_saga_get');
    PERFORM shop._saga_commit(o, pids);
    PERFORM public.audit_mark(i, '_saga_commit');
    PERFORM shop._saga_stock(o, 'committed');
    PERFORM public.audit_mark(i, '_saga_stock');
    cart := shop.cart_create(c);
    PERFORM shop.cart_add(cart, p + 18);
    PERFORM public.audit_mark(i, 'cart_create, cart_add');
    o := md5('audit-saga-c-' || run || '-' || i)::uuid;
    SELECT * INTO b FROM shop._saga_begin(o, cart, 'tok_visa', 'audit-sc-' || run || '-' || i, NULL);
    PERFORM * FROM shop._saga_reserve(o, b.saga_product_ids, b.saga_qtys, '10 minutes');
    PERFORM public.audit_mark(i, '_saga_begin, _saga_reserve (1 line)');
    PERFORM shop._saga_release(o, b.saga_product_ids);
    PERFORM public.audit_mark(i, '_saga_release');
    PERFORM shop._saga_finish(o, 'failed');
    PERFORM public.audit_mark(i, '_saga_finish failed');
    PERFORM * FROM shop._saga_open('1 minute');
    PERFORM public.audit_mark(i, '_saga_open');
    -- a routed reserve_many on this shard and the router's release of it
    -- (sessions 12-13: shop.reservation_dropped), then a release that
    -- came before its hold (the ids recorded) and that hold, not made
    ids := ARRAY[md5('audit-rm-a-' || run || '-' || i)::uuid, md5('audit-rm-b-' || run || '-' || i)::uuid];
    PERFORM shop._reserve_many_routed(ARRAY[p + 19, p + 20], ARRAY[1, 1], 'audit', '10 minutes', ids);
    PERFORM public.audit_mark(i, '_reserve_many_routed (2 lines)');
    PERFORM shop._reservations_drop(ARRAY[p + 19, p + 20], ids);
    PERFORM public.audit_mark(i, '_reservations_drop (held)');
    ids := ARRAY[md5('audit-rm-c-' || run || '-' || i)::uuid, md5('audit-rm-d-' || run || '-' || i)::uuid];
    PERFORM shop._reservations_drop(ARRAY[p + 21, p + 22], ids);
    PERFORM public.audit_mark(i, '_reservations_drop (before its hold)');
    PERFORM shop._reserve_many_routed(ARRAY[p + 21, p + 22], ARRAY[1, 1], 'audit', '10 minutes', ids);
    PERFORM public.audit_mark(i, '_reserve_many_routed (dropped)');
    -- shop.view past the cap (shop.recent_views_cap, 50) with views a
    -- popularity computation counted: the dropped ones go to
    -- shop.popularity_dropped (copurchase_state.popularity_seen_at read);
    -- the sweep's refresh takes them out.  The customer's 50 views first
    -- (not audited), then the clock a refresh's end leaves
    PERFORM shop.view(c + 1, 1 + (p + k - 1) % products) FROM generate_series(1, 50) k;
    UPDATE shop.copurchase_state SET popularity_seen_at = clock_timestamp();
    PERFORM public.audit_mark(i, NULL);
    PERFORM shop.view(c + 1, 1 + (p + 50) % products);
    PERFORM public.audit_mark(i, 'view past the cap');
END
$$;

-- audit_events(i), in a transaction of its own after round i: a consumer
-- group claims what the rounds before emitted and acknowledges it.  (Not
-- in audit_round's transaction: a claim sees only committed events, and
-- up to 2026-12-06 the audit's claims, made in the transaction that had
-- emitted the round's events, found none.)
DROP FUNCTION IF EXISTS public.audit_events(int);
CREATE FUNCTION public.audit_events(i int)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.audit_mark(i, NULL);
    PERFORM shop.event_ack('audit', x.batch)
       FROM (SELECT DISTINCT e.batch_id AS batch FROM shop.event_claim('audit', 'auditor', 1000) e) x;
    PERFORM public.audit_mark(i, 'event_claim (1000), event_ack');
END
$$;

-- the saga's order-status trigger, as on a shard (shop._saga_recover_setup,
-- made by shop._shard_setup): the order transitions of the rounds run it
-- (saga_pkey probed for every transition, the routed orders' saga row
-- updated); nothing when it is there
SELECT shop._saga_recover_setup();
