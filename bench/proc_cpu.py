#!/usr/bin/env python3
"""proc_cpu.py POSTMASTER_PID STOPFILE OUT: CPU (utime + stime) of every
process under the postmaster, sampled every 0.1 s until STOPFILE exists,
summed per kind of process.  A process that exists at the start counts from
its value then (STOPFILE.ready is written after that first pass); one
that starts later (a client backend, an autovacuum
worker) counts from zero.  OUT gets one line per pid: kind, ticks, pid.
Used by bench/checkout_where.sh."""
import os, sys, time

pm, stop, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def kind(pid):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    if not cmd:
        return None     # gone (a zombie has no command line)
    c = cmd[len("postgres: "):] if cmd.startswith("postgres: ") else cmd
    for k in ("walwriter", "checkpointer", "background writer", "autovacuum worker",
              "autovacuum launcher", "logical replication launcher"):
        if c.startswith(k):
            return k
    if c.startswith("shop events"):
        return "shop events worker"
    if c.startswith("shop sweep"):
        return "shop sweeper"
    if "[local]" in c:
        return "client backend"
    return "other: " + c[:40]


def ticks(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12]), int(f[1])   # utime + stime, ppid


start, last, kinds = {}, {}, {}
first = True
while True:
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        t = ticks(pid)
        if t is None or t[1] != pm:
            continue
        if pid not in kinds:
            k = kind(pid)
            if k is None:
                continue
            kinds[pid] = k
            start[pid] = t[0] if first else 0
        elif kinds[pid].startswith("other: "):
            # a process seen right after its fork still shows the
            # postmaster's command line: name it again once it has its own
            kinds[pid] = kind(pid) or kinds[pid]
        last[pid] = t[0]
    if first:
        open(stop + ".ready", "w").close()
    first = False
    if os.path.exists(stop):
        break
    time.sleep(0.1)
with open(out, "w") as f:
    for pid, k in kinds.items():
        f.write(f"{k}\t{last[pid] - start[pid]}\t{pid}\n")
