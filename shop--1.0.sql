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
-- one index per browse order, each led by the category
CREATE INDEX product_category_idx ON shop.product (category_id, popularity DESC, product_id);
CREATE INDEX product_category_price_idx ON shop.product (category_id, price_cents, product_id);
CREATE INDEX product_category_rating_idx ON shop.product (category_id, rating_avg DESC NULLS LAST, rating_count DESC, product_id);
CREATE INDEX product_category_newest_idx ON shop.product (category_id, created_at DESC, product_id DESC);
-- brand pages and similar_products read a brand's most popular active
-- products in order
CREATE INDEX product_brand_idx ON shop.product (brand, popularity DESC, product_id) WHERE status = 'active';
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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
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
    -- a storefront reviews only as the customer of its session
    PERFORM shop._authorize(review_add.customer_id);

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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    old_rating int;
BEGIN
    PERFORM shop._require(product_id, 'product_id');
    PERFORM shop._require(customer_id, 'customer_id');
    PERFORM shop._authorize(review_delete.customer_id);
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
    ord text;
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
    -- The page is the merge of each category's own first lim+off rows, each
    -- read in order from a (category_id, sort key) index: a category with a
    -- million products costs no more than one with twenty.
    ord := CASE sort
        WHEN 'popularity' THEN 'p.popularity DESC, p.product_id'
        WHEN 'price_asc'  THEN 'p.price_cents, p.product_id'
        WHEN 'price_desc' THEN 'p.price_cents DESC, p.product_id DESC'
        WHEN 'rating'     THEN 'p.rating_avg DESC NULLS LAST, p.rating_count DESC, p.product_id'
        WHEN 'newest'     THEN 'p.created_at DESC, p.product_id DESC'
        WHEN 'title'      THEN 'p.title, p.product_id'
    END;
    RETURN QUERY EXECUTE format($q$
        SELECT p.product_id, p.sku, p.title, p.brand, c.name, p.price_cents,
               p.rating_avg, p.rating_count, p.popularity, p.images[1]
          FROM unnest($1) AS cat(id)
          CROSS JOIN LATERAL (SELECT * FROM shop.product p
                               WHERE p.category_id = cat.id AND p.status = 'active'
                               ORDER BY %1$s LIMIT $2 + $3) p
          JOIN shop.category c ON c.category_id = p.category_id
         ORDER BY %1$s
         LIMIT $2 OFFSET $3
    $q$, ord) USING cats, lim, off;
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

    -- customers who bought this also bought (section 7; resolved at call time)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'product_id', a.product_id, 'title', o.title,
               'price_cents', o.price_cents, 'image', o.images[1],
               'score', a.score) ORDER BY a.score DESC), '[]')
      INTO also
      FROM shop.also_bought(p.product_id, 5) a
      JOIN shop.product o ON o.product_id = a.product_id;

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
-- Locking rules and the never-oversell argument are in src/inventory.c and
-- docs/inventory.md.  Invariant kept by every call: for each stock row,
-- reserved = sum(qty) of the reservation parts with status 'held' that
-- point at it (expired-but-not-yet-reclaimed holds included), and
-- 0 <= reserved <= on_hand.

CREATE TABLE shop.stock (
    product_id  bigint NOT NULL REFERENCES shop.product (product_id) ON DELETE CASCADE,
    location    text NOT NULL DEFAULT 'default' CHECK (length(location) BETWEEN 1 AND 100),
    -- hot products spread their stock over several bucket rows (0..n-1)
    bucket      smallint NOT NULL DEFAULT 0 CHECK (bucket >= 0),
    on_hand     integer NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved    integer NOT NULL DEFAULT 0,
    -- product-level: every row of a product carries the same value
    reorder_threshold integer CHECK (reorder_threshold >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, location, bucket),
    CHECK (reserved <= on_hand),
    CHECK (reserved >= 0)
) WITH (fillfactor = 50);
COMMENT ON TABLE shop.stock IS 'stock per product, location and bucket; reserved never exceeds on_hand';

-- A reservation is one or more parts (usually one), each holding qty units
-- of one stock row.  No foreign key to shop.product: the key-share lock it
-- would take on the product row for every hold is exactly the hot-row
-- contention buckets exist to avoid; reservations are created only by the
-- calls below, which check the product.
CREATE TABLE shop.reservation (
    product_id     bigint NOT NULL,
    reservation_id uuid NOT NULL,
    part           smallint NOT NULL DEFAULT 0,
    location       text NOT NULL DEFAULT 'default',
    bucket         smallint NOT NULL DEFAULT 0,
    qty            integer NOT NULL CHECK (qty > 0),
    status         text NOT NULL DEFAULT 'held'
                   CHECK (status IN ('held', 'committed', 'released', 'expired')),
    ref            text CHECK (length(ref) <= 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (product_id, reservation_id, part)
);
CREATE INDEX reservation_id_idx ON shop.reservation (reservation_id);
CREATE INDEX reservation_held_idx ON shop.reservation (product_id, expires_at) WHERE status = 'held';
CREATE INDEX reservation_expiry_idx ON shop.reservation (expires_at) WHERE status = 'held';
CREATE INDEX reservation_ref_idx ON shop.reservation (ref) WHERE ref IS NOT NULL;
COMMENT ON TABLE shop.reservation IS 'stock holds (one row per part): held until committed (shipped), released, or expired';

CREATE TABLE shop.stock_ledger (
    product_id bigint NOT NULL,
    entry_id   bigint GENERATED ALWAYS AS IDENTITY,
    location   text NOT NULL,
    delta      integer NOT NULL,
    on_hand    integer NOT NULL,
    reason     text NOT NULL,
    ref        text,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, entry_id)
);
COMMENT ON TABLE shop.stock_ledger IS
'append-only history of on_hand changes: stock_set, stock_adjust (with its reason) and reservation commits';

CREATE FUNCTION shop.stock_set(product_id bigint, on_hand int, location text DEFAULT 'default')
RETURNS integer
AS 'MODULE_PATHNAME', 'shop_stock_set'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.stock_set(bigint, int, text) IS
'set the units on hand of a product at a location (a stock count); returns the units available over all locations';

CREATE FUNCTION shop.stock_adjust(product_id bigint, delta int, reason text, location text DEFAULT 'default')
RETURNS integer
AS 'MODULE_PATHNAME', 'shop_stock_adjust'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.stock_adjust(bigint, int, text, text) IS
'add (delta > 0) or remove (delta < 0, unreserved units only) units at a location, with a reason kept in shop.stock_ledger; returns the units available';

CREATE FUNCTION shop.stock_available(product_id bigint)
RETURNS integer
AS 'MODULE_PATHNAME', 'shop_stock_available'
LANGUAGE C STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.stock_available(bigint) IS
'units that can still be reserved: on hand minus unexpired holds, over all locations';

CREATE FUNCTION shop.stock_set_buckets(product_id bigint, buckets int)
RETURNS void
AS 'MODULE_PATHNAME', 'shop_stock_set_buckets'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.stock_set_buckets(bigint, int) IS
'spread a hot product''s stock at every location over n bucket rows (1..256) that reservations pick from';

CREATE FUNCTION shop.stock_set_reorder_threshold(product_id bigint, reorder_threshold int)
RETURNS void
AS 'MODULE_PATHNAME', 'shop_stock_set_reorder_threshold'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.stock_set_reorder_threshold(bigint, int) IS
'emit stock.low when the product''s available units fall below this threshold (NULL: no alert)';

CREATE FUNCTION shop.reserve(product_id bigint, qty int, ref text DEFAULT NULL,
                             ttl interval DEFAULT '15 minutes')
RETURNS uuid
AS 'MODULE_PATHNAME', 'shop_reserve'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.reserve(bigint, int, text, interval) IS
'hold qty units of a product until committed, released or ttl passes; raises SH001 rather than oversell';

CREATE FUNCTION shop.reserve_many(items jsonb, ref text DEFAULT NULL,
                                  ttl interval DEFAULT '15 minutes')
RETURNS uuid[]
AS 'MODULE_PATHNAME', 'shop_reserve_many'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.reserve_many(jsonb, text, interval) IS
'all-or-nothing holds for [{"product_id":..,"qty":..},..]; repeated products summed; one reservation id per distinct product, in product_id order';

