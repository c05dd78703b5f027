-- search_prior: the behaviour prior (issue 13).  What customers view, put
-- in their cart and order after a search ranks higher for that query:
-- shop.refresh_search_prior() folds the evidence in incrementally, one
-- vote per customer, query and product, decayed; shop.search boosts by it
\i sql/include/prelude.sql
SELECT shop.category_add('Cables') AS cables, shop.category_add('Adapters') AS adapters \gset
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, popularity, in_stock, status)
VALUES ('C1', 'Acme USB cable', 'Acme', :cables, 500, 1, true, 'active'),
       ('C2', 'Zeta braided USB cable, 2 m', 'Zeta', :cables, 900, 1, true, 'active'),
       ('C3', 'Omega USB cable with long flat connector housing', 'Omega', :cables, 700, 1, true, 'active'),
       ('A1', 'Acme USB cable adapter', 'Acme', :adapters, 400, 1, true, 'active'),
       ('H1', 'Acme HDMI cable', 'Acme', :cables, 800, 1, true, 'active'),
       ('H2', 'Zeta HDMI cable 3 m', 'Zeta', :cables, 800, 1, true, 'active');
SELECT product_id AS c1 FROM shop.product WHERE sku = 'C1' \gset
SELECT product_id AS c2 FROM shop.product WHERE sku = 'C2' \gset
SELECT product_id AS c3 FROM shop.product WHERE sku = 'C3' \gset
SELECT product_id AS h2 FROM shop.product WHERE sku = 'H2' \gset
CREATE FUNCTION pg_temp.top(q text, lim int DEFAULT 3) RETURNS text LANGUAGE sql AS $f$
    SELECT string_agg(p.sku, ' ' ORDER BY s.ord)
      FROM shop.search(q, '{}', 'relevance', lim) WITH ORDINALITY AS s(product_id, score, title, brand, price_cents,
               rating_avg, category_id, in_stock, image, typos, missing_words, ord)
      JOIN shop.product p USING (product_id)
$f$;
-- an order of a customer, at a time
CREATE FUNCTION pg_temp.buy(cust bigint, product bigint, at timestamptz) RETURNS void LANGUAGE sql AS $f$
    WITH o AS (
        INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents, created_at)
        VALUES (cust, 'paid', 'USD', 100, 100, at) RETURNING order_id)
    INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
    SELECT o.order_id, 1, product, 'x', 'x', 100, 1 FROM o
$f$;
CREATE FUNCTION pg_temp.searched(cust bigint, q text, at timestamptz) RETURNS void LANGUAGE sql AS $f$
    INSERT INTO shop.search_log (logged_at, query, query_folded, sort, results, duration_ms, customer_id)
    VALUES (at, q, shop._search_fold(q), 'relevance', 3, 1, cust)
$f$;
-- text alone: the short title first
SELECT pg_temp.top('usb cable');
-- customers 1, 2 and 3 search "usb cable" and buy C2 five minutes later
SELECT pg_temp.searched(c, 'USB  Cable', now() - interval '10 minutes'), pg_temp.buy(c, :c2, now() - interval '5 minutes')
  FROM generate_series(1, 3) c;
-- customer 4 buys C3 twenty times after "usb cable": one vote, at most
-- an order's weight (4), and alone, so no boost
SELECT pg_temp.searched(4, 'usb cable', now() - interval '10 minutes');
SELECT pg_temp.buy(4, :c3, now() - interval '9 minutes' + i * interval '1 second') FROM generate_series(1, 20) i;
-- customer 5 buys C2 two hours after searching: outside the window (1 h)
SELECT pg_temp.searched(5, 'usb cable', now() - interval '3 hours'), pg_temp.buy(5, :c2, now() - interval '1 hour');
-- two customers bought H2 after "hdmi cable" 30 days ago (one half-life):
-- their 4 + 4 is worth 4 now
SELECT pg_temp.searched(c, 'hdmi cable', now() - interval '30 days' - interval '10 minutes'),
       pg_temp.buy(c, :h2, now() - interval '30 days')
  FROM generate_series(6, 7) c;
SELECT r ->> 'touched' AS touched, r ->> 'products' AS products, r ->> 'categories' AS categories
  FROM shop.refresh_search_prior() r;
