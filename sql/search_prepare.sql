-- search_prepare: shop.search's checks and index query in C (issue 12,
-- throughput: shop._search_prepare and the work of shop._search_query it
-- called were PL/pgSQL).  The index query it builds is the PL/pgSQL
-- shop._search_query's (with the intent for relevance), and every error
-- of the checks has the same SQLSTATE, message and detail, in the same
-- order, for each filter and argument case below; with synonyms and with
-- a customer too (the PL/pgSQL builder's object then).  And shop.search's
-- rows follow a function replaced by name (the OIDs it keeps per backend
-- are dropped when pg_proc changes).
\i sql/include/prelude.sql
SELECT shop.category_add('Lamps') AS lamps \gset
SELECT shop.category_add('Desk lamps', :lamps) AS desk \gset
SET client_min_messages = warning;
INSERT INTO shop.product (sku, title, brand, category_id, price_cents, status, attributes)
SELECT 'Q' || i, (ARRAY['quokka lamp', 'quokka bulb', 'wombat desk lamp'])[1 + i % 3] || ' ' || i,
       (ARRAY['Lumen', 'Brightco', NULL])[1 + i % 3], (ARRAY[:lamps, :desk])[1 + i % 2],
       100 * i, 'active', jsonb_build_object('color', (ARRAY['red', 'black'])[1 + i % 2])
  FROM generate_series(1, 300) i;
RESET client_min_messages;

-- what a call raises: SQLSTATE, message, detail (or the result)
CREATE FUNCTION pg_temp.outcome(f text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    r jsonb;
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE f INTO r;
    RETURN 'ok ' || r::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ' ' || msg || ' / ' || det;
END
$f$;

CREATE TEMP TABLE cases (n serial, q text, f jsonb, sort text, lim int, off int);
INSERT INTO cases (q, f, sort, lim, off) VALUES
    ('quokka lamp', '{}', 'relevance', 20, 0),
    ('quokka lamp', '{}', 'price_asc', 20, 0),
    ('quokk lmp', '{}', 'relevance', 20, 0),
    ('wombat', format('{"category_id": %s}', :lamps)::jsonb, 'relevance', 20, 0),
    ('wombat', format('{"category_id": %s, "brand": "Lumen"}', :desk)::jsonb, 'newest', 20, 0),
    ('lamp', '{"brand": ["Lumen", "Brightco"], "price_min": 100, "price_max": 9000.5}', 'relevance', 5, 3),
    ('lamp', '{"rating_min": 2, "in_stock": false, "attributes": {"color": "red"}}', 'rating', 20, 0),
    ('lamp', '{"in_stock": true}', 'popularity', 20, 0),
    ('', '{}', 'relevance', 20, 0),
    -- the errors, in the checks' order
    (NULL, '{}', NULL, 20, 0),
    (NULL, '{}', 'relevance', 0, 0),
    (NULL, '{}', 'relevance', NULL, 0),
    (NULL, '{}', 'relevance', 20, -1),
    (NULL, '{}', 'relevance', 20, NULL),
    (NULL, NULL, 'cheapest', 20, 0),
    (NULL, NULL, 'relevance', 20, 0),
    ('lamp', NULL, 'relevance', 20, 0),
    (repeat('x', 257), '{"x": 1}', 'relevance', 20, 0),
    ('lamp 4111 1111 1111 1111', '{"x": 1}', 'relevance', 20, 0),
    ('lamp', '[]', 'relevance', 20, 0),
    ('lamp', '"x"', 'relevance', 20, 0),
    ('lamp', '{"brand": "4111111111111111"}', 'relevance', 20, 0),
    ('lamp', '{"category_id": "1"}', 'relevance', 20, 0),
    ('lamp', '{"category_id": 1.5}', 'relevance', 20, 0),
    ('lamp', '{"category_id": 99999999999999999999}', 'relevance', 20, 0),
    ('lamp', '{"category_id": 987654}', 'relevance', 20, 0),
    ('lamp', '{"brand": []}', 'relevance', 20, 0),
    ('lamp', '{"brand": ["a", 1]}', 'relevance', 20, 0),
    ('lamp', '{"brand": {"a": 1}}', 'relevance', 20, 0),
    ('lamp', '{"price_min": "10"}', 'relevance', 20, 0),
    ('lamp', '{"rating_min": null}', 'relevance', 20, 0),
    ('lamp', '{"in_stock": 1}', 'relevance', 20, 0),
    ('lamp', '{"attributes": [1]}', 'relevance', 20, 0),
    ('lamp', '{"attributes": "red"}', 'relevance', 20, 0),
    ('lamp', '{"colour": "red", "brand": 1}', 'relevance', 20, 0),
    ('lamp', '{"zz": 1, "brand": 1}', 'relevance', 20, 0);

-- the PL/pgSQL rules, written out as shop._search_prepare had them
CREATE FUNCTION pg_temp.plpgsql_prepare(query text, filters jsonb, sort text, lim int, off int)
RETURNS jsonb LANGUAGE plpgsql AS $f$
DECLARE
    q jsonb;
BEGIN
    IF sort IS NULL THEN
        RAISE EXCEPTION 'argument % must not be null', 'sort' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
    IF off IS NULL OR off < 0 OR off > 100000 THEN
        RAISE EXCEPTION 'offset out of range' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('off is %s; it must be between 0 and 100000.', coalesce(off::text, 'NULL'));
    END IF;
    IF sort NOT IN ('relevance', 'price_asc', 'price_desc', 'rating', 'newest', 'popularity') THEN
        RAISE EXCEPTION 'unknown sort' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('sort is "%s"; it must be one of relevance, price_asc, price_desc, rating, newest, popularity.', sort);
    END IF;
    q := shop._search_query(query, filters, NULL);
    IF sort = 'relevance' THEN
        q := shop._search_intent(q);
    END IF;
    RETURN q;
END
$f$;

-- C and PL/pgSQL agree on every case
SELECT count(*) AS cases,
       count(*) FILTER (WHERE c_out = pl_out) AS same,
       count(*) FILTER (WHERE c_out LIKE 'ok %') AS built,
       count(*) FILTER (WHERE c_out NOT LIKE 'ok %') AS refused
  FROM (SELECT n,
               pg_temp.outcome(format('SELECT shop._search_prepare(%L, %L, %L, %s, %s, NULL)',
                                      q, f, sort, coalesce(lim::text, 'NULL'), coalesce(off::text, 'NULL'))) AS c_out,
               pg_temp.outcome(format('SELECT pg_temp.plpgsql_prepare(%L, %L, %L, %s, %s)',
                                      q, f, sort, coalesce(lim::text, 'NULL'), coalesce(off::text, 'NULL'))) AS pl_out
          FROM cases) x;
-- the errors themselves (one per case, in the checks' order)
SELECT n, pg_temp.outcome(format('SELECT shop._search_prepare(%L, %L, %L, %s, %s, NULL)',
                                 q, f, sort, coalesce(lim::text, 'NULL'), coalesce(off::text, 'NULL'))) AS refused
  FROM cases WHERE n >= 10 ORDER BY n;
-- and shop.search raises them
SELECT * FROM shop.search('lamp', '{"brand": []}');
SELECT * FROM shop.search('lamp', sort => 'cheapest');

-- with synonyms: the PL/pgSQL builder's object, and a filter's error first
INSERT INTO shop.synonym (term, synonyms) VALUES ('lamp', '{light}');
SELECT shop._search_prepare('quokka lamp', '{"price_max": 5000}', 'price_asc', 20, 0, NULL)
       = shop._search_query('quokka lamp', '{"price_max": 5000}', NULL) AS same_with_synonyms,
       shop._search_prepare('quokka lamp', '{}', 'price_asc', 20, 0, NULL) ? 'synonyms' AS has_synonyms;
SELECT pg_temp.outcome($$SELECT shop._search_prepare('lamp', '{"in_stock": 1}', 'relevance', 20, 0, NULL)$$)
     = pg_temp.outcome($$SELECT pg_temp.plpgsql_prepare('lamp', '{"in_stock": 1}', 'relevance', 20, 0)$$) AS same_error;
DELETE FROM shop.synonym;

-- with a customer (as the admin caller: personalization, no history)
SELECT shop._search_prepare('quokka lamp', '{}', 'price_asc', 20, 0, 7)
       = shop._search_query('quokka lamp', '{}', 7) AS same_with_customer;
SELECT pg_temp.outcome($$SELECT shop._search_prepare('lamp', '{}', 'relevance', 20, 0, 0)$$) AS customer_zero;

-- the OIDs kept per backend follow a function replaced under its name:
-- the new shop._search_intent_work is called (a query not in the intent
-- cache), then the original again
SELECT count(*) AS rows FROM shop.search('quokka bulb');
ALTER FUNCTION shop._search_intent_work(jsonb) RENAME TO _search_intent_work_kept;
CREATE FUNCTION shop._search_intent_work(q jsonb) RETURNS jsonb LANGUAGE plpgsql AS $f$
BEGIN
    RAISE NOTICE 'the replaced intent function for %', q ->> 'q';
    RETURN q;
END
$f$;
SELECT count(*) AS rows FROM shop.search('wombat desk');
DROP FUNCTION shop._search_intent_work(jsonb);
ALTER FUNCTION shop._search_intent_work_kept(jsonb) RENAME TO _search_intent_work;
SELECT count(*) AS rows FROM shop.search('wombat lamp');
SELECT count(*) AS rows, count(DISTINCT product_id) AS products
  FROM shop.search('quokka lamp', format('{"category_id": %s}', :lamps)::jsonb, lim => 50);
-- a function missing: every call says so (not only the first), and the
-- next call after it is back works
ALTER FUNCTION shop._search_prior(text, jsonb) RENAME TO _search_prior_kept;
SELECT pg_temp.err($$SELECT * FROM shop.search('quokka')$$) AS first_call;
SELECT pg_temp.err($$SELECT * FROM shop.search('quokka')$$) AS second_call;
ALTER FUNCTION shop._search_prior_kept(text, jsonb) RENAME TO _search_prior;
SELECT count(*) AS rows FROM shop.search('quokka');
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
