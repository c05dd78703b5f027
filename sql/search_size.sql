-- search_size: the index stays small on a catalog whose titles each carry
-- a model number written with a hyphen ("AB-1234"), as most real catalogs
-- do.  Format 5 indexed the join of every such pair ("ab1234") beside its
-- words, with a dictionary item, a skip entry and trigrams each: the bench
-- index grew from 1.55x to 2.64x a GIN index of the same text
-- (bench/results/2026-12-06-search-index-size.md).  Format 6 keeps the
-- words and reads a query's "ab1234" as "ab 1234" joined.
\i sql/include/prelude.sql
CREATE TABLE public.size_doc (id int PRIMARY KEY, title text, body text);
INSERT INTO public.size_doc
SELECT g, 'Acme ' || chr(65 + g % 26) || chr(65 + (g / 26) % 26) || '-' || (1000 + g) || ' toner cartridge black',
       'A toner cartridge for office printers'
  FROM generate_series(1, 5000) g;
CREATE INDEX size_doc_ss ON public.size_doc USING shop_search (shop.search_doc(title, NULL, body));
CREATE INDEX size_doc_gin ON public.size_doc USING gin (to_tsvector('english', title || ' ' || body));
SELECT (shop.search_index_info('size_doc_ss') ->> 'blocks')::int AS blocks \gset
SELECT pg_relation_size('size_doc_gin') / 8192 AS gin_blocks \gset
-- this small fixture: 98 blocks against GIN's 50 in format 6, 151 in
-- format 5 (the bench's 100,000 products: 1.75x, and 2.64x in format 5);
-- the line sits between the two
SELECT :blocks <= 2.5 * :gin_blocks AS under_2_5x_gin;
-- and every way of writing the model number still finds it
SELECT q, (SELECT count(*) FROM shop.search_scan('size_doc_ss', jsonb_build_object('q', q), 10) s
             WHERE s.missing = 0 AND s.typos = 0) AS found
  FROM unnest(ARRAY['ab-1026', 'ab1026', 'ab 1026', 'AB1026 toner']) q;
DROP TABLE public.size_doc;
DROP EXTENSION shop;
DROP EXTENSION pg_trgm;
