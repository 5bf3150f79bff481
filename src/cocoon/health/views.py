"""Rich renderings of a worker's health report (the JSON of ``GET /health``), one per view."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cocoon.core.amounts import format_ton

__all__ = ["VIEWS", "render"]


def _kv(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", expand=False)
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows:
        table.add_row(key, "" if value is None else str(value))
    return table


def _status(h: Mapping[str, Any]) -> RenderableType:
    return _kv(
        "worker",
        [
            ("state", h.get("state")),
            ("uptime", f"{h.get('uptime_s', 0)} s"),
            ("model", h.get("model")),
            ("coefficient", f"{h.get('coefficient', 0) / 1000:.3f}×"),
            (
                "proxies connected",
                f"{sum(p['connected'] for p in h.get('proxies', []))}/{len(h.get('proxies', []))}",
            ),
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
            ("TDX guest", s.get("tdx_guest")),
        ],
    )


def _svc(h: Mapping[str, Any]) -> RenderableType:
    table = Table(title="services", title_justify="left")
    table.add_column("service")
    table.add_column("state")
    table.add_row("engine", "[green]healthy[/]" if h.get("engine_healthy") else "[red]down[/]")
    for proxy in h.get("proxies", []):
        state = "[green]connected[/]" if proxy["connected"] else "[yellow]reconnecting[/]"
        table.add_row(f"proxy {proxy['address']}", state)
    return table


def _tdx(h: Mapping[str, Any]) -> RenderableType:
    att = h.get("attestation", {})
    return _kv(
        "TEE",
        [
            ("backend", att.get("backend")),
            ("image hash", h.get("image_hash") or "—"),
            ("model hash", h.get("model_hash") or "—"),
            ("certificate valid until", att.get("cert_not_after")),
        ],
    )


def _gpu(h: Mapping[str, Any]) -> RenderableType:
    gpu = h.get("gpu", {})
    table = Table(
        title=f"GPU ({gpu.get('kind', 'none')}, CC mode {gpu.get('cc_mode') or 'n/a'})", title_justify="left"
    )
    table.add_column("name")
    table.add_column("uuid")
    table.add_column("driver")
    for g in gpu.get("gpus", []):
        table.add_row(g["name"], g["uuid"], g["driver"])
    if not gpu.get("gpus"):
        table.add_row("no GPU", "", "")
    return table


def _earnings(h: Mapping[str, Any]) -> RenderableType:
    table = Table(title="earnings", title_justify="left")
    table.add_column("proxy")
    table.add_column("earned", justify="right")
    table.add_column("paid out", justify="right")
    table.add_column("tokens", justify="right")
    for proxy, p in h.get("payments", {}).items():
        table.add_row(
            proxy,
            format_ton(int(p.get("earned_nano", 0))),
            format_ton(int(p.get("paid_nano", 0))),
            str(p.get("adjusted_tokens", 0)),
        )
    if not h.get("payments"):
        table.add_row("—", format_ton(0), format_ton(0), "0")
    return table


def _logs(h: Mapping[str, Any]) -> RenderableType:
    lines = h.get("log_lines", [])
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