CREATE FUNCTION shop.reservation_release(reservation_id uuid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_reservation_release'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.reservation_release(uuid) IS
'give a held reservation''s units back; false when it was already released or expired (idempotent)';

CREATE FUNCTION shop.reservation_commit(reservation_id uuid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'shop_reservation_commit'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.reservation_commit(uuid) IS
'the reserved units leave the building (on_hand and reserved both drop); false when already committed (idempotent)';

CREATE FUNCTION shop.reservation_extend(reservation_id uuid, ttl interval)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'shop_reservation_extend'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.reservation_extend(uuid, interval) IS
'move a held reservation''s expiry to now() + ttl, or to infinity when ttl is NULL (a paid order keeps its stock); returns the new expiry';

-- stock_summary: one row per product with stock, the numbers a stock page shows.
CREATE VIEW shop.stock_summary AS
SELECT s.product_id,
       sum(s.on_hand)::integer AS on_hand,
       sum(s.reserved)::integer AS reserved,
       shop.stock_available(s.product_id) AS available,
       max(s.reorder_threshold) AS reorder_threshold,
       count(DISTINCT s.location)::integer AS locations,
       (max(s.bucket) + 1)::integer AS buckets
  FROM shop.stock s
 GROUP BY s.product_id;
COMMENT ON VIEW shop.stock_summary IS 'per product: on hand, reserved, available, threshold, locations, buckets';

REVOKE EXECUTE ON FUNCTION shop.stock_set(bigint, int, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION shop.stock_adjust(bigint, int, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION shop.stock_set_buckets(bigint, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION shop.stock_set_reorder_threshold(bigint, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION shop.reservation_commit(uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION shop.reservation_extend(uuid, interval) FROM PUBLIC;

------------------------------------------------------------------------------
-- 4. Cart
------------------------------------------------------------------------------

-- A cart is open until it is merged into the customer's cart at login
-- (status 'merged', merged_into names the survivor).  Checkout removes the
-- lines it ordered and leaves the cart open with its saved-for-later lines.
-- Every change pushes expires_at to now() + shop.cart_ttl; shop.sweep()
-- drops carts past it, and every call treats them as gone already.
CREATE TABLE shop.cart (
    cart_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id bigint,                -- NULL: anonymous
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'merged')),
    merged_into uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX cart_customer_idx ON shop.cart (customer_id, updated_at DESC) WHERE customer_id IS NOT NULL;
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

-- _cart_expiry: now() + shop.cart_ttl (C, so the GUC is always defined).
CREATE FUNCTION shop._cart_expiry()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'shop_cart_expiry'
LANGUAGE C STABLE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop._cart_expiry() IS 'internal: now() + shop.cart_ttl, the expiry of a cart touched now';

-- _cart_qty: validate a quantity (22004 NULL, 22023 outside min..10000).
CREATE FUNCTION shop._cart_qty(qty int, min_qty int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._require(qty, 'qty');
    IF qty < min_qty OR qty > 10000 THEN
        RAISE EXCEPTION 'quantity out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('qty is %s; it must be between %s and 10000.', qty, min_qty);
    END IF;
END
$$;
COMMENT ON FUNCTION shop._cart_qty(int, int) IS 'internal: raise 22023 unless min_qty <= qty <= 10000';

-- _cart_touch: the entry of every cart change.  Locks the cart row, checks
-- that it is open and unexpired (SH006 otherwise) and that the caller may
-- act for its customer (shop._authorize), pushes expires_at forward and
-- returns the customer (NULL for an anonymous cart).
CREATE FUNCTION shop._cart_touch(cart_id uuid)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    c shop.cart;
BEGIN
    PERFORM shop._require(cart_id, 'cart_id');
    UPDATE shop.cart t SET updated_at = now(), expires_at = shop._cart_expiry()
     WHERE t.cart_id = _cart_touch.cart_id AND t.status = 'open' AND t.expires_at > now()
    RETURNING t.* INTO c;
    IF NOT FOUND THEN
        PERFORM shop._cart_missing(cart_id);
    END IF;
    PERFORM shop._authorize(c.customer_id);
    RETURN c.customer_id;
END
$$;
COMMENT ON FUNCTION shop._cart_touch(uuid) IS
'internal: lock an open cart, check the caller may use it, extend its expiry; returns its customer';

-- _cart_missing: raise the precise SH006 for a cart that is not usable.
CREATE FUNCTION shop._cart_missing(cart_id uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    c shop.cart;
BEGIN
    SELECT * INTO c FROM shop.cart t WHERE t.cart_id = _cart_missing.cart_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cart not found' USING ERRCODE = 'SH006',
            DETAIL = format('No cart has cart_id %s.', cart_id);
    ELSIF c.status = 'merged' THEN
        RAISE EXCEPTION 'cart not found' USING ERRCODE = 'SH006',
            DETAIL = format('Cart %s was merged into cart %s.', cart_id, c.merged_into);
    ELSE
        RAISE EXCEPTION 'cart not found' USING ERRCODE = 'SH006',
            DETAIL = format('Cart %s expired at %s.', cart_id, c.expires_at);
    END IF;
END
$$;
COMMENT ON FUNCTION shop._cart_missing(uuid) IS 'internal: raise SH006 explaining why a cart is not usable';

-- _cart_product: the current price of an active product (SH006 unknown,
-- SH008 not active).
CREATE FUNCTION shop._cart_product(product_id bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    st text;
    price bigint;
BEGIN
    PERFORM shop._require(product_id, 'product_id');
    SELECT p.status, p.price_cents INTO st, price
      FROM shop.product p WHERE p.product_id = _cart_product.product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found' USING ERRCODE = 'SH006',
            DETAIL = format('No product has product_id %s.', product_id);
    END IF;
    IF st <> 'active' THEN
        RAISE EXCEPTION 'product unavailable' USING ERRCODE = 'SH008',
            DETAIL = format('Product %s is %s.', product_id, st);
    END IF;
    RETURN price;
END
$$;
COMMENT ON FUNCTION shop._cart_product(bigint) IS 'internal: current price of an active product; SH006/SH008 otherwise';

CREATE FUNCTION shop.cart_create(customer_id bigint DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    id uuid;
BEGIN
    PERFORM shop._authorize(customer_id);
    INSERT INTO shop.cart (customer_id, expires_at)
    VALUES (cart_create.customer_id, shop._cart_expiry())
    RETURNING cart_id INTO id;
    RETURN id;
END
$$;
COMMENT ON FUNCTION shop.cart_create(bigint) IS
'open a cart for customer_id (NULL: anonymous, e.g. before login); returns its cart_id';

CREATE FUNCTION shop.cart_add(cart_id uuid, product_id bigint, qty int DEFAULT 1)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    price bigint;
    have int;
BEGIN
    PERFORM shop._cart_touch(cart_id);
    PERFORM shop._cart_qty(qty, 1);
    price := shop._cart_product(product_id);
    SELECT i.qty INTO have FROM shop.cart_item i
     WHERE i.cart_id = cart_add.cart_id AND i.product_id = cart_add.product_id;
    IF NOT FOUND THEN
        IF (SELECT count(*) FROM shop.cart_item i WHERE i.cart_id = cart_add.cart_id) >= 500 THEN
            RAISE EXCEPTION 'cart is full' USING ERRCODE = 'invalid_parameter_value',
                DETAIL = format('Cart %s already has 500 lines.', cart_id);
        END IF;
        INSERT INTO shop.cart_item (cart_id, product_id, qty, price_cents_at_add)
        VALUES (cart_add.cart_id, cart_add.product_id, cart_add.qty, price);
    ELSE
        IF have + qty > 10000 THEN
            RAISE EXCEPTION 'quantity out of range' USING ERRCODE = 'invalid_parameter_value',
                DETAIL = format('The line would hold %s units of product %s; at most 10000 are allowed.',
                                have + qty, product_id);
        END IF;
        -- adding again: the customer has seen today's price, and a line
        -- saved for later comes back into the cart
        UPDATE shop.cart_item i
           SET qty = i.qty + cart_add.qty, price_cents_at_add = price, saved_for_later = false
         WHERE i.cart_id = cart_add.cart_id AND i.product_id = cart_add.product_id;
    END IF;
END
$$;
COMMENT ON FUNCTION shop.cart_add(uuid, bigint, int) IS
'add qty units of an active product to a cart (adds to an existing line, which comes back from saved-for-later)';

CREATE FUNCTION shop.cart_set_qty(cart_id uuid, product_id bigint, qty int)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._cart_touch(cart_id);
    PERFORM shop._require(product_id, 'product_id');
    PERFORM shop._cart_qty(qty, 0);
    IF qty = 0 THEN
        DELETE FROM shop.cart_item i
         WHERE i.cart_id = cart_set_qty.cart_id AND i.product_id = cart_set_qty.product_id;
    ELSE
        UPDATE shop.cart_item i SET qty = cart_set_qty.qty
         WHERE i.cart_id = cart_set_qty.cart_id AND i.product_id = cart_set_qty.product_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not in cart' USING ERRCODE = 'SH006',
            DETAIL = format('Cart %s has no line for product %s.', cart_id, product_id);
    END IF;
END
$$;
COMMENT ON FUNCTION shop.cart_set_qty(uuid, bigint, int) IS
'set the quantity of a cart line; 0 removes it; SH006 when the product is not in the cart';

CREATE FUNCTION shop.cart_remove(cart_id uuid, product_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._cart_touch(cart_id);
    PERFORM shop._require(product_id, 'product_id');
    DELETE FROM shop.cart_item i
     WHERE i.cart_id = cart_remove.cart_id AND i.product_id = cart_remove.product_id;
END
$$;
COMMENT ON FUNCTION shop.cart_remove(uuid, bigint) IS
'remove a product from a cart (both lists); removing a product that is not there does nothing';

-- _cart_flag: move a line between the cart and the saved-for-later list.
CREATE FUNCTION shop._cart_flag(cart_id uuid, product_id bigint, saved boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._cart_touch(cart_id);
    PERFORM shop._require(product_id, 'product_id');
    IF NOT saved THEN
        PERFORM shop._cart_product(product_id);
    END IF;
    UPDATE shop.cart_item i SET saved_for_later = saved
     WHERE i.cart_id = _cart_flag.cart_id AND i.product_id = _cart_flag.product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not in cart' USING ERRCODE = 'SH006',
            DETAIL = format('Cart %s has no line for product %s.', cart_id, product_id);
    END IF;
END
$$;
COMMENT ON FUNCTION shop._cart_flag(uuid, bigint, boolean) IS 'internal: sets saved_for_later of one cart line';

CREATE FUNCTION shop.cart_save_for_later(cart_id uuid, product_id bigint)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$ SELECT shop._cart_flag(cart_id, product_id, true) $$;
COMMENT ON FUNCTION shop.cart_save_for_later(uuid, bigint) IS
'move a cart line to the saved-for-later list (kept, not checked out)';

CREATE FUNCTION shop.cart_move_to_cart(cart_id uuid, product_id bigint)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$ SELECT shop._cart_flag(cart_id, product_id, false) $$;
COMMENT ON FUNCTION shop.cart_move_to_cart(uuid, bigint) IS
'move a saved-for-later line back into the cart (SH008 if the product is no longer active)';

CREATE FUNCTION shop.cart_clear(cart_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._cart_touch(cart_id);
    DELETE FROM shop.cart_item i WHERE i.cart_id = cart_clear.cart_id AND NOT i.saved_for_later;
END
$$;
COMMENT ON FUNCTION shop.cart_clear(uuid) IS
'remove every line of a cart; saved-for-later lines stay';

CREATE FUNCTION shop.cart_get(cart_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    c shop.cart;
    result jsonb;
BEGIN
    PERFORM shop._require(cart_id, 'cart_id');
    SELECT * INTO c FROM shop.cart t
     WHERE t.cart_id = cart_get.cart_id AND t.status = 'open' AND t.expires_at > now();
    IF NOT FOUND THEN
        PERFORM shop._cart_missing(cart_id);
    END IF;
    PERFORM shop._authorize(c.customer_id);
    WITH line AS (
        SELECT i.product_id, i.qty, i.saved_for_later, i.price_cents_at_add, i.added_at,
               p.sku, p.title, p.images[1] AS image, p.status,
               p.price_cents, shop.stock_available(i.product_id) AS avail
          FROM shop.cart_item i
          JOIN shop.product p ON p.product_id = i.product_id
         WHERE i.cart_id = c.cart_id
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
               'cart_id', c.cart_id,
               'customer_id', c.customer_id,
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
               'updated_at', c.updated_at,
               'expires_at', c.expires_at)
      INTO result
      FROM j;
    RETURN result;
END
$$;
COMMENT ON FUNCTION shop.cart_get(uuid) IS
'the cart as jsonb: lines (current and at-add price, price_changed, availability), saved_for_later, item_count, subtotal_cents';

-- cart_merge: at login the anonymous cart joins the customer's most
-- recently used open cart (quantities of a product in both are summed, up
-- to 10000; a line active in either stays active).  When the customer has
-- no open cart the anonymous cart simply becomes theirs.
CREATE FUNCTION shop.cart_merge(from_cart uuid, customer_id bigint)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    src shop.cart;
    target uuid;
BEGIN
    PERFORM shop._require(from_cart, 'from_cart');
    PERFORM shop._require(customer_id, 'customer_id');
    PERFORM shop._authorize(customer_id);
    SELECT * INTO src FROM shop.cart t
     WHERE t.cart_id = from_cart AND t.status = 'open' AND t.expires_at > now()
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM shop._cart_missing(from_cart);
    END IF;
    IF src.customer_id IS NOT NULL AND src.customer_id <> cart_merge.customer_id THEN
        RAISE EXCEPTION 'cart belongs to another customer' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('Cart %s belongs to customer %s, not %s.', from_cart, src.customer_id, customer_id);
    END IF;
    SELECT t.cart_id INTO target FROM shop.cart t
     WHERE t.customer_id = cart_merge.customer_id AND t.status = 'open'
       AND t.expires_at > now() AND t.cart_id <> from_cart
     ORDER BY t.updated_at DESC, t.cart_id
     LIMIT 1
       FOR UPDATE;
    IF target IS NULL THEN
        UPDATE shop.cart t
           SET customer_id = cart_merge.customer_id, updated_at = now(), expires_at = shop._cart_expiry()
         WHERE t.cart_id = from_cart;
        RETURN from_cart;
    END IF;
    INSERT INTO shop.cart_item AS i (cart_id, product_id, qty, saved_for_later, price_cents_at_add, added_at)
    SELECT target, s.product_id, s.qty, s.saved_for_later, s.price_cents_at_add, s.added_at
      FROM shop.cart_item s WHERE s.cart_id = from_cart
    ON CONFLICT ON CONSTRAINT cart_item_pkey DO UPDATE
       SET qty = least(i.qty + excluded.qty, 10000),
           saved_for_later = i.saved_for_later AND excluded.saved_for_later;
    DELETE FROM shop.cart_item s WHERE s.cart_id = from_cart;
    UPDATE shop.cart t SET status = 'merged', merged_into = target, updated_at = now()
     WHERE t.cart_id = from_cart;
    UPDATE shop.cart t SET updated_at = now(), expires_at = shop._cart_expiry()
     WHERE t.cart_id = target;
    RETURN target;
END
$$;
COMMENT ON FUNCTION shop.cart_merge(uuid, bigint) IS
'merge an anonymous cart into the customer''s open cart at login; returns the cart that holds the lines now';

------------------------------------------------------------------------------
-- 5. Orders & payments
------------------------------------------------------------------------------

-- The order state machine, its side effects, checkout and the payment
-- calls are C (src/orders.c, src/payments.c); docs/orders.md draws the
-- diagram.  order_line.reservation_id is the stock hold of each line:
-- cancel releases them, ship commits them.
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
    shipped_at       timestamptz,
    fraud_score      real,
    fraud_reasons    text[] NOT NULL DEFAULT '{}',
    needs_review     boolean NOT NULL DEFAULT false,
    was_paid         boolean NOT NULL DEFAULT false,
    idempotency_key  text,
    event_count      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_customer_idx ON shop."order" (customer_id, created_at DESC);
CREATE INDEX order_pending_idx ON shop."order" (created_at) WHERE status = 'pending';
CREATE INDEX order_review_idx ON shop."order" (created_at) WHERE needs_review;
COMMENT ON TABLE shop."order" IS 'order headers; status follows the state machine of docs/orders.md';

CREATE TABLE shop.order_line (
    order_id         uuid NOT NULL REFERENCES shop."order" (order_id) ON DELETE CASCADE,
    line_no          integer NOT NULL,
    product_id       bigint NOT NULL,
    sku              text NOT NULL,
    title            text NOT NULL,
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    qty              integer NOT NULL CHECK (qty > 0),
    reservation_id   uuid,                 -- the stock hold of this line
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
COMMENT ON TABLE shop.order_event IS 'append-only history of every order transition (and fraud review decisions)';

CREATE TABLE shop.payment (
    order_id     uuid NOT NULL REFERENCES shop."order" (order_id) ON DELETE CASCADE,
    payment_id   uuid NOT NULL DEFAULT gen_random_uuid(),
    provider     text NOT NULL,
    token        text NOT NULL,
    card_brand   text,
    last4        text CHECK (last4 ~ '^[0-9]{4}$'),
    status       text NOT NULL CHECK (status IN ('pending', 'authorized', 'captured', 'failed',
                                                 'voided', 'refunded')),
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    fraud_score  real,
    provider_ref text,
    failure_reason text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, payment_id)
);
CREATE UNIQUE INDEX payment_id_idx ON shop.payment (payment_id);
CREATE INDEX payment_token_idx ON shop.payment (token, created_at);
CREATE INDEX payment_failed_idx ON shop.payment (updated_at) WHERE status = 'failed';
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
    PRIMARY KEY (customer_id, payment_method_id),
    UNIQUE (customer_id, token)
);
COMMENT ON TABLE shop.payment_method IS 'saved payment methods: provider tokens with brand and last four digits';

CREATE TABLE shop.idempotency (
    -- 'c:<customer_id>', or for an anonymous cart 'k:<cart_id>'
    scope       text NOT NULL,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    fingerprint text NOT NULL,
    order_id    uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created_idx ON shop.idempotency (created_at);
COMMENT ON TABLE shop.idempotency IS 'checkout idempotency keys with the fingerprint of their request and the order it made';

CREATE TABLE shop.event (
    event_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shop.event IS 'transactional outbox: every insert is also sent with pg_notify(''shop_events'')';

-- Shipping and tax rules.  The most specific matching row wins: a row for
-- the address's country (and region) beats the catch-all row with NULLs;
-- for shipping, among matching rows the one with the highest
-- min_subtotal_cents not above the subtotal applies (free shipping over a
-- threshold is a row with cents = 0).  builtin rows are the defaults the
-- extension installs; pg_dump keeps only the rows you add.
CREATE TABLE shop.shipping_rate (
    rate_id            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    country            text CHECK (country ~ '^[A-Z]{2}$'),
    min_subtotal_cents bigint NOT NULL DEFAULT 0 CHECK (min_subtotal_cents >= 0),
    cents              bigint NOT NULL CHECK (cents >= 0),
    builtin            boolean NOT NULL DEFAULT false,
    UNIQUE NULLS NOT DISTINCT (country, min_subtotal_cents)
);
COMMENT ON TABLE shop.shipping_rate IS 'shipping price by destination country and order subtotal';
INSERT INTO shop.shipping_rate (country, min_subtotal_cents, cents, builtin)
VALUES (NULL, 0, 499, true), (NULL, 5000, 0, true);

CREATE TABLE shop.tax_rate (
    rate_id     bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    country     text CHECK (country ~ '^[A-Z]{2}$'),
    region      text CHECK (length(region) <= 100),
    basis_points integer NOT NULL CHECK (basis_points BETWEEN 0 AND 10000),
    builtin     boolean NOT NULL DEFAULT false,
    CHECK (region IS NULL OR country IS NOT NULL),
    UNIQUE NULLS NOT DISTINCT (country, region)
);
COMMENT ON TABLE shop.tax_rate IS 'sales tax in basis points (725 = 7.25%) of the subtotal, by country and region';
INSERT INTO shop.tax_rate (country, region, basis_points, builtin) VALUES (NULL, NULL, 0, true);

-- _shipping_cents / _tax_cents: the rules above for one order.
CREATE FUNCTION shop._shipping_cents(subtotal_cents bigint, address jsonb)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT coalesce((
        SELECT r.cents FROM shop.shipping_rate r
         WHERE (r.country IS NULL OR r.country = upper(address->>'country'))
           AND r.min_subtotal_cents <= subtotal_cents
         ORDER BY r.country IS NULL, r.min_subtotal_cents DESC
         LIMIT 1), 0)
$$;
COMMENT ON FUNCTION shop._shipping_cents(bigint, jsonb) IS
'shipping price of an order by the rules of shop.shipping_rate (checkout applies the same rules, src/orders.c)';

CREATE FUNCTION shop._tax_cents(subtotal_cents bigint, address jsonb)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT coalesce((
        SELECT round(subtotal_cents::numeric * r.basis_points / 10000)::bigint
          FROM shop.tax_rate r
         WHERE (r.country IS NULL OR r.country = upper(address->>'country'))
           AND (r.region IS NULL OR r.region = coalesce(address->>'region', address->>'state'))
         ORDER BY r.country IS NULL, r.region IS NULL
         LIMIT 1), 0)
$$;
COMMENT ON FUNCTION shop._tax_cents(bigint, jsonb) IS
'sales tax of an order by the rules of shop.tax_rate (checkout applies the same rules, src/orders.c)';

-- Session identity and authorization (src/security.c, docs/security.md).
CREATE FUNCTION shop.session_token(customer_id bigint, ttl interval DEFAULT '1 day')
RETURNS text
AS 'MODULE_PATHNAME', 'shop_session_token'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.session_token(bigint, interval) IS
'admin: a token, signed with shop.session_secret, that lets the storefront act as customer_id until ttl passes';

CREATE FUNCTION shop.session_begin(token text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'shop_session_begin'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.session_begin(text) IS
'verify a session token (28000 when forged or expired) and act as its customer for the rest of the session';

CREATE FUNCTION shop.session_end()
RETURNS void
AS 'MODULE_PATHNAME', 'shop_session_end'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.session_end() IS 'forget the customer of shop.session_begin';

CREATE FUNCTION shop.current_customer()
RETURNS bigint
AS 'MODULE_PATHNAME', 'shop_current_customer'
LANGUAGE C STABLE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.current_customer() IS
'the customer verified by shop.session_begin in this session, NULL if none';

CREATE FUNCTION shop._authorize(customer_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'shop_authorize'
LANGUAGE C STABLE
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop._authorize(bigint) IS
'internal: 42501 unless the caller is trusted (superuser, shop_admin) or customer_id is NULL or the session''s customer';

-- Checkout, transitions and payments (C).
CREATE FUNCTION shop.checkout(cart_id uuid, payment_token text, idempotency_key text,
                              shipping_address jsonb DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'shop_checkout'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.checkout(uuid, text, text, jsonb) IS
'turn a cart into an order in one transaction: reserve, price, score fraud, authorize; idempotent per key';

CREATE FUNCTION shop.order_transition(order_id uuid, to_status text, note text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_order_transition'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.order_transition(uuid, text, text) IS
'admin: move an order to to_status along the state machine, with its side effects; SH002 otherwise';

CREATE FUNCTION shop.order_ship(order_id uuid, carrier text, tracking_number text)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_order_ship'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.order_ship(uuid, text, text) IS
'admin: ship a fulfilling order: commit its stock holds and record carrier and tracking number';

CREATE FUNCTION shop.order_review(order_id uuid, approve boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_order_review'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.order_review(uuid, boolean) IS
'admin: decide on an order flagged for fraud review: approve lets it be fulfilled, reject cancels it';

CREATE FUNCTION shop.payment_confirm(order_id uuid, provider_ref text)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_payment_confirm'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.payment_confirm(uuid, text) IS
'admin: the gateway captured the payment of a pending order: it becomes paid (repeating the same provider_ref is a no-op)';

CREATE FUNCTION shop.payment_fail(order_id uuid, reason text)
RETURNS text
AS 'MODULE_PATHNAME', 'shop_payment_fail'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.payment_fail(uuid, text) IS
'admin: the gateway declined the payment of a pending order: it is cancelled and its stock released';

CREATE FUNCTION shop.payment_method_add(customer_id bigint, token text, brand text,
                                        last4 text, exp_month int, exp_year int)
RETURNS uuid
AS 'MODULE_PATHNAME', 'shop_payment_method_add'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp;
COMMENT ON FUNCTION shop.payment_method_add(bigint, text, text, text, int, int) IS
'save a provider token (never a card number) with brand, last four digits and expiry for a customer';

CREATE FUNCTION shop.order_get(order_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    o shop."order";
BEGIN
    PERFORM shop._require(order_id, 'order_id');
    SELECT * INTO o FROM shop."order" t WHERE t.order_id = order_get.order_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order not found' USING ERRCODE = 'SH006',
            DETAIL = format('No order has order_id %s.', order_id);
    END IF;
    PERFORM shop._authorize(o.customer_id);
    RETURN jsonb_build_object(
        'order_id', o.order_id,
        'customer_id', o.customer_id,
        'status', o.status,
        'needs_review', o.needs_review,
        'fraud_score', o.fraud_score,
        'fraud_reasons', to_jsonb(o.fraud_reasons),
        'currency', o.currency,
        'subtotal_cents', o.subtotal_cents,
        'shipping_cents', o.shipping_cents,
        'tax_cents', o.tax_cents,
        'total_cents', o.total_cents,
        'shipping_address', o.shipping_address,
        'tracking', CASE WHEN o.carrier IS NOT NULL OR o.tracking_number IS NOT NULL THEN
                        jsonb_build_object('carrier', o.carrier, 'tracking_number', o.tracking_number,
                                           'shipped_at', o.shipped_at) END,
        'lines', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'line_no', l.line_no, 'product_id', l.product_id, 'sku', l.sku,
                      'title', l.title, 'unit_price_cents', l.unit_price_cents, 'qty', l.qty,
                      'line_total_cents', l.unit_price_cents * l.qty) ORDER BY l.line_no), '[]')
                    FROM shop.order_line l WHERE l.order_id = o.order_id),
        'payments', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'payment_id', p.payment_id, 'provider', p.provider, 'card_brand', p.card_brand,
                      'last4', p.last4, 'status', p.status, 'amount_cents', p.amount_cents,
                      'provider_ref', p.provider_ref, 'failure_reason', p.failure_reason)
                      ORDER BY p.created_at), '[]')
                    FROM shop.payment p WHERE p.order_id = o.order_id),
        'timeline', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'seq', e.seq, 'from', e.from_status, 'to', e.to_status, 'note', e.note,
                      'at', e.at) ORDER BY e.seq), '[]')
                    FROM shop.order_event e WHERE e.order_id = o.order_id),
        'created_at', o.created_at,
        'updated_at', o.updated_at);
END
$$;
COMMENT ON FUNCTION shop.order_get(uuid) IS
'the order as jsonb: status, totals, lines, payments, timeline of transitions, tracking';

CREATE FUNCTION shop.orders_for(customer_id bigint, lim int DEFAULT 20, before timestamptz DEFAULT NULL)
RETURNS TABLE (order_id uuid, status text, total_cents bigint, item_count bigint,
               needs_review boolean, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._require(customer_id, 'customer_id');
    PERFORM shop._check_page(lim, 0);
    PERFORM shop._authorize(customer_id);
    RETURN QUERY
    SELECT o.order_id, o.status, o.total_cents,
           (SELECT coalesce(sum(l.qty), 0) FROM shop.order_line l WHERE l.order_id = o.order_id)::bigint,
           o.needs_review, o.created_at
      FROM shop."order" o
     WHERE o.customer_id = orders_for.customer_id
       AND (orders_for.before IS NULL OR o.created_at < orders_for.before)
     ORDER BY o.created_at DESC, o.order_id
     LIMIT lim;
END
$$;
COMMENT ON FUNCTION shop.orders_for(bigint, int, timestamptz) IS
'a customer''s orders, newest first; pass the created_at of the last row as before for the next page';

-- Privileges.  Two NOLOGIN roles, created if absent (they are cluster-wide
-- and outlive the extension): shop_storefront for the customer-facing
-- application, which acts only as the customer of its verified session
-- (shop.session_begin), and shop_admin for back-office tools, which may act
-- for any customer and run the admin calls.  Grant them to login roles.
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
GRANT USAGE ON SCHEMA shop TO shop_storefront, shop_admin;

REVOKE EXECUTE ON FUNCTION
    shop.cart_create(bigint), shop.cart_add(uuid, bigint, int), shop.cart_set_qty(uuid, bigint, int),
    shop.cart_remove(uuid, bigint), shop.cart_save_for_later(uuid, bigint),
    shop.cart_move_to_cart(uuid, bigint), shop.cart_clear(uuid), shop.cart_get(uuid),
    shop.cart_merge(uuid, bigint), shop.checkout(uuid, text, text, jsonb),
    shop.order_get(uuid), shop.orders_for(bigint, int, timestamptz),
    shop.payment_method_add(bigint, text, text, text, int, int), shop.session_begin(text),
    shop.session_token(bigint, interval), shop.order_transition(uuid, text, text),
    shop.order_ship(uuid, text, text), shop.order_review(uuid, boolean),
    shop.payment_confirm(uuid, text), shop.payment_fail(uuid, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    shop.cart_create(bigint), shop.cart_add(uuid, bigint, int), shop.cart_set_qty(uuid, bigint, int),
    shop.cart_remove(uuid, bigint), shop.cart_save_for_later(uuid, bigint),
    shop.cart_move_to_cart(uuid, bigint), shop.cart_clear(uuid), shop.cart_get(uuid),
    shop.cart_merge(uuid, bigint), shop.checkout(uuid, text, text, jsonb),
    shop.order_get(uuid), shop.orders_for(bigint, int, timestamptz),
    shop.payment_method_add(bigint, text, text, text, int, int), shop.session_begin(text)
    TO shop_storefront, shop_admin;
GRANT EXECUTE ON FUNCTION
    shop.session_token(bigint, interval), shop.order_transition(uuid, text, text),
    shop.order_ship(uuid, text, text), shop.order_review(uuid, boolean),
    shop.payment_confirm(uuid, text), shop.payment_fail(uuid, text)
    TO shop_admin;

-- Row level security: the storefront may also read its customer's carts
-- and orders directly (e.g. through PostgREST), and sees no other rows.
-- The table owner (and so every SECURITY DEFINER call) is not subject to
-- it; shop_admin sees every row.
GRANT SELECT ON shop.cart, shop.cart_item, shop."order", shop.order_line, shop.order_event,
                shop.payment, shop.payment_method
   TO shop_storefront, shop_admin;
ALTER TABLE shop.cart ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop.cart_item ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop."order" ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop.order_line ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop.order_event ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop.payment ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop.payment_method ENABLE ROW LEVEL SECURITY;
CREATE POLICY storefront_own ON shop.cart FOR SELECT TO shop_storefront
    USING (customer_id = shop.current_customer());
CREATE POLICY storefront_own ON shop.cart_item FOR SELECT TO shop_storefront
    USING (EXISTS (SELECT 1 FROM shop.cart c WHERE c.cart_id = cart_item.cart_id));
CREATE POLICY storefront_own ON shop."order" FOR SELECT TO shop_storefront
    USING (customer_id = shop.current_customer());
CREATE POLICY storefront_own ON shop.order_line FOR SELECT TO shop_storefront
    USING (EXISTS (SELECT 1 FROM shop."order" o WHERE o.order_id = order_line.order_id));
CREATE POLICY storefront_own ON shop.order_event FOR SELECT TO shop_storefront
    USING (EXISTS (SELECT 1 FROM shop."order" o WHERE o.order_id = order_event.order_id));
CREATE POLICY storefront_own ON shop.payment FOR SELECT TO shop_storefront
    USING (EXISTS (SELECT 1 FROM shop."order" o WHERE o.order_id = payment.order_id));
CREATE POLICY storefront_own ON shop.payment_method FOR SELECT TO shop_storefront
    USING (customer_id = shop.current_customer());
CREATE POLICY admin_all ON shop.cart TO shop_admin USING (true);
CREATE POLICY admin_all ON shop.cart_item TO shop_admin USING (true);
CREATE POLICY admin_all ON shop."order" TO shop_admin USING (true);
CREATE POLICY admin_all ON shop.order_line TO shop_admin USING (true);
CREATE POLICY admin_all ON shop.order_event TO shop_admin USING (true);
CREATE POLICY admin_all ON shop.payment TO shop_admin USING (true);
CREATE POLICY admin_all ON shop.payment_method TO shop_admin USING (true);

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
-- How the pieces fit (docs/recommendations.md has the whole story):
--   * a deferred constraint trigger on shop."order" appends one row to
--     shop.copurchase_delta whenever an order starts or stops being
--     "counted" (paid, fulfilling, shipped, delivered); checkout never
--     touches a shared co-purchase row;
--   * shop.refresh_recommendations() folds the log in: for every customer
--     named there it compares the orders folded so far
--     (shop.copurchase_order, with the weight each was folded with) with the
--     customer's counted orders now, and applies the difference to the item
--     statistics (shop.copurchase_item) and the full pair counts
--     (shop.copurchase_pair); C code then rescores the products whose
--     numbers changed and rewrites their top-N rows of shop.copurchase;
--   * shop.rebuild_recommendations() does the same from the whole history.

CREATE TABLE shop.view_event (
    customer_id bigint NOT NULL,
    viewed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    product_id  bigint NOT NULL,
    PRIMARY KEY (customer_id, viewed_at, product_id)
);
CREATE INDEX view_event_product_idx ON shop.view_event (product_id, viewed_at);
CREATE INDEX view_event_recent_idx ON shop.view_event (viewed_at);
COMMENT ON TABLE shop.view_event IS
'latest view of each product per customer, at most shop.recent_views_cap rows per customer';

-- The item-to-item table read by also_bought: the top shop.reco_neighbours
-- neighbours of every product, by score.
CREATE TABLE shop.copurchase (
    product_id bigint NOT NULL,
    other_id   bigint NOT NULL,
    pair_count real NOT NULL,
    score      real NOT NULL,
    PRIMARY KEY (product_id, other_id)
);
CREATE INDEX copurchase_score_idx ON shop.copurchase (product_id, score DESC);
COMMENT ON TABLE shop.copurchase IS
'item-to-item table: top neighbours of product_id, with their (weighted) pair count and score (N - E) / sqrt(E)';

-- Append-only log written by checkout's transaction (through the trigger
-- below) and consumed by shop.refresh_recommendations().  customer_id NULL:
-- a guest order, which is its own "customer".
CREATE TABLE shop.copurchase_delta (
    customer_id bigint,
    order_id    uuid NOT NULL,
    counted     boolean NOT NULL,
    logged_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX copurchase_delta_order_idx ON shop.copurchase_delta (order_id);
COMMENT ON TABLE shop.copurchase_delta IS
'orders that started (counted) or stopped (not counted) being counted since the last refresh; append-only';

-- The orders folded into the statistics, with the weight each was folded
-- with (so that a refresh can take exactly that contribution back out).
CREATE TABLE shop.copurchase_order (
    order_id    uuid PRIMARY KEY,
    customer_id bigint,
    weight      double precision NOT NULL CHECK (weight > 0)
);
CREATE INDEX copurchase_order_customer_idx ON shop.copurchase_order (customer_id);
COMMENT ON TABLE shop.copurchase_order IS
'counted orders already folded into the co-purchase statistics, with their weight';

-- Per product: weighted number of baskets holding it (its popularity n)
-- and the weighted number of other items those baskets held (s); the
-- expected co-purchase count of x with y is n_y * s_x / T, T = sum of n.
CREATE TABLE shop.copurchase_item (
    product_id bigint PRIMARY KEY,
    baskets    double precision NOT NULL,
    slots      double precision NOT NULL
);
COMMENT ON TABLE shop.copurchase_item IS
'co-purchase statistics per product: weighted basket count and weighted count of items bought alongside';

-- Every co-purchase pair, one row per product with all its neighbours
-- (both directions are stored, so a product's list is one row).
CREATE TABLE shop.copurchase_pair (
    product_id bigint PRIMARY KEY,
    other_ids  bigint[] NOT NULL,
    counts     double precision[] NOT NULL
);
COMMENT ON TABLE shop.copurchase_pair IS
'all weighted co-purchase counts of a product: other_ids[i] was bought with it counts[i] times';

CREATE TABLE shop.copurchase_state (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    scored_total  double precision NOT NULL DEFAULT 0,
    refreshed_at  timestamptz,
    rebuilt_at    timestamptz,
    popularity_at timestamptz,          -- last full popularity run
    popularity_inc_at timestamptz,      -- last run of either kind
    popularity_ref timestamptz          -- the "now" ages are measured from
);
COMMENT ON TABLE shop.copurchase_state IS
'at most one row: the basket total T every product was last scored against, times of the last refresh and rebuild';

-- Result rows of the recommendation calls.  A composite type rather than
-- RETURNS TABLE, because also_bought and similar_products take an argument
-- named product_id and return a column of the same name.
CREATE TYPE shop.scored_product AS (product_id bigint, score real);
COMMENT ON TYPE shop.scored_product IS 'a recommended product and its score (higher is better)';

CREATE INDEX product_popularity_idx ON shop.product (popularity DESC) WHERE status = 'active';

-- _counted: the order states whose lines count as purchases.
-- No SET clause: it is inlined into the (search_path pinned) queries that
-- call it, instead of costing a function call per order row.
CREATE FUNCTION shop._counted(status text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(status OPERATOR(pg_catalog.=) ANY ('{paid,fulfilling,shipped,delivered}'::text[]), false) $$;
COMMENT ON FUNCTION shop._counted(text) IS
'internal: true for the order states whose lines count as purchases (paid, fulfilling, shipped, delivered)';

-- The capture trigger: deferred to commit, so lines inserted after the
-- order header in the same transaction are there when the refresh reads
-- them.  It only appends; a repeated row is harmless (the refresh diffs).
CREATE FUNCTION shop._copurchase_capture_trg()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT shop._counted(NEW.status) THEN
            RETURN NULL;
        END IF;
    ELSIF shop._counted(OLD.status) IS NOT DISTINCT FROM shop._counted(NEW.status)
          AND OLD.customer_id IS NOT DISTINCT FROM NEW.customer_id THEN
        RETURN NULL;
    END IF;
    -- one pending row per order and customer is enough: the refresh
    -- recomputes the customer's whole contribution (this also keeps a
    -- pg_restore, which re-fires the trigger, from doubling the log)
    IF NOT EXISTS (SELECT 1 FROM shop.copurchase_delta d
                    WHERE d.order_id = NEW.order_id
                      AND d.customer_id IS NOT DISTINCT FROM NEW.customer_id) THEN
        INSERT INTO shop.copurchase_delta (customer_id, order_id, counted)
        VALUES (NEW.customer_id, NEW.order_id, shop._counted(NEW.status));
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.customer_id IS DISTINCT FROM NEW.customer_id THEN
        INSERT INTO shop.copurchase_delta (customer_id, order_id, counted)
        VALUES (OLD.customer_id, OLD.order_id, false);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION shop._copurchase_capture_trg() IS
'internal: logs orders that start or stop counting as purchases to shop.copurchase_delta';

CREATE CONSTRAINT TRIGGER order_copurchase_capture
    AFTER INSERT OR UPDATE OF status, customer_id ON shop."order"
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION shop._copurchase_capture_trg();

-- C workers (src/recommend.c).
CREATE FUNCTION shop._copurchase_apply(order_ids uuid[], weights double precision[])
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'shop_copurchase_apply'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION shop._copurchase_apply(uuid[], double precision[]) IS
'internal: adds weights[i] times the contribution of order order_ids[i] to the item statistics and pair counts; returns the products changed';

CREATE FUNCTION shop._copurchase_score(product_ids bigint[], expand boolean)
RETURNS bigint
AS 'MODULE_PATHNAME', 'shop_copurchase_score'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION shop._copurchase_score(bigint[], boolean) IS
'internal: recomputes the shop.copurchase rows of the given products (NULL: all), with their neighbours when expand; returns how many were scored';

CREATE FUNCTION shop._copurchase_rebuild()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'shop_copurchase_rebuild'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION shop._copurchase_rebuild() IS
'internal: recomputes every co-purchase table from shop.copurchase_order';

-- The popularity values the refresh last wrote.  Only products listed here
-- (or getting a value now) are ever written, so a popularity loaded with
-- the catalog survives until the product's own purchases or views replace
-- it.
CREATE TABLE shop.product_popularity (
    product_id bigint PRIMARY KEY,
    popularity real NOT NULL
);
COMMENT ON TABLE shop.product_popularity IS
'products whose shop.product.popularity the recommendation refresh maintains, with the value it last wrote';

-- _popularity_refresh: shop.product.popularity = r / (r + 10) where r sums,
-- over counted order lines and views, 2^(-age / shop.popularity_half_life)
-- (a purchase weighs 1, a view 0.2): 0.5 for ten fresh purchases, towards
-- 1 for best-sellers.  Ages are measured from the newest counted order or
-- view, so a history loaded from the past still ranks; events older than
-- 16 half-lives are ignored.  A value depends on the product's own events
-- only, and a row is written only when it moves by at least 0.002 (every
-- write fires the product triggers and touches its indexes).  Products
-- whose events all aged out go back to 0.
CREATE FUNCTION shop._popularity_refresh(products bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    half_life double precision :=
        extract(epoch FROM coalesce(current_setting('shop.popularity_half_life', true), '7d')::interval);
    t_ref timestamptz;
    lo timestamptz;
    n bigint;
    ids bigint[];
    pops real[];
BEGIN
    IF products IS NULL THEN
        -- every product: ages from the newest event of all
        t_ref := greatest((SELECT max(created_at) FROM shop."order" WHERE shop._counted(status)),
                          (SELECT max(viewed_at) FROM shop.view_event));
        lo := t_ref - make_interval(secs => 16 * half_life);
    ELSE
        -- the given products only, read through their product indexes; ages
        -- from the reference of the last full run, moved forward to their
        -- newest event (other products keep the older reference until the
        -- next full run, at most 1/100 of a half-life away)
        t_ref := (SELECT s.popularity_ref FROM shop.copurchase_state s);
        lo := coalesce(t_ref, '-infinity') - make_interval(secs => 16 * half_life);
    END IF;
    WITH ev AS MATERIALIZED (
        SELECT l.product_id, o.created_at AS at, 1.0 AS wt
          FROM shop."order" o
          JOIN shop.order_line l ON l.order_id = o.order_id
         WHERE products IS NULL AND shop._counted(o.status) AND o.created_at > lo
        UNION ALL
        SELECT l.product_id, o.created_at, 1.0
          FROM shop.order_line l
          JOIN shop."order" o ON o.order_id = l.order_id
         WHERE products IS NOT NULL AND l.product_id = ANY (products)
           AND shop._counted(o.status) AND o.created_at > lo
        UNION ALL
        SELECT v.product_id, v.viewed_at, 0.2
          FROM shop.view_event v
         WHERE products IS NULL AND v.viewed_at > lo
        UNION ALL
        SELECT v.product_id, v.viewed_at, 0.2
          FROM shop.view_event v
         WHERE products IS NOT NULL AND v.product_id = ANY (products) AND v.viewed_at > lo
    ), ref AS (
        SELECT greatest(t_ref, max(at)) AS t FROM ev
    ), norm AS (
        SELECT ev.product_id,
               (sum(ev.wt * exp(-ln(2) * extract(epoch FROM ref.t - ev.at) / half_life))
                / (sum(ev.wt * exp(-ln(2) * extract(epoch FROM ref.t - ev.at) / half_life)) + 10))::real AS pop
          FROM ev, ref
         WHERE ev.at > ref.t - make_interval(secs => 16 * half_life)
         GROUP BY ev.product_id
    ), gone AS (
        DELETE FROM shop.product_popularity o
         WHERE (products IS NULL OR o.product_id = ANY (products))
           AND NOT EXISTS (SELECT 1 FROM norm WHERE norm.product_id = o.product_id)
        RETURNING o.product_id, 0::real AS pop
    ), moved AS (
        INSERT INTO shop.product_popularity AS o (product_id, popularity)
        SELECT product_id, pop FROM norm
        ON CONFLICT (product_id) DO UPDATE SET popularity = excluded.popularity
         WHERE abs(o.popularity - excluded.popularity) >= 0.002
        RETURNING o.product_id, o.popularity AS pop
    )
    SELECT array_agg(t.product_id), array_agg(t.pop), (SELECT t FROM ref)
      INTO ids, pops, t_ref
      FROM (SELECT * FROM gone UNION ALL SELECT * FROM moved) t;
    -- shop.product is only touched (and locked) when a value moved
    n := 0;
    IF ids IS NOT NULL THEN
        UPDATE shop.product p
           SET popularity = t.pop
          FROM unnest(ids, pops) AS t(product_id, pop)
         WHERE p.product_id = t.product_id
           AND p.popularity IS DISTINCT FROM t.pop;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    IF products IS NULL THEN
        INSERT INTO shop.copurchase_state AS s (popularity_at, popularity_inc_at, popularity_ref)
        VALUES (now(), now(), t_ref)
        ON CONFLICT (id) DO UPDATE
           SET popularity_at = excluded.popularity_at, popularity_inc_at = excluded.popularity_inc_at,
               popularity_ref = coalesce(excluded.popularity_ref, s.popularity_ref);
    ELSE
        INSERT INTO shop.copurchase_state AS s (popularity_inc_at, popularity_ref)
        VALUES (now(), t_ref)
        ON CONFLICT (id) DO UPDATE
           SET popularity_inc_at = excluded.popularity_inc_at,
               popularity_ref = greatest(s.popularity_ref, excluded.popularity_ref);
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION shop._popularity_refresh(bigint[]) IS
'internal: recomputes shop.product.popularity (0..1, time-decayed purchases and views) for the given products, or all when NULL';


CREATE FUNCTION shop.refresh_recommendations()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    buyer_cap double precision := coalesce(current_setting('shop.reco_buyer_cap', true), '20')::double precision;
    n_log bigint;
    t_cust bigint[];
    t_guest uuid[];
    d_order uuid[];
    d_cust bigint[];
    d_old double precision[];
    d_new double precision[];
    n_orders bigint := 0;
    changed bigint[];
    ids uuid[];
    ws double precision[];
    scored bigint := 0;
    total double precision;
    scored_total double precision;
    full_rescore boolean := false;
    n_pop bigint;
    pop_due boolean;
    pop_inc_at timestamptz;
BEGIN
    -- one refresh (or rebuild) at a time, and never a queue of them: when
    -- another one runs (the sweeper's, say), return at once; its log rows
    -- are left for the next call.  Checkouts are never blocked.
    IF NOT pg_try_advisory_xact_lock(hashtext('shop.recommendations')) THEN
        RETURN jsonb_build_object('skipped', 'another refresh or rebuild is running');
    END IF;
    -- nothing to do (the sweeper calls this every minute): no log rows, no
    -- view since popularity was last computed, and that was less than
    -- 1/100 of a half-life ago; return having written nothing
    SELECT s.popularity_at <= now() - coalesce(current_setting('shop.popularity_half_life', true), '7d')::interval / 100,
           s.popularity_inc_at
      INTO pop_due, pop_inc_at
      FROM shop.copurchase_state s;
    pop_due := coalesce(pop_due, true);
    IF NOT EXISTS (SELECT 1 FROM shop.copurchase_delta)
       AND ((NOT pop_due AND NOT EXISTS (SELECT 1 FROM shop.view_event v WHERE v.viewed_at > pop_inc_at))
            -- or a shop with no purchase or view at all yet
            OR (NOT EXISTS (SELECT 1 FROM shop.copurchase_order)
                AND NOT EXISTS (SELECT 1 FROM shop.view_event)
                AND NOT EXISTS (SELECT 1 FROM shop.product_popularity))) THEN
        RETURN jsonb_build_object('log_rows', 0, 'orders_applied', 0, 'products_changed', 0,
                                  'products_scored', 0, 'full_rescore', false, 'popularity_updated', 0);
    END IF;

    WITH d AS (DELETE FROM shop.copurchase_delta RETURNING customer_id, order_id)
    SELECT count(*),
           array_agg(DISTINCT customer_id) FILTER (WHERE customer_id IS NOT NULL),
           array_agg(DISTINCT order_id) FILTER (WHERE customer_id IS NULL)
      INTO n_log, t_cust, t_guest
      FROM d;

    IF n_log > 0 THEN
        -- new weights: every counted order of the customers (or guest
        -- orders) named in the log; a customer with more than
        -- shop.reco_buyer_cap counted orders has them share that weight.
        -- old weights: what was folded for them.  Keep the differences.
        WITH cur AS (
            SELECT o.order_id, o.customer_id,
                   least(1.0, buyer_cap / count(*) OVER (PARTITION BY o.customer_id))::double precision AS w
              FROM shop."order" o
             WHERE shop._counted(o.status) AND o.customer_id = ANY (t_cust)
            UNION ALL
            SELECT o.order_id, NULL, 1.0
              FROM shop."order" o
             WHERE shop._counted(o.status) AND o.customer_id IS NULL
               AND o.order_id = ANY (t_guest)
        ), old AS (
            SELECT f.order_id, f.customer_id, f.weight AS w
              FROM shop.copurchase_order f
             WHERE f.customer_id = ANY (t_cust)
            UNION ALL
            SELECT f.order_id, f.customer_id, f.weight
              FROM shop.copurchase_order f
             WHERE f.order_id = ANY (t_guest)
        ), diff AS (
            SELECT coalesce(cur.order_id, old.order_id) AS order_id,
                   coalesce(cur.customer_id, old.customer_id) AS customer_id,
                   coalesce(old.w, 0) AS old_w, coalesce(cur.w, 0) AS new_w
              FROM cur FULL JOIN (SELECT DISTINCT * FROM old) old ON old.order_id = cur.order_id
             WHERE coalesce(old.w, 0) <> coalesce(cur.w, 0)
                OR old.customer_id IS DISTINCT FROM cur.customer_id
        )
        SELECT array_agg(order_id), array_agg(customer_id), array_agg(old_w), array_agg(new_w)
          INTO d_order, d_cust, d_old, d_new
          FROM diff;

        IF d_order IS NOT NULL THEN
            DELETE FROM shop.copurchase_order f WHERE f.order_id = ANY (d_order);
            INSERT INTO shop.copurchase_order (order_id, customer_id, weight)
            SELECT o, c, w FROM unnest(d_order, d_cust, d_new) AS u(o, c, w) WHERE w > 0;

            -- take the old contribution out and put the new one in
            SELECT array_agg(o ORDER BY o), array_agg(w ORDER BY o)
              INTO ids, ws
              FROM (SELECT o, nw - ow AS w FROM unnest(d_order, d_old, d_new) AS u(o, ow, nw)
                     WHERE nw <> ow) x;
            n_orders := coalesce(cardinality(ids), 0);
            IF n_orders > 0 THEN
                changed := shop._copurchase_apply(ids, ws);
            END IF;
        END IF;
    END IF;

    -- rescore: the changed products and their neighbours; every product
    -- when the basket total moved by more than 5% since the last full scoring
    SELECT coalesce(sum(baskets), 0) INTO total FROM shop.copurchase_item;
    SELECT coalesce((SELECT s.scored_total FROM shop.copurchase_state s), 0) INTO scored_total;
    IF abs(total - scored_total) > 0.05 * greatest(scored_total, 1e-9) THEN
        full_rescore := true;
        scored := shop._copurchase_score(NULL, false);
        INSERT INTO shop.copurchase_state AS s (scored_total) VALUES (total)
        ON CONFLICT (id) DO UPDATE SET scored_total = excluded.scored_total;
    ELSIF coalesce(cardinality(changed), 0) > 0 THEN
        scored := shop._copurchase_score(changed, true);
    END IF;

    -- popularity: every product when due (1/100 of a half-life after the
    -- last full run), else only the products bought or viewed since
    IF pop_due THEN
        n_pop := shop._popularity_refresh();
    ELSE
        n_pop := shop._popularity_refresh(ARRAY(
            SELECT unnest(changed)
            UNION
            SELECT v.product_id FROM shop.view_event v WHERE v.viewed_at > pop_inc_at));
    END IF;
    INSERT INTO shop.copurchase_state AS s (refreshed_at) VALUES (now())
    ON CONFLICT (id) DO UPDATE SET refreshed_at = excluded.refreshed_at;
    RETURN jsonb_build_object('log_rows', n_log, 'orders_applied', n_orders,
                              'products_changed', coalesce(cardinality(changed), 0),
                              'products_scored', scored, 'full_rescore', full_rescore,
                              'popularity_updated', n_pop);
END
$$;
COMMENT ON FUNCTION shop.refresh_recommendations() IS
'fold the co-purchase log into the recommendation tables incrementally, rescore what changed, update product popularity; returns counts';

CREATE FUNCTION shop.rebuild_recommendations()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    buyer_cap double precision := coalesce(current_setting('shop.reco_buyer_cap', true), '20')::double precision;
    result jsonb;
    n_pop bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('shop.recommendations'));
    -- the log rows visible now are covered by the rebuild; later ones stay
    -- for the next refresh (which finds nothing left to do for them)
    DELETE FROM shop.copurchase_delta;
    -- TRUNCATE, not DELETE: re-inserting the same order ids over their
    -- own dead rows makes every unique check visit the heap
    TRUNCATE shop.copurchase_order;
    INSERT INTO shop.copurchase_order (order_id, customer_id, weight)
    SELECT o.order_id, o.customer_id,
           CASE WHEN o.customer_id IS NULL THEN 1.0
                ELSE least(1.0, buyer_cap / count(*) OVER (PARTITION BY o.customer_id)) END
      FROM shop."order" o
     WHERE shop._counted(o.status);
    result := shop._copurchase_rebuild();
    -- fresh statistics, or the planner takes the new tables for empty
    -- until autovacuum gets to them (seq scans in also_bought/recommend)
    ANALYZE shop.copurchase, shop.copurchase_item, shop.copurchase_order;
    INSERT INTO shop.copurchase_state AS s (scored_total, rebuilt_at, refreshed_at)
    VALUES ((SELECT coalesce(sum(baskets), 0) FROM shop.copurchase_item), now(), now())
    ON CONFLICT (id) DO UPDATE
       SET scored_total = excluded.scored_total, rebuilt_at = excluded.rebuilt_at,
           refreshed_at = excluded.refreshed_at;
    n_pop := shop._popularity_refresh();
    RETURN result || jsonb_build_object('popularity_updated', n_pop);
END
$$;
COMMENT ON FUNCTION shop.rebuild_recommendations() IS
'recompute every recommendation table from the whole order history (after bulk loads); returns counts';

-- _product_must_exist: SH006 unless product_id names a product.
CREATE FUNCTION shop._product_must_exist(product_id bigint)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
BEGIN
    PERFORM shop._require(product_id, 'product_id');
    IF NOT EXISTS (SELECT 1 FROM shop.product p WHERE p.product_id = _product_must_exist.product_id) THEN
        RAISE EXCEPTION 'product not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No product has product_id %s.', product_id);
    END IF;
END
$$;
COMMENT ON FUNCTION shop._product_must_exist(bigint) IS
'internal: raise SH006 (not_found) unless the product exists, 22004 when product_id is NULL';

-- view: record that a customer looked at a product.  Keeps one row per
-- customer and product (the latest view) and at most shop.recent_views_cap
-- rows per customer.
CREATE FUNCTION shop.view(customer_id bigint, product_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cap int := coalesce(current_setting('shop.recent_views_cap', true), '50')::int;
    cutoff timestamptz;
BEGIN
    PERFORM shop._require(view.customer_id, 'customer_id');
    PERFORM shop._authorize(view.customer_id);
    PERFORM shop._product_must_exist(view.product_id);
    DELETE FROM shop.view_event v
     WHERE v.customer_id = view.customer_id AND v.product_id = view.product_id;
    INSERT INTO shop.view_event (customer_id, viewed_at, product_id)
    VALUES (view.customer_id, clock_timestamp(), view.product_id);
    SELECT v.viewed_at INTO cutoff
      FROM shop.view_event v
     WHERE v.customer_id = view.customer_id
     ORDER BY v.viewed_at DESC, v.product_id DESC
     OFFSET cap LIMIT 1;
    IF cutoff IS NOT NULL THEN
        DELETE FROM shop.view_event v
         WHERE v.customer_id = view.customer_id AND v.viewed_at <= cutoff;
    END IF;
END
$$;
COMMENT ON FUNCTION shop.view(bigint, bigint) IS
'record a product view by a customer (feeds recently_viewed, recommend and trending); keeps the latest shop.recent_views_cap views';

CREATE FUNCTION shop.recently_viewed(customer_id bigint, lim int DEFAULT 10)
RETURNS TABLE (product_id bigint, viewed_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF recently_viewed.customer_id IS NULL THEN
        RAISE EXCEPTION 'argument customer_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM shop._authorize(recently_viewed.customer_id);
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
    RETURN QUERY
    SELECT v.product_id, v.viewed_at
      FROM shop.view_event v
      JOIN shop.product p ON p.product_id = v.product_id AND p.status = 'active'
     WHERE v.customer_id = recently_viewed.customer_id
     ORDER BY v.viewed_at DESC, v.product_id DESC
     LIMIT lim;
END
$$;
COMMENT ON FUNCTION shop.recently_viewed(bigint, int) IS
'the active products a customer viewed last, newest first';

-- trending: active products of a category (and its descendants) or of the
-- whole catalog by popularity, the time-decayed score of purchases and
-- views that refresh_recommendations() maintains.
CREATE FUNCTION shop.trending(category_id bigint DEFAULT NULL, lim int DEFAULT 10)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cats bigint[];
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
    IF trending.category_id IS NULL THEN
        RETURN QUERY
        SELECT p.product_id, p.popularity
          FROM shop.product p
         WHERE p.status = 'active' AND p.popularity > 0
         ORDER BY p.popularity DESC, p.product_id
         LIMIT lim;
        RETURN;
    END IF;
    cats := shop.category_descendants(trending.category_id);
    IF cardinality(cats) = 0 THEN
        RAISE EXCEPTION 'category not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No category has category_id %s.', trending.category_id);
    END IF;
    RETURN QUERY
    SELECT p.product_id, p.popularity
      FROM shop.product p
     WHERE p.category_id = ANY (cats) AND p.status = 'active' AND p.popularity > 0
     ORDER BY p.popularity DESC, p.product_id
     LIMIT lim;
END
$$;
COMMENT ON FUNCTION shop.trending(bigint, int) IS
'active products with the highest time-decayed purchases and views, in a category and its descendants (NULL: everywhere)';

-- The trigram similarity of pg_trgm, wherever pg_trgm was installed.  The
-- body names pg_trgm's schema, fixed at install time, and there is no SET
-- clause, so the planner inlines the call into the queries below (a
-- function with SET search_path is never inlined and costs a GUC
-- save/restore per row).
DO $do$
DECLARE
    trgm_schema name := (SELECT n.nspname FROM pg_extension e
                           JOIN pg_namespace n ON n.oid = e.extnamespace
                          WHERE e.extname = 'pg_trgm');
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION shop._title_similarity(a text, b text)
        RETURNS real
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS 'SELECT %I.similarity(a, b)'
    $f$, trgm_schema);
END
$do$;
COMMENT ON FUNCTION shop._title_similarity(text, text) IS
'internal: pg_trgm similarity of two titles';

-- The read calls below are on the product page's hot path: they check
-- their arguments inline (no nested plpgsql calls, each of which would pay
-- a search_path save/restore) and run one or two cached statements.

-- similar_products: content-based neighbours for products nobody has
-- bought yet.  Candidates are the most popular active products of the same
-- category and of the same brand (at most 100 each, read in index order); the score is
-- 0.4 same category + 0.2 same brand + 0.3 title trigram similarity
-- + 0.1 share of equal attributes, plus a popularity tie-break.
CREATE FUNCTION shop.similar_products(product_id bigint, lim int DEFAULT 10)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    src record;
BEGIN
    IF similar_products.product_id IS NULL THEN
        RAISE EXCEPTION 'argument product_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
    SELECT p.product_id, p.category_id, p.brand, p.title, p.attributes INTO src
      FROM shop.product p WHERE p.product_id = similar_products.product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No product has product_id %s.', similar_products.product_id);
    END IF;
    RETURN QUERY
    SELECT s.product_id, s.score
      FROM shop._similar_candidates(src.product_id, src.category_id, src.brand, src.title,
                                    src.attributes, '{}', lim) s;
END
$$;
COMMENT ON FUNCTION shop.similar_products(bigint, int) IS
'content-based neighbours of a product: same category, brand, attributes and similar title; active products only';

-- _similar_candidates: the scoring query of similar_products, shared with
-- the fill of also_bought.  Plain SQL without SET so it is inlined into
-- its callers, which pin search_path.
CREATE FUNCTION shop._similar_candidates(src_id bigint, src_category bigint, src_brand text,
                                         src_title text, src_attributes jsonb,
                                         exclude bigint[], lim int)
RETURNS SETOF shop.scored_product
LANGUAGE sql STABLE
AS $$
    -- the ids come first, each list read from its (key, popularity,
    -- product_id) index alone; only then are the wide rows fetched (asked
    -- for whole rows at once, the planner may walk the popularity index
    -- instead and sort a whole brand)
    WITH ids AS (
        (SELECT p.product_id
           FROM shop.product p
          WHERE src_category IS NOT NULL AND p.category_id = src_category
            AND p.status = 'active' AND p.product_id <> src_id
          ORDER BY p.popularity DESC, p.product_id LIMIT 100)
        UNION
        (SELECT p.product_id
           FROM shop.product p
          WHERE src_brand IS NOT NULL AND p.brand = src_brand
            AND p.status = 'active' AND p.product_id <> src_id
          ORDER BY p.popularity DESC, p.product_id LIMIT 100)
    ), cand AS (
        SELECT p.product_id, p.category_id, p.brand, p.title, p.attributes, p.popularity
          FROM ids JOIN shop.product p ON p.product_id = ids.product_id
    )
    SELECT c.product_id,
           (0.4 * (c.category_id IS NOT DISTINCT FROM src_category)::int
            + 0.2 * (c.brand IS NOT DISTINCT FROM src_brand)::int
            + 0.3 * shop._title_similarity(c.title, src_title)
            + 0.1 * coalesce((SELECT count(*) FROM pg_catalog.jsonb_each(src_attributes) a
                               WHERE c.attributes -> a.key = a.value)::real
                             / nullif((SELECT count(*) FROM pg_catalog.jsonb_object_keys(src_attributes)), 0), 0)
            + 0.001 * c.popularity)::real AS s
      FROM cand c
     WHERE c.product_id <> ALL (exclude)
     ORDER BY s DESC, c.product_id
     LIMIT lim
$$;
COMMENT ON FUNCTION shop._similar_candidates(bigint, bigint, text, text, jsonb, bigint[], int) IS
'internal: content-based candidates of similar_products (inlined into its callers, which pin search_path)';

-- also_bought: the product's co-purchase neighbours that are active, best
-- score first; when fewer than lim exist, the list is filled from
-- similar_products with scores kept below the last co-purchase score.
CREATE FUNCTION shop.also_bought(product_id bigint, lim int DEFAULT 10)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    last_score real;
    n int;
    src record;
BEGIN
    IF also_bought.product_id IS NULL THEN
        RAISE EXCEPTION 'argument product_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
    -- the hot path: one index scan of the product's top rows
    RETURN QUERY
    SELECT c.other_id, c.score
      FROM shop.copurchase c
      JOIN shop.product p ON p.product_id = c.other_id AND p.status = 'active'
     WHERE c.product_id = also_bought.product_id AND c.score > 0
       AND EXISTS (SELECT 1 FROM shop.product s WHERE s.product_id = also_bought.product_id)
     ORDER BY c.score DESC, c.other_id
     LIMIT lim;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n >= lim THEN
        RETURN;
    END IF;
    -- thin data: check the product, then fill from similar products
    SELECT p.product_id, p.category_id, p.brand, p.title, p.attributes INTO src
      FROM shop.product p WHERE p.product_id = also_bought.product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found'
            USING ERRCODE = 'SH006',
                  DETAIL = format('No product has product_id %s.', also_bought.product_id);
    END IF;
    IF src.category_id IS NULL AND src.brand IS NULL THEN
        RETURN;
    END IF;
    IF n > 0 THEN
        SELECT array_agg(c.other_id), min(c.score) INTO ids, last_score
          FROM shop.copurchase c
          JOIN shop.product p ON p.product_id = c.other_id AND p.status = 'active'
         WHERE c.product_id = also_bought.product_id AND c.score > 0;
    END IF;
    RETURN QUERY
    SELECT s.product_id,
           (s.score * least(1.0, coalesce(last_score, 1.0)) * 0.999)::real
      FROM shop._similar_candidates(src.product_id, src.category_id, src.brand, src.title,
                                    src.attributes, coalesce(ids, '{}'), lim - n) s;
END
$$;
COMMENT ON FUNCTION shop.also_bought(bigint, int) IS
'customers who bought this also bought: active co-purchase neighbours by (N - E) / sqrt(E), filled from similar_products when thin';

-- recommend: personal picks.  Seeds are the customer's purchased products
-- (weight 1, the 50 most recent) and recent views (weight 0.5); candidates
-- are the seeds' co-purchase neighbours, summed.  What the customer bought
-- is never proposed, nor what they just viewed (recently_viewed lists
-- that); trending fills the rest.
CREATE FUNCTION shop.recommend(customer_id bigint, lim int DEFAULT 10)
RETURNS SETOF shop.scored_product
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shop, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    exclude bigint[];
    n int;
BEGIN
    IF recommend.customer_id IS NULL THEN
        RAISE EXCEPTION 'argument customer_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM shop._authorize(recommend.customer_id);
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'limit out of range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('lim is %s; it must be between 1 and 1000.', coalesce(lim::text, 'NULL'));
    END IF;
    -- seeds: the 50 latest purchases (weight 1) and the views (0.5); the
    -- seeds' neighbours, summed, minus everything bought or viewed
    RETURN QUERY
    WITH bought AS (
        SELECT l.product_id, max(o.created_at) AS at
          FROM shop."order" o
          JOIN shop.order_line l ON l.order_id = o.order_id
         WHERE o.customer_id = recommend.customer_id AND shop._counted(o.status)
         GROUP BY l.product_id
    ), seeds AS (
        SELECT x.product_id, max(x.w) AS w
          FROM ((SELECT b.product_id, 1.0 AS w FROM bought b ORDER BY b.at DESC, b.product_id LIMIT 50)
                UNION ALL
                SELECT v.product_id, 0.5 FROM shop.view_event v
                 WHERE v.customer_id = recommend.customer_id) x
         GROUP BY x.product_id
    )
    -- (the active check looks at the best 3 * lim + 10 candidates only:
    -- if most of them were archived the list comes out short and trending
    -- fills it)
    SELECT r.other_id, r.sc
      FROM (SELECT c.other_id, sum(c.score * s.w)::real AS sc
              FROM seeds s
              JOIN shop.copurchase c ON c.product_id = s.product_id AND c.score > 0
             WHERE NOT EXISTS (SELECT 1 FROM seeds x WHERE x.product_id = c.other_id)
               AND NOT EXISTS (SELECT 1 FROM bought b WHERE b.product_id = c.other_id)
             GROUP BY c.other_id
             ORDER BY sc DESC, c.other_id
             LIMIT 3 * lim + 10) r
      JOIN shop.product p ON p.product_id = r.other_id AND p.status = 'active'
     ORDER BY r.sc DESC, r.other_id
     LIMIT lim;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n >= lim THEN
        RETURN;
    END IF;
    -- fill from trending (below the personal scores), leaving out what
    -- was bought, viewed or already listed (every personal candidate was)
    WITH mine AS (
        SELECT l.product_id
          FROM shop."order" o
          JOIN shop.order_line l ON l.order_id = o.order_id
         WHERE o.customer_id = recommend.customer_id AND shop._counted(o.status)
        UNION
        SELECT v.product_id FROM shop.view_event v WHERE v.customer_id = recommend.customer_id
    )
    SELECT array_agg(DISTINCT x.product_id) INTO exclude
      FROM (SELECT m.product_id FROM mine m
            UNION ALL
            SELECT c.other_id FROM mine m
              JOIN shop.copurchase c ON c.product_id = m.product_id AND c.score > 0) x;
    RETURN QUERY
    SELECT p.product_id, (p.popularity * 0.001)::real
      FROM shop.product p
     WHERE p.status = 'active' AND p.popularity > 0
       AND p.product_id <> ALL (coalesce(exclude, '{}'))
     ORDER BY p.popularity DESC, p.product_id
     LIMIT lim - n;
END
$$;
COMMENT ON FUNCTION shop.recommend(bigint, int) IS
'personal recommendations from the customer''s purchases and recent views, excluding what they bought or viewed; trending fills the rest';

-- Privileges (docs/security.md has the roles).  The read calls on catalog
-- data (also_bought, similar_products, trending) are SECURITY DEFINER and
-- open to everyone with USAGE on the schema; the customer-scoped ones
-- (recommend, view, recently_viewed) are SECURITY DEFINER and act only for
-- the session's customer unless the caller is trusted (shop._authorize);
-- the capture trigger is SECURITY DEFINER because it fires at COMMIT as the
-- session's role; refresh and rebuild are admin calls, SECURITY DEFINER so
-- that shop_admin needs no table privileges (they TRUNCATE and ANALYZE).
REVOKE EXECUTE ON FUNCTION
    shop.refresh_recommendations(), shop.rebuild_recommendations(),
    shop._copurchase_apply(uuid[], double precision[]), shop._copurchase_score(bigint[], boolean),
    shop._copurchase_rebuild(), shop._popularity_refresh(bigint[]),
    shop._similar_candidates(bigint, bigint, text, text, jsonb, bigint[], int),
    shop._title_similarity(text, text), shop._counted(text), shop._product_must_exist(bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.refresh_recommendations(), shop.rebuild_recommendations()
    TO shop_admin;

------------------------------------------------------------------------------
-- 8. Operations
------------------------------------------------------------------------------

-- _emit: the transactional outbox.  One row in shop.event and a
-- pg_notify('shop_events', ...) that listeners receive at commit (and never
-- if the transaction rolls back).  The notification carries event_id, topic
-- and payload; a payload too large for NOTIFY (8000 bytes) is left out of
-- the notification ("truncated": true) and read from shop.event.
CREATE FUNCTION shop._emit(topic text, payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    id bigint;
    note text;
BEGIN
    PERFORM shop._require(topic, 'topic');
    PERFORM shop._require(payload, 'payload');
    INSERT INTO shop.event (topic, payload) VALUES (_emit.topic, _emit.payload)
    RETURNING event_id INTO id;
    note := jsonb_build_object('event_id', id, 'topic', topic, 'payload', payload)::text;
    IF octet_length(note) >= 7900 THEN
        note := jsonb_build_object('event_id', id, 'topic', topic, 'truncated', true)::text;
    END IF;
    -- shop.notify_events = off keeps events in the table only (the notify
    -- queue serializes the commits of notifying transactions); unset means
    -- the library is not loaded in this backend yet: the default, on
    IF coalesce(current_setting('shop.notify_events', true), 'on') <> 'off' THEN
        PERFORM pg_notify('shop_events', note);
    END IF;
    RETURN id;
END
$$;
COMMENT ON FUNCTION shop._emit(text, jsonb) IS
'internal: append an event to the outbox (shop.event) and pg_notify(''shop_events'') it; returns event_id';
REVOKE EXECUTE ON FUNCTION shop._emit(text, jsonb) FROM PUBLIC;

-- sweep: the periodic housekeeping.  Run by the background worker every
-- shop.sweep_interval when shop is preloaded, or by the DBA's scheduler
-- (pg_cron, cron + psql).  Correctness never depends on it: reserve
-- reclaims expired holds itself and stock_available counts them as free.
-- Expiring holds and dropping carts never wait for a lock held by a
-- shopper: rows locked by someone else are skipped and picked up by the
-- next run.  Cancelling orders takes the stock rows of their holds in the
-- usual order and may wait for them.
CREATE FUNCTION shop.sweep()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    n_orders   integer := 0;
    n_failed   integer := 0;
    n_holds    integer := 0;
    n_units    bigint := 0;
    n_carts    integer := 0;
    n_log      bigint := 0;
    reco       jsonb;
    reco_text  text;
    o          uuid;
    orders     uuid[];
    r          record;
BEGIN
    -- 1. pending orders whose holds expired are cancelled (the orders
    --    subsystem's transition releases their reservations)
    IF to_regprocedure('shop.order_transition(uuid,text,text)') IS NOT NULL THEN
        SELECT array_agg(x.order_id ORDER BY x.created_at) INTO orders
          FROM (SELECT od.order_id, od.created_at
                  FROM shop."order" od
                 WHERE od.status = 'pending'
                   AND EXISTS (SELECT 1
                                 FROM shop.order_line l
                                 JOIN shop.reservation rv ON rv.reservation_id = l.reservation_id
                                WHERE l.order_id = od.order_id
                                  AND rv.status IN ('held', 'expired')
                                  AND rv.expires_at <= now())
                   FOR UPDATE OF od SKIP LOCKED) x;
        IF orders IS NOT NULL THEN
            -- the cancels release holds of many products in one transaction:
            -- take those stock rows first, in (product, location, bucket)
            -- order, as every inventory call does, so no deadlock
            PERFORM 1 FROM shop.stock s
             WHERE (s.product_id, s.location, s.bucket) IN
                   (SELECT rv.product_id, rv.location, rv.bucket
                      FROM shop.order_line l
                      JOIN shop.reservation rv ON rv.reservation_id = l.reservation_id
                     WHERE l.order_id = ANY (orders) AND rv.status = 'held')
             ORDER BY s.product_id, s.location, s.bucket
               FOR UPDATE OF s;
            FOREACH o IN ARRAY orders LOOP
                BEGIN
                    EXECUTE 'SELECT shop.order_transition($1, $2, $3)'
                        USING o, 'cancelled', 'reservation expired';
                    n_orders := n_orders + 1;
                EXCEPTION WHEN OTHERS THEN
                    n_failed := n_failed + 1;
                    RAISE WARNING 'shop.sweep: could not cancel order %: %', o, SQLERRM;
                END;
            END LOOP;
        END IF;
    END IF;

    -- 2. expired holds give their units back
    FOR r IN
        SELECT rv.product_id, rv.reservation_id, rv.part, rv.location, rv.bucket, rv.qty
          FROM shop.reservation rv
         WHERE rv.status = 'held' AND rv.expires_at <= now()
         ORDER BY rv.product_id, rv.location, rv.bucket
           FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM 1 FROM shop.stock s
         WHERE s.product_id = r.product_id AND s.location = r.location AND s.bucket = r.bucket
           FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        UPDATE shop.reservation rv SET status = 'expired'
         WHERE rv.product_id = r.product_id AND rv.reservation_id = r.reservation_id
           AND rv.part = r.part AND rv.status = 'held';
        CONTINUE WHEN NOT FOUND;
        UPDATE shop.stock s SET reserved = s.reserved - r.qty
         WHERE s.product_id = r.product_id AND s.location = r.location AND s.bucket = r.bucket;
        n_holds := n_holds + 1;
        n_units := n_units + r.qty;
    END LOOP;

    -- 3. carts idle past shop.cart_ttl (checked-out carts stay with their order)
    WITH gone AS (
        DELETE FROM shop.cart c
         WHERE c.cart_id IN (SELECT cart_id FROM shop.cart
                              WHERE expires_at < now() AND status <> 'checked_out'
                                FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*) INTO n_carts FROM gone;

    -- 4. the search log keeps shop.search_log_retention of history
    IF to_regclass('shop.search_log') IS NOT NULL THEN
        EXECUTE 'DELETE FROM shop.search_log WHERE logged_at < now() - $1::interval'
          USING shop._setting('shop.search_log_retention', '30d');
        GET DIAGNOSTICS n_log = ROW_COUNT;
    END IF;

    -- 5. fold recommendation deltas, when that subsystem is installed
    IF to_regprocedure('shop.refresh_recommendations()') IS NOT NULL THEN
        BEGIN
            EXECUTE 'SELECT shop.refresh_recommendations()::text' INTO reco_text;
            BEGIN
                reco := reco_text::jsonb;
            EXCEPTION WHEN OTHERS THEN
                reco := to_jsonb(reco_text);
            END;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'shop.sweep: refresh_recommendations failed: %', SQLERRM;
            reco := jsonb_build_object('error', SQLERRM);
        END;
    END IF;

    RETURN jsonb_build_object(
        'reservations_expired', n_holds,
        'units_released', n_units,
        'orders_cancelled', n_orders,
        'orders_not_cancelled', n_failed,
        'carts_expired', n_carts,
        'search_log_trimmed', n_log,
        'recommendations', reco);
END
$$;
COMMENT ON FUNCTION shop.sweep() IS
'expire held reservations past expires_at, cancel pending orders whose holds expired, drop idle carts, trim the search log, refresh recommendations; returns counts';
REVOKE EXECUTE ON FUNCTION shop.sweep() FROM PUBLIC;

-- _setting: a shop.* GUC as text, with a default when the library has not
-- been loaded into this backend yet (the GUC is then undefined).
CREATE FUNCTION shop._setting(name text, fallback text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, shop, pg_temp
AS $$ SELECT coalesce(nullif(current_setting(name, true), ''), fallback) $$;
COMMENT ON FUNCTION shop._setting(text, text) IS
'internal: current value of a shop.* setting, or fallback when it is not defined in this backend';

-- Views of the operations dashboard.  "Today" is the current day in the
-- session's TimeZone.
CREATE VIEW shop.metrics_orders_today AS
SELECT count(*)::integer AS orders,
       count(*) FILTER (WHERE o.status IN ('paid', 'fulfilling', 'shipped', 'delivered'))::integer AS paid_orders,
       count(*) FILTER (WHERE o.status = 'pending')::integer AS pending_orders,
       count(*) FILTER (WHERE o.status = 'cancelled')::integer AS cancelled_orders,
       coalesce(sum(o.total_cents) FILTER (WHERE o.status IN ('paid', 'fulfilling', 'shipped', 'delivered')), 0)::bigint AS revenue_cents,
       (avg(o.total_cents) FILTER (WHERE o.status IN ('paid', 'fulfilling', 'shipped', 'delivered')))::bigint AS avg_order_cents,
       shop._setting('shop.currency', 'USD') AS currency
  FROM shop."order" o
 WHERE o.created_at >= date_trunc('day', now());
COMMENT ON VIEW shop.metrics_orders_today IS 'orders, paid orders and revenue (paid and later states) since midnight';

CREATE VIEW shop.metrics_conversion AS
SELECT c.carts, o.checkouts,
       CASE WHEN c.carts > 0 THEN round(o.checkouts::numeric / c.carts, 4) END AS conversion
  FROM (SELECT count(*)::integer AS carts FROM shop.cart
         WHERE created_at >= date_trunc('day', now())) c,
       (SELECT count(*)::integer AS checkouts FROM shop."order"
         WHERE created_at >= date_trunc('day', now()) AND cart_id IS NOT NULL) o;
COMMENT ON VIEW shop.metrics_conversion IS
'carts created today, checkouts (orders from a cart) today, and their ratio';

CREATE VIEW shop.metrics_payments AS
SELECT count(*)::integer AS payments,
       count(*) FILTER (WHERE p.status = 'failed')::integer AS failed,
       CASE WHEN count(*) > 0
            THEN round((count(*) FILTER (WHERE p.status = 'failed'))::numeric / count(*), 4) END AS failure_rate,
       shop._setting('shop.payment_failure_window', '15min')::interval AS window
  FROM shop.payment p
 WHERE p.created_at >= now() - shop._setting('shop.payment_failure_window', '15min')::interval;
COMMENT ON VIEW shop.metrics_payments IS
'payments and failures over the last shop.payment_failure_window';

CREATE VIEW shop.low_stock AS
SELECT s.product_id, p.sku, p.title, s.on_hand, s.reserved, s.available, s.reorder_threshold
  FROM shop.stock_summary s
  JOIN shop.product p USING (product_id)
 WHERE s.reorder_threshold IS NOT NULL AND s.available < s.reorder_threshold;
COMMENT ON VIEW shop.low_stock IS 'products whose available units are below their reorder threshold';

-- _search_latency: p50/p95/p99 in milliseconds over the last hour, from a
-- shop.search_log table when the search subsystem keeps one.  Its
-- duration column is found by name (duration_ms, took_ms, elapsed_ms,
-- latency_ms) and its time column likewise (created_at, at, logged_at,
-- searched_at); NULL when there is no such table.
CREATE FUNCTION shop._search_latency()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    tbl regclass := to_regclass('shop.search_log');
    dur name;
    ts name;
    result jsonb;
BEGIN
    IF tbl IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT attname INTO dur FROM pg_attribute
     WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped
       AND attname IN ('duration_ms', 'took_ms', 'elapsed_ms', 'latency_ms')
     ORDER BY attname LIMIT 1;
    SELECT attname INTO ts FROM pg_attribute
     WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped
       AND attname IN ('created_at', 'at', 'logged_at', 'searched_at')
     ORDER BY attname LIMIT 1;
    IF dur IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'SELECT jsonb_build_object(''searches'', count(*),'
        '  ''p50'', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY %1$I)::numeric, 3),'
        '  ''p95'', round(percentile_cont(0.95) WITHIN GROUP (ORDER BY %1$I)::numeric, 3),'
        '  ''p99'', round(percentile_cont(0.99) WITHIN GROUP (ORDER BY %1$I)::numeric, 3))'
        '  FROM %2$s %3$s',
        dur, tbl,
        CASE WHEN ts IS NOT NULL THEN format('WHERE %I >= now() - interval ''1 hour''', ts) ELSE '' END)
      INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION shop._search_latency() IS
'internal: search latency percentiles (ms) over the last hour from shop.search_log, NULL without one';

CREATE FUNCTION shop.metrics()
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, shop, pg_temp
AS $$
    SELECT jsonb_build_object(
        'at', now(),
        'orders_today', (SELECT to_jsonb(m) FROM shop.metrics_orders_today m),
        'conversion', (SELECT to_jsonb(c) FROM shop.metrics_conversion c),
        'payments', (SELECT to_jsonb(p) - 'window' || jsonb_build_object('window', p.window::text)
                       FROM shop.metrics_payments p),
        'search_latency_ms', shop._search_latency(),
        'reservations', (SELECT jsonb_build_object(
                             'held', count(*) FILTER (WHERE expires_at > now()),
                             'expired_unswept', count(*) FILTER (WHERE expires_at <= now()),
                             'units_held', coalesce(sum(qty) FILTER (WHERE expires_at > now()), 0))
                           FROM shop.reservation WHERE status = 'held'),
        'low_stock_count', (SELECT count(*) FROM shop.low_stock),
        'low_stock', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.available, l.product_id), '[]')
                        FROM (SELECT * FROM shop.low_stock ORDER BY available, product_id LIMIT 20) l),
        'events_last_hour', (SELECT count(*) FROM shop.event
                              WHERE created_at >= now() - interval '1 hour'))
$$;
COMMENT ON FUNCTION shop.metrics() IS
'operations dashboard in one jsonb: orders and revenue today, conversion, payment failure rate, search latency, holds, low stock';
REVOKE EXECUTE ON FUNCTION shop.metrics() FROM PUBLIC;

-- _check_payment_failures: called by the orders subsystem after a failed
-- payment.  Emits payment.failures when, over shop.payment_failure_window,
-- at least 5 payments were attempted and the failed share exceeds
-- shop.payment_failure_threshold, at most once per window.  Returns true
-- when it emitted the alert.
CREATE FUNCTION shop._check_payment_failures()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, shop, pg_temp
AS $$
DECLARE
    win interval := shop._setting('shop.payment_failure_window', '15min')::interval;
    threshold float8 := shop._setting('shop.payment_failure_threshold', '0.5')::float8;
    total integer;
    failed integer;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE status = 'failed')
      INTO total, failed
      FROM shop.payment WHERE created_at >= now() - win;
    IF total < 5 OR failed::float8 / total <= threshold THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM shop.event
                WHERE topic = 'payment.failures' AND created_at >= now() - win) THEN
        RETURN false;
    END IF;
    PERFORM shop._emit('payment.failures', jsonb_build_object(
        'payments', total, 'failed', failed,
        'failure_rate', round(failed::numeric / total, 4),
        'threshold', threshold, 'window', win::text));
    RETURN true;
END
$$;
COMMENT ON FUNCTION shop._check_payment_failures() IS
'internal: emit payment.failures when the failure rate over shop.payment_failure_window passes shop.payment_failure_threshold (once per window, at least 5 payments)';
REVOKE EXECUTE ON FUNCTION shop._check_payment_failures() FROM PUBLIC;

CREATE INDEX event_topic_idx ON shop.event (topic, created_at);
CREATE INDEX payment_created_idx ON shop.payment (created_at);

------------------------------------------------------------------------------
-- 9. Privileges of the catalog (roles: section 5, docs/security.md)
------------------------------------------------------------------------------

-- The catalog is what a storefront shows: it reads it directly (browse,
-- product_get and PostgREST-style SELECTs run as the caller).  Writes go
-- through the catalog calls, which only shop_admin may make.
GRANT SELECT ON shop.category, shop.product, shop.review TO shop_storefront, shop_admin;
REVOKE EXECUTE ON FUNCTION shop.category_add(text, bigint),
    shop.product_upsert(text, text, bigint, text, text, bigint, jsonb, text[], text, bigint),
    shop.review_add(bigint, bigint, int, text, text), shop.review_delete(bigint, bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.category_add(text, bigint),
    shop.product_upsert(text, text, bigint, text, text, bigint, jsonb, text[], text, bigint)
    TO shop_admin;
-- reviews: a storefront writes them only as its session's customer
GRANT EXECUTE ON FUNCTION shop.review_add(bigint, bigint, int, text, text),
    shop.review_delete(bigint, bigint) TO shop_storefront, shop_admin;

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
SELECT pg_catalog.pg_extension_config_dump('shop.stock_ledger', '');
SELECT pg_catalog.pg_extension_config_dump('shop.stock_ledger_entry_id_seq', '');
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
SELECT pg_catalog.pg_extension_config_dump('shop.shipping_rate', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('shop.shipping_rate_rate_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.tax_rate', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('shop.tax_rate_rate_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.view_event', '');
SELECT pg_catalog.pg_extension_config_dump('shop.copurchase', '');
SELECT pg_catalog.pg_extension_config_dump('shop.synonym', '');
SELECT pg_catalog.pg_extension_config_dump('shop.search_log', '');
SELECT pg_catalog.pg_extension_config_dump('shop.copurchase_delta', '');
SELECT pg_catalog.pg_extension_config_dump('shop.copurchase_order', '');
SELECT pg_catalog.pg_extension_config_dump('shop.copurchase_item', '');
SELECT pg_catalog.pg_extension_config_dump('shop.copurchase_pair', '');
SELECT pg_catalog.pg_extension_config_dump('shop.copurchase_state', '');
SELECT pg_catalog.pg_extension_config_dump('shop.product_popularity', '');
