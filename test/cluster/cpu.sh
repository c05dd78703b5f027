#!/usr/bin/env bash
# cpu.sh PID DATADIR...: "backend-ticks shard-ticks wall-ns" for the
# measuring scripts of this directory (popfold_cost.sh, reco_cpu.sh,
# search_cpu.sh; psql's \! runs it around the calls measured).
# backend-ticks: utime + stime (10 ms ticks, /proc/PID/stat) of the
# session's backend PID; shard-ticks: the same summed over the postmaster
# and every child of each cluster DATADIR.
pid=$1; shift
ticks() {   # the utime + stime of the given pids
    local t=0 p f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        # fields 14 and 15 of stat: 12 and 13 after "pid (comm) "
        set -- ${f##*) }
        t=$((t + ${12} + ${13}))
    done
    echo $t
}
shards=$(for d in "$@"; do pm=$(head -1 "$d/data/postmaster.pid"); echo "$pm"; pgrep -P "$pm"; done)
echo "$(ticks "$pid") $(ticks $shards) $(date +%s%N)"
