-- hostile_vocab_pairs: shop._search_vocab_replace (shop_admin; the
-- router's write of the learned vocabulary to every shard, and the last
-- step of shop.refresh_search_vocab) checked only that its argument is an
-- array of 4-element arrays.  A NULL term, an unknown source, a count that
-- is no integer or out of range failed with 23502, 23514, 22P02, 22003
-- (not 22023 "malformed vocabulary", as docs/errors.md says), and an
-- object, an empty term or an escape sequence went into shop.search_vocab
-- and into every search whose words held the term.  Now every pair is
-- checked first: 22023, naming the pair, and the rows stay as they were.
\i sql/include/prelude.sql

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_hostile_admin;
RESET client_min_messages;
CREATE ROLE regress_hostile_admin LOGIN IN ROLE shop_admin;
CREATE TEMP TABLE pairs (n int, what text, pair jsonb);
INSERT INTO pairs VALUES
    (1, 'good', '["ssd", "solid state drive", "abbreviation", 9]'),
    (2, 'a NULL term', '[null, "solid state drive", "abbreviation", 9]'),
    (3, 'an unknown source', '["ssd", "solid state drive", "guess", 9]'),
    (4, 'a count in letters', '["ssd", "solid state drive", "abbreviation", "x"]'),
    (5, 'a count of 1e30', '["ssd", "solid state drive", "abbreviation", 1e30]'),
    (6, 'a count of 1.5', '["ssd", "solid state drive", "abbreviation", 1.5]'),
    (7, 'a count of 0', '["ssd", "solid state drive", "abbreviation", 0]'),
    (8, 'term = expansion', '["ssd", "ssd", "abbreviation", 9]'),
    (9, 'an object as term', '[{"x": 1}, "solid state drive", "abbreviation", 9]'),
    (10, 'an empty term', '["", "solid state drive", "abbreviation", 9]'),
    (11, 'an escape sequence', '["mug", "\u001b[2Jsink", "behaviour", 3]'),
    (12, '1001 bytes', jsonb_build_array(repeat('a', 1001), 'drive', 'behaviour', 3)),
    (13, '1000 bytes', jsonb_build_array(repeat('a', 1000), 'drive', 'behaviour', 3));
GRANT SELECT ON pairs TO PUBLIC;

SET ROLE regress_hostile_admin;
SELECT shop._search_vocab_replace('[["hdd", "hard disk drive", "abbreviation", 7]]') AS kept;
-- each pair after a good one
SELECT n, what, pg_temp.err(format('SELECT shop._search_vocab_replace(%L)',
                                   jsonb_build_array('["ups", "uninterruptible power supply", "abbreviation", 5]'::jsonb, pair))) AS replaced
  FROM pairs ORDER BY n;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT shop._search_vocab_replace('[["a", "b", "abbreviation", 1], ["mug", "\u001b[2Jsink", "behaviour", 3]]');
\set VERBOSITY terse
RESET ROLE;
-- the rows of the last good call (the 1000-byte term and the one before it)
SELECT left(term, 10) AS term, length(term) AS len, expansion, source, products FROM shop.search_vocab ORDER BY term;

DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
DROP ROLE regress_hostile_admin;
