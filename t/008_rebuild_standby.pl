# Copyright (c) shop contributors; PostgreSQL licence.
#
# rebuild_standby: the tables shop.rebuild_recommendations() fills in bulk
# (src/recorebuild.c) on a streaming standby and after a crash.
#
# The rebuild writes those tables' heap pages itself, WAL-logged whole, not
# through shared buffers (reb6, docs/recommendations.md "Performance"): a
# standby sees them only through that WAL, and so does a primary crashed
# right after the rebuild committed (replayed from the last checkpoint
# before it).  A primary and a standby made from its base backup; a history
# of orders and views; a rebuild on the primary.  On the standby and on the
# primary after an immediate stop, every rebuilt table equals the primary's
# (as text in key order), its indexes find every row (an index-only count
# and a lookup by key through the index equal the heap's), and a
# customer's recommendations are the primary's.  Last, with wal_level =
# logical the rebuild writes through heap_multi_insert (logical decoding
# reads its records): the same tables again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(
	allows_streaming => 1,
	extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$primary->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'shop'
shop.sweep_interval = 3600
shared_buffers = 32MB
max_connections = 20
autovacuum = off
log_statement = none
# (allows_streaming turns it on: reading the new rows would then log every
# heap page again when it sets their hint bits, whatever the rebuild logged)
wal_log_hints = off
});
$primary->start;

