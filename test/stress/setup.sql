-- setup.sql: the stress harness's schema, run once on the primary by
-- test/stress/run.sh (psql variables: rows, seed).  Everything the harness
-- needs inside the database lives in schema "stress":
--
--   vocabulary      the words documents are made of and queries ask for
--   generators      deterministic text and values from an integer seed
--   stress.doc      a user table with its own shop_search index
--   stress.query    the fixed query set compared after every phase
--   stress.ids()    one query's answer by one plan (truth, bitmap, ...)
--   stress.check()  every query by every plan against the truth
--   stress.live_check(), stress.race_folds()   used during the workload
--
-- Nothing here is random at run time: every generated value is a hash of
-- a seed the caller passes (pgbench's seeded random numbers, or the row id
-- and :seed for the initial load), so a run is repeatable given --seed.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE SCHEMA stress;

-- ---------------------------------------------------------------------
-- Vocabulary
--
-- The fixed query set must have ONE right answer, the sequential scan's,
-- and the index may only differ from it by a bug.  So the words are
-- chosen so that no query word matches any other word of the vocabulary
-- by a typo, a typo'd prefix or a prefix (stress.vocabulary_clashes()
-- checks that at set-up), and no prefix the queries use has more than a
-- handful of completions (the index expands at most 50 per segment).
-- Only the "confusable" words break the rule on purpose: each pair is one
-- typo apart, and both spellings occur in the documents, as misspellings
-- do in real catalogs.  Only the typo class of queries asks for them.
-- ---------------------------------------------------------------------

-- common pool, most frequent first (the generators skew toward the front)
CREATE FUNCTION stress.common_words() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '{adapter,anchor,apron,backpack,bagel,balloon,banjo,basket,battery,beanie,
  blender,blanket,bottle,bracelet,bucket,cabinet,camera,candle,canvas,carpet,chisel,
  cleaver,compass,cushion,curtain,desk,doormat,drill,drone,easel,earbuds,faucet,
  fiddle,flask,funnel,gadget,garland,glove,goggles,grater,griddle,guitar,hammer,
  hammock,harness,helmet,hoodie,hose,iron,jacket,jersey,jigsaw,kettle,keyboard,
  ladder,lantern,laptop,leash,locket,mallet,marker,mattress,mixer,monitor,mop,mug,
  necklace,notebook,oven,paddle,padlock,pillow,pitcher,planter,pliers,projector,
  puzzle,quilt,radio,rake,razor,router,rucksack,saddle,sandal,scanner,scarf,scooter,
  shovel,skillet,socket,sofa,couch,spatula,sponge,stapler,stool,sweater,tablet,
  teapot,tent,thermos,toaster,towel,tripod,tumbler,umbrella,vase,wallet,whisk,
  wrench,zipper,amber,azure,crimson,ivory,olive,violet,cobalt,bronze,copper,golden,
  rustic,vintage,compact,portable,wireless,deluxe,premium,organic,sturdy,foldable,
  magnetic,waterproof,ergonomic,heavy,tiny,jumbo}'::text[] $$;

-- rare pool: each word in a few documents only
CREATE FUNCTION stress.rare_words() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '{nebula,quasar,obsidian,zephyr,kumquat,halcyon,juniper,orchid,
  tundra,basalt,fjord,gazebo,marimba,origami,pagoda,sextant,yurt}'::text[] $$;

-- brands as documents spell them: case and accents vary, the index folds
-- them ("L'Oréal" = "l oreal", "Müller" = "Muller")
CREATE FUNCTION stress.brands() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['Acme', 'ACME', 'acme', 'Initech', 'Vandelay', 'Wonka', 'Stark',
                   'Wayne', 'Tyrell', 'Soylent', 'Cyberdyne', 'Monarch', 'L''Oréal',
                   'Müller', 'Muller'] $$;

-- confusable pairs (word, misspelling present in the data), typo class only
CREATE FUNCTION stress.confusables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '{speaker,speaker,speaker,speakar,charger,charger,chargre,
  television,television,televison}'::text[] $$;

-- ---------------------------------------------------------------------
-- Deterministic generators: every value is a function of (seed, salt)
-- ---------------------------------------------------------------------

-- a number in [0, 1) from a seed and a salt
CREATE FUNCTION stress.u(seed bigint, salt int) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ((hashint8extended(seed, salt) >> 11) & 9007199254740991)::float8 / 9007199254740992.0 $$;

-- one element of arr, skewed toward the front (the common words) by skew
CREATE FUNCTION stress.pick(arr text[], seed bigint, salt int, skew float8 DEFAULT 2.0) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT arr[1 + floor(cardinality(arr) * power(stress.u(seed, salt), skew))::int] $$;

-- n common words
CREATE FUNCTION stress.words(seed bigint, salt int, n int) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(string_agg(
          CASE WHEN stress.u(seed, salt + 50 + k) < 0.1   -- some capitalized: folding
               THEN initcap(stress.pick(stress.common_words(), seed, salt + k))
               ELSE stress.pick(stress.common_words(), seed, salt + k) END, ' ' ORDER BY k), '')
        FROM generate_series(1, n) k $$;

