#!/usr/bin/perl
# audit.pl: the generator and the searcher of test/card_audit/run.sh.
#
#   audit.pl calls FUNCS.tsv PRODUCT CATEGORY INDEX  > calls.sql
#       one call per text-like argument of every function listed (from
#       pg_proc, by run.sh) and per card format: the other required
#       arguments get plausible values, the target gets a card number
#   audit.pl columns COLS.tsv DIR                     > columns.sql
#       per text-like column (from pg_catalog, by run.sh) and card format:
#       an INSERT of a copy of an existing row, an UPDATE of one, and a COPY
#       (psql \copy of a file written under DIR)
#   audit.pl pgbench DIR                              > list of pgbench runs
#       scripts for the extended protocol (the card as a bind parameter)
#   audit.pl marker                                   > marker.sql
#       the planted marker: a 16-digit number that is no card, stored in the
#       same formats, which the search must find
#   audit.pl search FILE...
#       search files for the card numbers and the marker, digits
#       normalised: Unicode digits mapped to 0-9, escapes (\uXXXX ...) and
#       HTML entities decoded, separators between digits dropped; prints
#       "file bytes needle hits" for every hit and a total line
#
# This file does not use shop's detector: the audit must not trust the code
# it audits.
use strict;
use warnings;
use utf8;
use Encode qw(decode encode);
use Unicode::UCD qw(num);

binmode STDOUT, ':encoding(UTF-8)';

# Luhn-valid numbers of different brands (the brands' published test cards)
my @CARDS = (
    '4111111111111111',     # Visa
    '5555555555554444',     # Mastercard
    '378282246310005',      # American Express
    '6011111111111117',     # Discover
    '3530111333300000',     # JCB
    '30569309025904',       # Diners Club, 14 digits
    '6205500000000000004',  # UnionPay, 19 digits
    '6759649826438453',     # Maestro
);
# no brand issues numbers starting with 98: not a card, stored as is
my $MARKER = '9876543210987654';

sub groups {
    my ($d) = @_;
    my $n = length $d;
    my @g = $n == 15 ? (4, 6, 5) : $n == 14 ? (4, 6, 4) : $n == 19 ? (4, 4, 4, 4, 3) : (4, 4, 4, 4);
    my @out;
    my $p = 0;
    for my $l (@g) { push @out, substr($d, $p, $l); $p += $l; }
    return @out;
}

sub fullwidth { my ($s) = @_; $s =~ s/([0-9])/chr(0xFF10 + $1)/ge; return $s; }
sub arabic    { my ($s) = @_; $s =~ s/([0-9])/chr(0x0660 + $1)/ge; return $s; }

