#!/usr/bin/env bash
# bulk_update: an UPDATE of thousands of products, in a session whose
# first UPDATE of shop.product changed one row, is planned for thousands
# of rows.  The SKU trigger of shop.product joins the statement's
# transition tables (old_rows, new_rows); in 1.0 that join kept the plan
# of the session's first update, a nested loop made for one row, and a
# later bulk update (the sweeper's popularity refresh) compared every old
# row with every new one.  auto_explain shows the trigger's plans of the
# bulk update: its join of the transition tables must not be a nested loop.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/bulk_update"
PORT=$(free_port bulk_update)
cluster_init "$DIR" "$PORT"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -v ON_ERROR_STOP=1 -q"

$PGBIN/createdb t
$PSQL -d t <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'BU-' || g, 'Bulk update product ' || g, 100 + g FROM generate_series(1, 3000) g;
ANALYZE shop.product, shop.product_sku;
SQL

# one session: a one-row update first, then 3,000 rows (a popularity
# refresh), then 3,000 SKUs renamed; only the last two are explained
plans=$($PSQL -d t 2>&1 <<'SQL'
UPDATE shop.product SET popularity = 0.1 WHERE product_id = 1;
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
UPDATE shop.product SET popularity = 0.2 WHERE product_id <= 3000;
UPDATE shop.product SET sku = 'BU2-' || product_id WHERE product_id <= 3000;
SQL
)
fail=0
if ! grep -q "Query Text: DELETE FROM shop.product_sku" <<<"$plans"; then
    echo "no plan of the SKU trigger was logged:"; echo "$plans" | head -40; fail=1
fi
# a nested loop over the two transition tables filters on their key
if grep -Eq "Join Filter: .*\(o\.product_id = n\.product_id\)" <<<"$plans"; then
    echo "the SKU trigger joined the transition tables of a 3,000-row update with a nested loop:"
    grep -B4 -A4 "Join Filter: .*(o.product_id = n.product_id)" <<<"$plans" | head -40
    fail=1
fi
# and the trigger still does its job: the renamed SKUs are registered
$PSQL -At -d t -c "
    SELECT count(*) FILTER (WHERE s.sku = 'BU2-' || p.product_id), count(*)
      FROM shop.product p LEFT JOIN shop.product_sku s ON s.product_id = p.product_id" >"$DIR/skus"
if [ "$(cat "$DIR/skus")" != "3000|3000" ]; then
    echo "product_sku after the rename (renamed|rows): $(cat "$DIR/skus"), expected 3000|3000"; fail=1
fi
[ "$fail" = 0 ] && echo "bulk updates plan the SKU trigger's join for their size"
exit "$fail"
