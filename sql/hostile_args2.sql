-- hostile_args2: argument checks hostile5 found missing.
-- shop.reco_evaluate(NULL, NULL) and shop.experiment_report(x, NULL)
-- answered 22023 (out of range) for a NULL argument, where docs/errors.md
-- has 22004; shop._recommend_popular (a router step granted to the
-- storefront) took a NULL, -1 or 2,000,000,000 as its n silently (and a
-- NULL exclude or a NULL in it); shop._view_record (the router's step of
-- shop.view) recorded a view of product -5 when its caller said it was
-- found; shop.experiment_create took a blank variant name "  " (and a
-- blank experiment name); shop.synonym_add took a term or a synonym of a
-- million characters that folds to one short word (the bound applied
-- after folding only).  Now: 22004 for the NULLs, 22023 for the ranges
-- and the blank names, SH006 for a product id below 1 (as shop.view), and
-- 22001 for a term or synonym above 200 characters as given.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_front;
DROP ROLE IF EXISTS regress_hostile_admin;
RESET client_min_messages;
CREATE ROLE regress_hostile_front LOGIN IN ROLE shop_storefront;
CREATE ROLE regress_hostile_admin LOGIN IN ROLE shop_admin;
SET shop.session_secret = 'a server secret of at least thirty-two characters';
SELECT shop.product_upsert('MUG-1', 'Mug', 900) AS p1 \gset
SELECT shop.product_upsert('MUG-2', 'Big mug', 1200) AS p2 \gset
UPDATE shop.product SET popularity = 0.5 WHERE product_id = :p1;
UPDATE shop.product SET popularity = 0.25 WHERE product_id = :p2;
SELECT shop.session_token(501) AS t501 \gset

-- reco_evaluate and experiment_report (shop_admin)
SET ROLE regress_hostile_admin;
SELECT shop.experiment_create('reco-1', '[{"name": "control", "share": 0.5}, {"name": "b", "share": 0.5}]')
       -> 'experiment' AS created;
SELECT a AS args, pg_temp.err(format('SELECT shop.reco_evaluate(%s)', a)) AS reco_evaluate
  FROM unnest(ARRAY['NULL, NULL', 'NULL, 10', '7, NULL', '0, 10', '7, 0', '7, 10']) a;