# The formats people type (issue 10): [name, text, sql-literal-kind]
# kind 'raw': the text goes into the statement as is (UTF-8, tabs,
# newlines); 'esc': as an E'' literal spelled with \u escapes.
sub formats {
    my ($d) = @_;
    my @g = groups($d);
    return (
        ['plain', $d],
        ['spaces', join(' ', @g)],
        ['dashes', join('-', @g)],
        ['dots', join('.', @g)],
        ['double spaces', join('  ', @g)],
        ['tabs', join("\t", @g)],
        ['newlines', join("\n", @g)],
        ['crlf', join("\r\n", @g)],
        ['nbsp', join("\x{00A0}", @g)],
        ['zwsp between groups', join("\x{200B}", @g)],
        ['zwsp after every digit', join("\x{200B}", split //, $d)],
        ['full-width', fullwidth(join("\x{3000}", @g))],
        ['glued letters', 'a' . join(' ', @g) . 'b'],
        ['sentence', 'paid with ' . join(' ', @g) . ', thanks'],
        ['html nbsp', join('&nbsp;', @g)],
        ['arabic-indic', arabic(join(' ', @g))],
        ['escaped zwsp', join('\u200B', @g), 'esc'],
        ['escaped full-width', join(' ', map { join('', map { sprintf('\uFF1%s', $_) } split //, $_) } @g), 'esc'],
    );
}

# every (card, format) pair, cards taking turns so that each format meets
# several brands
my @PAIRS;
{
    my $i = 0;
    for my $f (formats('0' x 16)) {
        for my $k (0 .. 2) {
            my $card = $CARDS[($i + $k * 3) % @CARDS];
            my @all = formats($card);
            my ($match) = grep { $_->[0] eq $f->[0] } @all;
            push @PAIRS, [$card, @$match];
        }
        $i++;
    }
}

sub sql_literal {
    my ($text, $kind) = @_;
    $kind //= 'raw';
    if ($kind eq 'esc') {
        return "E'" . $text . "'";
    }
    if ($kind eq 'oneline') {
        # psql meta-commands are one line (and \copy splits E'' literals):
        # control characters as chr(n)
        my @parts = map {
            /^[\x00-\x1f]$/ ? 'chr(' . ord($_) . ')' : do { (my $q = $_) =~ s/'/''/g; "'$q'" }
        } grep { length } split /([\x00-\x1f])/, $text;
        return '(' . join(' || ', @parts) . ')';
    }
    (my $q = $text) =~ s/'/''/g;
    return "'$q'";
}

my $seq = 0;
sub uniq { $seq++; return $seq; }

sub arg_value {
    my ($name, $type, $ctx) = @_;
    $name //= '';
    my $n = uniq();
    if ($type eq 'bigint') {
        return $ctx->{pid} if $name eq 'product_id';
        return $ctx->{cat} if $name eq 'category_id';
        return 'NULL' if $name eq 'parent_id';
        return 42 if $name eq 'customer_id';
        return 100 if $name eq 'price_cents';
        return 1;
    }
    if ($type eq 'integer' || $type eq 'smallint') {
        my %v = (rating => 4, exp_month => 12, exp_year => 2099, on_hand => 10, lim => 10, off => 0);
        return $v{$name} // 1;
    }
    if ($type eq 'uuid') {
        return "(SELECT c FROM shop.cart_create(42) c, LATERAL shop.cart_add(c, $ctx->{pid}, 1) x)"
            if $name eq 'cart_id' || $name eq 'from_cart';
        return '(SELECT order_id FROM shop."order" ORDER BY created_at DESC LIMIT 1)' if $name eq 'order_id';
        return '(SELECT reservation_id FROM shop.reservation ORDER BY created_at DESC LIMIT 1)'
            if $name eq 'reservation_id';
        return 'gen_random_uuid()';
    }
    if ($type eq 'text' || $type eq 'character varying') {
        my %v = (payment_token => "'tok_visa'", idempotency_key => "'audit-key-$n'",
                 to_status => "'fulfilling'", carrier => "'UPS'", tracking_number => "'1Z999AA10123456784'",
                 provider_ref => "'ref-$n'", reason => "'audit'", token => "'tok_audit_$n'",
                 brand => "'visa'", last4 => "'4242'", sku => "'AUDIT-$n'", title => "'Audit $n'",
                 name => "'Audit category $n'", term => "'audit$n'", word => "'running'",
                 query => "'mug'", prefix => "'mu'", language => "'english'", sort => "'relevance'");
        return $v{$name} // "'x'";
    }
    return "ARRAY['cup']" if $type eq 'text[]';
    if ($type eq 'jsonb') {
        return qq('[{"product_id": $ctx->{pid}, "qty": 1}]') if $name eq 'items';
        return "'{}'";
    }
    return "'$ctx->{index}'::regclass" if $type eq 'regclass';
    return "shop.search_doc('Mug')" if $type eq 'shop.search_doc';
    return "'1 hour'" if $type eq 'interval';
    return 'true' if $type eq 'boolean';
    return '1' if $type eq 'real' || $type eq 'numeric' || $type eq 'double precision';
    return 'now()' if $type =~ /^timestamp/;
    die "audit.pl: no value for argument $name of type $type\n";
}

sub target_value {
    my ($type, $text, $kind, $variant) = @_;
    my $lit = sql_literal($text, $kind);
    return $lit if $type eq 'text' || $type eq 'character varying';
    return "ARRAY['cup', $lit]" if $type eq 'text[]';
    if ($type eq 'jsonb') {
        return "jsonb_build_object('note', $lit)" if $variant % 3 == 0;
        return "jsonb_build_object($lit, 1)" if $variant % 3 == 1;
        return "jsonb_build_array(jsonb_build_object('a', jsonb_build_array($lit)))";
    }
    die "audit.pl: no target form for type $type\n";
}

my %TEXTLIKE = map { $_ => 1 } ('text', 'character varying', 'text[]', 'jsonb');

sub cmd_calls {
    my ($file, $pid, $cat, $index) = @_;
    my $ctx = { pid => $pid, cat => $cat, index => $index };
    my (%args, @order);
    open my $fh, '<:encoding(UTF-8)', $file or die "$file: $!";
    while (<$fh>) {
        chomp;
        my ($proc, $fname, $ord, $aname, $atype, $hasdef) = split /\t/, $_, -1;
        push @order, $proc unless $args{$proc};
        push @{ $args{$proc} }, { fname => $fname, name => $aname, type => $atype, def => $hasdef eq 't' };
    }
    my ($calls, $targets) = (0, 0);
    for my $proc (@order) {
        my @a = @{ $args{$proc} };
        next if grep { $_->{type} eq 'internal' } @a;
        for my $t (grep { $TEXTLIKE{ $a[$_]{type} } } 0 .. $#a) {
            $targets++;
            my $v = 0;
            for my $pair (@PAIRS) {
                my ($card, $fmt, $text, $kind) = @$pair;
                my @parts;
                for my $i (0 .. $#a) {
                    next if $a[$i]{def} && $i != $t;
                    my $val = $i == $t ? target_value($a[$i]{type}, $text, $kind, $v)
                                       : arg_value($a[$i]{name}, $a[$i]{type}, $ctx);
                    push @parts, "$a[$i]{name} => $val";
                }
                print "SELECT shop.$a[0]{fname}(" . join(', ', @parts) . ");\n";
                $calls++;
                $v++;
            }
        }
    }
    print "-- audit: $calls calls over $targets text arguments\n";
}

sub cmd_columns {
    my ($file, $dir) = @_;
    my @cols;
    open my $fh, '<:encoding(UTF-8)', $file or die "$file: $!";
    while (<$fh>) {
        chomp;
        push @cols, [split /\t/, $_, -1];    # table, quoted column, column, type, insertable columns, id shape
    }
    my ($writes, $n) = (0, 0);
    for my $c (@cols) {
        my ($table, $qcol, $col, $type, $ins, $idshape) = @$c;
        # a column the guard's trigger declares as holding ids ('col=prefix#')
        # gets no card in that shape (the prefix and a decimal integer)
        my $idre;
        $idre = qr/^\Q$1\E-?[0-9]{1,19}$/ if ($idshape // '') =~ /^[^=]*=(.*)#$/;
        # six formats per column, taking turns
        my $p = $n * 6;
        for my $k (0 .. 5) {
            $p++ while defined $idre && $PAIRS[$p % @PAIRS][2] =~ $idre;
            my ($card, $fmt, $text, $kind) = @{ $PAIRS[$p++ % @PAIRS] };
            (my $key = $col) =~ s/'/''/g;
            my $typed_of = sub {
                my ($lit) = @_;
                return $type =~ /\[\]$/ ? "ARRAY[$lit]::$type"
                     : $type eq 'jsonb' ? "jsonb_build_object('note', $lit)"
                     : $type eq 'json' ? "json_build_object('note', $lit)"
                     : "${lit}::$type";
            };
            my $row_of = sub {
                my ($typed) = @_;
                return "jsonb_populate_record(NULL::$table, (SELECT to_jsonb(x) FROM $table x LIMIT 1)"
                    . " || jsonb_build_object('$key', $typed))";
            };
            # statements as written; the \copy meta-command on one line
            my $typed = $typed_of->(sql_literal($text, $kind));
            my $row = $row_of->($typed);
            (my $plain = $text) =~ s/\\u([0-9A-Fa-f]{4})/chr(hex $1)/ge if ($kind // '') eq 'esc';
            $plain //= $text;
            my $row1 = $row_of->($typed_of->(sql_literal(($kind // '') eq 'esc' ? $plain : $text, 'oneline')));
            print "UPDATE $table SET $qcol = $typed WHERE ctid = (SELECT ctid FROM $table LIMIT 1);\n";
            print "INSERT INTO $table ($ins) OVERRIDING SYSTEM VALUE SELECT $ins FROM $row;\n";
            my $f = "$dir/copy-$n-$k.txt";
            print "\\copy (SELECT $ins FROM $row1) TO '$f'\n";
            print "\\copy $table ($ins) FROM '$f'\n";
            $writes += 3;
        }
        $n++;
    }
    print "-- audit: $writes writes into $n columns\n";
}

# bash $'...' quoting of any text, byte by byte
sub bash_quote {
    my ($text) = @_;
    my $bytes = encode('UTF-8', $text);
    return "\$'" . join('', map { /[A-Za-z0-9 ]/ ? $_ : sprintf('\\x%02x', ord $_) } split //, $bytes) . "'";
}

sub cmd_pgbench {
    my ($dir) = @_;
    my @scripts = (
        ['search', 'SELECT * FROM shop.search(:v);'],
        ['upsert', "SELECT shop.product_upsert('AUDIT-PB', 'Audit', 100, description => :v);"],
        ['review', "INSERT INTO shop.review (product_id, customer_id, rating, body) SELECT min(product_id), 99, 4, :v FROM shop.product;"],
    );
    my $i = 0;
    for my $s (@scripts) {
        my $f = "$dir/pgbench-$s->[0].sql";
        open my $fh, '>:encoding(UTF-8)', $f or die "$f: $!";
        print $fh "$s->[1]\n";
        close $fh;
        for my $card (@CARDS) {
            my (undef, $text, $kind) = @{ (formats($card))[$i++ % 16] };
            print "\"\$PGBIN/pgbench\" -n -t 1 -M extended -D v=" . bash_quote($text) . " -f '$f' audit\n";
        }
    }
}

sub cmd_marker {
    my $i = 0;
    for my $f (formats($MARKER)) {
        my (undef, $text, $kind) = @$f;
        my $lit = sql_literal($text, $kind);
        # image URLs are one line (the control-character check): a format
        # with tabs or line breaks is planted in the other places only
        my $img = $text =~ /[\x00-\x1f\x7f]/ ? "'marker-image'" : $lit;
        print "SELECT shop.product_upsert('AUDIT-MARK-$i', 'Marker', 100, description => $lit, "
            . "attributes => jsonb_build_object('m', $lit), images => ARRAY[$img]);\n";
        print "INSERT INTO shop.synonym (term, synonyms) VALUES ('marker$i', ARRAY[$lit]);\n";
        $i++;
    }
}

# --- search ------------------------------------------------------------

my %digit_cache;
sub digit_of {
    my ($c) = @_;
    return $c if $c =~ /^[0-9]$/;
    return $digit_cache{$c} //= do { my $v = num($c); defined $v && $v =~ /^[0-9]$/ ? $v : '' };
}

my $SEP = qr/[\s\-.\x{00A0}\x{00AD}\x{034F}\x{061C}\x{1680}\x{180E}\x{2000}-\x{200F}\x{2010}-\x{2015}\x{2024}\x{2027}-\x{202F}\x{205F}-\x{206F}\x{2212}\x{3000}\x{30FB}\x{30FC}\x{FE00}-\x{FE0F}\x{FEFF}\x{FF0D}\x{FF0E}\x{FF65}\x{FF70}\x{0300}-\x{036F}\x{20D0}-\x{20FF}]/;

sub normalise_runs {
    my ($text) = @_;
    # escapes and entities first: \uXXXX \UXXXXXXXX (statements, JSON), &nbsp;
    $text =~ s/\\u([0-9a-fA-F]{4})/chr(hex $1)/ge;
    $text =~ s/\\U([0-9a-fA-F]{8})/my $c = hex $1; $c <= 0x10FFFF ? chr($c) : ''/ge;
    $text =~ s/\\[tnr]/ /g;
    $text =~ s/&(?:nbsp|ensp|emsp|thinsp|shy|zwj|zwnj|#160|#xa0|#173|#8203|#x200b);/ /gi;
    my @runs;
    while ($text =~ /(\d(?:$SEP|\d){11,})/g) {
        my $run = $1;
        my $digits = join '', map { digit_of($_) } grep { /\d/ } split //, $run;
        push @runs, $digits if length $digits >= 12;
    }
    return @runs;
}

sub cmd_search {
    my @files = @_;
    my %total;
    my $bytes = 0;
    my @needles = (@CARDS, $MARKER);
    for my $file (@files) {
        open my $fh, '<:raw', $file or next;
        local $/;
        my $raw = <$fh>;
        close $fh;
        next unless defined $raw;
        $bytes += length $raw;
        my $text = decode('UTF-8', $raw, Encode::FB_DEFAULT);
        my %hits;
        for my $run (normalise_runs($text)) {
            for my $needle (@needles) {
                my $pos = 0;
                while (($pos = index($run, $needle, $pos)) >= 0) {
                    $hits{$needle}++;
                    $pos++;
                }
            }
        }
        for my $needle (sort keys %hits) {
            print "$file\t" . length($raw) . "\t" . ($needle eq $MARKER ? 'marker' : 'card') . "\t$needle\t$hits{$needle}\n";
            $total{$needle eq $MARKER ? 'marker' : 'card'} += $hits{$needle};
        }
    }
    printf "TOTAL\t%d files\t%d bytes\tcard hits %d\tmarker hits %d\n",
        scalar @files, $bytes, $total{card} // 0, $total{marker} // 0;
}

my $cmd = shift @ARGV // '';
if ($cmd eq 'calls') { cmd_calls(@ARGV) }
elsif ($cmd eq 'columns') { cmd_columns(@ARGV) }
elsif ($cmd eq 'pgbench') { cmd_pgbench(@ARGV) }
elsif ($cmd eq 'marker') { cmd_marker() }
elsif ($cmd eq 'search') { cmd_search(@ARGV) }
else { die "usage: audit.pl calls|columns|pgbench|marker|search ...\n" }
