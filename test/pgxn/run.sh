#!/usr/bin/env bash
# pgxn: `make dist` builds the PGXN release zip (git archive), and the
# META.json in it is valid against the PGXN Meta Spec 1.0.0
# (scripts/pgxn-meta-check.pl) and says what shop is: the version of
# shop.control, PostgreSQL 15 and every extension shop.control requires as
# runtime prerequisites, a release status. Runs in a copy of the working
# tree committed to a throwaway repository, so it checks what is there now,
# committed or not.
set -euo pipefail
DIR="$TOP/tmp_check/pgxn"
SRC="$DIR/src"
rm -rf "$DIR"
mkdir -p "$SRC" "$DIR/dist"
git -C "$TOP" ls-files -z --cached --others --exclude-standard |
    (cd "$TOP" && xargs -0 cp --parents -t "$SRC" 2>/dev/null || true)
git -C "$SRC" init -q
git -C "$SRC" add -A
git -C "$SRC" -c user.name=test -c user.email=test@shop.invalid commit -q -m dist

make -C "$SRC" --no-print-directory -s dist DIST_DIR="$DIR/dist" >"$DIR/dist.log" 2>&1 ||
    { cat "$DIR/dist.log"; echo "make dist failed"; exit 1; }
cat "$DIR/dist.log"
zips=("$DIR"/dist/*.zip)
[ ${#zips[@]} = 1 ] && [ -f "${zips[0]}" ] || { echo "make dist made no zip"; exit 1; }
ZIP=${zips[0]}

# the members of the zip and its META.json (perl's core unzip, no unzip(1))
perl -MIO::Uncompress::Unzip=unzip,\$UnzipError -e '
    my ($zip, $dir) = @ARGV;
    my $u = IO::Uncompress::Unzip->new($zip) or die "cannot read $zip: $UnzipError\n";
    open my $list, ">", "$dir/members" or die;
    my $status;
    for ($status = 1; $status > 0; $status = $u->nextStream) {
        my $name = $u->getHeaderInfo->{Name};
        print $list "$name\n";
        if ($name =~ m{^[^/]+/META\.json$}) {
            open my $m, ">", "$dir/META.json" or die;
            my $buf;
            print $m $buf while $u->read($buf) > 0;
            close $m;
        }
    }
    die "error reading $zip\n" if $status < 0;
' "$ZIP" "$DIR"

bad=0
name=$(basename "$ZIP" .zip)
echo "$name.zip: $(wc -l <"$DIR/members") members"
if grep -v "^$name/" "$DIR/members" | grep -q .; then
    echo "members outside $name/:"; grep -v "^$name/" "$DIR/members" | head; bad=1
fi
sed "s|^$name/||" "$DIR/members" | grep -v '/$' >"$DIR/files"
for f in META.json Makefile shop.control shop--1.0.sql shop--1.0--1.1.sql README.md; do
    grep -qx "$f" "$DIR/files" || { echo "$f is not in the zip"; bad=1; }
done
if grep -E '^tmp_|\.(o|so|bc|zip)$' "$DIR/files"; then
    echo "build outputs or tmp_* in the zip"; bad=1
fi
[ -f "$DIR/META.json" ] || { echo "no META.json in the zip"; exit 1; }

# the PGXN Meta Spec, with the zip's files
xargs -a "$DIR/files" -d '\n' "$TOP/scripts/pgxn-meta-check.pl" "$DIR/META.json" || bad=1

# what shop is
perl -MJSON::PP -e '
    my ($meta_path, $control, $name) = @ARGV;
    open my $fh, "<", $meta_path or die; local $/; my $m = decode_json(<$fh>); close $fh;
    open $fh, "<", $control or die; my $c = <$fh>; close $fh;
    my ($default) = $c =~ /^default_version\s*=\s*\x27([^\x27]+)\x27/m;
    my ($requires) = $c =~ /^requires\s*=\s*\x27([^\x27]*)\x27/m;
    my $v = $default =~ /^\d+\.\d+$/ ? "$default.0" : $default;
    my @bad;
    push @bad, "version $m->{version} is not shop.control default_version $default ($v)" unless ($m->{version} // "") eq $v;
    push @bad, "the zip is not named $m->{name}-$m->{version}" unless $name eq "$m->{name}-$m->{version}";
    my $p = $m->{provides}{shop};
    push @bad, "provides has no shop" unless $p;
    push @bad, "provides.shop.version is not $v" unless $p && ($p->{version} // "") eq $v;
    push @bad, "provides.shop has no abstract" unless $p && $p->{abstract};
    my $r = $m->{prereqs}{runtime}{requires} // {};
    my $pg = $r->{PostgreSQL} // "";
    push @bad, "prereqs.runtime.requires.PostgreSQL is \"$pg\", not at least 15.0.0 (shop builds for PostgreSQL 15)"
        unless $pg =~ /^(?:>=\s*)?15\.0\.0(?:\s*,.*)?$/;
    for my $ext (split /\s*,\s*/, $requires // "") {
        push @bad, "prereqs.runtime.requires has no $ext (shop.control requires it)" unless exists $r->{$ext};
    }
    push @bad, "no release_status" unless $m->{release_status};
    print "$_\n" for @bad;
    exit(@bad ? 1 : 0);
' "$DIR/META.json" "$SRC/shop.control" "$name" || bad=1

[ "$bad" = 0 ] || exit 1
rm -rf "$SRC"
echo "make dist: $name.zip, META.json valid (PGXN Meta Spec 1.0.0)"
