#!/usr/bin/env bash
# clean.sh: part of `make clean`. Stops every cluster still running from a
# tmp_* directory of this clone (the demo's, a kept bench cluster, a test
# interrupted before its clean-up), so that removing tmp_* never pulls the
# data directory from under a running server. make clean then removes tmp_*.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/pgenv.sh"
bindir=$("$PG_CONFIG" --bindir 2>/dev/null) || exit 0
find "$TOP"/tmp_* -maxdepth 5 -name postmaster.pid -type f 2>/dev/null |
while IFS= read -r pid; do
    data=$(dirname "$pid")
    as_owner "$bindir/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null 2>&1 &&
        echo "stopped the cluster in ${data#"$TOP"/}"
done
# a root of make deb-root-check left behind: its /proc goes before rm -rf
if [ -d "$TOP/tmp_debroot" ]; then
    for m in $(awk -v top="$TOP/tmp_debroot/" 'index($2, top) == 1 { print $2 }' /proc/mounts); do
        umount "$m" && echo "unmounted ${m#"$TOP"/}"
    done
fi
exit 0
