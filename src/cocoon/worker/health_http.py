"""The GPU owner's local view of a worker: ``GET /health`` (JSON), ``GET /logs``, ``GET /metrics``
(Prometheus) and the operator dashboard at ``/dashboard/`` (``/`` leads there).

Bound to loopback by default, behind the Host/Origin guard; ``cocoon health`` renders ``/health``.
The app sees the worker only through :class:`WorkerReport`, so this module does not import the
service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy
from cocoon.worker.config import WorkerConfig
from cocoon.worker.dashboard import worker_dashboard
from cocoon.worker.gpu_telemetry import read_gpu_telemetry
from cocoon.worker.logs import LogRing
from cocoon.worker.metrics import build_worker_registry
from cocoon.worker.system import system_info

__all__ = ["LogRing", "WorkerReport", "build_health_app"]


class WorkerReport(Protocol):
    """What the health view reads from a worker (and the dashboard's drain action sets)."""

    draining: bool
    weights_changed: str | None

    @property
    def config(self) -> WorkerConfig: ...

    def statistics(self) -> dict[str, Any]: ...

    async def engine_healthy(self) -> bool: ...

    async def set_accepting(self, accepting: bool) -> None: ...  # the dashboard's drain / resume

    async def apply_live(self, changes: Mapping[str, Any]) -> None: ...  # its set-price


async def health_report(worker: WorkerReport) -> dict[str, Any]:
    """The ``GET /health`` document: statistics, engine and host state, live GPU readings."""
    stats = worker.statistics()
    stats["engine_healthy"] = await worker.engine_healthy()
    stats["accepting_requests"] = stats.get("state") == "running" and not worker.draining
    stats["system"] = system_info()
    stats["gpu_telemetry"] = (await asyncio.to_thread(read_gpu_telemetry)).to_json()
    return stats


def build_health_app(worker: WorkerReport, logs: LogRing) -> LocalHttpGuard:
    app = FastAPI(title="cocoon worker", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return await health_report(worker)

    @app.get("/logs")
    async def recent_logs(lines: int = 50) -> dict[str, Any]:
        lines = max(1, min(lines, 200))
        return {"lines": list(logs.lines)[-lines:]}

    @app.get("/metrics")
    async def metrics() -> Response:
        telemetry = await asyncio.to_thread(read_gpu_telemetry)
        registry = build_worker_registry(worker.statistics, lambda: telemetry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    with_gpus = worker.statistics().get("gpu", {}).get("kind") == "nvidia"
    policy = LocalHttpPolicy.of(worker.config.health_allowed_hosts)
    dashboard = worker_dashboard(
        worker,
        worker.config.home,
        logs,
        lambda: health_report(worker),
        with_gpu_charts=with_gpus,
        policy=policy,
    )
    app.mount("/dashboard", dashboard)
    return LocalHttpGuard(app, policy)
