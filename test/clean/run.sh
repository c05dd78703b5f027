#!/usr/bin/env bash
# clean: `make clean` leaves no tmp_* directory behind (issue 17.6): not
# tmp_install and tmp_check (every test cluster), not tmp_demo (a running
# demo cluster, which it stops first), not tmp_bench. Runs in a copy of the
# source tree, so that it never cleans the tree the suite is running from.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/clean"
SRC="$DIR/src"
rm -rf "$DIR"
mkdir -p "$SRC"
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"
git -C "$TOP" ls-files -z --cached --others --exclude-standard | (cd "$TOP" && xargs -0 cp --parents -t "$SRC")

# what the suites leave: a demo cluster still running, test clusters, a
# private installation, a kept bench cluster
PORT=$(free_port clean)
cluster_init "$SRC/tmp_demo" "$PORT"
cluster_start "$SRC/tmp_demo"
pid=$(head -1 "$SRC/tmp_demo/data/postmaster.pid")
trap 'cluster_stop "$SRC/tmp_demo" immediate' EXIT
mkdir -p "$SRC/tmp_check/regress" "$SRC/tmp_bench/cluster" "$SRC/tmp_install/usr"
echo x >"$SRC/tmp_check/regress/server.log"

make -C "$SRC" --no-print-directory clean >"$DIR/clean.log" 2>&1 || { cat "$DIR/clean.log"; exit 1; }
cat "$DIR/clean.log"

left=$(cd "$SRC" && ls -d tmp_* 2>/dev/null || true)
bad=0
if [ -n "$left" ]; then
    echo "make clean left: $left"; bad=1
fi
# gone, or a zombie its parent has not reaped yet (pg_ctl -w returns when
# the pid file is gone, a moment before the process itself)
running() { [ -e "/proc/$1" ] && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null; }
for _ in $(seq 20); do running "$pid" || break; sleep 0.5; done
if running "$pid"; then
    echo "the demo cluster (pid $pid) still runs after make clean"; bad=1
fi
[ -d "$SRC/tmp_demo/data" ] && cluster_stop "$SRC/tmp_demo" immediate
trap - EXIT
[ "$bad" = 0 ] || exit 1
rm -rf "$DIR"
echo "make clean removed every tmp_* directory and stopped the demo cluster"