SELECT kind, id = :c2 AS c2, id = :c3 AS c3, round(weight::numeric, 2) AS weight, customers, round(factor::numeric, 3) AS factor
  FROM shop.search_prior_for('usb cable');
-- the bought product first; the cap: C3's twenty orders count as one vote
SELECT pg_temp.top('usb cable');
SELECT pg_temp.top('USB cable');
-- a query the prior does not know ranks as before
SELECT pg_temp.top('usb cable adapter', 2);
-- the setting turns it off
SET shop.search_prior = off;
SELECT pg_temp.top('usb cable');
RESET shop.search_prior;
-- decay: 30 days old, half the weight
SELECT kind, id = :h2 AS h2, round(weight::numeric, 1) AS weight, customers
  FROM shop.search_prior_for('hdmi cable') WHERE kind = 'product';
SELECT pg_temp.top('hdmi cable', 2);
-- incremental: a new order touches one (query, product) row and its
-- category; the other rows keep their as_of
SELECT as_of AS hdmi_as_of FROM shop.search_prior WHERE query_folded = 'hdmi cable' \gset
SELECT pg_temp.searched(8, 'usb cable', now() - interval '2 minutes'), pg_temp.buy(8, :c2, now() - interval '1 minute');
SELECT r ->> 'touched' AS touched, r ->> 'products' AS products, r ->> 'categories' AS categories
  FROM shop.refresh_search_prior() r;
SELECT as_of = :'hdmi_as_of' AS hdmi_untouched FROM shop.search_prior WHERE query_folded = 'hdmi cable';
SELECT customers FROM shop.search_prior WHERE query_folded = 'usb cable' AND product_id = :c2;
-- a refresh reads the last 5 minutes again (for transactions that
-- committed late): the same order counts once
SELECT weight AS c2_weight FROM shop.search_prior WHERE query_folded = 'usb cable' AND product_id = :c2 \gset
SELECT r ->> 'touched' AS touched FROM shop.refresh_search_prior() r;
SELECT abs(weight - :c2_weight) < 0.01 AS same_weight, customers
  FROM shop.search_prior WHERE query_folded = 'usb cable' AND product_id = :c2;
-- the real path: a customer's shop.search (logged through the ring) and
-- shop.view count
SELECT count(*) FROM shop.search('hdmi cable', '{}', 'relevance', 2, 0, 9);
SELECT shop.view(9, :h2);
SELECT shop.refresh_search_prior() IS NOT NULL AS refreshed;
SELECT customer_id, weight FROM shop.search_prior_evidence WHERE customer_id = 9;
-- the storefront searches with the prior on, and cannot refresh it
SET ROLE shop_storefront;
SHOW shop.search_prior;
SELECT pg_temp.top('usb cable');
SELECT pg_temp.err('SELECT shop.refresh_search_prior()');
SELECT pg_temp.err($$SELECT * FROM shop.search_prior_for('usb cable')$$);
RESET ROLE;
SET ROLE shop_admin;
SELECT count(*) FROM shop.search_prior_for('usb cable');
RESET ROLE;
-- the index's query keys are checked
SELECT pg_temp.err($$SELECT shop.search_scan('shop.product_search_idx', '{"q": "x", "prior": [["(0,1)", 2]]}', 1)$$);
SELECT pg_temp.err($$SELECT shop.search_scan('shop.product_search_idx', '{"q": "x", "prior": [["(0,1)"]]}', 1)$$);
SELECT pg_temp.err($$SELECT shop.search_scan('shop.product_search_idx', '{"q": "x", "prior": {"a": 1}}', 1)$$);
SELECT pg_temp.err($$SELECT shop.search_scan('shop.product_search_idx', '{"q": "x", "prior": [["(0,1", 0.5]]}', 1)$$);
SELECT pg_temp.err($$SELECT shop.search_scan('shop.product_search_idx', '{"q": "x", "prior": [[1, 0.5]]}', 1)$$);
SELECT pg_temp.err($$SELECT shop.search_scan('shop.product_search_idx', '{"q": "x", "prior_categories": [[1, -1]]}', 1)$$);
-- the index and the operator agree on the boost's rows
SELECT shop.search_verify('shop.product_search_idx');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
