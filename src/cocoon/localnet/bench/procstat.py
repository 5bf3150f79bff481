"""CPU time of benchmark processes, read from ``/proc`` (Linux): processes, their threads and descendants.

The middle of a chain (nginx's master and worker, or a cocoon node) is measured from outside, so the
load generator's own CPU never counts. Each thread's time comes from ``schedstat`` (nanoseconds;
``stat`` counts 10 ms clock ticks, too coarse for nginx's ≈ 1 ms per request), falling back to
``stat`` where the kernel has no schedstat. A thread that ends between two snapshots takes its time
since the first with it: the benchmarked processes keep their threads, so that loss is nil there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CpuSnapshot", "cpu_seconds_by_process", "cpu_seconds_since", "cpu_snapshot"]

_PROC = Path("/proc")
_NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
CpuSnapshot = dict[tuple[int, int], int]  # (pid, tid) → nanoseconds on a CPU so far


def _stat_fields(stat: Path) -> list[str] | None:
    try:
        text = stat.read_text()
    except OSError:  # the process is gone (or was never ours to read)
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return text[text.rfind(")") + 2 :].split()


def _with_descendants(roots: Iterable[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry / "stat")) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree = set(roots)
    while children := {pid for pid, parent in parents.items() if parent in tree and pid not in tree}:
        tree |= children
    return tree


def _thread_ns(task: Path) -> int | None:
    try:
        return int((task / "schedstat").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        fields = _stat_fields(task / "stat")
        return None if fields is None else (int(fields[11]) + int(fields[12])) * _NS_PER_TICK


def cpu_snapshot(pids: Iterable[int]) -> CpuSnapshot:
    """CPU time so far of every live thread of ``pids`` and of every process below them."""
    snapshot: CpuSnapshot = {}
    for pid in _with_descendants(pids):
        try:
            tasks = list((_PROC / str(pid) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            if task.name.isdigit() and (ns := _thread_ns(task)) is not None:
                snapshot[(pid, int(task.name))] = ns
    return snapshot


def cpu_seconds_since(before: CpuSnapshot, pids: Iterable[int]) -> float:
    """CPU seconds ``pids`` (threads and descendants included) spent since the ``before`` snapshot."""
    after = cpu_snapshot(pids)
    return sum(ns - before.get(key, 0) for key, ns in after.items()) / 1e9


def cpu_seconds_by_process(before: CpuSnapshot, after: CpuSnapshot) -> dict[int, float]:
    """CPU seconds each process (its own threads, not its children's) spent between two snapshots."""
    spent: dict[int, float] = {}
    for (pid, tid), ns in after.items():
        spent[pid] = spent.get(pid, 0.0) + (ns - before.get((pid, tid), 0)) / 1e9
    return spent
