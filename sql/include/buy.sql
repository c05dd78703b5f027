-- buy(products, ...) (\i sql/include/buy.sql, after the prelude): an order
-- written straight into shop."order" and shop.order_line, one line of qty 1
-- per product, as the recommendation tests need them (no checkout, no
-- stock); returns its order_id.  Optional: customer (NULL: a guest), status
-- st, created_at at, unit price price, cart.
CREATE FUNCTION pg_temp.buy(products bigint[], customer bigint DEFAULT NULL,
                            st text DEFAULT 'paid', at timestamptz DEFAULT now(),
                            price bigint DEFAULT 0, cart uuid DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $f$
DECLARE o uuid;
BEGIN
    INSERT INTO shop."order" (customer_id, cart_id, status, currency, subtotal_cents, total_cents, created_at)
    VALUES (customer, cart, st, 'USD', 0, 0, at) RETURNING order_id INTO o;
    INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
    SELECT o, n, p, 'sku', 'title', price, 1 FROM unnest(products) WITH ORDINALITY u(p, n);
    RETURN o;
END $f$;
