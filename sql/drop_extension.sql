-- drop_extension: what DROP EXTENSION shop does to user objects that use
-- shop's types and index access method (docs/search.md, "Dropping shop")
\i sql/include/prelude.sql

-- a table of the user's with a shop.search_doc column, and shop_search
-- indexes on the user's tables
CREATE TABLE regress_notes (id int PRIMARY KEY, title text, body text, doc shop.search_doc);
CREATE INDEX regress_notes_search ON regress_notes USING shop_search (shop.search_doc(title, NULL, body));
INSERT INTO regress_notes VALUES (1, 'chapeau', 'un chapeau de paille', shop.search_doc('chapeau', NULL, 'de paille'));

\set VERBOSITY default
-- without CASCADE, PostgreSQL refuses and names every dependent object
DROP EXTENSION shop;
-- with CASCADE it drops them: the column with its data, and the index.
-- The only trace is a NOTICE, which most drivers and tools never show.
DROP EXTENSION shop CASCADE;
\set VERBOSITY terse
SELECT attname FROM pg_attribute WHERE attrelid = 'regress_notes'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'regress_notes'::regclass ORDER BY 1;
SELECT * FROM regress_notes;
DROP TABLE regress_notes;
DROP EXTENSION pg_trgm;
