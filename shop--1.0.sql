/* shop--1.0.sql: the whole SQL API of the shop extension, version 1.0.
 *
 * Sections, one per subsystem (each owns its tables, functions and
 * privileges; docs/<subsystem>.md documents them):
 *   1. Helpers            internal functions shared by every section
 *   2. Catalog            categories, products, reviews
 *   3. Inventory          stock, reservations
 *   4. Cart               carts and their lines
 *   5. Orders & payments  orders, lines, events, payments, idempotency, outbox
 *   6. Search             the shop_search access method and search API
 *   7. Recommendations    co-purchase tables, views, trending
 *   8. Operations         sweep, metrics, alerts
 *
 * Conventions: money is bigint minor units of shop.currency; every function
 * pins search_path; errors use the SQLSTATEs of docs/errors.md; user-data
 * tables are registered with pg_extension_config_dump so pg_dump keeps
 * their rows.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION shop CASCADE" to load this file. \quit

------------------------------------------------------------------------------
-- 1. Helpers
------------------------------------------------------------------------------

CREATE FUNCTION shop._card_number_check(value text, what text)
RETURNS void
AS 'MODULE_PATHNAME', 'shop_card_number_check'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION shop._card_number_check(text, text) IS
'internal: raise SH005 (card_number_refused) if value holds a Luhn-valid 13-19 digit number; "what" names the argument';

CREATE FUNCTION shop._card_number_check(value jsonb, what text)
RETURNS void
AS 'MODULE_PATHNAME', 'shop_card_number_check'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION shop._card_number_check(jsonb, text) IS
'internal: raise SH005 (card_number_refused) if any key or scalar of value holds a card number';

CREATE FUNCTION shop.contains_card_number(value text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_contains_card_number'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop.contains_card_number(text) IS
'true when value holds something that looks like a payment card number (Luhn-valid run of 13-19 digits)';

CREATE FUNCTION shop.stem(word text, language text DEFAULT 'english')
RETURNS text
AS 'MODULE_PATHNAME', 'shop_stem'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop.stem(text, text) IS
'Snowball (libstemmer) stem of one word, lower-cased';

-- _require: raise 22004 when a required argument is NULL.
CREATE FUNCTION shop._require(value anyelement, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION 'argument % must not be null', what
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
END
$$;
COMMENT ON FUNCTION shop._require(anyelement, text) IS
'internal: raise 22004 (null_value_not_allowed) when a required argument is NULL';

-- _check_page: validate lim/off of list calls (1..1000, 0..100000).
CREATE FUNCTION shop._check_page(lim int, off int DEFAULT 0)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
    IF off IS NULL OR off < 0 OR off > 100000 THEN
        RAISE EXCEPTION 'offset out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('off is %s; it must be between 0 and 100000.', coalesce(off::text, 'NULL'));
    END IF;
END
$$;
COMMENT ON FUNCTION shop._check_page(int, int) IS
'internal: raise 22023 unless 1 <= lim <= 1000 and 0 <= off <= 100000';

-- _check_text: reject overlong text (22001) and card numbers (SH005).
CREATE FUNCTION shop._check_text(value text, what text, max_len int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RETURN;
    END IF;
    IF length(value) > max_len THEN
        RAISE EXCEPTION '% is too long', what
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('%s has %s characters; at most %s are allowed.', what, length(value), max_len);
    END IF;
    PERFORM shop._card_number_check(value, what);
END
$$;
COMMENT ON FUNCTION shop._check_text(text, text, int) IS
'internal: raise 22001 when value is longer than max_len characters, SH005 when it holds a card number';

-- _slugify: lower-case ASCII words joined by dashes.
CREATE FUNCTION shop._slugify(value text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT coalesce(nullif(trim(both '-' from
               regexp_replace(lower(value), '[^a-z0-9]+', '-', 'g')), ''), 'category')
$$;
COMMENT ON FUNCTION shop._slugify(text) IS 'internal: URL slug of a name';

------------------------------------------------------------------------------
-- 2. Catalog
------------------------------------------------------------------------------

CREATE TABLE shop.category (
    category_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    parent_id   bigint REFERENCES shop.category (category_id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        text NOT NULL UNIQUE,
    -- ancestors from the root down to this category, itself included;
    -- maintained by trigger, used to find descendants without recursion
    path        bigint[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (parent_id, name)
);
CREATE INDEX category_parent_idx ON shop.category (parent_id);
CREATE INDEX category_path_idx ON shop.category USING gin (path);
COMMENT ON TABLE shop.category IS 'product categories, a tree (parent_id); path lists the ancestors';

-- Keep path and slug right on insert and on moves; refuse cycles.
CREATE FUNCTION shop._category_path_trg()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    ppath bigint[];
    pslug text;
BEGIN
    IF NEW.parent_id IS NULL THEN
        NEW.path := ARRAY[NEW.category_id];
        pslug := NULL;
    ELSE
        SELECT path, slug INTO ppath, pslug
          FROM shop.category WHERE category_id = NEW.parent_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'category not found'
                USING ERRCODE = 'SH006',
                      DETAIL = format('No category has category_id %s.', NEW.parent_id);
        END IF;
        IF NEW.category_id = ANY (ppath) THEN
            RAISE EXCEPTION 'category cycle'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Category %s cannot be moved under its own descendant %s.',
                                      NEW.category_id, NEW.parent_id);
        END IF;
        NEW.path := ppath || NEW.category_id;
    END IF;
    IF TG_OP = 'INSERT' AND (NEW.slug IS NULL OR NEW.slug = '') THEN
        NEW.slug := concat_ws('/', pslug, shop._slugify(NEW.name));
        IF EXISTS (SELECT 1 FROM shop.category WHERE slug = NEW.slug) THEN
            NEW.slug := NEW.slug || '-' || NEW.category_id;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION shop._category_path_trg() IS 'internal: maintains shop.category.path and slug';

CREATE TRIGGER category_path BEFORE INSERT OR UPDATE OF parent_id ON shop.category
    FOR EACH ROW EXECUTE FUNCTION shop._category_path_trg();

-- After a move, the descendants' paths follow (each update fires the
-- trigger again one level down).
CREATE FUNCTION shop._category_move_trg()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    UPDATE shop.category SET parent_id = parent_id WHERE parent_id = NEW.category_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION shop._category_move_trg() IS 'internal: re-derives the paths below a moved category';

CREATE TRIGGER category_move AFTER UPDATE OF parent_id ON shop.category
    FOR EACH ROW WHEN (OLD.path IS DISTINCT FROM NEW.path)
    EXECUTE FUNCTION shop._category_move_trg();

CREATE TABLE shop.product (
    product_id   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    sku          text NOT NULL CHECK (length(sku) BETWEEN 1 AND 100),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    description  text CHECK (length(description) <= 20000),
    brand        text CHECK (length(brand) <= 200),
    category_id  bigint REFERENCES shop.category (category_id),
    price_cents  bigint NOT NULL CHECK (price_cents >= 0),
    attributes   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    images       text[] NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active', 'draft', 'archived')),
    -- rating aggregates are kept exact: sum and count of the ratings of
    -- shop.review; the average derives from them
    rating_sum   bigint NOT NULL DEFAULT 0 CHECK (rating_sum >= 0),
    rating_count integer NOT NULL DEFAULT 0 CHECK (rating_count >= 0),
    rating_avg   numeric(3,2) GENERATED ALWAYS AS
                 (CASE WHEN rating_count > 0
                       THEN round(rating_sum::numeric / rating_count, 2) END) STORED,
    popularity   real NOT NULL DEFAULT 0 CHECK (popularity >= 0),
    -- true while some location has units on hand (holds do not clear it);
    -- maintained by the inventory calls, read by the search filter in_stock
    in_stock     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_category_idx ON shop.product (category_id, popularity DESC);
CREATE INDEX product_brand_idx ON shop.product (brand);
COMMENT ON TABLE shop.product IS
'the catalog: one row per sellable item; INSERT/COPY work as well as shop.product_upsert';

-- SKUs are unique.  The uniqueness lives in a lookup table keyed by sku so
-- that shop.product keeps product_id first in every key (the distribution
-- rule of DESIGN.md section 2); statement-level triggers keep it in step
-- with INSERT, COPY, UPDATE and DELETE on shop.product.
CREATE TABLE shop.product_sku (
    sku        text PRIMARY KEY,
    product_id bigint NOT NULL REFERENCES shop.product (product_id)
               ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE
);
CREATE INDEX product_sku_product_idx ON shop.product_sku (product_id);
COMMENT ON TABLE shop.product_sku IS 'sku -> product_id lookup; enforces unique SKUs';

CREATE FUNCTION shop._product_sku_ins_trg()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    INSERT INTO shop.product_sku (sku, product_id)
    SELECT sku, product_id FROM new_rows;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION shop._product_sku_ins_trg() IS 'internal: registers the SKUs of inserted products';

CREATE FUNCTION shop._product_sku_upd_trg()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    DELETE FROM shop.product_sku s
     USING old_rows o JOIN new_rows n USING (product_id)
     WHERE s.sku = o.sku AND o.sku IS DISTINCT FROM n.sku;
    INSERT INTO shop.product_sku (sku, product_id)
    SELECT n.sku, n.product_id
      FROM old_rows o JOIN new_rows n USING (product_id)
     WHERE o.sku IS DISTINCT FROM n.sku;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION shop._product_sku_upd_trg() IS 'internal: follows SKU changes of updated products';

CREATE TRIGGER product_sku_ins AFTER INSERT ON shop.product
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shop._product_sku_ins_trg();
CREATE TRIGGER product_sku_upd AFTER UPDATE ON shop.product
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shop._product_sku_upd_trg();

CREATE FUNCTION shop._touch_updated_at_trg()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION shop._touch_updated_at_trg() IS 'internal: sets updated_at on every update';

CREATE TRIGGER product_touch BEFORE UPDATE ON shop.product
    FOR EACH ROW EXECUTE FUNCTION shop._touch_updated_at_trg();

CREATE TABLE shop.review (
    product_id        bigint NOT NULL REFERENCES shop.product (product_id) ON DELETE CASCADE,
    customer_id       bigint NOT NULL,
    rating            smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    title             text CHECK (length(title) <= 200),
    body              text CHECK (length(body) <= 10000),
    verified_purchase boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, customer_id)
);
CREATE INDEX review_recent_idx ON shop.review (product_id, created_at DESC);
COMMENT ON TABLE shop.review IS 'one review per customer and product; shop.review_add keeps the product''s rating aggregates exact';

-- category_add: create a category (or return the existing one of the same
-- name under the same parent).
CREATE FUNCTION shop.category_add(name text, parent_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    id bigint;
BEGIN
    PERFORM shop._require(name, 'name');
    name := btrim(name);
    IF name = '' THEN
        RAISE EXCEPTION 'category name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM shop._check_text(name, 'name', 200);
    IF parent_id IS NOT NULL AND NOT EXISTS
        (SELECT 1 FROM shop.category c WHERE c.category_id = category_add.parent_id) THEN
        RAISE EXCEPTION 'category not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No category has category_id %s.', parent_id);
    END IF;
    INSERT INTO shop.category AS c (parent_id, name, slug)
    VALUES (category_add.parent_id, category_add.name, '')
    ON CONFLICT (parent_id, name) DO NOTHING
    RETURNING c.category_id INTO id;
    IF id IS NULL THEN
        SELECT c.category_id INTO id FROM shop.category c
         WHERE c.parent_id IS NOT DISTINCT FROM category_add.parent_id
           AND c.name = category_add.name;
    END IF;
    RETURN id;
END
$$;
COMMENT ON FUNCTION shop.category_add(text, bigint) IS
'add a category under parent_id (NULL: a root); returns its id, the existing one if the name is taken under that parent';

CREATE FUNCTION shop.category_descendants(category_id bigint)
RETURNS bigint[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT coalesce(array_agg(c.category_id ORDER BY c.category_id), '{}')
      FROM shop.category c
     WHERE c.path @> ARRAY[category_descendants.category_id]
$$;
COMMENT ON FUNCTION shop.category_descendants(bigint) IS
'the category and every category below it';

CREATE FUNCTION shop.category_path(category_id bigint)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('category_id', a.category_id,
                                                 'name', a.name, 'slug', a.slug)
                              ORDER BY p.ord), '[]')
      FROM shop.category c
      CROSS JOIN LATERAL unnest(c.path) WITH ORDINALITY AS p(id, ord)
      JOIN shop.category a ON a.category_id = p.id
     WHERE c.category_id = category_path.category_id
$$;
COMMENT ON FUNCTION shop.category_path(bigint) IS
'breadcrumbs of a category: its ancestors from the root, itself last, as a jsonb array';

-- _check_product_fields: the validation shared by product_upsert's insert
-- and update paths.
CREATE FUNCTION shop._check_product_fields(sku text, title text, price_cents bigint,
                                           description text, brand text, category_id bigint,
                                           attributes jsonb, images text[], status text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._check_text(sku, 'sku', 100);
    PERFORM shop._check_text(title, 'title', 500);
    PERFORM shop._check_text(description, 'description', 20000);
    PERFORM shop._check_text(brand, 'brand', 200);
    IF sku IS NOT NULL AND btrim(sku) = '' THEN
        RAISE EXCEPTION 'sku must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF title IS NOT NULL AND btrim(title) = '' THEN
        RAISE EXCEPTION 'title must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF price_cents IS NOT NULL AND price_cents < 0 THEN
        RAISE EXCEPTION 'price must not be negative'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('price_cents is %s.', price_cents);
    END IF;
    IF category_id IS NOT NULL AND NOT EXISTS
        (SELECT 1 FROM shop.category c WHERE c.category_id = _check_product_fields.category_id) THEN
        RAISE EXCEPTION 'category not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No category has category_id %s.', category_id);
    END IF;
    IF attributes IS NOT NULL THEN
        IF jsonb_typeof(attributes) <> 'object' THEN
            RAISE EXCEPTION 'attributes must be a jsonb object'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('attributes is a jsonb %s.', jsonb_typeof(attributes));
        END IF;
        IF length(attributes::text) > 100000 THEN
            RAISE EXCEPTION 'attributes is too long'
                USING ERRCODE = 'string_data_right_truncation',
                      DETAIL = 'The attributes of one product are limited to 100000 characters of JSON.';
        END IF;
        PERFORM shop._card_number_check(attributes, 'attributes');
    END IF;
    IF images IS NOT NULL THEN
        IF cardinality(images) > 100 THEN
            RAISE EXCEPTION 'too many images'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('%s images given; at most 100 are allowed.', cardinality(images));
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(images) u WHERE u IS NULL OR length(u) > 2000 OR u = '') THEN
            RAISE EXCEPTION 'invalid image url'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Image URLs must be non-empty and at most 2000 characters.';
        END IF;
    END IF;
    IF status IS NOT NULL AND status NOT IN ('active', 'draft', 'archived') THEN
        RAISE EXCEPTION 'invalid product status'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('status is "%s"; it must be active, draft or archived.', status);
    END IF;
END
$$;
COMMENT ON FUNCTION shop._check_product_fields(text, text, bigint, text, text, bigint, jsonb, text[], text) IS
'internal: validation of shop.product_upsert arguments';

-- product_upsert: insert a product, or update the one with this sku (or
-- this product_id).  Optional arguments left NULL keep the stored value.
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
#variable_conflict use_column
DECLARE
    by_sku bigint;
    id bigint;
BEGIN
    PERFORM shop._require(sku, 'sku');
    PERFORM shop._require(title, 'title');
    PERFORM shop._require(price_cents, 'price_cents');
    PERFORM shop._check_product_fields(sku, title, price_cents, description, brand,
                                       category_id, attributes, images, status);
    IF product_id IS NOT NULL AND product_id <= 0 THEN
        RAISE EXCEPTION 'product_id must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('product_id is %s.', product_id);
    END IF;

    SELECT s.product_id INTO by_sku FROM shop.product_sku s WHERE s.sku = product_upsert.sku;
    IF product_upsert.product_id IS NOT NULL AND by_sku IS NOT NULL
       AND by_sku <> product_upsert.product_id THEN
        RAISE EXCEPTION 'sku belongs to another product'
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('sku "%s" is product %s, not %s.', sku, by_sku, product_upsert.product_id);
    END IF;
    id := coalesce(product_upsert.product_id, by_sku);

    IF id IS NOT NULL THEN
        UPDATE shop.product p SET
            sku = product_upsert.sku,
            title = product_upsert.title,
            price_cents = product_upsert.price_cents,
            description = coalesce(product_upsert.description, p.description),
            brand = coalesce(product_upsert.brand, p.brand),
            category_id = coalesce(product_upsert.category_id, p.category_id),
            attributes = coalesce(product_upsert.attributes, p.attributes),
            images = coalesce(product_upsert.images, p.images),
            status = coalesce(product_upsert.status, p.status)
         WHERE p.product_id = id;
        IF FOUND THEN
            RETURN id;
        END IF;
    END IF;

    INSERT INTO shop.product AS p (product_id, sku, title, price_cents, description, brand,
                                   category_id, attributes, images, status)
    VALUES (coalesce(id, nextval(pg_get_serial_sequence('shop.product', 'product_id'))),
            product_upsert.sku, product_upsert.title, product_upsert.price_cents,
            product_upsert.description, product_upsert.brand, product_upsert.category_id,
            coalesce(product_upsert.attributes, '{}'), coalesce(product_upsert.images, '{}'),
            coalesce(product_upsert.status, 'active'))
    RETURNING p.product_id INTO id;
    RETURN id;
END
$$;
COMMENT ON FUNCTION shop.product_upsert(text, text, bigint, text, text, bigint, jsonb, text[], text, bigint) IS
'insert a product or update the one with this sku (or product_id); NULL optional arguments keep stored values; returns product_id';

-- review_add: one review per customer and product; a second one replaces
-- the first.  The product's rating_sum/rating_count move by the difference
-- in the same statement, so concurrent reviews keep them exact.
CREATE FUNCTION shop.review_add(product_id bigint, customer_id bigint, rating int,
                                title text DEFAULT NULL, body text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    old_rating int;
    verified boolean;
BEGIN
    PERFORM shop._require(product_id, 'product_id');
    PERFORM shop._require(customer_id, 'customer_id');
    PERFORM shop._require(rating, 'rating');
    IF rating < 1 OR rating > 5 THEN
        RAISE EXCEPTION 'rating out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('rating is %s; it must be between 1 and 5.', rating);
    END IF;
    PERFORM shop._check_text(title, 'title', 200);
    PERFORM shop._check_text(body, 'body', 10000);

    -- lock the product row first: it serializes reviews of one product
    PERFORM 1 FROM shop.product p WHERE p.product_id = review_add.product_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No product has product_id %s.', product_id);
    END IF;

    SELECT EXISTS (
        SELECT 1 FROM shop."order" o JOIN shop.order_line l USING (order_id)
         WHERE o.customer_id = review_add.customer_id
           AND l.product_id = review_add.product_id
           AND o.status IN ('paid', 'fulfilling', 'shipped', 'delivered', 'returned', 'refunded'))
      INTO verified;

    SELECT r.rating INTO old_rating FROM shop.review r
     WHERE r.product_id = review_add.product_id AND r.customer_id = review_add.customer_id;

    INSERT INTO shop.review AS r (product_id, customer_id, rating, title, body, verified_purchase)
    VALUES (review_add.product_id, review_add.customer_id, review_add.rating,
            review_add.title, review_add.body, verified)
    ON CONFLICT ON CONSTRAINT review_pkey DO UPDATE
       SET rating = excluded.rating, title = excluded.title, body = excluded.body,
           verified_purchase = excluded.verified_purchase, created_at = now();

    UPDATE shop.product p
       SET rating_sum = p.rating_sum + review_add.rating - coalesce(old_rating, 0),
           rating_count = p.rating_count + CASE WHEN old_rating IS NULL THEN 1 ELSE 0 END
     WHERE p.product_id = review_add.product_id;
END
$$;
COMMENT ON FUNCTION shop.review_add(bigint, bigint, int, text, text) IS
'add or replace a customer''s review of a product; keeps rating_avg/rating_count exact and sets verified_purchase';

-- review_delete: take a review back out of the aggregates.
CREATE FUNCTION shop.review_delete(product_id bigint, customer_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    old_rating int;
BEGIN
    PERFORM shop._require(product_id, 'product_id');
    PERFORM shop._require(customer_id, 'customer_id');
    PERFORM 1 FROM shop.product p WHERE p.product_id = review_delete.product_id FOR NO KEY UPDATE;
    DELETE FROM shop.review r
     WHERE r.product_id = review_delete.product_id AND r.customer_id = review_delete.customer_id
    RETURNING r.rating INTO old_rating;
    IF old_rating IS NULL THEN
        RETURN false;
    END IF;
    UPDATE shop.product p
       SET rating_sum = p.rating_sum - old_rating, rating_count = p.rating_count - 1
     WHERE p.product_id = review_delete.product_id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION shop.review_delete(bigint, bigint) IS
'remove a customer''s review of a product and update the aggregates; false when there was none';

-- browse: products of a category and its descendants, one page.
CREATE FUNCTION shop.browse(category_id bigint, sort text DEFAULT 'popularity',
                            lim int DEFAULT 20, off int DEFAULT 0)
RETURNS TABLE (product_id bigint, sku text, title text, brand text, category text,
               price_cents bigint, rating_avg numeric, rating_count int,
               popularity real, image text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cats bigint[];
BEGIN
    PERFORM shop._require(browse.category_id, 'category_id');
    PERFORM shop._require(sort, 'sort');
    PERFORM shop._check_page(lim, off);
    IF sort NOT IN ('popularity', 'price_asc', 'price_desc', 'rating', 'newest', 'title') THEN
        RAISE EXCEPTION 'unknown sort'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('sort is "%s"; it must be one of popularity, price_asc, price_desc, rating, newest, title.', sort);
    END IF;
    cats := shop.category_descendants(browse.category_id);
    IF cardinality(cats) = 0 THEN
        RAISE EXCEPTION 'category not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No category has category_id %s.', browse.category_id);
    END IF;
    RETURN QUERY
    SELECT p.product_id, p.sku, p.title, p.brand, c.name, p.price_cents,
           p.rating_avg, p.rating_count, p.popularity, p.images[1]
      FROM shop.product p
      JOIN shop.category c ON c.category_id = p.category_id
     WHERE p.category_id = ANY (cats) AND p.status = 'active'
     ORDER BY
        CASE WHEN sort = 'popularity' THEN p.popularity END DESC NULLS LAST,
        CASE WHEN sort = 'price_asc' THEN p.price_cents END ASC,
        CASE WHEN sort = 'price_desc' THEN p.price_cents END DESC,
        CASE WHEN sort = 'rating' THEN p.rating_avg END DESC NULLS LAST,
        CASE WHEN sort = 'rating' THEN p.rating_count END DESC,
        CASE WHEN sort = 'newest' THEN p.created_at END DESC,
        CASE WHEN sort = 'title' THEN p.title END ASC,
        p.product_id
     LIMIT lim OFFSET off;
END
$$;
COMMENT ON FUNCTION shop.browse(bigint, text, int, int) IS
'active products of a category and its descendants; sort: popularity, price_asc, price_desc, rating, newest, title';

-- product_get: everything a product page needs, in one call.
CREATE FUNCTION shop.product_get(product_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    p shop.product;
    result jsonb;
    also jsonb := '[]';
BEGIN
    PERFORM shop._require(product_get.product_id, 'product_id');
    SELECT * INTO p FROM shop.product WHERE product_id = product_get.product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No product has product_id %s.', product_get.product_id);
    END IF;

    -- customers who bought this also bought: the recommendations section's
    -- call when it is installed, else the co-purchase table as it stands
    IF to_regprocedure('shop.also_bought(bigint,integer)') IS NOT NULL THEN
        EXECUTE $q$
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'product_id', a.product_id, 'title', o.title,
                       'price_cents', o.price_cents, 'image', o.images[1],
                       'score', a.score) ORDER BY a.score DESC), '[]')
              FROM shop.also_bought($1, 5) a
              JOIN shop.product o ON o.product_id = a.product_id
        $q$ INTO also USING p.product_id;
    ELSE
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'product_id', o.product_id, 'title', o.title,
                   'price_cents', o.price_cents, 'image', o.images[1],
                   'score', c.score) ORDER BY c.score DESC), '[]')
          INTO also
          FROM (SELECT other_id, score FROM shop.copurchase
                 WHERE product_id = p.product_id ORDER BY score DESC LIMIT 20) c
          JOIN shop.product o ON o.product_id = c.other_id AND o.status = 'active';
        also := coalesce((SELECT jsonb_agg(e) FROM (SELECT e FROM jsonb_array_elements(also) e LIMIT 5) x), '[]');
    END IF;

    SELECT jsonb_build_object(
        'product_id', p.product_id,
        'sku', p.sku,
        'title', p.title,
        'description', p.description,
        'brand', p.brand,
        'status', p.status,
        'price_cents', p.price_cents,
        'currency', current_setting('shop.currency'),
        'attributes', p.attributes,
        'images', to_jsonb(p.images),
        'category', CASE WHEN p.category_id IS NULL THEN NULL
                         ELSE shop.category_path(p.category_id) -> -1 END,
        'category_path', CASE WHEN p.category_id IS NULL THEN '[]'::jsonb
                              ELSE shop.category_path(p.category_id) END,
        'rating', jsonb_build_object(
            'average', p.rating_avg,
            'count', p.rating_count,
            'histogram', (SELECT jsonb_object_agg(g, coalesce(n, 0) ORDER BY g)
                            FROM generate_series(1, 5) g
                            LEFT JOIN (SELECT r.rating, count(*) AS n FROM shop.review r
                                        WHERE r.product_id = p.product_id GROUP BY r.rating) h
                                   ON h.rating = g)),
        'reviews', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'customer_id', r.customer_id, 'rating', r.rating, 'title', r.title,
                        'body', r.body, 'verified_purchase', r.verified_purchase,
                        'created_at', r.created_at) ORDER BY r.created_at DESC), '[]')
                      FROM (SELECT * FROM shop.review r
                             WHERE r.product_id = p.product_id
                             ORDER BY r.created_at DESC LIMIT 5) r),
        'availability', jsonb_build_object(
            'available', shop.stock_available(p.product_id),
            'in_stock', p.in_stock),
        'also_bought', also,
        'created_at', p.created_at,
        'updated_at', p.updated_at)
      INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION shop.product_get(bigint) IS
'a product page in one jsonb: product, category path, rating summary, recent reviews, availability, also_bought';

------------------------------------------------------------------------------
-- 3. Inventory
------------------------------------------------------------------------------

CREATE TABLE shop.stock (
    product_id  bigint NOT NULL REFERENCES shop.product (product_id) ON DELETE CASCADE,
    location    text NOT NULL DEFAULT 'default' CHECK (length(location) BETWEEN 1 AND 100),
    -- hot products spread their stock over several bucket rows (0..n-1)
    bucket      smallint NOT NULL DEFAULT 0 CHECK (bucket >= 0),
    on_hand     integer NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved    integer NOT NULL DEFAULT 0,
    reorder_threshold integer CHECK (reorder_threshold >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, location, bucket),
    CHECK (reserved <= on_hand),
    CHECK (reserved >= 0)
);
COMMENT ON TABLE shop.stock IS 'stock per product, location and bucket; reserved never exceeds on_hand';

CREATE TABLE shop.reservation (
    product_id     bigint NOT NULL REFERENCES shop.product (product_id) ON DELETE CASCADE,
    reservation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    location       text NOT NULL DEFAULT 'default',
    bucket         smallint NOT NULL DEFAULT 0,
    qty            integer NOT NULL CHECK (qty > 0),
    status         text NOT NULL DEFAULT 'held'
                   CHECK (status IN ('held', 'committed', 'released', 'expired')),
    ref            text CHECK (length(ref) <= 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (product_id, reservation_id)
);
CREATE INDEX reservation_id_idx ON shop.reservation (reservation_id);
CREATE INDEX reservation_held_idx ON shop.reservation (product_id, expires_at) WHERE status = 'held';
CREATE INDEX reservation_ref_idx ON shop.reservation (ref) WHERE ref IS NOT NULL;
COMMENT ON TABLE shop.reservation IS 'stock holds: held until committed (shipped), released, or expired';

-- stock_available: on hand minus live (unexpired) holds, over all
-- locations and buckets.
CREATE FUNCTION shop.stock_available(product_id bigint)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT (coalesce((SELECT sum(s.on_hand - s.reserved) FROM shop.stock s
                       WHERE s.product_id = stock_available.product_id), 0)
          + coalesce((SELECT sum(r.qty) FROM shop.reservation r
                       WHERE r.product_id = stock_available.product_id
                         AND r.status = 'held' AND r.expires_at <= now()), 0))::integer
$$;
COMMENT ON FUNCTION shop.stock_available(bigint) IS
'units that can still be reserved: on hand minus unexpired holds, over all locations';

------------------------------------------------------------------------------
-- 4. Cart
------------------------------------------------------------------------------

CREATE TABLE shop.cart (
    cart_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id bigint,                -- NULL: anonymous
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'merged', 'checked_out')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX cart_customer_idx ON shop.cart (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX cart_expires_idx ON shop.cart (expires_at);
COMMENT ON TABLE shop.cart IS 'shopping carts; anonymous when customer_id is NULL; expire after shop.cart_ttl of inactivity';

CREATE TABLE shop.cart_item (
    cart_id            uuid NOT NULL REFERENCES shop.cart (cart_id) ON DELETE CASCADE,
    product_id         bigint NOT NULL,
    qty                integer NOT NULL CHECK (qty > 0 AND qty <= 10000),
    saved_for_later    boolean NOT NULL DEFAULT false,
    price_cents_at_add bigint NOT NULL CHECK (price_cents_at_add >= 0),
    added_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, product_id)
);
COMMENT ON TABLE shop.cart_item IS 'cart lines, with the price when added; saved_for_later lines are not checked out';

------------------------------------------------------------------------------
-- 5. Orders & payments
------------------------------------------------------------------------------

CREATE TABLE shop."order" (
    order_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id      bigint,               -- NULL: guest checkout
    cart_id          uuid,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'paid', 'fulfilling', 'shipped', 'delivered',
                                       'returned', 'refunded', 'cancelled')),
    currency         text NOT NULL,
    subtotal_cents   bigint NOT NULL CHECK (subtotal_cents >= 0),
    shipping_cents   bigint NOT NULL DEFAULT 0 CHECK (shipping_cents >= 0),
    tax_cents        bigint NOT NULL DEFAULT 0 CHECK (tax_cents >= 0),
    total_cents      bigint NOT NULL CHECK (total_cents >= 0),
    shipping_address jsonb,
    carrier          text,
    tracking_number  text,
    fraud_score      real,
    needs_review     boolean NOT NULL DEFAULT false,
    was_paid         boolean NOT NULL DEFAULT false,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_customer_idx ON shop."order" (customer_id, created_at DESC);
CREATE INDEX order_pending_idx ON shop."order" (created_at) WHERE status = 'pending';
COMMENT ON TABLE shop."order" IS 'order headers; status follows the state machine of docs/orders.md';

CREATE TABLE shop.order_line (
    order_id         uuid NOT NULL REFERENCES shop."order" (order_id) ON DELETE CASCADE,
    line_no          integer NOT NULL,
    product_id       bigint NOT NULL,
    sku              text NOT NULL,
    title            text NOT NULL,
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    qty              integer NOT NULL CHECK (qty > 0),
    reservation_id   uuid,
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_line_product_idx ON shop.order_line (product_id);
COMMENT ON TABLE shop.order_line IS 'order lines with snapshots of sku, title and unit price';

CREATE TABLE shop.order_event (
    order_id    uuid NOT NULL REFERENCES shop."order" (order_id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    note        text,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, seq)
);
COMMENT ON TABLE shop.order_event IS 'append-only history of every order transition';

CREATE TABLE shop.payment (
    order_id     uuid NOT NULL REFERENCES shop."order" (order_id) ON DELETE CASCADE,
    payment_id   uuid NOT NULL DEFAULT gen_random_uuid(),
    provider     text NOT NULL,
    token        text NOT NULL,
    card_brand   text,
    last4        text CHECK (last4 ~ '^[0-9]{4}$'),
    status       text NOT NULL CHECK (status IN ('pending', 'authorized', 'captured', 'failed', 'refunded')),
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    fraud_score  real,
    provider_ref text,
    failure_reason text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, payment_id)
);
CREATE UNIQUE INDEX payment_id_idx ON shop.payment (payment_id);
COMMENT ON TABLE shop.payment IS 'payments by provider token; never a card number';

CREATE TABLE shop.payment_method (
    customer_id       bigint NOT NULL,
    payment_method_id uuid NOT NULL DEFAULT gen_random_uuid(),
    token             text NOT NULL,
    brand             text,
    last4             text CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month         smallint CHECK (exp_month BETWEEN 1 AND 12),
    exp_year          smallint CHECK (exp_year BETWEEN 2000 AND 2200),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, payment_method_id)
);
COMMENT ON TABLE shop.payment_method IS 'saved payment methods: provider tokens with brand and last four digits';

CREATE TABLE shop.idempotency (
    -- the customer, or for an anonymous cart the cart id, as text
    scope       text NOT NULL,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    fingerprint text NOT NULL,
    order_id    uuid,
    result      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
COMMENT ON TABLE shop.idempotency IS 'checkout idempotency keys with the fingerprint of their request and its result';

CREATE TABLE shop.event (
    event_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shop.event IS 'transactional outbox: every insert is also sent with pg_notify(''shop_events'')';

------------------------------------------------------------------------------
-- 6. Search
------------------------------------------------------------------------------

-- The shop_search index access method (src/search/, docs/search.md).
-- An index of this kind indexes one shop.search_doc value per row: the
-- three text fields it ranks (title > brand > description) and the values
-- it filters and boosts on, stored in the index itself.

CREATE TYPE shop.search_doc AS (
    title       text,
    brand       text,
    description text,
    category_id bigint,
    price_cents bigint,
    rating      real,
    in_stock    boolean,
    popularity  real
);
COMMENT ON TYPE shop.search_doc IS
'what a shop_search index indexes: text fields (title, brand, description) and stored filter values';

CREATE FUNCTION shop.search_doc(title text, brand text DEFAULT NULL, description text DEFAULT NULL,
                                category_id bigint DEFAULT NULL, price_cents bigint DEFAULT NULL,
                                rating real DEFAULT NULL, in_stock boolean DEFAULT NULL,
                                popularity real DEFAULT NULL)
RETURNS shop.search_doc
AS 'MODULE_PATHNAME', 'shop_search_doc_make'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION shop.search_doc(text, text, text, bigint, bigint, real, boolean, real) IS
'build the value a shop_search index indexes; use the same call in CREATE INDEX and in queries';

CREATE FUNCTION shop.search_handler(internal)
RETURNS index_am_handler
AS 'MODULE_PATHNAME', 'shop_search_handler'
LANGUAGE C;
COMMENT ON FUNCTION shop.search_handler(internal) IS 'handler of the shop_search index access method';

CREATE ACCESS METHOD shop_search TYPE INDEX HANDLER shop.search_handler;
COMMENT ON ACCESS METHOD shop_search IS
'ranked, typo-tolerant product search index: BM25F, stems, prefixes, filters, ordered top-k scans';

-- Operator functions.  Index scans answer both operators themselves; these
-- run only for sequential scans and rechecks (tokenizing every row, hence
-- the cost).  STABLE: they read shop.max_query_length.
CREATE FUNCTION shop.search_match(doc shop.search_doc, query jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_search_match'
LANGUAGE C STABLE STRICT PARALLEL SAFE COST 1000;
COMMENT ON FUNCTION shop.search_match(shop.search_doc, jsonb) IS
'the @@@ operator: does the document match the query (all words, typos, stems, prefix, filters)';

CREATE FUNCTION shop.search_distance(doc shop.search_doc, query jsonb)
RETURNS real
AS 'MODULE_PATHNAME', 'shop_search_distance'
LANGUAGE C STABLE STRICT PARALLEL SAFE COST 1000;
COMMENT ON FUNCTION shop.search_distance(shop.search_doc, jsonb) IS
'the <=> operator: rank distance, smaller is better (typos * 10000 - score); +Infinity when not matching';

CREATE OPERATOR shop.@@@ (
    LEFTARG = shop.search_doc, RIGHTARG = jsonb,
    FUNCTION = shop.search_match,
    RESTRICT = contsel, JOIN = contjoinsel
);
COMMENT ON OPERATOR shop.@@@ (shop.search_doc, jsonb) IS 'shop_search match: document matches the query';

CREATE OPERATOR shop.<=> (
    LEFTARG = shop.search_doc, RIGHTARG = jsonb,
    FUNCTION = shop.search_distance
);
COMMENT ON OPERATOR shop.<=> (shop.search_doc, jsonb) IS 'shop_search rank distance: ORDER BY it for best matches first';

CREATE OPERATOR CLASS shop.search_doc_ops
    DEFAULT FOR TYPE shop.search_doc USING shop_search AS
        OPERATOR 1 shop.@@@ (shop.search_doc, jsonb),
        OPERATOR 2 shop.<=> (shop.search_doc, jsonb) FOR ORDER BY pg_catalog.float_ops;
COMMENT ON OPERATOR CLASS shop.search_doc_ops USING shop_search IS
'default shop_search opclass: @@@ match, <=> ordering';

-- The catalog's index.  shop.search and friends use this exact expression.
-- Only active products are searchable, so the index holds only them.
CREATE INDEX product_search_idx ON shop.product USING shop_search
    (shop.search_doc(title, brand, description, category_id, price_cents,
                     rating_avg::real, in_stock, popularity))
    WHERE status = 'active';

CREATE FUNCTION shop.search_tokens(query text, language text DEFAULT 'english')
RETURNS TABLE (pos int, word text, stem text)
AS 'MODULE_PATHNAME', 'shop_search_tokens'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop.search_tokens(text, text) IS
'how shop_search tokenizes a text: folded words and their Snowball stems';

CREATE FUNCTION shop._search_fold(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_search_fold'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION shop._search_fold(text) IS
'internal: lower-cased, accent-folded words of value joined by single spaces';

CREATE FUNCTION shop.search_scan(index regclass, query jsonb, lim int DEFAULT 20)
RETURNS TABLE (ctid tid, score real, typos int, missing int)
AS 'MODULE_PATHNAME', 'shop_search_scan'
LANGUAGE C STABLE STRICT ROWS 20;
COMMENT ON FUNCTION shop.search_scan(regclass, jsonb, int) IS
'the lim best visible rows of a shop_search index for query, best first, with the index''s score, typo count and missing words';

CREATE FUNCTION shop.search_index_info(index regclass)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'shop_search_index_info'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION shop.search_index_info(regclass) IS
'shop_search index statistics: format version, language, documents, pending documents, blocks, segment sizes';

CREATE FUNCTION shop.search_verify(index regclass)
RETURNS TABLE (kind text, ctid tid, detail text)
AS 'MODULE_PATHNAME', 'shop_search_verify'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION shop.search_verify(regclass) IS
'check a shop_search index against its table; one row per problem (missing, duplicate, mismatch, extra, corrupt), none when sound';

CREATE FUNCTION shop._search_facet_counts(index regclass, query jsonb)
RETURNS TABLE (kind text, key bigint, sample tid, n bigint)
AS 'MODULE_PATHNAME', 'shop_search_facet_counts'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION shop._search_facet_counts(regclass, jsonb) IS
'internal: exact facet counts (total, category, brand hash with a sample row, price bucket, rating) of the visible matches, from the index''s stored values';

CREATE FUNCTION shop._search_suggest_word(index regclass, word text)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_search_suggest_word'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION shop._search_suggest_word(regclass, text) IS
'internal: NULL if word is in the index vocabulary, else its closest vocabulary term (NULL if none)';

-- Synonyms, applied at query time: a group of equivalent phrases.
CREATE TABLE shop.synonym (
    term       text PRIMARY KEY CHECK (length(term) BETWEEN 1 AND 200),
    synonyms   text[] NOT NULL CHECK (cardinality(synonyms) BETWEEN 1 AND 50),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shop.synonym IS
'search synonyms: term and its equivalents, folded (lower case, no accents); two-way, multi-word allowed';

CREATE FUNCTION shop.synonym_add(term text, synonyms text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t text;
    syns text[];
BEGIN
    PERFORM shop._require(term, 'term');
    PERFORM shop._require(synonyms, 'synonyms');
    PERFORM shop._check_text(term, 'term', 200);
    t := shop._search_fold(term);
    IF t = '' THEN
        RAISE EXCEPTION 'synonym term has no words'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('term is "%s".', term);
    END IF;
    SELECT coalesce(array_agg(DISTINCT f), '{}') INTO syns
      FROM (SELECT shop._search_fold(s) AS f FROM unnest(synonyms) s WHERE s IS NOT NULL) x
     WHERE f <> '' AND f <> t;
    IF cardinality(syns) = 0 OR cardinality(syns) > 50 THEN
        RAISE EXCEPTION 'synonyms must hold 1 to 50 phrases other than the term'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s usable synonyms given for "%s".', cardinality(syns), t);
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(syns) s WHERE length(s) > 200) THEN
        RAISE EXCEPTION 'synonym is too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = 'Each synonym is limited to 200 characters.';
    END IF;
    INSERT INTO shop.synonym AS s (term, synonyms) VALUES (t, syns)
    ON CONFLICT ON CONSTRAINT synonym_pkey
    DO UPDATE SET synonyms = EXCLUDED.synonyms, created_at = now();
END
$$;
COMMENT ON FUNCTION shop.synonym_add(text, text[]) IS
'declare synonyms of a term (replacing earlier ones); equivalence works both ways, applied at query time';

CREATE FUNCTION shop.synonym_remove(term text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    PERFORM shop._require(term, 'term');
    DELETE FROM shop.synonym s WHERE s.term = shop._search_fold(term);
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION shop.synonym_remove(text) IS 'remove the synonyms of a term; false when it had none';

-- Search latency log, read by shop.metrics (p50/p95/p99).
CREATE TABLE shop.search_log (
    logged_at   timestamptz NOT NULL DEFAULT now(),
    query       text NOT NULL,
    -- folded words of the query (autocomplete's popular queries)
    query_folded text NOT NULL DEFAULT '',
    filters     jsonb NOT NULL DEFAULT '{}',
    sort        text NOT NULL,
    results     integer NOT NULL,
    duration_ms real NOT NULL,
    customer_id bigint
);
CREATE INDEX search_log_at_idx ON shop.search_log (logged_at);
COMMENT ON TABLE shop.search_log IS
'one row per shop.search call (not on standbys or in read-only transactions): query, result count, latency';

-- _search_query: the jsonb query the index takes, from shop.search's
-- arguments; validates filters (22023) and query text (22001, SH005).
CREATE FUNCTION shop._search_query(query text, filters jsonb, customer_id bigint)
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
    RETURN q;
END
$$;
COMMENT ON FUNCTION shop._search_query(text, jsonb, bigint) IS
'internal: validate shop.search arguments and build the shop_search jsonb query (filters, synonyms, personalization)';

CREATE FUNCTION shop.search(query text, filters jsonb DEFAULT '{}', sort text DEFAULT 'relevance',
                            lim int DEFAULT 20, off int DEFAULT 0, customer_id bigint DEFAULT NULL)
RETURNS TABLE (product_id bigint, score real, title text, brand text, price_cents bigint,
               rating_avg numeric, category_id bigint, in_stock boolean, image text, typos int,
               missing_words int)
LANGUAGE plpgsql VOLATILE
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
COMMENT ON FUNCTION shop.search(text, jsonb, text, int, int, bigint) IS
'product search: typo tolerant, stemmed, last word as prefix; relevance puts rows with every word first, then rows missing words; filters category_id, brand, price_min, price_max, rating_min, in_stock, attributes; sorts relevance, price_asc, price_desc, rating, newest, popularity';

CREATE FUNCTION shop.search_facets(query text, filters jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    q jsonb;
    attrs jsonb;
    res jsonb;
BEGIN
    q := shop._search_query(query, filters, NULL);
    attrs := coalesce(filters -> 'attributes', '{}');
    IF attrs = '{}' THEN
        -- counted in the index from its stored values (no row reads for
        -- all-visible pages); brand names come from one sample row each
        WITH f AS MATERIALIZED (
            SELECT * FROM shop._search_facet_counts('shop.product_search_idx', q)
        ), buckets(b, lo, hi, label) AS (
            VALUES (0, 0::bigint, 999::bigint, 'under 10'), (1, 1000, 2499, '10-25'), (2, 2500, 4999, '25-50'),
                   (3, 5000, 9999, '50-100'), (4, 10000, 24999, '100-250'), (5, 25000, 49999, '250-500'),
                   (6, 50000, 99999, '500-1000'), (7, 100000, NULL, '1000 and up')
        )
        SELECT jsonb_build_object(
            'total', coalesce((SELECT f.n FROM f WHERE f.kind = 'total'), 0),
            'brand', coalesce((SELECT jsonb_agg(jsonb_build_object('value', x.brand, 'count', x.n)
                                                ORDER BY x.n DESC, x.brand)
                                 FROM (SELECT (SELECT p.brand FROM shop.product p WHERE p.ctid = f.sample) AS brand, f.n
                                         FROM f WHERE f.kind = 'brand') x
                                WHERE x.brand IS NOT NULL), '[]'),
            'category', coalesce((SELECT jsonb_agg(jsonb_build_object('category_id', c.category_id,
                                                                      'name', c.name, 'count', f.n)
                                                   ORDER BY f.n DESC, c.category_id)
                                    FROM f JOIN shop.category c ON c.category_id = f.key
                                   WHERE f.kind = 'category'), '[]'),
            'price', coalesce((SELECT jsonb_agg(jsonb_build_object('bucket', b.label, 'min_cents', b.lo,
                                                                   'max_cents', b.hi, 'count', f.n)
                                                ORDER BY b.lo)
                                 FROM f JOIN buckets b ON b.b = f.key
                                WHERE f.kind = 'price'), '[]'),
            'rating', coalesce((SELECT jsonb_agg(jsonb_build_object('min', f.key, 'count', f.n)
                                                 ORDER BY f.key DESC)
                                  FROM f WHERE f.kind = 'rating'), '[]'))
          INTO res;
        RETURN res;
    END IF;
    WITH m AS MATERIALIZED (
        SELECT p.brand, p.category_id, p.price_cents, p.rating_avg
          FROM shop.product p
         WHERE shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents,
                               p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.@@@) q
           AND p.status = 'active' AND p.attributes @> attrs
    ), buckets(lo, hi, label) AS (
        VALUES (0::bigint, 999::bigint, 'under 10'), (1000, 2499, '10-25'), (2500, 4999, '25-50'),
               (5000, 9999, '50-100'), (10000, 24999, '100-250'), (25000, 49999, '250-500'),
               (50000, 99999, '500-1000'), (100000, NULL, '1000 and up')
    )
    SELECT jsonb_build_object(
        'total', (SELECT count(*) FROM m),
        'brand', coalesce((SELECT jsonb_agg(jsonb_build_object('value', brand, 'count', n)
                                            ORDER BY n DESC, brand)
                             FROM (SELECT brand, count(*) n FROM m WHERE brand IS NOT NULL
                                    GROUP BY brand) b), '[]'),
        'category', coalesce((SELECT jsonb_agg(jsonb_build_object('category_id', c.category_id,
                                                                  'name', c.name, 'count', x.n)
                                               ORDER BY x.n DESC, c.category_id)
                                FROM (SELECT category_id, count(*) n FROM m
                                       WHERE category_id IS NOT NULL GROUP BY category_id) x
                                JOIN shop.category c USING (category_id)), '[]'),
        'price', coalesce((SELECT jsonb_agg(jsonb_build_object('bucket', b.label, 'min_cents', b.lo,
                                                               'max_cents', b.hi, 'count', x.n)
                                            ORDER BY b.lo)
                             FROM buckets b
                             CROSS JOIN LATERAL (SELECT count(*) n FROM m
                                                  WHERE m.price_cents >= b.lo
                                                    AND (b.hi IS NULL OR m.price_cents <= b.hi)) x
                            WHERE x.n > 0), '[]'),
        'rating', coalesce((SELECT jsonb_agg(jsonb_build_object('min', r, 'count', x.n) ORDER BY r DESC)
                              FROM generate_series(4, 1, -1) r
                              CROSS JOIN LATERAL (SELECT count(*) n FROM m WHERE m.rating_avg >= r) x
                             WHERE x.n > 0), '[]'))
      INTO res;
    RETURN res;
END
$$;
COMMENT ON FUNCTION shop.search_facets(text, jsonb) IS
'exact counts over the whole match set of a search: total, per brand, per category, per price bucket, per minimum rating';

CREATE FUNCTION shop.autocomplete(prefix text, lim int DEFAULT 10)
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
    q := jsonb_build_object('q', prefix, 'prefix', true);
    RETURN QUERY
    WITH hits AS MATERIALIZED (
        SELECT p.title, p.brand, p.category_id, s.score, s.typos, s.ord
          FROM shop.search_scan('shop.product_search_idx', q, 50) WITH ORDINALITY AS s(ctid, score, typos, missing, ord)
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
                 ORDER BY logged_at DESC LIMIT 5000) l
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
COMMENT ON FUNCTION shop.autocomplete(text, int) IS
'search-as-you-type suggestions (product titles, brands, categories, popular queries), typo tolerant';

CREATE FUNCTION shop.did_you_mean(query text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    w record;
    fix text;
    changed boolean := false;
    words text[] := '{}';
BEGIN
    PERFORM shop._require(query, 'query');
    PERFORM shop._check_text(query, 'query', coalesce(current_setting('shop.max_query_length', true), '256')::int);
    FOR w IN SELECT t.word FROM shop.search_tokens(query) t ORDER BY t.pos LOOP
        fix := shop._search_suggest_word('shop.product_search_idx', w.word);
        IF fix IS NOT NULL THEN
            changed := true;
            words := words || fix;
        ELSE
            words := words || w.word;
        END IF;
    END LOOP;
    RETURN CASE WHEN changed THEN array_to_string(words, ' ') END;
END
$$;
COMMENT ON FUNCTION shop.did_you_mean(text) IS
'spelling correction of a query against the catalog vocabulary; NULL when every word is known (or has no close term)';

------------------------------------------------------------------------------
-- 7. Recommendations
------------------------------------------------------------------------------

CREATE TABLE shop.view_event (
    customer_id bigint NOT NULL,
    viewed_at   timestamptz NOT NULL DEFAULT now(),
    product_id  bigint NOT NULL,
    PRIMARY KEY (customer_id, viewed_at, product_id)
);
CREATE INDEX view_event_product_idx ON shop.view_event (product_id, viewed_at);
COMMENT ON TABLE shop.view_event IS 'product views per customer, capped at shop.recent_views_cap each';

CREATE TABLE shop.copurchase (
    product_id bigint NOT NULL,
    other_id   bigint NOT NULL,
    pair_count real NOT NULL,
    score      real NOT NULL,
    PRIMARY KEY (product_id, other_id)
);
CREATE INDEX copurchase_score_idx ON shop.copurchase (product_id, score DESC);
COMMENT ON TABLE shop.copurchase IS 'item-to-item table: how often other_id was bought with product_id, and how far above chance';

------------------------------------------------------------------------------
-- 8. Operations
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- pg_dump: every table holding user data keeps its rows
------------------------------------------------------------------------------

-- shop.product_sku is derived from shop.product by trigger and is rebuilt
-- when the products are restored, so it is not dumped itself.
SELECT pg_catalog.pg_extension_config_dump('shop.category', '');
SELECT pg_catalog.pg_extension_config_dump('shop.category_category_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.product', '');
SELECT pg_catalog.pg_extension_config_dump('shop.product_product_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.review', '');
SELECT pg_catalog.pg_extension_config_dump('shop.stock', '');
SELECT pg_catalog.pg_extension_config_dump('shop.reservation', '');
SELECT pg_catalog.pg_extension_config_dump('shop.cart', '');
SELECT pg_catalog.pg_extension_config_dump('shop.cart_item', '');
SELECT pg_catalog.pg_extension_config_dump('shop."order"', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_line', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_event', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_method', '');
SELECT pg_catalog.pg_extension_config_dump('shop.idempotency', '');
SELECT pg_catalog.pg_extension_config_dump('shop.event', '');
SELECT pg_catalog.pg_extension_config_dump('shop.event_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.view_event', '');
SELECT pg_catalog.pg_extension_config_dump('shop.copurchase', '');
SELECT pg_catalog.pg_extension_config_dump('shop.synonym', '');
SELECT pg_catalog.pg_extension_config_dump('shop.search_log', '');
