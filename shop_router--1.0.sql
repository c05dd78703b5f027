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
 *   - product_id-keyed calls run on partition hashint8(product_id) & (n-1),
 *     and so do the direct holds (reserve, reserve_many's lines), whose
 *     ids the router makes to carry the product's hash bucket;
 *   - writes of the replicated tables (categories, synonyms, experiments)
 *     run on every partition; reads of them on any one; tax and shipping
 *     rates are written on partition 0, then copied to every partition;
 *   - search, search_facets, autocomplete, did_you_mean, browse, trending
 *     and similar_products' candidates run on every partition and are
 *     merged here;
 *   - calls keyed by customer_id (carts, checkout as a saga, orders,
 *     views) run on partition hashint8(customer_id) & (n-1), with the
 *     storefront's session;
 *   - co-purchase counts are made on the customers' partitions and moved
 *     to the products' (shop_router.copurchase_move), where also_bought
 *     reads its lists.
 * docs/scale-out.md ("What is not routed") lists what is not here.
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
-- The read route: hot standbys for the read functions (docs/scale-out.md,
-- "Read replicas")
------------------------------------------------------------------------------

-- The standbys' replay, one partition at a time (RUN ON i_part: the
-- partition numbers the router passes are below the partition count, and
-- an int's partition is the int itself): the primary's WAL position, and
-- what the read cluster's node has replayed.  Run by _read_check only.
CREATE FUNCTION shop_router._wal_lsn(i_part int)
RETURNS pg_lsn
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT pg_catalog.pg_current_wal_lsn();
$$;

CREATE FUNCTION shop_router._replay_state(i_cluster text, i_part int, i_lsn pg_lsn,
                                          OUT lag interval, OUT paused boolean)
LANGUAGE plproxy
AS $$
    CLUSTER pg_catalog.concat(i_cluster);    -- the read cluster, by name
    RUN ON i_part;
    SELECT CASE WHEN NOT pg_catalog.pg_is_in_recovery()
                  OR pg_catalog.pg_last_wal_replay_lsn() >= i_lsn THEN interval '0'
                ELSE coalesce(pg_catalog.clock_timestamp() - pg_catalog.pg_last_xact_replay_timestamp(),
                              interval '100 years') END AS lag,
           pg_catalog.pg_is_in_recovery() AND pg_catalog.pg_is_wal_replay_paused() AS paused;
$$;

-- the partitions of the read cluster i_cluster that name another node
-- than shop_cluster's (a standby): only those can lag
CREATE FUNCTION shop_router._read_parts(i_cluster text)
RETURNS SETOF int
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT substr(split_part(r.o, '=', 1), 2)::int
      FROM pg_foreign_server rs, unnest(rs.srvoptions) r(o)
     WHERE rs.srvname = i_cluster AND r.o ~ '^p[0-9]+='
       AND r.o IS DISTINCT FROM (SELECT p.o FROM pg_foreign_server ps, unnest(ps.srvoptions) p(o)
                                  WHERE ps.srvname = 'shop_cluster' AND split_part(p.o, '=', 1) = split_part(r.o, '=', 1))
     ORDER BY 1
$$;

-- The route of a read cluster some of whose partitions lag (issue 16): a
-- server of its own, "<read cluster>_lag_<mask>" (mask: the sum of 2^n of
-- the lagging partitions n), whose lagging partitions name shop_cluster's
-- connection strings and the others the read cluster's, with the read
-- cluster's other options, a user mapping FOR PUBLIC and its grants.
-- Made by the first check that needs it (SECURITY DEFINER: the extension's
-- owner makes it), made again when the read cluster's options changed.
-- Only the lagging partitions' reads go to their primaries.
CREATE FUNCTION shop_router._read_server(i_cluster text, i_lagging int[])
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := format('%s_lag_%s', i_cluster,
                        (SELECT sum((2::numeric) ^ p) FROM unnest(i_lagging) p)::numeric(1000, 0));
    opts text[];
    have text[];
    g record;
BEGIN
    -- only a PL/Proxy server the caller may use, and some of its partitions
    IF NOT EXISTS (SELECT FROM pg_foreign_server rs JOIN pg_foreign_data_wrapper w ON w.oid = rs.srvfdw
                    WHERE rs.srvname = i_cluster AND w.fdwname = 'plproxy'
                      AND has_server_privilege(session_user, rs.oid, 'USAGE'))
       OR cardinality(i_lagging) IS NOT DISTINCT FROM 0
       OR EXISTS (SELECT FROM unnest(i_lagging) p
                   WHERE p IS NULL OR NOT format('p%s', p) IN (SELECT split_part(o, '=', 1)
                                                               FROM pg_foreign_server rs, unnest(rs.srvoptions) o
                                                              WHERE rs.srvname = i_cluster)) THEN
        RAISE EXCEPTION 'not a read cluster''s partitions'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s of %s', i_lagging, i_cluster);
    END IF;
    SELECT array_agg(CASE WHEN split_part(r.o, '=', 1) ~ '^p[0-9]+$'
                           AND substr(split_part(r.o, '=', 1), 2)::int = ANY (i_lagging)
                          THEN (SELECT p.o FROM pg_foreign_server ps, unnest(ps.srvoptions) p(o)
                                 WHERE ps.srvname = 'shop_cluster' AND split_part(p.o, '=', 1) = split_part(r.o, '=', 1))
                          ELSE r.o END ORDER BY r.n)
      INTO opts
      FROM pg_foreign_server rs, unnest(rs.srvoptions) WITH ORDINALITY r(o, n)
     WHERE rs.srvname = i_cluster;
    PERFORM pg_advisory_xact_lock(1936224112, 16);   -- 'shop'; 16: the read route's servers
    SELECT srvoptions INTO have FROM pg_foreign_server WHERE srvname = name;
    IF FOUND AND have = opts THEN
        RETURN name;
    ELSIF FOUND THEN
        EXECUTE format('DROP SERVER %I CASCADE', name);
    END IF;
    EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER plproxy OPTIONS (%s)', name,
                   (SELECT string_agg(format('%I %L', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)), ', ')
                      FROM unnest(opts) o));
    EXECUTE format('CREATE USER MAPPING FOR PUBLIC SERVER %I', name);
    FOR g IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee
               FROM pg_foreign_server rs, aclexplode(rs.srvacl) a
              WHERE rs.srvname = i_cluster AND a.privilege_type = 'USAGE' LOOP
        EXECUTE format('GRANT USAGE ON FOREIGN SERVER %I TO %s', name, g.grantee);
    END LOOP;
    EXECUTE format('COMMENT ON SERVER %I IS %L', name,
                   format('shop_router: %s with partitions %s on shop_cluster (read_max_lag, docs/scale-out.md)',
                          i_cluster, i_lagging));
    RETURN name;
END
$$;
COMMENT ON FUNCTION shop_router._read_server(text, int[]) IS
'router: the server of the read route with the lagging partitions of a read cluster on shop_cluster (made or made again when needed)';

-- The last check of each read cluster and read_max_lag, shared by the
-- router database's backends (issue 16): one check per read_lag_check
-- period and database, not per backend.  Unlogged: after a crash the
-- next read call checks again.
CREATE UNLOGGED TABLE shop_router.read_state (
    cluster    text NOT NULL,
    max_lag    text NOT NULL,
    route      text NOT NULL,
    lagging    int[] NOT NULL,
    checked_at timestamptz NOT NULL,
    checks     bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (cluster, max_lag)
);
COMMENT ON TABLE shop_router.read_state IS
'router: the last read_max_lag check of each read cluster (route, lagging partitions, when; checks counts them), shared by every backend';

