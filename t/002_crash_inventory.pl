# Copyright (c) shop contributors; PostgreSQL licence.
#
# crash_inventory: a pgbench load of reserve / reserve_many / release /
# commit / restock (plus the preloaded sweeper expiring short holds) is cut
# by stop -m immediate; after crash recovery, for every stock row reserved
# must equal the held reservation parts pointing at it, stock is never
# negative, and on_hand equals the sum of the stock ledger.  Then the
# sweeper, restarted with the server, must expire the holds that lapsed.
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
shop.sweep_interval = 1
max_worker_processes = 16
synchronous_commit = on
wal_level = replica
log_statement = none
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE crash');
$node->safe_psql(
	'crash', q{
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'CR-' || g, 'Crash product ' || g, 100 * g FROM generate_series(1, 200) g;
SELECT count(shop.stock_set(g, 40)) FROM generate_series(1, 200) g;
-- hot products: bucketed, and a second location for a few
SELECT count(shop.stock_set_buckets(g, 8)) FROM generate_series(1, 5) g;
SELECT count(shop.stock_set(g, 15, 'east')) FROM generate_series(6, 20) g;

-- one client step: a random mix of the inventory calls; running out of
-- stock (SH001) is an expected answer, not a failure
CREATE FUNCTION public.crash_step(p int, q int, act int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rid uuid;
    ids uuid[];
BEGIN
    IF act <= 2 THEN
        -- a hot product, short hold left to expire (sweeper / reclaim)
        PERFORM shop.reserve(1 + p % 5, q, 'expire', make_interval(secs => 1));
    ELSIF act <= 4 THEN
        rid := shop.reserve(p, q, 'release');
        PERFORM shop.reservation_release(rid);
    ELSIF act <= 6 THEN
        rid := shop.reserve(1 + p % 5, q, 'commit');
        PERFORM shop.reservation_commit(rid);
    ELSIF act <= 8 THEN
        ids := shop.reserve_many(jsonb_build_array(
                   jsonb_build_object('product_id', p, 'qty', q),
                   jsonb_build_object('product_id', 1 + (p * 7) % 200, 'qty', 1),
                   jsonb_build_object('product_id', 1 + p % 5, 'qty', 1)),
               'cart', make_interval(secs => 2));
        IF act = 8 THEN
            PERFORM shop.reservation_commit(ids[1]);
        END IF;
    ELSIF act = 9 THEN
        PERFORM shop.stock_adjust(1 + p % 20, 3, 'restock', CASE WHEN p % 2 = 0 THEN 'default' ELSE 'east' END);
    ELSE
        PERFORM shop.reserve(p, q, 'held', make_interval(secs => 600));
    END IF;
EXCEPTION WHEN SQLSTATE 'SH001' THEN
    NULL;
END
$$;
});

my $script = $node->basedir . '/step.sql';
append_to_file(
	$script, q{\set p random(1, 200)
\set q random(1, 3)
\set act random(1, 10)
SELECT crash_step(:p, :q, :act);
});

# the load, killed mid-flight
my ($bench_out, $bench_err) = ('', '');
my $bench = IPC::Run::start(
	[
		'pgbench', '-n', '-M', 'prepared', '-c', '8', '-j', '2', '-T', '30',
		'-f', $script, '-h', $node->host, '-p', $node->port, 'crash'
	],
	'>', \$bench_out, '2>', \$bench_err);
sleep 8;
note 'reservations before the crash: '
  . $node->safe_psql('crash', 'SELECT count(*) FROM shop.reservation');
$node->stop('immediate');
$bench->finish;
like(
	$bench_out . $bench_err,
	qr/processed|terminat|connection/,
	'pgbench ran until the server went away');

# the load takes locks in the documented order: no deadlock, no other error
my @errors = grep { /ERROR|PANIC/ && !/terminating connection/ }
  split /\n/, slurp_file($node->logfile);
is(scalar(@errors), 0, 'no error under the inventory load')
  or diag join("\n", @errors[ 0 .. 4 ]);

my $log_offset = -s $node->logfile;
$node->start;
ok( $node->log_contains(
		'database system was interrupted|not properly shut down',
		$log_offset),
	'the restart ran crash recovery');

# every violated invariant is one row
my $invariants = q{
SELECT 'reserved mismatch ' || s.product_id || '/' || s.location || '/' || s.bucket
       || ': reserved ' || s.reserved || ', held parts ' || coalesce(h.q, 0)
  FROM shop.stock s
  LEFT JOIN (SELECT product_id, location, bucket, sum(qty) AS q FROM shop.reservation
              WHERE status = 'held' GROUP BY 1, 2, 3) h USING (product_id, location, bucket)
 WHERE s.reserved <> coalesce(h.q, 0)
UNION ALL
SELECT 'negative or oversold ' || product_id || '/' || location || '/' || bucket
  FROM shop.stock WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand
UNION ALL
SELECT 'held part without stock row ' || r.reservation_id
  FROM shop.reservation r
 WHERE r.status = 'held'
   AND NOT EXISTS (SELECT 1 FROM shop.stock s WHERE (s.product_id, s.location, s.bucket)
                                                   = (r.product_id, r.location, r.bucket))
UNION ALL
SELECT 'ledger mismatch ' || s.product_id || '/' || s.location || ': on_hand ' || s.on_hand
       || ', ledger ' || coalesce(l.total, 0)
  FROM (SELECT product_id, location, sum(on_hand) AS on_hand FROM shop.stock GROUP BY 1, 2) s
  LEFT JOIN (SELECT product_id, location, sum(delta) AS total FROM shop.stock_ledger GROUP BY 1, 2) l
       USING (product_id, location)
 WHERE s.on_hand <> coalesce(l.total, 0)
UNION ALL
SELECT 'in_stock wrong for ' || p.product_id
  FROM shop.product p
 WHERE p.in_stock <> coalesce((SELECT sum(on_hand) > 0 FROM shop.stock s WHERE s.product_id = p.product_id), false)};
my $summary = q{
SELECT 'reservations: ' || count(*) || ', held ' || count(*) FILTER (WHERE status = 'held')
  FROM shop.reservation};

note 'after recovery: ' . $node->safe_psql('crash', $summary);
is($node->safe_psql('crash', $invariants),
	'', 'stock, holds and ledger agree after crash recovery');
cmp_ok(
	$node->safe_psql(
		'crash',
		"SELECT count(*) FROM shop.reservation WHERE status = 'committed'"),
	'>', 0,
	'the load committed holds before the crash');

# the sweeper came back with the server: lapsed holds get expired without
# anyone calling shop.sweep()
ok( $node->poll_query_until(
		'crash', q{
SELECT count(*) = 0 FROM shop.reservation
 WHERE status = 'held' AND expires_at < now() - interval '1 second'}),
	'lapsed holds are swept after the restart');
# waited for, not looked up once: when the crash came just after a round,
# no hold has lapsed yet at the restart, the poll above succeeds at once
# and the first round after the restart (a second later) has not logged
# yet (a clean-clone run of ce2ea38 failed so)
ok(eval { $node->wait_for_log('shop sweep in database "crash"', $log_offset); 1 },
	'the sweeper logged a sweep');
note 'after the sweep: ' . $node->safe_psql('crash', $summary);
is($node->safe_psql('crash', $invariants),
	'', 'stock, holds and ledger agree after the sweep');

# SIGHUP: a new interval is taken without a restart; the launcher stays
# (counting the launcher only: a sweep worker of this round may run too)
$node->safe_psql('crash', 'ALTER SYSTEM SET shop.sweep_interval = 2');
$node->reload;
sleep 1;
my $launcher = q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'shop sweeper' AND application_name = 'shop sweeper launcher'};
is($node->safe_psql('crash', $launcher),
	'1', 'the sweeper launcher runs after a reload');
# SIGTERM stops the launcher (the server does not crash: Cluster.pm's stop
# at the end fails otherwise)
$node->safe_psql('crash', q{
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE backend_type = 'shop sweeper' AND application_name = 'shop sweeper launcher'});

done_testing();
