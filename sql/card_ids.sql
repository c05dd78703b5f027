-- card_ids: a customer whose id happens to read as a card number (a bigint
-- the application chose: 4111111111111111 is a Visa test number, Luhn-valid)
-- shops like anyone else.  shop spells customer ids into text it builds
-- itself (the idempotency scope 'c:<id>', event payloads); the card guard
-- must not take those for card numbers, and must still refuse a card number
-- anywhere a caller's text goes.
\i sql/include/prelude.sql
SELECT shop.product_upsert('MUG', 'Coffee mug', 1200) AS mug \gset
SELECT shop.product_upsert('TEE', 'T-shirt', 2500) AS tee \gset
SELECT shop.stock_set(:mug, 100), shop.stock_set(:tee, 100);

CREATE TEMP TABLE ids (customer_id bigint, brand text);
INSERT INTO ids VALUES (4111111111111111, 'visa'), (378282246310005, 'amex'),
                       (5500000000000004, 'mastercard'), (6011111111111117, 'discover'),
                       (4012888888881881, 'visa');
-- they are card numbers, as text
SELECT brand, shop.redact_card_numbers(customer_id::text) <> customer_id::text AS reads_as_card FROM ids;

-- the whole path of one customer: cart, checkout, payment, shipping, views,
-- reviews, saved card token, recommendations, a second checkout with the
-- same key (idempotent), cancel of another order
CREATE FUNCTION pg_temp.shopper(c bigint) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    cart uuid;
    o1 uuid;
    o1b uuid;
    o2 uuid;
    mug bigint := (SELECT product_id FROM shop.product WHERE sku = 'MUG');
    tee bigint := (SELECT product_id FROM shop.product WHERE sku = 'TEE');
    guest uuid;
    step text;
    detail text;
BEGIN
    step := 'cart_create';
    cart := shop.cart_create(c);
    step := 'cart_add';
    PERFORM shop.cart_add(cart, mug, 2);
    step := 'cart_add';
    PERFORM shop.cart_add(cart, tee);
    step := 'checkout';
    o1 := shop.checkout(cart, 'tok_visa', 'k1', '{"name": "Ada", "country": "US", "city": "Boston"}');
    step := 'checkout';
    o1b := shop.checkout(cart, 'tok_visa', 'k1', '{"name": "Ada", "country": "US", "city": "Boston"}');
    IF o1 <> o1b THEN RAISE EXCEPTION 'retry gave another order'; END IF;
    step := 'order_transition';
    PERFORM shop.order_transition(o1, 'fulfilling', 'picked');
    step := 'order_ship';
    PERFORM shop.order_ship(o1, 'UPS', '1Z999');
    step := 'order_transition';
    PERFORM shop.order_transition(o1, 'delivered');
    step := 'order_transition';
    PERFORM shop.order_transition(o1, 'returned', 'wrong size');
    step := 'order_transition';
    PERFORM shop.order_transition(o1, 'refunded');
    step := 'view';
    PERFORM shop.view(c, mug);
    step := 'review_add';
    PERFORM shop.review_add(mug, c, 5, 'Great', 'Holds coffee');
    step := 'payment_method_add';
    PERFORM shop.payment_method_add(c, 'tok_visa', 'visa', '4242', 12, 2030);
    step := 'session_token';
    PERFORM shop.session_token(c);
    step := 'recommend';
    PERFORM shop.recommend(c, 5);
    step := 'recommend';
    PERFORM shop.recommend(c, 5, 'ab');
    step := 'also_bought';
    PERFORM shop.also_bought(mug, 4, 'ab', c);
    step := 'experiment_assign';
    PERFORM shop.experiment_assign('ab', c);
    step := 'recently_viewed';
    PERFORM shop.recently_viewed(c);
    step := 'orders_for';
    PERFORM shop.orders_for(c);
    -- a guest cart merged into the customer's
    step := 'cart_create';
    guest := shop.cart_create();
    step := 'cart_add';
    PERFORM shop.cart_add(guest, tee);
    step := 'cart_merge';
    cart := shop.cart_merge(guest, c);
    step := 'checkout';
    o2 := shop.checkout(cart, 'tok_visa', 'k2', '{"name": "Ada", "country": "US", "city": "Boston"}');
    step := 'order_transition';
    PERFORM shop.order_transition(o2, 'cancelled', 'changed my mind');
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN step || ': ' || SQLSTATE || ': ' || SQLERRM || ' (' || coalesce(detail, '') || ')';
END $f$;
SELECT shop.experiment_create('ab', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS experiment;
SET shop.session_secret = 'card_ids regression secret, thirty-two characters or more';
SELECT brand, pg_temp.shopper(customer_id) FROM ids ORDER BY customer_id;
-- a checkout as the router's saga begins it on the customer's shard
-- (docs/scale-out.md; its first step called here directly)
SELECT brand, s.saga_status
  FROM ids, LATERAL (SELECT shop.cart_create(customer_id) AS cart) c,
       LATERAL (SELECT shop.cart_add(c.cart, (SELECT product_id FROM shop.product WHERE sku = 'MUG'))) a,
       LATERAL shop._saga_begin(gen_random_uuid(), c.cart, 'tok_visa', 'saga-1', '{"country": "US"}') s
 ORDER BY customer_id;
-- what they left: two orders each, events with their ids as numbers
SELECT i.brand, count(DISTINCT o.order_id) AS orders,
       bool_and(o.customer_id = i.customer_id) AS theirs
  FROM ids i JOIN shop."order" o USING (customer_id) GROUP BY i.brand, i.customer_id ORDER BY i.customer_id;
SELECT count(*) > 0 AS events_name_them
  FROM shop.event e, ids i WHERE (e.payload->>'customer_id')::bigint = i.customer_id;

-- the guard still refuses a card number in every caller's text of the same path
SELECT shop.cart_create(4111111111111111) AS cart \gset
SELECT shop.cart_add(:'cart', :mug);
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', '4111111111111111', '{"country": "US"}')$$, :'cart'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k9', '{"country": "US", "note": "4111 1111 1111 1111"}')$$, :'cart'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k9', '{"country": "US", "customer_id": "4111111111111111"}')$$, :'cart'));
SELECT pg_temp.err(format($$SELECT shop.checkout(%L, 'tok_visa', 'k9', '{"country": "US", "customer_id": 4111111111111111}')$$, :'cart'));
SELECT pg_temp.err($$SELECT shop.review_add((SELECT product_id FROM shop.product WHERE sku = 'TEE'), 4111111111111111, 4, 'card 378282246310005', 'x')$$);
-- a row written around the API (only the owner can): the guard lets a number
-- under an event's customer_id through, nothing else of the same payload
SELECT pg_temp.err($$INSERT INTO shop.event (topic, payload) VALUES ('x', '{"customer_id": 4111111111111111}')$$) AS id_number;
SELECT pg_temp.err($$INSERT INTO shop.event (topic, payload) VALUES ('x', '{"customer_id": "4111111111111111"}')$$) AS id_string;
SELECT pg_temp.err($$INSERT INTO shop.event (topic, payload) VALUES ('x', '{"note": 4111111111111111}')$$) AS other_key;
SELECT pg_temp.err($$INSERT INTO shop.event (topic, payload) VALUES ('x', '{"order": {"customer_id": 4111111111111111}}')$$) AS nested;
SELECT pg_temp.err($$INSERT INTO shop.event (topic, payload) VALUES ('x', '{"4111111111111111": 1}')$$) AS as_key;
SELECT count(*) AS scopes FROM shop.idempotency i JOIN ids ON i.scope = 'c:' || ids.customer_id;
-- experiments name a customer's unit by the id: lists worth an impression
-- need co-purchases, from a third customer's paid order
SELECT count(shop.checkout(c.cart, 'tok_visa', 'k', '{"country": "US"}')) AS paid
  FROM (SELECT shop.cart_create(n) AS cart FROM generate_series(7, 16) n) c,
       LATERAL (SELECT shop.cart_add(c.cart, :mug), shop.cart_add(c.cart, :tee)) a;
