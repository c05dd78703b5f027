#!/usr/bin/env bash
# cluster-demo.sh: `make cluster-demo` (docs/scale-out.md). Starts a
# sharded shop on throwaway clusters of its own (tmp_cluster_demo/: a
# router and 4 shard databases on two PostgreSQL clusters, local sockets
# only), loads a catalog through the router, and walks through a shopping
# session against the router: demo/cluster/*.sql. The clusters keep
# running for you to try; `make cluster-demo-stop` (or
# `scripts/cluster-demo.sh stop`) stops them.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/pgenv.sh"
. "$TOP/scripts/cluster.sh"
BASE="$TOP/tmp_cluster_demo"

tmp_install_setup
R="$BASE/router" A="$BASE/shards_a" B="$BASE/shards_b"
shop_cluster_down
if [ "${1:-}" = stop ]; then
    echo "shop cluster demo stopped"
    exit 0
fi
start=$(date +%s)
shop_cluster_up "$BASE"
echo "== started a router ($R, port $PR) and 4 shards on two clusters ($A port $PA: s0, s2; $B port $PB: s1, s3)"
echo "== loading a catalog through the router"
q "$R" "$PR" router -U backoffice -v products="${CLUSTER_DEMO_PRODUCTS:-400}" -f "$TOP/demo/cluster/00-load.sql"
# a load ends with VACUUM on every shard (docs/scale-out.md, "Bulk loads")
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    q "$dir" "$port" "s$i" -c "VACUUM (ANALYZE) shop.product"
done
for f in "$TOP"/demo/cluster/[1-9]*.sql; do
    q "$R" "$PR" router -U backoffice -P pager=off -f "$f"
done
echo "== products per shard:"
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    echo "   s$i: $(q "$dir" "$port" "s$i" -At -c "SELECT format('%s products, %s carts, %s orders, %s holds held', (SELECT count(*) FROM shop.product), (SELECT count(*) FROM shop.cart), (SELECT count(*) FROM shop.\"order\"), (SELECT count(*) FROM shop.reservation WHERE status = 'held'))")"
done
echo "== done in $(( $(date +%s) - start )) s. The router: psql -h $R -p $PR -U backoffice router"
echo "   (make cluster-demo-stop stops the three clusters)"
