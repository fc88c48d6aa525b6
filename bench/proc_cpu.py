"""CPU time of a process and every process below it, read from ``/proc``.

A gateway run with several uvicorn workers is a supervisor plus its worker children; what
one start costs is the CPU of them all. :func:`tree_cpu_seconds` sums user + system time
of a process and its live descendants; :class:`CpuWindow` turns two readings into cores
used and CPU-ms per unit of work. Processes that end inside a window take their time with
them (a worker restarted mid-run is under-counted, never double-counted).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["CpuWindow", "descendants", "main_thread_sched", "parent_map", "tree_cpu_seconds"]


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent_map() -> dict[int, int]:
    """Every live process id → its parent's id."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat_fields(int(name))) is not None:
            parents[int(name)] = int(fields[1])  # field 4: ppid
    return parents


def descendants(parents: Mapping[int, int], roots: Iterable[int]) -> set[int]:
    """``roots`` and every process below them in ``parents`` (pid → parent pid)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU seconds used so far by ``roots`` and their live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in descendants(parent_map(), roots):
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / ticks


def main_thread_sched(pid: int) -> tuple[float, float] | None:
    """Seconds ``pid``'s main thread has so far run on a CPU and waited, runnable, for one
    (``/proc/<pid>/schedstat``; None when the process is gone or the kernel lacks it)."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            ran_ns, waited_ns = stat.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(ran_ns) / 1e9, int(waited_ns) / 1e9


@dataclass(frozen=True)
class CpuWindow:
    """CPU seconds a process tree used between two readings, ``wall_s`` apart."""

    cpu_s: float
    wall_s: float

    @property
    def cores(self) -> float:
        """The average number of cores kept busy."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def ms_per(self, count: int) -> float | None:
        """CPU milliseconds per unit of work (None when there was none)."""
        return self.cpu_s * 1000 / count if count > 0 else None
