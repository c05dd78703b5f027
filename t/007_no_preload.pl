# Copyright (c) shop contributors; PostgreSQL licence.
#
# no_preload: shop works without shared_preload_libraries
# (docs/operations.md, "Production setting: preload shop"): in a session
# that has not loaded shop's library yet, each public function that reads a
# shop.* setting works as the session's first call of shop (issue 14: the
# PL/pgSQL and SQL functions read the settings with current_setting, which
# failed with "unrecognized configuration parameter" until some C function
# of shop had defined them).  Every probe below is a new session whose only
# statement is the call, run as the role the docs name for it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
# initdb's defaults: shop is not preloaded, no shop.* line in the file
$node->start;
is($node->safe_psql('postgres', q{SHOW shared_preload_libraries}), '', 'shop is not preloaded');

$node->safe_psql(
	'postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
SELECT shop.category_add('Root') AS r \gset
SELECT shop.product_upsert('P-' || g, 'Cable number ' || g, 100 * g, brand => 'B' || (g % 3),
                           category_id => :r) FROM generate_series(1, 20) g;
SELECT shop.stock_set(product_id, 100) FROM shop.product;
INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents)
SELECT 40 + g % 4, 'paid', 'USD', 0, 0 FROM generate_series(1, 12) g;
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT o.order_id, n, p, 'sku', 'title', 0, 1
  FROM (SELECT order_id, row_number() OVER (ORDER BY order_id) AS k FROM shop."order") o,
       unnest(ARRAY[1 + o.k % 5, 6 + o.k % 3, 9]) WITH ORDINALITY u(p, n);
INSERT INTO shop.view_event (customer_id, product_id) VALUES (41, 2), (41, 3), (99, 4);
SELECT shop.refresh_recommendations();
SELECT shop.search('cable', '{}', 'relevance', 5);
});
my $cart = $node->safe_psql('postgres', q{
SELECT c FROM shop.cart_create(7) c, LATERAL shop.cart_add(c, 1, 2)});

# each probe: [ role, call ]; the first call of shop in a new session
my @probes = (
	[ 'shop_admin', q{SELECT count(*) >= 0 FROM shop.recommend(41, 5)} ],
	[ 'shop_admin', q{SELECT count(*) >= 0 FROM shop.recommend(99, 5)} ],
	[ 'shop_storefront', q{SELECT count(*) >= 0 FROM shop.also_bought(1, 5)} ],
	[ 'shop_storefront', q{SELECT count(*) >= 0 FROM shop.search('cable', '{}', 'relevance', 5)} ],
	[ 'shop_storefront', q{SELECT (shop.product_get(1))->>'currency' IS NOT NULL} ],
	[ 'postgres', qq{SELECT shop.checkout('$cart', 'tok_visa', 'np-1', '{"name": "Ada", "country": "US", "city": "Boston"}') IS NOT NULL} ],
	[ 'shop_admin', q{SELECT count(*) >= 0 FROM shop.search_prior_for('cable')} ],
	[ 'shop_admin', q{SELECT shop.refresh_search_prior() IS NOT NULL} ],
	[ 'shop_admin', q{SELECT shop.refresh_recommendations() IS NOT NULL} ],
	[ 'shop_admin', q{SELECT shop.rebuild_recommendations() IS NOT NULL} ],);

for my $p (@probes)
{
	my ($role, $sql) = @$p;
	my ($ret, $out, $err) = $node->psql('postgres', "SET ROLE $role;\n$sql", on_error_stop => 1);
	is("$ret $out $err", '0 t ', "first call of a session as $role: $sql");
}

# the value read is the session's setting, not a default written in SQL
is( $node->safe_psql(
		'postgres', q{
SET shop.currency = 'EUR';
SET ROLE shop_storefront;
SELECT (shop.product_get(1))->>'currency'}),
	'EUR',
	'shop.currency set before the first call is the one product_get reads');

$node->stop;
done_testing();
