#!/usr/bin/env bash
# install-deps.sh: install the Debian packages shop builds, tests and demos
# with. Does nothing when they are all present, so it is cheap to run first
# in every make target.
set -euo pipefail

# libipc-run-perl: PostgreSQL::Test::Cluster (postgresql-server-dev-15) runs
# the TAP tests of t/ with IPC::Run.
# pgbouncer: test/pgbouncer runs the storefront through a PgBouncer of its
# own (docs/security.md, "Behind a connection pooler").
# postgresql-15-plproxy: the router of a sharded shop (shop_router,
# docs/scale-out.md) and test/cluster, which starts one.
# prometheus-postgres-exporter, prometheus (for promtool) and curl:
# test/prometheus scrapes shop's metrics through the exporter and checks
# the alert rules (docs/operations.md, "Monitoring with Prometheus").
# build-essential: dpkg-buildpackage (make deb, test/deb) refuses to start
# without it, and --no-install-recommends below does not bring it.
# procps (ps): test/cluster/crash.sh waits for the processes it killed.
# A minimal Debian 12 (debootstrap --variant=minbase) has neither.
PKGS="postgresql-15 postgresql-server-dev-15 postgresql-contrib libstemmer-dev
      postgresql-15-rum gcc libc6-dev make pgbouncer dpkg-dev debhelper
      prometheus-postgres-exporter prometheus curl libipc-run-perl postgresql-15-plproxy
      build-essential procps"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "shop: installing missing packages:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "shop: need root (or sudo) to install:$missing" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The postgresql-common postinst would create and start a system cluster;
# shop never uses it, so ask postgresql-common not to create one.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $SUDO mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$SUDO apt-get install -y -qq --no-install-recommends $missing
# The pgbouncer package enables and starts a system PgBouncer on port 6432;
# shop only starts its own, in tmp_check, from the test: turn the system one
# off again when this script is what installed it.
if [[ " $missing " == *" pgbouncer "* ]] && command -v systemctl >/dev/null &&
    systemctl is-enabled --quiet pgbouncer 2>/dev/null; then
    echo "shop: disabling the pgbouncer system service the package started (the tests run their own)"
    $SUDO systemctl disable --now pgbouncer >/dev/null 2>&1 || true
fi
# Likewise the exporter (port 9187) and Prometheus (port 9090): the test
# starts its own exporter on a free loopback port and needs only promtool.
for svc in prometheus-postgres-exporter prometheus; do
    if [[ " $missing " == *" $svc "* ]] && command -v systemctl >/dev/null &&
        systemctl is-enabled --quiet "$svc" 2>/dev/null; then
        echo "shop: disabling the $svc system service the package started (the tests run their own)"
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