$primary->safe_psql('postgres', 'CREATE DATABASE rb');
$primary->safe_psql(
	'rb', q{
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT i, 'P' || i, 'Product ' || i, 100 FROM generate_series(1, 3000) i;
-- 20,000 orders of 1-6 lines, 900 customers and guests, some cancelled
INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents, created_at)
SELECT CASE WHEN i % 17 = 0 THEN NULL ELSE 1 + (i * 7) % 900 END,
       CASE WHEN i % 13 = 0 THEN 'cancelled' ELSE 'paid' END, 'USD', 0, 0,
       timestamptz '2026-11-01' + i * interval '3 minutes'
  FROM generate_series(1, 20000) i;
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT o.order_id, j, 1 + (o.n * 31 + j * (7 + o.n % 5) * 13) % 3000, 'sku', 'title', 0, 1
  FROM (SELECT order_id, row_number() OVER (ORDER BY created_at) AS n FROM shop."order") o,
       generate_series(1, 1 + (o.n % 6)::int) j;
INSERT INTO shop.view_event (customer_id, product_id, viewed_at)
SELECT 1 + i % 900, 1 + (i * 13) % 3000, timestamptz '2026-11-02' + i * interval '53 seconds'
  FROM generate_series(1, 8000) i;
CHECKPOINT;
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', "hot_standby = on\n");
$standby->start;

# every rebuilt table as text in key order; then, through each index
# alone (no heap scans), its row count and the rows of a few keys
my $tables = q{
SET extra_float_digits = 3;
SELECT 'copurchase_order', count(*), md5(string_agg(format('%s %s %s', order_id, customer_id, weight), ',' ORDER BY order_id)) FROM shop.copurchase_order
UNION ALL SELECT 'copurchase_item', count(*), md5(string_agg(format('%s %s %s', product_id, baskets, slots), ',' ORDER BY product_id)) FROM shop.copurchase_item
UNION ALL SELECT 'copurchase_pair', count(*), md5(string_agg(format('%s %s %s', product_id, other_ids, counts), ',' ORDER BY product_id)) FROM shop.copurchase_pair
UNION ALL SELECT 'copurchase', count(*), md5(string_agg(format('%s %s %s %s', product_id, other_id, pair_count, score), ',' ORDER BY product_id, other_id)) FROM shop.copurchase
UNION ALL SELECT 'customer_item', count(*), md5(string_agg(format('%s %s %s %s', customer_id, product_id, weight, h), ',' ORDER BY customer_id, product_id)) FROM shop.customer_item
UNION ALL SELECT 'customer_neighbour', count(*), md5(string_agg(format('%s %s %s', customer_id, neighbour_id, score), ',' ORDER BY customer_id, neighbour_id)) FROM shop.customer_neighbour
ORDER BY 1;
};
my $by_index = q{
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT (SELECT count(*) FROM shop.customer_neighbour WHERE customer_id > 0),
       (SELECT count(*) FROM shop.customer_item WHERE customer_id > 0),
       (SELECT count(*) FROM shop.customer_item WHERE product_id > 0),
       (SELECT count(*) FROM shop.copurchase WHERE product_id > 0),
       (SELECT count(*) FROM shop.copurchase_pair WHERE product_id > 0),
       (SELECT count(*) FROM shop.copurchase_order WHERE customer_id > 0),
       (SELECT string_agg(format('%s:%s', neighbour_id, score), ',' ORDER BY neighbour_id)
          FROM shop.customer_neighbour WHERE customer_id = 77),
       (SELECT string_agg(format('%s:%s', customer_id, weight), ',' ORDER BY customer_id)
          FROM shop.customer_item WHERE product_id = 1000),
       (SELECT string_agg(format('%s:%s', other_id, score), ',' ORDER BY other_id)
          FROM shop.copurchase WHERE product_id = 1000);
};
my $reco = q{
SELECT string_agg(product_id::text, ',' ORDER BY product_id) FROM shop.recommend(77, 10);
};

# every popularity value written first (a rebuild writes one batch of the
# queue): the rebuilds below change no product's popularity
$primary->safe_psql('rb', 'SELECT shop.rebuild_recommendations()');
$primary->safe_psql('rb', 'CALL shop.popularity_sync()');
$primary->safe_psql('rb', 'CHECKPOINT');
# the standby reads the rebuilt tables before anyone reads them on the
# primary (a read there may log pages again: hint bits, pruning)
my $summary = $primary->safe_psql('rb',
	q{SELECT shop.rebuild_recommendations() ->> 'customer_neighbours'});
cmp_ok($summary, '>', 10000, 'the rebuild wrote the customers-like-you lists');
$primary->wait_for_catchup($standby, 'replay');
my $got = $standby->safe_psql('rb', $tables);
my $got_idx = $standby->safe_psql('rb', $by_index);
my $got_reco = $standby->safe_psql('rb', $reco);
my $want = $primary->safe_psql('rb', $tables);
my $want_idx = $primary->safe_psql('rb', $by_index);
my $want_reco = $primary->safe_psql('rb', $reco);
like($want, qr/customer_neighbour\|\d{5,}\|/, 'the primary has the lists');
is($got, $want, 'standby: every rebuilt table equals the primary\'s');
is($got_idx, $want_idx, 'standby: the indexes find the rows the primary\'s find');
is($got_reco, $want_reco, 'standby: a customer\'s recommendations are the primary\'s');

# a second rebuild (the tables truncated and written again), then a crash
# right after it committed: recovery replays it from the checkpoint before
$primary->safe_psql('rb', 'CHECKPOINT');
$primary->safe_psql('rb', 'SELECT shop.rebuild_recommendations()');
$primary->stop('immediate');
$primary->start;
is($primary->safe_psql('rb', $tables), $want, 'after a crash: every rebuilt table as written');
is($primary->safe_psql('rb', $by_index), $want_idx, 'after a crash: the indexes find every row');
is($primary->safe_psql('rb', $reco), $want_reco, 'after a crash: the same recommendations');
$primary->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('rb', $tables), $want, 'standby after the second rebuild: the same tables');

# wal_level = logical: heap_multi_insert's path, the same tables
$primary->append_conf('postgresql.conf', "wal_level = logical\n");
$primary->restart;
$primary->safe_psql('rb', 'SELECT shop.rebuild_recommendations()');
is($primary->safe_psql('rb', $tables), $want, 'wal_level logical: the same tables');
is($primary->safe_psql('rb', $by_index), $want_idx, 'wal_level logical: the indexes find every row');
$primary->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('rb', $tables), $want, 'wal_level logical: the standby has them');

$standby->stop;
$primary->stop;
done_testing();
