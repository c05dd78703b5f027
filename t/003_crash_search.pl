# Copyright (c) shop contributors; PostgreSQL licence.
#
# crash_search: the shop_search index survives kill -9.
#
# A built segment (CREATE INDEX: log_newpage_range), pending-list inserts
# (generic WAL), updates, deletes, VACUUMs that fold the pending list into
# new segments (log_newpage_buffer + generic WAL on the metapage), merge
# segments and reuse released blocks, then more writes, all after the last
# checkpoint; the server is stopped with -m immediate and restarted, so
# every page comes back from WAL replay (with wal_consistency_checking on,
# replay also compares each replayed page with the primary's image).
# Afterwards shop.search_verify must report nothing and every committed
# product must be found by a search for its own unique word.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
# wal_level replica, as a production server: an index built in the
# transaction that created its file is WAL-logged, not just synced
$node->append_conf(
	'postgresql.conf', q{
wal_level = replica
wal_consistency_checking = 'all'
max_wal_size = 1GB
checkpoint_timeout = 1h
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE crash');
$node->safe_psql(
	'crash', q{
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (sku, title, brand, description, price_cents)
SELECT 'zq' || g, 'Widget zq' || g || ' model', 'Brand' || (g % 7), 'A widget for testing', 100 + g
  FROM generate_series(1, 2000) g;
REINDEX INDEX shop.product_search_idx;
CHECKPOINT;
-- everything below lives only in WAL
INSERT INTO shop.product (sku, title, brand, description, price_cents)
SELECT 'zq' || g, 'Gadget zq' || g, 'Brand' || (g % 7), 'Inserted after the checkpoint', 100 + g
  FROM generate_series(2001, 2600) g;
UPDATE shop.product SET price_cents = price_cents + 1, title = title || ' renamed'
 WHERE sku IN (SELECT 'zq' || g FROM generate_series(1, 2600, 13) g);
DELETE FROM shop.product WHERE sku IN (SELECT 'zq' || g FROM generate_series(5, 2600, 97) g);
VACUUM shop.product;
-- folds and merges that release and reuse blocks
SELECT format('UPDATE shop.product SET popularity = popularity + 1 WHERE sku LIKE %L', 'zq' || i || '%'),
       'VACUUM shop.product'
  FROM generate_series(1, 12) i \gexec
INSERT INTO shop.product (sku, title, brand, price_cents)
SELECT 'zq' || g, 'Late zq' || g, 'Brand1', 5 FROM generate_series(2601, 2700) g;
UPDATE shop.product SET popularity = 3 WHERE sku IN ('zq2650', 'zq10', 'zq2100');
DELETE FROM shop.product WHERE sku = 'zq2602';
-- an uncommitted insert must not come back (psql ends, the server rolls back)
BEGIN;
INSERT INTO shop.product (sku, title, price_cents) VALUES ('zqghost', 'Ghost zqghost', 1);
});
my $before = $node->safe_psql('crash', 'SELECT count(*) FROM shop.product');
is($before, '2672', 'products as planned before the crash');

# a transaction left open while the server dies
my ($open_out, $open_err) = ('', '');
my $open = IPC::Run::start(
	[
		'psql', '-X', '-q', '-d', $node->connstr('crash'), '-c',
		"BEGIN; INSERT INTO shop.product (sku, title, price_cents) VALUES ('zqopen', 'Open zqopen', 1); SELECT pg_sleep(30);"
	],
	'>', \$open_out, '2>', \$open_err);
$node->poll_query_until('crash',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
  or die 'the open transaction did not start';
$node->stop('immediate');
$open->finish;
$node->start;

my @checks = (
	[ 'products after recovery', 'SELECT count(*) FROM shop.product', $before ],
	[
		'search_verify finds nothing',
		"SELECT count(*) FROM shop.search_verify('shop.product_search_idx')",
		'0'
	],
	[
		'every product found by its own word', q{
SELECT count(*) FROM shop.product p WHERE NOT EXISTS (
  SELECT 1 FROM shop.search_scan('shop.product_search_idx', jsonb_build_object('q', p.sku), 5) s
   WHERE s.ctid = p.ctid)}, '0'
	],
	[
		# "zq5" is read as "zq 5" joined (sstoken.c): rows holding both
		# runs ("Brand5" and a "zq..." title) match; a row that does not,
		# or the deleted zq5 itself, would come from a stale entry
		'deleted products stay gone',
		"SELECT count(*) FROM shop.search('zq5 ', lim => 200) s JOIN shop.product p USING (product_id)
		  WHERE p.sku = 'zq5' OR p.title ~ '\\mzq5\\M'
		     OR NOT (p.title ~ '\\mzq[0-9]' AND (p.title || ' ' || p.brand) ~ '([a-z]|\\m)5\\M')",
		'0'
	],
	[
		'renamed products found by their new title',
		"SELECT count(*) FROM shop.search('zq14 renamed') WHERE missing_words = 0",
		'1'
	],
	[
		# the 99 "Late" products all cost 5: the page is ordered by the
		# tie-break the document records keep (product_id, format 8), and
		# the index hands out exactly the 20 rows of the page
		'sorted page with ties equals ORDER BY', q{
SELECT (SELECT array_agg(product_id) FROM shop.search('late', sort => 'price_asc', lim => 20))
     = (SELECT array_agg(product_id) FROM (SELECT product_id FROM shop.product
                                            WHERE title LIKE 'Late %' AND status = 'active'
                                            ORDER BY price_cents, product_id LIMIT 20) x),
       (SELECT count(*) FROM shop._search_sorted('shop.product_search_idx', '"late"', 'price_asc', 20))},
		"t|20"
	],
	[
		'uncommitted rows not found',
		"SELECT count(*) FROM shop.search('zqghost') UNION ALL SELECT count(*) FROM shop.search('zqopen')",
		"0\n0"
	]);
foreach my $check (@checks)
{
	my ($name, $sql, $expected) = @$check;
	is($node->safe_psql('crash', $sql), $expected, $name);
}

# the index keeps working: more writes, VACUUM, verify again
$node->safe_psql('crash',
	"INSERT INTO shop.product (sku, title, price_cents) VALUES ('zqafter', 'After zqafter', 1)"
);
$node->safe_psql('crash', 'VACUUM shop.product');
is($node->safe_psql('crash', "SELECT count(*) FROM shop.search('zqafter')"),
	'1', 'index usable after recovery');
is( $node->safe_psql(
		'crash',
		"SELECT count(*) FROM shop.search_verify('shop.product_search_idx')"),
	'0',
	'search_verify after more writes');

done_testing();
