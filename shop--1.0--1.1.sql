/* shop--1.0--1.1.sql: update shop from 1.0 to 1.1.
 *
 * 1.1 has no install script of its own: CREATE EXTENSION shop runs
 * shop--1.0.sql and then this file, so a fresh install and an update of a
 * 1.0 install run the very same statements and end with the same objects
 * (test/upgrade checks that, object by object). shop--1.0.sql never
 * changes again; everything new or changed since 1.0 goes here, in the
 * subsystem sections below, and docs/upgrading.md says what each release
 * changed for users.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION shop UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- Security: roles, sessions, inputs (issues 10, 17) --
------------------------------------------------------------------------------
-- docs/security.md has the model; src/security.c the C.  In this section:
--   roles: the storefront's calls work as shop_storefront (search,
--   facets, autocomplete, did_you_mean are SECURITY DEFINER; search acts
--   for another customer only when trusted); reserve, reserve_many and
--   reservation_release are back-office calls like the rest of
--   inventory's writes; shop_admin gets the back-office calls and reads.

-- Roles
-- The storefront's search: search logs its calls into shop.search_log and
-- reads synonyms and (personalized) the customer's history, autocomplete
-- reads the popular queries of the log; all run as the extension's owner,
-- so the storefront needs no privilege on these tables and cannot read
-- anyone's searches.  A restricted caller personalizes only for the
-- customer of its session (shop._authorize), like recommend.
CREATE OR REPLACE FUNCTION shop.search(query text, filters jsonb DEFAULT '{}', sort text DEFAULT 'relevance',
                            lim int DEFAULT 20, off int DEFAULT 0, customer_id bigint DEFAULT NULL)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    q jsonb;
    attrs jsonb;
    n int;
    raw int;
    ids bigint[];
    scores real[];
    typ int[];
    miss int[];
    t0 timestamptz := clock_timestamp();
    nres int;
BEGIN
    PERFORM shop._require(sort, 'sort');
    PERFORM shop._check_page(lim, off);
    -- personalization reads the customer's history and the log records
    -- the search as theirs: a storefront only for its session's customer
    PERFORM shop._authorize(search.customer_id);
    IF sort NOT IN ('relevance', 'price_asc', 'price_desc', 'rating', 'newest', 'popularity') THEN
        RAISE EXCEPTION 'unknown sort'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('sort is "%s"; it must be one of relevance, price_asc, price_desc, rating, newest, popularity.', sort);
    END IF;
    q := shop._search_query(query, filters, search.customer_id);
    attrs := coalesce(filters -> 'attributes', '{}');

    IF sort = 'relevance' THEN
        -- the index ranks: rows with every word first, then rows missing
        -- words ("match": "any"); status and attribute filters apply on
        -- the rows, so fetch more until the page is full or matches run out
        n := lim + off;
        LOOP
            WITH s AS MATERIALIZED (
                SELECT * FROM shop.search_scan('shop.product_search_idx', q || '{"match": "any"}', n)
                       WITH ORDINALITY AS s(ctid, score, typos, missing, ord))
            SELECT coalesce(array_agg(p.product_id ORDER BY s.ord), '{}'),
                   coalesce(array_agg(s.score ORDER BY s.ord), '{}'),
                   coalesce(array_agg(s.typos ORDER BY s.ord), '{}'),
                   coalesce(array_agg(s.missing ORDER BY s.ord), '{}'),
                   (SELECT count(*) FROM s)
              INTO ids, scores, typ, miss, raw
              FROM s CROSS JOIN LATERAL (
                       -- one TID lookup per hit (OFFSET 0 keeps it a lookup)
                       SELECT p.product_id FROM shop.product p
                        WHERE p.ctid = s.ctid AND p.status = 'active' AND p.attributes @> attrs
                       OFFSET 0) p;
            EXIT WHEN cardinality(ids) >= lim + off OR raw < n OR n >= 100000;
            n := least(n * 4, 100000);
        END LOOP;
        RETURN QUERY
        SELECT p.product_id, u.score, p.title, p.brand, p.price_cents, p.rating_avg,
               p.category_id, p.in_stock, p.images[1], u.typos, u.missing
          FROM unnest(ids, scores, typ, miss) WITH ORDINALITY AS u(product_id, score, typos, missing, ord)
          JOIN shop.product p ON p.product_id = u.product_id
         ORDER BY u.ord
         OFFSET off LIMIT lim;
    ELSE
        RETURN QUERY
        SELECT p.product_id, NULL::real, p.title, p.brand, p.price_cents, p.rating_avg,
               p.category_id, p.in_stock, p.images[1], NULL::int, 0
          FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.@@@) q
           AND p.status = 'active' AND p.attributes @> attrs
         ORDER BY
            CASE WHEN sort = 'price_asc' THEN p.price_cents END ASC,
            CASE WHEN sort = 'price_desc' THEN p.price_cents END DESC,
            CASE WHEN sort = 'rating' THEN p.rating_avg END DESC NULLS LAST,
            CASE WHEN sort = 'rating' THEN p.rating_count END DESC,
            CASE WHEN sort = 'newest' THEN p.created_at END DESC,
            CASE WHEN sort = 'popularity' THEN p.popularity END DESC,
            p.product_id
         OFFSET off LIMIT lim;
    END IF;
    GET DIAGNOSTICS nres = ROW_COUNT;
    IF NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' THEN
        INSERT INTO shop.search_log (query, query_folded, filters, sort, results, duration_ms, customer_id)
        VALUES (query, shop._search_fold(query), filters, sort, nres,
                extract(epoch FROM clock_timestamp() - t0)::real * 1000, search.customer_id);
    END IF;
END
$$;

ALTER FUNCTION shop.search_facets(text, jsonb) SECURITY DEFINER;
ALTER FUNCTION shop.autocomplete(text, int) SECURITY DEFINER;
ALTER FUNCTION shop.did_you_mean(text) SECURITY DEFINER;

-- Holds outside checkout are back-office calls: a storefront that could
-- reserve could hold any product's whole stock for up to a week, and one
-- that could release could free the holds of its own paid orders (their
-- reservation ids are in the order lines it may read), selling the same
-- units twice.  Checkout reserves for the storefront, as the owner.
REVOKE EXECUTE ON FUNCTION shop.reserve(bigint, int, text, interval),
    shop.reserve_many(jsonb, text, interval), shop.reservation_release(uuid),
    shop.synonym_add(text, text[]), shop.synonym_remove(text)
    FROM PUBLIC;
-- The back office's calls run as the owner, so shop_admin needs no write
-- privilege on any table.
ALTER FUNCTION shop.stock_set(bigint, int, text) SECURITY DEFINER;
ALTER FUNCTION shop.stock_adjust(bigint, int, text, text) SECURITY DEFINER;
ALTER FUNCTION shop.stock_set_buckets(bigint, int) SECURITY DEFINER;
ALTER FUNCTION shop.stock_set_reorder_threshold(bigint, int) SECURITY DEFINER;
ALTER FUNCTION shop.reserve(bigint, int, text, interval) SECURITY DEFINER;
ALTER FUNCTION shop.reserve_many(jsonb, text, interval) SECURITY DEFINER;
ALTER FUNCTION shop.reservation_release(uuid) SECURITY DEFINER;
ALTER FUNCTION shop.reservation_commit(uuid) SECURITY DEFINER;
ALTER FUNCTION shop.reservation_extend(uuid, interval) SECURITY DEFINER;
ALTER FUNCTION shop.synonym_add(text, text[]) SECURITY DEFINER;
ALTER FUNCTION shop.synonym_remove(text) SECURITY DEFINER;
ALTER FUNCTION shop.sweep() SECURITY DEFINER;
ALTER FUNCTION shop.metrics() SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION
    shop.stock_set(bigint, int, text), shop.stock_adjust(bigint, int, text, text),
    shop.stock_set_buckets(bigint, int), shop.stock_set_reorder_threshold(bigint, int),
    shop.reserve(bigint, int, text, interval), shop.reserve_many(jsonb, text, interval),
    shop.reservation_release(uuid), shop.reservation_commit(uuid),
    shop.reservation_extend(uuid, interval),
    shop.synonym_add(text, text[]), shop.synonym_remove(text),
    shop.sweep(), shop.metrics()
    TO shop_admin;
-- what the back office reads: stock pages, the outbox, the search log,
-- the rules and the dashboard's views
GRANT SELECT ON shop.stock, shop.reservation, shop.stock_ledger, shop.stock_summary, shop.low_stock,
    shop.synonym, shop.search_log, shop.event, shop.shipping_rate, shop.tax_rate,
    shop.metrics_orders_today, shop.metrics_conversion, shop.metrics_payments
    TO shop_admin;

-- Sessions: the customer lives in the setting shop.session (src/security.c)
COMMENT ON FUNCTION shop.session_begin(text) IS
'verify a session token (28000 when forged or expired) and act as its customer until shop.session_end, RESET or DISCARD ALL (with shop.session_scope = transaction: until the end of the transaction)';
