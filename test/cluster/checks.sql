-- checks.sql: the data checks of test/cluster, run in the "checker"
-- database (dblink to every database). psql -v p0=connstr ... p3=...
-- -v one=connstr -v router=connstr. Each failed check raises an error.
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
\pset tuples_only on
\pset format unaligned

-- one dblink connection per database, kept for the whole run (a router
-- backend keeps its PL/Proxy connections to the shards as well)
CREATE TABLE part (i int PRIMARY KEY, conn text NOT NULL);
INSERT INTO part VALUES (0, 'p0'), (1, 'p1'), (2, 'p2'), (3, 'p3');
SELECT dblink_connect('p0', :'p0'), dblink_connect('p1', :'p1'), dblink_connect('p2', :'p2'),
       dblink_connect('p3', :'p3'), dblink_connect('one', :'one'), dblink_connect('router', :'router');

CREATE FUNCTION fail_if(bad boolean, what text, detail text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF bad THEN
        RAISE EXCEPTION 'FAIL: %', what USING DETAIL = coalesce(detail, '');
    END IF;
    RAISE NOTICE 'ok: %', what;
END
$$;

-- one text value from a database
CREATE FUNCTION val(conn text, sql text) RETURNS text LANGUAGE sql AS $$
    SELECT v FROM dblink(conn, sql) AS t(v text)
$$;
CREATE FUNCTION one(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT val('one', sql)
$$;
CREATE FUNCTION router(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT val('router', sql)
$$;

\echo == placement: every product on the partition its hash names, and only there
SELECT fail_if(count(*) > 0, 'no product on a partition other than hashint8(product_id) & 3',
               string_agg(format('product %s on p%s', id, i), ', '))
  FROM part, dblink(conn, 'SELECT product_id FROM shop.product') AS t(id bigint)
 WHERE (hashint8(id) & 3) <> i;
SELECT fail_if(count(*) <> 240 OR count(DISTINCT sku) <> 240 OR count(DISTINCT i) <> 4,
               'the 240 products are each on one partition, and every partition has some',
               format('%s rows, %s skus, %s partitions', count(*), count(DISTINCT sku), count(DISTINCT i)))
  FROM part, dblink(conn, 'SELECT product_id, sku FROM shop.product') AS t(id bigint, sku text);
SELECT fail_if(count(*) > 0, 'every product has the id, sku, title and price it has on one node',
               string_agg(coalesce(s.sku, o.sku), ', '))
  FROM (SELECT t.* FROM part, dblink(conn, 'SELECT product_id, sku, title, price_cents, rating_count FROM shop.product')
                          AS t(id bigint, sku text, title text, price bigint, nrev int)) s
  FULL JOIN dblink('one', 'SELECT product_id, sku, title, price_cents, rating_count FROM shop.product')
            AS o(id bigint, sku text, title text, price bigint, nrev int)
         ON (o.id, o.sku, o.title, o.price, o.nrev) = (s.id, s.sku, s.title, s.price, s.nrev)
 WHERE s.id IS NULL OR o.id IS NULL;
SELECT fail_if(count(*) > 0, 'stock lives with its product (stock_set through the router)',
               string_agg(format('product %s on p%s', id, i), ', '))
  FROM part, dblink(conn, 'SELECT product_id FROM shop.stock') AS t(id bigint)
 WHERE (hashint8(id) & 3) <> i;

\echo == replicated tables: on every shard, as on one node
CREATE FUNCTION replicated(conn text) RETURNS text LANGUAGE sql AS $$
    SELECT val(conn, $q$
        SELECT md5(concat((SELECT string_agg(format('%s %s %s %s %s', category_id, parent_id, name, slug, path), ';'
                                             ORDER BY category_id) FROM shop.category),
                          '|',
                          (SELECT string_agg(format('%s %s', term, synonyms), ';' ORDER BY term) FROM shop.synonym)))
    $q$)
$$;
SELECT fail_if(count(DISTINCT replicated(conn)) <> 1 OR min(replicated(conn)) <> replicated('one'),
               'categories and synonyms are the same on every shard and on one node')
  FROM part;
SELECT fail_if(router($$SELECT shop.synonym_add('portable computer', ARRAY['laptop', 'notebook'])::text$$) <> '',
               'synonym_add through the router');
SELECT fail_if(count(*) <> 4, 'a synonym written through the router is on every shard',
               string_agg(i::text, ','))
  FROM part WHERE val(conn, $$SELECT array_to_string(synonyms, ',') FROM shop.synonym WHERE term = 'portable computer'$$)
                  = 'laptop,notebook';
SELECT fail_if(router($$SELECT shop.synonym_remove('portable computer')::text$$) <> 'true'
               OR router($$SELECT shop.synonym_remove('portable computer')::text$$) <> 'false',
               'synonym_remove through the router: true, then false');
SELECT fail_if(count(*) > 0, 'a synonym removed through the router is gone from every shard')
  FROM part WHERE val(conn, $$SELECT term FROM shop.synonym WHERE term = 'portable computer'$$) IS NOT NULL;
SELECT fail_if(router($$SELECT shop.category_path(3)->0->>'name'$$) <> 'Computers'
               OR router($$SELECT shop.category_descendants(1)::text$$) <> one($$SELECT shop.category_descendants(1)::text$$),
               'category reads through the router answer as one node');

\echo == search: the page of the router is the merge of the pages of the shards
CREATE TABLE queries (q text PRIMARY KEY);
INSERT INTO queries VALUES ('laptop'), ('lenovo laptop'), ('wireless mouse'), ('sony'), ('blue speaker'),
    ('bluetooth speaker black'), ('headset noise cancelling'), ('notebook'), ('laptp'), ('logitec mouse'),
    ('pro'), ('chromebook'), ('ultrabook zen xylophone'), ('red'), ('elite 137'), ('lenovo pro'), ('jabra headset');

-- what the router returns, in its order
CREATE FUNCTION routed(q text, sort text, lim int, off int)
RETURNS TABLE (ord bigint, product_id bigint) LANGUAGE sql AS $$
    SELECT ord, id FROM ROWS FROM (dblink('router',
        format('SELECT product_id FROM shop.search(%L, sort => %L, lim => %s, off => %s)', q, sort, lim, off))
        AS (id bigint)) WITH ORDINALITY AS t(id, ord)
$$;
-- the merge of every shard's own first lim rows, scored with the cluster's
-- statistics (the router's DFS phase), sorted as one node sorts
CREATE FUNCTION merged(q text, sort text, lim int)
RETURNS TABLE (ord bigint, product_id bigint) LANGUAGE sql AS $$
    SELECT row_number() OVER (ORDER BY
               CASE WHEN sort = 'relevance' THEN missing END, CASE WHEN sort = 'relevance' THEN typos END,
               CASE WHEN sort = 'relevance' THEN score END DESC,
               CASE WHEN sort = 'price_asc' THEN price END, CASE WHEN sort = 'price_desc' THEN price END DESC,
               id),
           id
      FROM part, dblink(conn, format('SELECT product_id, score, typos, missing_words, price_cents
                                        FROM shop._search_routed(%L, ''{}'', %L, %s, 0, NULL, %L)', q, sort, lim,
                                     router(format('SELECT shop_router._search_global(%L, ''{}'', %L)', q, sort = 'relevance'))))
                 AS t(id bigint, score real, typos int, missing int, price bigint)
     ORDER BY 1 LIMIT lim
$$;
SELECT fail_if(count(*) > 0, 'search through the router = merge of the shards (top 10; relevance, price_asc, price_desc)',
               string_agg(format('%s/%s', q, s), ', '))
  FROM queries, unnest(ARRAY['relevance', 'price_asc', 'price_desc']) s
 WHERE (SELECT array_agg(product_id ORDER BY ord) FROM routed(q, s, 10, 0))
       IS DISTINCT FROM (SELECT array_agg(product_id ORDER BY ord) FROM merged(q, s, 10));
SELECT fail_if(count(*) > 0, 'pagination: page 2 (lim 5, off 5) through the router = rows 6-10 of its top 10',
               string_agg(format('%s/%s', q, s), ', '))
  FROM queries, unnest(ARRAY['relevance', 'price_asc', 'rating', 'newest', 'popularity']) s
 WHERE (SELECT array_agg(product_id ORDER BY ord) FROM routed(q, s, 5, 5))
       IS DISTINCT FROM (SELECT array_agg(product_id ORDER BY ord) FROM routed(q, s, 10, 0) WHERE ord > 5);
SELECT fail_if(count(*) > 0, 'a deep page (lim 1000, off 500) through the router = its rows 501-1500 in pages',
               string_agg(q, ', '))
  FROM (VALUES ('laptop')) v(q)
 WHERE (SELECT array_agg(product_id ORDER BY ord) FROM routed(q, 'price_asc', 1000, 500))
       IS DISTINCT FROM (SELECT array_agg(product_id ORDER BY ord) FROM routed(q, 'price_asc', 1000, 0) WHERE ord > 500);

\echo == search: the router finds what one node finds
CREATE FUNCTION single(q text, sort text, lim int)
RETURNS TABLE (ord bigint, product_id bigint) LANGUAGE sql AS $$
    SELECT ord, id FROM ROWS FROM (dblink('one',
        format('SELECT product_id FROM shop.search(%L, sort => %L, lim => %s)', q, sort, lim))
        AS (id bigint)) WITH ORDINALITY AS t(id, ord)
$$;
SELECT fail_if(count(*) > 0, 'the whole result set through the router = one node''s (every query)',
               string_agg(q, ', '))
  FROM queries
 WHERE (SELECT array_agg(product_id ORDER BY product_id) FROM routed(q, 'relevance', 1000, 0))
       IS DISTINCT FROM (SELECT array_agg(product_id ORDER BY product_id) FROM single(q, 'relevance', 1000));
SELECT fail_if(count(*) > 0, 'sorts on stored values (price, rating, newest, popularity) page as one node (top 10)',
               string_agg(format('%s/%s', q, s), ', '))
  FROM queries, unnest(ARRAY['price_asc', 'price_desc', 'rating', 'popularity']) s
 WHERE (SELECT array_agg(product_id ORDER BY ord) FROM routed(q, s, 10, 0))
       IS DISTINCT FROM (SELECT array_agg(product_id ORDER BY ord) FROM single(q, s, 10));
-- the intent (the type and category a ranked page asks for) through the
-- router is one node's: a shard reads it from the cluster's 40 best
-- matches as the router merged them, each with what only its own shard
-- could read from its title (whether it names the query's word among its
-- first 3 words: the rule for a line, docs/search.md).  Computed on a
-- shard with the router's sums, as shop._search_routed does.
CREATE FUNCTION intent_of(conn text, q text) RETURNS text LANGUAGE sql AS $$
    SELECT val(conn, format($f$SELECT jsonb_build_object('type', i -> 'type_words', 'category', i -> 'intent_categories')::text
                                 FROM shop._search_intent(shop._search_query(%L, '{}', NULL)) i$f$, q))
$$;
CREATE TABLE intents (q text PRIMARY KEY, one text, routed text);
DO $$
DECLARE
    qq text;
BEGIN
    FOR qq IN SELECT q FROM queries ORDER BY q LOOP
        PERFORM dblink_exec('p0', format('SET shop.search_global = %L',
                                         router(format('SELECT shop_router._search_global(%L, ''{}'', true)', qq))));
        INSERT INTO intents VALUES (qq, intent_of('one', qq), intent_of('p0', qq));
    END LOOP;
    PERFORM dblink_exec('p0', 'RESET shop.search_global');
END
$$;
SELECT fail_if(count(*) > 0, 'the intent through the router = one node''s (type and category asked for, every query)',
               string_agg(format('%s: %s / %s', q, one, routed), '; '))
  FROM intents WHERE one IS DISTINCT FROM routed;
SELECT fail_if(count(*) FILTER (WHERE one LIKE '%"category": [%') < 1
               OR count(*) FILTER (WHERE one NOT LIKE '%"category": [%' AND one LIKE '%"type": [%') < 1,
               'the intent check above has queries with and without a category meant',
               string_agg(format('%s: %s', q, one), '; '))
  FROM intents;
-- relevance: the shards score with the cluster's statistics (the DFS
-- phase: document frequencies, document count and field lengths summed
-- over the shards), so a routed top 10 is one node's: the same missing
-- words, typos and scores, row by row, and the same product in every row
-- whose score no other row of the page shares.  Rows of equal score come
-- by product_id on one node and through the router alike (docs/search.md,
-- "Order of equal scores"); this fixture's titles repeat a few words, so
-- many of its rows tie, and the second check below compares them too.
-- With each shard's own statistics, "laptop" scores differ from one
-- node's (a word is rarer or commoner on a shard).
-- One node's rows go into another physical order first: CLUSTER rewrites
-- its table by category, newest first, then product_id descending (the
-- fixture's rows of one statement share created_at), so rows that tie
-- lie in the table in the reverse of product_id order.
SELECT dblink_exec('one', 'CLUSTER shop.product USING product_category_newest_idx');
CREATE TABLE ranked AS
SELECT n.node, qs.q, t.ord, t.product_id, format('%s %s %s', t.missing, t.typos, t.score) AS k
  FROM queries qs, unnest(ARRAY['one', 'router']) n(node),
       ROWS FROM (dblink(n.node, format('SELECT product_id, missing_words, typos, score FROM shop.search(%L, lim => 10)', qs.q))
                  AS (product_id bigint, missing int, typos int, score real))
       WITH ORDINALITY AS t(product_id, missing, typos, score, ord);
SELECT fail_if(count(*) > 0, 'relevance through the router = one node''s top 10 (scores row by row; products but for exact ties)',
               string_agg(q, ', '))
  FROM queries qs
 WHERE (SELECT array_agg(k ORDER BY ord) FROM ranked WHERE node = 'router' AND q = qs.q)
       IS DISTINCT FROM (SELECT array_agg(k ORDER BY ord) FROM ranked WHERE node = 'one' AND q = qs.q)
    OR EXISTS (SELECT 1 FROM ranked o
                WHERE o.node = 'one' AND o.q = qs.q
                  AND NOT EXISTS (SELECT 1 FROM ranked o2 WHERE o2.node = 'one' AND o2.q = qs.q
                                                            AND o2.k = o.k AND o2.ord <> o.ord)
                  AND o.ord < (SELECT max(ord) FROM ranked WHERE node = 'one' AND q = qs.q)
                  AND NOT EXISTS (SELECT 1 FROM ranked r WHERE r.node = 'router' AND r.q = qs.q
                                                           AND r.ord = o.ord AND r.product_id = o.product_id));
SELECT fail_if(count(DISTINCT q) < 10, 'the check above compares untied rows of at least 10 queries',
               format('%s queries', count(DISTINCT q)))
  FROM ranked o
 WHERE node = 'one'
   AND NOT EXISTS (SELECT 1 FROM ranked o2 WHERE o2.node = 'one' AND o2.q = o.q AND o2.k = o.k AND o2.ord <> o.ord);
-- ties too: the same product in every row (failed before ties were
-- broken by product_id on one node, which ordered them by their places in
-- its table: after the CLUSTER above)
SELECT fail_if(count(*) > 0, 'relevance through the router = one node''s top 10, ties included (products row by row)',
               string_agg(q, ', '))
  FROM queries qs
 WHERE (SELECT array_agg(product_id ORDER BY ord) FROM ranked WHERE node = 'router' AND q = qs.q)
       IS DISTINCT FROM (SELECT array_agg(product_id ORDER BY ord) FROM ranked WHERE node = 'one' AND q = qs.q);
SELECT fail_if(count(DISTINCT q) < 5, 'the check above has queries whose top 10 holds a tie',
               format('%s queries', count(DISTINCT q)))
  FROM ranked o
 WHERE node = 'one'
   AND EXISTS (SELECT 1 FROM ranked o2 WHERE o2.node = 'one' AND o2.q = o.q AND o2.k = o.k AND o2.ord <> o.ord);
-- the overlap of the top 10s, printed
CREATE TABLE overlap AS
SELECT q, (SELECT count(*) FROM routed(q, 'relevance', 10, 0) r JOIN single(q, 'relevance', 10) o USING (product_id))::numeric
          / greatest(1, (SELECT count(*) FROM single(q, 'relevance', 10))) AS top10,
       (SELECT array_agg(product_id ORDER BY ord) FROM routed(q, 'relevance', 10, 0))
       = (SELECT array_agg(product_id ORDER BY ord) FROM single(q, 'relevance', 10)) AS same_order
  FROM queries;
\pset tuples_only off
\pset format aligned
SELECT q, round(top10, 2) AS top10_overlap, same_order FROM overlap ORDER BY q;
\pset tuples_only on
\pset format unaligned
SELECT format('top 10 overlap with one node: %s%% on average, %s of %s queries in the same order',
              round(100 * avg(top10)), count(*) FILTER (WHERE same_order), count(*))
  FROM overlap;

\echo == browse: the pages of the router are those of one node
-- (not newest: the router's load and the reference's give the products
-- other created_at values)
SELECT fail_if(count(*) > 0, 'browse through the router = one node (categories with descendants, 5 sorts, 2 pages)',
               string_agg(format('%s/%s/%s', c, s, off), ', '))
  FROM generate_series(1, 6) c, unnest(ARRAY['popularity', 'price_asc', 'price_desc', 'rating', 'title']) s,
       unnest(ARRAY[0, 7]) off
 WHERE router(format('SELECT string_agg(format(''%%s %%s %%s'', product_id, category, rating_count), '','') FROM shop.browse(%s, %L, 7, %s)', c, s, off))
       IS DISTINCT FROM one(format('SELECT string_agg(format(''%%s %%s %%s'', product_id, category, rating_count), '','') FROM shop.browse(%s, %L, 7, %s)', c, s, off));

\echo == facets: the counts of the router are those of one node
CREATE TABLE facet_cases (q text, filters text);
INSERT INTO facet_cases SELECT q, '{}' FROM queries;
INSERT INTO facet_cases VALUES ('laptop', '{"attributes": {"colour": "blue"}}'), ('sony', '{"brand": "Sony"}'),
    ('speaker', '{"in_stock": true}'), ('mouse', '{"price_max": 100000}');
SELECT fail_if(count(*) > 0, 'search_facets through the router = one node''s, exactly',
               string_agg(format('%s %s', q, filters), '; '))
  FROM facet_cases
 WHERE router(format('SELECT shop.search_facets(%L, %L)', q, filters))::jsonb
       IS DISTINCT FROM one(format('SELECT shop.search_facets(%L, %L)', q, filters))::jsonb;

-- bounded lists and attribute facets (shop 1.1): summed, then cut as one node cuts
SELECT fail_if(count(*) > 0, 'bounded and attribute search_facets through the router = one node''s, exactly',
               string_agg(format('%s %s %s %s', q, filters, top, nattr), '; '))
  FROM facet_cases, (VALUES (1, 0), (2, 1), (3, 2), (NULL, 3)) x(top, nattr)
 WHERE router(format('SELECT shop.search_facets(%L, %L, %s, %s)', q, filters, coalesce(top::text, 'NULL'), nattr))::jsonb
       IS DISTINCT FROM one(format('SELECT shop.search_facets(%L, %L, %s, %s)', q, filters, coalesce(top::text, 'NULL'), nattr))::jsonb
    OR router(format('SELECT shop.search_facets(%L, %L, %s)', q, filters, coalesce(top::text, 'NULL')))::jsonb
       IS DISTINCT FROM one(format('SELECT shop.search_facets(%L, %L, %s)', q, filters, coalesce(top::text, 'NULL')))::jsonb;
SELECT fail_if(router($$SELECT jsonb_array_length(shop.search_facets('laptop', '{}', 2, 1) -> 'attributes')$$)::int <> 1,
               'the router lists the attribute keys asked for');

\echo == autocomplete and did_you_mean
-- autocomplete ranks with the cluster's statistics: the suggestions of
-- the router are one node's, row by row (kind and score too).  Its logged
-- queries are each shard's search log, which also holds the searches this
-- test made on the shards themselves: the logs are emptied first (no
-- preload in this test, so no ring holds records back)
SELECT dblink_exec(c, 'DELETE FROM shop.search_log') FROM unnest(ARRAY['p0', 'p1', 'p2', 'p3', 'one']) c \g /dev/null
CREATE FUNCTION suggestions(conn text, prefix text, lim int) RETURNS text LANGUAGE sql AS $$
    SELECT val(conn, format($q$SELECT string_agg(format('%%s/%%s/%%s', suggestion, kind, score), ' | ' ORDER BY n)
                                FROM shop.autocomplete(%L, %s) WITH ORDINALITY AS a(suggestion, kind, score, n)$q$,
                            prefix, lim))
$$;
SELECT fail_if(count(*) > 0, 'autocomplete through the router = one node''s, row by row',
               string_agg(format('%s/%s: router %s; one node %s', p, lim, suggestions('router', p, lim),
                                 suggestions('one', p, lim)), E'\n'))
  FROM unnest(ARRAY['lenov', 'sony', 'lap', 'wirel', 'chrom', 'head', 'spe', 'blu', 'nova', 'lenovo pro',
                    'headphnes', 'mo', 'jabra ear', 'z']) p, unnest(ARRAY[3, 10]) lim
 WHERE suggestions('router', p, lim) IS DISTINCT FROM suggestions('one', p, lim);
SELECT fail_if(router($$SELECT string_agg(suggestion, '|') FROM shop.autocomplete('lenov', 5)$$) !~ 'Lenovo',
               'autocomplete through the router suggests a brand from its prefix');
SELECT fail_if(router($$SELECT count(*) FROM shop.autocomplete('sony', 3)$$)::int <> 3,
               'autocomplete through the router keeps lim');
SELECT fail_if(router(format('SELECT shop.did_you_mean(%L)', w)) IS DISTINCT FROM one(format('SELECT shop.did_you_mean(%L)', w)),
               format('did_you_mean(%L) through the router = one node''s (%s)', w,
                      coalesce(router(format('SELECT shop.did_you_mean(%L)', w)), 'NULL')))
  FROM (VALUES ('chromebok'), ('lenvo laptop'), ('laptop')) v(w);
-- a word one shard holds and the others lack, one typo from a word every
-- shard holds: one node leaves it alone, while each shard lacking it
-- "corrects" it (a vote of the shards' answers would say "soundbar"); the
-- router merges word by word, knowing the word if some shard holds it and
-- counting a correction's documents over every shard
SELECT router($$SELECT shop.product_upsert('FX-SB', 'Philips Soundbars black', 19900, brand => 'Philips',
                                           product_id => 9001)::text$$),
       one($$SELECT shop.product_upsert('FX-SB', 'Philips Soundbars black', 19900, brand => 'Philips',
                                        product_id => 9001)::text$$) \g /dev/null
SELECT fail_if(count(*) = 0, 'the fixture: some shard corrects "soundbars", which another holds')
  FROM part WHERE val(conn, $$SELECT shop.did_you_mean('soundbars')$$) IS NOT NULL;
SELECT fail_if(router(format('SELECT shop.did_you_mean(%L)', w)) IS DISTINCT FROM one(format('SELECT shop.did_you_mean(%L)', w)),
               format('did_you_mean(%L) through the router = one node''s (%s)', w,
                      coalesce(router(format('SELECT shop.did_you_mean(%L)', w)), 'NULL')))
  FROM (VALUES ('soundbars'), ('philips soundbars'), ('soundbarz blak'), ('headphnes')) v(w);
