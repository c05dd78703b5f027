#!/usr/bin/env bash
# guc_read_cost.sh: the CPU of one read of a shop.* setting, through
# shop._guc and through coalesce(current_setting(name, true), default)
# (dedup3, bench/results/2026-12-07-dedup3.md): a scratch cluster, the
# backend's CPU (/proc/PID/schedstat) around 1M reads in one statement,
# ROUNDS rounds (default 7) of the three variants in turns.
# Usage: bench/guc_read_cost.sh
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
DIR="$TOP/tmp_check/guc_read_cost/cluster"
PORT=$(free_port guc_read_cost)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 3600"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
"$PGBIN/createdb" gb
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d gb -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
W="$TOP/tmp_check/guc_read_cost"; mkdir -p "$W"; : > $W/res
declare -A Q
Q[a_coalesce]="coalesce(current_setting('shop.recent_views_cap', true), '50')::int + g > 0"
Q[b_guc]="shop._guc('shop.recent_views_cap')::int + g > 0"
Q[c_loop]="50 + g > 0"
for r in $(seq 1 "${ROUNDS:-7}"); do
  for v in a_coalesce b_guc c_loop; do
    cat > $W/run.sql <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(*) FROM generate_series(1, 1000) g WHERE ${Q[$v]} \g /dev/null
\! awk '{print \$1}' /proc/\$PID/schedstat > $W/n0
SELECT count(*) FROM generate_series(1, 1000000) g WHERE ${Q[$v]} \g /dev/null
\! awk '{print \$1}' /proc/\$PID/schedstat > $W/n1
SQL
    "$PGBIN/psql" -X -q -d gb -f $W/run.sql
    echo "$v $(( $(cat $W/n1) - $(cat $W/n0) ))" >> $W/res
  done
done
sort $W/res | awk '{a[$1]=a[$1]" "$2/1e6} END {for (k in a) print k, a[k]}' | sort
echo "load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C $TOP rev-parse --short HEAD)"
