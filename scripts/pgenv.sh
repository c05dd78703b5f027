# pgenv.sh: sourced by the demo, test and bench scripts. Builds a private
# copy of the PostgreSQL 15 installation with shop installed into it
# (tmp_install/, like PostgreSQL's own "make check"), and starts throwaway
# clusters from it on a private port and socket directory. Nothing here
# touches a system cluster or the system's extension directory.
#
# PostgreSQL finds its share/ and lib/ directories relative to its own
# binary, so a hard-linked copy of /usr/lib/postgresql/15 and
# /usr/share/postgresql/15 under tmp_install/ behaves as an installation of
# its own, into which `make install DESTDIR=tmp_install` puts shop.

TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
TMP_INSTALL="$TOP/tmp_install"

# Run a command as the cluster owner: PostgreSQL refuses to run as root, so
# root runs the server as the "postgres" user the Debian packages create.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# As root, the server runs as "postgres", which must be able to reach the
# private installation and the cluster directories under $TOP.  A clone
# under /root (mode 700) is not reachable: give the directories on the way
# search permission for others (x only: nothing becomes listable or
# readable), and say so.
owner_can_reach_top() {
    [ "$(id -u)" = 0 ] || return 0
    runuser -u postgres -- test -x "$TOP" 2>/dev/null && return 0
    local d=$TOP
    while [ "$d" != / ]; do
        if [ -n "$(find "$d" -maxdepth 0 ! -perm -o+x 2>/dev/null)" ]; then
            echo "shop: giving others search permission (o+x) on $d so the postgres user can reach $TOP" >&2
            chmod o+x "$d"
        fi
        d=$(dirname "$d")
    done
    runuser -u postgres -- test -x "$TOP" ||
        { echo "shop: the postgres user cannot reach $TOP; clone the project somewhere it can" >&2; return 1; }
}

# tmp_install_current LIBDIR SHAREDIR: true when tmp_install already holds
# this checkout's build, as files of its own: the library and every control
# and script file the install writes, byte for byte and with one link (a
# copy of an installation that has shop holds links to that one's files).
tmp_install_current() {
    local f inst
    for f in "$TOP/shop.so" "$TOP/shop_router.so" "$TOP"/*.control "$TOP"/*--*.sql; do
        case $f in
            *.so) inst="$TMP_INSTALL$1/$(basename "$f")" ;;
            *) inst="$TMP_INSTALL$2/extension/$(basename "$f")" ;;
        esac
        [ -e "$f" ] && cmp -s "$f" "$inst" && [ "$(stat -c %h "$inst")" = 1 ] || return 1
    done
}

# tmp_install_setup: (re)create the private installation and install shop
# into it. Cheap: hard links, then PGXS's install. Nothing is ever written
# through a link (test/system_files checks the system's files after it).
tmp_install_setup() {
    local libdir sharedir
    owner_can_reach_top || return 1
    libdir=$("$PG_CONFIG" --pkglibdir)         # /usr/lib/postgresql/15/lib
    sharedir=$("$PG_CONFIG" --sharedir)        # /usr/share/postgresql/15
    local pgroot=${libdir%/lib}                # /usr/lib/postgresql/15
    # (again when PL/Proxy, which the router needs, was installed after it)
    if [ ! -x "$TMP_INSTALL$pgroot/bin/postgres" ] ||
        { [ -e "$libdir/plproxy.so" ] && [ ! -e "$TMP_INSTALL$libdir/plproxy.so" ]; }; then
        rm -rf "$TMP_INSTALL"
        mkdir -p "$TMP_INSTALL$(dirname "$pgroot")" "$TMP_INSTALL$(dirname "$sharedir")"
        cp -al "$pgroot" "$TMP_INSTALL$(dirname "$pgroot")/" 2>/dev/null ||
            cp -a "$pgroot" "$TMP_INSTALL$(dirname "$pgroot")/"
        cp -al "$sharedir" "$TMP_INSTALL$(dirname "$sharedir")/" 2>/dev/null ||
            cp -a "$sharedir" "$TMP_INSTALL$(dirname "$sharedir")/"
    fi
    PGBIN="$TMP_INSTALL$pgroot/bin"
    export PGBIN
    # Already installed, file for file: leave it alone.  A cluster of a
    # test, a bench or the stress harness running from this installation
    # loads $libdir/shop.so when a backend starts; removing and rewriting
    # it under them ("could not access file \"$libdir/shop\"") broke
    # whichever ran first when two were started from one checkout.
    if ! tmp_install_current "$libdir" "$sharedir"; then
        # Never write through a hard link into the system's files: remove
        # every file of shop's that the install writes, including the JIT
        # bitcode (llvm-lto rewrites bitcode/shop.index.bc in place),
        # before installing.
        rm -rf "$TMP_INSTALL$libdir"/shop.so "$TMP_INSTALL$sharedir"/extension/shop[.-]* \
            "$TMP_INSTALL$sharedir"/extension/shop_router[.-]* \
            "$TMP_INSTALL$libdir"/bitcode/shop "$TMP_INSTALL$libdir"/bitcode/shop.index.bc \
            "$TMP_INSTALL$libdir"/shop_router.so "$TMP_INSTALL$libdir"/bitcode/shop_router \
            "$TMP_INSTALL$libdir"/bitcode/shop_router.index.bc
        make -C "$TOP" --no-print-directory -s install DESTDIR="$TMP_INSTALL" >/dev/null
    fi
    # The postgres user must read it all; chmod on a hard link would change
    # the system's file (its mode, its ctime), so only what lacks the bits
    # is changed, and a linked file is copied first.
    find "$TMP_INSTALL" -type d ! -perm -a+rx -exec chmod a+rx {} +
    find "$TMP_INSTALL" -type f \( ! -perm -a+r -o \( -perm -u+x ! -perm -a+x \) \) -print0 |
        while IFS= read -r -d '' f; do
            if [ "$(stat -c %h "$f")" -gt 1 ]; then
                cp -p "$f" "$f.unlinked" && mv -f "$f.unlinked" "$f"
            fi
            chmod a+rX "$f"
        done
}

# free_port: a TCP port nobody listens on, starting from a hash of $TOP so
# two clones (or two helpers' work trees) do not collide.
free_port() {
    local p=$(( 20000 + $(echo -n "$TOP${1:-}" | cksum | cut -d' ' -f1) % 20000 ))
    while ss -ltn 2>/dev/null | grep -q ":$p\b" || [ -e "/tmp/.s.PGSQL.$p" ]; do
        p=$((p + 1))
    done
    echo "$p"
}

# cluster_init DIR PORT [extra postgresql.conf lines...]: initdb a cluster
# in DIR (socket in DIR too), listening on no TCP address.
cluster_init() {
    local dir=$1 port=$2; shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$PGBIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --no-instructions -A trust >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; return 1; }
    {
        echo "port = $port"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir'"
        echo "max_connections = 200"
        echo "shared_buffers = 256MB"
        echo "max_prepared_transactions = 10"
        echo "lc_messages = 'C'"
        echo "log_line_prefix = '%m [%p] %q%a '"
        for line in "$@"; do echo "$line"; done
    } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
}

cluster_start() {
    local dir=$1
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null ||
        { tail -30 "$dir/server.log" >&2; return 1; }
}

cluster_stop() {
    local dir=$1 mode=${2:-fast}
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 120 stop >/dev/null 2>&1 || true
}

# Environment for clients of the cluster in DIR on PORT.
cluster_env() {
    export PGHOST=$1 PGPORT=$2 PGUSER=postgres
}
