# Copyright (c) shop contributors; PostgreSQL licence.
#
# dump: pg_dump + pg_restore of a database using shop keeps every row of
# every table the extension registers with pg_extension_config_dump, every
# table of schema shop that holds data is registered, and the restored
# database still works (sequences continue, SKUs stay unique, aggregates
# move).  A database still holding a card number (docs/security.md) dumps,
# but its dump does not restore: the guard refuses the row, and the error
# pg_restore prints masks the number.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
SELECT shop.category_add('Root') AS r \gset
SELECT shop.category_add('Child', :r) AS c \gset
SELECT shop.product_upsert('D-' || g, 'Dump product ' || g, 100 * g, brand => 'B' || (g % 3),
                           category_id => :c, attributes => jsonb_build_object('n', g))
  FROM generate_series(1, 50) g;
SELECT shop.review_add(p.product_id, cust, 1 + (p.product_id + cust)::int % 5)
  FROM shop.product p, generate_series(1, 3) cust;
INSERT INTO shop.stock (product_id, on_hand) SELECT product_id, 10 FROM shop.product;
INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents)
VALUES (42, 'paid', 'USD', 100, 100);
INSERT INTO shop.order_line SELECT order_id, 1, 1, 'D-1', 'Dump product 1', 100, 1 FROM shop."order";
INSERT INTO shop.copurchase VALUES (1, 2, 1, 0.5);
INSERT INTO shop.view_event (customer_id, product_id) VALUES (42, 1);
INSERT INTO shop.event (topic, payload) VALUES ('test.dump', '{"ok": true}');
});

# A fingerprint of every user-data table registered for dumping: its name,
# row count and the md5 of its rows in a fixed order, one line a table.
sub fingerprint
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
SELECT string_agg(format('%s %s %s', t, n, h), E'\n' ORDER BY t)
  FROM (
    SELECT c.oid::regclass::text AS t,
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, true, '')))[1]::text AS n,
           (xpath('/row/h/text()', query_to_xml(format(
               'SELECT md5(coalesce(string_agg(x::text, '','' ORDER BY x::text), '''')) AS h FROM %s x',
               c.oid::regclass), false, true, '')))[1]::text AS h
      FROM pg_extension e, unnest(e.extconfig) cfg(oid)
      JOIN pg_class c ON c.oid = cfg.oid
     WHERE e.extname = 'shop' AND c.relkind = 'r') s});
}

my $before = fingerprint('src');
note "fingerprint of the source:\n$before";
like($before, qr/^shop\.product 50 /m, 'the fingerprint covers the products');

# every table in schema shop except derived ones must be registered
# (event_group neither: consumer groups are positions in this cluster's
# transaction history, docs/operations.md "Dump and restore"; nor
# sweep_state, when this cluster's sweeper last ran; nor the unlogged
# recommendation caches, recomputed on a miss)
is( $node->safe_psql(
		'src', q{
SELECT string_agg(c.relname, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'shop' AND c.relkind = 'r' AND c.relname NOT IN ('product_sku', 'event_group', 'sweep_state',
                                                                         'recommend_cache', 'also_bought_cache')
   AND c.oid <> ALL ((SELECT extconfig FROM pg_extension WHERE extname = 'shop')::oid[])}),
	'',
	'every table of schema shop is registered with pg_extension_config_dump');

my $dump = $node->basedir . '/src.dump';
$node->command_ok(
	[ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', $dump ],
	'pg_dump of the source database');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst'), $dump ],
	'pg_restore into a new database');
is(fingerprint('dst'), $before, 'the restored tables hold the same rows');

# the restored database works: sequences continue past the restored ids,
# SKUs are still unique, aggregates still move
cmp_ok($node->safe_psql('dst', q{SELECT shop.product_upsert('D-NEW', 'After restore', 5)}),
	'>', 50, 'a new product gets an id past the restored ones');
is($node->safe_psql('dst', q{SELECT shop.product_upsert('D-7', 'Dump product 7 renamed', 700)}),
	'7', 'an upsert finds a restored product by its SKU');
is($node->safe_psql('dst', 'SELECT count(*) FROM shop.product_sku'),
	'51', 'product_sku has a row for every product');
$node->safe_psql('dst', 'SELECT shop.review_add(7, 99, 5)');
is($node->safe_psql('dst', 'SELECT rating_count FROM shop.product WHERE product_id = 7'),
	'4', 'rating aggregates move after the restore');

# Card numbers (docs/security.md): a database that still holds one (as a
# 1.0 database may: here written past the guard by a superuser) dumps, but
# its dump does not restore into shop 1.1: the guard refuses the row with
# SH005, and neither the error nor anything restored repeats the number
my $card = '4111 1111 1111 1111';
$node->safe_psql(
	'src', qq{
ALTER TABLE shop.product DISABLE TRIGGER zz_card_guard;
UPDATE shop.product SET description = 'paid with $card' WHERE product_id = 3;
ALTER TABLE shop.product ENABLE ALWAYS TRIGGER zz_card_guard;
});
is($node->safe_psql('src', 'SELECT table_name, column_name, rows FROM shop.card_number_scan()'),
	'shop.product|description|1', 'card_number_scan finds the card number in the source');
my $card_dump = $node->basedir . '/src_card.dump';
$node->command_ok(
	[ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', $card_dump ],
	'pg_dump of a database holding a card number');
$node->safe_psql('postgres', 'CREATE DATABASE dst_card');
my ($stdout, $stderr) = ('', '');
my $restored = IPC::Run::run(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst_card'), $card_dump ],
	'>', \$stdout, '2>', \$stderr);
note "pg_restore: $stderr";
ok(!$restored, 'pg_restore of a dump holding a card number fails');
like($stderr, qr/card number refused/, 'the guard refuses the row (SH005)');
unlike($stderr, qr/4111/, "pg_restore's error does not repeat the card number")
  or diag $stderr;
is($node->safe_psql('dst_card', 'SELECT count(*) FROM shop.card_number_scan()'),
	'0', 'no card number was restored');

done_testing();
