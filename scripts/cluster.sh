# cluster.sh: sourced (after scripts/pgenv.sh) by test/cluster/run.sh and
# scripts/cluster-demo.sh. shop_cluster_up BASE builds a sharded shop on
# throwaway clusters under BASE (docs/scale-out.md): a router cluster
# (database "router" with shop_router and PL/Proxy) in front of two shard
# clusters holding two shard databases each, 4 partitions: p0 and p2 (s0,
# s2) on cluster A, p1 and p3 (s1, s3) on cluster B; every cluster has the
# login roles web (shop_storefront) and backoffice (shop_admin); the shard
# clusters share shop.session_secret and preload shop. It sets
# R A B (cluster directories), PR PA PB (ports), PART (the partitions'
# connection strings) and ROUTER, and defines q DIR PORT DB [psql args].
# shop_cluster_down [mode] stops the three.

q() { local dir=$1 port=$2 db=$3; shift 3; "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -q -h "$dir" -p "$port" -d "$db" "$@"; }

shop_cluster_up() {
    local base=$1 i dir port c
    R="$base/router" A="$base/shards_a" B="$base/shards_b"
    rm -rf "$base"
    mkdir -p "$base"
    [ "$(id -u)" = 0 ] && chown postgres: "$base"
    PR=$(free_port "${base##*/}_router"); cluster_init "$R" "$PR"; cluster_start "$R"
    # every shard shares the secret that signs the storefront's session
    # tokens and what one shard tells another (docs/scale-out.md)
    local secret="shop.session_secret = 'the cluster test secret: thirty-two characters or more'"
    # shop preloaded, as docs/operations.md asks of a production server:
    # without it every search inserts its row into shop.search_log and
    # commits (a WAL flush), once per shard for a routed search, where a
    # preloaded shop copies it into its shared-memory ring; the sweeper's
    # round is an hour, so that it does not run in the middle of a test
    local preload="shared_preload_libraries = 'shop'" sweep="shop.sweep_interval = 3600"
    PA=$(free_port "${base##*/}_a"); cluster_init "$A" "$PA" "$secret" "$preload" "$sweep"; cluster_start "$A"
    PB=$(free_port "${base##*/}_b"); cluster_init "$B" "$PB" "$secret" "$preload" "$sweep"; cluster_start "$B"
    export PGUSER=postgres
    PART=("host=$A port=$PA dbname=s0" "host=$B port=$PB dbname=s1"
          "host=$A port=$PA dbname=s2" "host=$B port=$PB dbname=s3")
    ROUTER="host=$R port=$PR dbname=router"
    for i in 0 1 2 3; do
        dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
        "$PGBIN/createdb" -h "$dir" -p "$port" "s$i"
        q "$dir" "$port" "s$i" -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
    done
    "$PGBIN/createdb" -h "$R" -p "$PR" router
    q "$R" "$PR" router <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop_router CASCADE;
CREATE SERVER shop_cluster FOREIGN DATA WRAPPER plproxy
    OPTIONS (p0 '${PART[0]}', p1 '${PART[1]}', p2 '${PART[2]}', p3 '${PART[3]}');
CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster;
GRANT USAGE ON FOREIGN SERVER shop_cluster TO shop_storefront, shop_admin;
SELECT shop_router.cluster_setup() \g /dev/null
SQL
    for c in "$R $PR router" "$A $PA postgres" "$B $PB postgres"; do
        # shellcheck disable=SC2086
        q $c -c "CREATE ROLE web LOGIN IN ROLE shop_storefront; CREATE ROLE backoffice LOGIN IN ROLE shop_admin"
    done
}

shop_cluster_down() {
    cluster_stop "$R" "${1:-fast}"; cluster_stop "$A" "${1:-fast}"; cluster_stop "$B" "${1:-fast}"
}

# shop_standby_up SRC_DIR SRC_PORT DIR: a hot standby of the cluster in
# SRC_DIR (pg_basebackup -R, streaming), in DIR on a port of its own
# (STANDBY_PORT); the caller stops it (cluster_stop DIR). The read route of
# docs/scale-out.md ("Read replicas") names its shard databases in a second
# PL/Proxy server (shop_cluster_ro).
shop_standby_up() {
    local src=$1 sport=$2 dir=$3
    rm -rf "$dir"; mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    STANDBY_PORT=$(free_port "${dir##*/}_standby")
    as_owner "$PGBIN/pg_basebackup" -h "$src" -p "$sport" -U postgres -D "$dir/data" -X stream -c fast -R \
        -d "application_name=${dir##*/}"
    {
        echo "port = $STANDBY_PORT"
        echo "unix_socket_directories = '$dir'"
        echo "hot_standby = on"
    } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
    cluster_start "$dir"
}
