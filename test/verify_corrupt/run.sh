#!/usr/bin/env bash
# verify_corrupt: shop.search_verify notices damage to the structures that
# ranked scans trust without reading postings: a skip entry's score bound
# lowered on disk (pruning would then skip rows it must return), a
# document's norm changed, and a facet column entry's price bucket
# changed (facets count from the column).  The server is stopped, bytes
# are changed in the index file, and after a restart verify must report
# all three, while it reported nothing before.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/verify_corrupt"
PORT=$(free_port verify_corrupt)
cluster_init "$DIR" "$PORT"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -q -v ON_ERROR_STOP=1 -d corrupt"
"$PGBIN/createdb" corrupt

$PSQL <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (sku, title, brand, description, price_cents, popularity)
SELECT 'v' || g, 'Widget cable v' || g, 'Brand' || (g % 7), 'A widget for testing ' || repeat('long ', g % 9), 100 + g, g % 50
  FROM generate_series(1, 3000) g;
REINDEX INDEX shop.product_search_idx;
CHECKPOINT;
SQL
fail=0
clean=$($PSQL -At -c "SELECT count(*) FROM shop.search_verify('shop.product_search_idx')")
[ "$clean" = 0 ] || { echo "verify found $clean problems in an intact index"; fail=1; }
file="$DIR/data/$($PSQL -At -c "SELECT pg_relation_filepath('shop.product_search_idx')")"
cluster_stop "$DIR" fast

# page flags sit in the special space: pd_special (bytes 16-17), then
# BlockNumber next, uint16 flags.  Skip pages are flag 0x80, norm pages
# 0x100; records start at byte 24 (the page header, MAXALIGNed).
# perl-base is essential in Debian, so this needs nothing installed
perl -e '
    my ($path) = @ARGV;
    open(my $fh, "+<:raw", $path) or die "open $path: $!";
    my %done;
    my $blk = 0;
    while (read($fh, my $page, 8192) == 8192) {
        my $base = $blk++ * 8192;
        my $special = unpack("v", substr($page, 16, 2));
        next if $special == 0 || $special >= 8192;
        my $flags = unpack("v", substr($page, $special + 4, 2));
        if ($flags == 0x80 && !$done{skip}) {
            # every entry: lastdoc, postblk, postoff, pad, maxt (float4 at +12)
            for my $i (0 .. int((8192 - 24 - 16) / 16) - 1) {
                seek($fh, $base + 24 + $i * 16 + 12, 0);
                print $fh pack("f<", 0.0);
            }
            $done{skip} = 1;
        } elsif ($flags == 0x800 && !$done{fcol}) {
            # facet column entry of docid 0: tid (6 bytes), flags, pr
            seek($fh, $base + 24 + 7, 0);
            print $fh pack("C", ord(substr($page, 24 + 7, 1)) ^ 0x01);
            $done{fcol} = 1;
        } elsif ($flags == 0x100 && !$done{norm}) {
            seek($fh, $base + 24, 0);
            print $fh pack("v", 999);    # title length of docid 0
            $done{norm} = 1;
        }
        seek($fh, $blk * 8192, 0);
    }
    close($fh) or die "close: $!";
    die "did not find a skip page, a norm page and a facet column page\n"
        unless $done{skip} && $done{norm} && $done{fcol};
' "$file"
cluster_start "$DIR"
$PSQL -At -F ' | ' -c "SELECT kind, detail FROM shop.search_verify('shop.product_search_idx')" >"$DIR/report.txt"
grep -q 'score bound' "$DIR/report.txt" || { echo "verify missed the lowered score bound"; fail=1; }
grep -q 'norms of document 0' "$DIR/report.txt" || { echo "verify missed the changed norm"; fail=1; }
grep -q 'facet column entry of document 0' "$DIR/report.txt" || { echo "verify missed the changed facet column entry"; fail=1; }
if [ "$fail" != 0 ]; then
    sed 's/^/  /' "$DIR/report.txt" | head -20
    exit 1
fi
echo "verify reported $(wc -l <"$DIR/report.txt") problems after the damage, none before"
