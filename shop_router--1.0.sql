/* shop_router--1.0.sql: the router of a sharded shop (docs/scale-out.md).
 *
 * A router database has shop_router, not shop.  It creates schema shop
 * with the functions of shop's public API that are routed so far, with the
 * same names, arguments and results, so an application moves from one node
 * to a cluster by changing its connection string.  Each call goes to the
 * shards through PL/Proxy (the cluster "shop_cluster", defined with SQL/MED:
 * CREATE SERVER shop_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (p0 ...,
 * p1 ...), a power-of-two number of partitions).  Every shard database has
 * shop itself.
 *
 * Partitions (the map of docs/scale-out.md):
 *   - product_id-keyed calls run on partition hashint8(product_id) & (n-1);
 *   - writes of the replicated tables (categories, synonyms) run on every
 *     partition; reads of them on any one;
 *   - search, search_facets, autocomplete, did_you_mean and browse run on
 *     every partition and are merged here.
 * Calls keyed by customer_id (carts, checkout, orders) are not routed yet:
 * docs/scale-out.md has their design.
 *
 * The remote calls connect as the calling role (PL/Proxy adds
 * user=CURRENT_USER to a connect string without user=), so the shards check
 * each call's privileges as a single node does.  The functions here are
 * SECURITY INVOKER for that reason.  Internal functions live in schema
 * shop_router.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION shop_router CASCADE" to load this file. \quit

CREATE SCHEMA shop_router;
COMMENT ON SCHEMA shop_router IS 'internal functions of the shop router (docs/scale-out.md)';

------------------------------------------------------------------------------
-- Roles (the same three as shop's; roles are cluster-wide)
------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'shop_storefront') THEN
        CREATE ROLE shop_storefront NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'shop_admin') THEN
        CREATE ROLE shop_admin NOLOGIN;
    END IF;
END
$$;

------------------------------------------------------------------------------
-- Catalog: replicated categories, product_id-keyed products
------------------------------------------------------------------------------

-- category_add on every partition.  The shards give the id (an identity
-- column); they agree as long as every category write goes through one
-- router, which takes them one at a time (the advisory lock below), so
-- each shard's sequence moves in step.  A shard that answers another id
-- (it missed a write, or was written to directly) is an error, not a guess.
CREATE FUNCTION shop_router._category_add(i_name text, i_parent_id bigint)
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop.category_add($1, $2);
$$;

CREATE FUNCTION shop.category_add(name text, parent_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    ids bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock(1936224112, 1);   -- 'shop'; 1: category writes
    SELECT array_agg(DISTINCT x ORDER BY x) INTO ids
      FROM shop_router._category_add(name, parent_id) x;
    IF cardinality(ids) IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'shards disagree on the category id'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('category_add(%L, %s) returned the ids %s on the partitions.',
                                  name, coalesce(parent_id::text, 'NULL'), ids),
                  HINT = 'Every category write must go through the router; docs/scale-out.md, "Replicated tables", says how to repair a shard.';
    END IF;
    RETURN ids[1];
END
$$;
COMMENT ON FUNCTION shop.category_add(text, bigint) IS
'router: add a category on every shard (they must agree on its id); returns its id';

CREATE FUNCTION shop.category_descendants(category_id bigint)
RETURNS bigint[]
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ANY;
$$;

CREATE FUNCTION shop.category_path(category_id bigint)
RETURNS jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ANY;
$$;

-- product ids for new products: the router chooses them, since the hash of
-- the id names the shard (a shard's identity sequence cannot).  One router
-- per cluster allocates (docs/scale-out.md); shop_router.sync_product_ids()
-- moves the sequence past every id the shards hold.
CREATE SEQUENCE shop_router.product_id_seq;
SELECT pg_catalog.pg_extension_config_dump('shop_router.product_id_seq', '');

CREATE FUNCTION shop_router._product_ids_by_sku(i_sku text)
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT p.product_id FROM shop.product p WHERE p.sku = $1;
$$;

CREATE FUNCTION shop_router._product_exists(i_product_id bigint)
RETURNS SETOF boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(i_product_id);
    SELECT EXISTS (SELECT FROM shop.product p WHERE p.product_id = $1);
$$;

CREATE FUNCTION shop_router._product_id_max()
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT max(p.product_id) FROM shop.product p;
$$;

CREATE FUNCTION shop_router.sync_product_ids()
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop_router, pg_temp
AS $$
    SELECT setval('shop_router.product_id_seq',
                  greatest((SELECT max(m) FROM shop_router._product_id_max() m),
                           (SELECT last_value FROM shop_router.product_id_seq), 1));
$$;
COMMENT ON FUNCTION shop_router.sync_product_ids() IS
'move the router''s product id sequence past the largest product_id of every shard; returns its new value';

CREATE FUNCTION shop_router._product_upsert(sku text, title text, price_cents bigint,
                                            description text, brand text, category_id bigint,
                                            attributes jsonb, images text[], status text,
                                            product_id bigint)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
    TARGET shop.product_upsert;
$$;

CREATE FUNCTION shop.product_upsert(sku text, title text, price_cents bigint,
                                    description text DEFAULT NULL,
                                    brand text DEFAULT NULL,
                                    category_id bigint DEFAULT NULL,
                                    attributes jsonb DEFAULT NULL,
                                    images text[] DEFAULT NULL,
                                    status text DEFAULT NULL,
                                    product_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    by_sku bigint[];
    id bigint := product_upsert.product_id;
BEGIN
    -- the SKU is unique across the cluster: one upsert of a SKU at a time
    -- (on this router), and the shard that holds it is asked first
    IF sku IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(1936224112, hashtext(sku));
        SELECT array_agg(x ORDER BY x) INTO by_sku FROM shop_router._product_ids_by_sku(sku) x;
    END IF;
    IF cardinality(by_sku) > 1 THEN
        RAISE EXCEPTION 'sku is held by several products'
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('sku "%s" is the products %s on different shards.', sku, by_sku);
    END IF;
    IF id IS NOT NULL AND by_sku[1] IS NOT NULL AND by_sku[1] <> id THEN
        -- as one node says it (shop.product_upsert)
        RAISE EXCEPTION 'sku belongs to another product'
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('sku "%s" is product %s, not %s.', sku, by_sku[1], id);
    END IF;
    id := coalesce(id, by_sku[1]);
    IF id IS NULL AND sku IS NOT NULL THEN
        -- a new product: an id no shard holds yet
        id := nextval('shop_router.product_id_seq');
        IF (SELECT bool_or(e) FROM shop_router._product_exists(id) e) THEN
            PERFORM shop_router.sync_product_ids();
            id := nextval('shop_router.product_id_seq');
        END IF;
    END IF;
    -- a NULL sku (or title, price) is refused by the shard as by one node;
    -- send it to partition 0 then
    RETURN shop_router._product_upsert(sku, title, price_cents, description, brand, category_id,
                                       attributes, images, status, coalesce(id, 0));
END
$$;
COMMENT ON FUNCTION shop.product_upsert(text, text, bigint, text, text, bigint, jsonb, text[], text, bigint) IS
'router: insert or update a product on the shard of its product_id (a new product gets its id from the router)';

CREATE FUNCTION shop.product_get(product_id bigint)
RETURNS jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

-- browse: the products of a category and its descendants, from every
-- shard, merged as search pages are (each shard's first lim + off rows,
-- sorted as one node sorts them, then cut); newest reads created_at, which
-- browse does not return, in the same shard query.  The title sort uses
-- the router database's collation: create it with the shards' locale.
CREATE FUNCTION shop_router._browse(i_category_id bigint, i_sort text, i_lim int, i_off int)
RETURNS TABLE (product_id bigint, sku text, title text, brand text, category text,
               price_cents bigint, rating_avg numeric, rating_count int,
               popularity real, image text, created_at timestamptz)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT b.product_id, b.sku, b.title, b.brand, b.category, b.price_cents, b.rating_avg,
           b.rating_count, b.popularity, b.image, p.created_at
      FROM shop.browse($1, $2, $3, $4) b
      JOIN shop.product p ON p.product_id = b.product_id;
$$;

CREATE FUNCTION shop.browse(category_id bigint, sort text DEFAULT 'popularity',
                            lim int DEFAULT 20, off int DEFAULT 0)
RETURNS TABLE (product_id bigint, sku text, title text, brand text, category text,
               price_cents bigint, rating_avg numeric, rating_count int,
               popularity real, image text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    need int;
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 OR off IS NULL OR off < 0 OR off > 100000 THEN
        -- out of range: the shards say so, in the words of one node
        RETURN QUERY
        SELECT r.product_id, r.sku, r.title, r.brand, r.category, r.price_cents, r.rating_avg,
               r.rating_count, r.popularity, r.image
          FROM shop_router._browse(category_id, sort, lim, off) r;
        RETURN;
    END IF;
    need := lim + off;
    RETURN QUERY
    SELECT r.product_id, r.sku, r.title, r.brand, r.category, r.price_cents, r.rating_avg,
           r.rating_count, r.popularity, r.image
      FROM generate_series(0, (need - 1) / 1000) k
     CROSS JOIN LATERAL shop_router._browse(category_id, sort, least(1000, need - 1000 * k),
                                            1000 * k) r
     ORDER BY
        CASE WHEN sort = 'popularity' THEN r.popularity END DESC,
        CASE WHEN sort = 'price_asc' THEN r.price_cents END ASC,
        CASE WHEN sort = 'price_desc' THEN r.price_cents END DESC,
        CASE WHEN sort = 'price_desc' THEN r.product_id END DESC,
        CASE WHEN sort = 'rating' THEN r.rating_avg END DESC NULLS LAST,
        CASE WHEN sort = 'rating' THEN r.rating_count END DESC,
        CASE WHEN sort = 'newest' THEN r.created_at END DESC,
        CASE WHEN sort = 'newest' THEN r.product_id END DESC,
        CASE WHEN sort = 'title' THEN r.title END ASC,
        r.product_id
     OFFSET off LIMIT lim;
END
$$;
COMMENT ON FUNCTION shop.browse(bigint, text, int, int) IS
'router: a category''s active products from every shard, merged (docs/scale-out.md)';

CREATE FUNCTION shop.review_add(product_id bigint, customer_id bigint, rating int,
                                title text DEFAULT NULL, body text DEFAULT NULL)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

CREATE FUNCTION shop.review_delete(product_id bigint, customer_id bigint)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

------------------------------------------------------------------------------
-- Inventory: product_id-keyed
------------------------------------------------------------------------------

CREATE FUNCTION shop.stock_set(product_id bigint, on_hand int, location text DEFAULT 'default')
RETURNS int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

CREATE FUNCTION shop.stock_adjust(product_id bigint, delta int, reason text, location text DEFAULT 'default')
RETURNS int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

CREATE FUNCTION shop.stock_available(product_id bigint)
RETURNS int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

CREATE FUNCTION shop.stock_set_buckets(product_id bigint, buckets int)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

CREATE FUNCTION shop.stock_set_reorder_threshold(product_id bigint, reorder_threshold int)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(product_id);
$$;

------------------------------------------------------------------------------
-- Search: replicated synonyms, scatter-gather queries merged here
------------------------------------------------------------------------------

CREATE FUNCTION shop_router._synonym_add(i_term text, i_synonyms text[])
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT 1 FROM shop.synonym_add($1, $2);
$$;

CREATE FUNCTION shop.synonym_add(term text, synonyms text[])
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT count(*) FROM shop_router._synonym_add(term, synonyms);
$$;
COMMENT ON FUNCTION shop.synonym_add(text, text[]) IS 'router: declare synonyms of a term on every shard';

CREATE FUNCTION shop_router._synonym_remove(i_term text)
RETURNS SETOF boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop.synonym_remove($1);
$$;

CREATE FUNCTION shop.synonym_remove(term text)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT coalesce(bool_or(r), false) FROM shop_router._synonym_remove(term) r;
$$;
COMMENT ON FUNCTION shop.synonym_remove(text) IS 'router: remove the synonyms of a term on every shard; true if some shard had them';

-- One page of shop.search from every shard, with the keys the router
-- sorts by that shop.search does not return (read from shop.product, which
-- both roles may read).
CREATE FUNCTION shop_router._search(i_query text, i_filters jsonb, i_sort text, i_lim int, i_off int,
                                    i_customer_id bigint)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int, rating_count int, created_at timestamptz, popularity real)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT s.product_id, s.score, s.title, s.brand, s.price_cents, s.rating_avg, s.category_id,
           s.in_stock, s.image, s.typos, s.missing_words,
           p.rating_count, p.created_at, p.popularity
      FROM shop.search($1, $2, $3, $4, $5, $6) s
      JOIN shop.product p ON p.product_id = s.product_id;
$$;

-- The merge: every shard returns its best lim + off rows, the router sorts
-- them as one node does and cuts the page.  One node ranks by the index's
-- order (missing words, then typos, then score, then the row's place in the
-- table); the router breaks the last tie by product_id.  A shard's page is
-- at most 1000 rows (shop._check_page), so a deeper page is read in pages
-- of 1000 from every shard.
CREATE FUNCTION shop.search(query text, filters jsonb DEFAULT '{}', sort text DEFAULT 'relevance',
                            lim int DEFAULT 20, off int DEFAULT 0, customer_id bigint DEFAULT NULL)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    need int;
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 OR off IS NULL OR off < 0 OR off > 100000 THEN
        -- out of range: the shards say so, in the words of one node
        RETURN QUERY
        SELECT r.product_id, r.score, r.title, r.brand, r.price_cents, r.rating_avg, r.category_id,
               r.in_stock, r.image, r.typos, r.missing_words
          FROM shop_router._search(query, filters, sort, lim, off, customer_id) r;
        RETURN;
    END IF;
    need := lim + off;
    RETURN QUERY
    SELECT r.product_id, r.score, r.title, r.brand, r.price_cents, r.rating_avg, r.category_id,
           r.in_stock, r.image, r.typos, r.missing_words
      FROM generate_series(0, (need - 1) / 1000) k
     CROSS JOIN LATERAL shop_router._search(query, filters, sort, least(1000, need - 1000 * k),
                                            1000 * k, customer_id) r
     ORDER BY
        CASE WHEN sort = 'relevance' THEN r.missing_words END ASC,
        CASE WHEN sort = 'relevance' THEN r.typos END ASC,
        CASE WHEN sort = 'relevance' THEN r.score END DESC,
        CASE WHEN sort = 'price_asc' THEN r.price_cents END ASC,
        CASE WHEN sort = 'price_desc' THEN r.price_cents END DESC,
        CASE WHEN sort = 'rating' THEN r.rating_avg END DESC NULLS LAST,
        CASE WHEN sort = 'rating' THEN r.rating_count END DESC,
        CASE WHEN sort = 'newest' THEN r.created_at END DESC,
        CASE WHEN sort = 'popularity' THEN r.popularity END DESC,
        r.product_id
     OFFSET off LIMIT lim;
END
$$;
COMMENT ON FUNCTION shop.search(text, jsonb, text, int, int, bigint) IS
'router: search every shard and merge their pages (docs/scale-out.md, "Search across shards")';

CREATE FUNCTION shop_router._search_facets(i_query text, i_filters jsonb)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop.search_facets($1, $2);
$$;

-- Facet counts are exact: every product is on one shard, so the counts of
-- a value add up.  Orders as on one node.
CREATE FUNCTION shop.search_facets(query text, filters jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    WITH f AS MATERIALIZED (
        SELECT r FROM shop_router._search_facets(query, filters) r
    )
    SELECT jsonb_build_object(
        'total', (SELECT coalesce(sum((f.r ->> 'total')::bigint), 0) FROM f),
        'brand', coalesce((SELECT jsonb_agg(jsonb_build_object('value', x.v, 'count', x.n)
                                            ORDER BY x.n DESC, x.v)
                             FROM (SELECT e ->> 'value' AS v, sum((e ->> 'count')::bigint) AS n
                                     FROM f, jsonb_array_elements(f.r -> 'brand') e
                                    GROUP BY 1) x), '[]'),
        'category', coalesce((SELECT jsonb_agg(jsonb_build_object('category_id', x.id, 'name', x.name,
                                                                  'count', x.n)
                                               ORDER BY x.n DESC, x.id)
                                FROM (SELECT (e ->> 'category_id')::bigint AS id, min(e ->> 'name') AS name,
                                             sum((e ->> 'count')::bigint) AS n
                                        FROM f, jsonb_array_elements(f.r -> 'category') e
                                       GROUP BY 1) x), '[]'),
        'price', coalesce((SELECT jsonb_agg(jsonb_build_object('bucket', x.bucket, 'min_cents', x.lo,
                                                               'max_cents', x.hi, 'count', x.n)
                                            ORDER BY x.lo)
                             FROM (SELECT e ->> 'bucket' AS bucket, (e ->> 'min_cents')::bigint AS lo,
                                          (e ->> 'max_cents')::bigint AS hi, sum((e ->> 'count')::bigint) AS n
                                     FROM f, jsonb_array_elements(f.r -> 'price') e
                                    GROUP BY 1, 2, 3) x), '[]'),
        'rating', coalesce((SELECT jsonb_agg(jsonb_build_object('min', x.m, 'count', x.n) ORDER BY x.m DESC)
                              FROM (SELECT (e ->> 'min')::int AS m, sum((e ->> 'count')::bigint) AS n
                                      FROM f, jsonb_array_elements(f.r -> 'rating') e
                                     GROUP BY 1) x), '[]'));
$$;
COMMENT ON FUNCTION shop.search_facets(text, jsonb) IS
'router: the facet counts of every shard, summed (exact)';

CREATE FUNCTION shop_router._autocomplete(i_prefix text, i_lim int)
RETURNS TABLE (suggestion text, kind text, score real)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT a.suggestion, a.kind, a.score FROM shop.autocomplete($1, $2) a;
$$;

-- Each shard's best suggestions; a suggestion several shards make keeps
-- its best score.  Scores are per shard (docs/scale-out.md).
CREATE FUNCTION shop.autocomplete(prefix text, lim int DEFAULT 10)
RETURNS TABLE (suggestion text, kind text, score real)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT d.suggestion, d.kind, d.score
      FROM (SELECT DISTINCT ON (lower(a.suggestion)) a.suggestion, a.kind, a.score
              FROM shop_router._autocomplete(prefix, lim) a
             ORDER BY lower(a.suggestion), a.score DESC, a.suggestion) d
     ORDER BY d.score DESC, d.suggestion
     LIMIT lim;
$$;
COMMENT ON FUNCTION shop.autocomplete(text, int) IS
'router: the suggestions of every shard, merged by score';

CREATE FUNCTION shop_router._did_you_mean(i_query text)
RETURNS SETOF text
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop.did_you_mean($1);
$$;

-- A shard corrects a word its own vocabulary lacks; the router takes the
-- correction most shards agree on (an approximation: docs/scale-out.md).
CREATE FUNCTION shop.did_you_mean(query text)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT s FROM shop_router._did_you_mean(query) s
     WHERE s IS NOT NULL
     GROUP BY s
     ORDER BY count(*) DESC, s
     LIMIT 1;
$$;
COMMENT ON FUNCTION shop.did_you_mean(text) IS
'router: the spelling correction most shards make';

------------------------------------------------------------------------------
-- Privileges: the router's grants mirror a node's (docs/security.md); the
-- shards check them again, since each call reaches them as its caller.
------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_router FROM PUBLIC;
GRANT USAGE ON SCHEMA shop, shop_router TO shop_storefront, shop_admin;
GRANT EXECUTE ON FUNCTION
    shop.product_get(bigint), shop.category_descendants(bigint), shop.category_path(bigint),
    shop.browse(bigint, text, int, int), shop_router._browse(bigint, text, int, int),
    shop.review_add(bigint, bigint, int, text, text), shop.review_delete(bigint, bigint),
    shop.stock_available(bigint),
    shop.search(text, jsonb, text, int, int, bigint), shop.search_facets(text, jsonb),
    shop.autocomplete(text, int), shop.did_you_mean(text),
    shop_router._search(text, jsonb, text, int, int, bigint), shop_router._search_facets(text, jsonb),
    shop_router._autocomplete(text, int), shop_router._did_you_mean(text)
    TO shop_storefront, shop_admin;
GRANT EXECUTE ON FUNCTION
    shop.category_add(text, bigint),
    shop.product_upsert(text, text, bigint, text, text, bigint, jsonb, text[], text, bigint),
    shop.stock_set(bigint, int, text), shop.stock_adjust(bigint, int, text, text),
    shop.stock_set_buckets(bigint, int), shop.stock_set_reorder_threshold(bigint, int),
    shop.synonym_add(text, text[]), shop.synonym_remove(text),
    shop_router._category_add(text, bigint), shop_router._product_ids_by_sku(text),
    shop_router._product_exists(bigint), shop_router._product_id_max(),
    shop_router.sync_product_ids(),
    shop_router._product_upsert(text, text, bigint, text, text, bigint, jsonb, text[], text, bigint),
    shop_router._synonym_add(text, text[]), shop_router._synonym_remove(text)
    TO shop_admin;
GRANT USAGE, UPDATE ON SEQUENCE shop_router.product_id_seq TO shop_admin;
