#!/usr/bin/env bash
# dump: pg_dump + restore of a database using shop keeps every row of every
# table the extension registers with pg_extension_config_dump, and the
# restored database still works (sequences continue, SKUs stay unique).
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/dump"
PORT=$(free_port dump)
cluster_init "$DIR" "$PORT"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -v ON_ERROR_STOP=1 -q"

$PGBIN/createdb src
$PSQL -d src <<'SQL'
CREATE EXTENSION shop CASCADE;
SELECT shop.category_add('Root') AS r \gset
SELECT shop.category_add('Child', :r) AS c \gset
SELECT shop.product_upsert('D-' || g, 'Dump product ' || g, 100 * g, brand => 'B' || (g % 3),
                           category_id => :c, attributes => jsonb_build_object('n', g))
  FROM generate_series(1, 50) g;
SELECT shop.review_add(p.product_id, cust, 1 + (p.product_id + cust)::int % 5)
  FROM shop.product p, generate_series(1, 3) cust;
INSERT INTO shop.stock (product_id, on_hand) SELECT product_id, 10 FROM shop.product;
INSERT INTO shop."order" (customer_id, status, currency, subtotal_cents, total_cents)
VALUES (42, 'paid', 'USD', 100, 100);
INSERT INTO shop.order_line SELECT order_id, 1, 1, 'D-1', 'Dump product 1', 100, 1 FROM shop."order";
INSERT INTO shop.copurchase VALUES (1, 2, 1, 0.5);
INSERT INTO shop.view_event (customer_id, product_id) VALUES (42, 1);
INSERT INTO shop.event (topic, payload) VALUES ('test.dump', '{"ok": true}');
SQL

# A fingerprint of every user-data table registered for dumping.
fingerprint() {
    $PSQL -At -d "$1" <<'SQL'
SELECT string_agg(format('%s %s %s', t, n, h), E'\n' ORDER BY t)
  FROM (
    SELECT c.oid::regclass::text AS t,
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, true, '')))[1]::text AS n,
           (xpath('/row/h/text()', query_to_xml(format(
               'SELECT md5(coalesce(string_agg(x::text, '','' ORDER BY x::text), '''')) AS h FROM %s x',
               c.oid::regclass), false, true, '')))[1]::text AS h
      FROM pg_extension e, unnest(e.extconfig) cfg(oid)
      JOIN pg_class c ON c.oid = cfg.oid
     WHERE e.extname = 'shop' AND c.relkind = 'r') s;
SQL
}

before=$(fingerprint src)
echo "$before"
# every table in schema shop except derived ones must be registered
# (event_group neither: consumer groups are positions in this cluster's
# transaction history, docs/operations.md "Dump and restore"; nor
# sweep_state, when this cluster's sweeper last ran)
unregistered=$($PSQL -At -d src -c "
    SELECT string_agg(c.relname, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'shop' AND c.relkind = 'r' AND c.relname NOT IN ('product_sku', 'event_group', 'sweep_state')
       AND c.oid <> ALL ((SELECT extconfig FROM pg_extension WHERE extname = 'shop')::oid[])")
if [ -n "$unregistered" ]; then
    echo "tables not registered with pg_extension_config_dump: $unregistered"
    exit 1
fi

$PGBIN/pg_dump -Fc -d src -f "$DIR/src.dump"
$PGBIN/createdb dst
$PGBIN/pg_restore --exit-on-error -d dst "$DIR/src.dump"
after=$(fingerprint dst)
if [ "$before" != "$after" ]; then
    echo "restored data differs:"
    diff <(echo "$before") <(echo "$after") || true
    exit 1
fi
# the restored database works: sequences continue past the restored ids,
# SKUs are still unique, aggregates still move
$PSQL -d dst <<'SQL'
DO $$
DECLARE id bigint; n bigint;
BEGIN
    id := shop.product_upsert('D-NEW', 'After restore', 5);
    IF id <= 50 THEN RAISE EXCEPTION 'sequence restarted: new product_id %', id; END IF;
    IF shop.product_upsert('D-7', 'Dump product 7 renamed', 700) <> 7 THEN
        RAISE EXCEPTION 'sku lookup lost after restore';
    END IF;
    SELECT count(*) INTO n FROM shop.product_sku;
    IF n <> 51 THEN RAISE EXCEPTION 'product_sku has % rows, expected 51', n; END IF;
    PERFORM shop.review_add(7, 99, 5);
    IF (SELECT rating_count FROM shop.product WHERE product_id = 7) <> 4 THEN
        RAISE EXCEPTION 'rating aggregates broken after restore';
    END IF;
END $$;
SQL
echo "dump/restore kept every row"
