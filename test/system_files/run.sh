#!/usr/bin/env bash
# system_files: the test suite's private installation never changes the
# system's PostgreSQL files (issue 17.4). tmp_install/ is a hard-linked copy
# of the system's installation; a file the install writes (shop.so, the JIT
# bitcode, bitcode/shop.index.bc that llvm-lto writes in place, the
# extension's scripts) must be a file of tmp_install's own, and nothing may
# chmod a linked file, or setting up tmp_install changes the system's copy.
#
# Snapshots every file of lib/ and share/extension/ (inode, mode, size,
# mtime, SHA-256; not ctime or link count, which a new hard link changes),
# then does what the suites do: a fresh tmp_install, an install over it, a
# server of tmp_install using shop with JIT forced on. The files must be
# unchanged, and in tmp_install every file of shop's must have one link.
#
# Twice: against the system's installation (shop in it or not), and against
# a copy of it (PostgreSQL is relocatable) that has shop installed and a
# file only its owner reads, so both hazards are always exercised.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/system_files"
rm -rf "$DIR"
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"
# a private tmp_install, so that each round starts from a fresh copy
TMP_INSTALL="$DIR/tmp_install"
SHOP_FILES=( \( -name 'shop.so' -o -name 'shop.index.bc' -o -path '*/bitcode/shop/*' -o -name 'shop[.-]*' -o -name 'shop_router[.-]*' -o -path '*/bitcode/shop_router/*' \) )
bad=0

snapshot() {
    find "$LIBDIR" "$SHAREDIR/extension" -type f -print0 | sort -z |
        xargs -0 stat -c '%i %a %s %Y %n' >"$1.stat"
    find "$LIBDIR" "$SHAREDIR/extension" -type f -print0 | sort -z |
        xargs -0 sha256sum >"$1.sum"
    cat "$1.stat" "$1.sum" >"$1"
}

# check_system NAME: one round against the installation $PG_CONFIG names
check_system() {
    local name=$1 f n sys links
    LIBDIR=$("$PG_CONFIG" --pkglibdir)      # /usr/lib/postgresql/15/lib
    SHAREDIR=$("$PG_CONFIG" --sharedir)     # /usr/share/postgresql/15
    rm -rf "$TMP_INSTALL"
    snapshot "$DIR/$name.before"
    echo "$name: $(wc -l <"$DIR/$name.before.stat") files under $LIBDIR and $SHAREDIR/extension," \
         "$(grep -c '/shop[^/]*$\|/bitcode/shop/' "$DIR/$name.before.stat" || true) of them shop's"

    # 1. a fresh tmp_install, then an install over it (each suite's set-up)
    tmp_install_setup
    tmp_install_setup

    # 2. shop's files in tmp_install are its own
    n=0
    while IFS= read -r f; do
        n=$((n + 1))
        links=$(stat -c %h "$f")
        sys=${f#"$TMP_INSTALL"}
        if [ "$links" != 1 ]; then
            echo "$name: hard link in tmp_install: $sys has $links links"; bad=1
        fi
    done < <(find "$TMP_INSTALL$LIBDIR" "$TMP_INSTALL$SHAREDIR/extension" -type f "${SHOP_FILES[@]}")
    echo "$name: $n files of shop's in tmp_install"
    [ "$n" -ge 4 ] || { echo "$name: shop is not installed in tmp_install"; bad=1; }

    # 3. a server of tmp_install loads shop and JIT-compiles with its bitcode
    PORT=$(free_port system_files)
    cluster_init "$DIR/cluster" "$PORT" "shared_preload_libraries = 'shop'" "jit = on" \
        "jit_above_cost = 0" "jit_inline_above_cost = 0" "jit_optimize_above_cost = 0"
    cluster_start "$DIR/cluster"
    trap 'cluster_stop "$DIR/cluster" immediate' EXIT
    cluster_env "$DIR/cluster" "$PORT"
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE EXTENSION shop CASCADE;
SELECT shop.product_upsert('SF-' || g, 'System files ' || g, 100 * g) FROM generate_series(1, 20) g \g /dev/null
SELECT count(*) FROM shop.search('system files', lim => 5) \g /dev/null
SQL
    cluster_stop "$DIR/cluster"
    trap - EXIT

    # 4. the installation's files are as they were
    snapshot "$DIR/$name.after"
    if ! diff -u "$DIR/$name.before" "$DIR/$name.after" >"$DIR/$name.diff"; then
        echo "$name: files changed by setting up tmp_install:"
        grep '^[-+][0-9a-f]' "$DIR/$name.diff" | head -20
        bad=1
    fi
    rm -rf "$TMP_INSTALL"
}

# round 1: the system's installation
check_system system

# round 2: a copy of it, on the file system of tmp_install (hard links),
# with shop installed into it and a file that only its owner may read
SYSTEM_PG_CONFIG=$PG_CONFIG
COPY="$DIR/copy"
pgroot=$(dirname "$("$SYSTEM_PG_CONFIG" --pkglibdir)")
sharedir=$("$SYSTEM_PG_CONFIG" --sharedir)
mkdir -p "$COPY$(dirname "$pgroot")" "$COPY$(dirname "$sharedir")"
cp -a "$pgroot" "$COPY$(dirname "$pgroot")/"
cp -a "$sharedir" "$COPY$(dirname "$sharedir")/"
PG_CONFIG="$COPY$pgroot/bin/pg_config"
export PG_CONFIG
make -C "$TOP" --no-print-directory -s install >/dev/null
chmod 600 "$("$PG_CONFIG" --sharedir)/extension/plpgsql.control"
check_system copy
rm -rf "$COPY"

[ "$bad" = 0 ] || exit 1
echo "the installations' files are unchanged; shop's files in tmp_install are its own"
