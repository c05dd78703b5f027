# Copyright (c) shop contributors; PostgreSQL licence.
#
# crash_events: the outbox and its consumer groups across a crash.
#
#   1. wake-ups: a listener of shop_events is woken after a commit that
#      emitted (by the events worker), and never because of a rollback;
#   2. emitters (pgbench: each transaction emits one event and records its
#      event_id in public.emitted, in the same transaction) and two
#      consumers of group 'g' (pgbench: claim a batch and record it in
#      public.delivered in one transaction, acknowledge in the next) run
#      until the server is stopped with -m immediate; while they run, the
#      listener gets far fewer notifications than events were committed
#      (one per batch, not one per event);
#   3. after the restart a consumer drains the group (the batches leased to
#      the killed consumers come back, marked redelivered, once their lease
#      ran out); then every committed event was delivered, none was
#      delivered as new twice, and nothing uncommitted was delivered;
#   4. the events worker wakes listeners again after the restart.
#
# The listener is a BackgroundPsql session: psql prints the notifications
# it received after the next statement it runs, so the test collects them
# by running "SELECT 1" in it; no session ever sleeps in pg_sleep.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'shop'
shop.sweep_interval = 3600
max_worker_processes = 16
max_connections = 50
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
CREATE TABLE public.emitted (event_id bigint PRIMARY KEY);
CREATE TABLE public.delivered (event_id bigint NOT NULL, batch_id bigint NOT NULL,
                               redelivered boolean NOT NULL, consumer text NOT NULL,
                               at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION public.emit_one(n int) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO public.emitted SELECT shop._emit('crash.test', jsonb_build_object('n', n))
    RETURNING event_id
$$;
-- the group starts here: it is owed every event emitted from now on
SELECT count(*) FROM shop.event_claim('g');
});

# The last_event_id of each notification the listener printed since the
# last call, in the order received.
sub notifications
{
	my ($listener) = @_;
	my $out = $listener->query_safe('SELECT 1');
	my @ids;
	foreach my $line (split /\n/, $out)
	{
		next unless $line =~ /^Asynchronous notification "shop_events"/;
		$line =~ /"last_event_id": (\d+|null)/
		  or die "a notification without last_event_id: $line";
		push @ids, $1;
	}
	return @ids;
}

# Collect notifications until one names event $id or a later one (or
# $PostgreSQL::Test::Utils::timeout_default seconds passed); returns all
# collected and whether the one looked for came.
sub notifications_until
{
	my ($listener, $id) = @_;
	my @ids;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		push @ids, notifications($listener);
		return (1, @ids) if grep { $_ ne 'null' && $_ >= $id } @ids;
		usleep(100_000);
	}
	return (0, @ids);
}

# 1. wake-ups
my $listener = $node->background_psql('crash');
$listener->set_query_timer_restart;
$listener->query_safe('LISTEN shop_events');

my $first = $node->safe_psql('crash', 'SELECT public.emit_one(1)');
my ($woken, @seen) = notifications_until($listener, $first);
ok($woken, "a listener is woken after a commit that emitted (event $first)")
  or diag "notifications: @seen";

# A rollback must not wake anyone.  Were it to wake the events worker, the
# worker's round would notify at once, naming the newest committed event
# ($first).  The listener is read for two seconds after the rollback, then
# an event is committed and waited for: every notification since the
# rollback must name that event.
$node->safe_psql('crash',
	'BEGIN; SELECT public.emit_one(0); ROLLBACK;');
my @after_rollback;
for (1 .. 10)
{
	push @after_rollback, notifications($listener);
	usleep(200_000);
}
my $second = $node->safe_psql('crash', 'SELECT public.emit_one(2)');
($woken, @seen) = notifications_until($listener, $second);
push @after_rollback, @seen;
ok($woken, "a listener is woken after the next commit (event $second)");
is_deeply([ grep { $_ eq 'null' || $_ < $second } @after_rollback ],
	[], 'no notification because of a rolled-back emit')
  or diag "notifications since the rollback: @after_rollback";

