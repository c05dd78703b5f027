#!/usr/bin/env bash
# popularity_sweep: the refresh writes one batch of new popularity values
# into shop.product and queues the rest; the preloaded sweeper writes the
# rest batch by batch, one transaction each, until every product holds the
# value the refresh computed (issue 11).
set -euo pipefail
TOP=${TOP:?}
. "$TOP/scripts/pgenv.sh"
PGBIN=${PGBIN:?}

NAME=popularity_sweep
DIR="$TOP/tmp_check/$NAME"
PORT=$(free_port $NAME)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600" \
    "shop.popularity_apply_batch = 4"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
export PGDATABASE=pop
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)

"$PGBIN/createdb" pop
"${PSQL[@]}" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT g, 'PS-' || g, 'Product ' || g, 100 FROM generate_series(1, 60) g;
-- paid orders of two products each, products 1..50
WITH o AS (
    INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents)
    SELECT 1 + g % 25, 'paid', 'USD', 0, 0 FROM generate_series(1, 150) g
    RETURNING order_id)
INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty)
SELECT o.order_id, n, 1 + (abs(hashtext(o.order_id::text || n)) % 50), 's', 't', 0, 1
  FROM o, generate_series(1, 2) n;
SQL

pending=$("${PSQL[@]}" -c "SELECT shop.rebuild_recommendations() ->> 'popularity_pending'")
written=$("${PSQL[@]}" -c "SELECT count(*) FROM shop.product WHERE popularity > 0")
echo "rebuild: $written product rows written, $pending queued"
if [ "$written" -gt 4 ] || [ "$pending" -lt 20 ]; then
    echo "FAIL: the rebuild should write one batch (4) and queue the rest; wrote $written, queued $pending"
    exit 1
fi

# the sweeper: one round (sweep + the queued batches)
"${PSQL[@]}" -c "ALTER SYSTEM SET shop.sweep_interval = 1" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 60); do
    left=$("${PSQL[@]}" -c "SELECT count(*) FROM shop.popularity_pending")
    [ "$left" = 0 ] && break
    sleep 1
done
"${PSQL[@]}" -c "ALTER SYSTEM SET shop.sweep_interval = 3600" -c "SELECT pg_reload_conf()" >/dev/null
differ=$("${PSQL[@]}" -c "SELECT count(*) FROM shop.product p LEFT JOIN shop.product_popularity pp USING (product_id)
                           WHERE p.popularity IS DISTINCT FROM coalesce(pp.popularity, 0)")
echo "after the sweeper: $left queued, $differ products differ from the computed value"
if [ "$left" != 0 ] || [ "$differ" != 0 ]; then
    echo "FAIL: the sweeper did not write the queued popularity values"
    exit 1
fi
# in batches of 4, one transaction each (the log line of the round)
if ! grep -q 'wrote the popularity of [0-9]* products in [0-9]* batches' "$DIR/server.log"; then
    echo "FAIL: no sweeper log line for the popularity batches"
    exit 1
fi
grep -ho 'wrote the popularity of [0-9]* products in [0-9]* batches' "$DIR/server.log" | head -3
echo "ok"
