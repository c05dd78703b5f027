#!/usr/bin/env bash
# demo.sh: `make demo`. Installs shop, starts a throwaway cluster of its own
# (tmp_demo/, private port and socket, never a system cluster), loads the
# real catalogs and order history from ../shared/data (or the synthetic
# catalog when that is absent), and walks through a shopping session: the
# demo/NN-*.sql files in order. `make demo-stop` (or `scripts/demo.sh stop`)
# stops the cluster.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_demo"

tmp_install_setup
if [ "${1:-}" = stop ]; then
    cluster_stop "$DIR"
    echo "shop demo cluster stopped"
    exit 0
fi

start=$(date +%s)
# The system-wide install, so CREATE EXTENSION shop works in your own
# clusters too (skipped without the right to write there).
if [ "${SHOP_SYSTEM_INSTALL:-1}" = 1 ]; then
    if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
        make -C "$TOP" --no-print-directory -s install >/dev/null && echo "== installed shop into $("$PG_CONFIG" --pkglibdir)"
    else
        echo "== not root: shop is installed only into $TMP_INSTALL (sudo make install for the system)"
    fi
fi

cluster_stop "$DIR"
PORT=$(free_port demo)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 60" \
    "shop.sweep_databases = 'shop'" "work_mem = '64MB'" "maintenance_work_mem = '512MB'" \
    "max_wal_size = '4GB'"
# shop.sweep_databases belongs to the sweeper; drop the line if this build has none
if ! grep -q '"shop.sweep_databases"' "$TOP"/src/*.c 2>/dev/null; then
    as_owner sed -i "/^shop.sweep_databases/d" "$DIR/data/postgresql.conf"
fi
cluster_start "$DIR"
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -v ON_ERROR_STOP=1"
echo "== started a throwaway PostgreSQL 15 in $DIR (port $PORT)"

$PGBIN/createdb shop
$PSQL -q -d shop -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE;"
DATA="${SHARED_DATA-$TOP/../shared/data}"    # README.md: SHARED_DATA=dir
if [ -f "$DATA/chorus_icecat_supahands/products.csv" ] && [ -f "$DATA/uci_online_retail/baskets.csv" ]; then
    DATA=$(cd "$DATA" && pwd)
    echo "== loading the real catalogs and order history from $DATA"
    $PSQL -q -d shop -v datadir="$DATA" -f "$TOP/scripts/load_real.sql"
else
    echo "== no real data set (SHARED_DATA=dir, default ../shared/data): using the built-in synthetic catalog instead"
    $PSQL -q -d shop -v scale="${DEMO_SCALE:-20000}" -f "$TOP/scripts/load_synthetic.sql"
fi
$PSQL -q -d shop -f "$TOP/scripts/load_finish.sql"

for f in "$TOP"/demo/*.sql; do
    [ -e "$f" ] || continue
    $PSQL -q -d shop -P pager=off -f "$f"
done

cat <<MSG

== demo done in $(( $(date +%s) - start )) s. The cluster is still running:
     psql -h $DIR -p $PORT -U postgres shop
   stop it with:
     make demo-stop
MSG