CREATE FUNCTION shop_router._read_state_put(i_cluster text, i_max_lag text, i_route text, i_lagging int[],
                                            i_at timestamptz)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- a route of this read cluster only (the check's answers)
    INSERT INTO shop_router.read_state AS s (cluster, max_lag, route, lagging, checked_at)
    SELECT i_cluster, i_max_lag, i_route, i_lagging, i_at
     WHERE EXISTS (SELECT FROM pg_foreign_server c
                    WHERE c.srvname = i_cluster AND has_server_privilege(session_user, c.oid, 'USAGE'))
       AND (i_route IN (i_cluster, 'shop_cluster')
            OR (left(i_route, length(i_cluster) + 5) = i_cluster || '_lag_'
                AND EXISTS (SELECT FROM pg_foreign_server rs WHERE rs.srvname = i_route)))
    ON CONFLICT (cluster, max_lag) DO UPDATE
       SET route = excluded.route, lagging = excluded.lagging, checked_at = excluded.checked_at,
           checks = s.checks + 1;
$$;

-- The check behind shop_router.read_max_lag: each partition of the read
-- cluster i_cluster that names a standby (_read_parts) lags when its
-- standby is paused or behind its primary by more than i_max_lag (the
-- time since the last transaction it replayed, when it has not replayed
-- the primary's WAL position read just before), and also when it cannot
-- be asked (a standby down; one that accepts connections and never
-- answers is not found so: docs/scale-out.md, "A standby that does not
-- answer").  The route: i_cluster when none lags,
-- shop_cluster when all do, else the server of _read_server, where only
-- the lagging partitions name their primaries.
-- Shared (shop_router.read_state): a backend whose session answer expired
-- takes the database's last check when it is younger than i_every
-- (shop_router.read_lag_check, default 5 s); else one backend checks (a
-- transaction advisory lock: the others keep the last answer meanwhile,
-- or wait for the first check of the database) and
-- writes its answer there.  The answer is kept in the session (the
-- placeholder settings shop_router._read_key: the cluster and the two
-- settings it was checked for, _read_until: until when, as an epoch,
-- _read_route: the answer) until the check it came from is i_every old.
-- A check costs 2 PL/Proxy calls per partition that names a standby.
CREATE FUNCTION shop_router._read_check(i_cluster text, i_max_lag text, i_every text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    max_lag interval;
    every interval;
    part int;
    st record;
    kept record;
    lagging int[] := '{}';
    nstandby int := 0;
    route text;
    until timestamptz;
    lock_key bigint := hashtextextended(concat_ws(chr(31), 'shop-read-check', i_cluster, i_max_lag), 0);
BEGIN
    BEGIN
        max_lag := i_max_lag::interval;
        every := coalesce(nullif(i_every, ''), '5s')::interval;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
        RAISE EXCEPTION 'shop_router.read_max_lag and shop_router.read_lag_check must be intervals'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('read_max_lag = %L, read_lag_check = %L', i_max_lag, i_every),
                  HINT = 'For example SET shop_router.read_max_lag = ''10s''; docs/scale-out.md, "Read replicas".';
    END;
    SELECT s.route, s.checked_at INTO kept
      FROM shop_router.read_state s WHERE s.cluster = i_cluster AND s.max_lag = i_max_lag;
    IF NOT FOUND AND every > interval '0' THEN
        -- no check yet: wait for the one in progress, if any, and take it
        PERFORM pg_advisory_xact_lock(lock_key);
        SELECT s.route, s.checked_at INTO kept
          FROM shop_router.read_state s WHERE s.cluster = i_cluster AND s.max_lag = i_max_lag;
    END IF;
    IF kept.checked_at + every > clock_timestamp() THEN
        -- another backend's check, young enough
        route := kept.route;
        until := kept.checked_at + every;
    ELSIF kept.route IS NOT NULL AND every > interval '0' AND NOT pg_try_advisory_xact_lock(lock_key) THEN
        -- another backend is checking: its last answer meanwhile
        route := kept.route;
        until := clock_timestamp() + least(every, interval '1 second');
    ELSE
        -- this backend checks (holding the lock until its transaction
        -- ends, unless read_lag_check is 0)
        BEGIN
            FOR part IN SELECT shop_router._read_parts(i_cluster) LOOP
                nstandby := nstandby + 1;
                BEGIN
                    st := shop_router._replay_state(i_cluster, part, shop_router._wal_lsn(part));
                    IF st.paused OR st.lag > max_lag THEN
                        lagging := lagging || part;
                    END IF;
                EXCEPTION WHEN OTHERS THEN
                    lagging := lagging || part;      -- cannot be asked: its primary
                END;
            END LOOP;
            route := CASE WHEN cardinality(lagging) = 0 THEN i_cluster
                          WHEN cardinality(lagging) = nstandby THEN 'shop_cluster'
                          ELSE shop_router._read_server(i_cluster, lagging) END;
        EXCEPTION WHEN OTHERS THEN
            route := 'shop_cluster';
        END;
        until := clock_timestamp() + every;
        BEGIN
            PERFORM shop_router._read_state_put(i_cluster, i_max_lag, route, lagging, clock_timestamp());
        EXCEPTION WHEN OTHERS THEN
            NULL;   -- a read-only transaction: kept in the session only
        END;
    END IF;
    PERFORM set_config('shop_router._read_key', concat_ws(chr(31), i_cluster, i_max_lag, i_every), false),
            set_config('shop_router._read_until', extract(epoch FROM until)::text, false),
            set_config('shop_router._read_route', route, false);
    RETURN route;
END
$$;
COMMENT ON FUNCTION shop_router._read_check(text, text, text) IS
'router: the read route after checking the standbys of the read cluster (the lagging partitions on shop_cluster), shared by the database''s backends for shop_router.read_lag_check and kept in the session';

-- The cluster the read functions call (search and its helpers, browse,
-- product_get, stock_available, category reads, also_bought, similar_products,
-- trending, recommend's product-side lists): the PL/Proxy cluster named by
-- the setting shop_router.read_cluster, shop_cluster when it is unset or
-- empty, so nothing changes until a DBA sets it (ALTER ROLE web SET
-- shop_router.read_cluster = 'shop_cluster_ro', or per session).  Writes,
-- and reads that must see the caller's own writes (carts, orders, views,
-- checkout), name shop_cluster itself.  The caller needs USAGE on the
-- server it names, as on shop_cluster.  With shop_router.read_max_lag set
-- (an interval), the read cluster is used only while none of its
-- standbys is paused or lags more than that (_read_check, kept for
-- shop_router.read_lag_check); shop_cluster otherwise.
-- A SQL function, inlined into the query PL/Proxy runs for it: with the
-- settings unset it costs what the plain coalesce of before did, and a
-- kept check a comparison of three settings (read_lag_cpu.sh).  VOLATILE
-- because it may call _read_check (a STABLE SQL function calling a
-- volatile one is not inlined).
CREATE FUNCTION shop_router._read_cluster()
RETURNS text
LANGUAGE sql VOLATILE PARALLEL RESTRICTED
AS $$
    SELECT CASE
        WHEN coalesce(nullif(pg_catalog.current_setting('shop_router.read_cluster', true), ''), 'shop_cluster') = 'shop_cluster'
          OR coalesce(pg_catalog.current_setting('shop_router.read_max_lag', true), '') = ''
        THEN coalesce(nullif(pg_catalog.current_setting('shop_router.read_cluster', true), ''), 'shop_cluster')
        WHEN pg_catalog.current_setting('shop_router._read_key', true)
                 = pg_catalog.concat_ws(pg_catalog.chr(31), pg_catalog.current_setting('shop_router.read_cluster', true),
                                        pg_catalog.current_setting('shop_router.read_max_lag', true),
                                        coalesce(pg_catalog.current_setting('shop_router.read_lag_check', true), ''))
         AND pg_catalog.current_setting('shop_router._read_until', true)::float8
                 > extract(epoch FROM pg_catalog.clock_timestamp())
        THEN pg_catalog.current_setting('shop_router._read_route', true)
        ELSE shop_router._read_check(pg_catalog.current_setting('shop_router.read_cluster', true),
                                     pg_catalog.current_setting('shop_router.read_max_lag', true),
                                     coalesce(pg_catalog.current_setting('shop_router.read_lag_check', true), ''))
    END
$$;
COMMENT ON FUNCTION shop_router._read_cluster() IS
'router: the PL/Proxy cluster of the read functions: the setting shop_router.read_cluster, shop_cluster when unset, or when shop_router.read_max_lag is set and a standby of it is paused or lags more (docs/scale-out.md, "Read replicas")';
REVOKE ALL ON FUNCTION shop_router._read_cluster(), shop_router._read_check(text, text, text),
    shop_router._read_parts(text), shop_router._wal_lsn(int), shop_router._replay_state(text, int, pg_lsn),
    shop_router._read_server(text, int[]), shop_router._read_state_put(text, text, text, int[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._read_cluster(), shop_router._read_check(text, text, text),
    shop_router._read_parts(text), shop_router._wal_lsn(int), shop_router._replay_state(text, int, pg_lsn),
    shop_router._read_server(text, int[]), shop_router._read_state_put(text, text, text, int[], timestamptz)
    TO shop_storefront, shop_admin;
GRANT SELECT ON shop_router.read_state TO shop_storefront, shop_admin;

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
    CLUSTER shop_router._read_cluster();
    RUN ON ANY;
$$;

CREATE FUNCTION shop.category_path(category_id bigint)
RETURNS jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
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

-- Errors of single-shard reads (issue 16): a shard's error leaves its
-- connection to be remade by the backend's next call ("PL/Proxy:
-- dropping stale conn"), and an unknown product id (SH006: stale links,
-- bots) is a common answer of the storefront's reads.  The shard answers
-- NULL for an id that names no product (the same query's snapshot and
-- rights as the read's own) and the router raises one node's error
-- (shop_router._product_not_found); a NULL id is refused here as one
-- node refuses it (22004, shop_router._require): it has no partition.
CREATE FUNCTION shop_router._product_not_found(product_id bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- as one node says it (shop._product_must_exist)
    RAISE EXCEPTION 'product not found'
        USING ERRCODE = 'SH006',
              DETAIL = format('No product has product_id %s.', product_id);
END
$$;

-- a shard's refusal answered as data (shop._reserve_try and the other
-- steps of shop's section "Scale-out: a shard's refusals as answers"):
-- raised here as the shard raised it (SQLSTATE, message, detail, hint)
CREATE FUNCTION shop_router._raise(error text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF error[3] IS NOT NULL AND error[4] IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = error[1], MESSAGE = error[2], DETAIL = error[3], HINT = error[4];
    ELSIF error[3] IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = error[1], MESSAGE = error[2], DETAIL = error[3];
    ELSIF error[4] IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = error[1], MESSAGE = error[2], HINT = error[4];
    END IF;
    RAISE EXCEPTION USING ERRCODE = error[1], MESSAGE = error[2];
END
$$;

-- the same in a query's WHERE (a row whose error is a shard's answer):
-- raises the error; false, never reached, for its type
CREATE FUNCTION shop_router._raised(error text[])
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM shop_router._raise(error);
    RETURN false;
END
$$;

-- one node's check of a required argument (shop._require), on the router
-- before any shard is called (a NULL product id has no partition)
CREATE FUNCTION shop_router._require(value anyelement, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION 'argument % must not be null', what
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
END
$$;

-- one node's check of a list's lim (shop._check_page), on the router
-- before any shard is called
CREATE FUNCTION shop_router._check_lim(lim int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
END
$$;

-- one node's first check of a customer id (shop._authorize: a NULL id
-- passes), on the router before any shard is called (issue 16, ha5:
-- cart_create's and orders_for's refusals left a connection to be remade)
CREATE FUNCTION shop_router._check_customer(customer_id bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF customer_id <= 0 THEN
        RAISE EXCEPTION 'customer_id must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('customer_id is %s.', customer_id);
    END IF;
END
$$;

CREATE FUNCTION shop_router._product_get(product_id bigint)
RETURNS jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON hashint8(product_id);
    SELECT CASE WHEN $1 IS NULL OR EXISTS (SELECT FROM shop.product p WHERE p.product_id = $1)
                THEN shop.product_get($1) END;
$$;

-- the document of the product's shard, with its also_bought list made
-- through the router (below: the cluster's co-purchase lists, the
-- neighbours' titles, prices and images from their shards)
CREATE FUNCTION shop.product_get(product_id bigint)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    doc jsonb;
    ids bigint[];
    scores real[];
BEGIN
    PERFORM shop_router._require(product_id, 'product_id');
    doc := shop_router._product_get(product_id);
    IF doc IS NULL THEN
        PERFORM shop_router._product_not_found(product_id);
    END IF;
    IF doc IS NULL OR NOT doc ? 'also_bought' THEN
        RETURN doc;
    END IF;
    SELECT array_agg(a.product_id ORDER BY a.k), array_agg(a.score ORDER BY a.k) INTO ids, scores
      FROM shop.also_bought(product_id, 5) WITH ORDINALITY a(product_id, score, k);
    RETURN jsonb_set(doc, '{also_bought}',
                     (SELECT coalesce(jsonb_agg(jsonb_build_object('product_id', u.p, 'title', c.title,
                                                                   'price_cents', c.price_cents, 'image', c.image,
                                                                   'score', u.s) ORDER BY u.k), '[]')
                        FROM unnest(ids, scores) WITH ORDINALITY u(p, s, k)
                        JOIN shop_router._product_cards(ids) c ON c.product_id = u.p));
END
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
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    -- an unknown category: a row of NULLs (categories are on every shard;
    -- the router raises one node's SH006)
    SELECT b.product_id, b.sku, b.title, b.brand, b.category, b.price_cents, b.rating_avg,
           b.rating_count, b.popularity, b.image, p.created_at
      FROM shop.browse($1, $2, $3, $4) b
     CROSS JOIN LATERAL (SELECT p.created_at FROM shop.product p WHERE p.product_id = b.product_id OFFSET 0) p
     WHERE EXISTS (SELECT FROM shop.category c WHERE c.category_id = $1)
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     WHERE NOT EXISTS (SELECT FROM shop.category c WHERE c.category_id = $1);
$$;

-- one node's SH006 of browse (its shard answered a row of NULLs);
-- returns false when it does not raise, for a query's WHERE
CREATE FUNCTION shop_router._category_not_found(category_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'category not found'
        USING ERRCODE = 'SH006',
              DETAIL = format('No category has category_id %s.', category_id);
END
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
    -- one node's checks of the arguments, in its order, raised here before
    -- any shard is called (a shard's error would leave every connection
    -- of the call to be remade, issue 16); an unknown category comes back
    -- as a row of NULLs from the shards
    PERFORM shop_router._require(category_id, 'category_id'), shop_router._require(sort, 'sort');
    PERFORM shop_router._check_lim(lim);
    IF off IS NULL OR off < 0 OR off > 100000 THEN
        RAISE EXCEPTION 'offset out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('off is %s; it must be between 0 and 100000.', coalesce(off::text, 'NULL'));
    END IF;
    IF sort NOT IN ('popularity', 'price_asc', 'price_desc', 'rating', 'newest', 'title') THEN
        RAISE EXCEPTION 'unknown sort'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('sort is "%s"; it must be one of popularity, price_asc, price_desc, rating, newest, title.', sort);
    END IF;
    need := lim + off;
    RETURN QUERY
    SELECT r.product_id, r.sku, r.title, r.brand, r.category, r.price_cents, r.rating_avg,
           r.rating_count, r.popularity, r.image
      FROM generate_series(0, (need - 1) / 1000) k
     CROSS JOIN LATERAL shop_router._browse(category_id, sort, least(1000, need - 1000 * k),
                                            1000 * k) r
     WHERE r.product_id IS NOT NULL OR shop_router._category_not_found(category_id)
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

-- review_add and review_delete act for a customer: with the storefront's
-- session, below ("Scale-out: returns and routed sessions")

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

-- an unknown product: NULL from its shard, one node's SH006 from the
-- router (shop_router._product_not_found)
CREATE FUNCTION shop_router._stock_available(product_id bigint)
RETURNS int
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON hashint8(product_id);
    SELECT CASE WHEN $1 IS NULL OR EXISTS (SELECT FROM shop.product p WHERE p.product_id = $1)
                THEN shop.stock_available($1) END;
$$;

CREATE FUNCTION shop.stock_available(product_id bigint)
RETURNS int
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    n int;
BEGIN
    PERFORM shop_router._require(product_id, 'product_id');
    n := shop_router._stock_available(product_id);
    IF n IS NULL THEN
        PERFORM shop_router._product_not_found(product_id);
    END IF;
    RETURN n;
END
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

-- The learned search vocabulary (shop.search_vocab, docs/search.md),
-- learned once for the cluster and written to every shard as a replicated
-- table: each shard's candidates (shop._search_vocab_candidates: the
-- abbreviations with the number of its products that teach them, no
-- threshold; the behaviour pairs of its own prior), the abbreviations'
-- counts summed and the threshold (shop.vocab_min_products, the shards'
-- setting: the largest if they differ) applied once, both ways; the same
-- rows replace every shard's (shop._search_vocab_replace).  A search's
-- statistics then count the same expansions on every shard.
CREATE FUNCTION shop_router._search_vocab_candidates()
RETURNS TABLE (term text, expansion text, source text, products int, min_products int)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._search_vocab_candidates();
$$;

CREATE FUNCTION shop_router._search_vocab_replace(i_pairs jsonb)
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._search_vocab_replace($1);
$$;

CREATE FUNCTION shop.refresh_search_vocab()
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    WITH c AS MATERIALIZED (
        SELECT * FROM shop_router._search_vocab_candidates()
    ), pair AS (
        SELECT c.term, c.expansion, c.source, sum(c.products)::int AS products
          FROM c GROUP BY c.term, c.expansion, c.source
    )
    SELECT min(n)::int
      FROM shop_router._search_vocab_replace(coalesce((
               SELECT jsonb_agg(jsonb_build_array(x.term, x.expansion, p.source, p.products))
                 FROM pair p,
                      LATERAL (VALUES (p.term, p.expansion), (p.expansion, p.term)) x(term, expansion)
                WHERE p.source = 'behaviour' AND x.term = p.term
                   OR p.source = 'abbreviation' AND p.products >= (SELECT max(c.min_products) FROM c)),
               '[]')) n;
$$;
COMMENT ON FUNCTION shop.refresh_search_vocab() IS
'router: relearns the search vocabulary from every shard''s products and behaviour prior, the counts summed and the threshold applied once, and writes the same pairs to every shard; returns how many pairs each holds';
REVOKE EXECUTE ON FUNCTION shop.refresh_search_vocab(), shop_router._search_vocab_candidates(),
    shop_router._search_vocab_replace(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.refresh_search_vocab(), shop_router._search_vocab_candidates(),
    shop_router._search_vocab_replace(jsonb) TO shop_admin;

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
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT s.product_id, s.score, s.title, s.brand, s.price_cents, s.rating_avg, s.category_id,
           s.in_stock, s.image, s.typos, s.missing_words,
           p.rating_count, p.created_at, p.popularity
      FROM shop.search($1, $2, $3, $4, $5, $6) s
     CROSS JOIN LATERAL (SELECT p.rating_count, p.created_at, p.popularity FROM shop.product p
                          WHERE p.product_id = s.product_id OFFSET 0) p;
$$;

-- Global statistics (a DFS phase, docs/scale-out.md): every shard says
-- what its index knows of the query's words (shop.search_stats: its
-- document count, summed field lengths, largest popularity, the words
-- its vocabulary knows or lacks, every term they expand to with its typo
-- count and document frequency); the router sums them as one index of all
-- the shards would count them:
--   - a word is known (no typos) if some shard knows it, gets two typos
--     only if every shard lacks a term within one typo of it;
--   - a term's document frequency is the sum of the shards'; a word's is
--     that of its most frequent expansion without typos or, for a word
--     the cluster does not know and that has none, of its most frequent
--     typo expansion within its typo budget (ssscan.c's rule);
--   - documents and field lengths add up; the largest popularity is the
--     largest of the shards'.
-- The answer goes back to every shard with the search
-- (shop._search_routed), which scores with it instead of its own.
CREATE FUNCTION shop_router._search_dfs(i_query text, i_filters jsonb)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT shop.search_stats($1, $2);
$$;

-- Every shard's 40 best matches for the intent, scored with the cluster's
-- statistics (shop.search_stats given them), each with whether its title
-- names the intent's word among its first 3 words (named: the rule for a
-- line in shop._search_intent reads titles, which only the shard has)
CREATE FUNCTION shop_router._search_intent_top(i_query text, i_filters jsonb, i_global jsonb)
RETURNS TABLE (product_id bigint, missing int, typos int, score real, category_id bigint,
               price_cents bigint, head text, brand text, named boolean)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT (e ->> 0)::bigint AS product_id, (e ->> 1)::int AS missing, (e ->> 2)::int AS typos,
           (e ->> 3)::real AS score, (e ->> 4)::bigint AS category_id, (e ->> 5)::bigint AS price_cents,
           e ->> 6 AS head, e ->> 7 AS brand, (e ->> 8)::boolean AS named
      FROM jsonb_array_elements(shop.search_stats($1, $2, $3) -> 'intent_top') e;
$$;

-- The sums of the shards' statistics of a query's words (every shard's
-- shop.search_stats or shop._autocomplete_stats answer, one element of rs
-- each): the words without typos, with two typos, and "global" (document
-- count, field lengths, largest popularity, each word's frequency).
CREATE FUNCTION shop_router._dfs_sum(rs jsonb[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    WITH s AS MATERIALIZED (
        SELECT r FROM unnest(rs) r
    ), w AS (
        -- the query's words in order: the same on every shard
        SELECT t.i - 1 AS i, t.word
          FROM (SELECT s.r -> 'words' AS words FROM s LIMIT 1) x,
               jsonb_array_elements_text(x.words) WITH ORDINALITY AS t(word, i)
    ), known AS (
        SELECT DISTINCT v FROM s, jsonb_array_elements_text(s.r -> 'no_typos') v
    ), wide AS (
        SELECT v FROM s, jsonb_array_elements_text(s.r -> 'two_typos') v
         GROUP BY v HAVING count(*) = (SELECT count(*) FROM s)
    ), t AS MATERIALIZED (
        SELECT (e ->> 0)::int AS i, e ->> 1 AS term, (e ->> 2)::int AS typos, sum((e ->> 3)::bigint) AS df
          FROM s, jsonb_array_elements(s.r -> 'terms') e
         GROUP BY 1, 2, 3
    ), d AS (
        SELECT w.i, w.word IN (SELECT v FROM known) AS known,
               coalesce((SELECT max(t.df) FROM t WHERE t.i = w.i AND t.typos = 0), 0) AS exact,
               coalesce((SELECT max(t.df) FROM t
                          WHERE t.i = w.i AND t.typos > 0
                            AND t.typos <= CASE WHEN w.word IN (SELECT v FROM wide) THEN 2 ELSE 1 END), 0) AS typo
          FROM w
    )
    SELECT jsonb_build_object(
        'no_typos', coalesce((SELECT jsonb_agg(v ORDER BY v) FROM known), '[]'),
        'two_typos', coalesce((SELECT jsonb_agg(v ORDER BY v) FROM wide WHERE v NOT IN (SELECT v FROM known)), '[]'),
        'global', jsonb_build_object(
            'docs', (SELECT coalesce(sum((s.r ->> 'docs')::bigint), 0) FROM s),
            'lengths', (SELECT jsonb_build_array(coalesce(sum((s.r -> 'lengths' ->> 0)::float8), 0),
                                                 coalesce(sum((s.r -> 'lengths' ->> 1)::float8), 0),
                                                 coalesce(sum((s.r -> 'lengths' ->> 2)::float8), 0)) FROM s),
            'max_popularity', (SELECT coalesce(max((s.r ->> 'max_popularity')::float8), 0) FROM s),
            'df', coalesce((SELECT jsonb_agg(CASE WHEN d.known OR d.exact > 0 THEN d.exact ELSE d.typo END
                                             ORDER BY d.i) FROM d), '[]')));
$$;
COMMENT ON FUNCTION shop_router._dfs_sum(jsonb[]) IS
'router: the words and statistics of a query summed over the shards'' answers (the DFS phase)';

-- The cluster's intent of a query, cached as one node caches its own
-- (src/intentcache.c, shop.search_intent_cache): the intent only boosts
-- the ranking and depends on the query and the catalog, storefront
-- traffic repeats its head queries, and working it out is a second round
-- trip to every shard, each reading its 40 best matches.  The router keeps
-- the answers in an unlogged table shared by its backends, keyed by the
-- query, filters and read route (shop_router._read_cluster), for
-- shop_router.search_intent_cache seconds (default 60, as one node; 0
-- turns it off); at most 2048 of them, emptied when full, as one node's.  A catalog change reaches a cached intent within
-- that time.
-- Written and read only under the router owner's rights (issue 16,
-- hostile3): the intent is worked out by shop_router._search_global and
-- _search_global_at, SECURITY DEFINER functions that take nothing but the
-- query, its filters and whether to rank, ask the shards themselves and
-- store what they answered; no function the storefront may call stores a
-- value it gives (docs/security.md, "The router's search caches").
CREATE UNLOGGED TABLE shop_router.intent_cache (
    key        text PRIMARY KEY,
    at         timestamptz NOT NULL,
    intent_top jsonb NOT NULL
);
COMMENT ON TABLE shop_router.intent_cache IS
'the cluster''s intent (40 best matches) of recent queries, for shop_router.search_intent_cache seconds';

CREATE FUNCTION shop_router._intent_ttl()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => greatest(coalesce(nullif(current_setting('shop_router.search_intent_cache', true), '')::int,
                                                   60), 0))
$$;
COMMENT ON FUNCTION shop_router._intent_ttl() IS
'how long the router keeps a query''s intent (shop_router.search_intent_cache seconds, default 60, 0: not at all)';

CREATE FUNCTION shop_router._intent_get(i_key text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.intent_top FROM shop_router.intent_cache c
     WHERE c.key = i_key AND c.at > now() - shop_router._intent_ttl()
$$;

CREATE FUNCTION shop_router._intent_put(i_key text, i_intent_top jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        RETURN;
    END IF;
    IF (SELECT count(*) FROM (SELECT FROM shop_router.intent_cache LIMIT 2048) x) >= 2048 THEN
        DELETE FROM shop_router.intent_cache;
    END IF;
    INSERT INTO shop_router.intent_cache AS c (key, at, intent_top) VALUES (i_key, now(), i_intent_top)
    ON CONFLICT (key) DO UPDATE SET at = excluded.at, intent_top = excluded.intent_top;
END
$$;

-- the cluster's intent of a query (cached), added to its sums g.  Only
-- the owner's SECURITY DEFINER functions call it, with the sums they
-- summed from the shards' answers themselves: g decides the intent that
-- is kept, so no caller may give it (no grant).
CREATE FUNCTION shop_router._search_intent_for(query text, filters jsonb, g jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    k text;
    top jsonb;
    ttl interval := shop_router._intent_ttl();
BEGIN
    -- the intent (the product type and category the query means) from the
    -- cluster's 40 best matches, as one node reads its own 40, scored with
    -- the sums
    IF ttl > interval '0' AND length(query) + length(filters::text) < 512 THEN
        -- kept per read route, as the sums are (_search_global_at): the
        -- intent comes from the route's shards, and a lagging standby's
        -- 40 best matches are not the primaries' (issue 16, ha7: one
        -- route's intent was served to searches of every other; the key
        -- of shop_cluster is the key before the route)
        k := md5(concat_ws(chr(31), query, filters::text, nullif(shop_router._read_cluster(), 'shop_cluster')));
        top := shop_router._intent_get(k);
    END IF;
    IF top IS NULL THEN
        SELECT coalesce(jsonb_agg(jsonb_build_array(t.category_id, t.price_cents, t.head, t.brand, t.named)
                                  ORDER BY t.missing, t.typos, t.score DESC, t.product_id), '[]')
          INTO top
          FROM (SELECT * FROM shop_router._search_intent_top(query, filters, g) t
                 ORDER BY t.missing, t.typos, t.score DESC, t.product_id
                 LIMIT 40) t;
        IF k IS NOT NULL THEN
            PERFORM shop_router._intent_put(k, top);
        END IF;
    END IF;
    RETURN g || jsonb_build_object('intent_top', top);
END
$$;

-- The read route of the owner's rounds (_search_global, _search_global_at),
-- checked for the caller: inside them PL/Proxy connects as the owner, who
-- may use every server, so the login must have USAGE on the server its
-- shop_router.read_cluster names, as it must for its own calls (42501
-- otherwise, before any shard is asked).  SQL without SET, inlined as
-- _read_cluster is: about 3 us a call (a plpgsql function with a query on
-- pg_foreign_server was 27 us: 20,000 calls as web, 51 and 534 ms).
CREATE FUNCTION shop_router._search_route()
RETURNS text
LANGUAGE sql VOLATILE
AS $$
    SELECT CASE WHEN pg_catalog.has_server_privilege(session_user, shop_router._read_cluster(), 'USAGE')
                THEN shop_router._read_cluster()
                ELSE shop_router._raise(ARRAY['42501',
                                              pg_catalog.format('permission denied for foreign server %s',
                                                                shop_router._read_cluster()),
                                              'The search statistics are read from the cluster shop_router.read_cluster names.'])::text
           END
$$;

CREATE FUNCTION shop_router._search_global(query text, filters jsonb, intent boolean)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    g jsonb;
BEGIN
    PERFORM shop_router._search_route();
    SELECT shop_router._dfs_sum(array_agg(r)) INTO g FROM shop_router._search_dfs(query, filters) r;
    IF NOT intent THEN
        RETURN g;
    END IF;
    RETURN shop_router._search_intent_for(query, filters, g);
END
$$;
COMMENT ON FUNCTION shop_router._search_global(text, jsonb, boolean) IS
'router: the words and statistics of a search summed over every shard (the DFS phase), with intent also the cluster''s 40 best matches for the intent (cached shop_router.search_intent_cache seconds); as the router''s owner, who alone writes the cache';

-- The DFS sums of a query, kept (issue 16).  Asking every shard for its
-- statistics is one of a routed search's two rounds; the sums only change
-- when a shard's products, synonyms or categories do.  So the router keeps
-- them per query and filters, with every shard's version of its statistics
-- (shop._search_stats_at: a sequence each shard bumps for every row
-- written to those tables, once shop_router.cluster_setup() made it a
-- shard; before that it says its sums may not be kept), and sends the
-- versions with the page: a shard whose version is not among them
-- answers a row of NULLs in place of its page, the router raises 40001
-- (shop_router._search_refused), forgets the sums and runs the search
-- again with new ones.  A kept sum is thus never used once a shard
-- has changed: the answers are those of a search that asked.  Kept at
-- most shop_router.search_dfs_cache seconds (default 600; 0: not at all),
-- at most 4096 queries, emptied when full.  A shard says its statistics
-- may not be kept while a write is running on it, on a hot standby, or
-- outside READ COMMITTED.  Written and read only under the router
-- owner's rights, as the intent cache (shop_router._search_global_at).
CREATE UNLOGGED TABLE shop_router.dfs_cache (
    key      text PRIMARY KEY,
    at       timestamptz NOT NULL,
    global   jsonb NOT NULL,
    versions jsonb NOT NULL
);
COMMENT ON TABLE shop_router.dfs_cache IS
'the summed statistics (DFS phase) of recent queries with every shard''s version of them, for shop_router.search_dfs_cache seconds';

-- Shard setup: what a database needs to be a shard that a single node
-- does not (shop._shard_setup: the triggers that bump its search
-- statistics' version).  Run once by shop_admin after the cluster is
-- defined, and again after a shard was added or restored: a shard
-- without them answers every search, but the router never keeps its sums
-- (shop._search_stats_at says keep false).
CREATE FUNCTION shop_router._shard_setup()
RETURNS SETOF text[]
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._shard_setup();
$$;

CREATE FUNCTION shop_router.cluster_setup()
RETURNS int
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)::int FROM shop_router._shard_setup() t, unnest(t) x
$$;
COMMENT ON FUNCTION shop_router.cluster_setup() IS
'makes every partition of shop_cluster a shard (shop._shard_setup: the triggers of its search statistics'' version); returns how many triggers it created; run as shop_admin after defining the cluster or adding or restoring a shard';
REVOKE EXECUTE ON FUNCTION shop_router._shard_setup(), shop_router.cluster_setup() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._shard_setup(), shop_router.cluster_setup() TO shop_admin;

CREATE FUNCTION shop_router._search_dfs_at(i_query text, i_filters jsonb)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT shop._search_stats_at($1, $2);
$$;

CREATE FUNCTION shop_router._dfs_ttl()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => greatest(coalesce(nullif(current_setting('shop_router.search_dfs_cache', true), '')::int,
                                                   600), 0))
$$;
COMMENT ON FUNCTION shop_router._dfs_ttl() IS
'how long the router keeps a query''s summed statistics (shop_router.search_dfs_cache seconds, default 600, 0: not at all)';

CREATE FUNCTION shop_router._dfs_get(i_key text, OUT global jsonb, OUT versions jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.global, c.versions FROM shop_router.dfs_cache c
     WHERE c.key = i_key AND c.at > now() - shop_router._dfs_ttl()
$$;

CREATE FUNCTION shop_router._dfs_put(i_key text, i_global jsonb, i_versions jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        RETURN;
    END IF;
    IF i_versions IS NULL THEN
        DELETE FROM shop_router.dfs_cache WHERE key = i_key;
        RETURN;
    END IF;
    IF (SELECT count(*) FROM (SELECT FROM shop_router.dfs_cache LIMIT 4096) x) >= 4096 THEN
        DELETE FROM shop_router.dfs_cache;
    END IF;
    INSERT INTO shop_router.dfs_cache AS c (key, at, global, versions) VALUES (i_key, now(), i_global, i_versions)
    ON CONFLICT (key) DO UPDATE SET at = excluded.at, global = excluded.global, versions = excluded.versions;
END
$$;

-- _search_global with the sums kept: the sums (with the intent for a
-- ranked page) and the shards' versions they were summed at (NULL: not
-- kept, the page is not checked).  SECURITY DEFINER: it asks the shards
-- (as the router's owner: PL/Proxy's mapping FOR PUBLIC connects as
-- current_user) and keeps what they answered; the caller gives only the
-- query, its filters and whether to rank, which are the key.  Nothing of
-- the caller's session reaches the shards here: the statistics and the
-- intent are the catalog's, the same for every customer; the page round
-- (_search_page) runs as the caller with its session.
CREATE FUNCTION shop_router._search_global_at(query text, filters jsonb, intent boolean,
                                              OUT global jsonb, OUT versions jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    k text;
    rs jsonb[];
    route text := shop_router._search_route();
BEGIN
    IF shop_router._dfs_ttl() > interval '0' AND length(query) + length(filters::text) < 512 THEN
        -- kept per route: a lagging standby's versions are not the
        -- primaries' (the key of shop_cluster is the key before the route)
        k := md5(concat_ws(chr(31), query, filters::text, nullif(route, 'shop_cluster')));
        SELECT c.global, c.versions INTO global, versions FROM shop_router._dfs_get(k) c;
    END IF;
    IF global IS NULL THEN
        SELECT array_agg(r) INTO rs FROM shop_router._search_dfs_at(query, filters) r;
        global := shop_router._dfs_sum(rs);
        IF k IS NOT NULL AND (SELECT bool_and(coalesce((r ->> 'keep')::boolean, false)) FROM unnest(rs) r) THEN
            versions := (SELECT jsonb_agg(r ->> 'version') FROM unnest(rs) r);
            PERFORM shop_router._dfs_put(k, global, versions);
        END IF;
    END IF;
    IF intent THEN
        global := shop_router._search_intent_for(query, filters, global);
    END IF;
END
$$;
COMMENT ON FUNCTION shop_router._search_global_at(text, jsonb, boolean) IS
'router: shop_router._search_global with the summed statistics kept per query while no shard''s change (shop.search_version), with the shards'' versions';

-- forget a query's kept sums (a shard refused them).  SECURITY DEFINER:
-- it stores nothing, the next search asks the shards again.
CREATE FUNCTION shop_router._dfs_forget(query text, filters jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT shop_router._dfs_put(md5(concat_ws(chr(31), query, filters::text,
                                              nullif(shop_router._read_cluster(), 'shop_cluster'))), NULL, NULL)
$$;

-- The page round, checked against the versions of the kept sums.  A
-- shard whose version is not among them answers one row of NULLs (no
-- page) rather than an error (shop._search_version_check's 40001): an
-- error from one partition ends PL/Proxy's call while the other
-- partitions' answers are still unread, and PL/Proxy then drops and
-- remakes those connections on the backend's next call ("PL/Proxy:
-- dropping stale conn", issue 16).  Read whole, the answers leave every
-- connection ready; shop_router._search_refused raises the 40001 on the
-- router, where shop.search catches it.
CREATE FUNCTION shop_router._search_routed_at(i_query text, i_filters jsonb, i_sort text, i_lim int, i_off int,
                                              i_customer_id bigint, i_global jsonb, i_session text,
                                              i_versions jsonb)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int, rating_count int, created_at timestamptz, popularity real,
               error text[])
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    -- (a WITH inside FROM: PL/Proxy takes a SELECT only)
    SELECT * FROM (
        WITH z AS MATERIALIZED (
            SELECT z0.t, z0.ok,
                   coalesce(z0.se, CASE WHEN $6 IS NOT NULL THEN shop._customer_refusal($6 + 0 * length(z0.t)) END)
                   AS error
              FROM (SELECT s0.se, coalesce(left(s0.se::text, 0), '') AS t,
                           $9 IS NULL OR ($9 ? shop._search_version() AND shop._search_version_tracked()) AS ok
                      FROM (SELECT shop._session_use($8) AS se OFFSET 0) s0
                    OFFSET 0) z0
        )
        SELECT s.product_id, s.score, s.title, s.brand, s.price_cents, s.rating_avg, s.category_id,
               s.in_stock, s.image, s.typos, s.missing_words,
               p.rating_count, p.created_at, p.popularity, NULL::text[] AS error
          FROM z
         CROSS JOIN LATERAL shop._search_routed($1 || left(z.t, 0), $2, $3, $4, $5, $6, $7) s
         CROSS JOIN LATERAL (SELECT p.rating_count, p.created_at, p.popularity FROM shop.product p
                              WHERE p.product_id = s.product_id OFFSET 0) p
         WHERE z.ok AND z.error IS NULL
        UNION ALL
        -- a row of NULLs: the kept sums refused, or the customer (its error)
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, z.error
          FROM z
         WHERE NOT z.ok OR z.error IS NOT NULL) r;
$$;

-- a shard refused the kept sums (a row of NULLs from _search_routed_at),
-- or the customer of a personalized search (the row's error: 42501 of
-- another customer's id, 22023 of one below 1; shop._customer_refusal,
-- issue 16, ha6), raised here as one node raises it
CREATE FUNCTION shop_router._search_refused(error text[])
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);
    END IF;
    RAISE EXCEPTION 'the search statistics changed on a shard'
        USING ERRCODE = '40001', HINT = 'the router asks for them again';
END
$$;

-- One page of shop.search from every shard, scored with the cluster's
-- statistics, with the keys the router sorts by that shop.search does not
-- return.  Each row's keys are read by its primary key (the LATERAL
-- subquery, OFFSET 0 so that it stays one): joined, the planner takes the
-- function's 1000 estimated rows and hashes the whole of shop.product,
-- which was 6 of a shard's 7 ms per call at 5,000 products a shard, and
-- grows with the catalog.
-- A personalized page (customer_id) carries the storefront's session
-- (i_session; '' otherwise), which the shard sets for this statement and
-- checks as one node does ("Sessions" below).
CREATE FUNCTION shop_router._search_routed(i_query text, i_filters jsonb, i_sort text, i_lim int, i_off int,
                                           i_customer_id bigint, i_global jsonb, i_session text)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int, rating_count int, created_at timestamptz, popularity real)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT s.product_id, s.score, s.title, s.brand, s.price_cents, s.rating_avg, s.category_id,
           s.in_stock, s.image, s.typos, s.missing_words,
           p.rating_count, p.created_at, p.popularity
      FROM (SELECT set_config('shop.session', concat($8, left(shop.current_customer()::text, 0)), true) AS t) z
     CROSS JOIN LATERAL shop._search_routed($1 || left(z.t, 0), $2, $3, $4, $5, $6, $7) s
     CROSS JOIN LATERAL (SELECT p.rating_count, p.created_at, p.popularity FROM shop.product p
                          WHERE p.product_id = s.product_id OFFSET 0) p;
$$;

-- The merge: every shard returns its best lim + off rows, scored with the
-- cluster's statistics, so a score means the same on every shard; the
-- router sorts them as one node does and cuts the page: missing words,
-- then typos, then score, then product_id, the index's order on every node
-- (docs/search.md, "Order of equal scores"), so each shard's page holds
-- its part of the merged page, ties included.  A shard's
-- page is at most 1000 rows (shop._check_page), so a deeper page is read
-- in pages of 1000 from every shard.
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
    g jsonb;
    v jsonb;
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 OR off IS NULL OR off < 0 OR off > 100000 THEN
        -- out of range: one node's error (shop._search_prepare's first
        -- checks, in their order), raised here before any shard is called:
        -- a shard's error would leave every connection of the call to be
        -- remade (issue 16); a personalized page's token first, as one
        -- node refuses its SET (ha10)
        IF customer_id IS NOT NULL THEN
            PERFORM shop_router._session_refused_first();
        END IF;
        IF sort IS NULL THEN
            RAISE EXCEPTION 'argument % must not be null', 'sort'
                USING ERRCODE = 'null_value_not_allowed';
        END IF;
        PERFORM shop_router._check_lim(lim);
        RAISE EXCEPTION 'offset out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('off is %s; it must be between 0 and 100000.', coalesce(off::text, 'NULL'));
    END IF;
    -- every sort: the words without typos decide what matches; a ranked
    -- page also scores with the sums and takes the cluster's intent.  The
    -- sums may be kept ones (_search_global_at), with the shards' versions
    -- the page is checked against: a shard that changed since refuses the
    -- page (40001) and the search runs again with new sums.
    IF (query IS NULL OR filters IS NULL) AND customer_id IS NOT NULL THEN
        -- the statistics' phase refuses a NULL query (22004, a shard's
        -- error); a personalized page's token is refused before (ha10)
        PERFORM shop_router._session_refused_first();
    END IF;
    SELECT a.global, a.versions INTO g, v FROM shop_router._search_global_at(query, filters, sort = 'relevance') a;
    IF v IS NOT NULL THEN
        BEGIN
            RETURN QUERY
            SELECT r.product_id, r.score, r.title, r.brand, r.price_cents, r.rating_avg, r.category_id,
                   r.in_stock, r.image, r.typos, r.missing_words
              FROM shop_router._search_page(query, filters, sort, lim, off, customer_id, g, v) r;
            RETURN;
        EXCEPTION WHEN serialization_failure THEN
            -- the kept sums are stale: forget them, ask the shards
            PERFORM shop_router._dfs_forget(query, filters);
            g := shop_router._search_global(query, filters, sort = 'relevance');
        END;
    END IF;
    RETURN QUERY
    SELECT r.product_id, r.score, r.title, r.brand, r.price_cents, r.rating_avg, r.category_id,
           r.in_stock, r.image, r.typos, r.missing_words
      FROM shop_router._search_page(query, filters, sort, lim, off, customer_id, g, NULL) r;
END
$$;
COMMENT ON FUNCTION shop.search(text, jsonb, text, int, int, bigint) IS
'router: search every shard and merge their pages (docs/scale-out.md, "Search across shards")';

-- the merged page of shop.search, scored with the sums g; with versions,
-- every shard checks its statistics are still those (40001 if not).
-- PL/pgSQL, not SQL: its plan is made with the call's values (one
-- partition round of generate_series, not the 1,000 a parameter is
-- estimated at), so that the plan's cost stays under jit_above_cost; as
-- an SQL function, every search was JIT-compiled, 6 ms of router CPU.
CREATE FUNCTION shop_router._search_page(query text, filters jsonb, sort text, lim int, off int, customer_id bigint,
                                         g jsonb, versions jsonb)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    RETURN QUERY
    SELECT r.product_id, r.score, r.title, r.brand, r.price_cents, r.rating_avg, r.category_id,
           r.in_stock, r.image, r.typos, r.missing_words
      FROM generate_series(0, (lim + off - 1) / 1000) k
     CROSS JOIN LATERAL shop_router._search_routed_at(query, filters, sort, least(1000, lim + off - 1000 * k),
                                                      1000 * k, customer_id, g,
                                                      CASE WHEN customer_id IS NULL THEN ''
                                                           ELSE shop_router._session() END, versions) r
     WHERE r.product_id IS NOT NULL OR shop_router._search_refused(r.error)
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

CREATE FUNCTION shop_router._search_facets(i_query text, i_filters jsonb)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT shop.search_facets($1, $2);
$$;

-- the same, matching with the cluster's words without typos
CREATE FUNCTION shop_router._search_facets_routed(i_query text, i_filters jsonb, i_global jsonb)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT shop._search_facets_routed($1, $2, $3);
$$;

-- Facet counts are exact: every product is on one shard, so the counts of
-- a value add up, and every shard matches with the cluster's words without
-- typos (the DFS phase), as one node would.  Orders as on one node.
CREATE FUNCTION shop.search_facets(query text, filters jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    WITH f AS MATERIALIZED (
        SELECT r FROM shop_router._search_facets_routed(query, filters,
                                                        shop_router._search_global(query, filters, false)) r
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

-- autocomplete ranks with the cluster's statistics: below ("Scale-out:
-- returns and routed sessions")

CREATE FUNCTION shop_router._did_you_mean(i_query text)
RETURNS SETOF text
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT shop.did_you_mean($1);
$$;

-- Word by word, as one index of every shard would correct: a word some
-- shard holds stays; another gets the term within one typo (or, for a word
-- of 7 or 8 characters with none, two typos with the first letter right)
-- with the fewest typos, then the most documents summed over the shards,
-- then the first in byte order (shop._search_suggest_word's rule; it
-- compares one segment's counts, so one node whose index has several
-- segments can pick otherwise).  NULL when no word changes.
CREATE FUNCTION shop_router._did_you_mean_words(i_query text)
RETURNS TABLE (pos int, word text, known boolean, term text, typos int, df bigint, round int)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT w.pos, w.word, w.known, w.term, w.typos, w.df, w.round FROM shop._did_you_mean_words($1) w;
$$;

CREATE FUNCTION shop.did_you_mean(query text)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    WITH r AS MATERIALIZED (
        SELECT * FROM shop_router._did_you_mean_words(query)
    ), w AS (
        SELECT r.pos, min(r.word) AS word, bool_or(r.known) AS known FROM r GROUP BY r.pos
    ), c AS (
        SELECT r.pos, r.term, r.typos, r.round, sum(r.df) AS df
          FROM r WHERE r.term IS NOT NULL GROUP BY 1, 2, 3, 4
    ), f AS (
        SELECT w.pos, w.word,
               CASE WHEN NOT w.known THEN
                   (SELECT c.term FROM c
                     WHERE c.pos = w.pos
                       AND c.round = (SELECT min(c2.round) FROM c c2 WHERE c2.pos = w.pos)
                     ORDER BY c.typos, c.df DESC, c.term COLLATE "C"
                     LIMIT 1)
               END AS fix
          FROM w
    )
    SELECT CASE WHEN bool_or(f.fix IS NOT NULL)
                THEN string_agg(coalesce(f.fix, f.word), ' ' ORDER BY f.pos) END
      FROM f;
$$;
COMMENT ON FUNCTION shop.did_you_mean(text) IS
'router: the spelling correction of one index of every shard, word by word';

-- the bounded facets and attribute facets of shop 1.1: every shard gives
-- its full brand and category lists and, for the attributes keys (up to
-- 100) its matches hold most, up to 1000 values each; the router sums
-- them and cuts as one node cuts.  Exact as long as no shard's matches
-- hold more keys than asked for or a key more than 1000 values
-- (docs/scale-out.md).
CREATE FUNCTION shop_router._search_facets_top(i_query text, i_filters jsonb, i_global jsonb,
                                               i_attributes int)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT shop._search_facets_routed($1, $2, $3, $4);
$$;

CREATE FUNCTION shop.search_facets(query text, filters jsonb, top int, attributes int)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    lim int := coalesce(top, 2147483647);
    res jsonb;
BEGIN
    IF top IS NOT NULL AND (top < 1 OR top > 1000) THEN
        RAISE EXCEPTION 'top out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('top is %s; it must be between 1 and 1000, or NULL for every value.', top);
    END IF;
    IF attributes IS NULL OR attributes < 0 OR attributes > 100 THEN
        RAISE EXCEPTION 'attributes out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('attributes is %s; it must be between 0 and 100 (how many attribute keys to list).',
                                  coalesce(attributes::text, 'NULL'));
    END IF;
    WITH f AS MATERIALIZED (
        SELECT r FROM shop_router._search_facets_top(query, filters,
                                                     shop_router._search_global(query, filters, false),
                                                     CASE WHEN attributes > 0 THEN 100 ELSE 0 END) r
    ), b AS MATERIALIZED (
        SELECT x.v, x.n, row_number() OVER (ORDER BY x.n DESC, x.v) AS o
          FROM (SELECT e ->> 'value' AS v, sum((e ->> 'count')::bigint) AS n
                  FROM f, jsonb_array_elements(f.r -> 'brand') e GROUP BY 1) x
    ), c AS MATERIALIZED (
        SELECT x.id, x.name, x.n, row_number() OVER (ORDER BY x.n DESC, x.id) AS o
          FROM (SELECT (e ->> 'category_id')::bigint AS id, min(e ->> 'name') AS name,
                       sum((e ->> 'count')::bigint) AS n
                  FROM f, jsonb_array_elements(f.r -> 'category') e GROUP BY 1) x
    ), ak AS MATERIALIZED (
        SELECT x.k, x.n, row_number() OVER (ORDER BY x.n DESC, x.k COLLATE "C") AS o
          FROM (SELECT e ->> 'key' AS k, sum((e ->> 'count')::bigint) AS n
                  FROM f, jsonb_array_elements(f.r -> 'attributes') e GROUP BY 1) x
    ), av AS MATERIALIZED (
        SELECT x.k, x.val, x.n, row_number() OVER (PARTITION BY x.k ORDER BY x.n DESC, x.val) AS o
          FROM (SELECT e ->> 'key' AS k, v -> 'value' AS val, sum((v ->> 'count')::bigint) AS n
                  FROM f, jsonb_array_elements(f.r -> 'attributes') e,
                       jsonb_array_elements(e -> 'values') v
                 GROUP BY 1, 2) x
    ), buckets AS (
        SELECT e ->> 'bucket' AS bucket, (e ->> 'min_cents')::bigint AS lo,
               (e ->> 'max_cents')::bigint AS hi, sum((e ->> 'count')::bigint) AS n
          FROM f, jsonb_array_elements(f.r -> 'price') e GROUP BY 1, 2, 3
    )
    SELECT jsonb_build_object(
        'total', (SELECT coalesce(sum((f.r ->> 'total')::bigint), 0) FROM f),
        'brand', coalesce((SELECT jsonb_agg(jsonb_build_object('value', b.v, 'count', b.n) ORDER BY b.o)
                             FROM b WHERE b.o <= lim), '[]'),
        'brand_other', (SELECT jsonb_build_object('values', count(*), 'count', coalesce(sum(b.n), 0))
                          FROM b WHERE b.o > lim),
        'category', coalesce((SELECT jsonb_agg(jsonb_build_object('category_id', c.id, 'name', c.name,
                                                                  'count', c.n) ORDER BY c.o)
                                FROM c WHERE c.o <= lim), '[]'),
        'category_other', (SELECT jsonb_build_object('values', count(*), 'count', coalesce(sum(c.n), 0))
                             FROM c WHERE c.o > lim),
        'price', coalesce((SELECT jsonb_agg(jsonb_build_object('bucket', x.bucket, 'min_cents', x.lo,
                                                               'max_cents', x.hi, 'count', x.n) ORDER BY x.lo)
                             FROM buckets x), '[]'),
        'rating', coalesce((SELECT jsonb_agg(jsonb_build_object('min', x.m, 'count', x.n) ORDER BY x.m DESC)
                              FROM (SELECT (e ->> 'min')::int AS m, sum((e ->> 'count')::bigint) AS n
                                      FROM f, jsonb_array_elements(f.r -> 'rating') e GROUP BY 1) x), '[]'))
        || CASE WHEN attributes > 0 THEN jsonb_build_object(
            'attributes', coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'key', ak.k, 'count', ak.n,
                    'values', (SELECT coalesce(jsonb_agg(jsonb_build_object('value', av.val, 'count', av.n)
                                                         ORDER BY av.o), '[]')
                                 FROM av WHERE av.k = ak.k AND av.o <= least(lim, 1000)),
                    'other', jsonb_build_object(
                        'values', (SELECT count(*) FROM av WHERE av.k = ak.k AND av.o > least(lim, 1000)),
                        'count', ak.n - (SELECT coalesce(sum(av.n), 0) FROM av
                                          WHERE av.k = ak.k AND av.o <= least(lim, 1000))))
                    ORDER BY ak.o) FROM ak WHERE ak.o <= attributes), '[]'),
            'attributes_other', jsonb_build_object('keys', (SELECT count(*) FROM ak WHERE ak.o > attributes)))
           ELSE '{}' END
      INTO res;
    RETURN res;
END
$$;
COMMENT ON FUNCTION shop.search_facets(text, jsonb, int, int) IS
'router: the bounded facet counts and attribute facets of every shard, summed and cut as one node cuts';

CREATE FUNCTION shop.search_facets(query text, filters jsonb, top int)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    IF top IS NULL THEN
        RETURN shop.search_facets(query, filters);
    END IF;
    RETURN shop.search_facets(query, filters, top, 0);
END
$$;
COMMENT ON FUNCTION shop.search_facets(text, jsonb, int) IS
'router: the facet counts of every shard, summed, with the brand and category lists cut to the top values';

-- the DFS phase's functions, for both roles (the section below revokes
-- PUBLIC's right to every function)
-- The caches' own functions (_intent_get, _intent_put, _dfs_get,
-- _dfs_put) and _search_intent_for (its sums argument decides the kept
-- intent) are the router owner's alone: granted to both roles until
-- issue 16's review (hostile3), they let a storefront login plant a
-- query's intent or sums for every customer (test/cluster/caches.sh).
GRANT EXECUTE ON FUNCTION
    shop_router._search_dfs(text, jsonb), shop_router._dfs_sum(jsonb[]), shop_router._search_global(text, jsonb, boolean),
    shop_router._intent_ttl(),
    shop_router._search_intent_top(text, jsonb, jsonb), shop_router._did_you_mean_words(text),
    shop_router._search_routed(text, jsonb, text, int, int, bigint, jsonb, text),
    shop_router._search_dfs_at(text, jsonb), shop_router._dfs_ttl(),
    shop_router._search_global_at(text, jsonb, boolean),
    shop_router._dfs_forget(text, jsonb), shop_router._search_route(),
    shop_router._search_routed_at(text, jsonb, text, int, int, bigint, jsonb, text, jsonb),
    shop_router._search_refused(text[]),
    shop_router._search_page(text, jsonb, text, int, int, bigint, jsonb, jsonb),
    shop_router._search_facets_routed(text, jsonb, jsonb),
    shop_router._search_facets_top(text, jsonb, jsonb, int)
    TO shop_storefront, shop_admin;

------------------------------------------------------------------------------
-- Privileges: the router's grants mirror a node's (docs/security.md); the
-- shards check them again, since each call reaches them as its caller.
------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_router FROM PUBLIC;
GRANT USAGE ON SCHEMA shop, shop_router TO shop_storefront, shop_admin;
GRANT EXECUTE ON FUNCTION
    shop.product_get(bigint), shop_router._product_get(bigint), shop.category_descendants(bigint), shop.category_path(bigint),
    shop.browse(bigint, text, int, int), shop_router._browse(bigint, text, int, int),
    shop.stock_available(bigint), shop_router._stock_available(bigint), shop_router._product_not_found(bigint),
    shop_router._raise(text[]), shop_router._raised(text[]), shop_router._require(anyelement, text), shop_router._category_not_found(bigint),
    shop_router._check_lim(int), shop_router._check_customer(bigint),
    shop.search(text, jsonb, text, int, int, bigint), shop.search_facets(text, jsonb),
    shop.search_facets(text, jsonb, int), shop.search_facets(text, jsonb, int, int),
    shop.did_you_mean(text),
    shop_router._search(text, jsonb, text, int, int, bigint), shop_router._search_facets(text, jsonb),
    shop_router._did_you_mean(text)
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

------------------------------------------------------------------------------
-- Carts, checkout and orders: customer_id-keyed (issue 16)
------------------------------------------------------------------------------
-- A cart, and its customer's orders, payments and idempotency keys, live
-- on the customer's shard: partition hashint8(customer_id) & (n-1).  Carts
-- and orders are addressed by uuid, so the router makes ids that carry
-- their partition: the last 16 bits of the uuid are the customer's bucket
-- (hashint8(customer_id) & 0xffff; a guest cart a random bucket, its order
-- the cart's), and shop_router._uuid_part(id) routes a call by id alone,
-- for any power-of-two number of partitions up to 65,536.  Ids that did
-- not come from the router (one node's) do not name their shard.
--
-- Product data of cart lines is read on the product's shard at the call
-- (the price when a line is added; title, price, stock for cart_get): the
-- router fetches it and passes it to the cart's shard.  No copy of the
-- catalog is kept on customer shards (docs/scale-out.md says why).
--
-- Checkout is a saga of steps, each its own transaction on one shard
-- (docs/scale-out.md, "Checkout as a saga"); shop's side of each step is
-- the section "Scale-out: saga steps (issue 16)" of shop's update script.

-- the partition of a router-made cart or order id (0 for NULL: the shard
-- then refuses the NULL as one node does)
CREATE FUNCTION shop_router._uuid_part(id uuid)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(('x' || right(id::text, 4))::bit(16)::int, 0) $$;
COMMENT ON FUNCTION shop_router._uuid_part(uuid) IS
'the hash bucket a router-made cart or order id carries in its last 16 bits (RUN ON routes by it)';

-- a new uuid carrying bucket in its last 16 bits, time-ordered as shop's
-- own ids are (shop._new_id, issue 11: RFC 9562's version 7, 48 bits of
-- Unix milliseconds rounded down to a window of 65,536 ms), so that the
-- shards' b-trees that lead with cart and order ids take the router's
-- insertions in the leaves of the current window too; 58 random bits
-- (version 4's random bits, the version nibble made 7, the variant kept)
CREATE FUNCTION shop_router._uuid_for(bucket int)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint & ~65535::bigint), 12, '0')
            || '7' || substr(r, 14, 3) || substr(r, 17, 4) || substr(r, 21, 8)
            || lpad(to_hex(bucket & 65535), 4, '0'))::uuid
      FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS r) x
$$;
COMMENT ON FUNCTION shop_router._uuid_for(int) IS
'a time-ordered uuid (version 7 layout, as shop._new_id) whose last 16 bits are bucket & 0xffff (the partition it routes to)';

CREATE FUNCTION shop_router._pid_part(product_id bigint)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hashint8(coalesce(product_id, 0)) $$;
COMMENT ON FUNCTION shop_router._pid_part(bigint) IS 'the hash of a product id (0 for NULL), for RUN ON';

-- the saga's holds last this long when the router is gone (they expire and
-- each product shard's sweep takes them back); a paid order's holds are
-- kept until it ships.  shop_router.hold_ttl (a placeholder setting).
CREATE FUNCTION shop_router._hold_ttl()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(nullif(current_setting('shop_router.hold_ttl', true), ''), '15 minutes')::interval $$;
COMMENT ON FUNCTION shop_router._hold_ttl() IS
'the TTL of a checkout''s holds before its order is placed: setting shop_router.hold_ttl, default 15 minutes';

-- Sessions ------------------------------------------------------------------
-- The storefront's customer is its session token, the router's setting
-- shop.session (SET, SET LOCAL or shop.session_begin, as on one node).
-- The router cannot verify it (it has no secret); every call that acts for
-- a customer carries it to the shard, which sets it for that one statement
-- (PL/Proxy runs each remote statement as its own transaction) and
-- verifies it as one node does.  Nothing of a session stays on a shard
-- connection, which the router's backend keeps for its next caller.
-- Each remote statement asks shop._session_use(token) first (issue 16,
-- ha7): it sets the token for the transaction (as set_config(.., true))
-- and answers NULL, or answers the refusal one node's SET raises (28000:
-- forged, malformed, expired since) and sets nothing; the statement then
-- runs its step only on NULL and returns the refusal in its error column,
-- which the router raises (shop_router._raise): a shard's error would
-- cost the connection.  Calling shop's C function also loads the shard's
-- library before the setting is set (a value set before a library
-- defines its setting is only checked, with a WARNING, when it loads).
-- _session_verify (session_begin's, and _session_customer's) keeps its
-- own shape.
-- A refused (or NULL) session_begin and a session_end forget every
-- session set before them, as one node's do, whatever becomes of the
-- transaction: the router's library (shop_router.so, src/router/session.c)
-- defines shop.session, numbers each value set, and
-- shop_router._session_forget() voids the numbers handed out so far, in a
-- backend-local counter outside every transaction.  A rolled back SET, the
-- end of a SET LOCAL or a ROLLBACK TO SAVEPOINT can bring back only a
-- forgotten value, for which _session() (and SHOW) answer ''; a value set
-- again, even the same token, acts.  The library needs nothing of shop (no
-- tables, no secret).

CREATE FUNCTION shop_router._session()
RETURNS text
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'shop_router_session';
COMMENT ON FUNCTION shop_router._session() IS
'the storefront''s session token (the router''s setting shop.session), carried to the shards with each call; empty when none is set or a refused session_begin or a session_end forgot it';

CREATE FUNCTION shop_router._session_forget()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'shop_router_session_forget';
COMMENT ON FUNCTION shop_router._session_forget() IS
'forget every session token set so far in this backend, for good (no rollback brings one back): session_begin before it verifies, session_end';


-- a token the shards refuse (28000: forged, malformed, expired) is
-- answered as data by shop._session_refusal before the shard sets it
-- (issue 16, ha6): its error would cost the router's connection to
-- partition 0
CREATE FUNCTION shop_router._session_verify(i_session text, OUT customer bigint, OUT error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
    -- (a WITH inside FROM: PL/Proxy takes a SELECT only)
    SELECT * FROM (
        WITH e AS MATERIALIZED (SELECT shop._session_refusal($1) AS error)
        SELECT (SELECT shop.current_customer()
                  FROM (SELECT set_config('shop.session', concat($1, left(shop.current_customer()::text, 0)), true)) s)
               AS customer, e.error
          FROM e
         WHERE e.error IS NULL
        UNION ALL
        SELECT NULL, e.error FROM e WHERE e.error IS NOT NULL) r;
$$;

-- the customer of a token, verified on a shard (every shard has the
-- secret): current_customer()'s and the experiments' unit.  A token the
-- shards refuse (28000: set on the router with SET shop.session, forged,
-- malformed, expired since) is raised here from partition 0's answer
-- (shop_router._session_verify, issue 16, ha8): before, set_config raised
-- it on the shard, which cost the connection.
CREATE FUNCTION shop_router._session_customer(i_session text)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.customer
      FROM shop_router._session_verify(i_session) r
     WHERE r.error IS NULL OR shop_router._raised(r.error)
$$;

-- A call that carries the session's token and whose argument the router
-- refuses before any shard is called (orders_for's, cart_create's, a
-- personalized search's): one node refused the token first, at the SET
-- (28000), so the router asks partition 0 (_session_verify) before it
-- raises the argument's error, and raises the token's refusal instead
-- (issue 16, ha10: orders_for(NULL) under a forged token was 22004).
-- Only on that error path: a call whose arguments pass pays nothing.
CREATE FUNCTION shop_router._session_refused_first()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text := shop_router._session();
    r record;
BEGIN
    IF s <> '' THEN
        r := shop_router._session_verify(s);
        IF r.error IS NOT NULL THEN
            PERFORM shop_router._raise(r.error);
        END IF;
    END IF;
END
$$;

CREATE FUNCTION shop.session_begin(token text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    -- as on one node, every earlier session is forgotten first: a refused
    -- or NULL token leaves no customer, whatever becomes of the transaction
    PERFORM shop_router._session_forget();
    -- one node's checks: a NULL token (22004), then the token (28000)
    PERFORM shop_router._require(token, 'token');
    r := shop_router._session_verify(token);
    IF r.error IS NOT NULL THEN
        PERFORM shop_router._raise(r.error);
    END IF;
    IF r.customer IS NULL THEN
        RAISE EXCEPTION 'invalid session token' USING ERRCODE = 'invalid_authorization_specification',
            DETAIL = 'The token is not a shop session token.';
    END IF;
    PERFORM set_config('shop.session', token, false);
    RETURN r.customer;
END
$$;
COMMENT ON FUNCTION shop.session_begin(text) IS
'router: verify a session token on a shard (28000 when forged or expired) and act as its customer in this session';

CREATE FUNCTION shop.session_end()
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$ SELECT shop_router._session_forget(); SELECT set_config('shop.session', '', false); SELECT $$;
COMMENT ON FUNCTION shop.session_end() IS 'router: forget the customer of shop.session_begin';

CREATE FUNCTION shop.current_customer()
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT CASE WHEN shop_router._session() = '' THEN NULL
                ELSE shop_router._session_customer(shop_router._session()) END
$$;
COMMENT ON FUNCTION shop.current_customer() IS
'router: the customer of the session''s token, verified on a shard; NULL if none';

CREATE FUNCTION shop.session_token(customer_id bigint, ttl interval DEFAULT '1 day')
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
$$;

-- Carts ---------------------------------------------------------------------

-- another customer's cart (42501): the shard answers the refusal as data
-- (shop._customer_refusal, before the cart is made; issue 16, ha6)
CREATE FUNCTION shop_router._cart_create(i_session text, i_cart_id uuid, i_customer_id bigint,
                                         OUT id uuid, OUT error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    SELECT CASE WHEN e.error IS NULL THEN shop._cart_create_with_id($2, $3) END AS id, e.error
      FROM (SELECT coalesce(s.e, CASE WHEN $3 IS NOT NULL THEN shop._customer_refusal($3) END) AS error
              FROM (SELECT shop._session_use($1) AS e OFFSET 0) s
            OFFSET 0) e;
$$;

-- a customer id below 1 is refused here as one node refuses it first
-- (22023), no shard called; a token the shards refuse before it (ha10)
CREATE FUNCTION shop.cart_create(customer_id bigint DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF customer_id <= 0 THEN
        PERFORM shop_router._session_refused_first();
        PERFORM shop_router._check_customer(customer_id);
    END IF;
    r := shop_router._cart_create(shop_router._session(),
        shop_router._uuid_for(CASE WHEN customer_id IS NULL THEN (random() * 65535)::int
                                   ELSE hashint8(customer_id) END),
        customer_id);
    IF r.error IS NOT NULL THEN
        PERFORM shop_router._raise(r.error);
    END IF;
    RETURN r.id;
END
$$;
COMMENT ON FUNCTION shop.cart_create(bigint) IS
'router: open a cart on the customer''s shard (a guest cart on a random one); its id names the shard';

-- The cart's writes answer their refusals as data (shop's section
-- "Scale-out: the cart's refusals as answers", shop._cart_price_try and
-- shop._cart_write_try), raised here by shop_router._raise: a shard's
-- error would leave its connection to be remade (issue 16).  A refused
-- product (SH006, SH008) goes on to the cart's shard, which checks first
-- what one node checks before the product (the cart, qty) and answers one
-- node's error.

-- the current price of an active product, signed by the product's shard
-- for the cart's shard (for a storefront caller: shop._cart_add_signed
-- checks it); a refusal in error (SH006, SH008, 22004)
CREATE FUNCTION shop_router._cart_price(i_product_id bigint)
RETURNS TABLE (price_cents bigint, valid_until bigint, sig text, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_product_id);
    SELECT * FROM shop._cart_price_try($1);
$$;

-- one write of the cart on its shard (shop._cart_write_try): NULL when
-- done, else the refusal (with i_product_error: the refusal of the
-- product's shard, unless the cart's checks come first)
CREATE FUNCTION shop_router._cart_write(i_session text, i_op text, i_cart_id uuid, i_product_id bigint,
                                        i_qty int, i_price bigint, i_valid_until bigint, i_sig text,
                                        i_product_error text[])
RETURNS text[]
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    SELECT CASE WHEN s.e IS NULL THEN shop._cart_write_try($2, $3, $4, $5, $6, $7, $8, $9) ELSE s.e END
      FROM (SELECT shop._session_use($1) AS e OFFSET 0) s;
$$;

CREATE FUNCTION shop.cart_add(cart_id uuid, product_id bigint, qty int DEFAULT 1)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    p record;
    error text[];
BEGIN
    SELECT * INTO p FROM shop_router._cart_price(product_id);
    error := shop_router._cart_write(shop_router._session(), 'add', cart_id, product_id, qty,
                                     p.price_cents, p.valid_until, p.sig, p.error);
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);
    END IF;
END
$$;
COMMENT ON FUNCTION shop.cart_add(uuid, bigint, int) IS
'router: add a product to a cart at the price its own shard gives now';

CREATE FUNCTION shop.cart_set_qty(cart_id uuid, product_id bigint, qty int)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    error text[];
BEGIN
    error := shop_router._cart_write(shop_router._session(), 'set_qty', cart_id, product_id, qty,
                                     NULL, NULL, NULL, NULL);
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);
    END IF;
END
$$;

CREATE FUNCTION shop.cart_remove(cart_id uuid, product_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    error text[];
BEGIN
    error := shop_router._cart_write(shop_router._session(), 'remove', cart_id, product_id, NULL,
                                     NULL, NULL, NULL, NULL);
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);
    END IF;
END
$$;

CREATE FUNCTION shop.cart_save_for_later(cart_id uuid, product_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    error text[];
BEGIN
    error := shop_router._cart_write(shop_router._session(), 'save', cart_id, product_id, NULL,
                                     NULL, NULL, NULL, NULL);
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);
    END IF;
END
$$;

CREATE FUNCTION shop.cart_clear(cart_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    error text[];
BEGIN
    error := shop_router._cart_write(shop_router._session(), 'clear', cart_id, NULL, NULL,
                                     NULL, NULL, NULL, NULL);
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);
    END IF;
END
$$;

-- one node's order: the cart, a NULL product id, the product (active, on
-- its shard), the line
CREATE FUNCTION shop.cart_move_to_cart(cart_id uuid, product_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    product_error text[];
    error text[];
BEGIN
    IF product_id IS NOT NULL THEN
        SELECT p.error INTO product_error FROM shop_router._cart_price(product_id) p;   -- active, on its shard
    END IF;
    error := shop_router._cart_write(shop_router._session(), 'unsave', cart_id, product_id, NULL,
                                     NULL, NULL, NULL, product_error);
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);
    END IF;
END
$$;
COMMENT ON FUNCTION shop.cart_move_to_cart(uuid, bigint) IS
'router: move a saved-for-later line back into the cart (SH008 if the product is no longer active)';

-- an unknown cart: one row whose error cart_get raises (shop._cart_lines_try)
CREATE FUNCTION shop_router._cart_lines(i_session text, i_cart_id uuid)
RETURNS TABLE (customer_id bigint, updated_at timestamptz, expires_at timestamptz, product_id bigint,
               qty int, saved_for_later boolean, price_cents_at_add bigint, added_at timestamptz,
               error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    -- the session's token refused (28000) or the lines, from one shard
    -- function whose plans the shard keeps (issue 16, ha8)
    SELECT * FROM shop._cart_lines_use($1, $2);
$$;

-- the product side of lines, each product's shard asked once for all of its lines
CREATE FUNCTION shop_router._cart_products(i_product_ids bigint[])
RETURNS TABLE (product_id bigint, sku text, title text, image text, status text, price_cents bigint,
               available int)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT * FROM shop._cart_products($1);
$$;

-- the same cards for the read functions (product_get's and also_bought's
-- lists), from the read cluster; cart_get keeps the primaries' (above)
CREATE FUNCTION shop_router._product_cards(i_product_ids bigint[])
RETURNS TABLE (product_id bigint, sku text, title text, image text, status text, price_cents bigint,
               available int)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT * FROM shop._cart_products($1);
$$;
REVOKE ALL ON FUNCTION shop_router._product_cards(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._product_cards(bigint[]) TO shop_storefront, shop_admin;

-- cart_get as one node builds it, from the cart's shard and the products'
CREATE FUNCTION shop.cart_get(cart_id uuid)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    result jsonb;
    error text[];
BEGIN
    WITH h AS MATERIALIZED (
        SELECT * FROM shop_router._cart_lines(shop_router._session(), cart_get.cart_id)
    ), p AS MATERIALIZED (
        SELECT * FROM shop_router._cart_products(
            (SELECT coalesce(array_agg(h.product_id), '{}') FROM h WHERE h.product_id IS NOT NULL))
    ), line AS (
        SELECT l.product_id, l.qty, l.saved_for_later, l.price_cents_at_add, l.added_at,
               p.sku, p.title, p.image, p.status, p.price_cents, p.available AS avail
          FROM h l
          JOIN p ON p.product_id = l.product_id
    ), j AS (
        SELECT l.*, jsonb_build_object(
                   'product_id', l.product_id, 'sku', l.sku, 'title', l.title, 'image', l.image,
                   'qty', l.qty,
                   'unit_price_cents', l.price_cents,
                   'price_cents_at_add', l.price_cents_at_add,
                   'price_changed', l.price_cents <> l.price_cents_at_add,
                   'line_total_cents', l.price_cents * l.qty,
                   'product_status', l.status,
                   'available_qty', greatest(l.avail, 0),
                   'available', l.status = 'active' AND l.avail >= l.qty,
                   'added_at', l.added_at) AS doc
          FROM line l
    )
    SELECT jsonb_build_object(
               'cart_id', cart_get.cart_id,
               'customer_id', (SELECT h.customer_id FROM h LIMIT 1),
               'currency', coalesce(current_setting('shop.currency', true), 'USD'),
               'lines', coalesce(jsonb_agg(j.doc ORDER BY j.added_at, j.product_id)
                                 FILTER (WHERE NOT j.saved_for_later), '[]'),
               'saved_for_later', coalesce(jsonb_agg(j.doc ORDER BY j.added_at, j.product_id)
                                           FILTER (WHERE j.saved_for_later), '[]'),
               'item_count', coalesce(sum(j.qty) FILTER (WHERE NOT j.saved_for_later), 0),
               'subtotal_cents', coalesce(sum(j.price_cents * j.qty) FILTER (WHERE NOT j.saved_for_later), 0),
               'price_changed', coalesce(bool_or(j.price_cents <> j.price_cents_at_add)
                                         FILTER (WHERE NOT j.saved_for_later), false),
               'ready_for_checkout', coalesce(bool_and(j.status = 'active' AND j.avail >= j.qty)
                                              FILTER (WHERE NOT j.saved_for_later), false),
               'updated_at', (SELECT h.updated_at FROM h LIMIT 1),
               'expires_at', (SELECT h.expires_at FROM h LIMIT 1)),
           (SELECT h.error FROM h WHERE h.error IS NOT NULL LIMIT 1)
      INTO result, error
      FROM j;
    IF error IS NOT NULL THEN
        PERFORM shop_router._raise(error);   -- the cart's shard's refusal (SH006)
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION shop.cart_get(uuid) IS
'router: the cart as one node shows it; its lines from the cart''s shard, products, prices and stock from theirs';

-- Checkout: the saga ------------------------------------------------------

-- Each step's answer carries the signatures the next step needs when the
-- caller is the storefront (the section "Scale-out: storefront through the
-- router" of shop's update script); for shop_admin they are NULL.
-- a refusal (SH007 an empty cart, SH003, SH006, the arguments' 22004,
-- 22023, SH005) comes back as a row whose error checkout raises
-- (shop._saga_begin_try; issue 16, ha5)
CREATE FUNCTION shop_router._saga_begin(i_session text, i_order_id uuid, i_cart_id uuid, i_payment_token text,
                                        i_idempotency_key text, i_shipping_address jsonb)
RETURNS TABLE (saga_order_id uuid, saga_status text, saga_product_ids bigint[], saga_qtys int[],
               saga_sig text, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_cart_id);
    -- the session's token refused (28000) or the step's answer (ha9: one
    -- shard function, as cart_get's since ha8)
    SELECT * FROM shop._saga_begin_use($1, $2, $3, $4, $5, $6);
$$;

-- a product shard's refusal (SH001, SH008) comes back as a row whose
-- error checkout raises (shop._saga_reserve_try): a shard's error would
-- leave the connections of every partition of the call to be remade
CREATE FUNCTION shop_router._saga_reserve(i_order_id uuid, i_product_ids bigint[], i_qtys int[],
                                          i_ttl interval, i_saga_product_ids bigint[], i_saga_qtys int[],
                                          i_sig text)
RETURNS TABLE (product_id bigint, reservation_id uuid, status text, sku text, title text,
               price_cents bigint, held_sig text, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids, i_qtys;
    RUN ON hashint8(i_product_ids);
    SELECT * FROM shop._saga_reserve_try($1, $2, $3, $4, $5, $6, $7);
$$;

CREATE FUNCTION shop_router._saga_release_signed(i_order_id uuid, i_product_ids bigint[], i_sig text)
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT shop._saga_release_signed($1, $2, $3);
$$;

CREATE FUNCTION shop_router._saga_keep_signed(i_order_id uuid, i_product_ids bigint[], i_sig text)
RETURNS TABLE (product_id bigint, kept_sig text)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT * FROM shop._saga_keep_signed($1, $2, $3);
$$;

CREATE FUNCTION shop_router._saga_release(i_order_id uuid, i_product_ids bigint[], i_paid boolean)
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT shop._saga_release($1, $2, $3);
$$;

CREATE FUNCTION shop_router._saga_keep(i_order_id uuid, i_product_ids bigint[])
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT shop._saga_keep($1, $2);
$$;

CREATE FUNCTION shop_router._saga_commit(i_order_id uuid, i_product_ids bigint[])
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT shop._saga_commit($1, $2);
$$;

-- a refusal (SH004 a declined payment) comes back as a row whose error
-- checkout raises (shop._saga_place_try; issue 16, ha5)
CREATE FUNCTION shop_router._saga_place(i_session text, i_order_id uuid, i_product_ids bigint[], i_skus text[],
                                        i_titles text[], i_prices bigint[], i_qtys int[],
                                        i_payment_token text, i_shipping_address jsonb, i_held_sigs text[])
RETURNS TABLE (order_status text, keep_sig text, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_order_id);
    -- the session's token refused (28000) or the step's answer (ha9)
    SELECT * FROM shop._saga_place_use($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);
$$;

CREATE FUNCTION shop_router._saga_finish(i_session text, i_order_id uuid, i_status text,
                                         i_kept_product_ids bigint[], i_kept_sigs text[])
RETURNS TABLE (moved boolean, release_sig text, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_order_id);
    -- the session's token refused (28000) or the step's answer (ha9)
    SELECT * FROM shop._saga_finish_use($1, $2, $3, $4, $5);
$$;

CREATE FUNCTION shop_router._saga_get(i_order_id uuid)
RETURNS TABLE (status text, stock text, order_status text, product_ids bigint[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_order_id);
    SELECT * FROM shop._saga_get($1);
$$;

CREATE FUNCTION shop_router._saga_stock(i_order_id uuid, i_stock text)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_order_id);
    SELECT shop._saga_stock($1, $2);
$$;

CREATE FUNCTION shop_router._saga_open(i_older_than interval)
RETURNS TABLE (order_id uuid, status text, stock text, order_status text, product_ids bigint[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._saga_open($1);
$$;

CREATE FUNCTION shop_router._saga_held(i_order_id uuid, i_product_ids bigint[])
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT shop._saga_held($1, $2);
$$;

-- Compensation: first the saga is marked failed on the customer shard
-- (only a started one: from then on it can never be placed, and its
-- idempotency key is given back), then every hold it may have made is
-- released (by the ids derived from the order: idempotent, and a no-op on
-- a shard the saga never reached).  A saga that was placed meanwhile (say
-- the router lost its connection after the place step committed) is not
-- compensated: its retry confirms it.
CREATE FUNCTION shop_router._saga_compensate(order_id uuid, product_ids bigint[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    f record;
BEGIN
    SELECT * INTO f FROM shop_router._saga_finish(shop_router._session(), order_id, 'failed', NULL, NULL);
    IF f.error IS NOT NULL THEN
        PERFORM shop_router._raise(f.error);
    END IF;
    IF f.moved THEN
        PERFORM count(*) FROM shop_router._saga_release_signed(order_id, product_ids, f.release_sig);
    END IF;
END
$$;
COMMENT ON FUNCTION shop_router._saga_compensate(uuid, bigint[]) IS
'release a saga''s holds on every product shard and mark it failed (its key is given back)';

-- Step 4 and the end: a paid order's holds are kept until it ships.  If
-- some lapsed before (the saga outlived shop_router.hold_ttl), the order
-- cannot be filled: it is cancelled (its payment voided), what is held is
-- released, and the checkout fails with SH001, as one node's
-- payment_confirm does when the holds of a pending order are gone.
CREATE FUNCTION shop_router._saga_confirm(order_id uuid, product_ids bigint[], order_status text,
                                          keep_sig text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    kept int := 0;
    kept_pids bigint[];
    kept_sigs text[];
BEGIN
    IF order_status IN ('paid', 'fulfilling') THEN
        SELECT count(*), array_agg(k.product_id), array_agg(k.kept_sig) INTO kept, kept_pids, kept_sigs
          FROM shop_router._saga_keep_signed(order_id, product_ids, keep_sig) k;
        IF kept < cardinality(product_ids) THEN
            -- cancelled first, then the saga is over; only shop_admin may
            -- cancel: a storefront's checkout leaves the saga placed, and
            -- saga_recover cancels it
            BEGIN
                PERFORM shop.order_transition(order_id, 'cancelled',
                                              'the stock holds of the checkout lapsed before it was confirmed');
                PERFORM shop_router._raise(f.error)
                   FROM shop_router._saga_finish(shop_router._session(), order_id, 'done', NULL, NULL) f
                  WHERE f.error IS NOT NULL;
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;
            END;
            RAISE EXCEPTION 'stock holds of the order are gone' USING ERRCODE = 'SH001',
                DETAIL = format('%s of the %s stock holds of order %s lapsed before the checkout was confirmed; the order was cancelled and its payment voided.',
                                cardinality(product_ids) - kept, cardinality(product_ids), order_id),
                HINT = 'Check out again with a new idempotency key.';
        END IF;
    END IF;
    PERFORM shop_router._raise(f.error)
       FROM shop_router._saga_finish(shop_router._session(), order_id, 'done', kept_pids, kept_sigs) f
      WHERE f.error IS NOT NULL;
END
$$;
COMMENT ON FUNCTION shop_router._saga_confirm(uuid, bigint[], text, text) IS
'checkout step 4: a paid order''s holds never expire now (its order is cancelled if they lapsed), the saga is done';

-- shop.checkout through the router (docs/scale-out.md, "Checkout as a
-- saga").  Steps: 1 begin (customer shard), 2 reserve (product shards, all
-- at once), 3 place (customer shard), 4 confirm (product shards), each its
-- own transaction.  A failure in 2 or 3 compensates.  A repeat with the
-- same key resumes the saga where it stands: done returns the order,
-- placed confirms it, started reserves again (nothing is held twice) and
-- places; a started saga whose holds lapsed or were released is
-- compensated and the checkout starts over under the same key, once.
--
-- shop_router.saga_test_stop = claim | reserve | place (tests only) makes
-- the router stop after that step as if it had died there: an error, and
-- nothing after it runs, no compensation either; place_lost makes the
-- place step's answer fail after it committed, as a lost connection
-- would (the router compensates, which must not undo a placed order).
CREATE FUNCTION shop.checkout(cart_id uuid, payment_token text, idempotency_key text,
                              shipping_address jsonb DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    stop text := coalesce(current_setting('shop_router.saga_test_stop', true), '');
    b record;
    oid uuid;
    pids bigint[];
    skus text[];
    titles text[];
    prices bigint[];
    qtys int[];
    sigs text[];
    lapsed boolean;
    pl record;
    crashed boolean := false;
    refusal text[];
    sess text := shop_router._session();
BEGIN
    FOR attempt IN 1..2 LOOP
        SELECT * INTO b FROM shop_router._saga_begin(sess, shop_router._uuid_for(shop_router._uuid_part(cart_id)),
                                                     cart_id, payment_token, idempotency_key,
                                                     shipping_address);
        IF b.error IS NOT NULL THEN
            -- the cart's shard's refusal: nothing was claimed
            PERFORM shop_router._raise(b.error);
        END IF;
        oid := b.saga_order_id;
        IF b.saga_status = 'done' THEN
            RETURN oid;
        END IF;
        IF stop = 'claim' THEN
            RAISE EXCEPTION 'shop_router.saga_test_stop: the router stops after step %', stop;
        END IF;
        IF b.saga_status = 'placed' THEN
            -- a repeat of the place step answers the order's status
            SELECT * INTO pl FROM shop_router._saga_place(sess, oid, NULL, NULL, NULL, NULL, NULL,
                                                          payment_token, shipping_address, NULL);
            IF pl.error IS NOT NULL THEN
                PERFORM shop_router._raise(pl.error);
            END IF;
            PERFORM shop_router._saga_confirm(oid, b.saga_product_ids, pl.order_status, pl.keep_sig);
            RETURN oid;
        END IF;
        BEGIN
            WITH r AS MATERIALIZED (
                SELECT * FROM shop_router._saga_reserve(oid, b.saga_product_ids, b.saga_qtys, shop_router._hold_ttl(),
                                                        b.saga_product_ids, b.saga_qtys, b.saga_sig)
            )
            SELECT array_agg(r.product_id ORDER BY r.product_id) FILTER (WHERE r.error IS NULL),
                   array_agg(r.sku ORDER BY r.product_id) FILTER (WHERE r.error IS NULL),
                   array_agg(r.title ORDER BY r.product_id) FILTER (WHERE r.error IS NULL),
                   array_agg(r.price_cents ORDER BY r.product_id) FILTER (WHERE r.error IS NULL),
                   array_agg(r.held_sig ORDER BY r.product_id) FILTER (WHERE r.error IS NULL),
                   bool_or(r.status IS DISTINCT FROM 'held') FILTER (WHERE r.error IS NULL),
                   (SELECT e.error FROM r e WHERE e.error IS NOT NULL ORDER BY e.product_id LIMIT 1)
              INTO pids, skus, titles, prices, sigs, lapsed, refusal
              FROM r;
            IF refusal IS NOT NULL THEN
                -- a product shard's refusal (the least product's: one
                -- node holds in product order); compensated below
                PERFORM shop_router._raise(refusal);
            END IF;
            IF pids IS DISTINCT FROM b.saga_product_ids THEN
                -- a product vanished from its shard between the steps
                RAISE EXCEPTION 'product unavailable' USING ERRCODE = 'SH008',
                    DETAIL = format('Products %s of order %s are no longer in the catalog.',
                                    (SELECT array_agg(x) FROM unnest(b.saga_product_ids) x
                                      WHERE x <> ALL (coalesce(pids, '{}'))), oid);
            END IF;
            IF lapsed THEN
                -- an earlier attempt's holds lapsed or were released: that
                -- saga is over; start a new one under the same key
                PERFORM shop_router._saga_compensate(oid, b.saga_product_ids);
                IF attempt = 1 THEN
                    CONTINUE;
                END IF;
                RAISE EXCEPTION 'checkout could not hold its stock' USING ERRCODE = 'SH001',
                    DETAIL = format('The holds of order %s were released before it was placed.', oid);
            END IF;
            IF stop = 'reserve' THEN
                crashed := true;
                RAISE EXCEPTION 'shop_router.saga_test_stop: the router stops after step %', stop;
            END IF;
            SELECT array_agg(q ORDER BY p) INTO qtys FROM unnest(b.saga_product_ids, b.saga_qtys) u(p, q);
            SELECT * INTO pl FROM shop_router._saga_place(sess, oid, pids, skus, titles, prices, qtys,
                                                          payment_token, shipping_address, sigs);
            IF pl.error IS NOT NULL THEN
                -- the customer's shard's refusal (SH004): compensated below
                PERFORM shop_router._raise(pl.error);
            END IF;
            IF stop = 'place_lost' THEN
                -- the place step committed, but its answer never came back
                RAISE EXCEPTION 'shop_router.saga_test_stop: the answer of step place is lost';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            IF NOT crashed THEN
                PERFORM shop_router._saga_compensate(oid, b.saga_product_ids);
            END IF;
            RAISE;
        END;
        IF stop = 'place' THEN
            RAISE EXCEPTION 'shop_router.saga_test_stop: the router stops after step %', stop;
        END IF;
        PERFORM shop_router._saga_confirm(oid, pids, pl.order_status, pl.keep_sig);
        RETURN oid;
    END LOOP;
    RETURN oid;    -- not reached
END
$$;
COMMENT ON FUNCTION shop.checkout(uuid, text, text, jsonb) IS
'router: checkout as a saga over the customer''s and the products'' shards; a retry with the same key completes or compensates (docs/scale-out.md)';

-- Orders --------------------------------------------------------------------

-- an unknown order: its error as data (shop._order_get_try), raised by
-- order_get
CREATE FUNCTION shop_router._order_get(i_session text, i_order_id uuid, OUT doc jsonb, OUT error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_order_id);
    -- the session's token refused (28000) or the order, from one shard
    -- function whose plans the shard keeps (issue 16, ha8)
    SELECT * FROM shop._order_get_use($1, $2);
$$;

CREATE FUNCTION shop.order_get(order_id uuid)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := shop_router._order_get(shop_router._session(), order_id);
    IF r.error IS NOT NULL THEN
        PERFORM shop_router._raise(r.error);
    END IF;
    RETURN r.doc;
END
$$;
COMMENT ON FUNCTION shop.order_get(uuid) IS 'router: an order, read on its customer''s shard';

-- another customer's orders (42501): the customer's shard answers the
-- refusal as data (shop._customer_refusal, before orders_for is called;
-- issue 16, ha6), raised by orders_for
CREATE FUNCTION shop_router._orders_for(i_session text, i_customer_id bigint, i_lim int, i_before timestamptz)
RETURNS TABLE (order_id uuid, status text, total_cents bigint, item_count bigint,
               needs_review boolean, created_at timestamptz, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_customer_id);
    -- (a WITH inside FROM: PL/Proxy takes a SELECT only)
    SELECT * FROM (
        WITH e AS MATERIALIZED (
            SELECT coalesce(s.e, shop._customer_refusal($2)) AS error
              FROM (SELECT shop._session_use($1) AS e OFFSET 0) s
        )
        SELECT (o).*, NULL::text[] AS error
          FROM (SELECT shop.orders_for($2, $3, $4) AS o FROM e WHERE e.error IS NULL OFFSET 0) x
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, e.error FROM e WHERE e.error IS NOT NULL) r;
$$;

-- one node's checks of the arguments, in its order (customer_id, lim,
-- then the customer's own), here before any shard is called: a refusal
-- of the shard would leave its connection to be remade (issue 16, ha5);
-- a token the shards refuse before them, as one node refuses its SET
-- (ha10: orders_for(NULL) under a forged token was 22004, one node 28000)
CREATE FUNCTION shop.orders_for(customer_id bigint, lim int DEFAULT 20, before timestamptz DEFAULT NULL)
RETURNS TABLE (order_id uuid, status text, total_cents bigint, item_count bigint,
               needs_review boolean, created_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    IF customer_id IS NULL OR lim IS NULL OR lim < 1 OR lim > 1000 OR customer_id <= 0 THEN
        -- the session's token refused first, as one node refuses its SET
        PERFORM shop_router._session_refused_first();
        PERFORM shop_router._require(customer_id, 'customer_id');
        PERFORM shop_router._check_lim(lim);
        PERFORM shop_router._check_customer(customer_id);
    END IF;
    RETURN QUERY
    SELECT r.order_id, r.status, r.total_cents, r.item_count, r.needs_review, r.created_at
      FROM shop_router._orders_for(shop_router._session(), orders_for.customer_id, lim, before) r
     WHERE r.error IS NULL OR NOT shop_router._raised(r.error);
END
$$;
COMMENT ON FUNCTION shop.orders_for(bigint, int, timestamptz) IS
'router: a customer''s orders, newest first, read on the customer''s shard';

-- payment methods live on the customer's shard
CREATE FUNCTION shop_router._payment_method_add(i_session text, i_customer_id bigint, i_token text,
                                                i_brand text, i_last4 text, i_exp_month int, i_exp_year int)
RETURNS TABLE (id uuid, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_customer_id);
    -- (the try answers the token's refusal, s.e, when there is one)
    SELECT (t).* FROM (SELECT shop._payment_method_add_try(s.e, $2, $3, $4, $5, $6, $7) AS t
                         FROM (SELECT shop._session_use($1) AS e OFFSET 0) s OFFSET 0) x;
$$;

CREATE FUNCTION shop.payment_method_add(customer_id bigint, token text, brand text,
                                        last4 text, exp_month int, exp_year int)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT r.id
      FROM shop_router._payment_method_add(shop_router._session(), payment_method_add.customer_id,
                                           token, brand, last4, exp_month, exp_year) r
     WHERE r.error IS NULL OR shop_router._raised(r.error)
$$;
COMMENT ON FUNCTION shop.payment_method_add(bigint, text, text, text, int, int) IS
'router: save a provider token for a customer, on the customer''s shard';

-- After a transition on the customer shard, the order's stock follows on
-- the product shards: shipped commits the holds, cancelled releases them,
-- returned puts the units back (shop_router._restock); then the customer
-- shard records it.  Idempotent: shop_router.saga_recover repeats it for
-- an order a router left behind.
CREATE FUNCTION shop_router._settle(order_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    SELECT * INTO g FROM shop_router._saga_get(order_id);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF g.stock = 'held' AND g.order_status IN ('shipped', 'delivered', 'returned', 'refunded') THEN
        PERFORM count(*) FROM shop_router._saga_commit(order_id, g.product_ids);
        PERFORM shop_router._saga_stock(order_id, 'committed');
        g.stock := 'committed';
    ELSIF g.stock = 'held' AND g.order_status = 'cancelled' THEN
        PERFORM count(*) FROM shop_router._saga_release(order_id, g.product_ids, true);
        PERFORM shop_router._saga_stock(order_id, 'released');
    END IF;
    -- shipped, then returned (refunded after a return: a cancelled order's
    -- stock was released, never committed)
    IF g.stock = 'committed' AND g.order_status IN ('returned', 'refunded') THEN
        PERFORM shop_router._restock(order_id);
    END IF;
END
$$;
COMMENT ON FUNCTION shop_router._settle(uuid) IS
'carry an order''s status to its stock on the product shards: shipped commits, cancelled releases, returned restocks';

CREATE FUNCTION shop_router._order_transition(order_id uuid, to_status text, note text)
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(order_id);
    TARGET shop.order_transition;
$$;

CREATE FUNCTION shop.order_transition(order_id uuid, to_status text, note text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r text;
BEGIN
    IF to_status = 'paid' THEN
        -- a pending order's holds must still be there, and now stay
        PERFORM shop_router._keep_for_payment(order_id);
    END IF;
    r := shop_router._order_transition(order_id, to_status, note);
    IF to_status = 'returned' AND current_setting('shop_router.saga_test_stop', true) = 'return' THEN
        RAISE EXCEPTION 'shop_router.saga_test_stop: the router stops after the order moved to returned';
    END IF;
    PERFORM shop_router._settle(order_id);
    RETURN r;
END
$$;
COMMENT ON FUNCTION shop.order_transition(uuid, text, text) IS
'router: move an order along the state machine on its shard; ship commits and cancel releases its holds on the product shards, a return puts its units back there';

CREATE FUNCTION shop_router._order_ship(order_id uuid, carrier text, tracking_number text)
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(order_id);
    TARGET shop.order_ship;
$$;

CREATE FUNCTION shop.order_ship(order_id uuid, carrier text, tracking_number text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r text;
BEGIN
    r := shop_router._order_ship(order_id, carrier, tracking_number);
    PERFORM shop_router._settle(order_id);
    RETURN r;
END
$$;
COMMENT ON FUNCTION shop.order_ship(uuid, text, text) IS
'router: ship an order on its shard and commit its holds on the product shards';

CREATE FUNCTION shop_router._order_review(order_id uuid, approve boolean)
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(order_id);
    TARGET shop.order_review;
$$;

CREATE FUNCTION shop.order_review(order_id uuid, approve boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r text;
BEGIN
    r := shop_router._order_review(order_id, approve);
    PERFORM shop_router._settle(order_id);
    RETURN r;
END
$$;
COMMENT ON FUNCTION shop.order_review(uuid, boolean) IS
'router: decide a fraud review on the order''s shard; a rejection releases its holds on the product shards';

-- a pending (gateway) order becomes paid: its holds must be there and are
-- kept until it ships (SH001 as on one node when they lapsed)
CREATE FUNCTION shop_router._keep_for_payment(order_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    g record;
    kept int;
BEGIN
    SELECT * INTO g FROM shop_router._saga_get(order_id);
    IF NOT FOUND OR g.order_status IS DISTINCT FROM 'pending' THEN
        RETURN;    -- the shard says what is wrong, if anything
    END IF;
    SELECT coalesce(sum(k), 0) INTO kept FROM shop_router._saga_keep(order_id, g.product_ids) k;
    IF kept < cardinality(g.product_ids) THEN
        RAISE EXCEPTION 'stock holds of the order are gone' USING ERRCODE = 'SH001',
            DETAIL = format('The stock holds of order %s expired or were released before payment.', order_id),
            HINT = 'Void or refund the payment at the gateway, and cancel the order.';
    END IF;
END
$$;
COMMENT ON FUNCTION shop_router._keep_for_payment(uuid) IS
'before a pending order is paid: its holds on the product shards stay until it ships (SH001 if they lapsed)';

CREATE FUNCTION shop_router._payment_confirm(order_id uuid, provider_ref text)
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(order_id);
    TARGET shop.payment_confirm;
$$;

CREATE FUNCTION shop.payment_confirm(order_id uuid, provider_ref text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop_router._keep_for_payment(order_id);
    RETURN shop_router._payment_confirm(order_id, provider_ref);
END
$$;
COMMENT ON FUNCTION shop.payment_confirm(uuid, text) IS
'router: the gateway captured a pending order''s payment: its holds are kept on the product shards, then it is paid on its shard';

CREATE FUNCTION shop_router._payment_fail(order_id uuid, reason text)
RETURNS text
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(order_id);
    TARGET shop.payment_fail;
$$;

CREATE FUNCTION shop.payment_fail(order_id uuid, reason text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r text;
BEGIN
    r := shop_router._payment_fail(order_id, reason);
    PERFORM shop_router._settle(order_id);
    RETURN r;
END
$$;
COMMENT ON FUNCTION shop.payment_fail(uuid, text) IS
'router: the gateway declined a pending order''s payment: cancelled on its shard, its holds released on the product shards';

-- Recovery: what routers that died left behind, older than older_than
-- (longer than a checkout takes): a started saga is compensated (its
-- holds released, its key given back), a placed one confirmed, an order
-- whose stock did not follow its status settled, and a pending order
-- whose holds lapsed cancelled (the customer shard's sweep cannot see
-- holds on other shards).  Run it every minute or
-- so on one router (pg_cron, or the application's scheduler), well within
-- shop_router.hold_ttl.  Returns how many it finished.
CREATE FUNCTION shop_router.saga_recover(older_than interval DEFAULT '1 minute')
RETURNS int
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    s record;
    n int := 0;
BEGIN
    FOR s IN SELECT * FROM shop_router._saga_open(older_than) LOOP
        BEGIN
            IF s.status = 'started' THEN
                PERFORM shop_router._saga_compensate(s.order_id, s.product_ids);
            ELSIF s.status = 'placed' THEN
                PERFORM shop_router._saga_confirm(s.order_id, s.product_ids, s.order_status);
            ELSIF s.order_status = 'pending' THEN
                -- waiting for its gateway: cancelled once its holds lapsed,
                -- as shop.sweep() does on one node
                IF (SELECT coalesce(sum(h), 0) FROM shop_router._saga_held(s.order_id, s.product_ids) h)
                   >= cardinality(s.product_ids) THEN
                    CONTINUE;
                END IF;
                PERFORM shop.order_transition(s.order_id, 'cancelled', 'stock holds expired before payment');
            ELSE
                PERFORM shop_router._settle(s.order_id);
            END IF;
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN
            -- an order whose holds lapsed is cancelled by _saga_confirm
            -- before it raises; any other failure is retried next time
            RAISE WARNING 'saga of order % not recovered: %', s.order_id, SQLERRM;
        END;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION shop_router.saga_recover(interval) IS
'finish what routers left behind: compensate started sagas, confirm placed ones, settle orders whose holds lag their status; returns how many';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_router FROM PUBLIC;
-- The storefront's calls and every router function they use.  The router
-- is not where privileges are checked: each call reaches the shards as its
-- caller, with its session, and the shards refuse what one node refuses
-- (the internal steps a storefront may reach check signatures there).
GRANT EXECUTE ON FUNCTION
    shop.session_begin(text), shop.session_end(), shop.current_customer(),
    shop_router._session(), shop_router._session_forget(), shop_router._session_customer(text),
    shop_router._session_verify(text), shop_router._session_refused_first(),
    shop.cart_create(bigint), shop.cart_add(uuid, bigint, int), shop.cart_set_qty(uuid, bigint, int),
    shop.cart_remove(uuid, bigint), shop.cart_save_for_later(uuid, bigint),
    shop.cart_move_to_cart(uuid, bigint), shop.cart_clear(uuid), shop.cart_get(uuid),
    shop.checkout(uuid, text, text, jsonb), shop.order_get(uuid), shop.orders_for(bigint, int, timestamptz),
    shop.payment_method_add(bigint, text, text, text, int, int),
    shop_router._uuid_part(uuid), shop_router._uuid_for(int), shop_router._pid_part(bigint),
    shop_router._hold_ttl(),
    shop_router._cart_create(text, uuid, bigint),
    shop_router._cart_price(bigint), shop_router._cart_write(text, text, uuid, bigint, int, bigint, bigint, text, text[]),
    shop_router._cart_lines(text, uuid), shop_router._cart_products(bigint[]),
    shop_router._saga_begin(text, uuid, uuid, text, text, jsonb),
    shop_router._saga_reserve(uuid, bigint[], int[], interval, bigint[], int[], text),
    shop_router._saga_release_signed(uuid, bigint[], text), shop_router._saga_keep_signed(uuid, bigint[], text),
    shop_router._saga_place(text, uuid, bigint[], text[], text[], bigint[], int[], text, jsonb, text[]),
    shop_router._saga_finish(text, uuid, text, bigint[], text[]), shop_router._saga_compensate(uuid, bigint[]),
    shop_router._saga_confirm(uuid, bigint[], text, text),
    shop_router._order_get(text, uuid), shop_router._orders_for(text, bigint, int, timestamptz),
    shop_router._payment_method_add(text, bigint, text, text, text, int, int)
    TO shop_storefront, shop_admin;
GRANT EXECUTE ON FUNCTION
    shop.session_token(bigint, interval),
    shop_router._saga_release(uuid, bigint[], boolean), shop_router._saga_keep(uuid, bigint[]),
    shop_router._saga_commit(uuid, bigint[]), shop_router._saga_held(uuid, bigint[]),
    shop_router._saga_get(uuid),
    shop_router._saga_stock(uuid, text), shop_router._saga_open(interval), shop_router._settle(uuid),
    shop.order_transition(uuid, text, text), shop_router._order_transition(uuid, text, text),
    shop.order_ship(uuid, text, text), shop_router._order_ship(uuid, text, text),
    shop.order_review(uuid, boolean), shop_router._order_review(uuid, boolean),
    shop_router._keep_for_payment(uuid),
    shop.payment_confirm(uuid, text), shop_router._payment_confirm(uuid, text),
    shop.payment_fail(uuid, text), shop_router._payment_fail(uuid, text),
    shop_router.saga_recover(interval)
    TO shop_admin;

------------------------------------------------------------------------------
-- Scale-out: returns and routed sessions (issue 16)
--
-- Returns: a routed order's transition to returned leaves the stock on its
-- customer shard alone (there is none there); shop_router._settle then
-- reads the order's lines on the customer shard, puts the units back on
-- each product's shard (shop._saga_restock: once per order and product,
-- however often it is repeated) and records saga.stock = 'returned'.  A
-- router that dies in between leaves the order returned with its stock
-- 'committed': shop_router.saga_recover finishes it (docs/scale-out.md).
-- shop_router.saga_test_stop = return | restock (tests only) stops the
-- router after the transition, or after the product shards' step.
------------------------------------------------------------------------------

CREATE FUNCTION shop_router._saga_lines(i_order_id uuid)
RETURNS TABLE (product_ids bigint[], qtys int[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_order_id);
    SELECT l.product_ids, l.qtys FROM shop._saga_lines($1) l;
$$;

CREATE FUNCTION shop_router._saga_restock(i_order_id uuid, i_product_ids bigint[], i_qtys int[])
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids, i_qtys;
    RUN ON hashint8(i_product_ids);
    SELECT shop._saga_restock($1, $2, $3);
$$;

-- a returned order's units back on the product shards, then recorded on
-- its customer shard (55000 if a shard did not take every line back)
CREATE FUNCTION shop_router._restock(order_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    l record;
    back int;
BEGIN
    SELECT * INTO l FROM shop_router._saga_lines(order_id);
    IF FOUND AND l.product_ids IS NOT NULL THEN
        SELECT coalesce(sum(b), 0) INTO back FROM shop_router._saga_restock(order_id, l.product_ids, l.qtys) b;
        IF back < cardinality(l.product_ids) THEN
            RAISE EXCEPTION 'return of order % is not complete', order_id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                DETAIL = format('%s of its %s products were put back on their shards.', back,
                                cardinality(l.product_ids)),
                HINT = 'shop_router.saga_recover() repeats it.';
        END IF;
    END IF;
    IF current_setting('shop_router.saga_test_stop', true) = 'restock' THEN
        RAISE EXCEPTION 'shop_router.saga_test_stop: the router stops after the product shards restocked';
    END IF;
    PERFORM shop_router._saga_stock(order_id, 'returned');
END
$$;
COMMENT ON FUNCTION shop_router._restock(uuid) IS
'a returned router order''s units back on each product''s shard (once), then recorded on its customer shard';

-- Sessions: reviews act for a customer, on the product's shard, with the
-- storefront's session as every call for a customer carries it; a
-- personalized search carries it too (shop.search above).
CREATE FUNCTION shop_router._review_add(i_session text, i_product_id bigint, i_customer_id bigint, i_rating int,
                                        i_title text, i_body text)
RETURNS text[]
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_product_id);
    SELECT CASE WHEN s.e IS NULL THEN shop._review_add_try($2, $3, $4, $5, $6) ELSE s.e END
      FROM (SELECT shop._session_use($1) AS e OFFSET 0) s;
$$;

CREATE FUNCTION shop.review_add(product_id bigint, customer_id bigint, rating int,
                                title text DEFAULT NULL, body text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT shop_router._raise(r.e)
      FROM (SELECT shop_router._review_add(shop_router._session(), review_add.product_id, review_add.customer_id,
                                           rating, title, body) AS e) r
     WHERE r.e IS NOT NULL
$$;
COMMENT ON FUNCTION shop.review_add(bigint, bigint, int, text, text) IS
'router: a customer''s review of a product, on the product''s shard, with the storefront''s session';

CREATE FUNCTION shop_router._review_delete(i_session text, i_product_id bigint, i_customer_id bigint)
RETURNS TABLE (done boolean, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_product_id);
    -- (the try answers the token's refusal, s.e, when there is one)
    SELECT (t).* FROM (SELECT shop._review_delete_try(s.e, $2, $3) AS t
                         FROM (SELECT shop._session_use($1) AS e OFFSET 0) s OFFSET 0) x;
$$;

CREATE FUNCTION shop.review_delete(product_id bigint, customer_id bigint)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT r.done
      FROM shop_router._review_delete(shop_router._session(), review_delete.product_id, review_delete.customer_id) r
     WHERE r.error IS NULL OR shop_router._raised(r.error)
$$;
COMMENT ON FUNCTION shop.review_delete(bigint, bigint) IS
'router: delete a customer''s review of a product, on the product''s shard, with the storefront''s session';

-- Autocomplete with the cluster's statistics, as search: the DFS phase
-- (every shard's statistics of the prefix's words, summed), then every
-- shard's best matches scored with the sums; the router takes the
-- cluster's best greatest(2 * lim, 20) in the index's order (missing
-- words, typos, score; product_id for the place in the table) and makes
-- the suggestions from them as one node does from its own: titles by
-- rank, brands and categories by their share of the matches, and the
-- logged queries (each shard logs the searches it ran: the largest count).
CREATE FUNCTION shop_router._autocomplete_dfs(i_prefix text, i_lim int)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT shop._autocomplete_stats($1, $2);
$$;

CREATE FUNCTION shop_router._autocomplete_routed(i_prefix text, i_lim int, i_global jsonb)
RETURNS TABLE (kind text, suggestion text, product_id bigint, brand text, brand_key text, category_id bigint,
               missing int, typos int, score real, n bigint)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT a.kind, a.suggestion, a.product_id, a.brand, a.brand_key, a.category_id, a.missing, a.typos,
           a.score, a.n
      FROM shop._autocomplete_routed($1, $2, $3) a;
$$;

CREATE FUNCTION shop.autocomplete(prefix text, lim int DEFAULT 10)
RETURNS TABLE (suggestion text, kind text, score real)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    rs jsonb[];
BEGIN
    -- the shards check the arguments, as one node does
    SELECT array_agg(r) INTO rs FROM shop_router._autocomplete_dfs(prefix, lim) r WHERE r IS NOT NULL;
    IF rs IS NULL THEN
        RETURN;    -- a prefix without letters or digits
    END IF;
    RETURN QUERY
    WITH a AS MATERIALIZED (
        SELECT * FROM shop_router._autocomplete_routed(prefix, lim, shop_router._dfs_sum(rs))
    ), hits AS MATERIALIZED (
        SELECT a.suggestion AS title, a.brand, a.brand_key, a.category_id, a.typos,
               row_number() OVER (ORDER BY a.missing, a.typos, a.score DESC, a.product_id) AS ord
          FROM a
         WHERE a.kind = 'hit'
         ORDER BY a.missing, a.typos, a.score DESC, a.product_id
         LIMIT greatest(2 * lim, 20)
    ), cand AS (
        SELECT h.title AS suggestion, 'product'::text AS kind,
               (1.0 / (1 + h.typos) * (1.0 - h.ord / 100.0))::real AS score
          FROM hits h
        UNION ALL
        SELECT min(h.brand), 'brand', (1.2 * count(*) / (SELECT count(*) FROM hits))::real
          FROM hits h
         WHERE h.brand_key IS NOT NULL
         GROUP BY h.brand_key
        UNION ALL
        SELECT c.name, 'category',
               (1.1 * (1 + (SELECT count(*) FROM hits h WHERE h.category_id = c.category_id))
                / (1 + (SELECT count(*) FROM hits)))::real
          FROM (SELECT DISTINCT a.suggestion AS name, a.category_id FROM a WHERE a.kind = 'category') c
        UNION ALL
        SELECT a.suggestion, 'query', (0.9 * least(1.0, max(a.n) / 10.0))::real
          FROM a
         WHERE a.kind = 'query'
         GROUP BY a.suggestion
    )
    SELECT d.suggestion, d.kind, d.score
      FROM (SELECT DISTINCT ON (lower(c.suggestion)) c.suggestion, c.kind, c.score
              FROM cand c
             ORDER BY lower(c.suggestion), c.score DESC) d
     ORDER BY d.score DESC, d.suggestion
     LIMIT lim;
END
$$;
COMMENT ON FUNCTION shop.autocomplete(text, int) IS
'router: suggestions from the cluster''s best matches, scored with its statistics, as one node makes them';

REVOKE ALL ON FUNCTION shop.autocomplete(text, int), shop_router._autocomplete_dfs(text, int),
    shop_router._autocomplete_routed(text, int, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.autocomplete(text, int), shop_router._autocomplete_dfs(text, int),
    shop_router._autocomplete_routed(text, int, jsonb) TO shop_storefront, shop_admin;

REVOKE ALL ON FUNCTION shop.review_add(bigint, bigint, int, text, text), shop.review_delete(bigint, bigint),
    shop_router._review_add(text, bigint, bigint, int, text, text), shop_router._review_delete(text, bigint, bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.review_add(bigint, bigint, int, text, text), shop.review_delete(bigint, bigint),
    shop_router._review_add(text, bigint, bigint, int, text, text), shop_router._review_delete(text, bigint, bigint)
    TO shop_storefront, shop_admin;

REVOKE ALL ON FUNCTION shop_router._saga_lines(uuid), shop_router._saga_restock(uuid, bigint[], int[]),
    shop_router._restock(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._saga_lines(uuid), shop_router._saga_restock(uuid, bigint[], int[]),
    shop_router._restock(uuid) TO shop_admin;

------------------------------------------------------------------------------
-- Scale-out: cart merge across shards (issue 16)
--
-- shop.cart_merge: when the guest cart and the customer's carts share a
-- partition, that shard's own shop.cart_merge does it (one transaction,
-- one node's answer).  Otherwise three steps (shop's section "Scale-out:
-- cart merge across shards"): out (the guest cart's shard: its lines,
-- checked and signed), in (the customer's shard: they join the customer's
-- most recent open cart, or a new one with an id the router chose, once
-- per guest cart), done (the guest cart's shard: marked merged, its lines
-- dropped).  Every step is safe to repeat, and a repeat of the whole call
-- after a failure anywhere finishes the merge without adding a line twice.
------------------------------------------------------------------------------

-- the number of partitions of shop_cluster (its options p0, p1, ...)
CREATE FUNCTION shop_router._nparts()
RETURNS int
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)::int FROM pg_foreign_server s, unnest(s.srvoptions) o
     WHERE s.srvname = 'shop_cluster' AND o ~ '^p[0-9]+='
$$;
COMMENT ON FUNCTION shop_router._nparts() IS 'the number of partitions of the cluster shop_cluster';

CREATE FUNCTION shop_router._cart_merge_local(i_session text, i_from_cart uuid, i_customer_id bigint)
RETURNS TABLE (id uuid, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_from_cart);
    -- (the try answers the token's refusal, s.e, when there is one)
    SELECT (t).* FROM (SELECT shop._cart_merge_try(s.e, $2, $3) AS t
                         FROM (SELECT shop._session_use($1) AS e OFFSET 0) s OFFSET 0) x;
$$;

CREATE FUNCTION shop_router._cart_merge_out(i_session text, i_from_cart uuid, i_customer_id bigint)
RETURNS TABLE (lines jsonb, sig text, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_from_cart);
    -- (a WITH inside FROM: PL/Proxy takes a SELECT only)
    SELECT * FROM (
        WITH s AS MATERIALIZED (SELECT shop._session_use($1) AS e)
        SELECT (m).* FROM (SELECT shop._cart_merge_out_try($2, $3) AS m FROM s WHERE s.e IS NULL OFFSET 0) x
        UNION ALL
        -- the session's token refused (28000): its error
        SELECT NULL, NULL, s.e FROM s WHERE s.e IS NOT NULL) r;
$$;

CREATE FUNCTION shop_router._cart_merge_in(i_session text, i_from_cart uuid, i_customer_id bigint,
                                           i_new_cart uuid, i_lines jsonb, i_sig text)
RETURNS TABLE (cart_id uuid, done_sig text, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON hashint8(i_customer_id);
    -- (a WITH inside FROM: PL/Proxy takes a SELECT only)
    SELECT * FROM (
        WITH s AS MATERIALIZED (SELECT shop._session_use($1) AS e)
        SELECT (m).* FROM (SELECT shop._cart_merge_in_try($2, $3, $4, $5, $6) AS m FROM s WHERE s.e IS NULL OFFSET 0) x
        UNION ALL
        -- the session's token refused (28000): its error
        SELECT NULL, NULL, s.e FROM s WHERE s.e IS NOT NULL) r;
$$;

CREATE FUNCTION shop_router._cart_merge_done(i_from_cart uuid, i_into_cart uuid, i_sig text)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._uuid_part(i_from_cart);
    SELECT shop._cart_merge_done($1, $2, $3);
$$;

CREATE FUNCTION shop.cart_merge(from_cart uuid, customer_id bigint)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    n int := shop_router._nparts();
    s text := shop_router._session();
    o record;
    t record;
BEGIN
    IF from_cart IS NULL OR customer_id IS NULL
       OR (shop_router._uuid_part(from_cart) & (n - 1)) = (hashint8(customer_id) & (n - 1)) THEN
        -- one shard: its own merge (and its errors for NULL arguments)
        SELECT * INTO STRICT t FROM shop_router._cart_merge_local(s, from_cart, customer_id);
        IF t.error IS NOT NULL THEN
            PERFORM shop_router._raise(t.error);
        END IF;
        RETURN t.id;
    END IF;
    SELECT * INTO STRICT o FROM shop_router._cart_merge_out(s, from_cart, customer_id);
    IF o.error IS NOT NULL THEN
        PERFORM shop_router._raise(o.error);
    END IF;
    -- the new cart's id is drawn here; one another cart has (23505 from
    -- the customer's shard, answered as data) is drawn again, as one
    -- node, which keeps the guest cart's id, never refuses one (ha9)
    FOR i IN 1..3 LOOP
        SELECT * INTO STRICT t FROM shop_router._cart_merge_in(s, from_cart, customer_id,
            shop_router._uuid_for(hashint8(customer_id)), o.lines, o.sig);
        EXIT WHEN t.error IS NULL OR t.error[1] <> '23505';
    END LOOP;
    IF t.error IS NOT NULL THEN
        PERFORM shop_router._raise(t.error);
    END IF;
    IF current_setting('shop_router.saga_test_stop', true) = 'merge_in' THEN
        RAISE EXCEPTION 'shop_router.saga_test_stop: stopped after the merge''s step in';
    END IF;
    PERFORM shop_router._cart_merge_done(from_cart, t.cart_id, t.done_sig);
    RETURN t.cart_id;
END
$$;
COMMENT ON FUNCTION shop.cart_merge(uuid, bigint) IS
'router: at login the guest cart joins the customer''s cart, moved to the customer''s shard when it is on another';

REVOKE ALL ON FUNCTION shop_router._nparts(), shop_router._cart_merge_local(text, uuid, bigint),
    shop_router._cart_merge_out(text, uuid, bigint),
    shop_router._cart_merge_in(text, uuid, bigint, uuid, jsonb, text),
    shop_router._cart_merge_done(uuid, uuid, text), shop.cart_merge(uuid, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._nparts(), shop_router._cart_merge_local(text, uuid, bigint),
    shop_router._cart_merge_out(text, uuid, bigint),
    shop_router._cart_merge_in(text, uuid, bigint, uuid, jsonb, text),
    shop_router._cart_merge_done(uuid, uuid, text), shop.cart_merge(uuid, bigint)
    TO shop_storefront, shop_admin;

------------------------------------------------------------------------------
-- Recommendations through the router (issue 16)
------------------------------------------------------------------------------

-- the result type of shop's lists (trending, similar_products, ...), as
-- one node has it
CREATE TYPE shop.scored_product AS (product_id bigint, score real);
COMMENT ON TYPE shop.scored_product IS 'a recommended product and its score (higher is better)';

-- trending: each shard's best lim of its own products (a product's
-- popularity lives on its shard), merged in one node's order (popularity
-- descending, then product_id) and cut to lim.  The shards check the
-- arguments (22023 lim, SH006 an unknown category) as one node does.
CREATE FUNCTION shop_router._trending(i_category_id bigint, i_lim int)
RETURNS SETOF shop.scored_product
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT * FROM shop.trending($1, $2);
$$;

CREATE FUNCTION shop.trending(category_id bigint DEFAULT NULL, lim int DEFAULT 10)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        -- out of range: the shards say so, in the words of one node (a
        -- LIMIT 0 here would not even ask them)
        RETURN QUERY SELECT * FROM shop_router._trending(trending.category_id, trending.lim);
        RETURN;
    END IF;
    RETURN QUERY
    SELECT t.product_id, t.score
      FROM shop_router._trending(trending.category_id, trending.lim) t
     ORDER BY t.score DESC, t.product_id
     LIMIT trending.lim;
END
$$;
COMMENT ON FUNCTION shop.trending(bigint, int) IS
'router: the most popular active products of every shard, merged in one node''s order (docs/scale-out.md)';

-- similar_products: the source product is read on its shard; its
-- candidates are on every shard.  Each shard returns its own 100 most
-- popular active products of the source's category and of its brand,
-- scored (shop._similar_shard); one node's 100 of each are among them, so
-- the router keeps those (popularity descending, then product_id, as one
-- node reads them) and lists them by score.  NULL arguments, a lim out of
-- range or an unknown product: the product's shard answers with one
-- node's error.
CREATE FUNCTION shop_router._similar_local(i_product_id bigint, i_lim int)
RETURNS SETOF shop.scored_product
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON shop_router._pid_part(i_product_id);
    SELECT * FROM shop.similar_products($1, $2);
$$;

CREATE FUNCTION shop_router._similar_src(i_product_id bigint)
RETURNS TABLE (category_id bigint, brand text, title text, attributes jsonb)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON shop_router._pid_part(i_product_id);
    SELECT p.category_id, p.brand, p.title, p.attributes FROM shop.product p WHERE p.product_id = $1;
$$;

CREATE FUNCTION shop_router._similar_shard(i_src_id bigint, i_src_category bigint, i_src_brand text,
                                           i_src_title text, i_src_attributes jsonb)
RETURNS TABLE (product_id bigint, score real, category_id bigint, brand text, popularity real)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT * FROM shop._similar_shard($1, $2, $3, $4, $5);
$$;

-- one node's candidates of a source from every shard's, scored
CREATE FUNCTION shop_router._similar_merged(src_id bigint, src_category bigint, src_brand text,
                                            src_title text, src_attributes jsonb)
RETURNS SETOF shop.scored_product
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT r.product_id, r.score
      FROM (SELECT c.product_id, c.score,
                   CASE WHEN src_category IS NOT NULL AND c.category_id = src_category
                        THEN row_number() OVER (PARTITION BY src_category IS NOT NULL AND c.category_id = src_category
                                                ORDER BY c.popularity DESC, c.product_id) END AS in_category,
                   CASE WHEN src_brand IS NOT NULL AND c.brand = src_brand
                        THEN row_number() OVER (PARTITION BY src_brand IS NOT NULL AND c.brand = src_brand
                                                ORDER BY c.popularity DESC, c.product_id) END AS in_brand
              FROM shop_router._similar_shard(src_id, src_category, src_brand, src_title, src_attributes) c) r
     WHERE r.in_category <= 100 OR r.in_brand <= 100
$$;

CREATE FUNCTION shop.similar_products(product_id bigint, lim int DEFAULT 10)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    src record;
    have_src boolean := false;
BEGIN
    IF product_id IS NOT NULL AND lim BETWEEN 1 AND 1000 THEN
        SELECT * INTO src FROM shop_router._similar_src(product_id);
        have_src := FOUND;
    END IF;
    IF NOT have_src THEN
        -- NULL arguments, a lim out of range, an unknown product: one
        -- node's error, in its order, raised here (a shard's error would
        -- leave its connection to be remade, issue 16)
        IF product_id IS NULL THEN
            RAISE EXCEPTION 'argument product_id must not be null' USING ERRCODE = 'null_value_not_allowed';
        END IF;
        PERFORM shop_router._check_lim(lim);
        PERFORM shop_router._product_not_found(product_id);
    END IF;
    RETURN QUERY
    SELECT m.product_id, m.score
      FROM shop_router._similar_merged(product_id, src.category_id, src.brand, src.title, src.attributes) m
     ORDER BY m.score DESC, m.product_id
     LIMIT lim;
END
$$;
COMMENT ON FUNCTION shop.similar_products(bigint, int) IS
'router: content-based neighbours of a product, its candidates from every shard (docs/scale-out.md)';

-- view and recently_viewed: a customer's views are on the customer's
-- shard (with the storefront's session), the products on theirs.  The
-- product's shard signs that the product exists (shop._view_found, ha10:
-- before, the router passed its own word, which a storefront calling the
-- customer's shard itself could forge) and the customer's shard checks the
-- signature before it records
CREATE FUNCTION shop_router._view_product(i_product_id bigint, OUT found_until bigint, OUT found_sig text)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_product_id);
    SELECT * FROM shop._view_found($1);
$$;

CREATE FUNCTION shop_router._view_record(i_session text, i_customer_id bigint, i_product_id bigint,
                                         i_found_until bigint, i_found_sig text)
RETURNS text[]
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_customer_id);
    -- the session's token refused (28000), a NULL id (22004, ha9), then
    -- another customer's refusal (42501, 22023 for an id below 1:
    -- shop._customer_refusal) answered as data in one node's order
    -- (issue 16, ha8)
    SELECT CASE WHEN s.e IS NULL THEN (SELECT NULL::text[] FROM shop._view_record($2, $3, $4, $5)) ELSE s.e END
      FROM (SELECT coalesce(s0.e,
                            CASE WHEN $2 IS NULL THEN ARRAY['22004', 'argument customer_id must not be null'] END,
                            shop._customer_refusal($2)) AS e
              FROM (SELECT shop._session_use($1) AS e OFFSET 0) s0 OFFSET 0) s;
$$;

CREATE FUNCTION shop.view(customer_id bigint, product_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    found_until bigint;
    found_sig text;
    e text[];
BEGIN
    IF product_id IS NOT NULL THEN
        SELECT f.found_until, f.found_sig INTO found_until, found_sig
          FROM shop_router._view_product(product_id) f;
    END IF;
    e := shop_router._view_record(shop_router._session(), customer_id, product_id, found_until, found_sig);
    IF e IS NOT NULL THEN
        PERFORM shop_router._raise(e);
    END IF;
END
$$;
COMMENT ON FUNCTION shop.view(bigint, bigint) IS
'router: record a product view on the customer''s shard (the product checked on its own, which signs it)';

CREATE FUNCTION shop_router._recently_viewed_rows(i_session text, i_customer_id bigint, i_lim int)
RETURNS TABLE (product_id bigint, viewed_at timestamptz, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_customer_id);
    -- (a WITH inside FROM: PL/Proxy takes a SELECT only)
    SELECT * FROM (
        WITH s AS MATERIALIZED (SELECT coalesce(s0.e,
                                                CASE WHEN $2 IS NULL
                                                     THEN ARRAY['22004', 'argument customer_id must not be null'] END,
                                                shop._customer_refusal($2)) AS e
                                  FROM (SELECT shop._session_use($1) AS e OFFSET 0) s0)
        SELECT (v).*, NULL::text[] AS error FROM (SELECT shop._recently_viewed_rows($2, $3) AS v FROM s WHERE s.e IS NULL OFFSET 0) x
        UNION ALL
        -- the session's token refused (28000), a NULL id (22004, ha9),
        -- then another customer's refusal (42501, 22023 for an id below 1;
        -- issue 16, ha8): its error
        SELECT NULL, NULL, s.e FROM s WHERE s.e IS NOT NULL) r;
$$;

CREATE FUNCTION shop.recently_viewed(customer_id bigint, lim int DEFAULT 10)
RETURNS TABLE (product_id bigint, viewed_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    ats timestamptz[];
    active bigint[];
BEGIN
    -- the customer's shard checks the arguments and the session first
    SELECT array_agg(v.product_id ORDER BY v.viewed_at DESC, v.product_id DESC),
           array_agg(v.viewed_at ORDER BY v.viewed_at DESC, v.product_id DESC)
      INTO ids, ats
      FROM shop_router._recently_viewed_rows(shop_router._session(), recently_viewed.customer_id,
                                             recently_viewed.lim) v
     WHERE v.error IS NULL OR shop_router._raised(v.error);
    IF ids IS NULL THEN
        RETURN;
    END IF;
    -- then the products' shards (each asked once): the active ones, as
    -- one node lists them
    SELECT coalesce(array_agg(a.product_id), '{}') INTO active
      FROM shop_router._cart_products(ids) a WHERE a.status = 'active';
    RETURN QUERY
    SELECT u.p, u.at
      FROM unnest(ids, ats) u(p, at)
     WHERE u.p = ANY (active)
     ORDER BY u.at DESC, u.p DESC
     LIMIT recently_viewed.lim;
END
$$;
COMMENT ON FUNCTION shop.recently_viewed(bigint, int) IS
'router: the active products a customer viewed last, newest first: the customer''s shard, then the products'' shards';

-- Co-purchase counts across shards (docs/scale-out.md, "Recommendations
-- across shards").  Orders, and so the counts of their baskets, are on the
-- customers' shards; a product's list is read on its shard and scored with
-- the counts of the whole cluster.  shop_router.copurchase_move() moves the
-- counts (never the scores) from every shard to where they are read, each
-- source shard's change as a numbered batch that every target applies once,
-- then has every shard rescore the lists whose counts moved.  Run it from
-- cron on the router, after the shards' sweeps (or with refresh => true,
-- which runs every shard's refresh_recommendations first).
CREATE FUNCTION shop_router._copurchase_refresh(i_part int)
RETURNS jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT shop.refresh_recommendations();
$$;

CREATE FUNCTION shop_router._copurchase_export(i_part int)
RETURNS TABLE (batch bigint, pair_ids bigint[], pair_others bigint[], pair_deltas double precision[],
               item_ids bigint[], item_baskets double precision[], item_slots double precision[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT * FROM shop._copurchase_export();
$$;

-- each pair delta to the shard of its product
CREATE FUNCTION shop_router._copurchase_import_pairs(i_source int, i_batch bigint, i_product_ids bigint[],
                                                     i_other_ids bigint[], i_deltas double precision[])
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids, i_other_ids, i_deltas;
    RUN ON hashint8(i_product_ids);
    SELECT shop._copurchase_import_pairs($1, $2, $3, $4, $5);
$$;

-- every product's delta to every shard
CREATE FUNCTION shop_router._copurchase_import_items(i_source int, i_batch bigint, i_product_ids bigint[],
                                                     i_baskets double precision[], i_slots double precision[])
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._copurchase_import_items($1, $2, $3, $4, $5);
$$;

CREATE FUNCTION shop_router._copurchase_export_ack(i_part int, i_batch bigint)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT shop._copurchase_export_ack($2);
$$;

CREATE FUNCTION shop_router._copurchase_global_score()
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._copurchase_global_score();
$$;

-- One move: for every shard, its batch (a new one, or the one a move that
-- died did not acknowledge), applied on the targets, then acknowledged;
-- then every shard rescores.  Each step is its own transaction on its
-- shard; a move that dies anywhere is finished by the next one, and a
-- batch applied twice counts once (each target keeps every source's last
-- batch).  Moves of two routers at once are safe (a shard numbers and
-- applies one batch at a time).
CREATE FUNCTION shop_router.copurchase_move(refresh boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    n int := shop_router._nparts();
    b record;
    batches int := 0;
    pairs bigint := 0;
    items bigint := 0;
    scored bigint := 0;
BEGIN
    IF refresh THEN
        FOR p IN 0 .. n - 1 LOOP
            PERFORM shop_router._copurchase_refresh(p);
        END LOOP;
    END IF;
    FOR p IN 0 .. n - 1 LOOP
        FOR b IN SELECT * FROM shop_router._copurchase_export(p) LOOP
            pairs := pairs + coalesce((SELECT sum(x) FROM shop_router._copurchase_import_pairs(p, b.batch, b.pair_ids, b.pair_others, b.pair_deltas) x), 0);
            items := items + coalesce((SELECT sum(x) FROM shop_router._copurchase_import_items(p, b.batch, b.item_ids, b.item_baskets, b.item_slots) x), 0);
            PERFORM shop_router._copurchase_export_ack(p, b.batch);
            batches := batches + 1;
        END LOOP;
    END LOOP;
    SELECT coalesce(sum((s ->> 'products_scored')::bigint), 0) INTO scored FROM shop_router._copurchase_global_score() s;
    RETURN jsonb_build_object('batches', batches, 'pairs_applied', pairs, 'items_applied', items,
                              'lists_scored', scored);
END
$$;
COMMENT ON FUNCTION shop_router.copurchase_move(boolean) IS
'router: moves every shard''s co-purchase count changes to the shards that read them (once per batch) and rescores the lists that moved; refresh => true runs every shard''s refresh_recommendations first';

-- also_bought: the product's list, scored with the cluster's counts, on
-- its shard (with one node's checks and errors); its neighbours' status on
-- their shards (the active ones are listed, as on one node); a thin list is
-- filled from the routed similar_products candidates, excluding the
-- listed products, with scores below the last co-purchase score as one
-- node's fill (shop._also_bought_list).  Experiments are not routed yet.
CREATE FUNCTION shop_router._also_bought_global(i_product_id bigint, i_lim int)
RETURNS SETOF shop.scored_product
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON shop_router._pid_part(i_product_id);
    -- an unknown product: a row of NULLs (the router raises one node's
    -- SH006, shop_router._also_bought_default)
    SELECT * FROM shop._also_bought_global($1, $2)
     WHERE $1 IS NULL OR EXISTS (SELECT FROM shop.product p WHERE p.product_id = $1)
    UNION ALL
    SELECT NULL, NULL
     WHERE NOT ($1 IS NULL OR EXISTS (SELECT FROM shop.product p WHERE p.product_id = $1));
$$;

CREATE FUNCTION shop_router._also_bought_default(product_id bigint, lim int)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    ids bigint[];
    scores real[];
    active bigint[];
    n int;
    last_score real;
    src record;
    missing boolean;
BEGIN
    -- NULL arguments and a lim out of range: one node's errors, raised here
    -- before any shard is called; an unknown product: a row of NULLs from
    -- its shard (a shard's error leaves its connection to be remade, issue 16)
    IF product_id IS NULL THEN
        RAISE EXCEPTION 'argument product_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM shop_router._check_lim(lim);
    SELECT array_agg(g.product_id ORDER BY g.score DESC, g.product_id), array_agg(g.score ORDER BY g.score DESC, g.product_id),
           bool_or(g.product_id IS NULL)
      INTO ids, scores, missing
      FROM shop_router._also_bought_global(product_id, lim) g;
    IF missing THEN
        PERFORM shop_router._product_not_found(product_id);
    END IF;
    IF ids IS NOT NULL THEN
        SELECT coalesce(array_agg(a.product_id), '{}') INTO active
          FROM shop_router._product_cards(ids) a WHERE a.status = 'active';
        SELECT array_agg(u.p ORDER BY u.k), array_agg(u.s ORDER BY u.k) INTO ids, scores
          FROM unnest(ids, scores) WITH ORDINALITY u(p, s, k) WHERE u.p = ANY (active);
    END IF;
    n := coalesce(cardinality(ids), 0);
    RETURN QUERY SELECT u.p, u.s FROM unnest(ids, scores) WITH ORDINALITY u(p, s, k) ORDER BY u.k LIMIT lim;
    IF n >= lim THEN
        RETURN;
    END IF;
    -- thin: the fill (the product exists: its shard said so)
    SELECT * INTO src FROM shop_router._similar_src(product_id);
    IF src.category_id IS NULL AND src.brand IS NULL THEN
        RETURN;
    END IF;
    last_score := scores[n];
    RETURN QUERY
    SELECT m.product_id, (m.score * least(1.0, coalesce(last_score, 1.0)) * 0.999)::real
      FROM shop_router._similar_merged(product_id, src.category_id, src.brand, src.title, src.attributes) m
     WHERE m.product_id <> ALL (coalesce(ids, '{}'))
     ORDER BY m.score DESC, m.product_id
     LIMIT lim - n;
END
$$;
COMMENT ON FUNCTION shop_router._also_bought_default(bigint, int) IS
'router: also_bought''s default list: customers who bought this also bought, scored with the whole cluster''s co-purchase counts (after shop_router.copurchase_move), filled from similar_products when thin';

REVOKE ALL ON FUNCTION shop_router._copurchase_refresh(int), shop_router._copurchase_export(int),
    shop_router._copurchase_import_pairs(int, bigint, bigint[], bigint[], double precision[]),
    shop_router._copurchase_import_items(int, bigint, bigint[], double precision[], double precision[]),
    shop_router._copurchase_export_ack(int, bigint), shop_router._copurchase_global_score(),
    shop_router.copurchase_move(boolean), shop_router._also_bought_global(bigint, int),
    shop_router._also_bought_default(bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._copurchase_refresh(int), shop_router._copurchase_export(int),
    shop_router._copurchase_import_pairs(int, bigint, bigint[], bigint[], double precision[]),
    shop_router._copurchase_import_items(int, bigint, bigint[], double precision[], double precision[]),
    shop_router._copurchase_export_ack(int, bigint), shop_router._copurchase_global_score(),
    shop_router.copurchase_move(boolean) TO shop_admin;
GRANT EXECUTE ON FUNCTION shop_router._also_bought_global(bigint, int), shop_router._also_bought_default(bigint, int)
    TO shop_storefront, shop_admin;

------------------------------------------------------------------------------
-- recommend (docs/scale-out.md, "Recommendations across shards"): one
-- node's blend (shop._recommend_blend) made from its sources where they
-- live.  The customer's shard gives the seeds (the last 50 products
-- bought and the views), what to leave out, the customer's profile
-- (signed for the other shards) and the weights, with one node's checks;
-- every shard its samples of the profile's products and the neighbours'
-- shards their profiles (the "customers like you" of the whole cluster);
-- the seeds' shards their co-purchase lists scored with the cluster's
-- counts (as also_bought reads them); every shard its most
-- popular products; similar_products (routed) the content source; the
-- candidates' shards whether they are active.  The router sums and ranks
-- as one node does.  Experiments are not routed yet.
------------------------------------------------------------------------------

CREATE FUNCTION shop_router._recommend_history(i_session text, i_customer_id bigint, i_lim int, i_weights text[])
RETURNS TABLE (seed_ids bigint[], seed_ws numeric[], seed_ats timestamptz[], bought bigint[], viewed bigint[],
               weights float8[], like_ids bigint[], like_k int, like_n int, like_until bigint, like_sig text,
               error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_customer_id);
    -- (a WITH inside FROM: PL/Proxy takes a SELECT only)
    SELECT * FROM (
        WITH s AS MATERIALIZED (SELECT shop._session_use($1) AS e)
        SELECT (h).* FROM (SELECT shop._like_history_try($2, $3, $4) AS h FROM s WHERE s.e IS NULL OFFSET 0) x
        UNION ALL
        -- the session's token refused (28000): its error
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.e FROM s WHERE s.e IS NOT NULL) r;
$$;

-- customers like you across shards (docs/scale-out.md): every shard's
-- samples of the customer's profile products, and the neighbours'
-- profiles on their shards
CREATE FUNCTION shop_router._like_samples(i_customer_id bigint, i_product_ids bigint[], i_until bigint, i_sig text, i_k int)
RETURNS TABLE (product_id bigint, customer_id bigint, h bigint, weight real)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._like_samples($1, $2, $3, $4, $5);
$$;

CREATE FUNCTION shop_router._like_profiles(i_customer_id bigint, i_product_ids bigint[], i_until bigint, i_sig text,
                                           i_neighbour_ids bigint[])
RETURNS TABLE (customer_id bigint, product_id bigint, weight real)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_neighbour_ids;
    RUN ON hashint8(i_neighbour_ids);
    SELECT * FROM shop._like_profiles($1, $2, $3, $4, $5);
$$;

-- the "customers like you" source of a customer: the cluster's sample of
-- each of their products is the reco_like_sample smallest (h, customer_id)
-- of every shard's samples; pairs summed and ranked as shop._like_score
-- does (rounded to 1e-9, by the real score, then neighbour id); then the
-- neighbours' profiles, each product scoring similarity times weight
CREATE FUNCTION shop_router._like_source(i_customer_id bigint, i_product_ids bigint[], i_until bigint, i_sig text,
                                         i_k int, i_n int, OUT alike_ids bigint[], OUT alike_scs float8[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    nb_ids bigint[];
    nb_scs real[];
BEGIN
    IF i_product_ids IS NULL OR cardinality(i_product_ids) = 0 THEN
        RETURN;
    END IF;
    WITH s AS MATERIALIZED (
        SELECT * FROM shop_router._like_samples(i_customer_id, i_product_ids, i_until, i_sig, i_k)
    ), post AS (
        SELECT x.product_id, x.customer_id, x.weight
          FROM (SELECT s.product_id, s.customer_id, s.weight,
                       row_number() OVER (PARTITION BY s.product_id ORDER BY s.h, s.customer_id) AS rn
                  FROM s) x
         WHERE x.rn <= i_k
    ), pairs AS (
        SELECT b.customer_id AS neighbour_id,
               round(sum(a.weight::float8 * b.weight::float8)::numeric, 9)::float8::real AS sim
          FROM post a
          JOIN post b ON b.product_id = a.product_id AND b.customer_id <> a.customer_id
         WHERE a.customer_id = i_customer_id
         GROUP BY b.customer_id
    )
    SELECT array_agg(p.neighbour_id ORDER BY p.sim DESC, p.neighbour_id), array_agg(p.sim ORDER BY p.sim DESC, p.neighbour_id)
      INTO nb_ids, nb_scs
      FROM (SELECT * FROM pairs ORDER BY sim DESC, neighbour_id LIMIT i_n) p;
    IF nb_ids IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(a.product_id ORDER BY a.product_id), array_agg(a.sc ORDER BY a.product_id)
      INTO alike_ids, alike_scs
      FROM (SELECT ci.product_id, sum(nb.score::float8 * ci.weight) AS sc
              FROM unnest(nb_ids, nb_scs) nb(neighbour_id, score)
              JOIN shop_router._like_profiles(i_customer_id, i_product_ids, i_until, i_sig, nb_ids) ci
                ON ci.customer_id = nb.neighbour_id
             GROUP BY ci.product_id) a;
END
$$;
COMMENT ON FUNCTION shop_router._like_source(bigint, bigint[], bigint, text, int, int) IS
'router: the customers-like-you source of shop.recommend, with the neighbours of the whole cluster (docs/scale-out.md)';

CREATE FUNCTION shop_router._recommend_lists(i_product_ids bigint[])
RETURNS TABLE (product_id bigint, other_id bigint, score real)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    SPLIT i_product_ids;
    RUN ON hashint8(i_product_ids);
    SELECT * FROM shop._recommend_lists($1);
$$;

CREATE FUNCTION shop_router._recommend_popular(i_n int, i_exclude bigint[])
RETURNS TABLE (product_id bigint, popularity real)
LANGUAGE plproxy
AS $$
    CLUSTER shop_router._read_cluster();
    RUN ON ALL;
    SELECT * FROM shop._recommend_popular($1, $2);
$$;

CREATE FUNCTION shop_router._recommend_blend(customer_id bigint, lim int)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    h record;
    a_ids bigint[];
    a_scs float8[];
    wi float8;
    wl float8;
    wc float8;
    wp float8;
    thin bigint;
    l_pids bigint[];
    l_oids bigint[];
    l_scores real[];
    c_ids bigint[];
    c_scs float8[];
    ids bigint[];
    scores real[];
    active bigint[];
BEGIN
    -- the customer's shard checks the arguments and the session first
    -- the weights of this session (shop.reco_weight_*, placeholders on the
    -- router) are set on the customer's shard, which checks them
    SELECT * INTO h
      FROM shop_router._recommend_history(shop_router._session(), customer_id, lim,
                                          ARRAY[nullif(current_setting('shop.reco_weight_item', true), ''),
                                                nullif(current_setting('shop.reco_weight_like', true), ''),
                                                nullif(current_setting('shop.reco_weight_content', true), ''),
                                                nullif(current_setting('shop.reco_weight_popular', true), '')]);
    IF h.error IS NOT NULL THEN
        PERFORM shop_router._raise(h.error);
    END IF;
    wi := h.weights[1]; wl := h.weights[2]; wc := h.weights[3]; wp := h.weights[4];
    -- the seeds' lists, on their shards
    IF h.seed_ids IS NOT NULL AND (wi > 0 OR wc > 0) THEN
        SELECT array_agg(c.product_id), array_agg(c.other_id), array_agg(c.score)
          INTO l_pids, l_oids, l_scores
          FROM shop_router._recommend_lists(h.seed_ids) c;
    END IF;
    -- customers like you: the neighbours of the whole cluster
    IF wl > 0 THEN
        SELECT x.alike_ids, x.alike_scs INTO a_ids, a_scs
          FROM shop_router._like_source(customer_id, h.like_ids, h.like_until, h.like_sig, h.like_k, h.like_n) x;
    END IF;
    -- content: similar_products of the latest seed without a list
    IF wc > 0 THEN
        SELECT s.p INTO thin
          FROM unnest(h.seed_ids, h.seed_ats) s(p, at)
         WHERE s.p <> ALL (coalesce(l_pids, '{}'))
         ORDER BY s.at DESC, s.p
         LIMIT 1;
        IF thin IS NOT NULL THEN
            SELECT array_agg(x.product_id), array_agg(x.sc) INTO c_ids, c_scs
              FROM (SELECT x.product_id, sum(x.score)::float8 AS sc
                      FROM shop.similar_products(thin, 10) x
                     GROUP BY x.product_id) x;
        END IF;
    END IF;
    -- the blend, as shop._recommend_blend ranks it
    WITH seeds AS (
        SELECT * FROM unnest(h.seed_ids, h.seed_ws) s(product_id, w)
    ), item AS (
        SELECT c.other_id AS product_id, sum(c.score * s.w)::float8 AS sc
          FROM seeds s
          JOIN unnest(l_pids, l_oids, l_scores) c(product_id, other_id, score) ON c.product_id = s.product_id
         WHERE wi > 0
         GROUP BY c.other_id
    ), alike AS (
        SELECT a.product_id, a.sc FROM unnest(a_ids, a_scs) a(product_id, sc) WHERE wl > 0
    ), content AS (
        SELECT a.product_id, a.sc FROM unnest(c_ids, c_scs) a(product_id, sc)
    ), pop AS (
        SELECT p.product_id, p.popularity::float8 AS sc
          FROM shop_router._recommend_popular(3 * lim + 60, '{}') p
         WHERE wp > 0
         ORDER BY p.popularity DESC, p.product_id
         LIMIT 3 * lim + 60
    ), cand AS (
        SELECT y.product_id, y.w * y.sc / nullif(max(y.sc) OVER (PARTITION BY y.w_src), 0) AS part
          FROM (SELECT a.product_id, a.sc, wi AS w, 1 AS w_src FROM item a
                UNION ALL SELECT a.product_id, a.sc, wl, 2 FROM alike a
                UNION ALL SELECT a.product_id, a.sc, wc, 3 FROM content a
                UNION ALL SELECT a.product_id, a.sc, wp, 4 FROM pop a) y
         WHERE y.sc > 0
    )
    SELECT array_agg(r.product_id ORDER BY r.sc DESC, r.product_id), array_agg(r.sc ORDER BY r.sc DESC, r.product_id)
      INTO ids, scores
      FROM (SELECT c.product_id, sum(c.part)::real AS sc
              FROM cand c
             WHERE c.product_id <> ALL (coalesce(h.seed_ids, '{}'))
               AND c.product_id <> ALL (coalesce(h.bought, '{}'))
             GROUP BY c.product_id
             ORDER BY sc DESC, c.product_id
             LIMIT 3 * lim + 10) r;
    -- the active ones, on their shards
    IF ids IS NOT NULL THEN
        SELECT coalesce(array_agg(a.product_id), '{}') INTO active
          FROM shop_router._cart_products(ids) a
         WHERE a.status = 'active';
        SELECT array_agg(r.p ORDER BY r.k), array_agg(r.s ORDER BY r.k) INTO ids, scores
          FROM (SELECT u.p, u.s, u.k FROM unnest(ids, scores) WITH ORDINALITY u(p, s, k)
                 WHERE u.p = ANY (active) AND u.s > 0
                 ORDER BY u.k
                 LIMIT lim) r;
    END IF;
    ids := coalesce(ids, '{}');
    scores := coalesce(scores, '{}');
    IF cardinality(ids) < lim THEN
        -- fill from the most popular, below every blended score
        SELECT ids || coalesce(array_agg(t.product_id ORDER BY t.popularity DESC, t.product_id), '{}'),
               scores || coalesce(array_agg((t.popularity * 0.001)::real ORDER BY t.popularity DESC, t.product_id), '{}')
          INTO ids, scores
          FROM (SELECT p.product_id, p.popularity
                  FROM shop_router._recommend_popular(lim - cardinality(ids),
                                                      ids || coalesce(h.bought, '{}') || coalesce(h.viewed, '{}')) p
                 ORDER BY p.popularity DESC, p.product_id
                 LIMIT lim - cardinality(ids)) t;
    END IF;
    RETURN QUERY SELECT u.p, u.s FROM unnest(ids, scores) WITH ORDINALITY u(p, s, n) ORDER BY u.n;
END
$$;
COMMENT ON FUNCTION shop_router._recommend_blend(bigint, int) IS
'router: recommend''s default list, blended as on one node from the customer''s shard (history, profile), every shard (customers like you, popularity) and the products'' shards (co-purchase lists scored with the cluster''s counts, similar products)';

REVOKE ALL ON FUNCTION shop_router._recommend_history(text, bigint, int, text[]), shop_router._recommend_lists(bigint[]),
    shop_router._recommend_popular(int, bigint[]), shop_router._recommend_blend(bigint, int),
    shop_router._like_samples(bigint, bigint[], bigint, text, int),
    shop_router._like_profiles(bigint, bigint[], bigint, text, bigint[]),
    shop_router._like_source(bigint, bigint[], bigint, text, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._recommend_history(text, bigint, int, text[]), shop_router._recommend_lists(bigint[]),
    shop_router._recommend_popular(int, bigint[]), shop_router._recommend_blend(bigint, int),
    shop_router._like_samples(bigint, bigint[], bigint, text, int),
    shop_router._like_profiles(bigint, bigint[], bigint, text, bigint[]),
    shop_router._like_source(bigint, bigint[], bigint, text, int, int) TO shop_storefront, shop_admin;

------------------------------------------------------------------------------
-- Experiments (docs/scale-out.md, "Experiments across shards").  The
-- experiments and their variants are on every shard: experiment_create
-- and experiment_stop write them on all (one at a time, the advisory lock
-- below; the shards must agree, as for categories).  A unit's bucket is a
-- hash of the experiment's name and the unit, the same on every shard; the
-- unit's shard (a customer's, a guest cart's) chooses its variant with
-- one node's checks and records the list shown there, where the unit's
-- views, cart lines and orders are attributed to it by one node's
-- triggers.  The lists of the variants are the router's (the blend,
-- trending, similar_products, also_bought, and the 1.1 personal list made
-- from the cluster's co-purchase lists); exploration draws among the
-- cluster's 50 newest active products with every shard's counts.
-- experiment_report sums every shard's counts per variant and computes
-- the intervals and tests once, on a shard.
------------------------------------------------------------------------------

-- the partition of a hash (for RUN ON)
CREATE FUNCTION shop_router._as_part(i_hash int)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT i_hash $$;
COMMENT ON FUNCTION shop_router._as_part(int) IS 'a hash computed by the router, for RUN ON';

CREATE FUNCTION shop_router._experiment_create(i_name text, i_variants jsonb, i_window interval)
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop.experiment_create($1, $2, $3);
$$;

CREATE FUNCTION shop.experiment_create(name text, variants jsonb, attribution_window interval DEFAULT '1 day')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    rs text[];
BEGIN
    PERFORM pg_advisory_xact_lock(1936224112, 2);   -- 'shop'; 2: experiment writes
    SELECT array_agg(DISTINCT x::text) INTO rs
      FROM shop_router._experiment_create(name, variants, attribution_window) x;
    IF cardinality(rs) IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'shards disagree on the experiment'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('experiment_create(%L) returned %s on the partitions.', name, rs),
                  HINT = 'Every experiment write must go through the router (docs/scale-out.md).';
    END IF;
    RETURN rs[1]::jsonb;
END
$$;
COMMENT ON FUNCTION shop.experiment_create(text, jsonb, interval) IS
'router: start a named experiment on every shard (they must agree); returns each variant''s buckets';

CREATE FUNCTION shop_router._experiment_stop_at(i_name text, i_at timestamptz)
RETURNS SETOF timestamptz
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._experiment_stop_at($1, $2);
$$;

CREATE FUNCTION shop.experiment_stop(name text)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    at timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(1936224112, 2);
    SELECT min(x) INTO at FROM shop_router._experiment_stop_at(name, now()) x;
    RETURN at;
END
$$;
COMMENT ON FUNCTION shop.experiment_stop(text) IS
'router: stop an experiment on every shard, at the router''s time; returns when it stopped';

CREATE FUNCTION shop.experiment_bucket(experiment text, unit text)
RETURNS integer
LANGUAGE plproxy STRICT
AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
    SELECT shop.experiment_bucket($1, $2);
$$;
COMMENT ON FUNCTION shop.experiment_bucket(text, text) IS
'router: the assignment bucket (0..9999) of a unit in an experiment, the same on every shard';

CREATE FUNCTION shop_router._experiment_assign(i_session text, i_experiment text, i_customer_id bigint, i_visitor text,
                                               OUT variant text, OUT params jsonb, OUT error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_customer_id);
    -- the try answers the token's refusal (s.e) when there is one, else
    -- experiment_assign's refusal as data (issue 16, ha8)
    SELECT (t).* FROM (SELECT shop._experiment_assign_try(s.e, $2, $3, $4) AS t
                         FROM (SELECT shop._session_use($1) AS e OFFSET 0) s OFFSET 0) x;
$$;

CREATE FUNCTION shop.experiment_assign(experiment text, customer_id bigint DEFAULT NULL, visitor text DEFAULT NULL,
                                       OUT variant text, OUT params jsonb)
RETURNS record
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT r.variant, r.params
      FROM shop_router._experiment_assign(shop_router._session(), experiment, customer_id, visitor) r
     WHERE r.error IS NULL OR shop_router._raised(r.error)
$$;
COMMENT ON FUNCTION shop.experiment_assign(text, bigint, text) IS
'router: the variant (name, params) of a customer or guest in a running experiment, with one node''s checks on a shard';

-- the unit's shard of also_bought: the customer named, else the
-- session's customer, else the guest's cart (its id in visitor)
CREATE FUNCTION shop_router._unit_part(i_session text, i_customer_id bigint, i_visitor text)
RETURNS int
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c bigint;
BEGIN
    IF i_customer_id IS NOT NULL THEN
        RETURN shop_router._pid_part(i_customer_id);
    END IF;
    IF i_session <> '' THEN
        c := shop_router._session_customer(i_session);
        IF c IS NOT NULL THEN
            RETURN shop_router._pid_part(c);
        END IF;
    END IF;
    IF i_visitor ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RETURN shop_router._uuid_part(i_visitor::uuid);
    END IF;
    RETURN 0;
END
$$;
COMMENT ON FUNCTION shop_router._unit_part(text, bigint, text) IS
'the hash of an experiment unit''s shard: the customer''s, the session''s customer''s, or the guest cart''s';

CREATE FUNCTION shop_router._experiment_choose(i_session text, i_part int, i_experiment text, i_customer_id bigint,
                                               i_visitor text, i_for_recommend boolean)
RETURNS TABLE (unit text, experiment_id integer, variant smallint, params jsonb, valid_until bigint, sig text,
               error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._as_part(i_part);
    -- the try answers the token's refusal (s.e) when there is one, else
    -- the step's refusal as data (issue 16, ha8)
    SELECT (t).* FROM (SELECT shop._experiment_choose_try(s.e, $3, $4, $5, $6) AS t
                         FROM (SELECT shop._session_use($1) AS e OFFSET 0) s OFFSET 0) x;
$$;

CREATE FUNCTION shop_router._experiment_impress(i_part int, i_experiment_id integer, i_variant smallint, i_unit text,
                                                i_surface text, i_products bigint[], i_until bigint, i_sig text)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._as_part(i_part);
    SELECT shop._experiment_impress($2, $3, $4, $5, $6, $7, $8);
$$;

CREATE FUNCTION shop_router._experiment_cold(i_ids bigint[], i_exclude bigint[])
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._experiment_cold($1, $2);
$$;

CREATE FUNCTION shop_router._experiment_arms(i_experiment text, i_product_ids bigint[])
RETURNS TABLE (product_id bigint, shown bigint, clicks bigint)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._experiment_arms($1, $2);
$$;

-- exploration as one node's shop._experiment_explore: the cold products
-- are the cluster's 50 newest active ones outside the list, their counts
-- every shard's (each shard counts its own units' lists and views)
CREATE FUNCTION shop_router._experiment_explore(experiment text, ids bigint[], scores real[], lim int,
                                                share float8, exclude bigint[],
                                                OUT new_ids bigint[], OUT new_scores real[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    k int := least(lim, floor(lim * share + random())::int);
    cold bigint[];
    picks bigint[];
    keep int;
BEGIN
    new_ids := ids;
    new_scores := scores;
    IF k <= 0 THEN
        RETURN;
    END IF;
    cold := ARRAY(SELECT c FROM shop_router._experiment_cold(ids, exclude) c ORDER BY c DESC LIMIT 50);
    SELECT array_agg(d.product_id ORDER BY d.draw DESC, d.product_id) INTO picks
      FROM (SELECT c.product_id,
                   c.m + sqrt(c.v) * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS draw
              FROM (SELECT p.product_id,
                           (1.0 + coalesce(a.clicks, 0)) / (2.0 + coalesce(a.shown, 0)) AS m,
                           (1.0 + coalesce(a.clicks, 0)) * (1.0 + greatest(coalesce(a.shown, 0) - coalesce(a.clicks, 0), 0))
                             / ((2.0 + coalesce(a.shown, 0)) ^ 2 * (3.0 + coalesce(a.shown, 0))) AS v
                      FROM unnest(cold) p(product_id)
                      LEFT JOIN (SELECT x.product_id, sum(x.shown) AS shown, sum(x.clicks) AS clicks
                                   FROM shop_router._experiment_arms(experiment, cold) x
                                  GROUP BY x.product_id) a ON a.product_id = p.product_id) c
             ORDER BY c.product_id) d;
    picks := coalesce(picks[1:k], '{}');
    keep := least(cardinality(ids), lim - cardinality(picks));
    new_ids := ids[1:keep] || picks;
    new_scores := scores[1:keep] || array_fill(0::real, ARRAY[cardinality(picks)]);
END
$$;
COMMENT ON FUNCTION shop_router._experiment_explore(text, bigint[], real[], int, float8, bigint[]) IS
'router: gives about share of a list''s slots to the cluster''s cold products, by Thompson sampling on every shard''s counts';

-- the 1.1 personal list (an experiment's method 'personal'), as one
-- node's shop._recommend_personal makes it, from the cluster's co-purchase
-- lists: the seeds' neighbours summed, without what the customer bought
-- or viewed, the best active ones; trending fills the rest, without the
-- neighbours of anything bought or viewed
CREATE FUNCTION shop_router._recommend_personal(customer_id bigint, lim int)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    h record;
    mine bigint[];
    l_pids bigint[];
    l_oids bigint[];
    l_scores real[];
    ids bigint[];
    scores real[];
    active bigint[];
    n int;
BEGIN
    SELECT * INTO h FROM shop_router._recommend_history(shop_router._session(), customer_id, lim, ARRAY[NULL, '0', NULL, NULL]);
    IF h.error IS NOT NULL THEN
        PERFORM shop_router._raise(h.error);
    END IF;
    mine := ARRAY(SELECT DISTINCT u FROM unnest(coalesce(h.bought, '{}') || coalesce(h.viewed, '{}')) u);
    IF cardinality(mine) > 0 THEN
        SELECT array_agg(c.product_id), array_agg(c.other_id), array_agg(c.score)
          INTO l_pids, l_oids, l_scores
          FROM shop_router._recommend_lists(mine) c;
    END IF;
    SELECT array_agg(r.other_id ORDER BY r.sc DESC, r.other_id), array_agg(r.sc ORDER BY r.sc DESC, r.other_id)
      INTO ids, scores
      FROM (SELECT c.other_id, sum(c.score * s.w)::real AS sc
              FROM unnest(h.seed_ids, h.seed_ws) s(product_id, w)
              JOIN unnest(l_pids, l_oids, l_scores) c(product_id, other_id, score) ON c.product_id = s.product_id
             WHERE c.other_id <> ALL (coalesce(h.seed_ids, '{}'))
               AND c.other_id <> ALL (coalesce(h.bought, '{}'))
             GROUP BY c.other_id
             ORDER BY sc DESC, c.other_id
             LIMIT 3 * lim + 10) r;
    IF ids IS NOT NULL THEN
        SELECT coalesce(array_agg(a.product_id), '{}') INTO active
          FROM shop_router._cart_products(ids) a WHERE a.status = 'active';
        SELECT array_agg(r.p ORDER BY r.k), array_agg(r.s ORDER BY r.k) INTO ids, scores
          FROM (SELECT u.p, u.s, u.k FROM unnest(ids, scores) WITH ORDINALITY u(p, s, k)
                 WHERE u.p = ANY (active) ORDER BY u.k LIMIT lim) r;
    END IF;
    n := coalesce(cardinality(ids), 0);
    RETURN QUERY SELECT u.p, u.s FROM unnest(ids, scores) WITH ORDINALITY u(p, s, k) ORDER BY u.k;
    IF n >= lim THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT p.product_id, (p.popularity * 0.001)::real
      FROM shop_router._recommend_popular(lim - n, mine || coalesce(l_oids, '{}')) p
     ORDER BY p.popularity DESC, p.product_id
     LIMIT lim - n;
END
$$;
COMMENT ON FUNCTION shop_router._recommend_personal(bigint, int) IS
'router: the 1.1 personal list (item-to-item from the cluster''s co-purchase lists, trending fills the rest), for an experiment''s method personal';

CREATE FUNCTION shop.recommend(customer_id bigint, lim int DEFAULT 10, experiment text DEFAULT NULL)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    part int := shop_router._pid_part(customer_id);
    ch record;
    method text;
    ids bigint[];
    scores real[];
BEGIN
    IF experiment IS NULL THEN
        RETURN QUERY SELECT * FROM shop_router._recommend_blend(customer_id, lim);
        RETURN;
    END IF;
    -- the customer's shard: recommend's checks, the variant (SH006)
    SELECT * INTO ch FROM shop_router._experiment_choose(shop_router._session(), part, experiment, customer_id, NULL, true);
    IF ch.error IS NOT NULL THEN
        PERFORM shop_router._raise(ch.error);
    END IF;
    IF ch.variant IS NULL THEN
        RETURN QUERY SELECT * FROM shop_router._recommend_blend(customer_id, lim);
        RETURN;
    END IF;
    method := coalesce(ch.params ->> 'method', 'default');
    IF method = 'popularity' THEN
        SELECT array_agg(t.product_id ORDER BY t.n), array_agg(t.score ORDER BY t.n) INTO ids, scores
          FROM shop.trending(NULL, lim) WITH ORDINALITY t(product_id, score, n);
    ELSIF method = 'personal' THEN
        SELECT array_agg(t.product_id ORDER BY t.n), array_agg(t.score ORDER BY t.n) INTO ids, scores
          FROM shop_router._recommend_personal(customer_id, lim) WITH ORDINALITY t(product_id, score, n);
    ELSE
        SELECT array_agg(t.product_id ORDER BY t.n), array_agg(t.score ORDER BY t.n) INTO ids, scores
          FROM shop_router._recommend_blend(customer_id, lim) WITH ORDINALITY t(product_id, score, n);
    END IF;
    IF ch.params ? 'explore' THEN
        SELECT x.new_ids, x.new_scores INTO ids, scores
          FROM shop_router._experiment_explore(experiment, coalesce(ids, '{}'), coalesce(scores, '{}'), lim,
                                               (ch.params ->> 'explore')::float8, '{}') x;
    END IF;
    IF cardinality(ids) > 0 THEN
        PERFORM shop_router._experiment_impress(part, ch.experiment_id, ch.variant, ch.unit, 'recommend', ids,
                                                ch.valid_until, ch.sig);
    END IF;
    RETURN QUERY SELECT u.p, u.s FROM unnest(ids, scores) WITH ORDINALITY u(p, s, n) ORDER BY u.n;
END
$$;
COMMENT ON FUNCTION shop.recommend(bigint, int, text) IS
'router: personal recommendations blended as on one node from every shard''s part; with an experiment, the customer''s variant''s list, recorded on the customer''s shard';

CREATE FUNCTION shop.also_bought(product_id bigint, lim int DEFAULT 10, experiment text DEFAULT NULL,
                                 customer_id bigint DEFAULT NULL, visitor text DEFAULT NULL)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    part int;
    ch record;
    method text;
    ids bigint[];
    scores real[];
BEGIN
    IF experiment IS NULL THEN
        RETURN QUERY SELECT * FROM shop_router._also_bought_default(product_id, lim);
        RETURN;
    END IF;
    -- the unit's shard: the unit (the customer authorized), its variant (SH006)
    part := shop_router._unit_part(shop_router._session(), customer_id, visitor);
    SELECT * INTO ch FROM shop_router._experiment_choose(shop_router._session(), part, experiment, customer_id, visitor, false);
    IF ch.error IS NOT NULL THEN
        PERFORM shop_router._raise(ch.error);
    END IF;
    IF ch.variant IS NULL THEN
        RETURN QUERY SELECT * FROM shop_router._also_bought_default(product_id, lim);
        RETURN;
    END IF;
    method := coalesce(ch.params ->> 'method', 'default');
    IF method = 'popularity' THEN
        IF product_id IS NULL THEN
            RAISE EXCEPTION 'argument product_id must not be null' USING ERRCODE = 'null_value_not_allowed';
        END IF;
        IF NOT coalesce((SELECT bool_or(x) FROM shop_router._product_exists(product_id) x), false) THEN
            RAISE EXCEPTION 'product not found'
                USING ERRCODE = 'SH006', DETAIL = format('No product has product_id %s.', product_id);
        END IF;
        SELECT array_agg(t.product_id ORDER BY t.n), array_agg(t.score ORDER BY t.n) INTO ids, scores
          FROM (SELECT t.product_id, t.score, t.n
                  FROM shop.trending(NULL, lim + 1) WITH ORDINALITY t(product_id, score, n)
                 WHERE t.product_id <> product_id
                 ORDER BY t.n LIMIT lim) t;
    ELSIF method = 'similar' THEN
        SELECT array_agg(t.product_id ORDER BY t.n), array_agg(t.score ORDER BY t.n) INTO ids, scores
          FROM shop.similar_products(product_id, lim) WITH ORDINALITY t(product_id, score, n);
    ELSE
        SELECT array_agg(t.product_id ORDER BY t.n), array_agg(t.score ORDER BY t.n) INTO ids, scores
          FROM shop_router._also_bought_default(product_id, lim) WITH ORDINALITY t(product_id, score, n);
    END IF;
    IF ch.params ? 'explore' THEN
        SELECT x.new_ids, x.new_scores INTO ids, scores
          FROM shop_router._experiment_explore(experiment, coalesce(ids, '{}'), coalesce(scores, '{}'), lim,
                                               (ch.params ->> 'explore')::float8, ARRAY[product_id]) x;
    END IF;
    IF cardinality(ids) > 0 THEN
        PERFORM shop_router._experiment_impress(part, ch.experiment_id, ch.variant, ch.unit, 'also_bought', ids,
                                                ch.valid_until, ch.sig);
    END IF;
    RETURN QUERY SELECT u.p, u.s FROM unnest(ids, scores) WITH ORDINALITY u(p, s, n) ORDER BY u.n;
END
$$;
COMMENT ON FUNCTION shop.also_bought(bigint, int, text, bigint, text) IS
'router: customers who bought this also bought, scored with the whole cluster''s co-purchase counts; with an experiment, the unit''s variant''s list, recorded on the unit''s shard';

CREATE FUNCTION shop_router._experiment_sums(i_name text, i_alpha float8)
RETURNS TABLE (vno smallint, vname text, units bigint, n bigint, clicks bigint, carts bigint, buys bigint,
               rev float8, rev2 float8)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._experiment_sums($1, $2);
$$;

CREATE FUNCTION shop_router._experiment_report_from(i_alpha float8, i_vnos smallint[], i_vnames text[], i_units bigint[],
                                                    i_ns bigint[], i_clicks bigint[], i_carts bigint[], i_buys bigint[],
                                                    i_revs float8[], i_rev2s float8[])
RETURNS TABLE (variant text, control boolean, customers bigint, impressions bigint,
               clicks bigint, click_through float8, click_through_low float8, click_through_high float8,
               add_to_carts bigint, conversions bigint, conversion float8, conversion_low float8, conversion_high float8,
               revenue_cents bigint, revenue_per_impression float8,
               revenue_per_impression_low float8, revenue_per_impression_high float8,
               click_through_p float8, conversion_p float8, revenue_p float8,
               click_through_significant boolean, conversion_significant boolean, revenue_significant boolean)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
    SELECT * FROM shop._experiment_report_from($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);
$$;

CREATE FUNCTION shop.experiment_report(name text, alpha float8 DEFAULT 0.05)
RETURNS TABLE (variant text, control boolean, customers bigint, impressions bigint,
               clicks bigint, click_through float8, click_through_low float8, click_through_high float8,
               add_to_carts bigint, conversions bigint, conversion float8, conversion_low float8, conversion_high float8,
               revenue_cents bigint, revenue_per_impression float8,
               revenue_per_impression_low float8, revenue_per_impression_high float8,
               click_through_p float8, conversion_p float8, revenue_p float8,
               click_through_significant boolean, conversion_significant boolean, revenue_significant boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    a record;
BEGIN
    -- every shard's sums per variant (each with the report's checks)
    SELECT array_agg(x.vno ORDER BY x.vno) AS vnos, array_agg(x.vname ORDER BY x.vno) AS vnames,
           array_agg(x.units ORDER BY x.vno) AS units, array_agg(x.n ORDER BY x.vno) AS ns,
           array_agg(x.clicks ORDER BY x.vno) AS clicks, array_agg(x.carts ORDER BY x.vno) AS carts,
           array_agg(x.buys ORDER BY x.vno) AS buys, array_agg(x.rev ORDER BY x.vno) AS revs,
           array_agg(x.rev2 ORDER BY x.vno) AS rev2s
      INTO a
      FROM (SELECT s.vno, min(s.vname) AS vname, sum(s.units)::bigint AS units, sum(s.n)::bigint AS n,
                   sum(s.clicks)::bigint AS clicks, sum(s.carts)::bigint AS carts, sum(s.buys)::bigint AS buys,
                   sum(s.rev) AS rev, sum(s.rev2) AS rev2
              FROM shop_router._experiment_sums(name, alpha) s
             GROUP BY s.vno) x;
    RETURN QUERY
    SELECT * FROM shop_router._experiment_report_from(alpha, a.vnos, a.vnames, a.units, a.ns, a.clicks, a.carts,
                                                      a.buys, a.revs, a.rev2s);
END
$$;
COMMENT ON FUNCTION shop.experiment_report(text, float8) IS
'router: per variant, every shard''s impressions, clicks, add-to-carts, conversions and revenue summed; intervals and tests against the control as on one node';

REVOKE ALL ON FUNCTION shop_router._as_part(int), shop_router._experiment_create(text, jsonb, interval),
    shop.experiment_create(text, jsonb, interval), shop_router._experiment_stop_at(text, timestamptz),
    shop.experiment_stop(text), shop.experiment_bucket(text, text),
    shop_router._experiment_assign(text, text, bigint, text), shop.experiment_assign(text, bigint, text),
    shop_router._unit_part(text, bigint, text),
    shop_router._experiment_choose(text, int, text, bigint, text, boolean),
    shop_router._experiment_impress(int, integer, smallint, text, text, bigint[], bigint, text),
    shop_router._experiment_cold(bigint[], bigint[]), shop_router._experiment_arms(text, bigint[]),
    shop_router._experiment_explore(text, bigint[], real[], int, float8, bigint[]),
    shop_router._recommend_personal(bigint, int),
    shop.recommend(bigint, int, text), shop.also_bought(bigint, int, text, bigint, text),
    shop_router._experiment_sums(text, float8),
    shop_router._experiment_report_from(float8, smallint[], text[], bigint[], bigint[], bigint[], bigint[], bigint[], float8[], float8[]),
    shop.experiment_report(text, float8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._as_part(int), shop.experiment_bucket(text, text),
    shop_router._experiment_assign(text, text, bigint, text), shop.experiment_assign(text, bigint, text),
    shop_router._unit_part(text, bigint, text),
    shop_router._experiment_choose(text, int, text, bigint, text, boolean),
    shop_router._experiment_impress(int, integer, smallint, text, text, bigint[], bigint, text),
    shop_router._experiment_cold(bigint[], bigint[]), shop_router._experiment_arms(text, bigint[]),
    shop_router._experiment_explore(text, bigint[], real[], int, float8, bigint[]),
    shop_router._recommend_personal(bigint, int),
    shop.recommend(bigint, int, text), shop.also_bought(bigint, int, text, bigint, text)
    TO shop_storefront, shop_admin;
GRANT EXECUTE ON FUNCTION shop_router._experiment_create(text, jsonb, interval),
    shop.experiment_create(text, jsonb, interval), shop_router._experiment_stop_at(text, timestamptz),
    shop.experiment_stop(text), shop_router._experiment_sums(text, float8),
    shop_router._experiment_report_from(float8, smallint[], text[], bigint[], bigint[], bigint[], bigint[], bigint[], float8[], float8[]),
    shop.experiment_report(text, float8) TO shop_admin;

------------------------------------------------------------------------------
-- Popularity across shards (docs/scale-out.md, "Popularity across
-- shards"): one node's popularity of every product, from every shard's
-- decayed sums of its customers' purchases and views, aged from the
-- cluster's newest event.  A read: the shards' own popularity (what
-- trending, browse and search use) is still each shard's.
------------------------------------------------------------------------------

CREATE FUNCTION shop_router._popularity_newest()
RETURNS SETOF timestamptz
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._popularity_newest();
$$;

CREATE FUNCTION shop_router._popularity_sums(i_t_ref timestamptz)
RETURNS TABLE (product_id bigint, s float8)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._popularity_sums($1);
$$;

CREATE FUNCTION shop_router.popularity_cluster()
RETURNS TABLE (product_id bigint, popularity real)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    t timestamptz;
BEGIN
    SELECT max(x) INTO t FROM shop_router._popularity_newest() x;
    IF t IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT x.product_id, (sum(x.s) / (sum(x.s) + 10))::real
      FROM shop_router._popularity_sums(t) x
     GROUP BY x.product_id;
END
$$;
COMMENT ON FUNCTION shop_router.popularity_cluster() IS
'router: one node''s popularity of every bought or viewed product, from every shard''s decayed sums aged from the cluster''s newest event';

-- The kept masses (docs/scale-out.md, "Popularity across shards"): the
-- cluster's mass of every product bought or viewed within 16 half-lives,
-- sum(w * 2^((t - epoch) / half_life)), its count of events and the value
-- its shard has (what the last write left there), folded from the shards'
-- changes (shop._popularity_fold) by popularity_refresh.  One router
-- keeps them (the job that runs popularity_refresh); a router without
-- them, or after whole => true, recomputes them from every shard.
CREATE TABLE shop_router.popularity_state (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    fold      bigint NOT NULL,             -- the last fold stored
    epoch     timestamptz NOT NULL,        -- the masses' reference time
    lo        timestamptz NOT NULL,        -- the window: events after it are in the masses
    half_life float8 NOT NULL,             -- seconds, the shards' shop.popularity_half_life
    nparts    int NOT NULL,
    tracked   boolean NOT NULL             -- every shard logs its changes: the next fold may be incremental
);
COMMENT ON TABLE shop_router.popularity_state IS
'the kept popularity masses'' fold number, reference time, window and half-life (popularity_refresh)';
CREATE TABLE shop_router.popularity_mass (
    product_id bigint PRIMARY KEY,
    mass       float8 NOT NULL,
    n          bigint NOT NULL,            -- counted purchases and views in the window
    sent       real                        -- the value on the product's shard (NULL: not written yet)
);
COMMENT ON TABLE shop_router.popularity_mass IS
'the cluster''s decayed mass of every product bought or viewed within 16 half-lives, and the value its shard has (popularity_refresh)';
GRANT SELECT, INSERT, UPDATE, DELETE ON shop_router.popularity_state, shop_router.popularity_mass TO shop_admin;

CREATE FUNCTION shop_router._popularity_clock()
RETURNS TABLE (newest timestamptz, half_life float8)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._popularity_clock();
$$;

CREATE FUNCTION shop_router._popularity_fold(i_fold bigint, i_whole boolean, i_epoch timestamptz,
                                             i_lo_old timestamptz, i_lo_new timestamptz, i_half_life float8)
RETURNS TABLE (product_id bigint, mass float8, n bigint)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT * FROM shop._popularity_fold($1, $2, $3, $4, $5, $6);
$$;

CREATE FUNCTION shop_router._popularity_put(i_part int, i_ids bigint[], i_pops real[], i_gone bigint[], i_whole boolean)
RETURNS TABLE (product_id bigint, popularity real, moved boolean)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT * FROM shop._popularity_put($2, $3, $4, $5);
$$;

-- Every product's popularity on its shard, one node's value (S / (S +
-- 10), S its mass aged to the cluster's newest event).  A fold: every
-- shard's changes since the last one (logged by its triggers) and the
-- events that left the window, added to the kept masses; then only the
-- products whose value moved by 0.002 from what their shard has, or that
-- left the window, are written.  whole (and the first run, a changed
-- half-life or shard count, the newest event gone back, a shard that
-- logs not every change or logged a TRUNCATE): every shard's events of
-- the window, and every value written.
CREATE FUNCTION shop_router.popularity_refresh(whole boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    nparts int := shop_router._nparts();
    st shop_router.popularity_state;
    t timestamptz;
    h float8;
    h2 float8;
    lo_new timestamptz;
    epoch timestamptz;
    k bigint;
    afresh boolean;
    tracked boolean := true;
    changes bigint;
    n_moved bigint := 0;
    listed bigint;
    ids bigint[];
    pops real[];
    parts int[];
    gone bigint[];
    gone_parts int[];
BEGIN
    -- one at a time (two writers would each move the other's values)
    PERFORM pg_advisory_xact_lock(hashtext('shop_router.popularity_refresh'));
    SELECT max(c.newest), min(c.half_life), max(c.half_life) INTO t, h, h2 FROM shop_router._popularity_clock() c;
    SELECT * INTO st FROM shop_router.popularity_state;
    IF t IS NULL OR h IS DISTINCT FROM h2 THEN
        -- nothing counted, or shards of different half-lives: each shard's
        -- sums as it ages them (popularity_cluster), nothing kept
        DELETE FROM shop_router.popularity_state;
        DELETE FROM shop_router.popularity_mass;
        SELECT array_agg(c.product_id ORDER BY c.product_id), array_agg(c.popularity ORDER BY c.product_id),
               array_agg(shop_router._pid_part(c.product_id) & (nparts - 1) ORDER BY c.product_id)
          INTO ids, pops, parts
          FROM shop_router.popularity_cluster() c;
        FOR p IN 0 .. nparts - 1 LOOP
            n_moved := n_moved + coalesce((SELECT count(*) FROM shop_router._popularity_put(p,
                ARRAY(SELECT u.i FROM unnest(ids, parts) u(i, q) WHERE u.q = p),
                ARRAY(SELECT u.v FROM unnest(pops, parts) u(v, q) WHERE u.q = p)::real[], NULL, true) x WHERE x.moved), 0);
        END LOOP;
        RETURN jsonb_build_object('products', coalesce(cardinality(ids), 0), 'popularity_updated', n_moved,
                                  'fold', 'whole', 'changes', NULL);
    END IF;
    lo_new := t - make_interval(secs => 16 * h);
    k := coalesce(st.fold, 0) + 1;
    afresh := whole OR st.fold IS NULL OR NOT st.tracked OR st.half_life <> h OR st.nparts <> nparts OR lo_new < st.lo;
    CREATE TEMP TABLE IF NOT EXISTS popularity_fold_rows (product_id bigint, mass float8, n bigint) ON COMMIT DROP;
    TRUNCATE popularity_fold_rows;
    IF NOT afresh THEN
        epoch := st.epoch;
        IF t - epoch > make_interval(secs => 64 * h) THEN
            -- the masses grow as 2^(age of the epoch): aged to t now and then
            UPDATE shop_router.popularity_mass m
               SET mass = m.mass * exp(-ln(2::float8) * extract(epoch FROM t - epoch)::float8 / h);
            epoch := t;
        END IF;
        INSERT INTO popularity_fold_rows SELECT * FROM shop_router._popularity_fold(k, false, epoch, st.lo, lo_new, h);
        afresh := EXISTS (SELECT 1 FROM popularity_fold_rows f WHERE f.product_id IS NULL);
    END IF;
    IF afresh THEN
        epoch := t;
        TRUNCATE popularity_fold_rows;
        INSERT INTO popularity_fold_rows SELECT * FROM shop_router._popularity_fold(k, true, epoch, NULL, lo_new, h);
        tracked := NOT EXISTS (SELECT 1 FROM popularity_fold_rows f WHERE f.product_id IS NULL);
        DELETE FROM shop_router.popularity_mass;
    END IF;
    SELECT count(*) INTO changes FROM popularity_fold_rows f WHERE f.product_id IS NOT NULL;
    -- the changes added
    INSERT INTO shop_router.popularity_mass AS m (product_id, mass, n)
    SELECT f.product_id, sum(f.mass), sum(f.n) FROM popularity_fold_rows f WHERE f.product_id IS NOT NULL GROUP BY f.product_id
    ON CONFLICT (product_id) DO UPDATE SET mass = m.mass + excluded.mass, n = m.n + excluded.n;
    -- out of the window: no counted event left (each sent to its shard,
    -- also one the router knows no value of: a refresh rolled back on the
    -- router may have written one)
    WITH d AS (
        DELETE FROM shop_router.popularity_mass m WHERE m.n <= 0 RETURNING m.product_id
    )
    SELECT array_agg(d.product_id ORDER BY d.product_id), array_agg(shop_router._pid_part(d.product_id) & (nparts - 1) ORDER BY d.product_id)
      INTO gone, gone_parts
      FROM d;
    -- the values to write: every one afresh, else those that moved by 0.002
    -- from what their shard has
    SELECT array_agg(v.product_id ORDER BY v.product_id), array_agg(v.pop ORDER BY v.product_id),
           array_agg(shop_router._pid_part(v.product_id) & (nparts - 1) ORDER BY v.product_id)
      INTO ids, pops, parts
      FROM (SELECT m.product_id, m.sent,
                   (s / (s + 10))::real AS pop
              FROM shop_router.popularity_mass m,
                   LATERAL (SELECT greatest(m.mass, 0) * exp(-ln(2::float8) * extract(epoch FROM t - epoch)::float8 / h) AS s) x) v
     WHERE afresh OR v.sent IS NULL OR abs(v.pop - v.sent) >= 0.002;
    FOR p IN 0 .. nparts - 1 LOOP
        WITH w AS (
            SELECT * FROM shop_router._popularity_put(p,
                ARRAY(SELECT u.i FROM unnest(ids, parts) u(i, q) WHERE u.q = p),
                ARRAY(SELECT u.v FROM unnest(pops, parts) u(v, q) WHERE u.q = p)::real[],
                ARRAY(SELECT u.i FROM unnest(gone, gone_parts) u(i, q) WHERE u.q = p), afresh)
        ), kept AS (
            UPDATE shop_router.popularity_mass m SET sent = w.popularity FROM w WHERE m.product_id = w.product_id
        )
        SELECT n_moved + count(*) FILTER (WHERE w.moved) INTO n_moved FROM w;
    END LOOP;
    SELECT count(*) INTO listed FROM shop_router.popularity_mass;
    INSERT INTO shop_router.popularity_state AS s (fold, epoch, lo, half_life, nparts, tracked)
    VALUES (k, epoch, lo_new, h, nparts, tracked)
    ON CONFLICT (id) DO UPDATE SET fold = excluded.fold, epoch = excluded.epoch, lo = excluded.lo,
                                   half_life = excluded.half_life, nparts = excluded.nparts, tracked = excluded.tracked;
    RETURN jsonb_build_object('products', listed, 'popularity_updated', n_moved,
                              'fold', CASE WHEN afresh THEN 'whole' ELSE 'incremental' END, 'changes', changes);
END
$$;
COMMENT ON FUNCTION shop_router.popularity_refresh(boolean) IS
'router: writes the cluster''s popularity to every product''s shard (one node''s values), folding the shards'' logged changes into the kept masses (whole: recomputed from every shard); returns the products listed, how many values moved (by 0.002), the kind of fold and the changes read';

REVOKE ALL ON FUNCTION shop_router._popularity_newest(), shop_router._popularity_sums(timestamptz),
    shop_router.popularity_cluster(),
    shop_router._popularity_clock(),
    shop_router._popularity_fold(bigint, boolean, timestamptz, timestamptz, timestamptz, float8),
    shop_router._popularity_put(int, bigint[], real[], bigint[], boolean),
    shop_router.popularity_refresh(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._popularity_newest(), shop_router._popularity_sums(timestamptz),
    shop_router.popularity_cluster(),
    shop_router._popularity_clock(),
    shop_router._popularity_fold(bigint, boolean, timestamptz, timestamptz, timestamptz, float8),
    shop_router._popularity_put(int, bigint[], real[], bigint[], boolean),
    shop_router.popularity_refresh(boolean) TO shop_admin;

------------------------------------------------------------------------------
-- Direct holds (docs/scale-out.md, "Direct holds"): shop.reserve,
-- reserve_many, reservation_release, reservation_commit and
-- reservation_extend, the back office's (shop_admin), as on one node.  The
-- router chooses each hold's id: a uuid whose last 16 bits are the
-- product's hash bucket (shop_router._uuid_for(hashint8(product_id))), so
-- the calls that name a hold by id go to its product's shard from the id
-- alone.  A hold made elsewhere (on a shard directly, or by a checkout's
-- saga, whose ids are derived from the order) is looked for on every shard
-- when the id's shard does not have it.  shop's side: the section
-- "Cluster: direct holds and replicated rates through the router" of its
-- update script.
------------------------------------------------------------------------------

-- a refused hold (SH001, SH006, 22004, 22023) comes back as data
-- (shop._reserve_try) and reserve raises it: a shard's error would leave
-- its connection to be remade (issue 16)
CREATE FUNCTION shop_router._reserve(i_product_id bigint, i_qty int, i_ref text, i_ttl interval, i_id uuid,
                                     OUT id uuid, OUT error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON shop_router._pid_part(i_product_id);
    SELECT * FROM shop._reserve_try($1, $2, $3, $4, $5);
$$;

CREATE FUNCTION shop.reserve(product_id bigint, qty int, ref text DEFAULT NULL,
                             ttl interval DEFAULT '15 minutes')
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := shop_router._reserve(product_id, qty, ref, ttl,
                              shop_router._uuid_for(shop_router._pid_part(product_id)));
    IF r.error IS NOT NULL THEN
        PERFORM shop_router._raise(r.error);
    END IF;
    RETURN r.id;
END
$$;
COMMENT ON FUNCTION shop.reserve(bigint, int, text, interval) IS
'router: hold qty units of a product on its shard (the id names the shard); SH001 rather than oversell';

-- reserve_many: every item checked as one node checks it (any item the
-- router cannot read as one node reads it sends the whole call to one
-- shard, whose shop.reserve_many raises one node's error, ref and ttl
-- first); then each shard holds its lines, all or nothing there, at once
-- (each shard's refusal comes back as data, shop._reserve_many_any_try
-- and shop._reserve_many_try, and reserve_many raises it: a shard's error
-- would leave the connections of the call to be remade; issue 16, ha5)
CREATE FUNCTION shop_router._reserve_many_any(i_items jsonb, i_ref text, i_ttl interval,
                                              OUT ids uuid[], OUT error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
    SELECT * FROM shop._reserve_many_any_try($1, $2, $3);
$$;

-- one row a shard: the holds it made, or the product it refused and why
CREATE FUNCTION shop_router._reserve_many_split(i_product_ids bigint[], i_qtys int[], i_ref text, i_ttl interval,
                                                i_ids uuid[])
RETURNS TABLE (held int, product_id bigint, error text[])
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids, i_qtys, i_ids;
    RUN ON hashint8(i_product_ids);
    SELECT * FROM shop._reserve_many_try($1, $2, $3, $4, $5);
$$;

CREATE FUNCTION shop_router._reservations_drop(i_product_ids bigint[], i_ids uuid[])
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    SPLIT i_product_ids, i_ids;
    RUN ON hashint8(i_product_ids);
    SELECT shop._reservations_drop($1, $2);
$$;

-- an integral jsonb number as shop.reserve_many reads it (2.0 is 2; 1.5,
-- a string, or a number outside bigint is NULL: not readable)
CREATE FUNCTION shop_router._item_int(v jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' AND v::text ~ '^-?[0-9]+(\.0*)?$'
                 AND trunc(v::numeric) BETWEEN -9223372036854775808 AND 9223372036854775807
                THEN trunc(v::numeric)::bigint END
$$;

CREATE FUNCTION shop.reserve_many(items jsonb, ref text DEFAULT NULL, ttl interval DEFAULT '15 minutes')
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    pids bigint[];
    qtys int[];
    ids uuid[];
    readable boolean;
    a record;
    refusal text[];
BEGIN
    -- one node's checks of the items (inventory.md): an array of 1 to 1000
    -- objects with an integral product_id and a qty of 1 to 1,000,000, at
    -- most 1,000,000 units of a product in all
    readable := items IS NOT NULL AND jsonb_typeof(items) = 'array'
                AND jsonb_array_length(items) BETWEEN 1 AND 1000;
    IF readable THEN
        SELECT bool_and(jsonb_typeof(e) = 'object' AND shop_router._item_int(e->'product_id') IS NOT NULL
                        AND shop_router._item_int(e->'qty') BETWEEN 1 AND 1000000)
          INTO readable
          FROM jsonb_array_elements(items) e;
    END IF;
    IF readable THEN
        SELECT array_agg(x.p ORDER BY x.p), array_agg(x.q ORDER BY x.p), bool_and(x.q <= 1000000)
          INTO pids, qtys, readable
          FROM (SELECT shop_router._item_int(e->'product_id') AS p, sum(shop_router._item_int(e->'qty')) AS q
                  FROM jsonb_array_elements(items) e
                 GROUP BY 1) x;
    END IF;
    IF NOT coalesce(readable, false) THEN
        -- one node's error (shop.reserve_many refuses the items before it
        -- holds anything)
        a := shop_router._reserve_many_any(items, ref, ttl);
        IF a.error IS NOT NULL THEN
            PERFORM shop_router._raise(a.error);
        END IF;
        RETURN a.ids;
    END IF;
    SELECT array_agg(shop_router._uuid_for(hashint8(p)) ORDER BY o) INTO ids
      FROM unnest(pids) WITH ORDINALITY u(p, o);
    BEGIN
        SELECT s.error INTO refusal FROM shop_router._reserve_many_split(pids, qtys, ref, ttl, ids) s
         WHERE s.error IS NOT NULL ORDER BY s.product_id LIMIT 1;
    EXCEPTION WHEN OTHERS THEN
        -- all or nothing: what the other shards held goes back
        PERFORM count(*) FROM shop_router._reservations_drop(pids, ids);
        RAISE;
    END;
    IF refusal IS NOT NULL THEN
        -- a shard's refusal (the least product's: one node holds in
        -- product order), after every shard answered; what the others
        -- held goes back
        PERFORM count(*) FROM shop_router._reservations_drop(pids, ids);
        PERFORM shop_router._raise(refusal);
    END IF;
    RETURN ids;
END
$$;
COMMENT ON FUNCTION shop.reserve_many(jsonb, text, interval) IS
'router: all-or-nothing holds for [{"product_id":..,"qty":..},..] on the products'' shards (a shard that refuses makes the others release); one id per distinct product, in product_id order';

-- A hold by id: on the shard its id names, else on the shard of the
-- product some shard holds it for (ids the router did not make)
CREATE FUNCTION shop_router._reservation_product(i_id uuid)
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT r.product_id FROM shop.reservation r WHERE r.reservation_id = $1 LIMIT 1;
$$;

-- the partition to ask after part said SH006: NULL when no other shard
-- holds the id either
CREATE FUNCTION shop_router._reservation_part(i_id uuid, i_tried int)
RETURNS int
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h FROM (SELECT hashint8(min(p)) AS h FROM shop_router._reservation_product(i_id) p) x
     WHERE h IS NOT NULL AND (h & (shop_router._nparts() - 1)) <> (i_tried & (shop_router._nparts() - 1))
$$;

CREATE FUNCTION shop_router._reservation_release(i_part int, i_id uuid)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT shop.reservation_release($2);
$$;

CREATE FUNCTION shop_router._reservation_commit(i_part int, i_id uuid)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT shop.reservation_commit($2);
$$;

CREATE FUNCTION shop_router._reservation_extend(i_part int, i_id uuid, i_ttl interval)
RETURNS timestamptz
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT shop.reservation_extend($2, $3);
$$;

CREATE FUNCTION shop.reservation_release(reservation_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    part int := shop_router._uuid_part(reservation_id);
BEGIN
    BEGIN
        RETURN shop_router._reservation_release(part, reservation_id);
    EXCEPTION WHEN SQLSTATE 'SH006' THEN
        part := shop_router._reservation_part(reservation_id, part);
        IF part IS NULL THEN
            RAISE;
        END IF;
    END;
    RETURN shop_router._reservation_release(part, reservation_id);
END
$$;
COMMENT ON FUNCTION shop.reservation_release(uuid) IS
'router: give a held reservation''s units back on its product''s shard; false when already released or expired (idempotent)';

CREATE FUNCTION shop.reservation_commit(reservation_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    part int := shop_router._uuid_part(reservation_id);
BEGIN
    BEGIN
        RETURN shop_router._reservation_commit(part, reservation_id);
    EXCEPTION WHEN SQLSTATE 'SH006' THEN
        part := shop_router._reservation_part(reservation_id, part);
        IF part IS NULL THEN
            RAISE;
        END IF;
    END;
    RETURN shop_router._reservation_commit(part, reservation_id);
END
$$;
COMMENT ON FUNCTION shop.reservation_commit(uuid) IS
'router: the reserved units leave stock on the product''s shard; false when already committed (idempotent)';

CREATE FUNCTION shop.reservation_extend(reservation_id uuid, ttl interval)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    part int := shop_router._uuid_part(reservation_id);
BEGIN
    BEGIN
        RETURN shop_router._reservation_extend(part, reservation_id, ttl);
    EXCEPTION WHEN SQLSTATE 'SH006' THEN
        part := shop_router._reservation_part(reservation_id, part);
        IF part IS NULL THEN
            RAISE;
        END IF;
    END;
    RETURN shop_router._reservation_extend(part, reservation_id, ttl);
END
$$;
COMMENT ON FUNCTION shop.reservation_extend(uuid, interval) IS
'router: move a held reservation''s expiry on its product''s shard to now() + ttl, or to infinity when ttl is NULL';

REVOKE ALL ON FUNCTION shop_router._reserve(bigint, int, text, interval, uuid),
    shop.reserve(bigint, int, text, interval), shop_router._reserve_many_any(jsonb, text, interval),
    shop_router._reserve_many_split(bigint[], int[], text, interval, uuid[]),
    shop_router._reservations_drop(bigint[], uuid[]), shop_router._item_int(jsonb),
    shop.reserve_many(jsonb, text, interval), shop_router._reservation_product(uuid),
    shop_router._reservation_part(uuid, int), shop_router._reservation_release(int, uuid),
    shop_router._reservation_commit(int, uuid), shop_router._reservation_extend(int, uuid, interval),
    shop.reservation_release(uuid), shop.reservation_commit(uuid), shop.reservation_extend(uuid, interval)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._reserve(bigint, int, text, interval, uuid),
    shop.reserve(bigint, int, text, interval), shop_router._reserve_many_any(jsonb, text, interval),
    shop_router._reserve_many_split(bigint[], int[], text, interval, uuid[]),
    shop_router._reservations_drop(bigint[], uuid[]), shop_router._item_int(jsonb),
    shop.reserve_many(jsonb, text, interval), shop_router._reservation_product(uuid),
    shop_router._reservation_part(uuid, int), shop_router._reservation_release(int, uuid),
    shop_router._reservation_commit(int, uuid), shop_router._reservation_extend(int, uuid, interval),
    shop.reservation_release(uuid), shop.reservation_commit(uuid), shop.reservation_extend(uuid, interval)
    TO shop_admin;

------------------------------------------------------------------------------
-- Replicated rates (docs/scale-out.md, "Replicated tables"): the tax and
-- shipping rules are on every shard, and partition 0 holds the cluster's
-- copy.  A write goes there first, then every shard's tables are made
-- equal to partition 0's (one transaction a shard; the rows with their
-- ids).  A shard that missed it (down, or its step failed) makes the call
-- fail after the others applied it; a retry of the call, any later rate
-- write or shop_router.rates_sync() brings it back in step.
-- shop_router.replicated_check() compares every replicated table of every
-- shard with partition 0's.
------------------------------------------------------------------------------

CREATE FUNCTION shop_router._tax_rate_put(i_country text, i_region text, i_basis_points int)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
    SELECT shop._rates_tax_put($1, $2, $3);
$$;

CREATE FUNCTION shop_router._shipping_rate_put(i_country text, i_min_subtotal_cents bigint, i_cents bigint)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON 0;
    SELECT shop._rates_shipping_put($1, $2, $3);
$$;

CREATE FUNCTION shop_router._rates_doc(i_part int)
RETURNS jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT shop._rates_doc();
$$;

CREATE FUNCTION shop_router._rates_docs()
RETURNS SETOF jsonb
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._rates_doc();
$$;

CREATE FUNCTION shop_router._rates_replace(i_doc jsonb)
RETURNS SETOF int
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON ALL;
    SELECT shop._rates_replace($1);
$$;

CREATE FUNCTION shop_router._replicated_digest(i_part int)
RETURNS TABLE (tbl text, n bigint, digest text)
LANGUAGE plproxy
AS $$
    CLUSTER 'shop_cluster';
    RUN ON i_part;
    SELECT * FROM shop._replicated_digest();
$$;

CREATE FUNCTION shop_router.rates_sync(from_partition int DEFAULT 0)
RETURNS int
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    doc jsonb;
BEGIN
    IF from_partition IS NULL OR from_partition < 0 OR from_partition >= shop_router._nparts() THEN
        RAISE EXCEPTION 'from_partition out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('from_partition is %s; the cluster has the partitions 0 to %s.',
                                  coalesce(from_partition::text, 'NULL'), shop_router._nparts() - 1);
    END IF;
    PERFORM pg_advisory_xact_lock(1936224112, 4);   -- 'shop'; 4: rate writes
    doc := shop_router._rates_doc(from_partition);
    IF from_partition <> 0 THEN
        -- another partition's rules taken as the cluster's (partition 0
        -- restored from an older backup): newer than every shard's copy,
        -- partition 0's included, whose next write counts on from there
        doc := jsonb_set(doc, '{version}',
                         to_jsonb((SELECT max((d ->> 'version')::bigint) FROM shop_router._rates_docs() d) + 1));
    END IF;
    RETURN (SELECT coalesce(sum(x), 0)::int FROM shop_router._rates_replace(doc) x);
END
$$;
COMMENT ON FUNCTION shop_router.rates_sync(int) IS
'router: make every shard''s tax and shipping rules equal to those of a partition (0, the cluster''s copy, by default); returns the rows deleted and inserted on the shards';

CREATE FUNCTION shop_router.tax_rate_set(country text, region text, basis_points int)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1936224112, 4);
    id := shop_router._tax_rate_put(country, region, basis_points);
    PERFORM shop_router.rates_sync();
    RETURN id;
END
$$;
COMMENT ON FUNCTION shop_router.tax_rate_set(text, text, int) IS
'router: set the tax rule of a country and region (NULLs: any) on every shard, or remove it when basis_points is NULL; returns its rate_id';

CREATE FUNCTION shop_router.shipping_rate_set(country text, min_subtotal_cents bigint, cents bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1936224112, 4);
    id := shop_router._shipping_rate_put(country, min_subtotal_cents, cents);
    PERFORM shop_router.rates_sync();
    RETURN id;
END
$$;
COMMENT ON FUNCTION shop_router.shipping_rate_set(text, bigint, bigint) IS
'router: set the shipping price of a country (NULL: any) from a subtotal on every shard, or remove it when cents is NULL; returns its rate_id';

-- every shard in turn: one that cannot be reached (down, or its call
-- fails) is listed with no rows and no digest, and disagrees
CREATE FUNCTION shop_router.replicated_check()
RETURNS TABLE (tbl text, partition int, n bigint, digest text, agrees boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tables text[] := ARRAY['category', 'experiment', 'shipping_rate', 'synonym', 'tax_rate'];
    got jsonb := '[]';
BEGIN
    FOR p IN 0 .. shop_router._nparts() - 1 LOOP
        BEGIN
            got := got || (SELECT jsonb_agg(jsonb_build_object('tbl', x.tbl, 'part', p, 'n', x.n, 'digest', x.digest))
                             FROM shop_router._replicated_digest(p) x);
        EXCEPTION WHEN OTHERS THEN
            got := got || (SELECT jsonb_agg(jsonb_build_object('tbl', t, 'part', p)) FROM unnest(tables) t);
        END;
    END LOOP;
    RETURN QUERY
    WITH d AS (SELECT * FROM jsonb_to_recordset(got) AS r(tbl text, part int, n bigint, digest text))
    SELECT d.tbl, d.part, d.n, d.digest, coalesce(d.digest = z.digest, false)
      FROM d LEFT JOIN d z ON z.tbl = d.tbl AND z.part = 0
     ORDER BY d.tbl, d.part;
END
$$;
COMMENT ON FUNCTION shop_router.replicated_check() IS
'router: every replicated table (categories, synonyms, rates, experiments) of every shard: rows, digest, and whether it agrees with partition 0''s (a shard that cannot be reached: NULLs, false)';

REVOKE ALL ON FUNCTION shop_router._tax_rate_put(text, text, int),
    shop_router._shipping_rate_put(text, bigint, bigint), shop_router._rates_doc(int), shop_router._rates_docs(),
    shop_router._rates_replace(jsonb), shop_router._replicated_digest(int), shop_router.rates_sync(int),
    shop_router.tax_rate_set(text, text, int), shop_router.shipping_rate_set(text, bigint, bigint),
    shop_router.replicated_check() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop_router._tax_rate_put(text, text, int),
    shop_router._shipping_rate_put(text, bigint, bigint), shop_router._rates_doc(int), shop_router._rates_docs(),
    shop_router._rates_replace(jsonb), shop_router._replicated_digest(int), shop_router.rates_sync(int),
    shop_router.tax_rate_set(text, text, int), shop_router.shipping_rate_set(text, bigint, bigint),
    shop_router.replicated_check() TO shop_admin;
