#!/usr/bin/perl
# check.pl: the checks of test/prometheus on one scrape of the exporter.
#
#   check.pl SCRAPE EXPECT ALERTS DASHBOARD PROMTEST
#
# SCRAPE is the exporter's /metrics text.  EXPECT has one line per
# expectation, `metric{label="v",...} = value` or `metric{...} range lo hi`
# (labels in any order; the exporter's server label is ignored).  Every
# metric named by an expr of ALERTS (Prometheus rules YAML) or of DASHBOARD
# (Grafana JSON) must be in the scrape.  PROMTEST is written: a promtool
# unit test file that feeds the scraped series to the rules (run.sh writes
# the expected alerts after it).  Exits 1 on any failure, listing each.
use strict;
use warnings;
use JSON::PP;

my ($scrape_f, $expect_f, $alerts_f, $dash_f, $promtest_f) = @ARGV;
die "usage: check.pl SCRAPE EXPECT ALERTS DASHBOARD PROMTEST\n" unless defined $promtest_f;
my $fail = 0;
sub failed { print "FAIL: $_[0]\n"; $fail = 1; }
sub slurp { my ($f) = @_; open my $h, '<', $f or die "$f: $!\n"; local $/; my $s = <$h>; close $h; $s }

# key: name{a="x",b="y"} with labels sorted and server dropped
sub norm_key {
    my ($name, $labels) = @_;
    my @l;
    while (defined $labels && $labels =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g) {
        push @l, "$1=\"$2\"" unless $1 eq 'server';
    }
    return @l ? "$name\{" . join(',', sort @l) . "}" : $name;
}

my (%value, %names);
for (split /\n/, slurp($scrape_f)) {
    next if /^#/ || !/\S/;
    /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/ or next;
    $value{norm_key($1, $2)} = $3;
    $names{$1} = 1;
}

for (split /\n/, slurp($expect_f)) {
    next if /^\s*(#|$)/;
    my ($name, $labels, $op, @v) = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(=|range)\s+(.*)$/
        or die "bad expectation: $_\n";
    @v = split ' ', $v[0];
    my $key = norm_key($name, $labels);
    if (!exists $value{$key}) {
        failed("$key is not exported");
        next;
    }
    my $got = $value{$key};
    if ($op eq '=') {
        my $want = $v[0];
        if ($want eq 'NaN') {
            failed("$key is $got, expected NaN") unless $got eq 'NaN';
        } elsif ($got eq 'NaN' || abs($got - $want) > 1e-6 * (abs($want) > 1 ? abs($want) : 1)) {
            failed("$key is $got, expected $want");
        }
    } else {
        failed("$key is $got, expected between $v[0] and $v[1]")
            if $got eq 'NaN' || $got < $v[0] || $got > $v[1];
    }
}

# the metric names an expression uses: shop_* and pg_* identifiers that
# are not followed by a parenthesis
sub metric_names {
    my ($expr) = @_;
    $expr =~ s/"(?:[^"\\]|\\.)*"//g;     # label values
    my %n;
    $n{$1} = 1 while $expr =~ /\b((?:shop|pg)_[a-zA-Z0-9_]*)\b(?!\s*\()/g;
    return keys %n;
}

# exprs of the rules file: `expr: ...` on one line, or `expr: |` and the
# lines indented deeper
my @alert_exprs;
{
    my @lines = split /\n/, slurp($alerts_f);
    for (my $i = 0; $i < @lines; $i++) {
        next unless $lines[$i] =~ /^(\s*)expr:\s*(.*)$/;
        my ($indent, $rest) = (length $1, $2);
        if ($rest =~ /^[|>]/) {
            my $e = '';
            while ($i + 1 < @lines && ($lines[$i + 1] =~ /^(\s*)\S/ ? length $1 : 1e9) > $indent) {
                $e .= $lines[++$i] . "\n";
            }
            push @alert_exprs, $e;
        } else {
            push @alert_exprs, $rest;
        }
    }
}
failed("no expr found in $alerts_f") unless @alert_exprs;
my %alert_metrics;
for my $e (@alert_exprs) {
    for my $n (metric_names($e)) {
        $alert_metrics{$n} = 1;
        failed("alert rules use $n, which the exporter does not export") unless $names{$n};
    }
}

# the dashboard: valid JSON, with panels whose targets' exprs name
# exported metrics
my $dash = eval { decode_json(slurp($dash_f)) };
if (!$dash) {
    failed("$dash_f is not valid JSON: $@");
} else {
    my @exprs;
    my $walk;
    $walk = sub {
        my ($x) = @_;
        if (ref $x eq 'HASH') {
            push @exprs, $x->{expr} if defined $x->{expr} && !ref $x->{expr};
            $walk->($_) for values %$x;
        } elsif (ref $x eq 'ARRAY') {
            $walk->($_) for @$x;
        }
    };
    $walk->($dash->{panels});
    failed("the dashboard has no panel queries") unless @exprs;
    my %seen;
    for my $e (@exprs) {
        for my $n (metric_names($e)) {
            $seen{$n} = 1;
            failed("the dashboard queries $n, which the exporter does not export") unless $names{$n};
        }
    }
    # every shop metric the queries file defines is on the dashboard
    for my $n (sort grep { /^shop_/ } keys %names) {
        failed("the dashboard shows no panel of $n") unless $seen{$n};
    }
    printf "dashboard: %d queries over %d metrics\n", scalar @exprs, scalar keys %seen;
}
printf "alert rules: %d exprs over %d metrics\n", scalar @alert_exprs, scalar keys %alert_metrics;

# the promtool unit test's input: every scraped series of a metric the
# rules use, constant over 30 minutes (sampled each minute)
open my $out, '>', $promtest_f or die "$promtest_f: $!\n";
print $out "rule_files:\n  - rules.yaml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n";
for my $key (sort keys %value) {
    my ($name) = $key =~ /^([^{]+)/;
    next unless $alert_metrics{$name};
    next if $value{$key} eq 'NaN';
    (my $series = $key) =~ s/'/''/g;
    print $out "      - series: '$series'\n        values: '$value{$key}+0x30'\n";
}
close $out;

print $fail ? "check.pl: failures above\n" : "check.pl: all checks passed\n";
exit $fail;