SELECT a AS args, pg_temp.err(format('SELECT * FROM shop.experiment_report(%s)', a)) AS experiment_report
  FROM unnest(ARRAY['''reco-1'', NULL', 'NULL, NULL', '''reco-1'', 0.5', '''reco-1'', 0.05']) a;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT * FROM shop.experiment_report('reco-1', NULL);
\set VERBOSITY terse
\set SHOW_CONTEXT errors

-- experiment_create: blank names (spaces, no-break and ideographic spaces;
-- a tab is a control character already) are refused; a name with spaces
-- around a word is not
SELECT a AS args, pg_temp.err(format('SELECT shop.experiment_create(%s)', a)) AS experiment_create
  FROM unnest(ARRAY[
    $$'reco-2', '[{"name": "control", "share": 0.5}, {"name": "  ", "share": 0.5}]'$$,
    $$'reco-3', '[{"name": "", "share": 0.5}, {"name": "b", "share": 0.5}]'$$,
    $$'reco-4', '[{"name": "control", "share": 0.5}, {"name": "\u00a0\u3000", "share": 0.5}]'$$,
    $$'   ', '[{"name": "control", "share": 0.5}, {"name": "b", "share": 0.5}]'$$,
    $$'reco-5', '[{"name": "control", "share": 0.5}, {"name": " plan b ", "share": 0.5}]'$$]) a;
SELECT e.name, array_agg(v.name ORDER BY v.variant) AS variants
  FROM shop.experiment e JOIN shop.experiment_variant v USING (experiment_id)
 GROUP BY e.name ORDER BY e.name;

-- synonym_add: the term and each synonym at most 200 characters as given
SELECT a AS args, pg_temp.err(format('SELECT shop.synonym_add(%s)', a)) AS synonym_add
  FROM unnest(ARRAY[
    $$'mug', ARRAY[repeat('-', 1000000) || 'cup']$$,
    $$'mug', ARRAY['cup', repeat(' ', 300) || 'beaker']$$,
    $$repeat('.', 1000000) || 'mug', ARRAY['cup']$$,
    $$'mug', ARRAY[repeat('a', 201)]$$,
    $$'mug', ARRAY[repeat('a', 200), 'cup']$$]) a;
SELECT term, cardinality(synonyms) AS n, max(length(s)) AS longest
  FROM shop.synonym, unnest(synonyms) s GROUP BY term, synonyms ORDER BY term;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT shop.synonym_add('mug', ARRAY[repeat('-', 1000000) || 'cup']);
\set VERBOSITY terse
\set SHOW_CONTEXT errors
RESET ROLE;

-- _recommend_popular and _view_record, the storefront's router steps
SET ROLE regress_hostile_front;
SELECT shop.session_begin(:'t501') AS customer;
SELECT a AS args, pg_temp.err(format('SELECT * FROM shop._recommend_popular(%s)', a)) AS recommend_popular
  FROM unnest(ARRAY['NULL, ''{}''', '-1, ''{}''', '0, ''{}''', '4001, ''{}''', '2000000000, ''{}''',
                    '5, NULL', '5, ''{1,NULL}''', '4000, ''{}''', '1, ''{}''']) a;
SELECT product_id = :p1 AS is_p1, popularity FROM shop._recommend_popular(5, '{}') ORDER BY popularity DESC;
SELECT product_id = :p2 AS is_p2 FROM shop._recommend_popular(5, ARRAY[:p1]::bigint[]);
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT * FROM shop._recommend_popular(2000000000, '{}');
\set VERBOSITY terse
\set SHOW_CONTEXT errors
-- the product's existence is its shard's signed word (shop._view_found,
-- ha10; until then a boolean the storefront could forge, and a view of
-- any product id was recorded for its customer): a made-up, missing,
-- another product's or an expired signature is refused (42501), an id
-- below 1 or without a proof SH006 whatever the caller brings
RESET ROLE;
SELECT shop._saga_sign(jsonb_build_array('viewable', :p1, 1000000000)::text) AS old_sig \gset
SET ROLE regress_hostile_front;
SELECT f.found_until AS fu, f.found_sig AS fs FROM shop._view_found(:p1) f \gset
SELECT f.found_until IS NULL AND f.found_sig IS NULL AS missing_not_found FROM shop._view_found(987654) f;
SELECT a.k AS args, pg_temp.err(format('SELECT shop._view_record(%s)', a.c)) AS view_record
  FROM (VALUES (1, '501, -5, signed', format('501, -5, %s, %L', :fu, :'fs')),
               (2, '501, 0, signed', format('501, 0, %s, %L', :fu, :'fs')),
               (3, '501, -5, no proof', '501, -5, NULL, NULL'),
               (4, '501, NULL, signed', format('501, NULL, %s, %L', :fu, :'fs')),
               (5, '501, p1, no proof', format('501, %s, NULL, NULL', :p1)),
               (6, '501, 987654, no signature', format('501, 987654, %s, NULL', :fu)),
               (7, '501, 987654, made up', format('501, 987654, %s, %L', :fu, repeat('ab', 32))),
               (8, '501, 987654, p1''s signature', format('501, 987654, %s, %L', :fu, :'fs')),
               (9, '501, p1, expired', format('501, %s, 1000000000, %L', :p1, :'old_sig')),
               (10, '501, p1, signed', format('501, %s, %s, %L', :p1, :fu, :'fs'))) a(n, k, c)
 ORDER BY a.n;
SELECT a AS args, pg_temp.err(format('SELECT shop.view(%s)', a)) AS view
  FROM unnest(ARRAY['501, -5', '501, 0']) a;
RESET ROLE;
SELECT product_id = :p1 AS is_p1 FROM shop.view_event WHERE customer_id = 501;
SELECT count(*) AS views_below_1 FROM shop.view_event WHERE product_id < 1;
SELECT count(*) AS views_of_missing FROM shop.view_event WHERE product_id = 987654;

RESET shop.session_secret;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_front;
DROP ROLE regress_hostile_admin;
