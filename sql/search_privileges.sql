-- search_privileges: the functions that read a shop_search index directly
-- (shop.search_scan, shop.search_verify, shop.search_index_info and the
-- internal shop._search_suggest_word and shop._search_facet_counts) name
-- a missing relation with 42P01, and serve only callers who may read the
-- indexed table, without row level security hiding rows from them (42501);
-- the storefront's entry points keep working on the catalog.
\i sql/include/prelude.sql

-- no such relation (an OID nothing has), a table, a btree index
SELECT pg_temp.err($$SELECT * FROM shop.search_scan(0, '"x"')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_verify(0)$$);
SELECT pg_temp.err($$SELECT shop.search_index_info(0)$$);
SELECT pg_temp.err($$SELECT shop._search_suggest_word(0, 'x')$$);
SELECT pg_temp.err($$SELECT * FROM shop._search_facet_counts(0, '"x"')$$);
SELECT pg_temp.err($$SELECT shop.search_index_info(4294967295)$$);
SELECT pg_temp.err($$SELECT shop.search_index_info('shop.product')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_verify('shop.product_pkey')$$);

-- a user table with a shop_search index, and roles that may not read it
CREATE TABLE secret_note (id int PRIMARY KEY, title text);
INSERT INTO secret_note VALUES (1, 'confidential merger plans'), (2, 'quarterly layoffs list');
CREATE INDEX secret_note_idx ON secret_note USING shop_search (shop.search_doc(title));
VACUUM secret_note;
DROP ROLE IF EXISTS regress_search_snoop;
CREATE ROLE regress_search_snoop;
GRANT USAGE ON SCHEMA shop TO regress_search_snoop;

-- the internal helpers are not executable by PUBLIC
SET ROLE regress_search_snoop;
SELECT pg_temp.err($$SELECT shop._search_suggest_word('secret_note_idx', 'mergr')$$);
SELECT pg_temp.err($$SELECT * FROM shop._search_facet_counts('secret_note_idx', '"merger"')$$);
RESET ROLE;

-- and even with EXECUTE, every one checks SELECT on the table
GRANT EXECUTE ON FUNCTION shop._search_suggest_word(regclass, text),
    shop._search_facet_counts(regclass, jsonb) TO regress_search_snoop;
SET ROLE regress_search_snoop;
SELECT pg_temp.err($$SELECT shop._search_suggest_word('secret_note_idx', 'mergr')$$);
SELECT pg_temp.err($$SELECT * FROM shop._search_facet_counts('secret_note_idx', '"merger"')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_scan('secret_note_idx', '"merger"')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_verify('secret_note_idx')$$);
SELECT pg_temp.err($$SELECT shop.search_index_info('secret_note_idx')$$);
RESET ROLE;

-- with SELECT they answer
GRANT SELECT ON secret_note TO regress_search_snoop;
SET ROLE regress_search_snoop;
SELECT shop._search_suggest_word('secret_note_idx', 'mergr');
SELECT kind, n FROM shop._search_facet_counts('secret_note_idx', '"merger"');
SELECT n.title FROM shop.search_scan('secret_note_idx', '"merger"') s JOIN secret_note n ON n.ctid = s.ctid;
SELECT count(*) FROM shop.search_verify('secret_note_idx');
SELECT shop.search_index_info('secret_note_idx') -> 'documents' AS documents;
RESET ROLE;

-- row level security that hides rows from the caller: the operators
-- apply the policy, the index-level functions refuse
ALTER TABLE secret_note ENABLE ROW LEVEL SECURITY;
CREATE POLICY secret_note_one ON secret_note FOR SELECT TO regress_search_snoop USING (id = 1);
SET ROLE regress_search_snoop;
SELECT title FROM secret_note WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"layoffs"';
SELECT title FROM secret_note WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"merger"';
SELECT pg_temp.err($$SELECT shop._search_suggest_word('secret_note_idx', 'layofs')$$);
SELECT pg_temp.err($$SELECT * FROM shop._search_facet_counts('secret_note_idx', '"layoffs"')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_scan('secret_note_idx', '"layoffs"')$$);
SELECT pg_temp.err($$SELECT * FROM shop.search_verify('secret_note_idx')$$);
SELECT pg_temp.err($$SELECT shop.search_index_info('secret_note_idx')$$);
RESET ROLE;
-- the owner is not subject to the policy
SELECT shop._search_suggest_word('secret_note_idx', 'layofs');

-- the storefront searches the catalog through the public entry points
-- (its grants on shop.synonym and shop.search_log are issue 10's roles
-- work; granted here so that this test stands on its own)
GRANT SELECT ON shop.synonym TO shop_storefront;
GRANT SELECT, INSERT ON shop.search_log TO shop_storefront;
INSERT INTO shop.product (sku, title, brand, description, price_cents, status)
VALUES ('SP1', 'Bluetooth speaker', 'Sonos', 'A loud speaker', 9900, 'active'),
       ('SP2', 'Speaker stand', 'Generic', 'Holds a speaker', 1900, 'active');
VACUUM shop.product;
SET ROLE shop_storefront;
SELECT title, typos FROM shop.search('speakr') ORDER BY title;
SELECT shop.search_facets('speaker') -> 'total' AS total;
SELECT suggestion, kind FROM shop.autocomplete('spea') ORDER BY suggestion, kind;
SELECT shop.did_you_mean('bluetoth speakr');
SELECT count(*) FROM shop.search_scan('shop.product_search_idx', '"speaker"');
SELECT shop.search_index_info('shop.product_search_idx') -> 'documents' AS documents;
RESET ROLE;

DROP TABLE secret_note;
DROP OWNED BY regress_search_snoop;
DROP ROLE regress_search_snoop;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
