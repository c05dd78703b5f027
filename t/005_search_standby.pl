# Copyright (c) shop contributors; PostgreSQL licence.
#
# search_standby: a shop_search index on a streaming hot standby.
#
# A primary and a standby made from its base backup (init_from_backup,
# has_streaming).  On the standby a search is stopped right after it read
# the index's metapage (the pause point scan-meta, held by a second standby
# session); meanwhile inserts on the primary fold the pending list and put
# new pages into the blocks the folds released, and the standby replays
# that.  Without hot_standby_feedback the standby must cancel the stopped
# search (40001, conflict with recovery) before it replays the reuse: going
# on, it would read blocks that are no longer what its metapage says.  With
# hot_standby_feedback on, the primary keeps those blocks until the search
# ends, which then counts exactly what its snapshot sees.  After replay,
# the standby's answers to a set of searches equal the primary's.
# Last, facets on the standby, without feedback: a count stopped after it
# copied the matching documents (pause point facets-collected) while the
# standby replays a VACUUM that flags the documents of rows deleted before
# the count's snapshot, frees their line pointers and marks the heap page
# all-visible (nothing there conflicts with the count's snapshot, so it is
# not cancelled); going on, it must count only the rows its snapshot sees,
# not the copies the visibility map now vouches for.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $pause_key = 1397968979;    # SS_TEST_PAUSE_KEY (src/search/sshandler.c)

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(
	allows_streaming => 1,
	extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
$primary->append_conf(
	'postgresql.conf', q{
shared_buffers = 32MB
max_connections = 20
autovacuum = off
log_statement = none
});
$primary->start;

$primary->safe_psql('postgres', 'CREATE DATABASE stb');
$primary->safe_psql(
	'stb', q{
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE TABLE t (id bigserial PRIMARY KEY, title text) WITH (autovacuum_enabled = off);
-- id: the tie-break of sorted scans, kept in the document records
CREATE INDEX t_idx ON t USING shop_search (shop.search_doc(title)) INCLUDE (id);
INSERT INTO t (title) SELECT 'alpha item ' || g FROM generate_series(1, 1200) g;
VACUUM t;
INSERT INTO t (title) SELECT 'alpha late ' || g FROM generate_series(1, 120) g;
CHECKPOINT;
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf(
	'postgresql.conf', q{
hot_standby = on
hot_standby_feedback = off
max_standby_streaming_delay = 2s
wal_receiver_status_interval = 1s
});
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

# inserts only (no dead heap tuples, so no heap conflict): folds and reuse
sub churn
{
	my ($tag) = @_;
	$primary->safe_psql('stb',
		join('',
			map { "INSERT INTO t (title) SELECT 'alpha churn $tag ' || g FROM generate_series(1, 60) g;\n" }
			  1 .. 30));
}

# hot_standby_feedback on the standby, and the primary seeing it: with
# feedback, the walreceiver reports an xmin (pg_stat_replication's
# backend_xmin); turned off, it clears it
sub set_feedback
{
	my ($on) = @_;
	$standby->adjust_conf('postgresql.conf', 'hot_standby_feedback',
		$on ? 'on' : 'off');
	$standby->reload;
	$primary->poll_query_until('postgres',
		"SELECT backend_xmin IS " . ($on ? 'NOT ' : '') . "NULL FROM pg_stat_replication WHERE application_name = 'standby'")
	  or die "the primary did not see hot_standby_feedback turn " . ($on ? 'on' : 'off');
}

# A search on the standby stopped at a pause point: a holder session takes
# the pause lock, the search (statements $sql in a REPEATABLE READ
# transaction, psql going on after an error) runs until it waits for it.
# Returns what release_search needs.
sub stopped_search
{
	my ($point, $sql) = @_;
	my $holder = $standby->background_psql('stb');
	$holder->query_safe("SELECT pg_advisory_lock($pause_key)");
	my %s = (holder => $holder, out => '', err => '');
	# a script file: IPC::Run feeds a scalar to stdin only while pumped
	my $script = $standby->basedir . "/search_$point.sql";
	unlink $script;
	PostgreSQL::Test::Utils::append_to_file(
		$script, qq{SET shop.search_test_pause = '$point';
BEGIN ISOLATION LEVEL REPEATABLE READ;
$sql
COMMIT;
});
	$s{run} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-At', '-d', $standby->connstr('stb'), '-f', $script ],
		'>', \$s{out}, '2>', \$s{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$standby->poll_query_until('stb',
		"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
	  or die 'the standby search did not reach its pause point';
	return \%s;
}

# Let the stopped search go on; returns its standard output and error.
sub release_search
{
	my ($s) = @_;
	$s->{holder}->query_safe("SELECT pg_advisory_unlock($pause_key)");
	$s->{run}->finish;
	$s->{holder}->quit;
	return ($s->{out}, $s->{err});
}

my $index_count = q{SELECT 'truth ' || count(*) FROM t WHERE title LIKE 'alpha %';
SET LOCAL enable_seqscan = off;
SELECT 'by_index ' || count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"alpha"';};

# 1. hot_standby_feedback off: the stopped search is cancelled
my $s = stopped_search('scan-meta', $index_count);
churn('a');
$primary->wait_for_catchup($standby, 'replay');
my ($out, $err) = release_search($s);
like($err, qr/conflict with recovery/,
	'without feedback, the stopped search is cancelled (conflict with recovery)')
  or diag "stdout: $out";

# 2. hot_standby_feedback on: it is not, and counts what its snapshot sees
set_feedback(1);
$s = stopped_search('scan-meta', $index_count);
# the primary holds back what the stopped search's snapshot may read once a
# feedback message carried its xmin
my $search_xmin = $standby->safe_psql('stb',
	q{SELECT backend_xmin FROM pg_stat_activity WHERE query LIKE '%by_index%' AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()});
$primary->poll_query_until('postgres',
	"SELECT backend_xmin::text::bigint <= $search_xmin FROM pg_stat_replication WHERE application_name = 'standby'")
  or die 'the primary did not get the stopped search\'s xmin';
churn('b');
$primary->wait_for_catchup($standby, 'replay');
($out, $err) = release_search($s);
my ($truth) = $out =~ /^truth (\d+)$/m;
my ($got) = $out =~ /^by_index (\d+)$/m;
ok(defined $truth && defined $got && $truth == $got,
	"with feedback, the stopped search counts its snapshot's truth ("
	  . ($got // 'nothing') . ')')
  or diag "stdout: $out\nstderr: $err";
is($err, '', 'with feedback, the stopped search is not cancelled');

# 3. after more churn (deletes, updates, VACUUM: merges, truncation), the
# standby answers as the primary does
$primary->safe_psql(
	'stb', q{
DELETE FROM t WHERE id % 3 = 0;
UPDATE t SET title = title || ' beta' WHERE id % 5 = 0;
VACUUM t;
INSERT INTO t (title) SELECT 'gamma ' || g FROM generate_series(1, 700) g;
DELETE FROM t WHERE title LIKE 'alpha churn%';
VACUUM t;
VACUUM t;
});
$primary->wait_for_catchup($standby, 'replay');
my $queries = q{SET enable_seqscan = off;
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"alpha"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"beta"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"gamma"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"alpa"';
SELECT count(*) FROM t WHERE shop.search_doc(title) OPERATOR(shop.@@@) '{"q": "alpha beta"}';
SELECT string_agg(t.id::text, ',' ORDER BY s.ord) FROM shop.search_scan('t_idx', '{"q": "item beta"}', 50) WITH ORDINALITY s(ctid, score, typos, missing, ord) JOIN t ON t.ctid = s.ctid;
SELECT string_agg(x.id::text, ',') FROM (SELECT t.id FROM shop._search_sorted('t_idx', '"alpha"', 'price_asc', 10) s
  JOIN t ON t.ctid = s.ctid ORDER BY s.sort_key, t.id) x;
SELECT count(*) FROM shop.search_verify('t_idx');};
my $on_primary = $primary->safe_psql('stb', $queries);
my $on_standby = $standby->safe_psql('stb', $queries);
is($on_standby, $on_primary, "the standby's answers equal the primary's");
# every "alpha" row ties on price (none): the included id breaks the ties,
# so the index hands out exactly the 10 rows of the page, on the standby too
is( $standby->safe_psql(
		'stb', q{SELECT count(*) FROM shop._search_sorted('t_idx', '"alpha"', 'price_asc', 10)}),
	'10',
	'sorted scan on the standby: ties broken by the included id');
note 'answers: ' . join(' ', (split /\n/, $on_primary)[ 0 .. 2 ]) . ' ...';

# 4. facets without feedback, while the standby replays a VACUUM.  A table
# of its own: one heap page that stays in use and a pending list that the
# VACUUM folds into a new segment at the end of the index, so no block is
# reused or truncated (that would cancel the count).
set_feedback(0);
$primary->safe_psql(
	'stb', q{
CREATE TABLE u (id bigserial PRIMARY KEY, title text) WITH (autovacuum_enabled = off);
CREATE INDEX u_idx ON u USING shop_search (shop.search_doc(title));
INSERT INTO u (title) SELECT 'delta lamp ' || g FROM generate_series(1, 60) g;
DELETE FROM u WHERE id % 2 = 0;
});
$primary->wait_for_catchup($standby, 'replay');
$s = stopped_search(
	'facets-collected', q{SELECT 'truth ' || count(*) FROM u WHERE title LIKE 'delta %';
SELECT 'facets ' || n FROM shop._search_facet_counts('u_idx', '"delta"') WHERE kind = 'total';});
$primary->safe_psql('stb', 'VACUUM u');
$primary->wait_for_catchup($standby, 'replay');
($out, $err) = release_search($s);
($truth) = $out =~ /^truth (\d+)$/m;
($got) = $out =~ /^facets (\d+)$/m;
ok(defined $truth && defined $got && $truth == $got,
	"facets stopped while the standby replayed a VACUUM count their snapshot's truth ("
	  . ($got // 'nothing') . ')')
  or diag "stdout: $out\nstderr: $err";
is($primary->safe_psql('stb', q{SELECT count(*) FROM shop.search_verify('u_idx')}),
	'0', 'search_verify finds no problem in u_idx');

note 'index: '
  . $primary->safe_psql('stb', q{SELECT shop.search_index_info('t_idx') -> 'blocks'})
  . ' blocks on the primary';

done_testing();
