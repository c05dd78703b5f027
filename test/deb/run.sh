#!/usr/bin/env bash
# deb: `make deb` builds postgresql-15-shop_<version>_<arch>.deb from
# debian/ (pg_buildext, dpkg-buildpackage), and the package works:
#   - apt resolves its dependencies on this Debian 12 (a simulated install:
#     the machine's packages are not changed);
#   - it holds exactly the files `make install` installs;
#   - a server whose installation has the package's files in place of a
#     make install (a private copy of the system's PostgreSQL 15, as
#     tmp_install is, with shop's files taken from the .deb) runs
#     CREATE EXTENSION shop CASCADE and passes `make installcheck`.
# Built from a copy of the working tree committed to a throwaway repository,
# so it checks what is there now, committed or not.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/deb"
SRC="$DIR/src"
rm -rf "$DIR"
mkdir -p "$SRC" "$DIR/out"
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"
git -C "$TOP" ls-files -z --cached --others --exclude-standard |
    (cd "$TOP" && xargs -0 cp --parents -t "$SRC" 2>/dev/null || true)
git -C "$SRC" init -q
git -C "$SRC" add -A
git -C "$SRC" -c user.name=test -c user.email=test@shop.invalid commit -q -m deb

make -C "$SRC" --no-print-directory -s deb DEB_DIR="$DIR/out" >"$DIR/deb.log" 2>&1 ||
    { tail -40 "$DIR/deb.log"; echo "make deb failed"; exit 1; }
debs=("$DIR"/out/postgresql-15-shop_*.deb)
[ -f "${debs[0]}" ] || { echo "make deb made no postgresql-15-shop package"; exit 1; }
DEB=${debs[0]}
version=$(dpkg-deb -f "$DEB" Version)
echo "$(basename "$DEB"): Version $version, Depends: $(dpkg-deb -f "$DEB" Depends)"
bad=0
control=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$SRC/shop.control")
[ "$version" = "$control.0" ] || [ "$version" = "$control" ] ||
    { echo "package version $version is not shop.control's $control"; bad=1; }

# 1. it asks for at least the server minor version whose headers built it:
#    a minor release may add server functions its headers call (15.20 made
#    DatumGetHeapTupleHeader one), and a shop.so built with them does not
#    load into an older server of the same major version
dev=$(dpkg-query -W -f='${Version}' postgresql-server-dev-15 | sed 's/-[^-]*$//')
depends=$(dpkg-deb -f "$DEB" Depends)
#    (postgresql-common 248+deb12u2's pg_buildext asks for postgresql-15
#    (>> <its headers' version>) itself, and dpkg-gencontrol keeps only that
#    stricter bound: a server of that version's Debian revisions satisfies it)
case ", $depends," in
    *", postgresql-15 (>= $dev),"* | *", postgresql-15 (>> $dev),"*) ;;
    *) echo "the package does not depend on postgresql-15 (>= $dev), the server version of its headers: $depends"; bad=1 ;;
esac

# its dependencies resolve (simulation only)
if ! apt-get install -s --no-install-recommends "$DEB" >"$DIR/apt.log" 2>&1 ||
   ! grep -q '^Inst postgresql-15-shop ' "$DIR/apt.log"; then
    echo "apt cannot install it:"; tail -20 "$DIR/apt.log"; bad=1
fi

# 2. the files of make install, no more, no fewer
dpkg-deb -x "$DEB" "$DIR/pkg"
tmp_install_setup     # shop's own make install, into tmp_install
libdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
shop_files() {        # shop_files ROOT: shop's files under ROOT, relative to it
    (cd "$1" && find ".$libdir" ".$sharedir/extension" -type f \
        \( -name 'shop.so' -o -name 'shop.index.bc' -o -path '*/bitcode/shop/*' -o -name 'shop[.-]*' -o -name 'shop_router[.-]*' -o -path '*/bitcode/shop_router/*' \) |
        sort)
}
shop_files "$DIR/pkg" >"$DIR/pkg.files"
shop_files "$TMP_INSTALL" >"$DIR/install.files"
if ! diff -u "$DIR/install.files" "$DIR/pkg.files" >"$DIR/files.diff"; then
    echo "the package's files differ from make install's:"; cat "$DIR/files.diff"; bad=1
fi
echo "$(wc -l <"$DIR/pkg.files") files of shop's in the package"

# 3. a server with the package's files in place of make install's: a copy
#    of tmp_install (hard links; shop's files removed, then copied in from
#    the package, so nothing is written through a link)
ROOT="$DIR/root"
mkdir -p "$ROOT"
cp -al "$TMP_INSTALL/." "$ROOT/"
(cd "$ROOT" && xargs -a "$DIR/install.files" rm -f)
(cd "$DIR/pkg" && xargs -a "$DIR/pkg.files" cp --parents -t "$ROOT")
chmod -R a+rX "$ROOT$libdir/bitcode/shop" "$ROOT$libdir/shop.so" "$ROOT$libdir/bitcode/shop_router" "$ROOT$libdir/shop_router.so" 2>/dev/null || true
pgroot=${libdir%/lib}
PGBIN="$ROOT$pgroot/bin"
PORT=$(free_port deb)
cluster_init "$DIR/cluster" "$PORT"
cluster_start "$DIR/cluster"
trap 'cluster_stop "$DIR/cluster" immediate' EXIT
cluster_env "$DIR/cluster" "$PORT"
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres -Atc "CREATE DATABASE deb" -c "SELECT 1" >/dev/null
"$PGBIN/psql" -X -v ON_ERROR_STOP=1 -d deb -Atc "SET client_min_messages = warning" \
    -c "CREATE EXTENSION shop CASCADE" \
    -c "SELECT 'installed: shop ' || extversion || ' from ' || (SELECT setting FROM pg_settings WHERE name = 'data_directory') FROM pg_extension WHERE extname = 'shop'" \
    -c "SELECT 'library: ' || (SELECT count(*) FROM pg_proc WHERE probin = '\$libdir/shop') || ' C functions'" ||
    { echo "CREATE EXTENSION shop CASCADE failed"; bad=1; }
# the server's own installation must be the one with the package's files
[ "$(readlink -f "/proc/$(head -1 "$DIR/cluster/data/postmaster.pid")/exe")" = "$(readlink -f "$PGBIN/postgres")" ] ||
    { echo "the server does not run from $PGBIN"; bad=1; }
status=0
make -C "$TOP" --no-print-directory installcheck \
    EXTRA_REGRESS_OPTS="--outputdir=$DIR/installcheck" >"$DIR/installcheck.log" 2>&1 || status=$?
grep -E '^ *All [0-9]+ tests passed|tests? failed' "$DIR/installcheck.log" || true
if [ "$status" -ne 0 ]; then
    echo "make installcheck against the package failed"
    [ -f "$DIR/installcheck/regression.diffs" ] && head -60 "$DIR/installcheck/regression.diffs"
    bad=1
fi
cluster_stop "$DIR/cluster"
trap - EXIT
[ "$bad" = 0 ] || exit 1
rm -rf "$SRC" "$ROOT" "$DIR/pkg"
echo "postgresql-15-shop $version: built, installable, CREATE EXTENSION and make installcheck pass"
