"""CPU time of benchmark processes, read from ``/proc`` (Linux): a process and its live descendants.

The middle of a chain (nginx's master and worker, or a cocoon node) is measured from outside, so the
load generator's own CPU never counts. Times are user + system seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cpu_seconds"]

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:  # the process is gone (or was never ours to read)
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return text[text.rfind(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def _with_descendants(roots: Iterable[int]) -> set[int]:
    parents = _parents()
    tree = set(roots)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree and pid not in tree}
        tree |= children
        grew = bool(children)
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds so far of ``pids`` and every live process below them."""
    total = 0
    for pid in _with_descendants(pids):
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS
