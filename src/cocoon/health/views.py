"""Rich renderings of a worker's health report (the JSON of ``GET /health``), one per view.

Times show as UTC dates with their distance from now, durations in h/min/s, hashes and UUIDs whole
(long values fold onto the next line instead of being cut).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cocoon.core.amounts import format_ton

__all__ = ["VIEWS", "format_duration", "format_time", "render"]


def format_duration(seconds: float) -> str:
    """``3 h 25 min``, ``4 min 10 s``, ``12.5 s``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds % 1 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def format_time(unix: float | None, now: float | None = None) -> str:
    """``2026-12-02 23:54:29 UTC (in 23 h 59 min)``; ``—`` when unknown."""
    if unix is None:
        return "—"
    now = time.time() if now is None else now
    when = datetime.fromtimestamp(float(unix), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = float(unix) - now
    relative = f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"
    return f"{when} ({relative})"


def _kv(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", expand=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")  # a hash is never cut: it folds
    for key, value in rows:
        table.add_row(key, "" if value is None else str(value))
    return table


def _status(h: Mapping[str, Any]) -> RenderableType:
    proxies = h.get("proxies", [])
    accepting = h.get("accepting_requests")
    return _kv(
        "worker",
        [
            ("state", h.get("state")),
            ("accepting requests", None if accepting is None else ("yes" if accepting else "no (draining)")),
            ("uptime", format_duration(h.get("uptime_s", 0))),
            ("model", h.get("model")),
            ("coefficient", f"{h.get('coefficient', 0) / 1000:.3f}×"),
            ("proxies connected", f"{sum(bool(p['connected']) for p in proxies)}/{len(proxies)}"),
            ("requests served", h.get("served", 0)),
            ("requests failed", h.get("failed", 0)),
            ("refused (busy)", h.get("refused_busy", 0)),
            ("active / max", f"{h.get('active_requests', 0)} / {h.get('max_active_requests', 0)}"),
            ("tokens/s", h.get("tokens_per_s", 0.0)),
        ],
    )


def _sys(h: Mapping[str, Any]) -> RenderableType:
    s = h.get("system", {})
    gib = 1024**3
    return _kv(
        "system",
        [
            ("cpus", s.get("cpus")),
            ("load", " ".join(str(x) for x in s.get("load_avg", []))),
            (
                "memory",
                f"{s.get('mem_available_bytes', 0) / gib:.1f} GiB free of {s.get('mem_total_bytes', 0) / gib:.1f}",
            ),
            ("host uptime", format_duration(s.get("host_uptime_s", 0))),
            ("TDX guest", s.get("tdx_guest")),
        ],
    )


def _svc(h: Mapping[str, Any]) -> RenderableType:
    table = Table(title="services", title_justify="left")
    table.add_column("service")
    table.add_column("state")
    table.add_column("why", overflow="fold")
    table.add_row("engine", "[green]healthy[/]" if h.get("engine_healthy") else "[red]down[/]", "")
    for proxy in h.get("proxies", []):
        state = "[green]connected[/]" if proxy["connected"] else "[yellow]reconnecting[/]"
        why = "" if proxy["connected"] else (proxy.get("last_error") or "")
        table.add_row(f"proxy {proxy['address']}", state, why)
    return table


def _tdx(h: Mapping[str, Any]) -> RenderableType:
    att = h.get("attestation", {})
    return _kv(
        "TEE",
        [
            ("backend", att.get("backend")),
            ("image hash", h.get("image_hash") or "—"),
            ("model hash", h.get("model_hash") or "—"),
            ("certificate valid until", format_time(att.get("cert_not_after"))),
        ],
    )


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 1024**2:,.0f}"


def _gpu(h: Mapping[str, Any]) -> RenderableType:
    """Identity from the attested evidence, live readings from NVML (``gpu_telemetry``)."""
    gpu = h.get("gpu", {})
    telemetry = h.get("gpu_telemetry", {})
    live = {g.get("uuid"): g for g in telemetry.get("gpus", [])}
    table = Table(
        title=f"GPU ({gpu.get('kind', 'none')}, CC mode {gpu.get('cc_mode') or 'n/a'})", title_justify="left"
    )
    for column in ("name", "uuid", "driver"):
        table.add_column(column, overflow="fold")
    for column in ("util %", "memory MiB", "temp °C", "power W"):
        table.add_column(column, justify="right")
    listed = gpu.get("gpus", []) or [
        {"name": g.get("name"), "uuid": g.get("uuid"), "driver": telemetry.get("driver_version")}
        for g in telemetry.get("gpus", [])
    ]
    for g in listed:
        r = live.get(g.get("uuid"), {})
        memory = f"{_mib(r.get('memory_used_bytes'))} / {_mib(r.get('memory_total_bytes'))}" if r else "—"
        table.add_row(
            str(g.get("name")),
            str(g.get("uuid")),
            str(g.get("driver") or telemetry.get("driver_version") or "—"),
            _num(r.get("utilization_pct")),
            memory,
            _num(r.get("temperature_c")),
            _num(r.get("power_w")),
        )
    if not listed:
        table.add_row("no GPU", telemetry.get("error") or "", "", "", "", "", "")
    return table


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _earnings(h: Mapping[str, Any]) -> RenderableType:
    table = Table(title="earnings", title_justify="left")
    table.add_column("proxy")
    table.add_column("earned", justify="right")
    table.add_column("paid out", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("worker contract", overflow="fold")
    for proxy, p in h.get("payments", {}).items():
        table.add_row(
            proxy,
            format_ton(int(p.get("earned_nano", 0))),
            format_ton(int(p.get("paid_nano", 0))),
            str(p.get("adjusted_tokens", 0)),
            str(p.get("worker_contract") or "—"),
        )
    if not h.get("payments"):
        table.add_row("—", format_ton(0), format_ton(0), "0", "—")
    return table


def _logs(h: Mapping[str, Any]) -> RenderableType:
    lines = h.get("log_lines", [])
    if not lines:
        return Text("no log lines yet", style="dim")
    return Group(Text("recent log lines", style="bold"), *(Text(line) for line in lines[-30:]))


VIEWS: dict[str, Callable[[Mapping[str, Any]], RenderableType]] = {
    "status": _status,
    "sys": _sys,
    "svc": _svc,
    "logs": _logs,
    "tdx": _tdx,
    "gpu": _gpu,
    "earnings": _earnings,
}


def render(view: str, health: Mapping[str, Any]) -> RenderableType:
    if view == "all":
        return Group(*(fn(health) for fn in VIEWS.values()))
    return VIEWS[view](health)
