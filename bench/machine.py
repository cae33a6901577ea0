"""Where a benchmark's CPU went: every process of the run, and the machine's idle time, from /proc.

A process tree's CPU counts its live descendants and the children it has reaped (cutime, cstime), so a
PostgreSQL backend that exits during the interval is still counted, once, in its parent's figure.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, own CPU s, reaped children's CPU s) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces and parentheses: count fields after its closing parenthesis.
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK


def _all() -> dict[int, tuple[int, float, float]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            out[int(name)] = st
    return out


def tree_cpu(pid: int, procs: Mapping[int, tuple[int, float, float]] | None = None) -> float:
    """CPU seconds of a process, its live descendants and every child they reaped (0 once it is gone)."""
    procs = _all() if procs is None else procs
    children: dict[int, list[int]] = {}
    for p, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in procs:
            _, own, reaped = procs[p]
            total += own + reaped
            todo.extend(children.get(p, ()))
    return total


def machine_jiffies() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, summed over cores (/proc/stat)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts[:8]]  # user nice system idle iowait irq softirq steal (guest is inside user)
    idle = v[3] + v[4]
    return (sum(v) - idle) / _TICK, idle / _TICK


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (the publishers, once they exited)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    """CPU seconds of this process (the bench: its feed, polls and the database watch)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Snapshot:
    """CPU seconds of named process trees, the bench, and the machine, at one instant."""

    at: float
    trees: dict[str, float]
    bench: float
    busy: float
    idle: float

    @staticmethod
    def take(pids: Mapping[str, int]) -> Snapshot:
        """Read every named tree at once (one scan of /proc)."""
        procs = _all()
        busy, idle = machine_jiffies()
        return Snapshot(time.monotonic(), {name: tree_cpu(pid, procs) for name, pid in pids.items()}, self_cpu(),
                        busy, idle)


def account(before: Snapshot, after: Snapshot, extra: Mapping[str, float] | None = None) -> dict[str, float]:
    """The interval's CPU seconds per tree (trees gone by `after` count 0), the bench's, the machine's busy and
    idle cores, and what other work on the machine used (busy minus ours)."""
    wall = after.at - before.at
    out: dict[str, float] = {"wall_s": wall}
    ours = 0.0
    for name, cpu in before.trees.items():
        used = max(0.0, after.trees.get(name, cpu) - cpu)
        out[f"cpu_s_{name}"] = used
        ours += used
    for name, used in (extra or {}).items():
        out[f"cpu_s_{name}"] = used
        ours += used
    out["cpu_s_bench"] = after.bench - before.bench
    ours += out["cpu_s_bench"]
    busy, idle = after.busy - before.busy, after.idle - before.idle
    out["cpu_s_ours"] = ours
    out["cpu_s_other_work"] = max(0.0, busy - ours)
    out["busy_cores"] = busy / wall if wall > 0 else 0.0
    out["idle_cores"] = idle / wall if wall > 0 else 0.0
    out["our_cores"] = ours / wall if wall > 0 else 0.0
    return out
