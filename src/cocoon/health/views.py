"""Rich renderings of a worker's health report (the JSON of ``GET /health``), one per view.

Times show as UTC dates with their distance from now, durations in h/min/s. Hashes, UUIDs and
contract addresses are whole and copyable: each on a line of its own below its table, never folded
or cut (print with ``crop=False``; the terminal wraps a line wider than itself, and copying it gives
the value back in one piece).
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

__all__ = ["VIEWS", "format_duration", "format_time", "long_values", "render"]


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


def long_values(rows: list[tuple[str, Any]]) -> RenderableType:
    """``label  value`` lines whose value is never wrapped or cut (hashes, UUIDs, addresses)."""
    width = max((len(label) for label, _ in rows), default=0)
    lines = [
        Text.assemble(
            (f"{label:<{width}}  ", "bold cyan"),
            str(value) if value else "—",
            no_wrap=True,
            overflow="ignore",
        )
        for label, value in rows
    ]
    return Group(*lines)


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
    table = _kv(
        "TEE",
        [
            ("backend", att.get("backend")),
            ("certificate valid until", format_time(att.get("cert_not_after"))),
        ],
    )
    hashes = long_values([("image hash", h.get("image_hash")), ("model hash", h.get("model_hash"))])
    return Group(table, hashes)


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 1024**2:,.0f}"


def _gpu(h: Mapping[str, Any]) -> RenderableType:
    """Identity from the attested evidence, live readings from NVML (``gpu_telemetry``); each GPU's
    UUID whole on its own line below the table."""
    gpu = h.get("gpu", {})
    telemetry = h.get("gpu_telemetry", {})
    live = {g.get("uuid"): g for g in telemetry.get("gpus", [])}
    table = Table(
        title=f"GPU ({gpu.get('kind', 'none')}, CC mode {gpu.get('cc_mode') or 'n/a'})", title_justify="left"
    )
    table.add_column("#", justify="right")
    for column in ("name", "driver"):
        table.add_column(column, overflow="fold")
    for column in ("util %", "memory MiB", "temp °C", "power W"):
        table.add_column(column, justify="right")
    listed = gpu.get("gpus", []) or [
        {"name": g.get("name"), "uuid": g.get("uuid"), "driver": telemetry.get("driver_version")}
        for g in telemetry.get("gpus", [])
    ]
    for index, g in enumerate(listed):
        r = live.get(g.get("uuid"), {})
        memory = f"{_mib(r.get('memory_used_bytes'))} / {_mib(r.get('memory_total_bytes'))}" if r else "—"
        table.add_row(
            str(index),
            str(g.get("name")),
            str(g.get("driver") or telemetry.get("driver_version") or "—"),
            _num(r.get("utilization_pct")),
            memory,
            _num(r.get("temperature_c")),
            _num(r.get("power_w")),
        )
    if not listed:
        table.add_row("", "no GPU", telemetry.get("error") or "", "", "", "", "")
        return table
    return Group(table, long_values([(f"GPU {i} uuid", g.get("uuid")) for i, g in enumerate(listed)]))


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _earnings(h: Mapping[str, Any]) -> RenderableType:
    """Per proxy: earned, paid out, unpaid, adjusted tokens; then the next payout (threshold and
    estimate) and the worker contract, whole."""
    table = Table(title="earnings", title_justify="left")
    table.add_column("proxy")
    for column in ("earned", "paid out", "unpaid", "tokens"):
        table.add_column(column, justify="right")
    payments = h.get("payments", {})
    for proxy, p in payments.items():
        earned, paid = int(p.get("earned_nano", 0)), int(p.get("paid_nano", 0))
        table.add_row(
            proxy,
            format_ton(earned),
            format_ton(paid),
            format_ton(max(0, earned - paid)),
            str(p.get("adjusted_tokens", 0)),
        )
    if not payments:
        table.add_row("—", format_ton(0), format_ton(0), format_ton(0), "0")
        return table
    from cocoon.node.earnings import describe_payout  # cocoon.node loads the TEE: not at CLI start

    lines: list[RenderableType] = [table]
    for proxy, p in payments.items():
        lines.append(
            Text.assemble(
                ("next payout ", "bold cyan"), f"from {proxy}: ", describe_payout(p.get("next_payout"))
            )
        )
    lines.append(
        long_values(
            [(f"worker contract ({proxy})", p.get("worker_contract")) for proxy, p in payments.items()]
        )
    )
    return Group(*lines)


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
