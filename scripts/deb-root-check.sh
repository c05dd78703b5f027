#!/usr/bin/env bash
# deb-root-check.sh: `make deb-root-check`. The Debian package on a machine
# that has never seen shop: a minimal Debian 12 root made with debootstrap
# (with the sources a Debian 12 install has: bookworm, bookworm-updates,
# bookworm-security), into which `apt-get install ./postgresql-15-shop_*.deb`
# pulls PostgreSQL 15 and everything else the package declares. Its own
# server (Debian's cluster 15/main, started with pg_ctlcluster, listening on
# 127.0.0.1 only) then runs CREATE EXTENSION shop CASCADE and a short
# storefront tour, and this checkout's `make installcheck` runs against it.
#
# Needs root (debootstrap, chroot), the network (Debian's mirror) and a few
# minutes, so `make test` does not run it: test/deb checks the same package
# against a private copy of this machine's PostgreSQL instead. Run it before
# a release. DEB_ROOT=dir reuses (or keeps) a root; by default a new one is
# made in tmp_debroot/ and removed at the end when every check passed.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "deb-root-check needs root (debootstrap and chroot)" >&2; exit 1; }
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK="$TOP/tmp_debroot"
ROOT=${DEB_ROOT:-$WORK/root}
PORT=${DEB_ROOT_PORT:-55999}
mkdir -p "$WORK"
log() { echo "deb-root-check: $*"; }

command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get install -y -q debootstrap >"$WORK/apt-host.log" 2>&1 ||
        { tail -20 "$WORK/apt-host.log"; exit 1; }
}

# 1. the package, from the committed HEAD
log "building the package (make deb, from HEAD)"
rm -f "$WORK"/postgresql-15-shop_*.deb
make -C "$TOP" --no-print-directory -s deb DEB_DIR="$WORK" >"$WORK/deb.log" 2>&1 ||
    { tail -30 "$WORK/deb.log"; exit 1; }
debs=("$WORK"/postgresql-15-shop_*.deb)
DEB=${debs[0]}
log "$(basename "$DEB"): Depends: $(dpkg-deb -f "$DEB" Depends)"

# 2. a minimal Debian 12
start=$(date +%s)
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    log "debootstrap --variant=minbase bookworm $ROOT"
    debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log"; exit 1; }
fi
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
# no service starts inside the root: the cluster is started below, by hand
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
cleanup() {
    chroot "$ROOT" pg_ctlcluster 15 main stop -m immediate >/dev/null 2>&1 || true
    umount "$ROOT/proc" 2>/dev/null || true
}
trap cleanup EXIT
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# 3. the package and its dependencies, as a user installs it
cp "$DEB" "$ROOT/tmp/"
log "apt-get install ./$(basename "$DEB") inside the root"
in_root sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends /tmp/$(basename "$DEB")" >"$WORK/apt-root.log" 2>&1 ||
    { tail -30 "$WORK/apt-root.log"; exit 1; }
log "installed: $(in_root dpkg-query -W -f='${Package} ${Version}, ' postgresql-15 postgresql-15-shop)"

# 4. Debian's own cluster, on a loopback port, trusting loopback for the test
in_root pg_ctlcluster 15 main stop -m fast >/dev/null 2>&1 || true
conf=/etc/postgresql/15/main
in_root sed -i "s/^#\?port = .*/port = $PORT/" "$conf/postgresql.conf"
in_root sh -c "grep -q '^listen_addresses' $conf/postgresql.conf ||
    echo \"listen_addresses = '127.0.0.1'\" >>$conf/postgresql.conf"
in_root sh -c "grep -q '^host all all 127.0.0.1/32 trust' $conf/pg_hba.conf ||
    sed -i '1i host all all 127.0.0.1/32 trust' $conf/pg_hba.conf"
in_root pg_ctlcluster 15 main start
psql_root() { in_root runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -p "$PORT" "$@"; }
psql_root -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS tour" -c "CREATE DATABASE tour"
out=$(psql_root -d tour -At \
    -c "SET client_min_messages = warning" \
    -c "CREATE EXTENSION shop CASCADE" \
    -c "SELECT 'extension: shop ' || extversion FROM pg_extension WHERE extname = 'shop'" \
    -c "SELECT shop.product_upsert('LP-1', 'ThinkPad X1 Carbon Gen 11', 139900) > 0" \
    -c "SELECT shop.stock_set(product_id, 5) FROM shop.product WHERE sku = 'LP-1'" \
    -c "SELECT 'search: ' || title FROM shop.search('thinkpd carbon')" 2>&1) ||
    { echo "$out"; log "CREATE EXTENSION or the tour failed inside the root"; exit 1; }
echo "$out" | grep -E '^(extension|search):'
echo "$out" | grep -q '^search: ThinkPad X1 Carbon Gen 11$' ||
    { echo "$out"; log "the tour's typo search found nothing"; exit 1; }

# 5. the installcheck suite of this checkout against that server
log "make installcheck against the root's server (127.0.0.1:$PORT)"
status=0
PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres \
    make -C "$TOP" --no-print-directory installcheck \
    EXTRA_REGRESS_OPTS="--outputdir=$WORK/installcheck" >"$WORK/installcheck.log" 2>&1 || status=$?
grep -E '^ *All [0-9]+ tests passed|tests? failed' "$WORK/installcheck.log" || true
if [ "$status" -ne 0 ]; then
    [ -f "$WORK/installcheck/regression.diffs" ] && head -60 "$WORK/installcheck/regression.diffs"
    log "make installcheck failed; the root is kept in $ROOT"
    exit 1
fi
cleanup
trap - EXIT
log "passed in $(( $(date +%s) - start )) s: the package installs on a minimal Debian 12, CREATE EXTENSION shop CASCADE and make installcheck pass"
[ -n "${DEB_ROOT:-}" ] || rm -rf "$WORK"