SELECT (shop.refresh_recommendations() ->> 'orders_applied')::int > 0 AS applied;
SELECT count(*) AS listed FROM shop.also_bought(:mug, 4);
SELECT brand, pg_temp.err(format('SELECT shop.also_bought(%s, 4, %L, %s)', :mug, 'ab', customer_id)) AS also_bought
  FROM ids ORDER BY customer_id;
SELECT count(*) AS impressions
  FROM (SELECT unit FROM shop.experiment_impression_recent UNION ALL SELECT unit FROM shop.experiment_impression) i
  JOIN ids ON i.unit = ids.customer_id::text;
-- a guest's unit ('guest:<visitor>', the caller's text) stays read
SELECT pg_temp.err(format($$INSERT INTO shop.experiment_impression_recent (experiment_id, variant, unit, surface, products)
                            SELECT experiment_id, 1, %L, 'recommend', '{1}' FROM shop.experiment$$, u)) AS unit
  FROM unnest(ARRAY['guest:4111111111111111', '4111 1111 1111 1111', '4111111111111111', '-4111111111111111']) u;
-- written around the API: the scope's other shapes stay read
SELECT pg_temp.err($$INSERT INTO shop.idempotency (scope, key, customer_key, fingerprint) VALUES ('k:4111111111111111', 'x', 0, 'f')$$) AS scope_other_prefix;
SELECT pg_temp.err($$INSERT INTO shop.idempotency (scope, key, customer_key, fingerprint) VALUES ('c:4111111111111111 ', 'x', 0, 'f')$$) AS scope_trailing_space;
-- the exemptions the guard's triggers carry, all of them
SELECT tgrelid::regclass, tgnargs, encode(tgargs, 'escape') AS args
  FROM pg_trigger WHERE tgname = 'zz_card_guard' AND tgnargs > 0 ORDER BY tgrelid::regclass::text;
-- a guard trigger naming what is no column is refused at its first row
CREATE TABLE public.guard_args (id int, note text, doc jsonb);
CREATE TRIGGER zz_card_guard BEFORE INSERT ON public.guard_args
    FOR EACH ROW EXECUTE FUNCTION shop._card_guard('nothere');
SELECT pg_temp.err($$INSERT INTO public.guard_args VALUES (1, 'a', '{}')$$);
DROP TRIGGER zz_card_guard ON public.guard_args;
CREATE TRIGGER zz_card_guard BEFORE INSERT ON public.guard_args
    FOR EACH ROW EXECUTE FUNCTION shop._card_guard('note.x');
SELECT pg_temp.err($$INSERT INTO public.guard_args VALUES (1, 'a', '{}')$$);
DROP TRIGGER zz_card_guard ON public.guard_args;
CREATE TRIGGER zz_card_guard BEFORE INSERT ON public.guard_args
    FOR EACH ROW EXECUTE FUNCTION shop._card_guard('doc.id');
SELECT pg_temp.err($$INSERT INTO public.guard_args VALUES (1, '4111111111111111', '{}')$$) AS note;
SELECT pg_temp.err($$INSERT INTO public.guard_args VALUES (2, 'a', '{"id": 4111111111111111}')$$) AS doc_id;
DROP TABLE public.guard_args;
-- the scan of stored card numbers counts what the guard reads: none here
SELECT * FROM shop.card_number_scan();

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