# 2. emitters and consumers, then the kill
my $emit_sql = $node->basedir . '/emit.sql';
PostgreSQL::Test::Utils::append_to_file(
	$emit_sql, q{\set n random(1, 1000000)
SELECT public.emit_one(:n);
});
my $consume_sql = $node->basedir . '/consume.sql';
PostgreSQL::Test::Utils::append_to_file(
	$consume_sql, q{BEGIN;
INSERT INTO public.delivered (event_id, batch_id, redelivered, consumer)
SELECT event_id, batch_id, redelivered, 'c' || :client_id FROM shop.event_claim('g', 'c' || :client_id, 20, '2 seconds');
SELECT coalesce(max(batch_id), 0) AS b FROM public.delivered WHERE consumer = 'c' || :client_id \gset
COMMIT;
SELECT shop.event_ack('g', :b);
});
my @connect = ('-h', $node->host, '-p', $node->port, 'crash');
my ($emit_out, $emit_err, $consume_out, $consume_err) = ('', '', '', '');
my $emit = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '60', '-f', $emit_sql, @connect ],
	'>', \$emit_out, '2>', \$emit_err);
my $consume = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '60', '-f', $consume_sql, @connect ],
	'>', \$consume_out, '2>', \$consume_err);
sleep 1;
notifications($listener);    # what came before the window
my $window_start = $node->safe_psql('crash', 'SELECT count(*) FROM public.emitted');
sleep 3;
my $window_end = $node->safe_psql('crash', 'SELECT count(*) FROM public.emitted');
my @window = notifications($listener);
my $events = $window_end - $window_start;
note "events committed in the window: $events; notifications: " . scalar(@window);
cmp_ok(scalar(@window), '>=', 1, 'listeners are woken while the emitters run');
cmp_ok(scalar(@window), '<', $events,
	'fewer notifications than events: one per batch, not one per event');
$listener->quit;

sleep 2;
my $before = $node->safe_psql('crash', 'SELECT count(*) FROM public.emitted');
note "events committed before the crash (at least): $before";
$node->stop('immediate');
$emit->finish;
$consume->finish;
$node->start;

my $committed = $node->safe_psql('crash', 'SELECT count(*) FROM public.emitted');
cmp_ok($committed, '>=', $before, 'no committed event lost');

# 3. drain the group: claim and acknowledge until a claim finds nothing
# and no batch is out (a batch leased to a killed consumer comes back once
# its two-second lease ran out)
my $drained = 0;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	my ($batch, $n) = split /\|/, $node->safe_psql(
		'crash', q{
WITH c AS (SELECT * FROM shop.event_claim('g', 'drain', 500, '2 seconds')),
     d AS (INSERT INTO public.delivered (event_id, batch_id, redelivered, consumer)
           SELECT event_id, batch_id, redelivered, 'drain' FROM c RETURNING batch_id)
SELECT coalesce(max(batch_id), 0), count(*) FROM d});
	if ($n > 0)
	{
		$node->safe_psql('crash', "SELECT shop.event_ack('g', $batch)");
		next;
	}
	if ($node->safe_psql('crash',
			q{SELECT batch_out FROM shop.event_groups WHERE group_name = 'g'}) eq 'f')
	{
		$drained = 1;
		last;
	}
	usleep(300_000);    # a batch is out on a lease that has not run out yet
}
ok($drained, 'the group was drained');
note 'committed events: ' . $committed . ', deliveries: '
  . $node->safe_psql('crash',
	q{SELECT count(*) || ' (' || count(*) FILTER (WHERE redelivered) || ' redelivered)' FROM public.delivered});

my @checks = (
	[
		'committed events never delivered', q{
SELECT count(*) FROM public.emitted e
 WHERE NOT EXISTS (SELECT 1 FROM public.delivered d WHERE d.event_id = e.event_id)}
	],
	[
		'events delivered as new more than once', q{
SELECT count(*) FROM (SELECT event_id FROM public.delivered
                       WHERE NOT redelivered GROUP BY 1 HAVING count(*) > 1) x}
	],
	[
		'deliveries of events that did not commit', q{
SELECT count(*) FROM public.delivered d
 WHERE NOT EXISTS (SELECT 1 FROM public.emitted e WHERE e.event_id = d.event_id)}
	],
	[
		"events in the outbox without their emitting transaction's row", q{
SELECT count(*) FROM shop.event v
 WHERE v.topic = 'crash.test'
   AND NOT EXISTS (SELECT 1 FROM public.emitted e WHERE e.event_id = v.event_id)}
	]);
foreach my $check (@checks)
{
	my ($name, $sql) = @$check;
	is($node->safe_psql('crash', $sql), '0', $name);
}

# 4. the events worker is back
$listener = $node->background_psql('crash');
$listener->set_query_timer_restart;
$listener->query_safe('LISTEN shop_events');
my $third = $node->safe_psql('crash', 'SELECT public.emit_one(3)');
($woken, @seen) = notifications_until($listener, $third);
ok($woken, 'listeners are woken after the restart') or diag "notifications: @seen";
$listener->quit;

done_testing();
