#!/usr/bin/env bash
# crash_search: the shop_search index survives kill -9.
#
# A built segment (CREATE INDEX: log_newpage_range), pending-list inserts
# (generic WAL), updates, deletes, VACUUMs that fold the pending list into
# new segments (log_newpage_buffer + generic WAL on the metapage), merge
# segments and reuse released blocks,
# then more writes, all after the last checkpoint; the server is stopped
# with -m immediate and restarted, so every page comes back from WAL
# replay (with wal_consistency_checking on, replay also compares each
# replayed page with the primary's image).  Afterwards
# shop.search_verify must report nothing and every committed product must
# be found by a search for its own unique word.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/crash_search"
PORT=$(free_port crash_search)
cluster_init "$DIR" "$PORT" "wal_consistency_checking = 'all'" "max_wal_size = 1GB" "checkpoint_timeout = 1h"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -q -v ON_ERROR_STOP=1 -d crash"
"$PGBIN/createdb" crash

$PSQL <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (sku, title, brand, description, price_cents)
SELECT 'zq' || g, 'Widget zq' || g || ' model', 'Brand' || (g % 7), 'A widget for testing', 100 + g
  FROM generate_series(1, 2000) g;
REINDEX INDEX shop.product_search_idx;
CHECKPOINT;
-- everything below lives only in WAL
INSERT INTO shop.product (sku, title, brand, description, price_cents)
SELECT 'zq' || g, 'Gadget zq' || g, 'Brand' || (g % 7), 'Inserted after the checkpoint', 100 + g
  FROM generate_series(2001, 2600) g;
UPDATE shop.product SET price_cents = price_cents + 1, title = title || ' renamed'
 WHERE sku IN (SELECT 'zq' || g FROM generate_series(1, 2600, 13) g);
DELETE FROM shop.product WHERE sku IN (SELECT 'zq' || g FROM generate_series(5, 2600, 97) g);
VACUUM shop.product;
-- folds and merges that release and reuse blocks
SELECT format('UPDATE shop.product SET popularity = popularity + 1 WHERE sku LIKE %L', 'zq' || i || '%'),
       'VACUUM shop.product'
  FROM generate_series(1, 12) i \gexec
INSERT INTO shop.product (sku, title, brand, price_cents)
SELECT 'zq' || g, 'Late zq' || g, 'Brand1', 5 FROM generate_series(2601, 2700) g;
UPDATE shop.product SET popularity = 3 WHERE sku IN ('zq2650', 'zq10', 'zq2100');
DELETE FROM shop.product WHERE sku = 'zq2602';
-- an uncommitted insert must not come back
BEGIN;
INSERT INTO shop.product (sku, title, price_cents) VALUES ('zqghost', 'Ghost zqghost', 1);
SQL
before=$($PSQL -At -c "SELECT count(*) FROM shop.product")
# a transaction left open while the server dies
( $PSQL -c "BEGIN; INSERT INTO shop.product (sku, title, price_cents) VALUES ('zqopen', 'Open zqopen', 1); SELECT pg_sleep(30);" >/dev/null 2>&1 & )
sleep 1
cluster_stop "$DIR" immediate
cluster_start "$DIR"

fail=0
check() {  # check "what" "sql" "expected"
    local got
    got=$($PSQL -At -c "$2")
    if [ "$got" = "$3" ]; then
        echo "ok: $1"
    else
        echo "FAILED: $1: got '$got', expected '$3'"
        fail=1
    fi
}
check "products after recovery" "SELECT count(*) FROM shop.product" "$before"
check "products as planned" "SELECT $before" "2672"
check "search_verify finds nothing" "SELECT count(*) FROM shop.search_verify('shop.product_search_idx')" "0"
check "every product found by its own word" \
  "SELECT count(*) FROM shop.product p WHERE NOT EXISTS (
     SELECT 1 FROM shop.search_scan('shop.product_search_idx', jsonb_build_object('q', p.sku), 5) s
      WHERE s.ctid = p.ctid)" "0"
check "deleted products stay gone" "SELECT count(*) FROM shop.search('zq5 ')" "0"
check "renamed products found by their new title" "SELECT count(*) FROM shop.search('zq14 renamed') WHERE missing_words = 0" "1"
check "uncommitted rows not found" "SELECT count(*) FROM shop.search('zqghost') UNION ALL SELECT count(*) FROM shop.search('zqopen')" "0
0"
# the index keeps working: more writes, VACUUM, verify again
$PSQL -c "INSERT INTO shop.product (sku, title, price_cents) VALUES ('zqafter', 'After zqafter', 1)"
$PSQL -c "VACUUM shop.product"
check "index usable after recovery" "SELECT count(*) FROM shop.search('zqafter')" "1"
check "search_verify after more writes" "SELECT count(*) FROM shop.search_verify('shop.product_search_idx')" "0"
exit $fail
