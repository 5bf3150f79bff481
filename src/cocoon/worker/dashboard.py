"""The worker's page of the operator dashboard: requests, tokens, load, earnings and GPUs over time,
its proxy links (each with its next payout: threshold and estimate), GPUs, recent errors and log lines; drain / resume and set-price (the price
coefficient, target = per mille) behind the operator token.

It reads the ``GET /health`` document (so the page and ``cocoon health`` agree). Draining makes the
worker refuse new requests as busy (proxies send them elsewhere) while running ones finish.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cocoon.node.dashboard import (
    Action,
    ChartSpec,
    DashboardSettings,
    Row,
    SeriesSpec,
    Snapshot,
    Table,
    cell,
    dashboard_app,
    write_operator_token,
)
from cocoon.node.earnings import describe_payout
from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy
from cocoon.worker.logs import LogRing

__all__ = ["WORKER_CHARTS", "Drainable", "worker_dashboard", "worker_snapshot"]

_TON = 1e-9
WORKER_CHARTS = (
    ChartSpec(
        "requests",
        "Requests",
        "per s",
        (
            SeriesSpec("served", "served", rate=True),
            SeriesSpec("failed", "failed", rate=True),
            SeriesSpec("refused_busy", "refused (busy)", rate=True),
        ),
    ),
    ChartSpec(
        "tokens", "Completion tokens", "per s", (SeriesSpec("completion_tokens", "generated", rate=True),)
    ),
    ChartSpec(
        "load",
        "Load",
        "requests",
        (SeriesSpec("active_requests", "running"), SeriesSpec("max_active_requests", "slots")),
    ),
    ChartSpec(
        "earnings",
        "Earnings (as the proxies report)",
        "TON",
        (SeriesSpec("earned_nano", "earned", scale=_TON), SeriesSpec("paid_nano", "paid out", scale=_TON)),
    ),
)
GPU_CHARTS = (
    ChartSpec(
        "gpu-use",
        "GPU",
        "%",
        (
            SeriesSpec("gpu.utilization_pct", "utilisation (mean)"),
            SeriesSpec("gpu.memory_pct", "memory used"),
        ),
    ),
    ChartSpec(
        "gpu-heat",
        "GPU power and temperature",
        "W, °C",
        (
            SeriesSpec("gpu.power_w", "power (total W)"),
            SeriesSpec("gpu.temperature_c", "temperature (max °C)"),
        ),
    ),
)


class Drainable(Protocol):
    """What the dashboard's actions change on the worker (each tells its proxies at once)."""

    draining: bool
    weights_changed: str | None  # set when the engine serves other weights: resuming is refused

    async def set_accepting(self, accepting: bool) -> None: ...

    async def apply_live(self, changes: Mapping[str, Any]) -> None: ...


def _gpu_metrics(gpus: list[Mapping[str, Any]]) -> dict[str, float]:
    if not gpus:
        return {}
    out: dict[str, float] = {}
    util = [g["utilization_pct"] for g in gpus if g.get("utilization_pct") is not None]
    if util:
        out["gpu.utilization_pct"] = sum(util) / len(util)
    used = sum(g.get("memory_used_bytes") or 0 for g in gpus)
    total = sum(g.get("memory_total_bytes") or 0 for g in gpus)
    if total:
        out["gpu.memory_pct"] = 100 * used / total
    power = [g["power_w"] for g in gpus if g.get("power_w") is not None]
    if power:
        out["gpu.power_w"] = sum(power)
    temps = [g["temperature_c"] for g in gpus if g.get("temperature_c") is not None]
    if temps:
        out["gpu.temperature_c"] = max(temps)
    return out


def _metrics(h: Mapping[str, Any]) -> dict[str, float]:
    out = {k: h[k] for k in ("served", "failed", "refused_busy", "completion_tokens") if k in h}
    out["active_requests"] = h.get("active_requests", 0)
    out["max_active_requests"] = h.get("max_active_requests", 0)
    payments = h.get("payments", {}).values()
    out["earned_nano"] = sum(int(p.get("earned_nano", 0)) for p in payments)
    out["paid_nano"] = sum(int(p.get("paid_nano", 0)) for p in payments)
    out.update(_gpu_metrics(h.get("gpu_telemetry", {}).get("gpus", [])))
    return out


def _facts(h: Mapping[str, Any]) -> list[tuple[str, Any]]:
    system = h.get("system", {})
    gib = 1024**3
    accepting = h.get("accepting_requests", False)
    return [
        ("state", cell(h.get("state"), "ok" if h.get("state") == "running" else "warn")),
        ("accepting requests", cell("yes" if accepting else "no (draining)", "ok" if accepting else "warn")),
        ("engine", cell("healthy" if h.get("engine_healthy") else "down", "ok" if h.get("engine_healthy") else "bad")),
        ("model", cell(h.get("model"))),
        ("price coefficient", cell(f"{h.get('coefficient', 0) / 1000:.3f}×")),
        ("requests served", cell(h.get("served", 0), "number")),
        ("tokens/s while generating", cell(h.get("tokens_per_s", 0.0), "number")),
        ("uptime", cell(f"{h.get('uptime_s', 0)} s")),
        ("TEE backend", cell(h.get("tee_backend"))),
        ("certificate valid until", cell(h.get("attestation", {}).get("cert_not_after"), "time")),
        ("host memory free", cell(f"{system.get('mem_available_bytes', 0) / gib:.1f} of {system.get('mem_total_bytes', 0) / gib:.1f} GiB")),
        ("host load", cell(" ".join(str(x) for x in system.get("load_avg", [])))),
        ("model hash", cell(h.get("model_hash") or None, "hash")),
        ("image hash", cell(h.get("image_hash") or None, "hash")),
    ]  # fmt: skip


