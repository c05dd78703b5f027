-- bench/checkout_store.sql: what every checkout bench starts from, run by
-- psql with the variable products set (\set products N) right after
-- CREATE EXTENSION shop:
--   products 1..N (sku CO-<id>, prices spread over 1.00 to 200.99), each
--   with 10,000,000 units, so no run ever runs out of stock;
--   public.naive_checkout(customer, p1, p2, p3): the minimal SQL checkout
--   the benches compare shop.checkout with (3 stock rows, 1 order, 3 lines;
--   no cart, no payment, no event, no idempotency key).
-- Used by bench/workloads/checkout.sh and bench/checkout_{callgrind,wal,
-- where,sweep}.sh; each then makes the carts its own workload needs.
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'CO-' || g, 'Checkout bench product ' || g, 100 + (g * 7919) % 20000
  FROM generate_series(1, :products) g;
SELECT count(shop.stock_set(g, 10000000)) FROM generate_series(1, :products) g;

CREATE FUNCTION public.naive_checkout(cust bigint, p1 bigint, p2 bigint, p3 bigint) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    o uuid := gen_random_uuid();
    n int;
BEGIN
    UPDATE shop.stock SET reserved = reserved + 1
     WHERE product_id IN (p1, p2, p3) AND on_hand - reserved >= 1;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n < 3 THEN RAISE EXCEPTION 'insufficient stock'; END IF;
    INSERT INTO shop."order" (order_id, customer_id, status, currency, subtotal_cents, total_cents)
    VALUES (o, cust, 'paid', 'USD', 300, 300);
    INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
    SELECT o, i, p, 'CO-' || p, 'x', 100, 1 FROM unnest(ARRAY[p1, p2, p3]) WITH ORDINALITY AS u(p, i);
    RETURN o;
END
$$;
