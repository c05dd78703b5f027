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

-- Search (issues 9, 10) ------------------------------------------------------
-- The index-level functions check in C that the caller may read the indexed
-- table (SELECT, and no row level security hiding rows: 42501) and name a
-- missing relation (42P01).  The two internal ones, which the public entry
-- points (shop.search_facets, shop.did_you_mean) call with the caller's
-- rights, are not for PUBLIC: the storefront and the admin role keep them.
REVOKE EXECUTE ON FUNCTION shop._search_suggest_word(regclass, text),
    shop._search_facet_counts(regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop._search_suggest_word(regclass, text),
    shop._search_facet_counts(regclass, jsonb) TO shop_storefront, shop_admin;

-- The match rule of @@@ is the same whichever plan evaluates it: typo
-- tolerance applies to every word of 5+ characters unless the query lists
-- it in "no_typos", and no expansion is capped (docs/search.md, "Match
-- rules").  shop's API keeps its behaviour (a word the catalog knows is
-- not widened to its neighbours) by asking the index which words it knows,
-- in _search_query and autocomplete.
CREATE FUNCTION shop._search_no_typos(index regclass, query jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'shop_search_no_typos'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION shop._search_no_typos(regclass, jsonb) IS
'internal: query with the words the index knows (exactly, by stem or as a prefix) added to its no_typos list';
REVOKE EXECUTE ON FUNCTION shop._search_no_typos(regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop._search_no_typos(regclass, jsonb) TO shop_storefront, shop_admin;

CREATE OR REPLACE FUNCTION shop._search_query(query text, filters jsonb, customer_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    q jsonb;
    k text;
    v jsonb;
    folded text;
    groups jsonb;
    cats bigint[];
BEGIN
    PERFORM shop._require(query, 'query');
    PERFORM shop._require(filters, 'filters');
    PERFORM shop._check_text(query, 'query', coalesce(current_setting('shop.max_query_length', true), '256')::int);
    IF jsonb_typeof(filters) <> 'object' THEN
        RAISE EXCEPTION 'malformed search filters'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('filters must be a jsonb object, not a %s.', jsonb_typeof(filters));
    END IF;
    PERFORM shop._card_number_check(filters, 'filters');
    q := jsonb_build_object('q', query);
    FOR k, v IN SELECT * FROM jsonb_each(filters) LOOP
        CASE k
        WHEN 'category_id' THEN
            IF jsonb_typeof(v) <> 'number' THEN
                RAISE EXCEPTION 'malformed search filter'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('category_id must be a number, not %s.', v);
            END IF;
            cats := shop.category_descendants((v #>> '{}')::bigint);
            IF cardinality(cats) = 0 THEN
                RAISE EXCEPTION 'category not found'
                    USING ERRCODE = 'SH006',
                          DETAIL = format('No category has category_id %s.', v);
            END IF;
            q := q || jsonb_build_object('category_ids', to_jsonb(cats));
        WHEN 'brand' THEN
            IF jsonb_typeof(v) = 'string'
               OR (jsonb_typeof(v) = 'array' AND jsonb_array_length(v) > 0
                   AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v) e
                                    WHERE jsonb_typeof(e) <> 'string')) THEN
                q := q || jsonb_build_object('brands', v);
            ELSE
                RAISE EXCEPTION 'malformed search filter'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('brand must be a string or a non-empty array of strings, not %s.', v);
            END IF;
        WHEN 'price_min', 'price_max', 'rating_min' THEN
            IF jsonb_typeof(v) <> 'number' THEN
                RAISE EXCEPTION 'malformed search filter'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('%s must be a number, not %s.', k, v);
            END IF;
            q := q || jsonb_build_object(k, v);
        WHEN 'in_stock' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                RAISE EXCEPTION 'malformed search filter'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('in_stock must be true or false, not %s.', v);
            END IF;
            q := q || jsonb_build_object('in_stock', v);
        WHEN 'attributes' THEN
            IF jsonb_typeof(v) <> 'object' THEN
                RAISE EXCEPTION 'malformed search filter'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('attributes must be a jsonb object, not %s.', v);
            END IF;
        ELSE
            RAISE EXCEPTION 'unknown search filter'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Filter "%s" is not one of category_id, brand, price_min, price_max, rating_min, in_stock, attributes.', k);
        END CASE;
    END LOOP;

    -- synonym groups that occur in the query (as whole words)
    folded := ' ' || shop._search_fold(query) || ' ';
    SELECT jsonb_agg(to_jsonb(s.term || s.synonyms)) INTO groups
      FROM shop.synonym s
     WHERE strpos(folded, ' ' || s.term || ' ') > 0
        OR EXISTS (SELECT 1 FROM unnest(s.synonyms) x WHERE strpos(folded, ' ' || x || ' ') > 0);
    IF groups IS NOT NULL THEN
        q := q || jsonb_build_object('synonyms', groups);
    END IF;

    -- personalization: the customer's most bought / viewed categories and brands
    IF customer_id IS NOT NULL THEN
        q := q || jsonb_build_object(
            'boost_categories', coalesce((
                SELECT jsonb_agg(c) FROM (
                    SELECT p.category_id AS c
                      FROM (SELECT l.product_id, 3 AS w
                              FROM shop."order" o JOIN shop.order_line l USING (order_id)
                             WHERE o.customer_id = _search_query.customer_id
                               AND o.status NOT IN ('pending', 'cancelled')
                            UNION ALL
                            SELECT v.product_id, 1 FROM shop.view_event v
                             WHERE v.customer_id = _search_query.customer_id) h
                      JOIN shop.product p USING (product_id)
                     WHERE p.category_id IS NOT NULL
                     GROUP BY p.category_id ORDER BY sum(h.w) DESC, p.category_id LIMIT 5) x), '[]'),
            'boost_brands', coalesce((
                SELECT jsonb_agg(b) FROM (
                    SELECT p.brand AS b
                      FROM (SELECT l.product_id, 3 AS w
                              FROM shop."order" o JOIN shop.order_line l USING (order_id)
                             WHERE o.customer_id = _search_query.customer_id
                               AND o.status NOT IN ('pending', 'cancelled')
                            UNION ALL
                            SELECT v.product_id, 1 FROM shop.view_event v
                             WHERE v.customer_id = _search_query.customer_id) h
                      JOIN shop.product p USING (product_id)
                     WHERE p.brand IS NOT NULL
                     GROUP BY p.brand ORDER BY sum(h.w) DESC, p.brand LIMIT 5) x), '[]'));
    END IF;
    -- the words the catalog knows get no typo tolerance (issue 9): the
    -- rule of @@@ is the same in every plan, so the vocabulary is asked here
    RETURN shop._search_no_typos('shop.product_search_idx', q);
END
$$;

CREATE OR REPLACE FUNCTION shop.autocomplete(prefix text, lim int DEFAULT 10)
RETURNS TABLE (suggestion text, kind text, score real)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    q jsonb;
    f text;
BEGIN
    PERFORM shop._require(prefix, 'prefix');
    PERFORM shop._check_page(lim, 0);
    PERFORM shop._check_text(prefix, 'prefix', coalesce(current_setting('shop.max_query_length', true), '256')::int);
    f := shop._search_fold(prefix);
    IF f = '' THEN
        RETURN;
    END IF;
    q := shop._search_no_typos('shop.product_search_idx', jsonb_build_object('q', prefix, 'prefix', true));
    RETURN QUERY
    WITH hits AS MATERIALIZED (
        SELECT p.title, p.brand, p.category_id, s.score, s.typos, s.ord
          FROM shop.search_scan('shop.product_search_idx', q, greatest(2 * lim, 20)) WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
         CROSS JOIN LATERAL (SELECT p.title, p.brand, p.category_id FROM shop.product p
                              WHERE p.ctid = s.ctid AND p.status = 'active' OFFSET 0) p
    ), cand AS (
        -- product titles, best hits first
        SELECT h.title AS suggestion, 'product'::text AS kind,
               (1.0 / (1 + h.typos) * (1.0 - h.ord / 100.0))::real AS score
          FROM hits h
        UNION ALL
        -- brands whose name starts with the prefix, among the hits
        SELECT min(h.brand), 'brand', (1.2 * count(*) / (SELECT count(*) FROM hits))::real
          FROM hits h
         WHERE h.brand IS NOT NULL AND shop._search_fold(h.brand) LIKE f || '%'
         GROUP BY shop._search_fold(h.brand)
        UNION ALL
        -- categories whose name has a word starting with the prefix
        SELECT c.name, 'category',
               (1.1 * (1 + (SELECT count(*) FROM hits h WHERE h.category_id = c.category_id))
                / (1 + (SELECT count(*) FROM hits)))::real
          FROM shop.category c
         WHERE ' ' || shop._search_fold(c.name) LIKE '% ' || f || '%'
        UNION ALL
        -- what other shoppers typed and found something for
        SELECT l.q, 'query', (0.9 * least(1.0, count(*) / 10.0))::real
          FROM (SELECT query_folded AS q FROM shop.search_log
                 WHERE results > 0 AND logged_at > now() - interval '30 days'
                 ORDER BY logged_at DESC LIMIT 2000) l
         WHERE l.q LIKE f || '%' AND l.q <> f
         GROUP BY l.q HAVING count(*) >= 2
    )
    SELECT d.suggestion, d.kind, d.score
      FROM (SELECT DISTINCT ON (lower(c.suggestion)) c.suggestion, c.kind, c.score
              FROM cand c
             ORDER BY lower(c.suggestion), c.score DESC) d
     ORDER BY d.score DESC, d.suggestion
     LIMIT lim;
END
$$;