def _gpu_table(h: Mapping[str, Any]) -> Table:
    telemetry = h.get("gpu_telemetry", {})
    mib = 1024**2
    rows = []
    for g in telemetry.get("gpus", []):
        used, total = g.get("memory_used_bytes"), g.get("memory_total_bytes")
        memory = f"{used / mib:.0f} / {total / mib:.0f} MiB" if used is not None and total else None
        rows.append(
            Row(
                (
                    cell(g.get("index"), "number"),
                    cell(g.get("name")),
                    cell(g.get("uuid"), "hash"),
                    cell(telemetry.get("driver_version")),
                    cell(g.get("utilization_pct"), "number"),
                    cell(memory),
                    cell(g.get("temperature_c"), "number"),
                    cell(g.get("power_w"), "number"),
                )
            )
        )
    empty = telemetry.get("error") or "no GPU"
    columns = ("#", "name", "uuid", "driver", "utilisation %", "memory", "temperature °C", "power W")
    return Table("gpus", "GPUs", columns, tuple(rows), empty=empty)


def worker_snapshot(h: Mapping[str, Any], log_lines: list[str]) -> Snapshot:
    """The page for one ``/health`` document and the recent log lines (pure)."""
    payments = h.get("payments", {})
    proxies = Table(
        "proxies",
        "Proxies",
        ("proxy", "link", "earned", "paid out", "adjusted tokens", "next payout", "worker contract"),
        tuple(
            Row(
                (
                    cell(p["address"]),
                    cell("connected" if p.get("connected") else "reconnecting", "ok" if p.get("connected") else "warn"),
                    cell(payments.get(p["address"], {}).get("earned_nano", 0), "ton"),
                    cell(payments.get(p["address"], {}).get("paid_nano", 0), "ton"),
                    cell(payments.get(p["address"], {}).get("adjusted_tokens", 0), "number"),
                    cell(describe_payout(payments.get(p["address"], {}).get("next_payout")) if p["address"] in payments else None),
                    cell(payments.get(p["address"], {}).get("worker_contract") or None, "hash"),
                )
            )
            for p in h.get("proxies", [])
        ),
    )  # fmt: skip
    errors = Table(
        "errors", "Recent errors", ("error",), tuple(Row((cell(e, "bad"),)) for e in h.get("recent_errors", [])),
        empty="no errors",
    )  # fmt: skip
    logs = Table("logs", "Recent log lines", ("line",), tuple(Row((cell(line),)) for line in log_lines[-20:]))
    return Snapshot(
        title=f"cocoon worker · {h.get('model', '')}",
        facts=_facts(h),
        metrics=_metrics(h),
        tables=[proxies, _gpu_table(h), errors, logs],
    )


def _control_actions(worker: Drainable) -> tuple[Action, ...]:
    async def drain(_target: str) -> str:
        await worker.set_accepting(False)
        return "draining: new requests are refused and proxies stop sending them; running ones finish"

    async def resume(_target: str) -> str:
        await worker.set_accepting(True)  # ValueError (400) when the engine changed its weights
        return "accepting requests again"

    async def set_price(target: str) -> str:
        try:
            coefficient = int(target.strip())
        except ValueError:
            raise ValueError(
                f"the price coefficient is an integer per mille (1000 = 1x), got {target!r}"
            ) from None
        await worker.apply_live({"coefficient": coefficient})  # ValueError when out of range
        return f"price coefficient now {coefficient / 1000:.3f}x: proxies price the next requests with it"

    return (
        Action("drain", "drain", drain, confirm="Refuse new requests on this worker?"),
        Action("resume", "resume", resume),
        Action("set-price", "set price", set_price, prompt="New price coefficient, per mille (1000 = 1x):"),
    )


def worker_dashboard(
    worker: Drainable,
    home: Path,
    logs: LogRing,
    report: Callable[[], Awaitable[dict[str, Any]]],
    *,
    with_gpu_charts: bool = False,
    policy: LocalHttpPolicy | None = None,
) -> LocalHttpGuard:
    """The worker's dashboard app; its operator token is written to ``home/operator.token``."""

    async def snapshot() -> Snapshot:
        return worker_snapshot(await report(), list(logs.lines))

    settings = DashboardSettings(
        role="worker",
        charts=WORKER_CHARTS + (GPU_CHARTS if with_gpu_charts else ()),
        actions=_control_actions(worker),
        operator_token=write_operator_token(home),
        policy=policy,
    )
    return dashboard_app(snapshot, settings)