-- a title: 2 to 4 common words, sometimes a rare word, sometimes a confusable one
CREATE FUNCTION stress.title(seed bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT concat_ws(' ',
          stress.words(seed, 100, 2 + floor(3 * stress.u(seed, 1))::int),
          CASE WHEN stress.u(seed, 2) < 0.03 THEN stress.pick(stress.rare_words(), seed, 3, 1.0) END,
          CASE WHEN stress.u(seed, 4) < 0.06 THEN stress.pick(stress.confusables(), seed, 5, 1.0) END) $$;

-- a description: up to 12 common words; one in 200 is long (1,500 filler
-- words, then a vocabulary word), past the index's 6,000 bytes of terms
-- per document, which the index and the sequential scan must cut alike
CREATE FUNCTION stress.body(seed bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE
          WHEN stress.u(seed, 6) < 0.1 THEN NULL
          WHEN stress.u(seed, 7) < 0.005 THEN
               (SELECT string_agg('zq' || substr(md5(seed::text || k), 1, 8), ' ')
                  FROM generate_series(1, 1500) k)
               || ' ' || stress.words(seed, 300, 3)
          ELSE stress.words(seed, 200, floor(13 * stress.u(seed, 8))::int) END $$;

CREATE FUNCTION stress.brand(seed bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN stress.u(seed, 9) < 0.1 THEN NULL
                  ELSE stress.pick(stress.brands(), seed, 10, 1.5) END $$;

-- prices from 1 cent to 3,000 dollars, most under 100 dollars
CREATE FUNCTION stress.price(seed bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 1 + floor(300000 * power(stress.u(seed, 11), 3))::bigint $$;

CREATE FUNCTION stress.popularity(seed bigint) RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (1000 * power(stress.u(seed, 12), 4))::real $$;

-- product categories: the 16 leaves and roots made below (ids 1..16), or none
CREATE FUNCTION stress.pcat(seed bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN stress.u(seed, 13) < 0.1 THEN NULL
                  ELSE 1 + floor(16 * stress.u(seed, 14))::bigint END $$;

-- user-table values, NULL some of the time; a rating is NaN once in 500
CREATE FUNCTION stress.dcat(seed bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN stress.u(seed, 15) < 0.1 THEN NULL
                  ELSE 1 + floor(20 * stress.u(seed, 16))::bigint END $$;
CREATE FUNCTION stress.rating(seed bigint) RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN stress.u(seed, 17) < 0.2 THEN NULL
                  WHEN stress.u(seed, 18) < 0.002 THEN 'NaN'::real
                  ELSE round((1 + 4 * stress.u(seed, 19))::numeric, 1)::real END $$;
CREATE FUNCTION stress.in_stock(seed bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN stress.u(seed, 20) < 0.1 THEN NULL
                  ELSE stress.u(seed, 21) < 0.6 END $$;

-- ---------------------------------------------------------------------
-- The catalog (shop.product, through shop's own index) and a user table
-- ---------------------------------------------------------------------

-- 4 roots with 3 children each: ids 1..16 in a fresh database
DO $$
DECLARE r bigint;
BEGIN
    FOR i IN 1..4 LOOP
        r := shop.category_add('Root ' || i);
        FOR j IN 1..3 LOOP
            PERFORM shop.category_add('Leaf ' || i || '.' || j, r);
        END LOOP;
    END LOOP;
    IF (SELECT array_agg(category_id ORDER BY category_id) FROM shop.category)
       IS DISTINCT FROM (SELECT array_agg(g::bigint) FROM generate_series(1, 16) g) THEN
        RAISE EXCEPTION 'stress: expected categories 1..16 in a fresh database';
    END IF;
END $$;
-- synonyms apply at query time (shop.search adds them to the query)
SELECT FROM shop.synonym_add('sofa', ARRAY['couch']);

-- The user table: every indexed value can be NULL, ratings can be NaN.
CREATE TABLE stress.doc (
    id          bigint PRIMARY KEY,
    title       text NOT NULL,
    brand       text,
    body        text,
    category_id bigint,
    price_cents bigint,
    rating      real,
    in_stock    boolean,
    popularity  real,
    note        text            -- not indexed: updates of it can be HOT
);
CREATE INDEX doc_search ON stress.doc USING shop_search
    (shop.search_doc(title, brand, body, category_id, price_cents, rating, in_stock, popularity));

-- Both tables have an id space of 3 * rows ids; a third is loaded here,
-- writers insert into the gaps and delete ranges, each writer only the
-- ids congruent to its client number (so writers never wait for each
-- other and never deadlock).
CREATE TABLE stress.param (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO stress.param VALUES ('space', 3 * :rows), ('seed', :seed);

INSERT INTO shop.product (product_id, sku, title, description, brand, category_id,
                          price_cents, popularity, in_stock)
SELECT id, 'P' || id, stress.title(s), stress.body(s), stress.brand(s), stress.pcat(s),
       stress.price(s), stress.popularity(s), stress.u(s, 22) < 0.6
  FROM generate_series(1, 3 * :rows, 3) id, LATERAL (SELECT id::bigint * 1000003 + :seed AS s) x;
SELECT setval(pg_get_serial_sequence('shop.product', 'product_id'), 3 * :rows + 1);

INSERT INTO stress.doc
SELECT id, stress.title(s), stress.brand(s), stress.body(s), stress.dcat(s), stress.price(s),
       stress.rating(s), stress.in_stock(s), stress.popularity(s), NULL
  FROM generate_series(1, 3 * :rows, 3) id, LATERAL (SELECT id::bigint * 1000033 + :seed AS s) x;

-- ---------------------------------------------------------------------
-- Vocabulary self-check: the clean words (every word a query of the
-- fixed set asks for, apart from the typo class) match no other word of
-- the vocabulary, as a whole word or as a last-word prefix.  Returns the
-- clashes; run.sh refuses to start if there are any.
-- ---------------------------------------------------------------------
CREATE FUNCTION stress.vocabulary_clashes()
RETURNS TABLE (query_word text, matches text)
LANGUAGE sql STABLE
SET enable_indexscan = off SET enable_bitmapscan = off
AS $$
    WITH q AS (SELECT DISTINCT lower(w) AS w
                 FROM unnest(stress.common_words() || stress.rare_words()) w),
         v AS (SELECT DISTINCT w
                 FROM unnest(stress.common_words() || stress.rare_words() || stress.confusables()
                             || ARRAY['acme', 'initech', 'vandelay', 'wonka', 'stark', 'wayne',
                                      'tyrell', 'soylent', 'cyberdyne', 'monarch', 'oreal',
                                      'muller']) w)
    SELECT q.w, v.w FROM q, v
     WHERE q.w <> v.w
       AND (shop.search_doc(v.w) OPERATOR(shop.@@@) to_jsonb(q.w)
            OR shop.search_doc(v.w) OPERATOR(shop.@@@) to_jsonb(q.w || ' '))
$$;

-- ---------------------------------------------------------------------
-- The fixed query set.  target 'product' queries go through shop's own
-- index (and, when text is set, through shop.search and
-- shop.search_facets too); target 'doc' queries through the user
-- table's index.  q is the jsonb the operators take.
-- ---------------------------------------------------------------------
CREATE TABLE stress.query (
    qid     int PRIMARY KEY,
    target  text NOT NULL CHECK (target IN ('product', 'doc')),
    class   text NOT NULL,
    q       jsonb NOT NULL,
    text    text,           -- product: shop.search's query text ...
    filters jsonb           -- ... and filters, from which q was built
);

-- product queries given as shop.search arguments: q is what shop.search
-- passes to the index (filters, synonyms and all)
CREATE TEMP TABLE pq (class text, text text, filters jsonb);
INSERT INTO pq VALUES
    -- single common words, whole (trailing space) and as a prefix
    ('common', 'adapter ', '{}'), ('common', 'anchor', '{}'), ('common', 'backpack ', '{}'),
    ('common', 'balloon', '{}'), ('common', 'basket ', '{}'), ('common', 'blanket', '{}'),
    ('common', 'camera ', '{}'), ('common', 'Compass', '{}'),
    -- rare words
    ('rare', 'nebula', '{}'), ('rare', 'quasar ', '{}'), ('rare', 'obsidian', '{}'),
    ('rare', 'kumquat ', '{}'), ('rare', 'fjord', '{}'), ('rare', 'yurt ', '{}'),
    -- two words (every word required)
    ('two', 'adapter apron', '{}'), ('two', 'banjo bagel ', '{}'), ('two', 'anchor nebula', '{}'),
    ('two', 'battery beanie', '{}'), ('two', 'cabinet Bucket', '{}'),
    -- prefixes of the last word
    ('prefix', 'ba', '{}'), ('prefix', 'bla', '{}'), ('prefix', 'adapter ca', '{}'),
    ('prefix', 'ham', '{}'), ('prefix', 'wire', '{}'), ('prefix', 'zi', '{}'),
    -- quoting, punctuation and case do not change the words
    ('quoted', '"adapter" "apron"', '{}'), ('quoted', '"Backpack!"', '{}'),
    ('quoted', 'ANCHOR, apron.', '{}'),
    -- filters
    ('filter', 'adapter', '{"category_id": 1}'), ('filter', 'anchor', '{"category_id": 6}'),
    ('filter', 'apron', '{"brand": "acme"}'), ('filter', 'backpack', '{"brand": ["Müller", "l''oreal"]}'),
    ('filter', 'bagel', '{"price_min": 1000, "price_max": 20000}'),
    ('filter', 'balloon', '{"rating_min": 3}'), ('filter', 'banjo', '{"in_stock": true}'),
    ('filter', 'basket', '{"in_stock": false, "price_max": 5000}'),
    ('filter', 'battery', '{"category_id": 2, "brand": ["Acme", "Wonka"], "price_min": 500}'),
    ('filter', 'blender', '{"attributes": {}}'),
    -- synonyms (sofa = couch, declared above)
    ('synonym', 'sofa', '{}'), ('synonym', 'couch ', '{}'),
    -- stop words only, and nothing at all
    ('empty', 'the', '{}'), ('empty', '!!', '{}'),
    -- typos: words the vocabulary does not know ...
    ('typo', 'adaptor', '{}'), ('typo', 'backpak ', '{}'), ('typo', 'blnket', '{}'),
    ('typo', 'cushoin ', '{}'), ('typo', 'waterprof', '{}'), ('typo', 'ergonmoic ', '{}'),
    -- ... and known words with a one-typo neighbour in the data
    ('typo', 'speaker ', '{}'), ('typo', 'charger', '{}'), ('typo', 'television ', '{}');
INSERT INTO stress.query (qid, target, class, q, text, filters)
SELECT row_number() OVER (), 'product', class, shop._search_query(text, filters, NULL), text, filters
  FROM pq;

-- user-table queries in the operators' own language
CREATE TEMP TABLE dq (class text, q jsonb);
INSERT INTO dq VALUES
    ('common', '"adapter "'), ('common', '"anchor"'), ('common', '{"q": "apron "}'),
    ('common', '{"q": "backpack"}'), ('common', '"Bagel "'), ('common', '"balloon"'),
    ('rare', '"nebula"'), ('rare', '"quasar "'), ('rare', '"zephyr"'), ('rare', '"halcyon "'),
    ('rare', '"gazebo"'), ('rare', '"sextant"'),
    ('two', '"adapter anchor"'), ('two', '"apron backpack "'), ('two', '"banjo obsidian"'),
    ('two', '{"q": "basket battery", "match": "all"}'),
    ('prefix', '"ba"'), ('prefix', '"ca"'), ('prefix', '"bla"'), ('prefix', '"apron ham"'),
    ('prefix', '{"q": "wire", "prefix": true}'), ('prefix', '{"q": "ba", "prefix": false}'),
    ('quoted', '"\"adapter\" anchor"'), ('quoted', '"(APRON)"'), ('quoted', '"backpack..."'),
    ('filter', '{"q": "adapter", "category_ids": [3, 5]}'),
    ('filter', '{"q": "anchor", "brands": "acme"}'),
    ('filter', '{"q": "apron", "brands": ["Müller", "L''Oréal", "stark"]}'),
    ('filter', '{"q": "backpack", "price_min": 1000, "price_max": 50000}'),
    ('filter', '{"q": "bagel", "rating_min": 2.5}'),
    ('filter', '{"q": "balloon", "in_stock": true}'),
    ('filter', '{"q": "banjo", "in_stock": false, "category_ids": [1, 2, 3, 4, 5, 6, 7]}'),
    ('filter', '{"q": "basket", "price_max": 3000, "rating_min": 1}'),
    ('mode', '{"q": "adapter anchor nebula", "match": "any"}'),
    ('mode', '{"q": "apron zzzq", "match": "any"}'),
    ('mode', '{"q": "backpack bagel", "match": "any", "brands": "wonka"}'),
    ('mode', '{"q": "blanket", "typos": false}'),
    ('mode', '{"q": "adapter", "boost_brands": ["acme"], "boost_categories": [2]}'),
    ('synonym', '{"q": "sofa", "synonyms": [["sofa", "couch"]]}'),
    ('synonym', '{"q": "golden sofa", "synonyms": [["golden sofa", "amber couch"]]}'),
    ('empty', '""'), ('empty', '"for the"'),
    ('typo', '"adaptor"'), ('typo', '"backpak "'), ('typo', '"blnket"'), ('typo', '"cushoin"'),
    ('typo', '"waterprof "'), ('typo', '"ergonmoic"'), ('typo', '{"q": "blendr", "match": "any"}'),
    ('typo', '"speaker "'), ('typo', '"charger"'), ('typo', '"television "'),
    ('typo', '"speakar "');
INSERT INTO stress.query (qid, target, class, q)
SELECT 1000 + row_number() OVER (), 'doc', class, q FROM dq;

-- ---------------------------------------------------------------------
-- Answers.  stress.ids(qid, method) is the sorted ids (duplicates kept)
-- one way of running a query gives; the GUCs force the plan, and
-- stress.plan_ok() checks that the plan is the one asked for.
--
--   truth      sequential scan, the @@@ operator on every row
--   bitmap     Bitmap Index Scan on the shop_search index
--   index      Index Scan, no ORDER BY (amgettuple, unordered)
--   ordered    Index Scan ... ORDER BY doc <=> q (amgettuple, ranked)
--   scan_fn    shop.search_scan(index, q, 101000) joined back on ctid
--   api        product only: shop.search(text, filters, lim 1000), the
--              rows it reports with every word (missing_words = 0)
--   api_price  product only: shop.search(..., 'price_asc', 1000)
--   facets     product only: shop.search_facets totals (see check())
-- ---------------------------------------------------------------------

-- the SQL of a query on a target: ids matching $1, optionally ordered
CREATE FUNCTION stress.sql_for(target text, ordered boolean) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE target
    WHEN 'product' THEN
        'SELECT p.product_id AS id FROM shop.product p WHERE p.status = ''active'' AND '
        || 'shop.search_doc(p.title, p.brand, p.description, p.category_id, p.price_cents, '
        || 'p.rating_avg::real, p.in_stock, p.popularity) OPERATOR(shop.@@@) $1'
        || CASE WHEN ordered THEN ' ORDER BY shop.search_doc(p.title, p.brand, p.description, '
           || 'p.category_id, p.price_cents, p.rating_avg::real, p.in_stock, p.popularity) '
           || 'OPERATOR(shop.<=>) $1' ELSE '' END
    ELSE
        'SELECT d.id FROM stress.doc d WHERE shop.search_doc(d.title, d.brand, d.body, '
        || 'd.category_id, d.price_cents, d.rating, d.in_stock, d.popularity) OPERATOR(shop.@@@) $1'
        || CASE WHEN ordered THEN ' ORDER BY shop.search_doc(d.title, d.brand, d.body, '
           || 'd.category_id, d.price_cents, d.rating, d.in_stock, d.popularity) OPERATOR(shop.<=>) $1'
           ELSE '' END
    END $$;

CREATE FUNCTION stress.index_of(target text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE target WHEN 'product' THEN 'shop.product_search_idx' ELSE 'stress.doc_search' END $$;

-- Force the plan of a method: set the planner GUCs for the rest of the
-- calling function (whose SET clauses restore them on exit).
CREATE FUNCTION stress.force_plan(method text) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM set_config('enable_seqscan', (method = 'truth')::text, true);
    PERFORM set_config('enable_indexscan', (method IN ('index', 'ordered'))::text, true);
    PERFORM set_config('enable_bitmapscan', (method = 'bitmap')::text, true);
    PERFORM set_config('enable_indexonlyscan', 'off', true);
END $$;

CREATE FUNCTION stress.ids(p_qid int, method text) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = on SET enable_indexscan = on SET enable_bitmapscan = on
SET enable_indexonlyscan = on SET work_mem = '64MB'
AS $$
DECLARE
    r stress.query;
    res bigint[];
BEGIN
    SELECT * INTO STRICT r FROM stress.query WHERE qid = p_qid;
    IF method IN ('truth', 'bitmap', 'index', 'ordered') THEN
        PERFORM stress.force_plan(method);
        EXECUTE format('SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM (%s) s',
                       stress.sql_for(r.target, method = 'ordered'))
           INTO res USING r.q;
    ELSIF method = 'scan_fn' AND r.target = 'product' THEN
        SELECT coalesce(array_agg(p.product_id ORDER BY p.product_id), '{}') INTO res
          FROM shop.search_scan('shop.product_search_idx', r.q, 101000) s
          JOIN shop.product p ON p.ctid = s.ctid;
    ELSIF method = 'scan_fn' THEN
        SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO res
          FROM shop.search_scan('stress.doc_search', r.q, 101000) s
          JOIN stress.doc d ON d.ctid = s.ctid;
    ELSIF method = 'api' THEN
        SELECT coalesce(array_agg(s.product_id ORDER BY s.product_id), '{}') INTO res
          FROM shop.search(r.text, r.filters, 'relevance', 1000) s
         WHERE s.missing_words = 0;
    ELSIF method = 'api_price' THEN
        SELECT coalesce(array_agg(s.product_id ORDER BY s.product_id), '{}') INTO res
          FROM shop.search(r.text, r.filters, 'price_asc', 1000) s;
    ELSE
        RAISE EXCEPTION 'stress: unknown method % for %', method, r.target;
    END IF;
    RETURN res;
END $$;

-- Does the plan of a method use what it claims to?  NULL if so, else why not.
CREATE FUNCTION stress.plan_problem(target text, method text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = on SET enable_indexscan = on SET enable_bitmapscan = on
SET enable_indexonlyscan = on SET work_mem = '64MB'
AS $$
DECLARE
    plan jsonb;
    idx text := CASE target WHEN 'product' THEN 'product_search_idx' ELSE 'doc_search' END;
    want text := CASE method WHEN 'truth' THEN 'Seq Scan' WHEN 'bitmap' THEN 'Bitmap Index Scan'
                             ELSE 'Index Scan' END;
BEGIN
    PERFORM stress.force_plan(method);
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || stress.sql_for(target, method = 'ordered')
       INTO plan USING '"adapter"'::jsonb;
    IF NOT jsonb_path_exists(plan, '$.**."Node Type" ? (@ == $t)', jsonb_build_object('t', want)) THEN
        RETURN format('%s plan has no %s: %s', method, want, plan);
    END IF;
    IF (method = 'truth') = jsonb_path_exists(plan, '$.**."Index Name" ? (@ == $i)', jsonb_build_object('i', idx)) THEN
        RETURN format('%s plan %s %s: %s', method, CASE WHEN method = 'truth' THEN 'uses' ELSE 'does not use' END, idx, plan);
    END IF;
    IF method = 'ordered' AND NOT plan::text LIKE '%"Order By"%' THEN
        RETURN format('ordered plan is not an ordered index scan: %s', plan);
    END IF;
    RETURN NULL;
END $$;

-- shop.search_facets against the truth: total, and counts by category,
-- price bucket and minimum rating, from the truth's rows
CREATE FUNCTION stress.facets_problem(p_qid int, truth bigint[]) RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r stress.query;
    got jsonb;
    want jsonb;
BEGIN
    SELECT * INTO STRICT r FROM stress.query WHERE qid = p_qid;
    got := shop.search_facets(r.text, r.filters);
    got := jsonb_build_object(
        'total', got -> 'total',
        'category', (SELECT coalesce(jsonb_object_agg(e ->> 'category_id', e -> 'count'), '{}')
                       FROM jsonb_array_elements(got -> 'category') e),
        'price', (SELECT coalesce(jsonb_object_agg(e ->> 'min_cents', e -> 'count'), '{}')
                    FROM jsonb_array_elements(got -> 'price') e),
        'rating', (SELECT coalesce(jsonb_object_agg(e ->> 'min', e -> 'count'), '{}')
                     FROM jsonb_array_elements(got -> 'rating') e));
    SELECT jsonb_build_object(
        'total', to_jsonb(cardinality(truth)),
        'category', (SELECT coalesce(jsonb_object_agg(c, n), '{}') FROM
                       (SELECT category_id::text AS c, count(*) AS n FROM shop.product
                         WHERE product_id = ANY (truth) AND category_id IS NOT NULL GROUP BY 1) x),
        'price', (SELECT coalesce(jsonb_object_agg(lo, n), '{}') FROM
                    (SELECT b.lo::text AS lo, count(*) AS n
                       FROM shop.product p
                       JOIN (VALUES (0, 999), (1000, 2499), (2500, 4999), (5000, 9999),
                                    (10000, 24999), (25000, 49999), (50000, 99999),
                                    (100000, NULL)) b(lo, hi)
                         ON p.price_cents >= b.lo AND (b.hi IS NULL OR p.price_cents <= b.hi)
                      WHERE p.product_id = ANY (truth) GROUP BY 1) x),
        'rating', (SELECT coalesce(jsonb_object_agg(m, n), '{}') FROM
                     (SELECT m::text AS m, count(*) AS n
                        FROM shop.product p, generate_series(1, 4) m
                       WHERE p.product_id = ANY (truth) AND p.rating_avg >= m GROUP BY 1) x))
      INTO want;
    IF got = want THEN
        RETURN NULL;
    END IF;
    RETURN format('facets %s, truth %s', got, want);
END $$;

-- multiset difference a - b of two sorted id arrays (duplicates count)
CREATE FUNCTION stress.minus(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE
AS $$ SELECT coalesce(array_agg(x ORDER BY x), '{}')
        FROM (SELECT unnest(a) EXCEPT ALL SELECT unnest(b)) s(x) $$;

-- ---------------------------------------------------------------------
-- stress.check(): every query of the set by every method against the
-- truth, in the caller's snapshot (run.sh calls it in a REPEATABLE READ
-- transaction).  One row per comparison; digest identifies the answer
-- (run.sh compares the standby's digests with the primary's).
-- ---------------------------------------------------------------------
CREATE FUNCTION stress.check(skip_typo boolean DEFAULT false)
RETURNS TABLE (qid int, target text, class text, method text, ok boolean,
               n_truth int, n_got int, digest text, detail text, query jsonb)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r stress.query;
    tgt text;
    m text;
    truth bigint[];
    got bigint[];
    miss bigint[];
    extra bigint[];
    dig text;
    prob text;
    st text;
    err text;
BEGIN
    -- plans first: a comparison of a plan that is not what it claims
    -- would prove nothing
    FOR tgt, m IN SELECT t, mm FROM unnest(ARRAY['product', 'doc']) t,
                         unnest(ARRAY['truth', 'bitmap', 'index', 'ordered']) mm LOOP
        prob := stress.plan_problem(tgt, m);
        IF prob IS NOT NULL THEN
            RETURN QUERY SELECT 0, tgt, 'plan'::text, m, false, 0, 0, ''::text, prob, NULL::jsonb;
        END IF;
    END LOOP;
    FOR r IN SELECT * FROM stress.query s
              WHERE NOT (skip_typo AND s.class = 'typo') ORDER BY s.qid LOOP
        -- an error is a finding like a wrong row: it becomes a failed
        -- comparison (digest "error") and the check goes on; only a
        -- recovery conflict (40001) ends it, for run.sh to try again
        BEGIN
            truth := stress.ids(r.qid, 'truth');
        EXCEPTION
            WHEN serialization_failure THEN RAISE;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, err = MESSAGE_TEXT;
                RETURN QUERY SELECT r.qid, r.target, r.class, 'truth'::text, false, 0, 0, 'error'::text,
                                    format('ERROR %s: %s', st, err), r.q;
                CONTINUE;
        END;
        RETURN QUERY SELECT r.qid, r.target, r.class, 'truth'::text, true, cardinality(truth),
                            cardinality(truth), md5(truth::text), ''::text, r.q;
        FOREACH m IN ARRAY CASE WHEN r.target = 'product' AND r.text IS NOT NULL
                                THEN ARRAY['bitmap', 'index', 'ordered', 'scan_fn', 'api', 'api_price', 'facets']
                                ELSE ARRAY['bitmap', 'index', 'ordered', 'scan_fn'] END LOOP
            BEGIN
                IF m = 'facets' THEN
                    prob := stress.facets_problem(r.qid, truth);
                    got := truth;
                    miss := '{}';
                    extra := '{}';
                    dig := md5(coalesce(prob, ''));
                ELSE
                    prob := NULL;
                    got := stress.ids(r.qid, m);
                    dig := md5(got::text);
                    IF m IN ('api', 'api_price') AND cardinality(truth) > 1000 THEN
                        -- a page of 1000: must be 1000 rows of the truth (which
                        -- ones depends on ranking ties: no digest to compare)
                        miss := CASE WHEN cardinality(got) < 1000 THEN stress.minus(truth, got) ELSE '{}' END;
                        extra := stress.minus(got, truth);
                        dig := 'page';
                    ELSE
                        miss := stress.minus(truth, got);
                        extra := stress.minus(got, truth);
                    END IF;
                    IF cardinality(miss) + cardinality(extra) > 0 THEN
                        prob := format('missing %s %s extra %s %s', cardinality(miss), miss[1:20],
                                       cardinality(extra), extra[1:20]);
                    END IF;
                END IF;
            EXCEPTION
                WHEN serialization_failure THEN RAISE;
                WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, err = MESSAGE_TEXT;
                    got := '{}';
                    dig := 'error';
                    prob := format('ERROR %s: %s', st, err);
            END;
            RETURN QUERY SELECT r.qid, r.target, r.class, m, prob IS NULL, cardinality(truth),
                                cardinality(got), dig, coalesce(prob, ''), r.q;
        END LOOP;
    END LOOP;
END $$;

-- shop.search_verify on both indexes; an error of it is a finding too
-- (kind "error")
CREATE FUNCTION stress.verify()
RETURNS TABLE (index text, kind text, ctid tid, detail text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    idx text;
    st text;
    err text;
BEGIN
    FOREACH idx IN ARRAY ARRAY['shop.product_search_idx', 'stress.doc_search'] LOOP
        BEGIN
            RETURN QUERY SELECT idx, v.kind, v.ctid, v.detail FROM shop.search_verify(idx::regclass) v;
        EXCEPTION
            WHEN serialization_failure THEN RAISE;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, err = MESSAGE_TEXT;
                RETURN QUERY SELECT idx, 'error'::text, NULL::tid, format('ERROR %s: %s', st, err);
        END;
    END LOOP;
END $$;

-- ---------------------------------------------------------------------
-- During the workload
-- ---------------------------------------------------------------------

-- Searchers' queries (their results are not compared, only run): one to
-- three words, sometimes a rare or confusable word, a typo (a letter
-- dropped) or a prefix (the last word cut short).
CREATE FUNCTION stress.qtext(seed bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN u < 0.15 THEN left(t, length(t) - 1 - floor(3 * stress.u(seed, 31))::int)   -- prefix
        WHEN u < 0.30 AND length(t) > 6 THEN overlay(t placing '' from 4 for 1)         -- typo
        ELSE t END
      FROM (SELECT stress.u(seed, 30) AS u,
                   concat_ws(' ', stress.words(seed, 400, 1 + floor(2 * stress.u(seed, 32))::int),
                             CASE WHEN stress.u(seed, 33) < 0.1 THEN stress.pick(stress.rare_words(), seed, 34, 1.0) END,
                             CASE WHEN stress.u(seed, 35) < 0.1 THEN stress.pick(stress.confusables(), seed, 36, 1.0) END) AS t) x
$$;

-- shop.search filters, none most of the time
CREATE FUNCTION stress.qfilters(seed bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'category_id', CASE WHEN stress.u(seed, 40) < 0.15 THEN 1 + floor(16 * stress.u(seed, 41))::int END,
        'brand', CASE WHEN stress.u(seed, 42) < 0.1 THEN stress.pick(stress.brands(), seed, 43, 1.0) END,
        'price_max', CASE WHEN stress.u(seed, 44) < 0.1 THEN stress.price(seed) END,
        'rating_min', CASE WHEN stress.u(seed, 45) < 0.05 THEN 1 + floor(4 * stress.u(seed, 46))::int END,
        'in_stock', CASE WHEN stress.u(seed, 47) < 0.1 THEN stress.u(seed, 48) < 0.5 END))
$$;

-- the user table's queries, in the operators' language
CREATE FUNCTION stress.dquery(seed bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'q', stress.qtext(seed),
        'match', CASE WHEN stress.u(seed, 50) < 0.2 THEN 'any' END,
        'category_ids', CASE WHEN stress.u(seed, 51) < 0.1
                             THEN jsonb_build_array(1 + floor(20 * stress.u(seed, 52))::int,
                                                    1 + floor(20 * stress.u(seed, 53))::int) END,
        'brands', CASE WHEN stress.u(seed, 54) < 0.1 THEN to_jsonb(stress.pick(stress.brands(), seed, 55, 1.0)) END,
        'price_min', CASE WHEN stress.u(seed, 56) < 0.1 THEN stress.price(seed) END,
        'rating_min', CASE WHEN stress.u(seed, 57) < 0.05 THEN 2.5 END,
        'in_stock', CASE WHEN stress.u(seed, 58) < 0.1 THEN true END))
$$;

-- live_check: one query of the set by one index method against the
-- truth, both in the caller's snapshot (searchers call it in a
-- REPEATABLE READ transaction, on the primary and on the standby, while
-- writers, VACUUM and replay go on).  A difference is a WARNING starting
-- "stress live mismatch" in the server log, where run.sh counts it.
CREATE FUNCTION stress.live_check(p_qid int, m int, skip_typo boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r stress.query;
    method text := (ARRAY['bitmap', 'index', 'ordered', 'scan_fn'])[1 + abs(m) % 4];
    truth bigint[];
    got bigint[];
BEGIN
    SELECT * INTO r FROM stress.query s ORDER BY s.qid OFFSET abs(p_qid) % (SELECT count(*) FROM stress.query) LIMIT 1;
    IF skip_typo AND r.class = 'typo' THEN
        RETURN true;
    END IF;
    truth := stress.ids(r.qid, 'truth');
    got := stress.ids(r.qid, method);
    IF truth = got THEN
        RETURN true;
    END IF;
    RAISE WARNING 'stress live mismatch: qid % (%) method %: truth % rows, index % rows; missing %, extra %',
        r.qid, r.q, method, cardinality(truth), cardinality(got),
        (stress.minus(truth, got))[1:20], (stress.minus(got, truth))[1:20];
    RETURN false;
END $$;

-- race_folds: make VACUUM race an insert's fold.  For `seconds`, watch
-- pg_stat_progress_vacuum; whenever a VACUUM of either table is in its
-- index pass ("vacuuming indexes"), replace just enough of the race's own
-- rows (ids of partition `part` of `nparts`) in that table to bring the
-- index's pending list to SS_PENDING_FLUSH (500 documents, read from
-- shop.search_index_info) and a few past it: delete them and insert them
-- anew, so that an insert folds the pending list, merging the last
-- segments, while ambulkdelete walks the index.  Returns how many races
-- it started.
CREATE PROCEDURE stress.race_folds(seconds int, part int, nparts int, seed bigint,
                                   INOUT races int DEFAULT 0)
LANGUAGE plpgsql
AS $$
DECLARE
    stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
    rel regclass;
    space bigint := (SELECT value FROM stress.param WHERE name = 'space');
    lo bigint;
    n int;
    i int := 0;
BEGIN
    races := 0;
    WHILE clock_timestamp() < stop LOOP
        SELECT v.relid::regclass INTO rel FROM pg_stat_progress_vacuum v
         WHERE v.phase = 'vacuuming indexes'
           AND v.relid IN ('shop.product'::regclass, 'stress.doc'::regclass)
         ORDER BY v.pid LIMIT 1;
        COMMIT;     -- a fresh view of pg_stat_progress_vacuum next time
        IF rel IS NULL THEN
            PERFORM pg_sleep(0.005);
            CONTINUE;
        END IF;
        i := i + 1;
        n := greatest(500 - (shop.search_index_info(CASE WHEN rel = 'shop.product'::regclass
                                                          THEN 'shop.product_search_idx'
                                                          ELSE 'stress.doc_search' END::regclass)
                             ->> 'pending')::int, 0) + 10;
        lo := floor(stress.u(seed, i) * greatest(space / nparts - n, 1))::bigint;
        IF rel = 'shop.product'::regclass THEN
            DELETE FROM shop.product
             WHERE product_id BETWEEN lo * nparts + 1 AND (lo + n) * nparts
               AND product_id % nparts = (part + 1) % nparts;
            INSERT INTO shop.product (product_id, sku, title, description, brand, category_id,
                                      price_cents, popularity, in_stock)
            SELECT id, 'P' || id, stress.title(s), stress.body(s), stress.brand(s),
                   stress.pcat(s), stress.price(s), stress.popularity(s), stress.u(s, 22) < 0.6
              FROM generate_series(lo, lo + n - 1) g,
                   LATERAL (SELECT g * nparts + part + 1 AS id, seed * 7919 + i * 1000 + g AS s) x
             WHERE id <= space;
        ELSE
            DELETE FROM stress.doc
             WHERE id BETWEEN lo * nparts + 1 AND (lo + n) * nparts
               AND id % nparts = (part + 1) % nparts;
            INSERT INTO stress.doc
            SELECT id, stress.title(s), stress.brand(s), stress.body(s), stress.dcat(s),
                   stress.price(s), stress.rating(s), stress.in_stock(s), stress.popularity(s), NULL
              FROM generate_series(lo, lo + n - 1) g,
                   LATERAL (SELECT g * nparts + part + 1 AS id, seed * 7919 + i * 1000 + g AS s) x
             WHERE id <= space;
        END IF;
        races := races + 1;
        COMMIT;
        -- one race per VACUUM: wait until that index pass is over
        WHILE clock_timestamp() < stop AND EXISTS (
                SELECT 1 FROM pg_stat_progress_vacuum v
                 WHERE v.relid = rel AND v.phase = 'vacuuming indexes') LOOP
            COMMIT;
            PERFORM pg_sleep(0.05);
        END LOOP;
        COMMIT;
    END LOOP;
END $$;

ANALYZE;
