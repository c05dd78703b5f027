#!/usr/bin/env bash
# version_cpu.sh (not a test; bench/results/2026-12-06-clu6.md): what the
# search statistics' version triggers cost a shard's writers.  On a
# database with shop and a catalog (scripts/load_synthetic.sql), as a
# superuser: PGHOST, PGPORT and DB name it.  Each popularity batch
# (shop._popularity_apply of 1,000 moved products) and each group of S
# ships (shop.order_ship, a one-line order) runs with every variant in
# turn, batch by batch, and the measuring backend's CPU
# (/proc/<pid>/schedstat) is summed per variant:
#   0  no version triggers (a single node)
#   1  shop._shard_setup()'s triggers (the bump in their WHEN)
#   2  the same trigger calling a PL/pgSQL function per row (37637be)
# VARIANTS="0 2 1" B=30 S=20 SHIPB=10 test/cluster/version_cpu.sh
# It drops the version triggers at the end: run shop._shard_setup() again
# on a shard.
set -uo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PGOPTIONS="-c client_min_messages=warning"
DB=${DB:-bench}; B=${B:-40}; S=${S:-20}; VARIANTS=${VARIANTS:-0 1}
PSQL="$PGBIN/psql -X -q -At -d $DB -v ON_ERROR_STOP=1"
cpu() { awk '{print $1}' /proc/$1/schedstat; }
variant() {
  if [ "$1" = 1 ]; then $PSQL -c "DROP TRIGGER IF EXISTS product_search_version ON shop.product; SELECT shop._shard_setup()" >/dev/null
  elif [ "$1" = 2 ]; then $PSQL -c "
    CREATE OR REPLACE FUNCTION public.version_cpu_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS \$f\$
    BEGIN PERFORM pg_catalog.pg_advisory_xact_lock_shared(7316001601::pg_catalog.int8);
          PERFORM pg_catalog.nextval('shop.search_version'::pg_catalog.regclass); RETURN NULL; END \$f\$;
    DROP TRIGGER IF EXISTS product_search_version ON shop.product;
    CREATE TRIGGER product_search_version AFTER INSERT OR UPDATE OR DELETE ON shop.product FOR EACH ROW EXECUTE FUNCTION public.version_cpu_row();"
  else $PSQL -c "DO \$\$ DECLARE t text; BEGIN FOREACH t IN ARRAY ARRAY['product','synonym','category'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON shop.%I', t || '_search_version', t);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON shop.%I', t || '_search_version_truncate', t); END LOOP; END \$\$"; fi
}
# paid orders, moved to fulfilling, to ship (products 1..300 with ample stock)
if [ "${SHIPB:-10}" -gt 0 ]; then
$PSQL <<SQL >/dev/null
SELECT count(shop.stock_set(p, 100000)) FROM generate_series(1, 300) p;
CREATE TABLE IF NOT EXISTS bench_order (k serial PRIMARY KEY, order_id uuid);
DO \$\$
DECLARE c uuid; o uuid;
BEGIN
  FOR i IN 1..($S * ${SHIPB:-10} * 3) LOOP
    c := shop.cart_create(100000 + i);
    PERFORM shop.cart_add(c, 1 + i % 300, 1);
    o := shop.checkout(c, 'tok_visa', 'version-cpu-' || i || '-' || clock_timestamp(),
                       '{"name": "A", "line1": "1 Main St", "city": "Boston", "region": "MA", "country": "US"}');
    PERFORM shop.order_transition(o, 'fulfilling');
    INSERT INTO bench_order (order_id) VALUES (o);
    COMMIT;
  END LOOP;
END \$\$;
SQL
fi
# the first order still to ship
next=$($PSQL -c "SELECT min(k) FROM bench_order b JOIN shop.\"order\" o USING (order_id) WHERE o.status = 'fulfilling'")
coproc P { $PSQL ; }
echo "SELECT pg_backend_pid();" >&${P[1]}; read -r pid <&${P[0]}
declare -A pop ship npop nship
for b in $(seq 1 $B); do
  for v in $VARIANTS; do
    variant $v
    lo=$(( 1 + ((b * 2 + v) % 18) * 1000 ))
    $PSQL -c "INSERT INTO shop.product_popularity AS o (product_id, popularity)
              SELECT product_id, 1 + random() * 10 FROM shop.product WHERE product_id BETWEEN $lo AND $((lo + 999))
              ON CONFLICT (product_id) DO UPDATE SET popularity = excluded.popularity;
              INSERT INTO shop.popularity_pending SELECT product_id FROM shop.product WHERE product_id BETWEEN $lo AND $((lo + 999)) ON CONFLICT DO NOTHING" >/dev/null
    c0=$(cpu $pid); echo "SELECT shop._popularity_apply(1000);" >&${P[1]}; read -r x <&${P[0]}; c1=$(cpu $pid)
    pop[$v]=$(( ${pop[$v]:-0} + c1 - c0 )); npop[$v]=$(( ${npop[$v]:-0} + 1 ))
    if [ $b -le ${SHIPB:-10} ]; then
      c0=$(cpu $pid)
      echo "DO \$\$ BEGIN FOR i IN $next..$((next + S - 1)) LOOP PERFORM shop.order_ship((SELECT order_id FROM bench_order WHERE k = i), 'UPS', 'T' || i); COMMIT; END LOOP; END \$\$; SELECT 1;" >&${P[1]}
      read -r x <&${P[0]}; c1=$(cpu $pid); next=$((next + S))
      ship[$v]=$(( ${ship[$v]:-0} + c1 - c0 )); nship[$v]=$(( ${nship[$v]:-0} + S ))
    fi
  done
done
exec {P[1]}>&-
for v in $VARIANTS; do
  echo "triggers=$v popbatch_ms=$(echo "scale=3; ${pop[$v]} / ${npop[$v]} / 1000000" | bc) (x${npop[$v]}) ship_us=$(echo "scale=1; ${ship[$v]:-0} / ${nship[$v]:-1} / 1000" | bc) (x${nship[$v]})"
done
variant 0
