# session_measure.sh: sourced by test/cluster/session_cpu.sh and
# session_use_cpu.sh (after lib/cpu_setup.sh and cpu_cluster_up), what the
# two share: the shards loaded, a session token of customer 7 and a forged
# one (session_setup), customer 7's cart of 3 lines (session_cart, after the
# caller's "old" schema exists), and the measuring calls (many: N calls in
# one statement; refused: M refused cart_get, each followed by a
# product_get), each through cpu_setup.sh's measure.

session_setup() {
    cpu_shards_load
    q "$R" "$PR" router -c "SELECT shop_router.sync_product_ids()" >/dev/null
    TOKEN=$(q "$A" "$PA" s0 -At -c "SELECT shop.session_token(7)")
    FORGED="v1.8.${TOKEN#v1.7.}"
}

session_cart() {
    CART=$(q "$R" "$PR" router -U web -At <<SQL
SET client_min_messages = warning;
SET shop.session = '$TOKEN';
SELECT shop.cart_create(7) AS c \gset
SELECT shop.cart_add(:'c', 11), shop.cart_add(:'c', 12), shop.cart_add(:'c', 13) \g /dev/null
SELECT :'c';
SQL
)
}

head_sql() {
    echo '\set QUIET on'
    echo "SET shop.session = '$1';"
    echo 'SELECT pg_backend_pid() AS pid \gset'
    echo '\setenv PID :pid'
}
many() {   # label call: N calls in one statement
    local label=$1 call=$2
    {
        head_sql "$TOKEN"
        echo "SELECT count($call) FROM generate_series(1, 20) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        echo "SELECT count($call) FROM generate_series(1, $N) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/many.sql"
    measure "$label" "$BASE/many.sql" "$N"
}
refused() {   # label schema: M refused cart_get, each followed by a product_get
    local label=$1 fn=$2.cart_get g
    {
        head_sql "$FORGED"
        echo '\set ON_ERROR_STOP off'
        echo "SELECT shop.product_get(g) FROM generate_series(1, 20) g \\g /dev/null"
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t0"
        for g in $(seq 1 "$M"); do
            echo "SELECT $fn('$CART');"
            echo "SELECT shop.product_get($g) \\g /dev/null"
        done
        echo "\\! bash $TOP/test/cluster/cpu.sh \$PID $A $B > $BASE/t1"
    } >"$BASE/refused.sql"
    measure "$label" "$BASE/refused.sql" "$M"
}
