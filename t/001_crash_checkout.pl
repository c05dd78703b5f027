# Copyright (c) shop contributors; PostgreSQL licence.
#
# crash_checkout: the server is killed (stop -m immediate) in the middle of
# a pgbench checkout load and restarted; recovery must leave every order
# whole and the stock exact:
#   - every order has its lines, exactly one payment, and its events
#     (event_count of them, numbered 1..n, the first "pending");
#   - for every stock row, reserved = the sum of its live (held) holds,
#     and 0 <= reserved <= on_hand;
#   - units that left the building = units of committed holds;
#   - the status of each order matches its holds (paid: held, shipped:
#     committed, cancelled: none held);
#   - every idempotency key points at its order;
#   - checkout still works after recovery.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'shop'
shop.sweep_interval = 3600
max_connections = 50
wal_level = replica
log_statement = none
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE crash');
$node->safe_psql(
	'crash', q{
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
SELECT count(shop.product_upsert('CR-' || g, 'Crash product ' || g, 100 + g)) FROM generate_series(1, 300) g;
SELECT count(shop.stock_set(product_id, 100000)) FROM shop.product;
-- one hot product spread over buckets
SELECT shop.stock_set_buckets(1, 4);
-- one pgbench transaction: a 3-line cart checked out; some orders are then
-- cancelled or shipped in the same transaction, some wait for a gateway
CREATE FUNCTION public.crash_checkout(c bigint, p1 bigint, p2 bigint, p3 bigint, r int)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cart uuid := shop.cart_create(c);
    o uuid;
BEGIN
    PERFORM shop.cart_add(cart, p1), shop.cart_add(cart, p2, 2), shop.cart_add(cart, p3);
    o := shop.checkout(cart, CASE WHEN r <= 2 THEN 'stripe:pm_' || c ELSE 'tok_visa' END,
                       'key-' || cart, '{"country": "US"}');
    IF r = 1 THEN
        PERFORM shop.payment_confirm(o, 'ch_' || c);
    ELSIF r = 3 THEN
        PERFORM shop.order_transition(o, 'cancelled');
    ELSIF r = 4 THEN
        PERFORM shop.order_transition(o, 'fulfilling');
        PERFORM shop.order_ship(o, 'UPS', '1Z' || c);
    END IF;
END
$$;
});
my $total_before =
  $node->safe_psql('crash', 'SELECT sum(on_hand) FROM shop.stock');

my $script = $node->basedir . '/checkout.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{\set c random(1, 1000000)
\set p1 random(1, 300)
\set p2 random(1, 300)
\set p3 random(1, 300)
\set r random(1, 10)
SELECT public.crash_checkout(:c, :p1, :p2, :p3, :r);
});

# the load, then the kill under it
my ($bench_out, $bench_err) = ('', '');
my $bench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '8', '-j', '4', '-T', '60', '-f', $script,
		'-h', $node->host, '-p', $node->port, 'crash'
	],
	'>', \$bench_out, '2>', \$bench_err);
sleep 6;
my $before = $node->safe_psql('crash', 'SELECT count(*) FROM shop."order"');
note "orders committed before the crash (at least): $before";
$node->stop('immediate');
$bench->finish;
note "pgbench: $bench_err";
$node->start;

my $orders = $node->safe_psql('crash', 'SELECT count(*) FROM shop."order"');
note "orders after recovery: $orders";
cmp_ok($before, '>', 0, 'the load committed orders before the crash');
cmp_ok($orders, '>=', $before, 'no committed order lost');

# each check counts the violations of one invariant
my @checks = (
	[
		'orders without lines', q{
SELECT count(*) FROM shop."order" o
 WHERE NOT EXISTS (SELECT 1 FROM shop.order_line l WHERE l.order_id = o.order_id)}
	],
	[
		'orders without exactly one payment', q{
SELECT count(*) FROM shop."order" o
 WHERE (SELECT count(*) FROM shop.payment p WHERE p.order_id = o.order_id) <> 1}
	],
	[
		'orders whose events do not match', q{
SELECT count(*) FROM shop."order" o
 WHERE o.event_count < 2 AND o.status <> 'pending'
    OR (SELECT count(*) FROM shop.order_event e WHERE e.order_id = o.order_id) <> o.event_count
    OR (SELECT max(seq) FROM shop.order_event e WHERE e.order_id = o.order_id) <> o.event_count
    OR (SELECT to_status FROM shop.order_event e WHERE e.order_id = o.order_id AND seq = 1) <> 'pending'
    OR (SELECT to_status FROM shop.order_event e WHERE e.order_id = o.order_id
         ORDER BY seq DESC LIMIT 1) <> o.status}
	],
	[
		'order lines without a hold', q{
SELECT count(*) FROM shop.order_line l
 WHERE l.reservation_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM shop.reservation r
                    WHERE r.product_id = l.product_id AND r.reservation_id = l.reservation_id)}
	],
	[
		'stock rows where reserved <> sum of held holds', q{
SELECT count(*) FROM shop.stock s
 WHERE s.reserved <> coalesce((SELECT sum(r.qty) FROM shop.reservation r
                                WHERE r.product_id = s.product_id AND r.location = s.location
                                  AND r.bucket = s.bucket AND r.status = 'held'), 0)}
	],
	[
		'stock rows out of bounds', q{
SELECT count(*) FROM shop.stock
 WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand}
	],
	[
		'units gone <> units committed', qq{
SELECT abs($total_before - (SELECT sum(on_hand) FROM shop.stock)
       - coalesce((SELECT sum(qty) FROM shop.reservation WHERE status = 'committed'), 0))}
	],
	[
		"holds not matching their order's status", q{
SELECT count(*) FROM shop.order_line l
  JOIN shop."order" o USING (order_id)
  JOIN shop.reservation r ON r.product_id = l.product_id AND r.reservation_id = l.reservation_id
 WHERE (o.status IN ('pending', 'paid', 'fulfilling') AND r.status <> 'held')
    OR (o.status = 'shipped' AND r.status <> 'committed')
    OR (o.status = 'cancelled' AND r.status = 'held')}
	],
	[
		'paid orders whose holds can expire', q{
SELECT count(*) FROM shop.order_line l
  JOIN shop."order" o USING (order_id)
  JOIN shop.reservation r ON r.product_id = l.product_id AND r.reservation_id = l.reservation_id
 WHERE o.status IN ('paid', 'fulfilling') AND r.expires_at <> 'infinity'}
	],
	[
		'idempotency keys without their order', q{
SELECT count(*) FROM shop.idempotency k
 WHERE k.order_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM shop."order" o WHERE o.order_id = k.order_id)}
	],
	[
		'payments not matching their order', q{
SELECT count(*) FROM shop.payment p JOIN shop."order" o USING (order_id)
 WHERE (o.status = 'paid' AND p.status <> 'captured')
    OR (o.status = 'pending' AND p.status <> 'pending')
    OR p.amount_cents <> o.total_cents}
	]);
foreach my $check (@checks)
{
	my ($name, $sql) = @$check;
	is($node->safe_psql('crash', $sql), '0', $name);
}
note 'orders by status: '
  . $node->safe_psql('crash',
	q{SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
	    FROM (SELECT status::text, count(*) AS n FROM shop."order" GROUP BY 1) s});

# and the shop still works
my ($ret, $stdout, $stderr) =
  $node->psql('crash', 'SELECT public.crash_checkout(42, 1, 2, 3, 5)');
is($ret, 0, 'checkout after recovery') or diag $stderr;

done_testing();
