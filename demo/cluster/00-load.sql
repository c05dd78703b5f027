-- 00-load.sql (make cluster-demo): a small catalog through the router, as
-- the back office: categories and synonyms on every shard, each product
-- and its stock on the shard of its id. psql -v products=N.
SET client_min_messages = warning;
SELECT shop.category_add('Computers') AS comp \gset
SELECT shop.category_add('Audio') AS audio \gset
SELECT shop.category_add('Laptops', :comp) AS laptops \gset
SELECT shop.category_add('Mice', :comp) AS mice \gset
SELECT shop.category_add('Speakers', :audio) AS speakers \gset
SELECT shop.category_add('Headphones', :audio) AS headphones \gset
SELECT shop.synonym_add('notebook', ARRAY['laptop']) \g /dev/null
SELECT set_config('demo.cats', format('{%s,%s,%s,%s}', :laptops, :mice, :speakers, :headphones), false) \g /dev/null
SELECT set_config('demo.products', :'products', false) \g /dev/null
DO $$
DECLARE
    cats bigint[] := current_setting('demo.cats')::bigint[];
    nouns text[] := ARRAY['laptop', 'wireless mouse', 'bluetooth speaker', 'noise cancelling headphones'];
    brands text[][] := ARRAY[['Lenovo', 'HP', 'Dell', 'Asus'], ['Logitech', 'Microsoft', 'Razer', 'Cherry'],
                             ['Sony', 'JBL', 'Bose', 'Marshall'], ['Sony', 'Jabra', 'Bose', 'Sennheiser']];
    models text[] := ARRAY['Pro', 'Elite', 'Nova', 'Swift', 'Zen', 'Air'];
    colours text[] := ARRAY['black', 'silver', 'blue', 'red'];
    c int; b text; id bigint;
BEGIN
    FOR g IN 1..current_setting('demo.products')::int LOOP
        c := 1 + g % 4;
        b := brands[c][1 + (g / 4) % 4];
        id := shop.product_upsert(format('CD-%s', g),
                                  format('%s %s %s %s, %s', b, models[1 + g % 6], 100 + (g * 37) % 900,
                                         nouns[c], colours[1 + (g / 5) % 4]),
                                  (CASE c WHEN 1 THEN 49900 WHEN 2 THEN 1999 WHEN 3 THEN 7999 ELSE 14999 END)
                                      + (g * 7919) % 20000,
                                  description => format('A %s in %s.', nouns[c], colours[1 + (g / 5) % 4]),
                                  brand => b, category_id => cats[c],
                                  attributes => jsonb_build_object('colour', colours[1 + (g / 5) % 4]));
        PERFORM shop.stock_set(id, 5 + g % 20);
    END LOOP;
END
$$;
SELECT format('%s products loaded through the router', :'products') AS loaded;
