"""Host facts for the owner's view, read from /proc (Linux) without extra dependencies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["system_info"]


def _meminfo(proc: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            value = rest.strip().split()
            if value and value[0].isdigit():
                out[key] = int(value[0]) * 1024
    except OSError:
        pass
    return out


def system_info(proc: Path = Path("/proc")) -> dict[str, Any]:
    mem = _meminfo(proc)
    try:
        load = [float(x) for x in (proc / "loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        load = []
    try:
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        uptime = 0.0
    return {
        "cpus": os.cpu_count() or 0,
        "load_avg": load,
        "mem_total_bytes": mem.get("MemTotal", 0),
        "mem_available_bytes": mem.get("MemAvailable", 0),
        "host_uptime_s": round(uptime, 1),
        "tdx_guest": Path("/sys/kernel/config/tsm/report").exists() or Path("/dev/tdx_guest").exists(),
    }
