#!/usr/bin/perl
# pgxn-meta-check.pl: checks a META.json against the PGXN Meta Spec 1.0.0
# (https://pgxn.org/spec/) and against what shop ships.  Used by
# `make dist` and test/pgxn.
#
#   scripts/pgxn-meta-check.pl META.json [FILE...]
#
# FILE... are the paths of the distribution (as in the release zip, without
# its top directory): when given, every file META.json names must be one of
# them.  Prints one line per problem; exits 1 when there is any.
use strict;
use warnings;
use JSON::PP;

my ($path, @files) = @ARGV;
die "usage: $0 META.json [FILE...]\n" unless defined $path;
my %in_dist = map { $_ => 1 } @files;
my @problems;
sub problem { push @problems, join('', @_) }

open my $fh, '<:raw', $path or die "$path: $!\n";
my $text = do { local $/; <$fh> };
my $meta = eval { JSON::PP->new->utf8->decode($text) };
if (!$meta) { print "$path: not valid JSON: $@"; exit 1 }
ref $meta eq 'HASH' or do { print "$path: not a JSON object\n"; exit 1 };

# semantic versions as the spec defines them (SemVer 1.0.0)
my $semver = qr/^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[a-zA-Z][a-zA-Z0-9]*)?$/;
my $term   = qr/^[^\/\\\s\x00-\x1f\x7f]{2,}$/;   # at least two characters, no slash, backslash, space or control
my %license = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd
    freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0
    mozilla_1_1 openssl perl_5 postgresql qpl_1_0 ssleay sun zlib open_source restricted
    unrestricted unknown);
my %known = map { $_ => 1 } qw(name abstract description version maintainer license provides
    prereqs release_status resources no_index tags generated_by meta-spec);

sub is_string { defined $_[0] && !ref $_[0] && length $_[0] }
sub version_range {
    my ($v) = @_;
    return 0 unless is_string($v);
    return 1 if $v eq '0';
    for my $part (split /\s*,\s*/, $v) {
        return 0 unless $part =~ /^(?:(?:==|!=|>=|<=|>|<)\s*)?(.+)$/ && $1 =~ $semver;
    }
    return 1;
}
sub uri { is_string($_[0]) && $_[0] =~ m{^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$} }

# required keys
for my $k (qw(name abstract maintainer license provides version meta-spec)) {
    problem("required key $k is missing") unless exists $meta->{$k};
}
for my $k (sort keys %$meta) {
    problem("unknown key $k (custom keys start with x_ or X_)") unless $known{$k} || $k =~ /^[xX]_/;
}
problem("name: not a term: ", $meta->{name} // '') if exists $meta->{name} && !(is_string($meta->{name}) && $meta->{name} =~ $term);
problem("abstract: not a string") if exists $meta->{abstract} && !is_string($meta->{abstract});
problem("description: not a string") if exists $meta->{description} && !is_string($meta->{description});
problem("version: not a semantic version: ", $meta->{version} // '') if exists $meta->{version} && !(is_string($meta->{version}) && $meta->{version} =~ $semver);
if (exists $meta->{maintainer}) {
    my $m = $meta->{maintainer};
    my @m = ref $m eq 'ARRAY' ? @$m : ($m);
    problem("maintainer: a string or a non-empty list of strings") if !@m || grep { !is_string($_) } @m;
}
if (exists $meta->{license}) {
    my $l = $meta->{license};
    if (ref $l eq 'HASH') {
        problem("license: the object form maps names to URLs") if !%$l || grep { !uri($l->{$_}) } keys %$l;
    } else {
        for (ref $l eq 'ARRAY' ? @$l : ($l)) {
            problem("license: unknown license ", $_ // '') unless is_string($_) && $license{$_};
        }
    }
}
if (exists $meta->{'meta-spec'}) {
    my $s = $meta->{'meta-spec'};
    if (ref $s ne 'HASH') { problem("meta-spec: not an object") }
    else {
        problem("meta-spec: version must be 1.0.0") unless ($s->{version} // '') eq '1.0.0';
        problem("meta-spec: url is not a URL") if exists $s->{url} && !uri($s->{url});
    }
}
if (exists $meta->{provides}) {
    my $p = $meta->{provides};
    if (ref $p ne 'HASH' || !%$p) { problem("provides: not a non-empty object") }
    else {
        for my $ext (sort keys %$p) {
            my $e = $p->{$ext};
            if (ref $e ne 'HASH') { problem("provides.$ext: not an object"); next }
            problem("provides.$ext: not a term") unless $ext =~ $term;
            for my $k (sort keys %$e) {
                problem("provides.$ext: unknown key $k") unless $k =~ /^(file|version|abstract|docfile)$/ || $k =~ /^[xX]_/;
            }
            problem("provides.$ext.file is missing") unless is_string($e->{file});
            problem("provides.$ext.version: not a semantic version") unless is_string($e->{version}) && $e->{version} =~ $semver;
            for my $k (qw(file docfile)) {
                next unless is_string($e->{$k}) && @files;
                problem("provides.$ext.$k: $e->{$k} is not in the distribution") unless $in_dist{$e->{$k}};
            }
        }
    }
}
if (exists $meta->{prereqs}) {
    my $p = $meta->{prereqs};
    if (ref $p ne 'HASH') { problem("prereqs: not an object") }
    else {
        for my $phase (sort keys %$p) {
            problem("prereqs: unknown phase $phase") unless $phase =~ /^(configure|build|test|runtime|develop)$/ || $phase =~ /^[xX]_/;
            my $rels = $p->{$phase};
            if (ref $rels ne 'HASH') { problem("prereqs.$phase: not an object"); next }
            for my $rel (sort keys %$rels) {
                problem("prereqs.$phase: unknown relation $rel") unless $rel =~ /^(requires|recommends|suggests|conflicts)$/ || $rel =~ /^[xX]_/;
                my $deps = $rels->{$rel};
                if (ref $deps ne 'HASH') { problem("prereqs.$phase.$rel: not an object"); next }
                for my $d (sort keys %$deps) {
                    problem("prereqs.$phase.$rel.$d: not a version range: ", $deps->{$d} // 'null') unless version_range($deps->{$d});
                }
            }
        }
    }
}
problem("release_status: must be stable, testing or unstable")
    if exists $meta->{release_status} && !(is_string($meta->{release_status}) && $meta->{release_status} =~ /^(stable|testing|unstable)$/);
if (exists $meta->{resources}) {
    my $r = $meta->{resources};
    if (ref $r ne 'HASH') { problem("resources: not an object") }
    else {
        for my $k (sort keys %$r) {
            problem("resources: unknown key $k") unless $k =~ /^(homepage|bugtracker|repository)$/ || $k =~ /^[xX]_/;
        }
        problem("resources.homepage: not a URL") if exists $r->{homepage} && !uri($r->{homepage});
        if (exists $r->{bugtracker}) {
            my $b = $r->{bugtracker};
            if (ref $b ne 'HASH') { problem("resources.bugtracker: not an object") }
            else {
                problem("resources.bugtracker.web: not a URL") if exists $b->{web} && !uri($b->{web});
                problem("resources.bugtracker.mailto: not an address") if exists $b->{mailto} && !(is_string($b->{mailto}) && $b->{mailto} =~ /^[^@\s]+@[^@\s]+$/);
            }
        }
        if (exists $r->{repository}) {
            my $b = $r->{repository};
            if (ref $b ne 'HASH') { problem("resources.repository: not an object") }
            else {
                problem("resources.repository.$_: not a URL") for grep { exists $b->{$_} && !uri($b->{$_}) } qw(url web);
                problem("resources.repository.type: not a lower-case word") if exists $b->{type} && !(is_string($b->{type}) && $b->{type} =~ /^[a-z]+$/);
            }
        }
    }
}
if (exists $meta->{tags}) {
    my $t = $meta->{tags};
    if (ref $t ne 'ARRAY' || !@$t) { problem("tags: not a non-empty list") }
    else { problem("tags: not a tag: ", $_ // 'null') for grep { !(is_string($_) && length($_) <= 255 && !/[\/\\\x00-\x1f\x7f]/) } @$t }
}
if (exists $meta->{no_index}) {
    my $n = $meta->{no_index};
    if (ref $n ne 'HASH') { problem("no_index: not an object") }
    else {
        for my $k (sort keys %$n) {
            problem("no_index: unknown key $k") unless $k =~ /^(file|directory)$/ || $k =~ /^[xX]_/;
        }
    }
}

print "$path: $_\n" for @problems;
exit(@problems ? 1 : 0);
